"""Run model DAGs with dag.test() against a real reference backend on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dag_factory.dev.backend.process import RunningBackend, start_backend
from dag_factory.dev.backend.seed import seed_records
from tests.runtime.dag_runs import TOKEN
from tests.support import DAGS, MODELS, ROOT, SPECS

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
    seed = seed_records([(m, m) for m in MODELS], partitions=[0, 1, 2, 3], batch_size=100)
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
    """The fixture project's specs with second-scale polls and no task retries (failures show at once)."""
    folder = tmp_path / "specs"
    shutil.copytree(SPECS, folder)
    (folder / "_defaults.yaml").write_text(FAST_DEFAULTS)
    monkeypatch.setenv("DAG_FACTORY_SPECS", str(folder))
    return folder


class DagRunResult:
    """A finished run as the test sees it: state, task states, and everything it logged."""

    def __init__(self, summary: dict, log: str):
        self.state, self.tasks, self.run_id, self.log = summary["state"], summary["tasks"], summary["run_id"], log

    def __repr__(self) -> str:
        return f"DagRunResult({self.state}, {self.tasks})"


_RUNNER = r"""
import json, os, sys
control = os.fdopen(os.dup(1), "w")  # results go here; fds 1 and 2 go to each run's log
for line in sys.stdin:
    request = json.loads(line)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdout.flush(); sys.stderr.flush()
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log_fd, 1); os.dup2(log_fd, 2); os.close(log_fd)
    try:
        from airflow.dag_processing.dagbag import DagBag
        from airflow.models.variable import Variable
        # This parse is unsupervised: the SDK reads Variables from env vars only. Hand it the
        # stored live snapshot the way the dag-processor would see it.
        live = Variable.get("dag_factory_live_models", default_var=None)
        if live:
            os.environ["AIRFLOW_VAR_DAG_FACTORY_LIVE_MODELS"] = live
        bag = DagBag(dag_folder=request["dags"])
        run = bag.dags[request["dag_id"]].test(run_conf=request["conf"])
        tasks = {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
                 for ti in run.get_task_instances()}
        result = {"state": str(run.state), "tasks": tasks, "run_id": run.run_id}
    except BaseException as exc:
        import traceback; traceback.print_exc()
        result = {"crash": f"{type(exc).__name__}: {exc}"}
    sys.stdout.flush(); sys.stderr.flush()
    control.write(json.dumps(result) + "\n"); control.flush()
"""


class DagRunner:
    """One long-lived process that runs DAGs with dag.test(), one at a time.

    It pays Airflow's start-up (~8 s for the in-process execution API) once per module, runs
    each DAG with the test's environment, and writes each run's output to its own log file:
    Airflow's logging keeps whatever stdout it first saw, so in-process capture is unreliable.
    """

    def __init__(self, log_dir: Path):
        self.log_dir, self.count = log_dir, 0
        self.proc = subprocess.Popen([sys.executable, "-c", _RUNNER], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=os.environ.copy())

    def run(self, dag_id: str, conf: dict | None = None) -> DagRunResult:
        self.count += 1
        log_path = self.log_dir / f"{self.count:03d}-{dag_id}.log"
        request = {"dag_id": dag_id, "conf": conf or {}, "log": str(log_path), "env": dict(os.environ),
                   "dags": str(DAGS)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        log = log_path.read_text() if log_path.exists() else ""
        assert line, f"the DAG runner died running {dag_id}:\n{log[-4000:]}"
        summary = json.loads(line)
        assert "crash" not in summary, f"dag.test() of {dag_id} crashed: {summary['crash']}\n{log[-4000:]}"
        return DagRunResult(summary, log)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def dag_runner(airflow_db, tmp_path_factory) -> Iterator[DagRunner]:
    runner = DagRunner(tmp_path_factory.mktemp("dag_run_logs"))
    yield runner
    runner.close()


@pytest.fixture
def run_dag(fast_specs: Path, backend: RunningBackend, dag_runner: DagRunner) -> Callable[..., DagRunResult]:
    """run_dag(dag_id, conf) -> the finished run's state, task states and log."""
    return dag_runner.run
