"""Streaming: offsets in Variables, and no record lost or repeated across crashes and retries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.runtime.dag_runs import airflow_variable, clear_variables
from tests.support import DAGS, ROOT

MODEL = "churn_predictor"
DAG_ID = f"{MODEL}__stream"


@pytest.fixture(autouse=True)
def fresh_offsets(airflow_db):
    clear_variables(f"dag_factory.offsets.{MODEL}.")
    yield
    clear_variables(f"dag_factory.offsets.{MODEL}.")


def offset(partition: int) -> dict | None:
    raw = airflow_variable(f"dag_factory.offsets.{MODEL}.{partition}")
    return json.loads(raw) if raw is not None else None


def counts(backend) -> dict:
    return backend.admin("GET", f"/streams/{MODEL}")


def test_each_run_processes_the_next_batch_of_every_partition(run_dag, backend):
    for expected in (99, 199):
        result = run_dag(DAG_ID, {"batch_size": 100})
        assert result.state == "success", result
        assert {k: v for k, v in result.tasks.items() if k.startswith("process")} == \
            {f"process_partition[{i}]": "success" for i in range(4)}
        assert [offset(p)["offset"] for p in range(4)] == [expected] * 4
    stats = counts(backend)
    for p in "0123":
        assert (stats[p]["processed"], stats[p]["duplicates"], stats[p]["missing"], stats[p]["max_offset"]) == \
            (200, 0, 0, 199)


def test_an_empty_batch_does_not_hide_records_that_arrive_later(run_dag, backend):
    backend.admin("PUT", f"/streams/{MODEL}/0", {"length": 150})
    conf = {"batch_size": 100, "partitions": [0]}
    assert run_dag(DAG_ID, conf).state == "success"
    assert run_dag(DAG_ID, conf).state == "success"
    assert offset(0)["offset"] == 149 and offset(0)["empty_polls"] == 0
    assert run_dag(DAG_ID, conf).state == "success"  # nothing new
    assert offset(0)["offset"] == 149 and offset(0)["empty_polls"] == 1
    backend.admin("POST", f"/streams/{MODEL}/0/append", {"count": 30})
    assert run_dag(DAG_ID, conf).state == "success"
    assert offset(0)["offset"] == 179
    assert (counts(backend)["0"]["processed"], counts(backend)["0"]["duplicates"]) == (180, 0)


def test_a_task_killed_after_the_backend_processed_a_batch_loses_and_repeats_nothing(run_dag, backend, tmp_path):
    """The worker dies between the backend's answer and the offset commit; the retry asks
    again with the same idempotency key and commits the first answer."""
    conf = {"batch_size": 100, "partitions": [0]}
    assert run_dag(DAG_ID, conf).state == "success"  # offsets 0..99 committed
    backend.admin("POST", "/faults", {"path_prefix": f"/api/v1/models/{MODEL}/stream-batches",
                                      "method": "POST", "delay_after": 60})
    code = ("import json, sys\n"
            "from dag_factory.builders.register import register_dags\n"
            f"dags = register_dags({{'__file__': {str(DAGS / 'model_dags.py')!r}}})\n"
            f"dags[{DAG_ID!r}].test(run_conf=json.loads(sys.argv[1]))\n")
    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([sys.executable, "-c", code, json.dumps(conf)], cwd=ROOT, env=os.environ.copy(),
                              stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while counts(backend).get("0", {}).get("processed", 0) < 200 and time.monotonic() < deadline:
            assert worker.poll() is None, "the run ended before it could be killed:\n" + \
                (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
        assert counts(backend)["0"]["processed"] == 200, "the backend never processed the second batch"
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        worker_log.close()
    assert offset(0)["offset"] == 99  # processed by the backend, never committed
    backend.admin("DELETE", "/faults")

    result = run_dag(DAG_ID, conf)  # what the retry does
    assert result.state == "success", result
    assert offset(0)["offset"] == 199
    assert run_dag(DAG_ID, conf).state == "success"
    assert offset(0)["offset"] == 299
    stats = counts(backend)["0"]
    assert (stats["processed"], stats["duplicates"], stats["missing"], stats["max_offset"]) == (300, 0, 0, 299)


def test_a_broken_offset_value_fails_loudly_instead_of_starting_over(run_dag, backend):
    from airflow.models.variable import Variable

    Variable.set(f"dag_factory.offsets.{MODEL}.0", "offset is 41")
    result = run_dag(DAG_ID, {"batch_size": 100, "partitions": [0]})
    assert result.tasks["process_partition[0]"] == "failed"
    assert counts(backend).get("0", {}).get("processed", 0) == 0
    assert "offset state is not valid JSON" in result.log


def test_an_offset_that_exists_but_reads_as_missing_is_retried_not_restarted():
    """Airflow's Variable.get returns the default when the metadata DB is down (its secrets
    backend loop logs the error and goes on); that read as "never started" and moved a
    partition's offset back to -1 in the e2e fault test. The DB's key listing decides."""
    from dag_factory.runtime import offsets

    key = f"dag_factory.offsets.{MODEL}.1"
    with pytest.raises(offsets.OffsetUnreadable, match="exists but could not be read"):
        offsets.read_state(key, lambda k: None, lambda k: [key])
    assert offsets.read_state(key, lambda k: None, lambda k: [key + "0"]) == offsets.START  # partition 10's

    def db_down(prefix):
        raise ConnectionError("metadata DB down")

    with pytest.raises(ConnectionError):
        offsets.read_state(key, lambda k: None, db_down)
    assert offsets.read_state(key, lambda k: '{"offset": 5}', db_down)["offset"] == 5  # listed only when missing
