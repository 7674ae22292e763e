"""One sync: read every page of the backend's listing, validate, write the snapshot if needed.

The same function runs in the sync DAG's task and in `dag-factory sync`.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from dag_factory import settings
from dag_factory.client import BackendClient, BackendError
from dag_factory.layout import ENTRY_STEM, specs_dir_for
from dag_factory.live import snapshot
from dag_factory.live.store import Reader, Writer
from dag_factory.specs.timing import parse_duration

log = logging.getLogger(__name__)

def live_ttl() -> timedelta:
    """How long a snapshot counts as fresh ($DAG_FACTORY_LIVE_TTL, default 1h)."""
    return parse_duration(settings.LIVE_TTL.get())


def missing_limit() -> int:
    """Complete listings in a row a model may be missing before its DAGs go (default 3)."""
    return max(1, int(settings.MISSING_LISTINGS.get()))


class StaleLiveData(Exception):
    """The backend could not be read and the stored data is past its expiry."""


def sync_once(client: BackendClient, read: Reader, write: Writer,
              now: datetime | None = None) -> snapshot.SyncReport:
    """List, plan, write. A failing page raises before anything is written: a partial
    listing never replaces a complete one."""
    now = now or datetime.now(timezone.utc)
    try:
        listing = client.list_models(limit=int(settings.SYNC_PAGE_SIZE.get()))
    except BackendError as exc:
        old = snapshot.parse(read())
        if old is not None and snapshot.expired(old, now):
            raise StaleLiveData(
                f"live data is STALE: it expired at {old.get('expires_at')} (last sync {old.get('synced_at')}); "
                f"DAGs keep using it. The backend listing failed: {exc}") from exc
        raise
    new, report = snapshot.plan(snapshot.parse(read()), listing, now, ttl=live_ttl(), missing_limit=missing_limit())
    if report.written:
        write(json.dumps(new, sort_keys=True, indent=1))
    return report


def sync_task(conn_id: str, dags_dir: str | None = None) -> dict[str, Any]:
    """The sync DAG's task: its return value (XCom) is the run's summary. Afterwards (also when
    the backend could not be read) it asks for a re-parse of the entry files whose inputs
    changed: see dag_factory.live.reparse."""
    from dag_factory.live.reparse import request_reparse
    from dag_factory.live.store import sdk_read, sdk_write

    try:
        with BackendClient.from_connection(conn_id) as client:
            report = sync_once(client, sdk_read, sdk_write)
    finally:
        specs_dir = specs_dir_for(os.path.join(dags_dir, f"{ENTRY_STEM}.py")) if dags_dir else None
        reparse = request_reparse(dags_dir, specs_dir, _stored_snapshot(sdk_read),
                                  confirm_after=reparse_confirm_after())
    for line in report.lines():
        (log.warning if line.startswith("REJECTED") else log.info)("%s", line)
    return {"written": report.written, "reason": report.reason, "added": list(report.added),
            "changed": list(report.changed), "retired": list(report.retired),
            "removed_after_missing": list(report.removed_missing), "missing": dict(report.missing),
            "rejected": dict(report.rejected), "reparse": reparse}


def _stored_snapshot(read: Reader) -> dict[str, Any] | None:
    try:
        return snapshot.parse(read())
    except Exception:  # noqa: BLE001 - only decides whether to ask for a re-parse
        log.warning("could not read the live snapshot to see what changed", exc_info=True)
        return None


def reparse_confirm_after() -> float:
    """Half the sync interval (at least 30 s): a re-parse asked for this long after a change
    cannot be swallowed by a parse that started before the change."""
    return max(30.0, parse_duration(settings.SYNC_INTERVAL.get()).total_seconds() / 2)
