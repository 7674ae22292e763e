"""The entry files as the dag-processor sees them (the tests' project, tests/support.py): the right
DAGs, stable, and robust to broken specs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

from airflow.dag_processing.dagbag import DagBag

from tests.support import DAGS, ROOT

EXPECTED = {
    "churn_predictor__train": ("growth-ml", "0 3 * * *"),
    "churn_predictor__deploy": ("growth-ml", "asset"),
    "churn_predictor__stream": ("growth-ml", timedelta(minutes=10)),
    "demand_forecast__train": ("ml-platform", "@weekly"),
    "demand_forecast__deploy": ("ml-platform", "asset"),
    "fraud_scorer__train": ("risk-ml", timedelta(hours=6)),
    "fraud_scorer__deploy": ("risk-ml", "asset"),
    "fraud_scorer__stream": ("risk-ml", timedelta(minutes=1)),
}


def dagbag(monkeypatch, specs=None) -> DagBag:
    if specs is not None:
        monkeypatch.setenv("DAG_FACTORY_SPECS", str(specs))
    return DagBag(dag_folder=str(DAGS))


SYNC = "dag_factory_backend_sync"


def test_the_specs_parse_into_exactly_the_expected_dags(monkeypatch):
    bag = dagbag(monkeypatch)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == set(EXPECTED) | {SYNC}
    assert bag.dags[SYNC].max_active_runs == 1 and bag.dags[SYNC].schedule == timedelta(minutes=5)
    for dag_id, (owner, schedule) in EXPECTED.items():
        dag = bag.dags[dag_id]
        assert {t.owner for t in dag.tasks} == {owner}, dag_id
        assert {"dag_factory", f"model:{dag_id.split('__')[0]}"} <= set(dag.tags)
        if schedule == "asset":
            assert [a.name for a in dag.schedule] == \
                [f"dag_factory.model.{dag_id.split('__')[0]}"]
        else:
            assert dag.schedule == schedule, dag_id
    assert bag.dags["churn_predictor__stream"].max_active_runs == 1
    assert {"churn", "tabular", "training"} <= set(bag.dags["churn_predictor__train"].tags)


def test_task_ids_and_order():
    bag = DagBag(dag_folder=str(DAGS))
    train = bag.dags["fraud_scorer__train"]
    assert train.get_task("check_dataset_uri").downstream_task_ids == {"start_training"}
    assert train.get_task("start_training").downstream_task_ids == {"wait_for_training"}
    assert train.get_task("publish").downstream_task_ids == {"announce_version"}
    assert [a.name for a in train.get_task("publish").outlets] == ["dag_factory.model.fraud_scorer"]
    deploy = bag.dags["churn_predictor__deploy"]
    assert deploy.get_task("deploy_staging.smoke_test").downstream_task_ids == \
        {"deploy_staging.rollback", "deploy_production.deploy"}
    assert deploy.get_task("deploy_staging.rollback").downstream_task_ids == set()
    assert deploy.get_task("deploy_staging.rollback").trigger_rule == "one_failed"
    stream = bag.dags["fraud_scorer__stream"]
    assert stream.get_task("process_partition").downstream_task_ids == {"log_batch_summary"}


def test_a_broken_spec_leaves_the_others_and_is_visible(monkeypatch, specs_dir):
    (specs_dir / "broken_model.yaml").write_text("model: broken_model\ntraining:\n  schedule: '99 * * * *'\n")
    bag = dagbag(monkeypatch, specs_dir)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == set(EXPECTED) | {SYNC, "dag_factory_invalid__broken_model"}
    broken = bag.dags["dag_factory_invalid__broken_model"]
    assert broken.description.startswith("INVALID SPEC specs/broken_model.yaml: specs/broken_model.yaml:3:13: "
                                         "training.schedule: '99 * * * *' is not a valid cron expression")
    assert "invalid-spec" in broken.tags and broken.is_paused_upon_creation is False
    assert [t.task_id for t in broken.tasks] == ["report_errors"]


def test_a_spec_whose_operator_refuses_its_arguments_becomes_an_invalid_dag(monkeypatch, specs_dir):
    (specs_dir / "odd_op.yaml").write_text(
        "model: odd_op\ntraining:\n  steps:\n    - id: x\n"
        "      operator: airflow.providers.standard.operators.bash.BashOperator\n"
        "      kwargs: {no_such_argument: 1}\n")
    bag = dagbag(monkeypatch, specs_dir)
    assert bag.import_errors == {}
    assert "odd_op__train" not in bag.dag_ids
    assert "building odd_op__train failed" in bag.dags["dag_factory_invalid__odd_op"].description


def _serialized_in_fresh_process(dag_ids, env=None) -> dict:
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "from airflow.serialization.serialized_objects import DagSerialization\n"
        f"bag = DagBag(dag_folder={str(DAGS)!r})\n"
        "print(json.dumps({d: DagSerialization.to_dict(bag.dags[d]) for d in sys.argv[1:]}, sort_keys=True))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *dag_ids], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, **(env or {})}, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_two_parses_serialize_identically():
    """Different processes (different hash seeds) and moments must give the same DAGs,
    or every parse would create a new DAG version."""
    first = _serialized_in_fresh_process(sorted(EXPECTED), {"PYTHONHASHSEED": "1"})
    second = _serialized_in_fresh_process(sorted(EXPECTED), {"PYTHONHASHSEED": "2"})
    assert first == second
    assert set(first) == set(EXPECTED)


def test_a_task_run_parse_builds_only_its_dag_and_the_same_dag():
    full = _serialized_in_fresh_process(["churn_predictor__deploy"])
    env = {"_AIRFLOW_PARSING_CONTEXT_DAG_ID": "churn_predictor__deploy",
           "_AIRFLOW_PARSING_CONTEXT_TASK_ID": "deploy_staging.deploy"}
    code = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "from airflow.serialization.serialized_objects import DagSerialization\n"
        f"bag = DagBag(dag_folder={str(DAGS)!r})\n"
        "print(json.dumps({d: DagSerialization.to_dict(v) for d, v in bag.dags.items()}, sort_keys=True))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, **env}, check=True)
    only = json.loads(out.stdout.splitlines()[-1])
    assert sorted(only) == ["churn_predictor__deploy", SYNC]  # the sync DAG's own file has one DAG
    assert only["churn_predictor__deploy"] == full["churn_predictor__deploy"]


def test_task_run_parse_reads_only_its_own_spec(monkeypatch, specs_dir):
    from dag_factory.builders.register import register_dags

    (specs_dir / "zz_broken.yaml").write_text("model: [")  # would be an invalid DAG in a full parse
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "demand_forecast__train")
    dags = register_dags({}, specs_dir)
    assert list(dags) == ["demand_forecast__train"]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "dag_factory_invalid__zz_broken")
    assert list(register_dags({}, specs_dir)) == ["dag_factory_invalid__zz_broken"]


def test_task_run_parse_of_a_live_model_plans_only_that_model(monkeypatch, specs_dir):
    import json as _json
    import logging

    from dag_factory.builders.register import register_dags

    # Live models of other kinds too: a task-run parse loads only churn_predictor.yaml and must
    # not plan (and warn about) models whose spec it never loaded.
    models = {f"churn_{i:03d}": {"name": f"churn_{i:03d}", "spec": "churn_predictor" if i % 2 else "demand_forecast",
                                 "status": "active", "version": "v1", "updated_at": "2026-11-27T10:00:00Z"}
              for i in range(50)}
    snap = {"format": 1, "models": models, "retired": [], "missing": {}, "rejected": {},
            "expires_at": "2999-01-01T00:00:00+00:00"}
    monkeypatch.setenv("AIRFLOW_VAR_DAG_FACTORY_LIVE_MODELS", _json.dumps(snap))
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "churn_007__stream")
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logger = logging.getLogger("dag_factory.builders.register")
    logger.addHandler(handler)
    try:
        dags = register_dags({}, specs_dir)
    finally:
        logger.removeHandler(handler)
    assert list(dags) == ["churn_007__stream"]
    assert not [w for w in warnings if "not in the specs folder" in w], warnings
