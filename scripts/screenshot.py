#!/usr/bin/env python3
"""Take the README screenshots of the Airflow 3 UI showing the DAGs dag_factory generates.

A docs tool, not a test: nothing here checks dag_factory, it only photographs it. It

1. starts ``dag-factory up`` (reference backend + real Airflow: api-server, scheduler,
   dag-processor, triggerer; SQLite) in a throwaway Airflow home on free ports, and waits for
   the first ``dag_factory_backend_sync`` run (the ``sync: ...`` line);
2. unless ``--no-trigger``: triggers one run of ``churn_predictor__train`` through the REST API,
   waits (bounded) for it and for the ``churn_predictor__deploy`` run its model asset starts, so
   the list shows fresh green runs;
3. logs in through the real login form in headless Chromium (Selenium + chromedriver) and
   saves the DAG list (``/dags``, table view) as ``docs/ui.png`` and, unless ``--no-graph``,
   the graph of the latest ``churn_predictor__deploy`` run as ``docs/ui-deploy-graph.png``;
4. stops everything it started: the browser, then ``dag-factory up`` with SIGINT to its process
   group (SIGKILL after 60 s), and deletes the temporary Airflow home.

Requirements (none of them are project dependencies):

* Chromium and ChromeDriver, e.g. Debian's: ``apt-get install -y chromium chromium-driver``
  (``/usr/bin/chromium``, ``/usr/bin/chromedriver``);
* Selenium in a separate throwaway venv (Pillow optional: only used to shrink a PNG that
  would be over ``--max-kb``)::

      python3 -m venv /tmp/shotvenv && /tmp/shotvenv/bin/pip install selenium pillow

* the project venv with Airflow, whose ``dag-factory`` entry point is started
  (default ``<project>/.venv/bin/dag-factory``).

Run from the repository root::

    /tmp/shotvenv/bin/python scripts/screenshot.py                 # writes docs/ui.png, docs/ui-deploy-graph.png
    /tmp/shotvenv/bin/python scripts/screenshot.py --no-trigger --no-graph --out-dir /tmp/shots

Options: ``--project`` (folder with specs/ and dags/, default: this repository),
``--dag-factory`` (the entry point to start), ``--out-dir`` (default: <project>/docs),
``--chromium`` / ``--chromedriver`` (binaries), ``--width`` / ``--height`` (viewport of the
list shot; its height is cut to the table), ``--graph-height``, ``--no-trigger``, ``--no-graph``,
``--keep-home`` (leave the temporary Airflow home and its logs), ``--max-kb`` (size warning /
shrink threshold). Every wait is bounded; a run takes about 2-4 minutes. Exit status 0 on
success, 1 on any failure (the ``dag-factory up`` output is echoed to stderr as it comes).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
SYNC_DAG_ID = "dag_factory_backend_sync"
TRAIN_DAG_ID = "churn_predictor__train"
DEPLOY_DAG_ID = "churn_predictor__deploy"

STARTUP_TIMEOUT = 360.0   # `dag-factory up` until its first-sync line (it waits up to 3 x 180 s itself)
RUN_TIMEOUT = 300.0       # the triggered train run, then the deploy run it causes
PAGE_TIMEOUT = 60.0       # one page to render in the browser
STOP_GRACE = 60.0         # SIGINT -> SIGKILL
QUIET_TRIES = 3           # list shots taken at most, if runs keep starting while one is taken

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]

UI_LINE = re.compile(r"Airflow UI\s+(?P<url>https?://\S+)\s+login:\s*(?P<user>\S+)\s*/\s*(?P<password>\S+)")


class ShotError(Exception):
    """Something this tool waited for did not happen."""


def log(msg: str) -> None:
    print(f"screenshot: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    """Call ``check`` until it returns something truthy; ShotError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise ShotError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- the stack


class Stack:
    """`dag-factory up` in its own process group; its output echoed and scanned for two lines."""

    def __init__(self, dag_factory: str, project: Path, home: Path) -> None:
        self.cmd = [dag_factory, "up", "--home", str(home), "--port", str(free_port()),
                    "--backend-port", str(free_port()), "--project", str(project)]
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.url = self.user = self.password = ""
        self.token = ""

    def start(self) -> None:
        log("starting: " + " ".join(self.cmd))
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     bufsize=1, start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            sys.stderr.write(f"  | {line}")
            sys.stderr.flush()
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> str:
        """Until the UI line (URL, login) and the first-sync line; returns the sync line."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ShotError(f"no first-sync line from dag-factory up within {timeout:.0f}s")
            try:
                line = self.lines.get(timeout=min(left, 5.0))
            except queue.Empty:
                continue
            if line is None:
                raise ShotError(f"dag-factory up exited early (status {self.proc and self.proc.wait()})")
            if (m := UI_LINE.search(line)):
                self.url, self.user, self.password = m["url"].rstrip("/"), m["user"], m["password"]
            elif line.startswith("sync:"):
                if not self.url:
                    raise ShotError("saw the sync line but no 'Airflow UI ... login: user / password' line")
                return line
            elif line.startswith("warning:") or line.startswith("dag-factory up:"):
                raise ShotError(f"dag-factory up: {line}")

    def stop(self) -> None:
        """SIGINT to the whole group (what Ctrl-C does), SIGKILL after STOP_GRACE seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the child leads its own group
        log("stopping dag-factory up (SIGINT) ...")
        try:
            os.killpg(pgid, signal.SIGINT)
            self.proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            log(f"still running after {STOP_GRACE:.0f}s: SIGKILL")
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        # anything of the group left behind (the SIGINT path normally leaves nothing)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # ---- REST API (the same token the UI uses)

    def api(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        if not self.token:
            self.token = self._request("POST", "/auth/token",
                                       {"username": self.user, "password": self.password})["access_token"]
        url = f"/api/v2/{path}" + (f"?{urllib.parse.urlencode(params, doseq=True)}" if params else "")
        return self._request(method, url, body, auth=True)

    def _request(self, method: str, path: str, body: Any = None, auth: bool = False) -> Any:
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ShotError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from exc

    def runs(self, dag_id: str, limit: int = 5) -> list[dict[str, Any]]:
        return self.api("GET", f"dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": limit})["dag_runs"]


def trigger_and_wait(stack: Stack) -> None:
    """One train run; then the deploy run that the train run's model asset event starts."""
    run = stack.api("POST", f"dags/{TRAIN_DAG_ID}/dagRuns", {"logical_date": None})
    run_id = run["dag_run_id"]
    log(f"triggered {TRAIN_DAG_ID} run {run_id}; waiting for it")
    quoted = urllib.parse.quote(run_id, safe="")
    done = wait_for(f"{TRAIN_DAG_ID} run {run_id}",
                    lambda: (r := stack.api("GET", f"dags/{TRAIN_DAG_ID}/dagRuns/{quoted}"))["state"]
                    in ("success", "failed") and r, RUN_TIMEOUT)
    log(f"{TRAIN_DAG_ID} run: {done['state']}")
    if done["state"] != "success":
        return
    started = done["start_date"]

    def deploy_done() -> dict[str, Any] | None:
        newer = [r for r in stack.runs(DEPLOY_DAG_ID) if (r.get("run_after") or "") >= started]
        return newer[0] if newer and newer[0]["state"] in ("success", "failed") else None

    try:
        deploy = wait_for(f"the {DEPLOY_DAG_ID} run after it", deploy_done, RUN_TIMEOUT)
        log(f"{DEPLOY_DAG_ID} run {deploy['dag_run_id']}: {deploy['state']}")
    except ShotError as exc:  # the list is still worth a picture
        log(f"warning: {exc}")


# --------------------------------------------------------------------------- the browser


def start_browser(args: argparse.Namespace, profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = args.chromium
    for flag in CHROMIUM_FLAGS + [f"--window-size={args.width},{args.height}", f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(args.chromedriver), options=opts)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    set_viewport(driver, args.width, args.height)
    return driver


def set_viewport(driver: Any, width: int, height: int) -> None:
    # --window-size counts the (invisible) window frame; this sets the page's viewport exactly.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def body_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except Exception:  # noqa: BLE001 - page in the middle of re-rendering
        return ""


def click(driver: Any, css: str, timeout: float = 20.0) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(ec.element_to_be_clickable((By.CSS_SELECTOR, css))).click()


def login(driver: Any, stack: Stack) -> None:
    """The SimpleAuthManager's own login page: its JS POSTs /auth/token and keeps the JWT in the
    ``_token`` cookie, which the api-server then reads on every UI request."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{stack.url}/auth/login?next=%2Fdags")
    wait = WebDriverWait(driver, PAGE_TIMEOUT)
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(stack.user)
    driver.find_element(By.NAME, "password").send_keys(stack.password)
    driver.find_element(By.XPATH, "//button[@type='submit' or normalize-space()='Sign in']").click()
    try:
        wait.until(lambda d: urllib.parse.urlparse(d.current_url).path.rstrip("/") == "/dags"
                   and d.get_cookie("_token"))
    except Exception as exc:  # noqa: BLE001
        raise ShotError(f"login did not reach /dags (at {driver.current_url}): {body_text(driver)[:300]!r}") from exc


def shoot_list(driver: Any, stack: Stack, dag_ids: list[str], out: Path, args: argparse.Namespace) -> None:
    from selenium.webdriver.common.by import By

    table_view = True
    for attempt in range(1, QUIET_TRIES + 1):
        # The 1-minute stream/sync DAGs run for a few seconds each minute; aim between two runs
        # so every "Latest Run" is a finished (green) one. Not fatal: a running icon is real too.
        try:
            wait_for("a moment with no queued/running DAG runs", lambda: not active_runs(stack), 75, 1.0)
        except ShotError as exc:
            log(f"warning: {exc}")
        set_viewport(driver, args.width, args.height)
        driver.get(f"{stack.url}/dags")
        wait_for("the DAG list", lambda: "Dags" in body_text(driver), PAGE_TIMEOUT, 0.5)
        if table_view:
            try:  # the compact table instead of the default cards: every DAG on one screen
                click(driver, "button[aria-label='Show table view']")
            except Exception:  # noqa: BLE001 - an older/newer UI without it: cards are fine too
                log("warning: no 'Show table view' button; keeping the card view")
                table_view = False
        wait_for(f"all {len(dag_ids)} DAG ids in the list",
                 lambda: all(d in body_text(driver) for d in dag_ids), PAGE_TIMEOUT, 0.5)
        time.sleep(2)  # status icons and tags load in separate requests
        tables = driver.find_elements(By.TAG_NAME, "table")
        if tables:  # cut the empty space under the table
            bottom = driver.execute_script("return arguments[0].getBoundingClientRect().bottom", tables[0])
            set_viewport(driver, args.width, min(args.height, max(480, int(bottom) + 32)))
            time.sleep(1)
        save(driver, out, args.max_kb)
        if not (busy := active_runs(stack)) or attempt == QUIET_TRIES:
            break
        log(f"runs started while shooting ({', '.join(busy)}); again")
    missing = [d for d in dag_ids if d not in body_text(driver)]
    if missing:
        raise ShotError(f"{out}: DAG ids not visible: {missing}")


def active_runs(stack: Stack) -> list[str]:
    runs = stack.api("GET", "dags/~/dagRuns", params={"state": ["queued", "running"], "limit": 100})["dag_runs"]
    return sorted({r["dag_id"] for r in runs})


def shoot_graph(driver: Any, stack: Stack, out: Path, args: argparse.Namespace) -> None:
    runs = stack.runs(DEPLOY_DAG_ID, 1)
    path = f"/dags/{DEPLOY_DAG_ID}"
    if runs:  # a run's page colours every task by its state
        path += "/runs/" + urllib.parse.quote(runs[0]["dag_run_id"], safe="")
    set_viewport(driver, args.width, args.graph_height)
    driver.get(stack.url + path)
    click(driver, "button[aria-label^='Show Graph']", PAGE_TIMEOUT)
    time.sleep(1)
    for optional in ("button[aria-label='Expand all task groups']", "button[aria-label='Collapse Details Panel']"):
        try:
            click(driver, optional, 10)
            time.sleep(1)
        except Exception:  # noqa: BLE001
            log(f"warning: no {optional}")
    wait_for("the graph's task nodes", lambda: "resolve_version" in body_text(driver), PAGE_TIMEOUT, 0.5)
    try:
        click(driver, ".react-flow__controls-fitview", 10)  # refit after the panel changes
    except Exception:  # noqa: BLE001
        log("warning: no fit-view button")
    time.sleep(2)
    save(driver, out, args.max_kb)


def save(driver: Any, out: Path, max_kb: int) -> None:
    if not driver.save_screenshot(str(out)):
        raise ShotError(f"could not write {out}")
    size = out.stat().st_size
    if size > max_kb * 1024:
        try:
            from PIL import Image

            with Image.open(out) as img:
                img.convert("RGB").quantize(colors=256).save(out, optimize=True)
            log(f"{out}: {size // 1024} KB -> {out.stat().st_size // 1024} KB (256 colours)")
        except ImportError:
            log(f"warning: {out} is {size // 1024} KB (> {max_kb} KB); install Pillow to shrink it")
    log(f"wrote {out} ({out.stat().st_size // 1024} KB)")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=REPO, help="folder with specs/ and dags/ (default: this repo)")
    parser.add_argument("--dag-factory", default=None, help="entry point (default: <project>/.venv/bin/dag-factory)")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the PNGs go (default: <project>/docs)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000, help="max height of the list shot")
    parser.add_argument("--graph-height", type=int, default=640)
    parser.add_argument("--no-trigger", action="store_true", help=f"do not trigger a {TRAIN_DAG_ID} run first")
    parser.add_argument("--no-graph", action="store_true", help=f"skip the {DEPLOY_DAG_ID} graph shot")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary Airflow home (logs)")
    parser.add_argument("--max-kb", type=int, default=400, help="shrink (Pillow) / warn above this size")
    args = parser.parse_args(argv)

    project = args.project.resolve()
    dag_factory = args.dag_factory or str(project / ".venv" / "bin" / "dag-factory")
    out_dir = (args.out_dir or project / "docs").resolve()
    for what, path in (("dag-factory", dag_factory), ("chromium", args.chromium), ("chromedriver", args.chromedriver)):
        if not Path(path).exists():
            log(f"{what} not found at {path}")
            return 1
    try:
        import selenium  # noqa: F401
    except ImportError:
        log("selenium is missing: python3 -m venv /tmp/shotvenv && /tmp/shotvenv/bin/pip install selenium pillow")
        return 1
    out_dir.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="dag-factory-shot-"))
    stack = Stack(dag_factory, project, tmp / "home")
    driver = None
    try:
        stack.start()
        log(stack.wait_ready())
        dag_ids = sorted(d["dag_id"] for d in stack.api("GET", "dags", params={"limit": 1000})["dags"])
        log(f"{len(dag_ids)} DAGs: {', '.join(dag_ids)}")
        if not args.no_trigger:
            trigger_and_wait(stack)
        driver = start_browser(args, tmp / "chromium-profile")
        login(driver, stack)
        shoot_list(driver, stack, dag_ids, out_dir / "ui.png", args)
        if not args.no_graph:
            shoot_graph(driver, stack, out_dir / "ui-deploy-graph.png", args)
        return 0
    except (ShotError, OSError) as exc:
        log(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 1
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception as exc:  # noqa: BLE001
                log(f"warning: closing the browser: {exc}")
        stack.stop()
        if args.keep_home:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
