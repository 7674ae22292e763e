"""Training tasks: start a run (idempotent per DAG run), check its metric gates, publish it."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException

from dag_factory.runtime.conf import conf_value
from dag_factory.runtime.keys import run_key
from dag_factory.runtime.live import first, live_record
from dag_factory.specs.gates import gate_failures

log = logging.getLogger(__name__)


def training_inputs(model: str, dag_run: Any, spec_dataset_uri: str | None = None,
                    spec_hyperparameters: Mapping[str, Any] | None = None) -> tuple[str | None, dict[str, Any]]:
    """(dataset_uri, hyperparameters) for this run: conf, else live record, else spec."""
    live = live_record(model).get("training") or {}
    dataset_uri = first(conf_value(dag_run, "dataset_uri"), live.get("dataset_uri"), spec_dataset_uri)
    hyperparameters = first(conf_value(dag_run, "hyperparameters"), live.get("hyperparameters"),
                            spec_hyperparameters) or {}
    return dataset_uri, dict(hyperparameters)


def start_training(model: str, conn_id: str, dag_run: Any,
                   spec_dataset_uri: str | None = None, spec_hyperparameters: Mapping[str, Any] | None = None,
                   ) -> dict[str, Any]:
    """POST a training run. A retry of this task (or of the whole run) sends the same
    Idempotency-Key, so the backend answers with the job it already started. Inputs: the
    run's conf, else the backend's live record, else the spec."""
    from dag_factory.client import BackendClient  # here, not at import: see dag_factory.runtime

    dataset_uri, hyperparameters = training_inputs(model, dag_run, spec_dataset_uri, spec_hyperparameters)
    key = run_key(dag_run, "start_training")
    with BackendClient.from_connection(conn_id) as client:
        job = client.start_training(
            model, idempotency_key=key, dataset_uri=dataset_uri, hyperparameters=dict(hyperparameters),
            reason=f"airflow {dag_run.run_type} run {dag_run.run_id}",
        )
    log.info("training run %s for %s is %s (idempotency key %s)", job["id"], model, job["status"], key)
    return job


def check_gates(ti: Any, dag_run: Any, spec_gates: list[str] | None = None) -> dict[str, Any]:
    """Fail (without retries: the metrics will not change) when any gate fails. Gates: the
    run's conf `gates`, else the spec's."""
    job = ti.xcom_pull(task_ids="wait_for_training") or {}
    metrics = job.get("metrics") or {}
    gates = conf_value(dag_run, "gates") or spec_gates or []
    failures = gate_failures(gates, metrics)
    if failures:
        raise AirflowFailException(f"model version {job.get('model_version')} rejected: " + "; ".join(failures))
    log.info("version %s passed %d gate(s): %s", job.get("model_version"), len(gates), metrics)
    return {"version": job.get("model_version"), "metrics": metrics, "training_run_id": job.get("id")}


def model_asset(model: str) -> Asset:
    """The Asset a successful training publishes and the deployment DAG is scheduled on."""
    return Asset(name=f"dag_factory.model.{model}", uri=f"x-dag-factory://models/{model}", group="ml-model")


def publish(model: str, ti: Any, outlet_events: Any, dag_run: Any) -> dict[str, Any]:
    """Emit the model's Asset event; its extra carries version and metrics to the deployment."""
    checked = ti.xcom_pull(task_ids="check_gates") or ti.xcom_pull(task_ids="wait_for_training") or {}
    version = checked.get("version") or checked.get("model_version")
    if not version:
        raise AirflowFailException("no model version to publish: the training run returned none")
    extra = {"model": model, "version": str(version), "metrics": dict(checked.get("metrics") or {}),
             "training_run_id": checked.get("training_run_id") or checked.get("id"),
             "dag_run_id": dag_run.run_id}
    outlet_events[model_asset(model)].extra = extra
    log.info("published %s version %s", model, version)
    return extra
