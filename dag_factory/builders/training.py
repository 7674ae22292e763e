"""<model>__train: start a training run, wait for it in the triggerer, gate, publish the Asset."""

from __future__ import annotations

from airflow.sdk import DAG, Asset

from dag_factory.builders.common import builtin_or_replacement, dag_kwargs, python_task, schedule_for, wire
from dag_factory.live.fleet import FleetModel
from dag_factory.runtime import training
from dag_factory.runtime.jobs import WaitForJobOperator
from dag_factory.runtime.training import model_asset
from dag_factory.settings import BACKEND_CONN_ID
from dag_factory.specs.model import TRAINING_STEPS, thaw
from dag_factory.specs.timing import airflow_schedule


def build_training_dag(model: FleetModel) -> DAG:
    t = model.spec.training
    assert t is not None
    name = model.name
    asset = model_asset(name)
    schedule = airflow_schedule(model.training_schedule or t.schedule)
    with DAG(schedule=schedule_for(model, schedule), max_active_runs=1,
             **dag_kwargs(model, "training", t.tasks)) as dag:
        spans = {}
        for step_id, make in (
            ("start_training", lambda: python_task(
                "start_training", training.start_training, model=name, conn_id=BACKEND_CONN_ID,
                spec_dataset_uri=t.dataset_uri, spec_hyperparameters=thaw(t.hyperparameters))),
            ("wait_for_training", lambda: WaitForJobOperator(
                task_id="wait_for_training", kind="training", job_task_id="start_training",
                conn_id=BACKEND_CONN_ID, poll_interval=t.poll_interval, timeout=t.timeout,
                deferrable=t.deferrable)),
            ("check_gates", lambda: python_task("check_gates", training.check_gates,
                                                spec_gates=[str(g) for g in t.gates])),
            ("publish", lambda: _publish(name, asset)),
        ):
            node = builtin_or_replacement(t.steps, step_id, make)
            spans[step_id] = (node, node)
        wire(spans, t.steps, TRAINING_STEPS)
    return dag


def _publish(model: str, asset: Asset):
    task = python_task("publish", training.publish, model=model)
    task.outlets = [asset]
    return task
