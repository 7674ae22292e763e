"""A plan as text (terminal), markdown (pull-request comment, job summary) or JSON (scripts).

Changed DAGs with the very same change lines (a `_defaults.yaml` edit changes hundreds of DAGs
the same way) are shown once, as a group, so a reviewer reads each change once.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Iterable

from dag_factory.plan.diff import Change, DagPlan, Plan

BREAKING = "BREAKING for runs in flight"
MAX_VALUE = 120  # characters of a value shown in a change line
NAMES_SHOWN = 5  # DAG ids named in a group's heading (text)
# markdown: a DAG's changes past this many lines (or a group of DAGs) go in <details>, open when breaking
DETAILS_AFTER = 3


def value_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"


def change_line(change: Change, code: str = "") -> str:
    """One change in words; `code` is the quote for ids and values (markdown: a backtick)."""
    def q(value: Any) -> str:
        return f"{code}{value_text(value).replace('`', chr(39)) if code else value_text(value)}{code}"

    what = change.what
    if what == "task renamed":
        return f"task {q(change.old)} renamed to {q(change.new)}: {BREAKING}"
    if what == "task removed":
        return f"task {q(change.task)} removed: {BREAKING}"
    if what == "task added":
        return f"task {q(change.task)} added"
    if what in ("edge added", "edge removed"):
        return f"{what.split()[0]} {q(f'{change.old} >> {change.new}')} {what.split()[1]}"
    if what == "schedule":
        old_runs, new_runs = change.extra.get("old_runs") or ["none"], change.extra.get("new_runs") or ["none"]
        return (f"schedule: {q(change.old)} → {q(change.new)}; next runs (UTC): "
                f"{', '.join(old_runs)} → {', '.join(new_runs)}")
    where = f"task {q(change.task)}: " if what == "task" else ""
    line = f"{where}{change.key}: {q(change.old)} → {q(change.new)}"
    if what == "tasks":
        tasks = list(change.extra.get("tasks") or ())
        if len(tasks) == change.extra.get("of"):
            return f"{line} in all {len(tasks)} tasks"
        names = ", ".join(q(t) for t in tasks[:3]) + (f" and {len(tasks) - 3} more" if len(tasks) > 3 else "")
        return f"{line} in {len(tasks)} tasks: {names}"
    return line


def grouped(dags: Iterable[DagPlan], code: str = "") -> list[tuple[list[str], list[str], bool]]:
    """(DAG ids, change lines, breaking) per distinct set of change lines, in DAG id order."""
    groups: dict[tuple[str, ...], tuple[list[str], bool]] = {}
    for dag in dags:
        lines = tuple(change_line(c, code) for c in dag.changes)
        ids, _ = groups.setdefault(lines, ([], dag.breaking))
        ids.append(dag.dag_id)
    return [(ids, list(lines), breaking) for lines, (ids, breaking) in groups.items()]


def _names(ids: list[str], code: str = "", shown: int = NAMES_SHOWN) -> str:
    head = ", ".join(f"{code}{i}{code}" for i in ids[:shown])
    more = len(ids) - shown
    return head if more <= 0 else f"{head} and {more} more DAG{'' if more == 1 else 's'}"


def header(plan: Plan) -> str:
    live = f"live data from {plan.live}" if plan.live else "no live data (specs only)"
    return f"{plan.head} against {plan.base}; {live}"


def to_text(plan: Plan) -> str:
    out = [f"dag-factory plan: {header(plan)}", ""]
    for dag in plan.of("added"):
        out.append(f"+ {dag.dag_id} ({dag.reason})")
    for dag in plan.of("removed"):
        out.append(f"- {dag.dag_id} ({dag.reason})")
    for ids, lines, breaking in grouped(plan.of("changed")):
        out.append(f"~ {_names(ids)}" + (f"  [{BREAKING}]" if breaking else ""))
        out.extend(f"    {line}" for line in lines)
    if len(out) == 2:
        out.append("no changes")
    out += ["", plan.summary()]
    return "\n".join(out) + "\n"


def to_markdown(plan: Plan) -> str:
    out = ["### dag-factory plan", "", f"**{plan.summary()}**", "", f"{header(plan)}."]
    if plan.breaking:
        out += ["", f"> **{BREAKING}**: a task id disappears from these DAGs, so their running DAG runs fail: "
                + _names([d.dag_id for d in plan.breaking], "`", shown=20)]
    rows = [("added", d) for d in plan.of("added")] + [("removed", d) for d in plan.of("removed")]
    if rows:
        out += ["", "| | DAG | why |", "|---|---|---|"]
        out += [f"| {action} | `{d.dag_id}` | {d.reason} |" for action, d in rows]
    groups = grouped(plan.of("changed"), "`")
    if groups:
        out += ["", "#### Changed"]
    for ids, lines, breaking in groups:
        title = _names(ids, "`", shown=3) + (f" ({BREAKING})" if breaking else "")
        items = [f"- {line}" for line in lines]
        if len(lines) <= DETAILS_AFTER and len(ids) == 1:
            out += ["", f"**{title}**", ""] + items
            continue
        count = f"{len(lines)} change{'' if len(lines) == 1 else 's'}"
        out += ["", "<details open>" if breaking else "<details>",
                f"<summary>{_html_code(title.replace('`', ''), ids)}: {count}</summary>", ""]
        if len(ids) > 3:
            out += ["DAGs: " + ", ".join(f"`{i}`" for i in ids), ""]
        out += items + ["", "</details>"]
    if not plan.dags:
        out += ["", "No DAG changes."]
    return "\n".join(out) + "\n"


def _html_code(title: str, ids: list[str]) -> str:
    """Inside <summary> markdown is not rendered: DAG ids in <code>."""
    for dag_id in ids[:3]:
        title = title.replace(dag_id, f"<code>{dag_id}</code>", 1)
    return title


def to_json(plan: Plan) -> str:
    data = {
        "summary": plan.summary(),
        "base": plan.base, "head": plan.head, "live": plan.live, "now": plan.now,
        "counts": {"added": len(plan.of("added")), "removed": len(plan.of("removed")),
                   "changed": len(plan.of("changed")), "breaking": len(plan.breaking), "unchanged": plan.unchanged},
        "dags": [{"dag_id": d.dag_id, "action": d.action, "reason": d.reason, "breaking": d.breaking,
                  "changes": [{**asdict(c), "extra": dict(c.extra), "text": change_line(c)} for c in d.changes]}
                 for d in plan.dags],
    }
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


FORMATS = {"text": to_text, "markdown": to_markdown, "json": to_json}
