"""<model>__deploy: for each target in order deploy, wait, smoke-test; on failure roll back and stop."""

from __future__ import annotations

from airflow.sdk import DAG, TaskGroup, TriggerRule

from dag_factory.builders.common import Span, builtin_or_replacement, dag_kwargs, link, python_task, schedule_for, wire
from dag_factory.live.fleet import FleetModel
from dag_factory.runtime import deployment
from dag_factory.runtime.jobs import WaitForJobOperator
from dag_factory.runtime.training import model_asset
from dag_factory.settings import BACKEND_CONN_ID
from dag_factory.specs.model import DEPLOYMENT_FINAL, DeploymentSpec
from dag_factory.specs.rules import deployment_steps


def build_deployment_dag(model: FleetModel) -> DAG:
    d = model.spec.deployment
    assert d is not None
    name = model.name
    builtins = deployment_steps(t.name for t in d.targets)
    asset = model_asset(name)
    with DAG(schedule=schedule_for(model, [asset]), max_active_runs=1,
             **dag_kwargs(model, "deployment", d.tasks)) as dag:
        spans: dict[str, Span] = {}
        node = builtin_or_replacement(d.steps, "resolve_version",
                                      lambda: python_task("resolve_version", deployment.resolve_version, model=name))
        node.inlets = [*node.inlets, asset]  # it reads the Asset's newest event; so may a replacement
        spans["resolve_version"] = (node, node)
        for target in d.targets:
            gates = [str(g) for g in (target.gates if target.gates is not None else d.smoke_gates)]
            spans[f"deploy_{target.name}"] = _target_group(name, target.name, gates, d)
        node = builtin_or_replacement(d.steps, DEPLOYMENT_FINAL, lambda: python_task(
            DEPLOYMENT_FINAL, deployment.deployed, targets=[t.name for t in d.targets]))
        spans[DEPLOYMENT_FINAL] = (node, node)
        wire(spans, d.steps, builtins)
    return dag


def _target_group(model: str, target: str, gates: list[str], d: DeploymentSpec) -> Span:
    """deploy -> wait -> smoke_test, and rollback when any of them failed.

    The span's exit is smoke_test, not the group: the next target must follow a passed smoke
    test, never a (skipped) rollback.
    """
    group_id = f"deploy_{target}"
    with TaskGroup(group_id, tooltip=f"deploy to {target}"):
        deploy = python_task("deploy", deployment.deploy, model=model, target=target, conn_id=BACKEND_CONN_ID)
        wait = WaitForJobOperator(task_id="wait", kind="deployment", job_task_id=f"{group_id}.deploy",
                                  conn_id=BACKEND_CONN_ID, poll_interval=d.poll_interval, timeout=d.smoke_timeout)
        smoke = python_task("smoke_test", deployment.smoke_test, model=model, target=target, gates=gates,
                            wait_task_id=f"{group_id}.wait")
        link(deploy, wait)
        link(wait, smoke)
        if d.rollback_on_failure:
            rollback = python_task("rollback", deployment.rollback, target=target, conn_id=BACKEND_CONN_ID,
                                   deploy_task_id=f"{group_id}.deploy")
            rollback.trigger_rule = TriggerRule.ONE_FAILED
            rollback.retries = max(rollback.retries or 0, 3)
            for task in (deploy, wait, smoke):
                link(task, rollback)
    return deploy, smoke
