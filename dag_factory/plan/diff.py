"""Two sides' DAG descriptions -> the plan: DAGs added/removed (and why), per DAG the changes.

Pure: plain data in (dag_factory.plan.describe's dicts), dataclasses out; no Airflow here.
A task id that disappears from a DAG that stays (removed, or renamed) is *breaking for runs in
flight*: DAG bundles from a local folder are not versioned, so a running DAG run's next task
instance looks its task up in the new DAG, and a missing task id fails it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

Action = Literal["added", "removed", "changed"]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a DAG id comes from on one side: a model's spec and kind, or an invalid spec file."""

    spec: str  # spec name (= file stem)
    model: str | None  # None for an invalid-spec DAG
    kind: str  # training, deployment, streaming or "invalid"
    live: bool = False  # the model is in the live snapshot


@dataclass(frozen=True, slots=True)
class Facts:
    """What the reasons for an added or removed DAG are looked up in, per side."""

    spec_files: frozenset[str] = frozenset()
    invalid: frozenset[str] = frozenset()
    templates: frozenset[str] = frozenset()
    retired: frozenset[str] = frozenset()
    live_models: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Change:
    """One line of a changed DAG. `what`: task added/removed/renamed, edge added/removed,
    schedule, dag (a DAG attribute), task (a task attribute) or tasks (the same attribute
    change in several tasks, listed in extra["tasks"])."""

    what: str
    task: str | None = None
    key: str | None = None
    old: Any = None
    new: Any = None
    breaking: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)  # schedule: next run times; tasks: which


@dataclass(frozen=True, slots=True)
class DagPlan:
    dag_id: str
    action: Action
    reason: str = ""
    changes: tuple[Change, ...] = ()

    @property
    def breaking(self) -> bool:
        return any(c.breaking for c in self.changes)


@dataclass(frozen=True)
class Plan:
    dags: tuple[DagPlan, ...]
    unchanged: int
    base: str
    head: str
    live: str | None = None  # what live data was used, None for none
    now: str = ""  # next run times are counted from here (ISO)

    def of(self, action: Action) -> list[DagPlan]:
        return [d for d in self.dags if d.action == action]

    @property
    def breaking(self) -> list[DagPlan]:
        return [d for d in self.dags if d.breaking]

    def summary(self) -> str:
        """`3 DAGs added, 1 removed, 412 changed (2 breaking), 250 unchanged`."""
        added = len(self.of("added"))
        return (f"{added} DAG{'' if added == 1 else 's'} added, {len(self.of('removed'))} removed, "
                f"{len(self.of('changed'))} changed ({len(self.breaking)} breaking), {self.unchanged} unchanged")


def reason_added(origin: Origin, base: Facts) -> str:
    """Why a DAG exists now and did not on the base side."""
    if origin.kind == "invalid":
        return "new spec, invalid" if origin.spec not in base.spec_files else "spec is invalid"
    if origin.spec not in base.spec_files:
        return "new spec"
    if origin.spec in base.invalid:
        return "was invalid"
    if origin.model in base.retired:
        return "no longer retired"
    if origin.spec in base.templates and not origin.live:
        return "no longer a template"
    if origin.live and origin.model not in base.live_models:
        return "new live model"
    return f"new {origin.kind} section"


def reason_removed(origin: Origin, head: Facts) -> str:
    """Why a DAG of the base side is gone."""
    if origin.kind == "invalid":
        return "spec fixed" if origin.spec in head.spec_files else "spec removed (was invalid)"
    if origin.spec not in head.spec_files:
        return "spec removed"
    if origin.spec in head.invalid:
        return "spec is invalid"
    if origin.model in head.retired:
        return "retired"
    if origin.spec in head.templates and not origin.live:
        return "template"
    if origin.live and origin.model not in head.live_models:
        return "live model gone"
    return f"{origin.kind} section removed"


def _edges(tasks: Mapping[str, Any], rename: Mapping[str, str] | None = None) -> set[tuple[str, str]]:
    rename = rename or {}
    return {(rename.get(up, up), rename.get(down, down)) for down, t in tasks.items() for up in t["upstream"]}


def _downstream(tasks: Mapping[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {t: set() for t in tasks}
    for down, task in tasks.items():
        for up in task["upstream"]:
            out.setdefault(up, set()).add(down)
    return out


def pair_renames(old: Mapping[str, Any], new: Mapping[str, Any], removed: Iterable[str],
                 added: Iterable[str]) -> list[tuple[str, str]]:
    """(old id, new id) pairs among removed and added tasks that look like one task renamed:
    same operator class and at least two of: same callable, same upstream ids, same downstream
    ids, same last id segment (a task group renamed), same arguments. Greedy, best first."""
    old_down, new_down = _downstream(old), _downstream(new)
    scored = []
    for r in removed:
        for a in added:
            o, n = old[r], new[a]
            if o["operator"] != n["operator"]:
                continue
            score = sum((
                2 * (o["callable"] is not None and o["callable"] == n["callable"]),
                o["upstream"] == n["upstream"],
                old_down.get(r, set()) == new_down.get(a, set()),
                r.rpartition(".")[2] == a.rpartition(".")[2],
                o["attrs"] == n["attrs"],
            ))
            if score >= 2:
                scored.append((-score, r, a))
    pairs, used_old, used_new = [], set(), set()
    for _, r, a in sorted(scored):
        if r not in used_old and a not in used_new:
            pairs.append((r, a))
            used_old.add(r)
            used_new.add(a)
    return sorted(pairs)


def _attr_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(key, old, new) per differing key; one level of mappings is opened (op_kwargs.gates)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and not prefix:
            out.extend(_attr_changes(a, b, prefix=f"{key}."))
        else:
            out.append((prefix + key, a, b))
    return out


def _task_changes(task_id: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    out = [Change("task", task_id, key, old[key], new[key]) for key in ("operator", "callable") if old[key] != new[key]]
    old_attrs, new_attrs = old["attrs"], new["attrs"]
    if old["operator"] != new["operator"]:  # the other class's own arguments are not changes, just other
        old_attrs = {k: v for k, v in old_attrs.items() if k in new_attrs}
        new_attrs = {k: v for k, v in new_attrs.items() if k in old_attrs}
    out += [Change("task", task_id, key, a, b) for key, a, b in _attr_changes(old_attrs, new_attrs)]
    return out


def diff_dag(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every change between two descriptions of one DAG id, in a stable order."""
    old_tasks, new_tasks = old["tasks"], new["tasks"]
    removed = sorted(set(old_tasks) - set(new_tasks))
    added = sorted(set(new_tasks) - set(old_tasks))
    renames = pair_renames(old_tasks, new_tasks, removed, added)
    renamed_old, renamed_new = {r for r, _ in renames}, {a for _, a in renames}
    changes = [Change("task renamed", r, None, r, a, breaking=True) for r, a in renames]
    changes += [Change("task removed", r, breaking=True) for r in removed if r not in renamed_old]
    changes += [Change("task added", a) for a in added if a not in renamed_new]
    old_edges, new_edges = _edges(old_tasks, dict(renames)), _edges(new_tasks)
    # edges between two new tasks say nothing the added tasks do not: left out
    fresh = set(added) - renamed_new
    changes += [Change("edge removed", None, None, up, down) for up, down in sorted(old_edges - new_edges)]
    changes += [Change("edge added", None, None, up, down) for up, down in sorted(new_edges - old_edges)
                if not (up in fresh and down in fresh)]
    if old["schedule"] != new["schedule"]:
        changes.append(Change("schedule", None, None, old["schedule"], new["schedule"],
                              extra={"old_runs": old.get("next_runs", []), "new_runs": new.get("next_runs", [])}))
    changes += [Change("dag", None, key, a, b) for key, a, b in _attr_changes(old["attrs"], new["attrs"])]
    both = sorted(set(old_tasks) & set(new_tasks))
    per_task = [c for t in both for c in _task_changes(t, old_tasks[t], new_tasks[t])]
    per_task += [c for r, a in renames for c in _task_changes(a, old_tasks[r], new_tasks[a])]
    return changes + fold(per_task, len(new_tasks))


def fold(changes: list[Change], task_count: int) -> list[Change]:
    """The same attribute change in several tasks (retries from the defaults) becomes one
    `tasks` change listing them: a reviewer reads `retries: 2 -> 3 in all 6 tasks` once."""
    groups: dict[tuple[str, str, str], list[Change]] = {}
    for change in changes:
        groups.setdefault((str(change.key), repr(change.old), repr(change.new)), []).append(change)
    out = []
    for same in groups.values():
        first = same[0]
        if len(same) == 1:
            out.append(first)
        else:
            out.append(Change("tasks", None, first.key, first.old, first.new,
                              extra={"tasks": [c.task for c in same], "of": task_count}))
    return out


def make_plan(old: Mapping[str, Any], new: Mapping[str, Any],
              origins: tuple[Mapping[str, Origin], Mapping[str, Origin]],
              facts: tuple[Facts, Facts], unchanged: int, base: str, head: str, live: str | None) -> Plan:
    """The plan over the compared DAG ids: `old`/`new` map DAG id -> description."""
    dags = []
    for dag_id in sorted(set(old) | set(new)):
        if dag_id not in old:
            dags.append(DagPlan(dag_id, "added", reason_added(origins[1][dag_id], facts[0])))
        elif dag_id not in new:
            dags.append(DagPlan(dag_id, "removed", reason_removed(origins[0][dag_id], facts[1])))
        elif changes := diff_dag(old[dag_id], new[dag_id]):
            dags.append(DagPlan(dag_id, "changed", "", tuple(changes)))
        else:
            unchanged += 1
    return Plan(tuple(dags), unchanged, base, head, live)
