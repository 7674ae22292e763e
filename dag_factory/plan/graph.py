"""One DAG's task graph as text or as a Mermaid flowchart (`dag-factory render`), from its
description (dag_factory.plan.describe), so it is the graph the real builders made."""

from __future__ import annotations

import re
from typing import Any, Mapping

_NODE = re.compile(r"[^A-Za-z0-9_]")


def topological(tasks: Mapping[str, Any]) -> list[str]:
    """Task ids, upstream before downstream, ties by id (the same order on every run)."""
    pending = {t: set(d["upstream"]) & set(tasks) for t, d in tasks.items()}
    order: list[str] = []
    while pending:
        ready = sorted(t for t, ups in pending.items() if not ups) or sorted(pending)[:1]  # a cycle: break it
        for task_id in ready:
            order.append(task_id)
            del pending[task_id]
        for ups in pending.values():
            ups.difference_update(ready)
    return order


def _short(name: str | None) -> str:
    return (name or "").rpartition(".")[2]


def _label(task: Mapping[str, Any]) -> str:
    callable_name = task.get("callable")
    mapped = task["attrs"].get("expand")
    return (_short(task["operator"]) + (f": {callable_name.replace(':', '.')}" if callable_name else "")
            + (f", mapped over {_expand_text(mapped)}" if mapped else ""))


def _expand_text(expand: Any) -> str:
    if isinstance(expand, dict):
        return ", ".join(f"{k}={v}" for k, v in expand.items())
    return str(expand)


def to_text(dag_id: str, desc: Mapping[str, Any]) -> str:
    tasks = desc["tasks"]
    downstream: dict[str, list[str]] = {t: [] for t in tasks}
    for task_id, task in tasks.items():
        for up in task["upstream"]:
            downstream.setdefault(up, []).append(task_id)
    out = [f"{dag_id}  schedule: {desc['schedule']}; {len(tasks)} tasks"]
    for task_id in topological(tasks):
        out.append(f"  {task_id}  [{_label(tasks[task_id])}]")
        if downstream[task_id]:
            out.append(f"      -> {', '.join(sorted(downstream[task_id]))}")
    return "\n".join(out) + "\n"


def node_id(task_id: str) -> str:
    return "t_" + _NODE.sub("_", task_id)


def to_mermaid(dag_id: str, desc: Mapping[str, Any]) -> str:
    """`flowchart LR`, a subgraph per task group; paste into a ```mermaid block."""
    tasks = desc["tasks"]
    order = topological(tasks)
    out = ["flowchart LR", f"  %% {dag_id}  schedule: {desc['schedule']}"]
    groups: dict[str | None, list[str]] = {}
    for task_id in order:
        groups.setdefault(tasks[task_id].get("group"), []).append(task_id)
    for group, members in groups.items():
        indent = "  " if group is None else "    "
        if group is not None:
            out.append(f'  subgraph {node_id(group)}_group["{group}"]')
        for task_id in members:
            out.append(f'{indent}{node_id(task_id)}["{task_id.rpartition(".")[2]}"]')
        if group is not None:
            out.append("  end")
    for task_id in order:
        for up in sorted(tasks[task_id]["upstream"]):
            out.append(f"  {node_id(up)} --> {node_id(task_id)}")
    return "\n".join(out) + "\n"


FORMATS = {"text": to_text, "mermaid": to_mermaid}
