"""Idle-CPU benchmark: what a real `airflow dag-processor` spends when nothing changes.

    .venv/bin/python benchmarks/idle_cpu.py [--models 1000] [--seconds 600] [--modes timer,on-change]
                                            [--touches 3] [--json PATH] [--keep]

For N generated models (`benchmarks.parse.generate_workload`: specs + the live snapshot), and for
each mode, it starts a real dag-processor in a fresh temp AIRFLOW_HOME (SQLite DB made with
`airflow db migrate`, the live snapshot imported as the Variable `dag_factory_live_models`, a DAGs
folder holding only a copy of `dags/model_dags.py`), waits for the first parse to be in the DB,
then measures over an idle window (nothing changes):

- the CPU seconds of the dag-processor and every process it forked (utime + stime of the live
  process tree, plus cutime + cstime of the dag-processor: the parse children it has reaped),
- the parses in the window (parse processes forked, and DB updates of the DAGs' last_parsed_time).

In `on-change` mode it then touches the entry file (`os.utime`, what the sync DAG's
`request_reparse` does after live data changed) and times how long until the dag-processor forks a
parse and until the DAGs' last_parsed_time moves; and it checks what happens to a touch made while
a parse is already running.

Modes:
  timer      Airflow's defaults: [dag_processor] min_file_process_interval = 30,
             file_parsing_sort_mode = modified_time (the installed default).
  on-change  min_file_process_interval = 3600, file_parsing_sort_mode = modified_time.

Both raise [core] dagbag_import_timeout and [dag_processor] dag_file_processor_timeout to 600 s,
because one parse + serialization of N=1000 takes 60-100 s of CPU on a 2-core machine (the
defaults, 30 s and 50 s, would kill it): the measurement is about CPU, not about timeouts.

A benchmark, not a test: it prints and writes numbers and asserts nothing about time.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.parse import LIVE_VARIABLE, generate_workload, project_python  # noqa: E402

ENTRY_FILE = ROOT / "dags" / "model_dags.py"
ENTRY_NAME = ENTRY_FILE.name
TIMEOUT_S = 600  # [core] dagbag_import_timeout and [dag_processor] dag_file_processor_timeout, both modes
ON_CHANGE_INTERVAL_S = 3600
MODES: dict[str, dict[str, str]] = {
    # Airflow's defaults, nothing set (the effective values are read back and printed).
    "timer": {},
    "on-change": {
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(ON_CHANGE_INTERVAL_S),
        "AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE": "modified_time",
    },
}
# Read back from the dag-processor's environment and reported per mode.
SETTINGS = (
    ("dag_processor", "min_file_process_interval"),
    ("dag_processor", "file_parsing_sort_mode"),
    ("dag_processor", "refresh_interval"),
    ("dag_processor", "bundle_refresh_check_interval"),
    ("dag_processor", "stale_dag_threshold"),
    ("dag_processor", "dag_file_processor_timeout"),
    ("dag_processor", "parsing_processes"),
    ("dag_processor", "print_stats_interval"),
    ("scheduler", "parsing_cleanup_interval"),
    ("core", "dagbag_import_timeout"),
    ("core", "dag_discovery_safe_mode"),
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
NO_VARIABLE_MARKERS = ("building DAGs from the specs alone", "could not read Variable")


# --------------------------------------------------------------------------- processes we start

_STARTED: list[subprocess.Popen] = []


def _popen(cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """Start `cmd` in its own session (so its whole process group can be stopped)."""
    fh = open(log, "ab")
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        fh.close()
    _STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the process group, wait up to `grace_s`, then SIGKILL the group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # The group may outlive its leader (forked parse children); SIGKILL whatever is left of it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    if proc in _STARTED:
        _STARTED.remove(proc)


def stop_all() -> None:
    for proc in list(reversed(_STARTED)):
        stop(proc, grace_s=10.0)


def _on_signal(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


def run_cli(cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path, timeout_s: float) -> int:
    """Run a short command to its end (bounded); its output is appended to `log`."""
    with open(log, "ab") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n".encode())
    proc = _popen(cmd, env=env, cwd=cwd, log=log)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(cmd[:4])}... did not finish within {timeout_s:.0f} s; see {log}") from None
    finally:
        stop(proc, grace_s=5.0)


# --------------------------------------------------------------------------- /proc: CPU of a tree


def _read_stat(pid: int) -> tuple[int, int, int, int, int] | None:
    """(ppid, utime, stime, cutime, cstime) in clock ticks, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(b")") + 2:].split()  # after "pid (comm) "
    # fields[0] is state (stat field 3): ppid is field 4, utime..cstime are fields 14..17
    return int(fields[1]), int(fields[11]), int(fields[12]), int(fields[13]), int(fields[14])


def _all_ppids() -> dict[int, int]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _read_stat(int(name))
            if st is not None:
                out[int(name)] = st[0]
    return out


@dataclass
class TreeSample:
    t: float                       # time.monotonic()
    root_self: float               # utime + stime of the root, s
    root_children: float           # cutime + cstime of the root (reaped children), s
    descendants: dict[int, float]  # live descendant pid -> its utime + stime + cutime + cstime, s
    direct: set[int]               # the root's direct children

    @property
    def total(self) -> float:
        return self.root_self + self.root_children + sum(self.descendants.values())


def sample_tree(root: int) -> TreeSample | None:
    """CPU of `root` and its live descendants. Re-read when a child was reaped between the reads
    of the root and of its children (bounded), so that a child is counted exactly once."""
    for _ in range(5):
        before = _read_stat(root)
        if before is None:
            return None
        ppids = _all_ppids()
        kids: dict[int, list[int]] = {}
        for pid, ppid in ppids.items():
            kids.setdefault(ppid, []).append(pid)
        desc: dict[int, float] = {}
        stack = list(kids.get(root, []))
        while stack:
            pid = stack.pop()
            st = _read_stat(pid)
            if st is not None:
                desc[pid] = sum(st[1:]) / CLK_TCK
                stack.extend(kids.get(pid, []))
        after = _read_stat(root)
        if after is None:
            return None
        if after[3:] == before[3:]:
            return TreeSample(time.monotonic(), (after[1] + after[2]) / CLK_TCK, (after[3] + after[4]) / CLK_TCK,
                              desc, set(kids.get(root, [])) & set(desc))
    return TreeSample(time.monotonic(), (after[1] + after[2]) / CLK_TCK, (after[3] + after[4]) / CLK_TCK,
                      desc, set(kids.get(root, [])) & set(desc))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class Watcher:
    """Follows the dag-processor's process tree: forks (parse processes) and reaped children, and
    checks that a reaped child's CPU shows up in the dag-processor's cutime + cstime."""

    root: int
    last: TreeSample | None = None
    known: dict[int, float] = field(default_factory=dict)      # direct child pid -> first seen (monotonic)
    forks: list[tuple[float, int]] = field(default_factory=list)  # (first seen, pid)
    reaped: list[dict[str, float]] = field(default_factory=list)
    long_lived: set[int] = field(default_factory=set)

    def poll(self) -> TreeSample | None:
        s = sample_tree(self.root)
        if s is None:
            return None
        for pid in s.direct - set(self.known):
            self.known[pid] = s.t
            self.forks.append((s.t, pid))
        if self.last is not None:
            gone = {pid for pid in self.last.direct if pid not in s.descendants}
            if gone:
                self.reaped.append({
                    "children": len(gone),
                    "last_seen_cpu_s": round(sum(self.last.descendants[p] for p in gone), 3),
                    "root_cutime_cstime_growth_s": round(s.root_children - self.last.root_children, 3),
                })
            for pid in gone:
                self.known.pop(pid, None)
        self.last = s
        return s

    def forks_between(self, t0: float, t1: float) -> int:
        return sum(1 for t, _ in self.forks if t0 <= t <= t1)

    def parse_running(self) -> bool:
        return bool(self.last and self.last.direct)


# --------------------------------------------------------------------------- the metadata DB (read-only)


class DB:
    def __init__(self, path: Path):
        self.path = path

    def _query(self, sql: str, args: tuple = ()) -> list[tuple] | None:
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
            try:
                return con.execute(sql, args).fetchall()
            finally:
                con.close()
        except sqlite3.Error:
            return None  # locked by a writer, or not there yet: the caller polls again

    def entry_dags(self) -> dict[str, tuple[str | None, bool]] | None:
        rows = self._query("SELECT dag_id, last_parsed_time, is_stale FROM dag WHERE relative_fileloc = ?",
                           (ENTRY_NAME,))
        return None if rows is None else {r[0]: (r[1], bool(r[2])) for r in rows}

    def last_parsed(self) -> str | None:
        rows = self._query("SELECT max(last_parsed_time) FROM dag WHERE relative_fileloc = ?", (ENTRY_NAME,))
        return rows[0][0] if rows else None

    def import_errors(self) -> list[tuple[str, str]]:
        return self._query("SELECT filename, stacktrace FROM import_error") or []

    def tagged(self, tag: str, prefix: str) -> int:
        rows = self._query("SELECT count(*) FROM dag_tag WHERE name = ? AND dag_id LIKE ?", (tag, prefix + "%"))
        return rows[0][0] if rows else 0

    def has_variable(self, key: str) -> bool:
        rows = self._query('SELECT length(val) FROM variable WHERE "key" = ?', (key,))
        return bool(rows and rows[0][0])


# --------------------------------------------------------------------------- one mode


def live_value(wl) -> str:
    """The workload's live snapshot with its last model `paused` (content hash recomputed)."""
    from dag_factory.live.snapshot import content_hash

    snap = json.loads(wl.live_file.read_text())
    snap["models"][wl.model_names[-1]]["status"] = "paused"
    snap["content_hash"] = content_hash(snap)
    return json.dumps(snap, separators=(",", ":"))


def clean_env(home: Path, dags: Path, specs: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "_AIRFLOW", "DAG_FACTORY")) and k != "PYTHONPATH"}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(TIMEOUT_S),
        "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": str(TIMEOUT_S),
        "DAG_FACTORY_SPECS": str(specs),
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.update(extra)
    return env


_READ_SETTINGS = """
import json, sys
from airflow.configuration import conf
print("SETTINGS=" + json.dumps({f"{s}.{k}": conf.get(s, k) for s, k in json.loads(sys.argv[1])}))
"""


def read_settings(python: Path, env: dict[str, str], cwd: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-c", _READ_SETTINGS, json.dumps(SETTINGS)], env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=300, start_new_session=True)
    for line in out.stdout.splitlines():
        if line.startswith("SETTINGS="):
            return json.loads(line[len("SETTINGS="):])
    raise RuntimeError(f"could not read the settings: {out.stderr[-2000:]}")


def _wait(what: str, cond: Callable[[], bool], *, timeout_s: float, every_s: float, proc: subprocess.Popen,
          watcher: Watcher, log: Callable[[str], None], progress_s: float = 60.0) -> float:
    """Poll `cond` (and the process tree) until true; seconds waited. Raises when the bound is
    reached or the dag-processor exited."""
    t0 = time.monotonic()
    next_note = t0 + progress_s
    while True:
        watcher.poll()
        if cond():
            return time.monotonic() - t0
        if proc.poll() is not None:
            raise RuntimeError(f"the dag-processor exited ({proc.returncode}) while waiting for {what}")
        now = time.monotonic()
        if now - t0 > timeout_s:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        if now >= next_note:
            log(f"  ... still waiting for {what} ({now - t0:.0f} s)")
            next_note = now + progress_s
        time.sleep(every_s)


def run_mode(mode: str, wl, base: Path, *, seconds: float, touches: int, mid_parse_check: bool,
             log: Callable[[str], None]) -> dict[str, Any]:
    python = project_python()
    work = base / mode
    home, dags = work / "home", work / "dags"
    home.mkdir(parents=True)
    dags.mkdir()
    entry = dags / ENTRY_NAME
    shutil.copyfile(ENTRY_FILE, entry)
    env = clean_env(home, dags, wl.specs_dir, MODES[mode])
    cli_log, proc_log = work / "cli.log", work / "dag_processor.log"
    result: dict[str, Any] = {"mode": mode, "env": {k: v for k, v in MODES[mode].items()}, "problems": []}
    n_expected = len(wl.expected)

    log(f"[{mode}] airflow db migrate ...")
    t = time.monotonic()
    rc = run_cli([str(python), "-m", "airflow", "db", "migrate"], env=env, cwd=work, log=cli_log, timeout_s=900)
    if rc != 0:
        raise RuntimeError(f"airflow db migrate exited {rc}; see {cli_log}")
    result["db_migrate_s"] = round(time.monotonic() - t, 1)

    # The live snapshot as a real Variable in the DB (the parse reads it through the supervisor).
    # Too long for one argv string at N=1000 (Linux: 128 KiB), so through `variables import`; a
    # string value is stored as it is.
    # One model (the last) is `paused` in it: its DAGs get the tag `paused`, which proves after the
    # first parse that the dag-processor's parse really read the Variable (specs alone: no tag).
    var_file = work / "variables.json"
    var_file.write_text(json.dumps({LIVE_VARIABLE: live_value(wl)}))
    rc = run_cli([str(python), "-m", "airflow", "variables", "import", str(var_file)], env=env, cwd=work,
                 log=cli_log, timeout_s=300)
    db = DB(home / "airflow.db")
    if rc != 0 or not db.has_variable(LIVE_VARIABLE):
        raise RuntimeError(f"could not set the Variable {LIVE_VARIABLE}; see {cli_log}")
    result["settings"] = read_settings(python, env, work)
    log(f"[{mode}] settings: " + ", ".join(f"{k}={v}" for k, v in result["settings"].items()))

    log(f"[{mode}] starting airflow dag-processor (log {proc_log})")
    proc = _popen([str(python), "-m", "airflow", "dag-processor"], env=env, cwd=work, log=proc_log)
    watcher = Watcher(proc.pid)
    t_start = time.monotonic()
    try:
        # ---- the first parse -----------------------------------------------------------------
        def first_parse_done() -> bool:
            got = db.entry_dags() or {}
            errors = [e for e in db.import_errors() if e[0] and e[0].endswith(ENTRY_NAME)]
            if errors:
                raise RuntimeError(f"import error in the entry file: {errors[0][1][-1500:]}")
            active = {d for d, (_, stale) in got.items() if not stale}
            return set(wl.expected) <= active

        bound = max(600.0, 300.0 + 1.5 * wl.models)
        waited = _wait("the first parse (all expected DAGs in the DB)", first_parse_done, timeout_s=bound,
                       every_s=2.0, proc=proc, watcher=watcher, log=log)
        s0 = watcher.poll()
        got = db.entry_dags() or {}
        result["dags_in_db"] = sum(1 for _, stale in got.values() if not stale)
        result["dags_expected"] = n_expected
        paused = db.tagged("paused", wl.model_names[-1] + "__")
        result["variable_read_check"] = {"paused_model": wl.model_names[-1], "dags_tagged_paused": paused}
        if not paused:
            result["problems"].append(f"the parse did not use the Variable {LIVE_VARIABLE}: "
                                      f"{wl.model_names[-1]} is paused there but its DAGs are not tagged `paused`")
        result["first_parse"] = {"wall_s_since_start": round(waited, 1),
                                 "cpu_s_since_start": round(s0.total, 2) if s0 else None}
        log(f"[{mode}] first parse in the DB after {waited:.0f} s ({result['dags_in_db']} DAGs from the entry "
            f"file, {n_expected} expected); CPU since start {s0.total if s0 else float('nan'):.1f} s")

        # ---- the idle window -----------------------------------------------------------------
        log(f"[{mode}] idle window: {seconds:.0f} s, nothing changes")
        db_updates: list[float] = []
        last_db = db.last_parsed()
        w0 = watcher.poll()
        reaped_before = len(watcher.reaped)
        tick = w0.t
        next_db = tick + 2.0
        next_note = tick + 60.0
        while True:
            tick += 1.0
            time.sleep(max(0.0, tick - time.monotonic()))
            s = watcher.poll()
            if s is None or proc.poll() is not None:
                raise RuntimeError(f"the dag-processor exited ({proc.poll()}) during the idle window")
            if s.t >= next_db:
                now_db = db.last_parsed()
                if now_db is not None and now_db != last_db:
                    db_updates.append(s.t - w0.t)
                    last_db = now_db
                next_db = s.t + 2.0
            if s.t >= next_note:
                log(f"  ... {s.t - w0.t:.0f} s: CPU {s.total - w0.total:.1f} s, "
                    f"{watcher.forks_between(w0.t + 1e-9, s.t)} parse process(es) forked")
                next_note = s.t + 60.0
            if s.t - w0.t >= seconds:
                w1 = s
                break
        # last DB look (a parse that finished in the last 2 s)
        now_db = db.last_parsed()
        if now_db is not None and now_db != last_db:
            db_updates.append(w1.t - w0.t)
        span = w1.t - w0.t
        cpu = w1.total - w0.total
        reaped = watcher.reaped[reaped_before:]
        result["idle"] = {
            "window_s": round(span, 1),
            "cpu_s": round(cpu, 2),
            "cpu_pct_of_one_core": round(100.0 * cpu / span, 2),
            "cpu_s_dag_processor_itself": round(w1.root_self - w0.root_self, 2),
            "cpu_s_parse_children": round(cpu - (w1.root_self - w0.root_self), 2),
            "parse_processes_forked": watcher.forks_between(w0.t + 1e-9, w1.t),
            "parses_completed_db": len(db_updates),
            "db_update_times_s": [round(x, 1) for x in db_updates],
            "parse_running_at_end": bool(w1.direct),
            "reaped_children_check": {
                "children_reaped": sum(r["children"] for r in reaped),
                "their_last_seen_cpu_s": round(sum(r["last_seen_cpu_s"] for r in reaped), 2),
                "dag_processor_cutime_cstime_growth_s": round(sum(r["root_cutime_cstime_growth_s"] for r in reaped), 2),
            },
        }
        log(f"[{mode}] idle: {cpu:.1f} CPU s in {span:.0f} s = {100 * cpu / span:.1f}% of a core; "
            f"{result['idle']['parse_processes_forked']} parse(s) forked, {len(db_updates)} completed (DB)")

        # ---- change -> re-parse latency --------------------------------------------------------
        if mode == "on-change" and touches > 0:
            result["latency"] = measure_latency(entry, db, proc, watcher, touches=touches,
                                                parse_bound_s=max(300.0, 3.0 * waited), log=log, mode=mode)
            if mid_parse_check:
                result["touch_during_parse"] = touch_during_parse(entry, db, proc, watcher,
                                                                  parse_bound_s=max(300.0, 3.0 * waited),
                                                                  log=log, mode=mode)
        result["wall_s"] = round(time.monotonic() - t_start, 1)
    finally:
        stop(proc)
        result["dag_processor_exit"] = proc.returncode
    # Did the parses read the Variable? (the entry file logs when it builds from the specs alone)
    for path in (home / "logs").rglob("*.log") if (home / "logs").exists() else []:
        text = path.read_text(errors="replace")
        if any(m in text for m in NO_VARIABLE_MARKERS):
            result["problems"].append(f"a parse did not get the Variable {LIVE_VARIABLE} (see {path})")
            break
    if result.get("dags_in_db") != n_expected:
        result["problems"].append(f"{result.get('dags_in_db')} DAGs in the DB for the entry file, "
                                  f"{n_expected} expected")
    return result


def _wait_quiet(db: DB, proc, watcher: Watcher, *, bound_s: float, log, what: str) -> None:
    """Until no parse process is running and the DB's last_parsed_time held still for 3 s."""
    state = {"value": db.last_parsed(), "since": time.monotonic()}

    def quiet() -> bool:
        v = db.last_parsed()
        if v != state["value"] or watcher.parse_running():
            state["value"], state["since"] = v, time.monotonic()
            return False
        return time.monotonic() - state["since"] >= 3.0

    _wait(what, quiet, timeout_s=bound_s, every_s=0.5, proc=proc, watcher=watcher, log=log)


def _touch_and_time(entry: Path, db: DB, proc, watcher: Watcher, *, bound_s: float, log) -> dict[str, Any]:
    before = db.last_parsed()
    forks_before = len(watcher.forks)
    t0 = time.monotonic()
    os.utime(entry)  # what dag_factory.live.sync.request_reparse does
    picked = None

    def reparsed() -> bool:
        nonlocal picked
        if picked is None and len(watcher.forks) > forks_before:
            picked = watcher.forks[forks_before][0] - t0
        v = db.last_parsed()
        return v is not None and v != before

    _wait("the re-parse after a touch", reparsed, timeout_s=bound_s, every_s=0.25, proc=proc, watcher=watcher,
          log=log)
    done = time.monotonic() - t0
    return {"fork_s": None if picked is None else round(picked, 2), "in_db_s": round(done, 2)}


def measure_latency(entry: Path, db: DB, proc, watcher: Watcher, *, touches: int, parse_bound_s: float, log,
                    mode: str) -> dict[str, Any]:
    runs = []
    for i in range(touches):
        _wait_quiet(db, proc, watcher, bound_s=parse_bound_s, log=log, what="a quiet dag-processor")
        time.sleep(2.0)  # the touch is clearly later than the last parse's finish time
        r = _touch_and_time(entry, db, proc, watcher, bound_s=parse_bound_s, log=log)
        runs.append(r)
        log(f"[{mode}] touch {i + 1}/{touches}: parse forked after {r['fork_s']} s, DAGs updated in the DB "
            f"after {r['in_db_s']} s")
    forks = [r["fork_s"] for r in runs if r["fork_s"] is not None]
    return {"runs": runs,
            "median_fork_s": round(statistics.median(forks), 2) if forks else None,
            "median_in_db_s": round(statistics.median(r["in_db_s"] for r in runs), 2)}


def touch_during_parse(entry: Path, db: DB, proc, watcher: Watcher, *, parse_bound_s: float, log,
                       mode: str) -> dict[str, Any]:
    """Touch, wait until that parse is running, touch again; is there a second parse afterwards?
    (manager.py compares the file's mtime with the last parse's *finish* time.)"""
    _wait_quiet(db, proc, watcher, bound_s=parse_bound_s, log=log, what="a quiet dag-processor")
    time.sleep(2.0)
    forks_before = len(watcher.forks)
    before = db.last_parsed()
    os.utime(entry)
    _wait("the parse after the first touch", lambda: len(watcher.forks) > forks_before, timeout_s=parse_bound_s,
          every_s=0.25, proc=proc, watcher=watcher, log=log)
    parse_pid = watcher.forks[forks_before][1]
    time.sleep(1.0)
    t_fork = watcher.forks[forks_before][0]
    os.utime(entry)  # the second change, while that parse runs
    t_second = time.monotonic()
    watcher.poll()
    still_running = bool(watcher.last and parse_pid in watcher.last.direct)  # the parse process is alive
    forks_after_second = len(watcher.forks)
    _wait("the first parse to reach the DB", lambda: db.last_parsed() not in (None, before),
          timeout_s=parse_bound_s, every_s=0.5, proc=proc, watcher=watcher, log=log)
    t_first_done = time.monotonic()
    grace = 60.0
    try:
        _wait("a second parse", lambda: len(watcher.forks) > forks_after_second, timeout_s=grace, every_s=0.5,
              proc=proc, watcher=watcher, log=log, progress_s=1e9)
        second = True
    except TimeoutError:
        second = False
    out = {"second_touch_while_parse_running": still_running,
           "second_touch_s_after_fork": round(t_second - t_fork, 2),
           "first_parse_in_db_s_after_second_touch": round(t_first_done - t_second, 2),
           "reparsed_again_within_s": grace, "reparsed_again": second}
    log(f"[{mode}] touch during a running parse: parse running at the 2nd touch: {still_running}; "
        f"re-parsed again within {grace:.0f} s after it finished: {second}")
    return out


# --------------------------------------------------------------------------- report


def _settings_text(r: dict[str, Any]) -> str:
    s = r.get("settings") or {}
    txt = (f"min_file_process_interval={s.get('dag_processor.min_file_process_interval', '?')}, "
           f"file_parsing_sort_mode={s.get('dag_processor.file_parsing_sort_mode', '?')}")
    return txt + (" (defaults)" if r["mode"] == "timer" else "")


def render_table(results: list[dict[str, Any]]) -> str:
    lines = ["| mode | settings | idle CPU s in window | % of a core | parses in window | change → re-parse latency |",
             "|---|---|---|---|---|---|"]
    for r in results:
        idle = r.get("idle")
        if not idle:
            lines.append(f"| {r['mode']} | {_settings_text(r)} | failed: {'; '.join(r['problems'])[:200]} | | | |")
            continue
        parses = f"{idle['parses_completed_db']} completed ({idle['parse_processes_forked']} forked)"
        lat = r.get("latency")
        if lat:
            lat_txt = (f"median {lat['median_in_db_s']:.0f} s to the DB (parse forked after "
                       f"{lat['median_fork_s']} s; {len(lat['runs'])} touches)")
        else:
            lat_txt = "not measured"
        lines.append(f"| {r['mode']} | {_settings_text(r)} | {idle['cpu_s']:.1f} in {idle['window_s']:.0f} s | "
                     f"{idle['cpu_pct_of_one_core']:.1f}% | {parses} | {lat_txt} |")
    return "\n".join(lines)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--models", type=int, default=1000, help="N models (default 1000)")
    p.add_argument("--seconds", type=float, default=600.0, help="the idle window per mode (default 600)")
    p.add_argument("--modes", default="timer,on-change", help="comma-separated: timer, on-change")
    p.add_argument("--touches", type=int, default=3, help="touches for the latency (on-change; default 3; 0: off)")
    p.add_argument("--no-mid-parse-check", action="store_true",
                   help="skip the check of a touch made while a parse is running (on-change)")
    p.add_argument("--json", help="default benchmarks/results/idle_cpu.json")
    p.add_argument("--keep", action="store_true", help="keep the workload and the Airflow homes (path printed)")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            p.error(f"unknown mode {m!r}; one of {', '.join(MODES)}")
    if args.models < 1 or args.seconds <= 0:
        p.error("--models and --seconds must be positive")
    json_path = (Path(args.json) if args.json else ROOT / "benchmarks" / "results" / "idle_cpu.json").resolve()

    # SIGINT too: a shell that starts this in the background sets SIGINT to "ignore" for it.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)

    def log(msg: str) -> None:
        print(f"{datetime.now().strftime('%H:%M:%S')} {msg}", flush=True)

    import airflow  # noqa: PLC0415 - the version only

    base = Path(tempfile.mkdtemp(prefix="idle_cpu_"))
    out: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": args.models, "seconds": args.seconds, "modes": modes, "touches": args.touches,
        "airflow": airflow.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "timeouts_s": {"core.dagbag_import_timeout": TIMEOUT_S, "dag_processor.dag_file_processor_timeout": TIMEOUT_S},
        "loadavg_start": os.getloadavg(), "results": [],
    }
    rc = 0
    try:
        log(f"workload: {args.models} models in {base / 'workload'}")
        wl = generate_workload(base / "workload", args.models)
        out["dags_expected"] = len(wl.expected)
        log(f"{len(wl.expected)} DAGs expected from the entry file; [core] dagbag_import_timeout and "
            f"[dag_processor] dag_file_processor_timeout raised to {TIMEOUT_S} s in every mode (the measurement "
            f"is about CPU: a busy machine must not turn a slow parse into a killed one)")
        for mode in modes:
            try:
                r = run_mode(mode, wl, base, seconds=args.seconds, touches=args.touches,
                             mid_parse_check=not args.no_mid_parse_check, log=log)
            except (RuntimeError, TimeoutError) as exc:
                log(f"[{mode}] FAILED: {exc}")
                tail = (base / mode / "dag_processor.log")
                if tail.exists():
                    print("".join(tail.read_text(errors="replace").splitlines(True)[-40:]))
                r = {"mode": mode, "problems": [str(exc)]}
                rc = 1
            out["results"].append(r)
            _write_json(json_path, out)
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
        rc = 130
    finally:
        stop_all()
        out["loadavg_end"] = os.getloadavg()
        out["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _write_json(json_path, out)
        if args.keep:
            log(f"kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"dag-processor idle CPU, N={args.models} models ({out.get('dags_expected', '?')} DAGs), "
          f"{args.seconds:.0f} s window per mode, Airflow {airflow.__version__}, {os.cpu_count()} CPUs, "
          f"load average at start {out['loadavg_start'][0]:.2f}, at end {out['loadavg_end'][0]:.2f}; "
          f"dagbag_import_timeout = dag_file_processor_timeout = {TIMEOUT_S} s in both modes")
    print()
    print(render_table(out["results"]))
    for r in out["results"]:
        if r.get("problems"):
            print(f"\n{r['mode']}: PROBLEMS: " + "; ".join(r["problems"]))
        if r.get("touch_during_parse"):
            t = r["touch_during_parse"]
            print(f"\n{r['mode']}: a touch while a parse runs (parse running: {t['second_touch_while_parse_running']}) "
                  f"-> parsed again within {t['reparsed_again_within_s']:.0f} s after it: {t['reparsed_again']}")
        chk = (r.get("idle") or {}).get("reaped_children_check")
        if chk:
            print(f"{r['mode']}: reaped parse children in the window: {chk['children_reaped']}, their CPU when last "
                  f"seen {chk['their_last_seen_cpu_s']} s, the dag-processor's cutime+cstime grew "
                  f"{chk['dag_processor_cutime_cstime_growth_s']} s")
    print(f"\nJSON: {json_path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
