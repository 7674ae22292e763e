"""Training and deployment DAGs run for real: dag.test() against the reference backend over HTTP."""

from __future__ import annotations

import re

from tests.runtime.dag_runs import TOKEN

MODEL = "churn_predictor"


def jobs(backend, kind: str, model: str = MODEL) -> list[dict]:
    return backend.admin("GET", "/jobs", params={"model": model, "kind": kind})["jobs"]


def posts(backend, path: str) -> int:
    answer = backend.admin("GET", "/requests", params={"path": path, "method": "POST"})
    return answer["counts"].get(f"POST {path}", 0)


def asset_events(model: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (session.query(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetModel.name == f"dag_factory.model.{model}").order_by(AssetEvent.id).all())
        return [dict(r.extra or {}) for r in rows]


def gets(backend, prefix: str) -> int:
    answer = backend.admin("GET", "/requests", params={"method": "GET"})
    return sum(n for key, n in answer["counts"].items() if key.startswith(f"GET {prefix}"))


def test_training_succeeds_once_and_publishes_the_asset(run_dag, backend):
    backend.admin("PUT", "/settings", {"job_delay": 3})  # long enough that the wait must defer
    before = len(asset_events(MODEL))
    result = run_dag(f"{MODEL}__train")
    assert result.state == "success", result
    assert result.tasks == {t: "success" for t in ("start_training", "wait_for_training", "check_gates", "publish")}
    [job] = jobs(backend, "training")
    assert job["status"] == "succeeded" and job["idempotency_key"].endswith(f"{result.run_id}:start_training")
    events = asset_events(MODEL)
    assert len(events) == before + 1
    assert events[-1]["version"] == job["model_version"] and events[-1]["metrics"] == {"auc": 0.86, "logloss": 0.31}
    assert "running trigger in line" in result.log  # the wait deferred to a trigger
    assert TOKEN not in result.log


def test_a_failed_gate_fails_with_metric_value_and_gate(run_dag, backend):
    backend.admin("PUT", f"/models/{MODEL}/training-metrics", {"metrics": {"auc": 0.61, "logloss": 0.3}})
    result = run_dag(f"{MODEL}__train")
    assert result.state == "failed"
    assert result.tasks["check_gates"] == "failed" and result.tasks["publish"] == "upstream_failed"
    assert "gate 'auc >= 0.78' failed: auc = 0.61" in result.log


def test_a_failed_training_job_fails_the_wait(run_dag, backend):
    backend.admin("POST", f"/models/{MODEL}/fail-training", {"error": "out of GPU memory"})
    result = run_dag(f"{MODEL}__train")
    assert result.tasks["wait_for_training"] == "failed"
    assert re.search(r"training job tr-\w+ ended failed: out of GPU memory", result.log)


def test_500_and_429_are_retried_and_start_exactly_one_job(run_dag, backend):
    path = f"/api/v1/models/{MODEL}/training-runs"
    backend.admin("POST", "/faults", {"path_prefix": path, "method": "POST", "status": 500, "count": 2})
    backend.admin("POST", "/faults", {"path_prefix": path, "method": "POST", "status": 429, "retry_after": "1"})
    result = run_dag(f"{MODEL}__train")
    assert result.state == "success", result
    assert posts(backend, path) == 4
    assert len(jobs(backend, "training")) == 1


def test_401_is_not_retried_and_the_token_is_never_logged(run_dag, backend, monkeypatch):
    wrong = "wrong-token-9a8b7c"
    monkeypatch.setenv("AIRFLOW_CONN_MODEL_BACKEND", f"http://:{wrong}@127.0.0.1:{backend.port}")
    result = run_dag(f"{MODEL}__train")
    assert result.tasks["start_training"] == "failed"
    path = f"/api/v1/models/{MODEL}/training-runs"
    assert posts(backend, path) == 1
    out = result.log
    assert f"POST {path.replace(MODEL, '{name}')} failed (HTTP 401)" in out or "HTTP 401" in out
    assert wrong not in out and TOKEN not in out


def test_custom_steps_run_where_the_spec_places_them(run_dag, backend):
    backend.admin("PUT", "/models/fraud_scorer/training-metrics", {"metrics": {"auc": 0.93}})
    result = run_dag("fraud_scorer__train")
    assert result.state == "success", result
    assert result.tasks["check_dataset_uri"] == "success" and result.tasks["announce_version"] == "success"
    assert "new fraud_scorer version published" in result.log  # the BashOperator ran


def test_a_failing_custom_step_stops_training_before_it_starts(run_dag, backend):
    result = run_dag("fraud_scorer__train", {"dataset_uri": "file:///home/someone/data.csv"})
    assert result.tasks["check_dataset_uri"] == "failed" and result.tasks["start_training"] == "upstream_failed"
    assert jobs(backend, "training", "fraud_scorer") == []
    assert "outside the allowed prefixes" in result.log


def test_waiting_without_a_triggerer(run_dag, backend, fast_specs):
    spec = fast_specs / "demand_forecast.yaml"
    spec.write_text(spec.read_text().replace("  timeout: 6h\n", "  timeout: 6h\n  deferrable: false\n"))
    backend.admin("PUT", "/models/demand_forecast/training-metrics", {"metrics": {"mape": 0.12}})
    backend.admin("PUT", "/settings", {"job_delay": 3})
    result = run_dag("demand_forecast__train")
    assert result.state == "success", result
    assert "running trigger in line" not in result.log
    assert gets(backend, "/api/v1/training-runs/") >= 3  # it polled from the worker: 1 s, 2 s, ...


def test_deployment_walks_the_targets_in_order(run_dag, backend):
    result = run_dag(f"{MODEL}__deploy", {"version": "v7"})
    assert result.state == "success", result
    deployments = jobs(backend, "deployment")
    assert [(d["target"], d["model_version"], d["status"]) for d in deployments] == [
        ("staging", "v7", "succeeded"), ("production", "v7", "succeeded")]
    assert result.tasks["deploy_staging.rollback"] == "skipped"


def test_a_failed_smoke_test_rolls_back_and_stops(run_dag, backend):
    backend.admin("PUT", "/targets/staging/smoke", {"metrics": {"success_rate": 0.5, "p99_latency_ms": 40}})
    result = run_dag(f"{MODEL}__deploy", {"version": "v8"})
    assert result.state == "failed"
    assert result.tasks["deploy_staging.smoke_test"] == "failed"
    assert result.tasks["deploy_staging.rollback"] == "success"
    assert result.tasks["deploy_production.deploy"] == "upstream_failed"
    assert result.tasks["deploy_production.rollback"] == "skipped"
    assert [(d["target"], d["status"]) for d in jobs(backend, "deployment")] == [("staging", "rolled_back")]
    assert "smoke test of staging failed: gate 'success_rate >= 0.99' failed: success_rate = 0.5" in \
        result.log


def test_a_failed_production_deployment_rolls_back_production_only(run_dag, backend):
    backend.admin("POST", f"/models/{MODEL}/fail-deployment", {"target": "production", "error": "quota"})
    result = run_dag(f"{MODEL}__deploy", {"version": "v9"})
    assert result.state == "failed"
    assert result.tasks["deploy_staging.rollback"] == "skipped"
    assert result.tasks["deploy_production.rollback"] == "success"
    assert [(d["target"], d["status"]) for d in jobs(backend, "deployment")] == [
        ("staging", "succeeded"), ("production", "rolled_back")]


def test_deployment_without_a_version_says_how_to_give_one(run_dag, backend):
    result = run_dag(f"{MODEL}__deploy")
    assert result.tasks["resolve_version"] == "failed"
    assert 'no version to deploy: trigger with conf {"version": "v3"}' in result.log


def test_invalid_spec_dag_fails_with_its_errors(run_dag, fast_specs):
    (fast_specs / "bad_model.yaml").write_text("model: bad_model\ntraining:\n  retries: many\n")
    result = run_dag("dag_factory_invalid__bad_model")
    assert result.state == "failed"
    assert "specs/bad_model.yaml:3:12: training.retries: expected integer" in result.log


def test_the_other_example_dags_succeed(run_dag, backend):
    """Every example spec's DAGs run green (churn_predictor's are covered above)."""
    backend.admin("PUT", "/models/demand_forecast/training-metrics", {"metrics": {"mape": 0.1}})
    backend.admin("PUT", "/models/fraud_scorer/training-metrics", {"metrics": {"auc": 0.95}})
    for dag_id, conf in (("demand_forecast__deploy", {"version": "v3"}), ("fraud_scorer__deploy", {"version": "v4"})):
        result = run_dag(dag_id, conf)
        assert result.state == "success", (dag_id, result)
    result = run_dag("fraud_scorer__stream")
    assert result.state == "success", result
    assert result.tasks == {"plan_partitions": "success", "process_partition[0]": "success",
                            "process_partition[1]": "success", "log_batch_summary": "success"}
    assert "stream run processed 400 records over 2 partitions" in result.log
    assert [(d["target"], d["status"]) for d in jobs(backend, "deployment", "fraud_scorer")] == [
        ("shadow", "succeeded"), ("production", "succeeded")]
