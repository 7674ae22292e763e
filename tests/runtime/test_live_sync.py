"""The sync DAG keeps the live snapshot in step with the backend; the entry file follows it.

Runs the real sync DAG (dag.test, real HTTP), then parses dags/ two ways: with the real
dag-processor (a supervised parse: Variables come from the metadata DB) and with a plain DagBag
fed by AIRFLOW_VAR_DAG_FACTORY_LIVE_MODELS (outside supervision the SDK reads only env vars).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dag_factory.settings import LIVE_VARIABLE
from tests.runtime.dag_runs import airflow_variable, clear_variables
from tests.support import DAGS, PROJECT, ROOT

SYNC = "dag_factory_backend_sync"
EU = {"name": "churn_eu", "spec": "churn_predictor", "status": "active", "version": "v3",
      "updated_at": "2026-11-27T10:00:00Z", "streaming": {"partitions": [0, 1], "batch_size": 10}}


@pytest.fixture(autouse=True)
def no_snapshot(airflow_db):
    clear_variables(LIVE_VARIABLE)
    yield
    clear_variables(LIVE_VARIABLE)


def stored() -> dict | None:
    raw = airflow_variable(LIVE_VARIABLE)
    return json.loads(raw) if raw else None


def dagbag_schedules(with_env_snapshot: bool = True) -> dict[str, str]:
    """dag_id -> schedule summary, parsed outside supervision with the stored snapshot as env var."""
    env = dict(os.environ)
    if with_env_snapshot and (raw := airflow_variable(LIVE_VARIABLE)):
        env["AIRFLOW_VAR_DAG_FACTORY_LIVE_MODELS"] = raw
    code = ("import json\nfrom airflow.dag_processing.dagbag import DagBag\n"
            f"bag = DagBag(dag_folder={str(DAGS)!r})\nassert not bag.import_errors, bag.import_errors\n"
            "print('DAGS ' + json.dumps({d: str(v.schedule) for d, v in bag.dags.items()}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    line = [x for x in out.stdout.splitlines() if x.startswith("DAGS ")]
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(line[-1][5:])


def dag_processor_dag_ids() -> set[str]:
    """One real dag-processor pass over dags/, then the DAGs it left active in the DB."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "dag-processor", "-n", "1"], cwd=ROOT, env=os.environ.copy(),
                   capture_output=True, timeout=240, check=True)
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return {d for (d,) in session.query(DagModel.dag_id).filter(DagModel.is_stale.is_(False))}


def model_dags(ids) -> set[str]:
    return {d for d in ids if "__" in d and not d.startswith("dag_factory_invalid")}


def test_first_sync_creates_the_live_models_dags_in_the_dag_processor(run_dag, backend):
    before = dag_processor_dag_ids()
    assert "churn_eu__train" not in before and "churn_predictor__train" in before  # specs alone
    backend.admin("POST", "/models", EU)
    result = run_dag(SYNC)
    assert result.state == "success", result
    assert "wrote the snapshot (content changed)" in result.log and "added: churn_eu" in result.log
    assert set(stored()["models"]) == {"churn_eu", "churn_predictor", "demand_forecast", "fraud_scorer"}
    after = dag_processor_dag_ids()
    assert {"churn_eu__train", "churn_eu__deploy", "churn_eu__stream", SYNC} <= after
    assert model_dags(dagbag_schedules()) == model_dags(after)


def test_no_snapshot_builds_from_specs_and_says_so(fast_specs):
    env_free = subprocess.run(
        [sys.executable, "-c", f"from airflow.dag_processing.dagbag import DagBag; DagBag(dag_folder={str(DAGS)!r})"],
        cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert "no Variable dag_factory_live_models; building DAGs from the specs alone" in env_free.stdout + env_free.stderr


def _age(paths, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    for path in paths:
        os.utime(path, (when, when))


def test_an_unchanged_listing_writes_nothing(run_dag, backend, fast_specs):
    entry = DAGS / "model_dags.py"
    _age(fast_specs.iterdir(), 2000)
    _age([fast_specs], 2000)
    _age([entry], 1000)  # parsed after the specs last changed
    try:
        assert run_dag(SYNC).state == "success"
        touched = entry.stat().st_mtime
        assert touched > time.time() - 100  # the live change asked the dag-processor to re-parse
        first = airflow_variable(LIVE_VARIABLE)
        result = run_dag(SYNC)
        assert result.state == "success" and "no write (unchanged and fresh)" in result.log
        assert airflow_variable(LIVE_VARIABLE) == first
        assert entry.stat().st_mtime == touched  # no change, no new request (the confirming
        # request comes one run later, half a sync interval after the change: tests/live)
    finally:
        os.utime(entry)


def test_a_spec_edited_since_the_last_parse_asks_for_a_re_parse(run_dag, backend, fast_specs):
    entry = DAGS / "model_dags.py"
    _age(fast_specs.iterdir(), 3000)
    _age([fast_specs], 3000)
    assert run_dag(SYNC).state == "success"  # live data written (a change: the entry is touched)
    _age([entry], 1000)  # ... long ago, and the live change with it:
    changed = json.loads(airflow_variable(LIVE_VARIABLE))
    changed["changed_at"] = "2001-01-01T00:00:00+00:00"
    changed["dag_changes"] = {"*": "2001-01-01T00:00:00+00:00"}
    from dag_factory.live.store import db_write
    db_write(json.dumps(changed))
    try:
        assert run_dag(SYNC).state == "success"
        quiet = entry.stat().st_mtime
        assert quiet < time.time() - 900  # nothing new
        _age([fast_specs / "demand_forecast.yaml"], 10)  # edited after the last parse
        result = run_dag(SYNC)
        assert result.state == "success" and "asked the dag-processor to re-parse model_dags.py (touch)" in result.log
        assert entry.stat().st_mtime > quiet
    finally:
        os.utime(entry)


def test_models_appear_retire_and_survive_one_missing_listing(run_dag, backend, monkeypatch):
    monkeypatch.setenv("DAG_FACTORY_MISSING_LISTINGS", "2")
    backend.admin("POST", "/models", EU)
    assert run_dag(SYNC).state == "success"
    assert "churn_eu__stream" in dagbag_schedules()
    backend.admin("PATCH", "/models/demand_forecast", {"status": "retired"})
    backend.admin("DELETE", "/models/churn_eu")
    assert run_dag(SYNC).state == "success"
    dags = dagbag_schedules()
    assert "demand_forecast__train" not in dags  # retired: gone although its spec exists
    assert "churn_eu__stream" in dags and stored()["missing"] == {"churn_eu": 1}  # missing once: kept
    assert run_dag(SYNC).state == "success"
    assert "churn_eu__stream" not in dagbag_schedules()  # missing twice: gone


def test_a_failing_page_changes_nothing(run_dag, backend, monkeypatch):
    assert run_dag(SYNC).state == "success"
    before = airflow_variable(LIVE_VARIABLE)
    backend.admin("POST", "/models", EU)
    monkeypatch.setenv("DAG_FACTORY_SYNC_PAGE_SIZE", "1")
    backend.admin("POST", "/faults", {"path_prefix": "/api/v1/models", "method": "GET", "status": 500,
                                      "skip": 2, "count": 50})
    result = run_dag(SYNC)
    assert result.state == "failed"
    assert "GET /api/v1/models failed (HTTP 500)" in result.log
    assert airflow_variable(LIVE_VARIABLE) == before


def test_a_bad_record_is_skipped_and_its_model_keeps_its_data(run_dag, backend):
    assert run_dag(SYNC).state == "success"
    backend.admin("PATCH", "/models/churn_predictor", {"version": {"$gt": ""}})
    backend.admin("POST", "/models", {"name": "{{ var.value.secret }}", "status": "active", "version": "v1",
                                      "updated_at": "2026-11-27T10:00:00Z"})
    result = run_dag(SYNC)
    assert result.state == "success"
    assert "REJECTED record churn_predictor: version: expected string, got object" in result.log
    assert "REJECTED record {{ var.value.secret }}: name:" in result.log
    assert stored()["models"]["churn_predictor"]["version"] == "v1"
    assert "churn_predictor__train" in dagbag_schedules()


def test_an_expired_snapshot_still_builds_dags_and_the_sync_says_stale(run_dag, backend, monkeypatch):
    monkeypatch.setenv("DAG_FACTORY_LIVE_TTL", "2s")
    backend.admin("POST", "/models", EU)
    assert run_dag(SYNC).state == "success"
    time.sleep(2.5)
    backend.stop()
    result = run_dag(SYNC)
    assert result.state == "failed"
    assert "live data is STALE: it expired at" in result.log
    assert "churn_eu__train" in dagbag_schedules()


def test_paused_models_keep_their_dags_without_a_schedule(run_dag, backend):
    backend.admin("PATCH", "/models/churn_predictor", {"status": "paused"})
    backend.admin("PATCH", "/models/fraud_scorer", {"training": {"schedule": "@hourly"}})
    assert run_dag(SYNC).state == "success"
    dags = dagbag_schedules()
    assert dags["churn_predictor__train"] == dags["churn_predictor__stream"] == "None"
    assert dags["demand_forecast__train"] == "@weekly" and dags["fraud_scorer__train"] == "@hourly"
    assert dags["churn_predictor__deploy"] == "None" and dags["demand_forecast__deploy"] != "None"


def test_live_text_reaches_the_backend_literally(run_dag, backend):
    from airflow.models.variable import Variable

    Variable.set("secret", "LEAKED")
    injected = "{{ var.value.secret }}"
    backend.admin("PATCH", "/models/churn_predictor", {"training": {"dataset_uri": injected,
                                                                    "hyperparameters": {"note": "$(rm -rf /)"}}})
    assert run_dag(SYNC).state == "success"
    assert run_dag("churn_predictor__train").state == "success"
    [job] = backend.admin("GET", "/jobs", params={"model": "churn_predictor", "kind": "training"})["jobs"]
    assert job["request"]["dataset_uri"] == injected
    assert job["request"]["hyperparameters"] == {"note": "$(rm -rf /)"}


def test_live_values_reach_the_tasks_at_run_time(run_dag, backend):
    backend.admin("POST", "/models", EU)
    assert run_dag(SYNC).state == "success"
    result = run_dag("churn_eu__stream")
    assert result.state == "success", result
    assert set(result.tasks) == {"plan_partitions", "process_partition[0]", "process_partition[1]"}
    assert backend.admin("GET", "/streams/churn_eu")["0"]["processed"] == 10
    deploy = run_dag("churn_eu__deploy")  # no conf, no asset event: the backend's current version
    assert deploy.state == "success", deploy
    assert {d["model_version"] for d in backend.admin("GET", "/jobs", params={"model": "churn_eu"})["jobs"]} == {"v3"}


def test_sync_and_status_commands(backend):
    backend.admin("POST", "/models", EU)
    cli = [sys.executable, "-m", "dag_factory.cli"]
    done = subprocess.run([*cli, "sync"], cwd=PROJECT, env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote the snapshot (content changed)" in done.stdout and "added: churn_eu" in done.stdout
    again = subprocess.run([*cli, "sync"], cwd=PROJECT, env=os.environ.copy(), capture_output=True, text=True, timeout=120)
    assert "no write (unchanged and fresh)" in again.stdout
    status = subprocess.run([*cli, "status", "--format", "json"], cwd=PROJECT, env=os.environ.copy(),
                            capture_output=True, text=True, timeout=120)
    rows = {r["model"]: r for r in json.loads(status.stdout)}
    assert rows["churn_eu"]["spec"] == "churn_predictor" and rows["churn_eu"]["version"] == "v3"
    assert rows["churn_eu"]["dag_ids"] == ["churn_eu__train", "churn_eu__deploy", "churn_eu__stream"]
    assert rows["churn_predictor"]["status"] == "active"
