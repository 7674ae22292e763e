"""What Airflow's metadata DB knows about the fleet, read in a handful of queries per page load.

`FleetFacts` is plain data (tests build it by hand); `read_facts` is the thin edge that fills it
through Airflow's own session and models. Per call, whatever the fleet size:

1. the latest run (the one created last) of every fleet DAG: one grouped query per 500 DAG ids;
2. the latest training runs' `wait_for_training` XCom (metrics, model version): by primary key;
3. per deployment target, the last run whose `deploy_<target>.smoke_test` succeeded, and that
   run's `resolve_version` XCom: the version live on the target;
4. the stream offsets Variables `dag_factory.offsets.<model>.<partition>` (one LIKE query);
5. each entry file's last parse: `DagModel.last_parse_duration` of its DAGs (one LIKE query), and
   the dag-processor's timeouts from Airflow's configuration.

Nothing here calls the model backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

from dag_factory.kinds import KINDS
from dag_factory.layout import ENTRY_FILE_PATTERN, ENTRY_STEM
from dag_factory.settings import OFFSETS_VARIABLE_PREFIX

CHUNK = 500  # ids per IN (...): far below every database's bound-parameter limit


@dataclass(frozen=True)
class FleetFacts:
    """Airflow's side of the fleet, keyed by DAG id (runs, training, deployed) or model (offsets)."""

    runs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # dag_id -> latest run
    training: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # train dag_id -> job result
    deployed: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)  # dag_id -> target -> v
    offsets: Mapping[str, Mapping[int, Mapping[str, Any]]] = field(default_factory=dict)  # model -> partition -> state
    parses: Sequence[Mapping[str, Any]] = ()  # one per entry file: `entry_file_parses`
    timeouts: Mapping[str, float] = field(default_factory=dict)  # `parse_timeouts`


def _chunks(values: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _iso(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _xcom_value(row: Any) -> Any:
    from airflow.models.xcom import XComModel

    return XComModel.deserialize_value(row)


def latest_runs(session: Any, dag_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """dag_id -> its latest run (`id`, `run_id`, `state`, `run_type`, dates as ISO strings)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import func, select

    out: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(dag_ids))):
        latest = (select(func.max(DagRun.id).label("id")).where(DagRun.dag_id.in_(chunk))
                  .group_by(DagRun.dag_id).subquery())
        query = select(DagRun.id, DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.run_type, DagRun.start_date,
                       DagRun.end_date, DagRun.run_after).join(latest, DagRun.id == latest.c.id)
        for row in session.execute(query):
            out[row.dag_id] = {"id": row.id, "run_id": row.run_id, "state": str(row.state) if row.state else None,
                               "run_type": str(row.run_type) if row.run_type else None,
                               "start_date": _iso(row.start_date), "end_date": _iso(row.end_date),
                               "run_after": _iso(row.run_after)}
    return out


def _xcoms(session: Any, run_ids: Iterable[int], task_id: str) -> dict[int, tuple[str, Any]]:
    """dag run id -> (run_id, the task's return value)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    out: dict[int, tuple[str, Any]] = {}
    ids = sorted(set(run_ids))
    for start in range(0, len(ids), CHUNK):
        query = select(XComModel.dag_run_id, XComModel.run_id, XComModel.value).where(
            XComModel.dag_run_id.in_(ids[start:start + CHUNK]), XComModel.task_id == task_id,
            XComModel.key == "return_value", XComModel.map_index == -1)
        for row in session.execute(query):
            out[row.dag_run_id] = (row.run_id, _xcom_value(row))
    return out


def training_results(session: Any, runs: Mapping[str, Mapping[str, Any]], train_ids: Sequence[str]
                     ) -> dict[str, dict[str, Any]]:
    """train dag_id -> `metrics` and `model_version` of its latest run's finished training job."""
    by_run = {runs[d]["id"]: d for d in train_ids if d in runs}
    out = {}
    for run_pk, (_, value) in _xcoms(session, by_run, "wait_for_training").items():
        if isinstance(value, Mapping):
            out[by_run[run_pk]] = {"metrics": dict(value.get("metrics") or {}),
                                   "model_version": value.get("model_version"), "job_id": value.get("id")}
    return out


def deployed_versions(session: Any, deploy_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """deploy dag_id -> target -> {version, run_id} of the last run whose smoke test there passed."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance as TI
    from sqlalchemy import and_, func, select

    last: dict[tuple[str, str], int] = {}
    for chunk in _chunks(sorted(set(deploy_ids))):
        query = (select(TI.dag_id, TI.task_id, func.max(DagRun.id).label("run_pk"))
                 .join(DagRun, and_(DagRun.dag_id == TI.dag_id, DagRun.run_id == TI.run_id))
                 .where(TI.dag_id.in_(chunk), TI.task_id.like("deploy\\_%.smoke\\_test", escape="\\"),
                        TI.state == "success")
                 .group_by(TI.dag_id, TI.task_id))
        for row in session.execute(query):
            target = row.task_id[len("deploy_"):-len(".smoke_test")]
            last[(row.dag_id, target)] = row.run_pk
    versions = _xcoms(session, last.values(), "resolve_version")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (dag_id, target), run_pk in sorted(last.items()):
        if run_pk in versions:
            run_id, version = versions[run_pk]
            out.setdefault(dag_id, {})[target] = {"version": None if version is None else str(version),
                                                  "run_id": run_id}
    return out


# stored (encrypted) value -> parsed state: 3,000 Fernet decryptions were a quarter of a
# 1,000-model page load; a stream run changes only its own partitions' values
_OFFSETS_CACHE: dict[tuple[str, bool], Any] = {}
_OFFSETS_CACHE_MAX = 200_000


def _offset_state(stored: str | None, encrypted: bool) -> dict[str, Any]:
    key = (stored or "", bool(encrypted))
    state = _OFFSETS_CACHE.get(key)
    if state is None:
        if len(_OFFSETS_CACHE) >= _OFFSETS_CACHE_MAX:
            _OFFSETS_CACHE.clear()
        try:
            if encrypted and stored:
                from airflow.models.crypto import get_fernet

                stored = get_fernet().decrypt(stored.encode("utf-8")).decode("utf-8")
            state = json.loads(stored or "")
        except Exception:  # noqa: BLE001 - an undecryptable or broken value is shown, not raised
            state = None
        state = _OFFSETS_CACHE[key] = state if isinstance(state, dict) else {"unreadable": True}
    return dict(state)


def stream_offsets(session: Any, models: Iterable[str] | None = None) -> dict[str, dict[int, dict[str, Any]]]:
    """model -> partition -> committed offset state (`dag_factory.runtime.offsets`)."""
    from airflow.models.variable import Variable
    from sqlalchemy import select

    wanted = None if models is None else set(models)
    prefix = f"{OFFSETS_VARIABLE_PREFIX}."
    out: dict[str, dict[int, dict[str, Any]]] = {}
    query = select(Variable.key, Variable._val, Variable.is_encrypted).where(
        Variable.key.like(prefix.replace("_", "\\_") + "%", escape="\\"))
    for key, stored, encrypted in session.execute(query):
        model, _, partition = key[len(prefix):].rpartition(".")
        if not partition.isdigit() or (wanted is not None and model not in wanted):
            continue
        out.setdefault(model, {})[int(partition)] = _offset_state(stored, encrypted)
    return out


def entry_file_parses(session: Any) -> list[dict[str, Any]]:
    """Each entry file's last parse, from its DAGs' rows (they are written by the same parse):
    `bundle`, `file` (relative to the bundle), `dags`, `models`, `seconds` (the largest
    `last_parse_duration`) and `parsed_at`. One grouped query: for 1,000 models reading the
    2,667 rows themselves took ~40 ms a page load, grouped ~2-7 ms (loaded machine).

    `last_parse_duration` is the processor's run time until the dag-processor's main loop
    collected its result, so it includes the time that loop spent writing other files' DAGs:
    the same clock `dag_file_processor_timeout` is checked against. Stale DAGs (a removed file's)
    do not count. A killed parse writes nothing: the figures then stay those of the last parse
    that finished, and `parsed_at` stops moving."""
    from airflow.models.dag import DagModel
    from sqlalchemy import distinct, func, select

    model = DagModel.dag_id  # <model>__<suffix> -> <model>; an invalid-spec DAG counts as one model
    for kind in KINDS.values():
        model = func.replace(model, f"__{kind.suffix}", "")
    query = (select(DagModel.bundle_name, DagModel.relative_fileloc, func.count().label("dags"),
                    func.count(distinct(model)).label("models"), func.max(DagModel.last_parse_duration).label("seconds"),
                    func.max(DagModel.last_parsed_time).label("parsed_at"))
             .where(DagModel.is_stale.is_(False), DagModel.relative_fileloc.like(f"%{ENTRY_STEM}%.py"))
             .group_by(DagModel.bundle_name, DagModel.relative_fileloc)
             .order_by(DagModel.bundle_name, DagModel.relative_fileloc))
    return [{"bundle": row.bundle_name, "file": row.relative_fileloc, "dags": row.dags, "models": row.models,
             "seconds": None if row.seconds is None else float(row.seconds), "parsed_at": _iso(row.parsed_at)}
            for row in session.execute(query)
            if ENTRY_FILE_PATTERN.match(row.relative_fileloc.replace("\\", "/").rsplit("/", 1)[-1])]


def parse_timeouts() -> dict[str, float]:
    """`processor`: [dag_processor] dag_file_processor_timeout (a file's parse is killed past it);
    `import`: [core] dagbag_import_timeout (the import alone; a cluster policy may change it per file)."""
    from airflow.configuration import conf

    return {"processor": conf.getfloat("dag_processor", "dag_file_processor_timeout", fallback=50.0),
            "import": conf.getfloat("core", "dagbag_import_timeout", fallback=30.0)}


def read_facts(session: Any, dag_ids: Mapping[str, Sequence[str]]) -> FleetFacts:
    """Everything the status rows need from the metadata DB, for the DAG ids of each kind."""
    every = [d for ids in dag_ids.values() for d in ids]
    runs = latest_runs(session, every)
    stream_models = [d.rpartition("__")[0] for d in dag_ids.get("streaming", ())]
    return FleetFacts(runs=runs, training=training_results(session, runs, dag_ids.get("training", ())),
                      deployed=deployed_versions(session, dag_ids.get("deployment", ())),
                      offsets=stream_offsets(session, stream_models), parses=entry_file_parses(session),
                      timeouts=parse_timeouts())


def read_facts_from_db(dag_ids: Mapping[str, Sequence[str]]) -> FleetFacts:
    """`read_facts` in a session of its own (the CLI; the plugin passes its request's session)."""
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:
        return read_facts(session, dag_ids)
