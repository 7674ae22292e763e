"""Deployment tasks: which version, deploy to one target, smoke-test it, roll it back."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dag_factory.runtime.conf import conf_value
from dag_factory.runtime.keys import run_key
from dag_factory.runtime.live import live_record
from dag_factory.runtime.training import model_asset
from dag_factory.specs.gates import gate_failures, min_metric_gates

log = logging.getLogger(__name__)


def pick_version(param: Any, events: list[Mapping[str, Any]]) -> str | None:
    """The `version` param wins; else the newest asset event's version."""
    if param:
        return str(param)
    for extra in reversed(events):
        if isinstance(extra, Mapping) and extra.get("version"):
            return str(extra["version"])
    return None


def resolve_version(model: str, dag_run: Any, triggering_asset_events: Any = None, inlet_events: Any = None) -> str:
    """The run conf's `version`; else, in a run an Asset event started, the version of the Asset's
    newest event (Airflow 3.3 may leave a newer event than the run's own unconsumed: docs/dags.md);
    else the backend's current version."""
    events = [e.extra for evs in (triggering_asset_events or {}).values() for e in evs]
    if events:
        events += newest_extras(inlet_events, model_asset(model))
    version = pick_version(conf_value(dag_run, "version"), events) or live_record(model).get("version")
    if not version:
        raise AirflowFailException("no version to deploy: trigger with conf {\"version\": \"v3\"}, "
                                   "or let the training DAG publish one")
    log.info("deploying version %s", version)
    return version


def newest_extras(inlet_events: Any, asset: Any, count: int = 10) -> list[Any]:
    """The extras of the Asset's newest events, oldest first; none when the task lacks the inlet."""
    if inlet_events is None or asset not in inlet_events:
        return []
    return [e.extra for e in reversed(list(inlet_events[asset].ascending(False).limit(count)))]


def deploy(model: str, target: str, conn_id: str, ti: Any, dag_run: Any) -> dict[str, Any]:
    from dag_factory.client import BackendClient  # here, not at import: see dag_factory.runtime

    version = ti.xcom_pull(task_ids="resolve_version")
    key = run_key(dag_run, "deploy", target, version)
    with BackendClient.from_connection(conn_id) as client:
        job = client.deploy(model, version=version, target=target, idempotency_key=key)
    log.info("deployment %s of %s %s to %s is %s", job["id"], model, version, target, job["status"])
    return job


def smoke_test(model: str, target: str, gates: list[str], wait_task_id: str, ti: Any) -> dict[str, Any]:
    """The spec's gates for this target, plus the backend's live `min_metric` for it."""
    job = ti.xcom_pull(task_ids=wait_task_id) or {}
    live_targets = (live_record(model).get("deployment") or {}).get("targets") or []
    for live_target in live_targets:
        if live_target.get("name") == target:
            gates = list(gates) + min_metric_gates(live_target.get("min_metric"))
    failures = gate_failures(gates, job.get("metrics") or {})
    if failures:
        raise AirflowFailException(f"smoke test of {target} failed: " + "; ".join(failures))
    log.info("smoke test of %s passed: %s", target, job.get("metrics"))
    return {"target": target, "metrics": job.get("metrics") or {}}


def rollback(target: str, conn_id: str, deploy_task_id: str, ti: Any, dag_run: Any) -> dict[str, Any]:
    """Runs when deploy, wait or smoke test failed; skips when nothing reached this target
    (an earlier target failed first)."""
    from dag_factory.client import BackendClient

    job = ti.xcom_pull(task_ids=deploy_task_id)
    if not isinstance(job, Mapping) or not job.get("id"):
        raise AirflowSkipException(f"nothing was deployed to {target}; no rollback needed")
    with BackendClient.from_connection(conn_id) as client:
        result = client.rollback(job["id"], idempotency_key=run_key(dag_run, "rollback", target))
    log.warning("rolled back deployment %s on %s: %s", job["id"], target, result.get("status"))
    return result


def deployed(targets: list[str], ti: Any) -> dict[str, Any]:
    """The run's last step: reached only when every target passed its smoke test, so a
    failure anywhere (even one rolled back cleanly) leaves the run failed."""
    version = ti.xcom_pull(task_ids="resolve_version")
    log.info("version %s is live on %s", version, ", ".join(targets))
    return {"version": version, "targets": targets}
