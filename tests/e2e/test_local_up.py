"""`dag-factory up` (the README's run command): starts, syncs, shows every model's DAGs,
stops everything on Ctrl-C, and starts again on the same home with the same login."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from dag_factory.dev.backend.process import free_port
from dag_factory.dev.local import port_is_free
from tests.support import ROOT

pytestmark = pytest.mark.e2e
START_TIMEOUT = 300.0
STOP_TIMEOUT = 90.0


def _start(home: Path, port: int, backend_port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DAG_FACTORY_"))}
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("dag-factory")), "up", "--home", str(home), "--port", str(port),
         "--backend-port", str(backend_port), "--project", str(ROOT)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, text=True,
        cwd=str(home.parent), start_new_session=True)


def _read_until(proc: subprocess.Popen, pattern: str, timeout: float, seen: list[str]) -> re.Match:
    """Lines of the command's output until one matches `pattern` (bounded)."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not selector.select(timeout=1.0):
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} in {timeout:.0f}s; output:\n{''.join(seen)}")


def _processes_with_home(home: Path) -> list[int]:
    """Live processes started for this home (their environment names it)."""
    needle = f"AIRFLOW_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _stop(proc: subprocess.Popen, seen: list[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(STOP_TIMEOUT) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    seen.append(proc.stdout.read())


def _dag_ids(url: str, password: str) -> set[str]:
    token = requests.post(f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
    token.raise_for_status()
    dags = requests.get(f"{url}/api/v2/dags", params={"limit": 1000}, timeout=30,
                        headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    dags.raise_for_status()
    return {d["dag_id"] for d in dags.json()["dags"]}


def test_up_runs_until_ctrl_c_and_starts_again(tmp_path: Path) -> None:
    from dag_factory.specs import load_specs

    home = tmp_path / "airflow-home"
    port, backend_port = free_port(), free_port()
    expected = {s.dag_id(k) for s in load_specs([ROOT / "specs"], check_imports=False).specs
                if not s.template for k in s.kinds} | {"dag_factory_backend_sync"}
    logins = []
    for start in (1, 2):
        seen: list[str] = []
        proc = _start(home, port, backend_port)
        try:
            ui = _read_until(proc, r"Airflow UI\s+(http://\S+)\s+login: admin / (\S+)", START_TIMEOUT, seen)
            logins.append(ui.group(2))
            sync = _read_until(proc, r"sync: dag_factory_backend_sync (\w+); (\d+) DAGs in the UI .*import errors: (\d+)",
                               START_TIMEOUT, seen)
            assert sync.group(1) == "success" and sync.group(3) == "0", "".join(seen)
            assert expected <= _dag_ids(ui.group(1), ui.group(2)), "".join(seen)
        finally:
            if proc.poll() is None:
                _stop(proc, seen)
        assert "stopped." in "".join(seen)
        deadline = time.monotonic() + 30
        while _processes_with_home(home) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _processes_with_home(home) == [], f"start {start}: processes left running"
        assert port_is_free(port) and port_is_free(backend_port), f"start {start}: a port is still taken"
    assert logins[0] == logins[1], "a kept home keeps its login"
    assert (home / "airflow.db").is_file() and (home / "backend.sqlite3").is_file()
