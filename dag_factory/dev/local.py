"""`dag-factory up`: the whole thing on one machine, for a person, in one command.

The reference backend and the real Airflow processes (api-server, scheduler, dag-processor,
triggerer; SQLite + LocalExecutor) in an Airflow home inside the project (``.airflow/``),
kept between starts: the same login, the same runs and Variables next time. The sync DAG runs
as soon as it is parsed, and every model's DAGs follow. The backend learns every spec in
``specs/``, at the start and while `up` runs (`dev.watch`): add a YAML file and its runs work.
Ctrl-C stops every process. docs/local-stack.md has the details.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from dag_factory.dev.stack import ADMIN_USER, Stack, StackError, start_stack
from dag_factory.settings import SYNC_DAG_ID

FIRST_SYNC_TIMEOUT = 180.0
BACKEND_TOKEN_FILE = "backend-token"
LEARNED_FILE = "backend-learned.json"  # what each spec gave the backend (dev.watch)


class _Stop(Exception):
    """SIGINT/SIGTERM arrived."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nobody listens on it (SO_REUSEADDR, as servers bind: a closed port's TIME_WAIT is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _backend_token(home: Path) -> str:
    """One token per home, so a restarted backend and the kept Airflow connection agree."""
    import secrets

    path = home / BACKEND_TOKEN_FILE
    if not path.is_file():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop(signal.Signals(signum).name)


def _first_sync(stack: Stack, expected: set[str], out: TextIO) -> None:
    """Wait for the sync DAG's first run and the model DAGs; say what is there."""
    t0 = time.monotonic()
    stack.wait_dag(SYNC_DAG_ID, FIRST_SYNC_TIMEOUT)
    runs = stack.wait_for(lambda: [r for r in stack.runs(SYNC_DAG_ID) if r["state"] in ("success", "failed")],
                          FIRST_SYNC_TIMEOUT, f"the first {SYNC_DAG_ID} run")
    found = stack.wait_for(
        lambda: expected <= (ids := {d["dag_id"] for d in stack.api("GET", "dags", params={"limit": 1000})["dags"]})
        and ids, FIRST_SYNC_TIMEOUT, "every model's DAGs")
    errors = stack.api("GET", "importErrors")["total_entries"]
    print(f"sync: {SYNC_DAG_ID} {runs[0]['state']}; {len(found)} DAGs in the UI after "
          f"{time.monotonic() - t0:.0f}s; import errors: {errors}", file=out, flush=True)


def run_local(*, root: Path, home: Path, port: int = 8080, backend_port: int = 8800,
              out: TextIO = sys.stdout) -> int:
    """Start everything, print where it is, run until Ctrl-C (or a process dies: exit 1)."""
    from dag_factory.dev.backend.process import BackendStartError, start_backend
    from dag_factory.dev.watch import SpecWatcher
    from dag_factory.specs import load_specs

    specs_dir, dags_dir = root / "specs", root / "dags"
    for what, wanted in (("UI", port), ("backend", backend_port)):
        if not port_is_free(wanted):
            print(f"dag-factory up: port {wanted} ({what}) is in use; pick another with "
                  f"--{'port' if what == 'UI' else 'backend-port'}", file=sys.stderr)
            return 2
    home = home.resolve()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    specs = [s for s in load_specs([specs_dir], check_imports=False).specs if not s.template]
    expected = {s.dag_id(kind) for s in specs for kind in s.kinds} | {SYNC_DAG_ID}

    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    backend = stack = watcher = None
    try:
        print(f"starting the reference backend and Airflow (home: {home}) ...", file=out, flush=True)
        backend = start_backend(port=backend_port, db_path=str(home / "backend.sqlite3"),
                                log_path=str(home / "logs" / "backend.log"), token=_backend_token(home),
                                job_delay=2.0)
        watcher = SpecWatcher(specs_dir, root=root, admin=backend.admin, state_path=home / LEARNED_FILE, out=out)
        try:
            watcher.poll(now=True)  # every spec, before Airflow's first sync asks for them
        except _Stop:
            raise
        except Exception as exc:  # noqa: BLE001 - said in one line, like any start failure
            raise StackError(f"the reference backend did not take the specs: {exc}") from exc
        watcher.start()
        stack = start_stack("sqlite", home, dags_folder=dags_dir, specs_dir=specs_dir,
                            backend_url=backend.url, backend_token=backend.token,
                            api_port=port, keep_home=True)
        print(f"\n  Airflow UI   {stack.base_url}   login: {ADMIN_USER} / {stack.password}\n"
              f"  backend      {backend.url}   (reference model backend; token in {home / BACKEND_TOKEN_FILE})\n"
              f"  logs         {home / 'logs'}\n"
              f"  specs        {specs_dir}   (a new or changed file: DAGs in seconds, the backend learns it)\n"
              f"  airflow CLI  source {home / 'stack.env'} && airflow dags list\n\n"
              "Ctrl-C stops everything.\n", file=out, flush=True)
        try:
            _first_sync(stack, expected, out)
        except StackError as exc:
            print(f"warning: {exc}\n(see {home / 'logs'})", file=out, flush=True)
        while True:
            stack.check_alive()
            if not backend.is_running():
                raise StackError(f"the reference backend exited; see {home / 'logs' / 'backend.log'}")
            time.sleep(2)
    except _Stop:
        print("\nstopping ...", file=out, flush=True)
        return 0
    except (StackError, BackendStartError) as exc:
        print(f"dag-factory up: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        if watcher is not None:
            watcher.stop()
        if stack is not None:
            stack.stop()
        if backend is not None:
            backend.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stopped.", file=out, flush=True)
