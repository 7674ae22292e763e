"""The plugin's Airflow edge: the specs folder, the one live-data Variable and the metadata DB,
turned into the rows of `dag_factory.live.status` (the function `dag-factory status` uses too).

No call to the model backend. Per page load: a stat of the specs folder (the parsed specs are
kept while no file changed), one Variable read, and the few queries of `dag_factory.live.facts`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from dag_factory.kinds import KINDS, split_dag_id
from dag_factory.layout import ENTRY_STEM, specs_dir_for
from dag_factory.live import snapshot
from dag_factory.live.facts import FleetFacts, read_facts
from dag_factory.live.status import fleet_state
from dag_factory.settings import INVALID_DAG_PREFIX, LIVE_VARIABLE
from dag_factory.specs.loader import LoadResult, load_specs

RECENT_RUNS = 5  # runs per DAG on the Model tab


def specs_folder() -> Path:
    """$DAG_FACTORY_SPECS, else specs/ beside the DAGs folder (as the entry file finds it)."""
    from airflow.configuration import conf

    return specs_dir_for(Path(conf.get("core", "dags_folder")) / f"{ENTRY_STEM}.py")


class _SpecsCache:
    """The last load of the specs folder, reused while no file in it changed (size, mtime)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._result: LoadResult | None = None

    @staticmethod
    def _stamp(folder: Path) -> tuple:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return (str(folder), None)
        stats = []
        for entry in entries:
            try:
                st = entry.stat()
            except OSError:
                continue
            stats.append((entry.name, st.st_mtime_ns, st.st_size))
        return (str(folder), tuple(stats))

    def load(self, folder: Path) -> LoadResult:
        key = self._stamp(folder)
        with self._lock:
            if key == self._key and self._result is not None:
                return self._result
        result = load_specs([folder], check_imports=False).relative_to(folder.parent)
        with self._lock:
            self._key, self._result = key, result
        return result


_specs = _SpecsCache()


def load_fleet_specs(folder: Path | None = None) -> tuple[Path, LoadResult]:
    folder = folder or specs_folder()
    return folder, _specs.load(folder)


class _SnapshotCache:
    """The parsed snapshot of the Variable's stored (encrypted) text: decrypting and parsing
    ~400 KB for 1,000 models took ~0.1 s per page load, most of it in Variable.get's secret
    masking; a page load now reads the row and compares it with the last one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stored: str | None = None
        self._parsed: dict[str, Any] | None = None

    def read(self) -> dict[str, Any] | None:
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session
        from sqlalchemy import select

        from dag_factory.live.store import db_read

        with create_session(scoped=False) as session:
            row = session.scalars(select(Variable).where(Variable.key == LIVE_VARIABLE)).first()
            if row is None:  # not in the metastore: an env var or a secrets backend may have it
                return snapshot.parse(db_read())
            stored = row._val
            with self._lock:
                if stored == self._stored:
                    return self._parsed
            parsed = snapshot.parse(row.val)
        with self._lock:
            self._stored, self._parsed = stored, parsed
        return parsed


_snapshot = _SnapshotCache()


def read_snapshot() -> dict[str, Any] | None:
    """The live snapshot (the one Variable), parsed; the same object while the Variable is unchanged
    (callers must not modify it)."""
    return _snapshot.read()


def _facts_reader(only: set[str] | None = None):
    def read(dag_ids: Mapping[str, Sequence[str]]) -> FleetFacts:
        from airflow.utils.session import create_session

        wanted = {k: [d for d in v if only is None or d in only] for k, v in dag_ids.items()}
        with create_session(scoped=False) as session:
            return read_facts(session, wanted)
    return read


def fleet(folder: Path | None = None) -> dict[str, Any]:
    """The Models page's data: `fleet_view` of the specs, the live snapshot and the DB."""
    _, result = load_fleet_specs(folder)
    return fleet_state(result, read_snapshot(), _facts_reader())


def recent_runs(dag_ids: Sequence[str], limit: int = RECENT_RUNS) -> dict[str, list[dict[str, Any]]]:
    """dag_id -> its last `limit` runs, newest first."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    out: dict[str, list[dict[str, Any]]] = {}
    with create_session(scoped=False) as session:
        for dag_id in dag_ids:
            query = (select(DagRun.run_id, DagRun.state, DagRun.run_type, DagRun.start_date, DagRun.end_date)
                     .where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(limit))
            out[dag_id] = [{"run_id": r.run_id, "state": str(r.state) if r.state else None,
                            "run_type": str(r.run_type) if r.run_type else None,
                            "start_date": r.start_date.isoformat(timespec="seconds") if r.start_date else None,
                            "end_date": r.end_date.isoformat(timespec="seconds") if r.end_date else None}
                           for r in session.execute(query)]
    return out


def model_for_dag(dag_id: str) -> str | None:
    """The model (or, for an invalid-spec DAG, the spec file stem) a DAG id belongs to."""
    if dag_id.startswith(INVALID_DAG_PREFIX):
        return dag_id[len(INVALID_DAG_PREFIX):]
    parts = split_dag_id(dag_id)
    return parts[0] if parts else None


def model_dag_ids(model: str) -> list[str]:
    """Every DAG id a model can have (one per kind): what reading its Model tab needs access to."""
    return [f"{model}__{k.suffix}" for k in KINDS.values()] if model else []


def model_detail(model: str, folder: Path | None = None) -> dict[str, Any] | None:
    """The Model tab's data: the model's row, its spec as written and resolved, its live record,
    and its DAGs' recent runs; None when neither a spec nor live data knows the name."""
    from dag_factory.specs.resolved import resolve_file

    folder, result = load_fleet_specs(folder)
    snap = read_snapshot()
    own = set(model_dag_ids(model))
    rows = fleet_state(result, snap, _facts_reader(own))["models"]
    row = next((r for r in rows if r["model"] == model), None)
    if row is None:
        return None
    detail: dict[str, Any] = {"row": row, "live_record": ((snap or {}).get("models") or {}).get(model),
                              "runs": recent_runs(row["dag_ids"]), "spec": None}
    spec_file = row.get("spec_file")
    if spec_file:  # only a file of the specs folder itself, read as the loader reads specs
        detail["spec"] = {"file": spec_file, **resolve_file(folder / Path(spec_file).name)}
    return detail
