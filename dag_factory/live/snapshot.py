"""The live snapshot: every live model's last good record, in one JSON document.

It is stored as ONE Airflow Variable, so the entry file reads live data with one Variable read
whatever the model count, and a reader never sees half a sync (one row is written at once):

    {"format": 1, "content_hash": "...", "changed_at": "...", "synced_at": "...", "expires_at": "...",
     "models": {"<name>": {<record>}, ...},      # active and paused models, by name
     "retired": ["<name>", ...],                 # DAGs removed
     "missing": {"<name>": <consecutive complete listings without it>},
     "rejected": {"<name>": "<why the last listing's record was skipped>"},
     "dag_changes": {"<spec name>" or "*": "<when>"}}  # see next_dag_changes()

Most live changes (a new version, datasets, partitions) are read by the tasks at run time and
change no DAG. `dag_changes` says which specs' DAGs a change did touch, so the sync asks to
re-parse only the entry files that build them (dag_factory.live.reparse).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from dag_factory.live.fleet import dag_inputs
from dag_factory.live.records import record_name, record_problem

FORMAT = 1
ALL_SPECS = "*"  # a dag_changes key: every spec's DAGs may have changed
DAG_CHANGES_KEPT = timedelta(days=1)  # far longer than a re-parse request and its confirmation take
DAG_CHANGES_MAX = 256  # more specs touched at once: one "*" entry instead


@dataclass(frozen=True)
class SyncReport:
    """What one sync changed, for the task log, the run summary and `dag-factory sync`."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()
    removed_missing: tuple[str, ...] = ()
    missing: Mapping[str, int] = field(default_factory=dict)
    rejected: Mapping[str, str] = field(default_factory=dict)
    kept: tuple[str, ...] = ()  # rejected models whose last good record is kept
    unserved: tuple[str, ...] = ()  # rejected models with no good record at all: no DAGs from them
    written: bool = False
    reason: str = ""

    def lines(self) -> list[str]:
        out = [f"wrote the snapshot ({self.reason})" if self.written else f"no write ({self.reason})"]
        for label, names in (("added", self.added), ("changed", self.changed), ("retired", self.retired),
                             ("removed after missing", self.removed_missing)):
            if names:
                out.append(f"{label}: {', '.join(names)}")
        for name, count in sorted(self.missing.items()):
            out.append(f"missing from the listing ({count}x, DAGs kept): {name}")
        for name, why in sorted(self.rejected.items()):
            then = (" (its last good data is kept)" if name in self.kept
                    else " (it never had good data, so no DAGs come from it)" if name in self.unserved else "")
            out.append(f"REJECTED record {name}: {why}{then}")
        return out


def empty() -> dict[str, Any]:
    return {"format": FORMAT, "models": {}, "retired": [], "missing": {}, "rejected": {}}


def parse(raw: str | None) -> dict[str, Any] | None:
    """The stored snapshot, or None when there is none or it is unreadable."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
        return None
    return data


def content_hash(snapshot: Mapping[str, Any]) -> str:
    """Hash of what DAGs and tasks depend on; freshness times are left out."""
    content = {k: snapshot.get(k) for k in ("models", "retired", "missing", "rejected")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _ts(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


def changed_at(snapshot: Mapping[str, Any] | None) -> float | None:
    """Epoch seconds of the last content change, None when unknown."""
    try:
        return datetime.fromisoformat((snapshot or {})["changed_at"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def _dag_state(name: str, record: Mapping[str, Any] | None, retired: bool) -> tuple[Any, ...] | str | None:
    """A model's DAG-shaping live data (dag_factory.live.fleet.dag_inputs), "retired", or None."""
    return "retired" if retired else None if record is None else dag_inputs(name, record)


def specs_with_dag_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    """The specs whose DAGs differ between two snapshots' live data: a model added, removed,
    retired or un-retired, paused or resumed, given another schedule or another spec (both
    specs count). A new version or dataset is read at run time and touches no DAG."""
    old_models, new_models = old.get("models") or {}, new.get("models") or {}
    old_retired, new_retired = set(old.get("retired") or ()), set(new.get("retired") or ())
    touched: set[str] = set()
    for name in set(old_models) | set(new_models) | old_retired | new_retired:
        before = _dag_state(name, old_models.get(name), name in old_retired)
        after = _dag_state(name, new_models.get(name), name in new_retired)
        if before != after:
            touched.add(name)  # a spec's own model (and retirement goes by the spec's name)
            touched.update(inputs[0] for inputs in (before, after) if isinstance(inputs, tuple))
    return touched


def next_dag_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any], now: datetime) -> dict[str, str]:
    """`dag_changes` after a write: the old entries younger than DAG_CHANGES_KEPT, and `now`
    for every spec this change touched (`*` for a first snapshot or a very large change)."""
    if old is None or "dag_changes" not in old:
        touched: set[str] = {ALL_SPECS}
    else:
        touched = specs_with_dag_changes(old, new)
        if len(touched) > DAG_CHANGES_MAX:
            touched = {ALL_SPECS}
    kept = {}
    for spec, when in ((old or {}).get("dag_changes") or {}).items():
        try:
            if datetime.fromisoformat(when) > now - DAG_CHANGES_KEPT:
                kept[spec] = when
        except (TypeError, ValueError):
            continue
    kept.update(dict.fromkeys(touched, _ts(now)))
    return dict(sorted(kept.items()))


def dag_changed_at(snapshot: Mapping[str, Any] | None, in_scope: Callable[[str], bool]) -> float | None:
    """Epoch seconds of the last live change to the DAGs of the specs `in_scope` accepts, None
    when there was none. A snapshot without `dag_changes` (written by an older version) says
    only when anything changed: that time."""
    if not snapshot:
        return None
    changes = snapshot.get("dag_changes")
    if not isinstance(changes, dict):
        return changed_at(snapshot)
    newest = None
    for spec, when in changes.items():
        if spec == ALL_SPECS or in_scope(spec):
            try:
                at = datetime.fromisoformat(when).timestamp()
            except (TypeError, ValueError):
                continue
            newest = at if newest is None else max(newest, at)
    return newest


def expired(snapshot: Mapping[str, Any], now: datetime) -> bool:
    try:
        return datetime.fromisoformat(snapshot["expires_at"]) <= now
    except (KeyError, TypeError, ValueError):
        return True


def plan(old: Mapping[str, Any] | None, listing: list[Any], now: datetime, *,
         ttl: timedelta, missing_limit: int) -> tuple[dict[str, Any], SyncReport]:
    """The snapshot after one COMPLETE listing, and what changed. Pure.

    Bad records are skipped and their model keeps its old record; a model missing from the
    listing keeps its DAGs until it was missing `missing_limit` listings in a row.
    """
    old_was_empty = old is None
    old = dict(old or empty())
    old_models: dict[str, Any] = dict(old.get("models") or {})
    models: dict[str, Any] = {}
    retired: set[str] = set()
    rejected: dict[str, str] = {}
    seen: set[str] = set()
    for index, record in enumerate(listing):
        if why := record_problem(record):
            name = record_name(record, index)
            rejected[name] = why
            seen.add(name)
            if name in old_models:
                models[name] = old_models[name]
            continue
        name = record["name"]
        if name in seen:
            rejected[name] = "listed twice; the first record is kept"
            continue
        seen.add(name)
        if record["status"] == "retired":
            retired.add(name)
        else:
            models[name] = record
    missing: dict[str, int] = {}
    removed: list[str] = []
    old_missing = old.get("missing") or {}
    for name, record in old_models.items():
        if name in seen:
            continue
        count = int(old_missing.get(name, 0)) + 1
        if count >= missing_limit:
            removed.append(name)
        else:
            missing[name] = count
            models[name] = record
    new = {"format": FORMAT, "models": dict(sorted(models.items())), "retired": sorted(retired),
           "missing": dict(sorted(missing.items())), "rejected": dict(sorted(rejected.items()))}
    new["content_hash"] = content_hash(new)
    changed_content = new["content_hash"] != old.get("content_hash")
    half_life_passed = expired({"expires_at": old.get("expires_at")}, now + ttl / 2)
    reason = "content changed" if changed_content else (
        "freshness renewed" if half_life_passed else "unchanged and fresh")
    written = changed_content or half_life_passed
    # when the content last changed (not part of the hash): the sync asks for re-parses after it
    new["changed_at"] = _ts(now) if changed_content else old.get("changed_at") or old.get("synced_at")
    new["synced_at"] = _ts(now) if written else old.get("synced_at")
    new["expires_at"] = _ts(now + ttl) if written else old.get("expires_at")
    if changed_content:
        new["dag_changes"] = next_dag_changes(None if old_was_empty else old, new, now)
    elif "dag_changes" in old:
        new["dag_changes"] = old["dag_changes"]
    report = SyncReport(
        added=tuple(sorted(set(models) - set(old_models))),
        changed=tuple(sorted(n for n in models if n in old_models and models[n] != old_models[n])),
        retired=tuple(sorted(retired - set(old.get("retired") or ()))),
        removed_missing=tuple(sorted(removed)),
        missing=missing, rejected=rejected, written=written, reason=reason,
        kept=tuple(sorted(n for n in rejected if n in old_models and n in models)),
        unserved=tuple(sorted(n for n in rejected if n not in models)),
    )
    return new, report
