"""The entry file's one call: specs -> DAG objects in the module's globals.

Never raises for one bad spec: good specs become DAGs, bad ones become invalid-spec DAGs.
A worker that parses the file to run one task builds only that task's DAG.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, MutableMapping

from dag_factory.builders.common import config_read_once
from dag_factory.builders.gc_scope import paused_gc
from dag_factory.builders.invalid import build_invalid_dag, invalid_dag_id
from dag_factory.kinds import KINDS, split_dag_id
from dag_factory.layout import Shard, check_shard, in_shard, select, specs_dir_for
from dag_factory.live import snapshot
from dag_factory.live.fleet import FleetModel, plan_fleet, shard_snapshot, spec_name_of
from dag_factory.live.store import sdk_read
from dag_factory.runtime.live import remember_task_start
from dag_factory.settings import INVALID_DAG_PREFIX, LIVE_VARIABLE
from dag_factory.specs.cache import SpecCache
from dag_factory.specs.errors import SpecError
from dag_factory.specs.loader import LoadResult, discover, load_specs

log = logging.getLogger(__name__)


def build_dags(result: LoadResult, snap: Mapping[str, Any] | None = None, only: str | None = None,
               shard: Shard | None = None) -> dict[str, Any]:
    """DAG id -> DAG for every model of the fleet and every invalid file (or just `only`),
    of one `shard` of the fleet when the fleet is split across entry files."""
    dags: dict[str, Any] = {}
    by_file: dict[str, list[SpecError]] = {}
    for error in result.errors:
        by_file.setdefault(error.file, []).append(error)
    fleet, problems = plan_fleet(result.by_name(), _only_model(shard_snapshot(snap, shard), only))
    for problem in problems:
        log.warning("dag_factory: %s", problem)
    failed: set[str] = set()
    with config_read_once():  # Airflow's per-DAG config defaults, read once
        for model in fleet:
            if model.spec.source in failed or not in_shard(model.spec.name, shard):
                continue
            built, error = _model_dags(model, only)
            if error is not None:
                by_file.setdefault(model.spec.source, []).append(error)
                failed.add(model.spec.source)
            dags.update(built)
    # One invalid-spec DAG per id: files whose ids coincide (`x.yaml` and `x.yml`, `a b.yaml` and
    # `a_b.yaml`) share it, so neither file's errors are lost.
    invalid: dict[str, tuple[list[str], list[SpecError]]] = {}
    for file, errors in sorted(by_file.items()):
        if in_shard(Path(file).stem, shard):
            files, merged = invalid.setdefault(invalid_dag_id(file), ([], []))
            files.append(file)
            merged.extend(errors)
    for dag_id, (files, errors) in invalid.items():
        if only is not None and only != dag_id:
            continue
        try:
            dags[dag_id] = build_invalid_dag(" + ".join(files), errors)
        except Exception:  # noqa: BLE001 - one file's report must not take every other DAG down
            log.exception("dag_factory: could not build the invalid-spec DAG %s for %s", dag_id, files)
    return dags


def _model_dags(model: FleetModel, only: str | None) -> tuple[dict[str, Any], SpecError | None]:
    """The model's DAGs (or just `only`): all of them, or none and why (one failed to build)."""
    built = {}
    for kind in model.spec.kinds:
        dag_id = model.spec.dag_id(kind, model.name)
        if only is not None and only != dag_id:
            continue
        try:
            built[dag_id] = KINDS[kind].build(model)
        except Exception as exc:  # noqa: BLE001 - e.g. a custom operator refusing its kwargs
            log.exception("building %s from %s failed", dag_id, model.spec.source)
            return {}, SpecError(model.spec.source, f"building {dag_id} failed: {type(exc).__name__}: {exc}",
                                 code="build", hint="check the custom steps' operator arguments")
    return built, None


def _only_model(snap: Mapping[str, Any] | None, only: str | None) -> Mapping[str, Any] | None:
    """A task-run parse loads one spec; plan only that DAG's live model, not the whole fleet."""
    if snap is None or only is None:
        return snap
    model = only.rpartition("__")[0]
    return {**snap, "models": {k: v for k, v in (snap.get("models") or {}).items() if k == model}}


def _files_for(dag_id: str, specs_dir: Path, snap: Mapping[str, Any] | None) -> list[Path] | None:
    """The one spec file a DAG id needs, or None when the whole folder must be read."""
    stem = dag_id[len(INVALID_DAG_PREFIX):] if dag_id.startswith(INVALID_DAG_PREFIX) else None
    if stem is None:
        if (parts := split_dag_id(dag_id)) is None:
            return None
        stem = spec_name_of(parts[0], snap)
    found = [p for p in (specs_dir / f"{stem}.yaml", specs_dir / f"{stem}.yml") if p.is_file()]
    return found or None


def read_live_snapshot() -> dict[str, Any] | None:
    """The one Variable read of a parse. No snapshot yet (first start) or an unreadable one:
    DAGs come from the specs alone, and the log says so. Never raises."""
    try:
        raw = sdk_read()
    except Exception:  # noqa: BLE001 - live data is optional at parse time; specs are not
        log.exception("dag_factory: could not read Variable %s; building from the specs alone", LIVE_VARIABLE)
        return None
    snap = snapshot.parse(raw)
    if snap is None:
        log.info("dag_factory: %s Variable %s; building DAGs from the specs alone",
                 "no" if raw is None else "unreadable", LIVE_VARIABLE)
    elif snapshot.expired(snap, datetime.now(timezone.utc)):
        log.warning("dag_factory: live data expired at %s; still using it (see the sync DAG)", snap.get("expires_at"))
    return snap


def register_dags(namespace: MutableMapping[str, Any], specs_dir: str | os.PathLike | None = None,
                  shard: Shard | None = None) -> dict[str, Any]:
    """Build the DAGs and put them into `namespace` (the entry file's globals()).
    `shard=(i, K)`: only the i-th of K parts of the fleet (see dag_factory.layout)."""
    from airflow.sdk import get_parsing_context

    shard = check_shard(shard)
    folder = Path(specs_dir) if specs_dir else specs_dir_for(namespace.get("__file__"))
    wanted = get_parsing_context().dag_id
    with paused_gc(wanted):  # nothing built is garbage: see gc_scope (DAG_FACTORY_PARSE_GC)
        snap = read_live_snapshot()
        if wanted:
            remember_task_start(snap)  # the task reads live values from this read, not a second one
        paths = (_files_for(wanted, folder, snap) if wanted else None) or \
            ([folder] if shard is None else select(discover([folder]), shard))
        # the dag-processor's parses re-read the same files: skip the YAML of unchanged ones
        cache = None if wanted else SpecCache.open(folder, shard)
        result = load_specs(paths, check_imports=False, cache=cache).relative_to(folder.parent)
        if result.errors:
            log.warning("dag_factory: %d invalid spec file(s) in %s: %s", len(result.invalid_files), folder,
                        ", ".join(result.invalid_files))
        dags = build_dags(result, snap, only=wanted, shard=shard)
        if cache is not None:  # a full parse: what it cost, in the processor's log of this file
            log.info("dag_factory: %d DAGs from %s (%s)", len(dags), folder, cache.summary())
        if entry_file := namespace.get("__file__"):
            for dag in dags.values():
                dag.fileloc = str(entry_file)  # what DagBag would set; right for dag.test() users too
    namespace.update(dags)
    return dags
