"""A task reads live values from the snapshot its own task-run parse read: one Variable read
per task run, not two. Anything else (dag.test(), another task's context) reads anew."""

from __future__ import annotations

import json

from dag_factory.builders.register import register_dags
from dag_factory.runtime import live
from dag_factory.settings import LIVE_VARIABLE
from tests.support import SPECS

ENV = "AIRFLOW_VAR_" + LIVE_VARIABLE.upper()


def _snapshot(version: str) -> str:
    record = {"name": "churn_predictor", "status": "active", "version": version, "updated_at": "2026-12-06T00:00:00Z"}
    return json.dumps({"format": 1, "models": {"churn_predictor": record}, "retired": [], "missing": {}, "rejected": {}})


def test_the_task_uses_its_parse_read_and_nothing_else_does(monkeypatch):
    monkeypatch.setenv(ENV, _snapshot("v1"))
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "churn_predictor__train")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "start_training")
    dags = register_dags({}, specs_dir=SPECS)
    assert list(dags) == ["churn_predictor__train"]
    monkeypatch.setenv(ENV, _snapshot("v2"))  # the Variable changes after the parse
    assert live.live_record("churn_predictor")["version"] == "v1"  # this task's parse read
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "wait_for_training")  # another task: not its read
    assert live.live_record("churn_predictor")["version"] == "v2"
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID")
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID")
    assert live.live_record("churn_predictor")["version"] == "v2"  # dag.test(), scripts: always a fresh read


def test_a_full_parse_remembers_nothing(monkeypatch):
    monkeypatch.setenv(ENV, _snapshot("v3"))
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    register_dags({}, specs_dir=SPECS)
    monkeypatch.setenv(ENV, _snapshot("v4"))
    assert live.live_record("churn_predictor")["version"] == "v4"


def teardown_function() -> None:
    live._task_start.clear()  # no test leaves a task's read behind for the next
