"""Stream offsets: where each partition stands, kept in one Airflow Variable per partition.

The value is JSON a person can read and edit in the UI:
    {"offset": 1234, "empty_polls": 0, "generation": 0, "records": 500, "updated_at": "..."}
`offset` is the last committed record (-1: nothing yet). The idempotency key of the next batch
is derived from that state alone, so a retry, a restarted worker or an overlapping run asks the
backend the same question and gets the first answer back: no record is lost or repeated.
Offsets only move after the backend answered, and only forward.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

from dag_factory.settings import OFFSETS_VARIABLE_PREFIX

VARIABLE_PREFIX = OFFSETS_VARIABLE_PREFIX
START = {"offset": -1, "empty_polls": 0, "generation": 0}


def variable_key(model: str, partition: int) -> str:
    return f"{VARIABLE_PREFIX}.{model}.{partition}"


def parse_state(raw: str | None) -> dict[str, int]:
    """The stored state, or the start for a partition never read; a broken value is an error,
    not a silent restart from -1 (that would repeat every record)."""
    if raw is None:
        return dict(START)
    try:
        value = json.loads(raw)
        state = {k: int(value.get(k, START[k])) for k in START}
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"offset state is not valid JSON like {json.dumps(START)}: {raw[:200]!r}") from exc
    if state["offset"] < -1 or state["empty_polls"] < 0:
        raise ValueError(f"offset state out of range: {state}")
    return state


def read_state(key: str, get: Callable[[str], str | None], stored_keys: Callable[[str], Iterable[str]]) -> dict[str, int]:
    """The partition's state from its Variable (`get`: the value or None).

    Airflow reads a Variable through its secrets backends and treats a backend that raises as
    "not there": during a metadata DB outage `Variable.get` returns the default. Taken as "never
    started", that moved the offset back to -1 (seen in the e2e fault test). So a missing value
    is confirmed with the DB's key listing (`stored_keys`, which raises while the DB is down); a
    key that is listed but could not be read is an error the task retries on."""
    raw = get(key)
    if raw is None and key in set(stored_keys(key)):
        raise OffsetUnreadable(f"offset Variable {key} exists but could not be read (is the metadata DB "
                               f"reachable?); not starting the partition over")
    return parse_state(raw)


class OffsetUnreadable(RuntimeError):
    """The offset is stored but could not be read: retry, never restart from -1."""


def batch_key(model: str, partition: int, state: Mapping[str, int]) -> str:
    """Same state -> same key. `empty_polls` makes a new key after an empty batch (so new
    records are seen); `generation` lets a person replay by resetting the offset."""
    return (f"stream:{model}:p{partition}:g{state['generation']}"
            f":o{state['offset']}:e{state['empty_polls']}")


def advance(state: Mapping[str, int], result: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The state after the backend processed a batch."""
    records = int(result["records"])
    next_offset = int(result["next_offset"])
    if next_offset < state["offset"] or (records > 0) != (next_offset > state["offset"]):
        raise ValueError(f"backend answer does not follow offset {state['offset']}: {dict(result)}")
    return {
        "offset": next_offset,
        "empty_polls": 0 if records else state["empty_polls"] + 1,
        "generation": state["generation"],
        "records": records,
        "updated_at": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
    }
