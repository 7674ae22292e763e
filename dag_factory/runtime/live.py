"""Live values at run time: a task reads its model's record when it runs, so a new dataset,
version, gate or partition list reaches the next run without changing the DAG."""

from __future__ import annotations

from typing import Any


def live_record(model: str) -> dict[str, Any]:
    """This model's live record (one Variable read), {} when there is none."""
    from dag_factory.live import snapshot
    from dag_factory.live.store import sdk_read

    snap = snapshot.parse(sdk_read())
    return dict(((snap or {}).get("models") or {}).get(model) or {})


def first(*values: Any) -> Any:
    """The first value that was actually given: conf, then live data, then the spec."""
    return next((v for v in values if v not in (None, "", [], {})), None)
