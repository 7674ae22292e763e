"""Durations ("6h", "1h30m") and schedules (cron, preset, duration) as specs write them."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache

PRESETS = frozenset({"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"})
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> timedelta:
    """'1h30m' -> timedelta(hours=1, minutes=30); ValueError for anything else or zero."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"'{text}' is not a duration (use e.g. 90s, 15m, 6h, 1d or 1h30m)")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    delta = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if not delta:
        raise ValueError(f"'{text}' is a zero duration")
    return delta


@lru_cache(maxsize=1024)  # a fleet shares a handful of schedules; croniter is slow to parse
def schedule_problem(schedule: str | None) -> str | None:
    """Why a training schedule is unusable, or None when Airflow can run it."""
    if schedule is None or schedule in PRESETS:
        return None
    if schedule.startswith("@"):
        return f"unknown preset '{schedule}' (known: {', '.join(sorted(PRESETS))})"
    if _DURATION.match(schedule):
        try:
            parse_duration(schedule)
        except ValueError as exc:
            return str(exc)
        return None
    fields = schedule.split()
    if len(fields) != 5:
        return f"'{schedule}' is not a cron expression: it needs 5 fields (minute hour day month weekday), got {len(fields)}"
    from croniter import croniter  # only specs with cron schedules pay for the import

    if not croniter.is_valid(schedule):
        return f"'{schedule}' is not a valid cron expression"
    return None


def airflow_schedule(schedule: str | None) -> str | timedelta | None:
    """What to pass as DAG(schedule=...): durations become timedeltas."""
    if schedule is not None and _DURATION.match(schedule):
        return parse_duration(schedule)
    return schedule
