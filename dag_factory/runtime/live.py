"""Live values at run time: a task reads its model's record when it runs, so a new dataset,
version, gate or partition list reaches the next run without changing the DAG."""

from __future__ import annotations

from typing import Any, Mapping

# A worker's task process parses the DAG file for its one task (the parsing context names that
# DAG and task) and reads the live snapshot for it moments before the task runs: the task uses
# that read instead of a second one (an API round trip and the whole fleet's JSON parsed again).
_task_start: dict[str, Any] = {}


def _parsing_key() -> tuple[str | None, str | None]:
    from airflow.sdk import get_parsing_context

    context = get_parsing_context()
    return context.dag_id, context.task_id


def remember_task_start(snap: Mapping[str, Any] | None) -> None:
    """Keep the snapshot a task-run parse read, for this task (dag_factory.builders.register)."""
    key = _parsing_key()
    if key[0] is not None:
        _task_start.clear()
        _task_start[key] = snap


def live_record(model: str) -> dict[str, Any]:
    """This model's live record, {} when there is none: the snapshot this task's parse read,
    else one Variable read (dag.test(), a deferred task's resume parses again and reads anew)."""
    from dag_factory.live import snapshot
    from dag_factory.live.store import sdk_read

    key = _parsing_key()
    snap = _task_start[key] if key[0] is not None and key in _task_start else snapshot.parse(sdk_read())
    return dict(((snap or {}).get("models") or {}).get(model) or {})


def first(*values: Any) -> Any:
    """The first value that was actually given: conf, then live data, then the spec."""
    return next((v for v in values if v not in (None, "", [], {})), None)
