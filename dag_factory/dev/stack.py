"""Run a real Airflow 3 stack (separate processes) in a temporary AIRFLOW_HOME.

Two profiles:

- ``sqlite``: SQLite metadata DB + LocalExecutor.
- ``celery``: a fresh PostgreSQL database (``dag_factory_e2e_<random>`` on 127.0.0.1:5432,
  dropped at the end) + CeleryExecutor with Redis (``redis://127.0.0.1:6379/<n>``) as broker
  and the PostgreSQL DB as result backend, plus an ``airflow celery worker``.

Both run ``airflow db migrate`` and then start api-server, scheduler, dag-processor and
triggerer on 127.0.0.1 with free ports; every process runs in its own process group and logs
to ``<home>/logs/<name>.log``. Everything is configured through environment variables built
from scratch (the parent's ``AIRFLOW__*`` settings are dropped), also written to
``<home>/stack.env`` for a shell (``source`` it: this venv's ``airflow`` comes first on PATH).

>>> with start_stack("sqlite", home, dags_folder=DAGS, specs_dir=SPECS,          # doctest: +SKIP
...                  backend_url=backend.url, backend_token=backend.token) as stack:
...     run_id = stack.trigger("churn_predictor__train", {})
...     assert stack.wait_run("churn_predictor__train", run_id, 180) == "success"

``Stack.stop()`` (also at the end of the ``with`` block and at interpreter exit) terminates
every process group: SIGTERM, then SIGKILL after a bounded wait.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote, urlsplit

import requests

from dag_factory.dev.backend.process import free_port, log_tail

__all__ = ["Stack", "StackError", "start_stack", "PROFILES", "ADMIN_USER"]

PROFILES = ("sqlite", "celery")
ADMIN_USER = "admin"
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
STOP_TIMEOUT = 15.0
MIGRATE_TIMEOUT = 300.0
READY_TIMEOUT = 120.0
API_ATTEMPTS = 4
TERMINAL_RUN_STATES = ("success", "failed")

_running: set["Stack"] = set()
_lock = threading.Lock()


class StackError(RuntimeError):
    """A stack process failed to start, or a wait ran out of time."""


def airflow_command() -> list[str]:
    """The `airflow` CLI of this interpreter's environment."""
    airflow = Path(sys.executable).with_name("airflow")
    return [str(airflow)] if airflow.exists() else [sys.executable, "-m", "airflow"]


def _child_preexec() -> None:  # pragma: no cover - runs in the child
    """New session (own process group) and, on Linux, SIGTERM when the parent dies."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# --------------------------------------------------------------------------------------------
# PostgreSQL / Redis helpers (celery profile)


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True,
                         connect_timeout=10) as conn:
        conn.execute(sql)


def _create_database(name: str) -> None:
    _pg_admin(f'CREATE DATABASE "{name}"')


def _drop_database(name: str) -> None:
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pick_redis_db() -> int:
    """An empty Redis database number (1..15), so concurrent stacks do not share a broker."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=5)
    try:
        candidates = list(range(1, 16))
        secrets.SystemRandom().shuffle(candidates)
        for number in candidates:
            client.execute_command("SELECT", number)
            if client.dbsize() == 0:
                return number
        return candidates[0]
    finally:
        client.close()


def _flush_redis_db(number: int) -> None:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


# --------------------------------------------------------------------------------------------


@dataclass
class Stack:
    profile: str
    home: Path
    env: dict[str, str]
    api_port: int
    password: str
    commands: dict[str, list[str]]
    db_name: str | None = None
    redis_db: int | None = None
    bundle_processors: dict[str, str] = field(default_factory=dict)  # bundle name -> its dag-processor
    process_env: dict[str, dict[str, str]] = field(default_factory=dict)  # one process's own settings
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _token: str | None = None
    _stopped: bool = False

    # ---- properties
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def processor_of(self, bundle: str) -> str:
        """The name of the dag-processor process that parses `bundle`."""
        return self.bundle_processors.get(bundle, "dag-processor")

    # ---- processes
    def start_process(self, name: str) -> None:
        proc = self.processes.get(name)
        if proc is not None and proc.poll() is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(name), "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} starting {name}: {' '.join(self.commands[name])}\n".encode())
            log.flush()
            self.processes[name] = subprocess.Popen(
                self.commands[name], env={**self.env, **self.process_env.get(name, {})}, cwd=str(self.home),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_child_preexec, close_fds=True)

    def stop_process(self, name: str, *, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
        """Signal the process group of ``name``; SIGKILL the group after ``timeout``."""
        proc = self.processes.get(name)
        if proc is None:
            return
        self._signal_group(proc, sig)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        # The leader may be gone while children of its group live on: always finish the group.
        self._signal_group(proc, signal.SIGKILL)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def kill_process(self, name: str, *, stay_down: bool = False) -> None:
        """SIGKILL the whole process group at once (a crash, not a shutdown). `stay_down`: it is
        meant to be down (`check_alive` does not count it) until `start_process(name)`."""
        self.stop_process(name, sig=signal.SIGKILL, timeout=5)
        if stay_down:
            self.processes.pop(name, None)

    @staticmethod
    def _signal_group(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # pgid == pid (setsid in the child)
        except (ProcessLookupError, PermissionError):
            pass

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise StackError(f"stack process(es) exited: {dead}\n" + "\n".join(
                f"--- {n} ---\n{log_tail(str(self.log_path(n)))}" for n in dead))

    def stop(self) -> None:
        """Stop every process (SIGTERM to every group, then SIGKILL), drop the DB. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        procs = list(self.processes.values())
        for proc in procs:
            self._signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        for proc in procs:
            self._signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.db_name:
            try:
                _drop_database(self.db_name)
            except Exception as exc:  # noqa: BLE001 - reported, cleanup goes on
                print(f"dag_factory.dev.stack: could not drop database {self.db_name}: {exc}", file=sys.stderr)
        if self.redis_db is not None:
            try:
                _flush_redis_db(self.redis_db)
            except Exception as exc:  # noqa: BLE001
                print(f"dag_factory.dev.stack: could not flush redis db {self.redis_db}: {exc}", file=sys.stderr)
        with _lock:
            _running.discard(self)

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    # ---- REST API
    def token(self, refresh: bool = False) -> str:
        if self._token is None or refresh:
            response = requests.post(f"{self.base_url}/auth/token",
                                     json={"username": ADMIN_USER, "password": self.password}, timeout=30)
            if response.status_code not in (200, 201):
                raise StackError(f"POST /auth/token: {response.status_code} {response.text[:500]}")
            self._token = response.json()["access_token"]
        return self._token

    def api_response(self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None
                     ) -> requests.Response:
        """One call, with a fresh token on 401 and up to API_ATTEMPTS tries on a 5xx or a dropped
        connection (SQLite with several writer processes answers "database is locked" as a 500
        now and then). Only send requests that are safe to repeat: see ``trigger``."""
        url = f"{self.base_url}/api/v2/{path.lstrip('/')}"
        refresh = False
        for attempt in range(1, API_ATTEMPTS + 1):
            try:
                response = requests.request(method, url, json=json, params=params, timeout=60,
                                            headers={"Authorization": f"Bearer {self.token(refresh=refresh)}"})
            except (requests.ConnectionError, requests.Timeout):
                if attempt == API_ATTEMPTS:
                    raise
            else:
                if response.status_code == 401 and not refresh:
                    refresh = True
                elif response.status_code < 500 or attempt == API_ATTEMPTS:
                    return response
            time.sleep(min(2.0 ** attempt, 8.0))
        raise AssertionError("unreachable")

    def api(self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """Authenticated call to ``/api/v2/<path>``; returns the JSON (None for 204), raises on >= 400."""
        response = self.api_response(method, path, json=json, params=params)
        if response.status_code >= 400:
            raise StackError(f"{method} /api/v2/{path.lstrip('/')}: {response.status_code} {response.text[:1000]}")
        return response.json() if response.content else None

    # ---- waiting
    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
        """Poll ``predicate`` until it returns something truthy (returned); StackError after ``timeout``.
        Exceptions from the predicate count as "not yet" (the last one is reported)."""
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except StackError as exc:
                last_error = exc
            except (requests.RequestException, ValueError, KeyError) as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                break
            self.check_alive()
            time.sleep(interval)
        raise StackError(f"timed out after {timeout:.0f}s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def ready() -> bool:
            response = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=10)
            if response.status_code != 200:
                return False
            health = response.json()
            return health.get("metadatabase", {}).get("status") == "healthy" and \
                health.get("scheduler", {}).get("status") == "healthy"
        self.wait_for(ready, timeout, "the api-server and scheduler to be healthy")

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        response = self.api_response("GET", f"dags/{quote(dag_id, safe='')}")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise StackError(f"GET dags/{dag_id}: {response.status_code} {response.text[:500]}")
        return response.json()

    def wait_dag(self, dag_id: str, timeout: float = 120) -> dict[str, Any]:
        return self.wait_for(lambda: self.dag(dag_id), timeout, f"DAG {dag_id} to appear")

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"dags/{quote(dag_id, safe='')}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Start a run; returns its run id. The id is chosen here, so a retried POST whose
        first try did reach the database answers 409 for the same run instead of a second run."""
        run_id = f"api__{time.strftime('%Y%m%dT%H%M%S')}_{secrets.token_hex(3)}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf or {})}
        response = self.api_response("POST", f"dags/{quote(dag_id, safe='')}/dagRuns", json=body)
        if response.status_code == 409 and self.run(dag_id, run_id)["dag_run_id"] == run_id:
            return run_id
        if response.status_code >= 400:
            raise StackError(f"POST dags/{dag_id}/dagRuns: {response.status_code} {response.text[:1000]}")
        return response.json()["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"dags/{quote(dag_id, safe='')}/dagRuns",
                        params={"limit": 100, "order_by": "-start_date"})["dag_runs"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait until the run is success/failed; returns the state (StackError on timeout)."""
        return self.wait_for(lambda: self.run(dag_id, run_id)["state"] in TERMINAL_RUN_STATES
                             and self.run(dag_id, run_id)["state"], timeout, f"run {dag_id}/{run_id} to finish")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances",
                        params={"limit": 1000})["task_instances"]

    def describe_run(self, dag_id: str, run_id: str) -> str:
        """Task states of a run, for assertion messages."""
        try:
            return ", ".join(f"{t['task_id']}{'' if t.get('map_index', -1) < 0 else '[%s]' % t['map_index']}="
                             f"{t['state']}(try {t.get('try_number')})" for t in self.task_instances(dag_id, run_id))
        except Exception as exc:  # noqa: BLE001
            return f"(no task instances: {exc})"

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{log_tail(str(self.log_path(name)))}" for name in self.commands)


def _stop_all_at_exit() -> None:
    with _lock:
        stacks = list(_running)
    for stack in stacks:
        stack.stop()


atexit.register(_stop_all_at_exit)


def _base_env(extra_env: Mapping[str, str] | None) -> dict[str, str]:
    """The parent's environment minus every Airflow/dag_factory setting."""
    dropped_prefixes = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "DAG_FACTORY_")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(dropped_prefixes) and k not in ("AIRFLOW_HOME", "AIRFLOW_CONFIG")}
    env.update(extra_env or {})
    return env


def _secrets(home: Path, keep: bool) -> dict[str, str]:
    """Fernet key, API secrets and the admin password: new ones for a throwaway home; for a
    kept home the ones of its first start (a new Fernet key could not read its Variables)."""
    from cryptography.fernet import Fernet

    path = home / "stack-secrets.json"
    if keep and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    values = {"fernet_key": Fernet.generate_key().decode(), "secret_key": secrets.token_hex(16),
              "jwt_secret": secrets.token_hex(32), "password": secrets.token_urlsafe(12)}
    if keep:
        path.touch(mode=0o600)
        path.write_text(json.dumps(values, indent=1) + "\n", encoding="utf-8")
    return values


def stack_env_text(cfg: Mapping[str, str], env: Mapping[str, str]) -> str:
    """``<home>/stack.env``: the stack's settings for a shell (no tokens, no connections), and
    this interpreter's bin folder first on PATH, so that `source stack.env && airflow dags list`
    (`dag-factory up`'s banner) runs the stack's own Airflow, from any shell."""
    lines = [f"export {k}={shlex.quote(v)}" for k, v in sorted(cfg.items()) if "TOKEN" not in k and "CONN" not in k]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())
              if k.startswith("AIRFLOW__") and k not in cfg]
    lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    return "".join(f"{line}\n" for line in lines)


# Every dag-processor inserts the missing ``dag_bundle`` rows when it starts; two started at the
# same moment on a new database race, and the loser exits on the unique ``dag_bundle.name``
# (docs/airflow-facts.md). The stack writes them once before.
_SYNC_BUNDLES = ("from airflow.dag_processing.bundles.manager import DagBundlesManager; "
                 "DagBundlesManager().sync_bundles_to_db()")


def _run_step(stack: Stack, name: str, argv: list[str], what: str) -> None:
    """Run one setup command to its end, its output in the stack's log `name`."""
    with open(stack.log_path(name), "wb") as log:
        try:
            result = subprocess.run(argv, env=stack.env, cwd=str(stack.home), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, timeout=MIGRATE_TIMEOUT,
                                    preexec_fn=_child_preexec)
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"{what} took over {MIGRATE_TIMEOUT:.0f}s") from exc
    if result.returncode != 0:
        raise StackError(f"{what} exited with {result.returncode}:\n{log_tail(str(stack.log_path(name)))}")


def start_stack(profile: str, home: Path, *, dags_folder: Path | str, specs_dir: Path | str | None,
                backend_url: str, backend_token: str, extra_env: Mapping[str, str] | None = None,
                api_port: int | None = None, keep_home: bool = False,
                bundles: Sequence[Mapping[str, Any]] | None = None,
                processors: Mapping[str, Sequence[str]] | None = None,
                process_env: Mapping[str, Mapping[str, str]] | None = None) -> Stack:
    """Configure ``home`` as AIRFLOW_HOME for ``profile``, migrate, start the processes, wait
    until the api-server and the scheduler are healthy. Use as a context manager.
    ``keep_home``: a home that is started again (its secrets are kept in it).
    ``bundles``: the ``[dag_processor] dag_bundle_config_list`` (default: the DAGs folder).
    ``processors``: several dag-processors, process name -> the bundles it parses
    (``airflow dag-processor --bundle-name ...``); default: one for every bundle.
    ``process_env``: process name -> settings of that process only (e.g. one processor's
    ``AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL``)."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, not {profile!r}")

    home = Path(home).resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    backend = urlsplit(backend_url)
    api_port = api_port or free_port()
    keys = _secrets(home, keep_home)
    password = keys["password"]
    passwords_file = home / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps({ADMIN_USER: password}) + "\n", encoding="utf-8")

    cfg: dict[str, str] = {
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(dags_folder).resolve()),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        # Shared secrets: every process must sign/verify the same JWTs.
        "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__EXPOSE_CONFIG": "True",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs" / "tasks"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "180",
        # A DAG no longer produced by its file (e.g. a spec was fixed, so its
        # dag_factory_invalid__ DAG is gone) is only marked stale by the dag-processor's
        # stale scan: every [scheduler] parsing_cleanup_interval (60 s), for DAGs whose
        # last_parsed_time is [dag_processor] stale_dag_threshold (50 s) older than their
        # file's last parse (airflow/dag_processing/manager.py deactivate_stale_dags).
        "AIRFLOW__SCHEDULER__PARSING_CLEANUP_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "10",
        # Parse quickly: new/changed spec files must show up within seconds.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "dag_bundles"),  # versioned bundles' clones
        "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "60",
        "AIRFLOW__TRIGGERER__CAPACITY": "100",
        "AIRFLOW_HOME": str(home),
        "DAG_FACTORY_SYNC_INTERVAL": "1m",
        "DAG_FACTORY_SPEC_CACHE": str(home / "spec-cache"),  # the dag-processor's, in the stack's home
        "AIRFLOW_CONN_MODEL_BACKEND": f"http://:{quote(backend_token, safe='')}@{backend.hostname}:{backend.port}",
        # this stack's own API, for DAG_FACTORY_REPARSE=api (the sync asks for re-parses through it)
        "AIRFLOW_CONN_AIRFLOW_API": f"http://{ADMIN_USER}:{quote(password, safe='')}@127.0.0.1:{api_port}",
        "PYTHONUNBUFFERED": "1",
    }
    if specs_dir is not None:  # else: specs/ beside each entry file's folder (dag_factory.layout.specs_dir_for)
        cfg["DAG_FACTORY_SPECS"] = str(Path(specs_dir).resolve())
    project_root = str(Path(__file__).resolve().parents[2])  # the folder `import dag_factory` finds it in
    env = _base_env(None)
    paths = [project_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(cfg)

    airflow = airflow_command()
    if bundles is not None:
        cfg["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(list(bundles))
        env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = cfg["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"]
    commands = {
        "api-server": [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(api_port)],
        "scheduler": [*airflow, "scheduler"],
        "triggerer": [*airflow, "triggerer"],
    }
    bundle_processors: dict[str, str] = {}
    for name, names in (processors or {"dag-processor": []}).items():
        commands[name] = [*airflow, "dag-processor", *(arg for bundle in names for arg in ("--bundle-name", bundle))]
        bundle_processors.update(dict.fromkeys(names, name))
    db_name = redis_db = None
    if profile == "sqlite":
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
        env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
    else:
        db_name = f"dag_factory_e2e_{secrets.token_hex(4)}"
        _create_database(db_name)
        redis_db = _pick_redis_db()
        pg = f"{PG_USER}@{PG_HOST}:{PG_PORT}/{db_name}"
        env.update({
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{pg}",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{pg}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
            # broker visibility: a task taken by a killed worker goes back to the queue
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "600",
        })
        commands["celery-worker"] = [*airflow, "celery", "worker", "--concurrency", "4",
                                     "--celery-hostname", f"e2e-{secrets.token_hex(3)}@%h"]
    env.update(extra_env or {})

    stack = Stack(profile=profile, home=home, env=env, api_port=api_port, password=password,
                  commands=commands, db_name=db_name, redis_db=redis_db, bundle_processors=bundle_processors,
                  process_env={name: dict(values) for name, values in (process_env or {}).items()})
    with _lock:
        _running.add(stack)
    (home / "stack.env").touch(mode=0o600)  # it holds the Fernet key
    (home / "stack.env").write_text(stack_env_text(cfg, env), encoding="utf-8")
    try:
        _run_step(stack, "db-migrate", [*airflow, "db", "migrate"], "airflow db migrate")
        if len(processors or ()) > 1:  # each would write the bundles' rows at start, and they race
            _run_step(stack, "bundles-sync", [sys.executable, "-c", _SYNC_BUNDLES], "syncing the DAG bundles")
        for name in commands:
            stack.start_process(name)
        stack.wait_ready()
    except BaseException:
        stack.stop()
        raise
    return stack
