"""Run model DAGs with dag.test() against a real reference backend on loopback."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dag_factory.backend.process import RunningBackend, start_backend
from dag_factory.backend.server import seed_records
from tests.conftest import DAGS, EXAMPLE_MODELS, SPECS

TOKEN = "rt-token-5f0c2b9e"
FAST_DEFAULTS = """\
owner: ml-platform
start_date: "2024-01-01"
training: {schedule: "@daily", timeout: 2m, poll_interval: 1s, retries: 0, retry_delay: 1s}
deployment:
  smoke_test: {gates: ["success_rate >= 0.99"], timeout: 2m, poll_interval: 1s}
  retries: 0
  retry_delay: 1s
streaming: {every: 5m, batch_size: 100, partitions: [0], retries: 0, retry_delay: 1s}
"""


@pytest.fixture(scope="module")
def backend_server(airflow_db) -> Iterator[RunningBackend]:
    seed = seed_records([(m, m) for m in EXAMPLE_MODELS], partitions=[0, 1, 2, 3], batch_size=100)
    with start_backend(token=TOKEN, job_delay=0.5, seed=seed) as running:
        yield running


@pytest.fixture
def backend(backend_server: RunningBackend, monkeypatch) -> RunningBackend:
    """The backend reset to its seed, and the `model_backend` connection pointing at it."""
    if not backend_server.is_running():
        backend_server.start()
    backend_server.admin("POST", "/reset", {"seed": True})
    monkeypatch.setenv("AIRFLOW_CONN_MODEL_BACKEND", f"http://:{TOKEN}@127.0.0.1:{backend_server.port}")
    return backend_server


@pytest.fixture
def fast_specs(tmp_path: Path, monkeypatch) -> Path:
    """The example specs with second-scale polls and no task retries (failures show at once)."""
    folder = tmp_path / "specs"
    shutil.copytree(SPECS, folder)
    (folder / "_defaults.yaml").write_text(FAST_DEFAULTS)
    monkeypatch.setenv("DAG_FACTORY_SPECS", str(folder))
    return folder


class DagRunResult:
    def __init__(self, dag_run: Any):
        self.state = str(dag_run.state)
        self.tasks = {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
                      for ti in dag_run.get_task_instances()}
        self.run_id = dag_run.run_id

    def __repr__(self) -> str:
        return f"DagRunResult({self.state}, {self.tasks})"


@pytest.fixture
def run_dag(fast_specs: Path, backend: RunningBackend, airflow_db) -> Callable[..., DagRunResult]:
    """run_dag(dag_id, conf) -> the finished run's state and task states."""
    from dag_factory.build.register import register_dags

    def run(dag_id: str, conf: dict | None = None) -> DagRunResult:
        dags = register_dags({"__file__": str(DAGS / "model_dags.py")}, fast_specs)
        return DagRunResult(dags[dag_id].test(run_conf=conf))

    return run


def airflow_variable(key: str) -> str | None:
    """Read a Variable from the metadata DB (the SDK's Variable.get does not, outside a task)."""
    from airflow.models.variable import Variable

    return Variable.get(key, default_var=None)


def clear_variables(prefix: str) -> None:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Variable).filter(Variable.key.like(f"{prefix}%")).delete(synchronize_session=False)


