"""Models page benchmark: one page load for N models with a run history, over real HTTP.

    .venv/bin/python benchmarks/models_page.py [--models 1000] [--runs 20] [--requests 30] [--json out.json]

It builds a throwaway Airflow home (SQLite) with N models' specs (benchmarks/parse.py's workload:
the examples cycled, 2.67 DAGs per model), their live snapshot in the one Variable, and a run
history inserted straight into the metadata DB: `--runs` runs per DAG with their task instances,
the training runs' `wait_for_training` XComs (metrics), the deployment runs' smoke tests and
`resolve_version` XComs, and the stream offsets Variables. Then it starts a real
`airflow api-server` (uvicorn, one worker) on loopback with the dag_factory plugin loaded
through its entry point, logs in (SimpleAuthManager, JWT from /auth/token) and times, in
rotation, `--requests` requests each of

- `GET /dag-factory/api/models`   the JSON endpoint (every model)
- `GET /dag-factory/models`       the Models page (HTML, every model)
- `GET /api/v2/dags/~/dagRuns?limit=50&order_by=-run_after`   baseline: Airflow's own run list
  over the same history (what the UI's Runs page asks for)

and prints p50/p95 per URL and the ratio of the medians to the baseline's. A benchmark, not a
test: it asserts nothing about time. `insert_history` is importable (tests/plugin use it).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "models_page.json"
USER = "admin"
START_TIMEOUT = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def model_shapes(specs_dir: Path) -> dict[str, Any]:
    """model -> its spec (the loaded ModelSpec), for every spec in the folder."""
    from dag_factory.specs.loader import load_specs

    return load_specs([specs_dir], check_imports=False).by_name()


def insert_history(session: Any, specs: dict[str, Any], runs_per_dag: int, now: datetime,
                   failed_every: int = 0, partitions_age: timedelta = timedelta(minutes=2)) -> int:
    """Insert `runs_per_dag` finished runs of each model's DAGs, the task instances and XComs the
    status rows read, and the stream offsets Variables; returns the number of DAG runs.
    `failed_every=k`: every k-th model's latest training run failed (0: none)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.variable import Variable
    from airflow.models.xcom import XComModel
    from sqlalchemy import insert, select

    from dag_factory.runtime.offsets import variable_key

    run_rows, plans = [], []
    for index, (name, spec) in enumerate(sorted(specs.items())):
        for kind in spec.kinds:
            dag_id = spec.dag_id(kind, name)
            for r in range(runs_per_dag):
                latest = r == runs_per_dag - 1
                state = "failed" if (latest and kind == "training" and failed_every and index % failed_every == 0) \
                    else "success"
                start = now - timedelta(hours=runs_per_dag - r)
                run_id = f"scheduled__{start.isoformat(timespec='seconds')}"
                run_rows.append({"dag_id": dag_id, "run_id": run_id, "run_type": "scheduled", "state": state,
                                 "run_after": start, "logical_date": start, "start_date": start,
                                 "end_date": start + timedelta(minutes=3), "clear_number": 0,
                                 "span_status": "not_started"})
                plans.append((name, spec, kind, dag_id, run_id, state, r))
    _insert_dags(session, sorted({p[3] for p in plans}))
    session.execute(insert(DagRun.__table__), run_rows)
    ids = {(d, r): i for i, d, r in session.execute(select(DagRun.id, DagRun.dag_id, DagRun.run_id))}
    tis, xcoms = [], []
    for name, spec, kind, dag_id, run_id, state, r in plans:
        if kind == "training":
            tasks = ["start_training", "wait_for_training", "check_gates", "publish"]
            metrics = {g.metric: g.threshold + (0.01 if g.op in (">=", ">") else -0.01) for g in spec.training.gates}
            xcoms.append((dag_id, run_id, "wait_for_training", {"id": f"job-{r}", "status": "succeeded",
                                                                "model_version": f"v{r + 1}", "metrics": metrics}))
        elif kind == "deployment":
            tasks = ["resolve_version", "deployed"] + [f"deploy_{t.name}.{s}" for t in spec.deployment.targets
                                                        for s in ("deploy", "wait", "smoke_test")]
            xcoms.append((dag_id, run_id, "resolve_version", f"v{r + 1}"))
        else:
            tasks = ["plan_partitions", "process_partition"]
        for task_id in tasks:
            tis.append({"id": _uuid(), "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": -1,
                        "state": "failed" if state == "failed" and task_id == "wait_for_training" else
                        "upstream_failed" if state == "failed" else "success", "try_number": 1, "max_tries": 2,
                        "pool": "default_pool", "pool_slots": 1, "priority_weight": 1, "span_status": "not_started"})
    for start in range(0, len(tis), 5000):
        session.execute(insert(TaskInstance.__table__), tis[start:start + 5000])
    session.execute(insert(XComModel.__table__), [
        {"dag_run_id": ids[(d, r)], "dag_id": d, "run_id": r, "task_id": t, "map_index": -1, "key": "return_value",
         "value": json.dumps(v), "timestamp": now} for d, r, t, v in xcoms])
    for name, spec in sorted(specs.items()):
        for partition in spec.streaming.partitions if spec.streaming else ():
            state = {"offset": 999, "empty_polls": 1, "generation": 0, "records": 0,
                     "updated_at": (now - partitions_age).isoformat(timespec="seconds")}
            session.add(Variable(key=variable_key(name, partition), val=json.dumps(state, sort_keys=True)))
    session.flush()
    return len(run_rows)


def _insert_dags(session: Any, dag_ids: list[str]) -> None:
    """The `dag` rows the dag-processor would write (Airflow's own run list joins them)."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from sqlalchemy import insert, select

    if session.scalar(select(DagBundleModel.name).where(DagBundleModel.name == "dags-folder")) is None:
        session.add(DagBundleModel(name="dags-folder"))
        session.flush()
    session.execute(insert(DagModel.__table__), [
        {"dag_id": d, "is_paused": False, "is_stale": False, "bundle_name": "dags-folder", "timetable_type": "",
         "timetable_partitioned": False, "timetable_periodic": False, "partition_mapper_info": [],
         "max_active_tasks": 16, "max_active_runs": 1, "max_consecutive_failed_dag_runs": 0,
         "has_task_concurrency_limits": False, "exceeds_max_non_backfill": False, "fail_fast": False,
         "fileloc": "model_dags.py"} for d in dag_ids])


def _uuid() -> Any:
    import uuid

    return uuid.uuid4()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _environment(home: Path, specs: Path, port: int, password_file: Path) -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {
        "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False", "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32), "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}", "DAG_FACTORY_SPECS": str(specs),
    }


class ApiServer:
    """`airflow api-server` in its own process group, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        airflow = Path(sys.executable).with_name("airflow")
        self._log = open(log, "wb")
        self.proc = subprocess.Popen([str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port)],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def wait(self, timeout: float = START_TIMEOUT) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"api-server exited with {self.proc.returncode}; see {self._log.name}")
            try:
                if requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise RuntimeError(f"api-server not healthy within {timeout:.0f}s; see {self._log.name}")

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self._log.close()

    def __enter__(self) -> "ApiServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def prepare_home(base: Path, models: int, runs: int, port: int) -> tuple[dict[str, str], str, dict[str, int]]:
    """Specs, migrated DB, live Variable and history; returns (env, password, counts)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.parse import generate_workload

    workload_dir = base / "workload"
    generate_workload(workload_dir, models)
    specs = workload_dir / "specs"
    home = base / "home"
    (home / "dags").mkdir(parents=True)
    password = secrets.token_urlsafe(12)
    password_file = home / "passwords.json"
    password_file.write_text(json.dumps({USER: password}))
    env = _environment(home, specs, port, password_file)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DAG_FACTORY_"))}
    child_env.update(env)
    t0 = time.monotonic()
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=child_env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    migrate_s = time.monotonic() - t0
    os.environ.update(env)  # this process reads and writes the same DB
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    from dag_factory.settings import LIVE_VARIABLE

    now = datetime.now(timezone.utc)
    t0 = time.monotonic()
    live = json.loads((workload_dir / "live.json").read_text())
    live.update({"synced_at": now.isoformat(timespec="seconds"), "changed_at": now.isoformat(timespec="seconds"),
                 "expires_at": (now + timedelta(hours=1)).isoformat(timespec="seconds")})
    specs_by_name = model_shapes(specs)
    with create_session() as session:
        run_count = insert_history(session, specs_by_name, runs, now, failed_every=10)
    Variable.set(LIVE_VARIABLE, json.dumps(live, separators=(",", ":")))
    counts = {"models": len(specs_by_name), "dag_runs": run_count, "migrate_s": round(migrate_s, 1),
              "insert_s": round(time.monotonic() - t0, 1)}
    return child_env, password, counts


def measure(url: str, password: str, requests_per_url: int) -> dict[str, dict[str, float]]:
    import requests

    token = requests.post(f"{url}/auth/token", json={"username": USER, "password": password}, timeout=30)
    token.raise_for_status()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    targets = {"json": "/dag-factory/api/models", "page": "/dag-factory/models",
               "baseline": "/api/v2/dags/~/dagRuns?limit=50&order_by=-run_after"}
    times: dict[str, list[float]] = {name: [] for name in targets}
    sizes: dict[str, int] = {}
    for _ in range(2):  # warm-up: imports, the specs cache, SQLite's page cache
        for path in targets.values():
            session.get(url + path, timeout=120).raise_for_status()
    for _ in range(requests_per_url):
        for name, path in targets.items():
            t0 = time.perf_counter()
            response = session.get(url + path, timeout=120)
            elapsed = time.perf_counter() - t0
            response.raise_for_status()
            times[name].append(elapsed)
            sizes[name] = len(response.content)
    base = statistics.median(times["baseline"])
    return {name: {"p50_ms": round(statistics.median(v) * 1000, 1), "p95_ms": round(_percentile(v, 0.95) * 1000, 1),
                   "ratio_p50_to_baseline": round(statistics.median(v) / base, 2), "bytes": sizes[name],
                   "requests": len(v)} for name, v in times.items()}


def prepare_in_child(base: Path, models: int, runs: int, port: int, timeout: float = 900) -> dict[str, Any]:
    """`prepare_home` in a fresh process (it points Airflow at the new home for good);
    returns {"env", "password", "counts"}."""
    subprocess.run([sys.executable, __file__, "--prepare", str(base), "--models", str(models), "--runs", str(runs),
                    "--port", str(port)], check=True, timeout=timeout, cwd=ROOT,
                   env={k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DAG_FACTORY_"))})
    return json.loads((base / "prepared.json").read_text())


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000, help="models (default: 1000)")
    parser.add_argument("--runs", type=int, default=20, help="runs per DAG in the history (default: 20)")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per URL (default: 30)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"results file (default: {RESULTS})")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (its path is printed)")
    parser.add_argument("--prepare", type=Path, default=None, help="only prepare a home in this folder (for tests)")
    parser.add_argument("--port", type=int, default=0, help="api-server port the prepared home uses (default: free)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    if args.prepare:
        env, password, counts = prepare_home(args.prepare, args.models, args.runs, args.port or _free_port())
        (args.prepare / "prepared.json").write_text(json.dumps({"env": env, "password": password, "counts": counts}))
        return 0
    base = Path(tempfile.mkdtemp(prefix="dag_factory_models_page_"))
    port = _free_port()
    print(f"models_page: {args.models} models, {args.runs} runs per DAG, home {base}", file=sys.stderr)
    prepared = prepare_in_child(base, args.models, args.runs, port)
    print(f"models_page: {prepared['counts']}", file=sys.stderr)
    with ApiServer(prepared["env"], port, base / "api-server.log") as server:
        server.wait()
        results = measure(server.url, prepared["password"], args.requests)
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host_cpus": os.cpu_count(),
              "load_avg": [round(x, 2) for x in os.getloadavg()], **prepared["counts"], "runs_per_dag": args.runs,
              "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'url':<10} {'p50 ms':>8} {'p95 ms':>8} {'x baseline':>10} {'bytes':>9}")
    for name, r in results.items():
        print(f"{name:<10} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['ratio_p50_to_baseline']:>10} {r['bytes']:>9}")
    print(f"(written to {args.json})")
    if args.keep:
        print(f"kept {base}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
