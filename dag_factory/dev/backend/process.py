"""Start and stop the reference backend as a real process.

Tests, demos and the CLI need a backend that speaks real HTTP on a real
socket and can be stopped and restarted like a real service. This runs
``python -m dag_factory.dev.backend.server`` in a child process, waits until it
answers its health check, and always cleans up: on ``stop()``, at the end of
a ``with`` block, at interpreter exit, and -- because the child watches its
parent -- even when the parent is killed.

>>> from dag_factory.dev.backend.seed import seed_records                 # doctest: +SKIP
>>> with start_backend(seed=seed_records([("churn", "churn")])) as backend:
...     backend.admin("POST", "/faults", {"path_prefix": "/api/v1/models", "status": 503})
...     backend.client().list_models()        # retried once, then succeeds
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from dag_factory.client import BackendClient
from dag_factory.dev.backend.state import TOKEN_ENV, is_loopback

__all__ = ["RunningBackend", "start_backend", "BackendStartError"]

IMPORT_ROOT = Path(__file__).resolve().parents[3]  # the folder `import dag_factory` finds it in
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
PORT_ATTEMPTS = 3

_running: set[RunningBackend] = set()
_running_lock = threading.Lock()


class BackendStartError(RuntimeError):
    """The backend process did not become healthy in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the child binds it right after)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def url_host(host: str) -> str:
    """Host as written in a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def child_env(token: str) -> dict[str, str]:
    """Environment for the server: token out of argv, project importable from any cwd."""
    env = dict(os.environ)
    env[TOKEN_ENV] = token
    paths = [str(IMPORT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def log_tail(path: str, limit: int = 4000) -> str:
    """The end of the server log, for error messages."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


class RunningBackend:
    """A live reference backend process; use as a context manager or call ``stop()``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        db_path: str,
        token: str,
        job_delay: float,
        seed_path: str | None,
        log_path: str,
        temp_dir: str | None,
        pick_port: bool,
    ) -> None:
        self.host = host
        self.port = port
        self.db_path = db_path
        self.token = token
        self.job_delay = job_delay
        self.log_path = log_path
        self._seed_path = seed_path
        self._temp_dir = temp_dir
        self._pick_port = pick_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = requests.Session()

    @property
    def url(self) -> str:
        """Base URL of the backend, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{url_host(self.host)}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"RunningBackend(url={self.url!r}, db_path={self.db_path!r}, {state})"

    def __enter__(self) -> RunningBackend:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, **kwargs: Any) -> BackendClient:
        """A BackendClient for this backend (constructor kwargs pass through)."""
        return BackendClient(self.url, self.token, **kwargs)

    def admin(self, method: str, path: str, json: Any = None, *, params: dict[str, Any] | None = None) -> Any:
        """Call an admin endpoint (``path`` relative to ``/_admin``); returns its JSON.

        Plain requests, no retries: admin calls drive the test, they are not
        the code under test.
        """
        response = self._http.request(
            method, f"{self.url}/_admin/{path.lstrip('/')}", json=json, params=params,
            headers={"Authorization": f"Bearer {self.token}"}, timeout=10,
        )
        if response.status_code >= 400:
            raise RuntimeError(f"admin {method} {path} -> HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    def start(self) -> None:
        """Launch the process and wait for health; a picked port is retried if taken."""
        if self.is_running():
            return
        attempts = PORT_ATTEMPTS if self._pick_port else 1
        for attempt in range(1, attempts + 1):
            try:
                self._launch()
                self._wait_healthy()
                break
            except BackendStartError:
                self._terminate()
                if attempt == attempts or "address already in use" not in log_tail(self.log_path).lower():
                    raise
                self.port = free_port(self.host)
        with _running_lock:
            _running.add(self)

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after a bounded wait)."""
        self._terminate()
        with _running_lock:
            _running.discard(self)

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop, stay down ``down_for`` seconds, start again on the same port and db."""
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop and delete the temporary files this backend created."""
        self.stop()
        self._http.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    # -- internals -----------------------------------------------------------

    def _command(self) -> list[str]:
        command = [
            sys.executable, "-m", "dag_factory.dev.backend.server",
            "--host", self.host, "--port", str(self.port), "--db", self.db_path,
            "--job-delay", str(self.job_delay), "--exit-with-parent", str(os.getpid()),
        ]
        if self._seed_path is not None:
            command += ["--seed-file", self._seed_path]
        if not is_loopback(self.host):
            command.append("--allow-remote")
        return command

    def _launch(self) -> None:
        with open(self.log_path, "ab") as log_file:
            self._proc = subprocess.Popen(
                self._command(), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                env=child_env(self.token), cwd=None,
            )

    def _wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise BackendStartError(f"backend exited with code {code}:\n{log_tail(self.log_path)}")
            try:
                if self._http.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise BackendStartError(f"backend not healthy after {timeout:.0f}s:\n{log_tail(self.log_path)}")

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


def start_backend(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    db_path: str | None = None,
    token: str = "dev-token",
    job_delay: float = 0.5,
    seed: list[dict] | None = None,
    log_path: str | None = None,
) -> RunningBackend:
    """Run the reference backend in a child process and wait until it is healthy.

    ``port=0`` picks a free port; ``db_path=None`` uses a temporary file
    (removed on ``close()``/exit of the ``with`` block). The server log goes
    to ``log_path`` or a temporary file.
    """
    temp_dir = None
    if db_path is None or log_path is None or seed is not None:
        temp_dir = tempfile.mkdtemp(prefix="dag-factory-backend-")
    seed_path = None
    if seed is not None:
        seed_path = os.path.join(temp_dir, "seed.json")  # type: ignore[arg-type]
        with open(seed_path, "w", encoding="utf-8") as handle:
            json.dump(seed, handle)
    backend = RunningBackend(
        host=host,
        port=port or free_port(host),
        db_path=db_path or os.path.join(temp_dir, "backend.sqlite"),  # type: ignore[arg-type]
        token=token,
        job_delay=job_delay,
        seed_path=seed_path,
        log_path=log_path or os.path.join(temp_dir, "backend.log"),  # type: ignore[arg-type]
        temp_dir=temp_dir,
        pick_port=port == 0,
    )
    try:
        backend.start()
    except BaseException:
        backend.close()
        raise
    return backend


@atexit.register
def _stop_all() -> None:
    """Never leave a backend running after the interpreter exits."""
    with _running_lock:
        backends = list(_running)
    for backend in backends:
        backend.close()
