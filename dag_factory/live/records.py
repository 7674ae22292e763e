"""One live record from the backend: accepted as data, or rejected with a reason."""

from __future__ import annotations

import json
from typing import Any

from dag_factory.settings import RESERVED_PREFIX
from dag_factory.specs import schema
from dag_factory.specs.timing import schedule_problem

MAX_RECORD_BYTES = 16_384  # a record describes a model; anything bigger is bad data


def record_problem(record: Any) -> str | None:
    """Why a backend record cannot be used, or None. Never raises: bad data is data."""
    if not isinstance(record, dict):
        return f"not an object: {_preview(record)}"
    try:
        size = len(json.dumps(record, ensure_ascii=False))
    except (TypeError, ValueError) as exc:
        return f"not JSON data: {exc}"
    if size > MAX_RECORD_BYTES:
        return f"record is {size} bytes; at most {MAX_RECORD_BYTES}"
    problems = schema.check(record, schema.LIVE_SCHEMA)
    if problems:
        p = problems[0]
        where = ".".join(str(x) for x in p.path) or "record"
        return f"{where}: {p.message}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
    if record["name"].startswith(RESERVED_PREFIX):
        return f"name: '{record['name']}' starts with '{RESERVED_PREFIX}', which is reserved for dag_factory's own DAGs"
    live_schedule = (record.get("training") or {}).get("schedule")
    if live_schedule is not None and (why := schedule_problem(live_schedule)):
        return f"training.schedule: {why}"
    return None


def record_name(record: Any, index: int) -> str:
    """A printable name for messages, even for hostile records (JSON-escaped, cut short)."""
    name = record.get("name") if isinstance(record, dict) else None
    return _preview(name, 70).strip('"') if isinstance(name, str) else f"record #{index}"


def _preview(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, default=str, ensure_ascii=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
