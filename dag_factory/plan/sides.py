"""Both sides of a plan built with the real builders (`build_dags` over `load_specs` results),
and only where they can differ.

A DAG is a function of its builder's input: the fleet model (name, paused, live training
schedule) and its spec without the other kinds' sections (a training DAG never reads
`deployment:`). Where that input is equal on both sides the DAG is equal too and is not built
at all; `build_dags` builds the rest, from the specs stripped of the kinds that did not change.
A `_defaults.yaml` change to one section so builds that section's DAGs only. Custom `operator:`
steps run user code at build time and may fail; their kinds are always built with the rest,
and a spec whose build failed on either side is rebuilt whole on both sides.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from dag_factory.builders.invalid import invalid_dag_id
from dag_factory.builders.register import build_dags
from dag_factory.kinds import SECTIONS
from dag_factory.live.fleet import FleetModel, plan_fleet, spec_name_of
from dag_factory.plan.describe import describe_dag, next_runs
from dag_factory.plan.diff import Facts, Origin, Plan, make_plan
from dag_factory.settings import INVALID_DAG_PREFIX as PREFIX
from dag_factory.specs.loader import DEFAULTS_FILE, LoadResult, load_specs
from dag_factory.specs.model import ModelSpec

Descriptions = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Side:
    """One side's specs, the DAG ids they make and each DAG's builder input (its key)."""

    label: str
    result: LoadResult
    snap: Mapping[str, Any] | None
    origins: dict[str, Origin]
    keys: dict[str, Any]
    facts: Facts


def build_key(model: FleetModel, kind: str) -> tuple[Any, ...]:
    """Everything the builder of `kind` reads; equal keys build equal DAGs."""
    spec = replace(model.spec, source=Path(model.spec.source).name, **{k: None for k in SECTIONS if k != kind})
    return kind, model.name, model.paused, model.training_schedule if kind == "training" else None, spec


def load_side(folder: Path, snap: Mapping[str, Any] | None, label: str) -> Side:
    """Load and validate a specs folder as the entry file would (no imports of step code)."""
    folder = folder.resolve()  # `.` too: files are named `<folder>/x.yaml` on both sides
    result = load_specs([folder], check_imports=False).relative_to(folder.parent)
    fleet, _ = plan_fleet(result.by_name(), snap)
    live_models = frozenset((snap or {}).get("models") or ())
    origins: dict[str, Origin] = {}
    keys: dict[str, Any] = {}
    for model in fleet:
        for kind in model.spec.kinds:
            dag_id = model.spec.dag_id(kind, model.name)
            origins[dag_id] = Origin(model.spec.name, model.name, kind, model.name in live_models)
            keys[dag_id] = build_key(model, kind)
    by_file: dict[str, list[str]] = {}
    for error in result.errors:
        by_file.setdefault(error.file, []).append(str(error))
    for file, errors in by_file.items():
        origins[invalid_dag_id(file)] = Origin(Path(file).stem, None, "invalid")
        keys[invalid_dag_id(file)] = ("invalid", tuple(errors))
    files = frozenset(Path(f).stem for f in result.files if Path(f).name != DEFAULTS_FILE)
    facts = Facts(spec_files=files, invalid=frozenset(Path(f).stem for f in result.invalid_files),
                  templates=frozenset(s.name for s in result.specs if s.template),
                  retired=frozenset((snap or {}).get("retired") or ()), live_models=live_models)
    return Side(label, result, snap, origins, keys, facts)


def _kinds_to_build(specs: Iterable[ModelSpec], changed: Iterable[Origin]) -> dict[str, set[str]]:
    """Spec name -> the kinds to build: the changed ones, plus (for a spec with any change) the
    kinds with custom operators, whose construction may fail and make the whole spec invalid."""
    wanted: dict[str, set[str]] = {}
    for origin in changed:
        if origin.model is not None:
            wanted.setdefault(origin.spec, set()).add(origin.kind)
    for spec in specs:
        if spec.name in wanted:
            wanted[spec.name] |= {k for k in spec.kinds if any(s.kind == "operator" for s in getattr(spec, k).steps)}
    return wanted


def _build(side: Side, kinds: Mapping[str, set[str]], with_errors: bool) -> dict[str, Any]:
    """`build_dags` over this side's specs, only the named specs and kinds."""
    specs = tuple(replace(s, **{k: None for k in SECTIONS if k not in kinds[s.name]})
                  for s in side.result.specs if s.name in kinds)
    reduced = replace(side.result, specs=specs, errors=side.result.errors if with_errors else ())
    snap = side.snap
    if snap is not None:
        models = {k: v for k, v in (snap.get("models") or {}).items() if spec_name_of(k, snap) in kinds}
        snap = {**snap, "models": models}
    return build_dags(reduced, snap)


def describe_side(side: Side, kinds: Mapping[str, set[str]], with_errors: bool, now: datetime) -> Descriptions:
    """Build the named specs and kinds of one side and describe every DAG built, with its next
    run times from `now` (cached per schedule); the DAG objects are not kept."""
    out = {}
    for dag_id, dag in _build(side, kinds, with_errors).items():
        out[dag_id] = describe_dag(dag)
        out[dag_id]["next_runs"] = next_runs(dag, now)
    return out


def _failed_specs(side: Side, dags: Mapping[str, Any]) -> set[str]:
    """Specs whose build raised: build_dags made an invalid-spec DAG the load did not predict."""
    return {dag_id[len(PREFIX):] for dag_id in dags if dag_id.startswith(PREFIX) and dag_id not in side.origins}


@dataclass(frozen=True)
class Built:
    """What `build_sides` made: each side's DAG descriptions, the DAG ids to compare (the others
    are equal on both sides and were not built) and each side's specs whose build failed."""

    dags: tuple[Descriptions, Descriptions]
    ids: set[str]
    failed: tuple[set[str], set[str]]


def build_sides(base: Side, head: Side, now: datetime) -> Built:
    """Build and describe both sides where their DAGs can differ."""
    changed = {i for i in set(base.keys) | set(head.keys) if base.keys.get(i, ()) != head.keys.get(i, ())}
    wanted: dict[str, set[str]] = {}
    for side in (base, head):
        for name, kinds in _kinds_to_build(side.result.specs, (side.origins[i] for i in changed
                                                                if i in side.origins)).items():
            wanted.setdefault(name, set()).update(kinds)
    # One side after the other, in this process: building the base side in a forked process at
    # the same time gained nothing on the 2-core machine (benchmarks/plan.py, docs/plan.md).
    old, new = describe_side(base, wanted, True, now), describe_side(head, wanted, True, now)
    dags = [old, new]
    failed = _failed_specs(base, old) | _failed_specs(head, new)
    if failed:
        whole = {name: set(SECTIONS) for name in failed}
        for index, side in enumerate((base, head)):
            dags[index] = {k: v for k, v in dags[index].items()
                           if (o := side.origins.get(k)) is None or o.spec not in failed or o.model is None}
            dags[index].update(describe_side(side, whole, False, now))
        changed |= {i for side in (base, head) for i, o in side.origins.items() if o.spec in failed}
        changed |= {i for d in dags for i in d if i.startswith(PREFIX)}
    return Built((dags[0], dags[1]), changed, (_failed_specs(base, dags[0]), _failed_specs(head, dags[1])))


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while both fleets are built and described: nearly every
    object made lives to the end anyway, and the collector's passes over tens of thousands of
    live tasks are paid for nothing (benchmarks/plan.py, variant `plan, GC on`)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compare(base: Side, head: Side, now: datetime, live: str | None = None) -> Plan:
    """The plan from `base` to `head`; next run times are counted from `now`."""
    with gc_paused():
        built = build_sides(base, head, now)
    (old_all, new_all), ids = built.dags, built.ids
    old = {i: old_all[i] for i in sorted(ids) if i in old_all}
    new = {i: new_all[i] for i in sorted(ids) if i in new_all}
    origins = ({**base.origins, **_invalid_origins(old_all)}, {**head.origins, **_invalid_origins(new_all)})
    unchanged = len((set(base.keys) & set(head.keys)) - ids)
    facts = tuple(replace(side.facts, invalid=side.facts.invalid | failed)
                  for side, failed in zip((base, head), built.failed))
    plan = make_plan(old, new, origins, (facts[0], facts[1]), unchanged, base.label, head.label, live)
    return replace(plan, now=now.isoformat())


def _invalid_origins(dags: Mapping[str, Any]) -> dict[str, Origin]:
    return {i: Origin(i[len(PREFIX):], None, "invalid") for i in dags if i.startswith(PREFIX)}
