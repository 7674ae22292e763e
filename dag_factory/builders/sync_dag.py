"""The backend sync DAG: keeps the live snapshot Variable in step with the backend."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG

from dag_factory import settings
from dag_factory.builders.common import python_task
from dag_factory.live.sync import sync_task
from dag_factory.settings import BACKEND_CONN_ID, SYNC_DAG_ID
from dag_factory.specs.timing import parse_duration


def build_sync_dag(dags_dir: str | None = None) -> DAG:
    """Every $DAG_FACTORY_SYNC_INTERVAL (default 5m), one active run at most, each run at most
    $DAG_FACTORY_SYNC_TIMEOUT (default 4m). The entry files in `dags_dir` are re-parsed at once
    after a change (dag_factory.live.reparse)."""
    with DAG(
        dag_id=SYNC_DAG_ID,
        schedule=parse_duration(settings.SYNC_INTERVAL.get()),
        start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=False,
        tags=["dag_factory", "sync"],
        description="Polls the model backend and stores live model data in the Variable dag_factory_live_models",
        doc_md=__doc__,
        default_args={"owner": "dag_factory", "retries": 2, "retry_delay": parse_duration("30s")},
        auto_register=False,
    ) as dag:
        task = python_task("sync_live_models", sync_task, conn_id=BACKEND_CONN_ID, dags_dir=dags_dir)
        # A hung sync would block every later one (one active run): $DAG_FACTORY_SYNC_TIMEOUT ends it.
        task.execution_timeout = parse_duration(settings.SYNC_TIMEOUT.get())
    return dag
