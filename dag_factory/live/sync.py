"""One sync: read every page of the backend's listing, validate, write the snapshot if needed.

The same function runs in the sync DAG's task and in `dag-factory sync`.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from dag_factory.backend.client import BackendClient, BackendError
from dag_factory.live import snapshot
from dag_factory.live.store import Reader, Writer
from dag_factory.specs.timing import parse_duration

log = logging.getLogger(__name__)

SYNC_DAG_ID = "dag_factory_backend_sync"


def setting(name: str, default: str) -> str:
    return os.environ.get(f"DAG_FACTORY_{name}", default)


def live_ttl() -> timedelta:
    """How long a snapshot counts as fresh ($DAG_FACTORY_LIVE_TTL, default 1h)."""
    return parse_duration(setting("LIVE_TTL", "1h"))


def missing_limit() -> int:
    """Complete listings in a row a model may be missing before its DAGs go (default 3)."""
    return max(1, int(setting("MISSING_LISTINGS", "3")))


class StaleLiveData(Exception):
    """The backend could not be read and the stored data is past its expiry."""


def sync_once(client: BackendClient, read: Reader, write: Writer,
              now: datetime | None = None) -> snapshot.SyncReport:
    """List, plan, write. A failing page raises before anything is written: a partial
    listing never replaces a complete one."""
    now = now or datetime.now(timezone.utc)
    try:
        listing = client.list_models(limit=int(setting("SYNC_PAGE_SIZE", "100")))
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


def request_reparse(entry_file: str | None) -> bool:
    """Touch the entry file so a dag-processor with `file_parsing_sort_mode = modified_time`
    re-parses it now instead of after `min_file_process_interval`. Works where the worker and
    the dag-processor share the DAGs folder (LocalExecutor, a shared volume)."""
    if not entry_file or setting("REPARSE_ON_CHANGE", "true").lower() not in ("1", "true", "yes"):
        return False
    try:
        os.utime(entry_file)
    except OSError as exc:
        log.warning("could not touch %s to request a re-parse: %s", entry_file, exc)
        return False
    log.info("touched %s: the dag-processor re-parses it on its next loop", entry_file)
    return True


def sync_task(conn_id: str, entry_file: str | None = None) -> dict[str, Any]:
    """The sync DAG's task: its return value (XCom) is the run's summary."""
    from dag_factory.live.store import sdk_read, sdk_write

    with BackendClient.from_connection(conn_id) as client:
        report = sync_once(client, sdk_read, sdk_write)
    if report.written and report.reason == "content changed":
        request_reparse(entry_file)
    for line in report.lines():
        (log.warning if line.startswith("REJECTED") else log.info)("%s", line)
    return {"written": report.written, "reason": report.reason, "added": list(report.added),
            "changed": list(report.changed), "retired": list(report.retired),
            "removed_after_missing": list(report.removed_missing), "missing": dict(report.missing),
            "rejected": dict(report.rejected)}
