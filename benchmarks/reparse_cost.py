"""Re-parse cost of one live change: only the touched entry file ("shard") vs every entry file ("full").

    .venv/bin/python benchmarks/reparse_cost.py [--models 5000] [--files 8] [--repeat 3]
                                                [--parsing-processes 2] [--json PATH] [--keep]

For N generated models (`benchmarks.parse.generate_workload`) split across K entry files
(`dag_factory.layout.write_entry_files`), it starts a real `airflow dag-processor` in a temp
AIRFLOW_HOME (the harness of benchmarks/idle_cpu.py: SQLite, the live snapshot as the Variable,
CPU of the processor's process tree incl. reaped children) in on-change mode
(min_file_process_interval = 3600, file_parsing_sort_mode = modified_time, timeouts 600 s),
waits for the first full parse and for the processor to go quiet, then R times, alternating
the order, makes one live change of each variant:

- shard: pause ONE more model: `snapshot.plan(old, listing, now)` (what the sync runs), write
  the Variable (`airflow variables import`), then `reparse.request_reparse(...)` (touch mode)
  with the new snapshot: its `dag_changes` names the one spec, so one entry file is touched.
- full (the baseline, today's behaviour): the same kind of change, but `dag_changes` is
  removed from the snapshot given to `request_reparse`: every entry file is touched.

Per change, from the request until the dag-processor is quiet again (no parse process for 3 s,
the DB's last_parsed_time still for 3 s): CPU seconds of the dag-processor tree, parse
processes forked, seconds until the change is visible in the metadata DB the API reads (the
changed model's training DAG's `dag.timetable_summary` changes: a paused model's DAGs have no
schedule; the row is written by the parse that built the DAG from the new Variable), and DAG
rows whose `last_parsed_time` moved (the DB writes). Medians per variant and shard/full.

A benchmark, not a test: it prints and writes numbers and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.idle_cpu import (  # noqa: E402
    DB,
    MODES,
    TIMEOUT_S,
    Watcher,
    _on_signal,
    _popen,
    _write_json,
    clean_env,
    read_settings,
    run_cli,
    stop,
    stop_all,
)
from benchmarks.parse import LIVE_VARIABLE, generate_workload, project_python  # noqa: E402

VARIANTS = ("shard", "full")
QUIET_S = 3.0
CONFIRM_AFTER_S = 3600.0  # no confirmation request inside a measurement (the sync's is one more parse, in both)
ENTRY_LIKE = "model_dags%"


# --------------------------------------------------------------------------- the metadata DB (read-only)


class FleetDB(DB):
    """The DB reads for K entry files (idle_cpu's DB knows one entry file)."""

    def parsed(self) -> dict[str, tuple[str | None, bool, str]] | None:
        """dag_id -> (last_parsed_time, is_stale, relative_fileloc) of the entry files' DAGs."""
        rows = self._query("SELECT dag_id, last_parsed_time, is_stale, relative_fileloc FROM dag "
                           "WHERE relative_fileloc LIKE ?", (ENTRY_LIKE,))
        return None if rows is None else {r[0]: (r[1], bool(r[2]), r[3]) for r in rows}

    def newest_parse(self) -> str | None:
        rows = self._query("SELECT max(last_parsed_time) FROM dag WHERE relative_fileloc LIKE ?", (ENTRY_LIKE,))
        return rows[0][0] if rows else None

    def file_span(self) -> dict[str, tuple[str | None, str | None]] | None:
        """entry file -> (oldest, newest) last_parsed_time of its live DAGs: a file's parse is in
        the DB once its oldest row is newer than the newest before the request."""
        rows = self._query("SELECT relative_fileloc, min(last_parsed_time), max(last_parsed_time) FROM dag "
                           "WHERE relative_fileloc LIKE ? AND NOT is_stale GROUP BY relative_fileloc", (ENTRY_LIKE,))
        return None if rows is None else {r[0]: (r[1], r[2]) for r in rows}

    def timetable(self, dag_id: str) -> tuple[bool, str | None]:
        """(read ok, dag.timetable_summary): what GET /api/v2/dags/{dag_id} shows as the schedule."""
        rows = self._query("SELECT timetable_summary FROM dag WHERE dag_id = ?", (dag_id,))
        return (False, None) if not rows else (True, rows[0][0])


# --------------------------------------------------------------------------- helpers


def poll_until(what: str, cond: Callable[[], bool], *, bound_s: float, every_s: float, proc, watcher: Watcher) -> float:
    """Poll `cond` and the process tree until true; seconds waited. Raises at the bound or when
    the dag-processor exited."""
    t0 = time.monotonic()
    while True:
        watcher.poll()
        if cond():
            return time.monotonic() - t0
        if proc.poll() is not None:
            raise RuntimeError(f"the dag-processor exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() - t0 > bound_s:
            raise TimeoutError(f"{what}: not within {bound_s:.0f} s")
        time.sleep(every_s)


def quiet_check(db: FleetDB, watcher: Watcher, min_forks: int = 0, forks_before: int = 0) -> Callable[[], bool]:
    """True once at least `min_forks` parses were forked since `forks_before`, no parse process
    ran for QUIET_S and the DB's newest last_parsed_time held still for QUIET_S."""
    state = {"value": db.newest_parse(), "since": time.monotonic()}

    def quiet() -> bool:
        v = db.newest_parse()
        if v != state["value"] or watcher.parse_running() or len(watcher.forks) - forks_before < min_forks:
            state["value"], state["since"] = v, time.monotonic()
            return False
        return time.monotonic() - state["since"] >= QUIET_S

    return quiet


def initial_snapshot(live_file: Path) -> dict[str, Any]:
    """The workload's snapshot as a sync of this version leaves it: an old content change and an
    empty `dag_changes` (so the next plan() records exactly the specs it touches)."""
    snap = json.loads(live_file.read_text())
    snap["changed_at"] = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat(timespec="seconds")
    snap["dag_changes"] = {}
    return snap


def pause_one(old: dict[str, Any], model: str, now: datetime) -> dict[str, Any]:
    """The snapshot after a complete listing in which `model` is paused (snapshot.plan, pure)."""
    from dag_factory.live import snapshot

    listing = [dict(r) for r in old["models"].values()]
    for r in listing:
        if r["name"] == model:
            r["status"] = "paused"
    new, report = snapshot.plan(old, listing, now, ttl=timedelta(days=7), missing_limit=3)
    if report.changed != (model,) or report.rejected:
        raise RuntimeError(f"plan() did not change exactly {model}: changed={report.changed} "
                           f"rejected={dict(report.rejected)}")
    return new


def write_variable(value: dict[str, Any], python: Path, env: dict[str, str], work: Path, log_file: Path,
                   db: FleetDB) -> float:
    """The Variable as the sync writes it (one row), through `airflow variables import`; seconds."""
    t = time.monotonic()
    var_file = work / "variables.json"
    var_file.write_text(json.dumps({LIVE_VARIABLE: json.dumps(value, separators=(",", ":"))}))
    rc = run_cli([str(python), "-m", "airflow", "variables", "import", str(var_file)], env=env, cwd=work,
                 log=log_file, timeout_s=300)
    if rc != 0 or not db.has_variable(LIVE_VARIABLE):
        raise RuntimeError(f"could not set the Variable {LIVE_VARIABLE}; see {log_file}")
    return time.monotonic() - t


def _med(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 2) if vals else None


# --------------------------------------------------------------------------- one change


def one_change(variant: str, model: str, snap: dict[str, Any], *, dags: Path, specs: Path, python: Path,
               env: dict[str, str], work: Path, db: FleetDB, proc, watcher: Watcher, bound_s: float,
               log: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pause `model`, write the Variable, request the re-parse the `variant` way, measure."""
    from dag_factory.live.reparse import request_reparse

    dag_id = f"{model}__train"
    ok, before_tt = db.timetable(dag_id)
    if not ok:
        raise RuntimeError(f"{dag_id} is not in the DB")
    new = pause_one(snap, model, datetime.now(timezone.utc))
    var_s = write_variable(new, python, env, work, work / "cli.log", db)
    if watcher.parse_running():
        raise RuntimeError("a parse started while the Variable was written (nothing asked for one)")
    asked = new if variant == "shard" else {k: v for k, v in new.items() if k != "dag_changes"}
    before = db.parsed() or {}
    span_before = db.file_span() or {}
    load = os.getloadavg()[0]
    forks_before = len(watcher.forks)
    s0 = watcher.poll()
    t0 = s0.t
    req = request_reparse(dags, specs, asked, confirm_after=CONFIRM_AFTER_S)
    if req.get("error"):
        raise RuntimeError(f"request_reparse: {req['error']}")
    files = req["files"]
    visible: list[float] = []
    tt_after: list[str | None] = []

    quiet = quiet_check(db, watcher, min_forks=len(files), forks_before=forks_before)

    in_db: dict[str, float] = {}

    def done() -> bool:
        now = time.monotonic()
        if not visible:
            ok_now, tt = db.timetable(dag_id)
            if ok_now and tt != before_tt:
                visible.append(now - t0)
                tt_after.append(tt)
        if len(in_db) < len(files):
            spans = db.file_span() or {}
            for name in files:
                if name not in in_db and name in spans and (spans[name][0] or "") > (span_before.get(name, ("", ""))[1] or ""):
                    in_db[name] = now - t0
        # quiet() also runs while files are missing: its 3 s of stillness must follow the last write
        return quiet() and bool(visible) and len(in_db) == len(files)

    poll_until(f"[{variant}] the re-parse of {len(files)} file(s) and {dag_id}'s change", done, bound_s=bound_s,
               every_s=0.5, proc=proc, watcher=watcher)
    s1 = watcher.last
    after = db.parsed() or {}
    moved = [d for d, row in after.items() if d not in before or row[0] != before[d][0]]
    files_moved = sorted({after[d][2] for d in moved})
    span = s1.t - t0
    r = {
        "variant": variant, "model": model, "dag_id": dag_id,
        "files_touched": files, "files_touched_n": len(files),
        "cpu_s": round(s1.total - s0.total, 2),
        "cpu_s_dag_processor_itself": round(s1.root_self - s0.root_self, 2),
        "parses_forked": watcher.forks_between(t0 + 1e-9, s1.t),
        "visible_s": round(visible[0], 2),
        "all_files_in_db_s": round(max(in_db.values()), 2),
        "quiet_s": round(span, 2),  # includes the QUIET_S of stillness that ends it
        "dag_rows_reparsed": len(moved),
        "files_in_db_moved": files_moved,
        "timetable_summary": [before_tt, tt_after[0] if tt_after else None],
        "variable_write_s": round(var_s, 1),
        "loadavg_1m_at_request": round(load, 2),
    }
    log(f"[{variant}] paused {model}: touched {len(files)} file(s) {files}; CPU {r['cpu_s']:.1f} s, "
        f"{r['parses_forked']} parse(s), visible after {r['visible_s']:.1f} s, quiet after {span:.1f} s, "
        f"{len(moved)} DAG rows re-parsed; load {load:.2f}")
    return r, new


# --------------------------------------------------------------------------- the run


def run(args, base: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from dag_factory.layout import write_entry_files

    python = project_python()
    work, home, dags = base, base / "home", base / "dags"
    home.mkdir(parents=True)
    dags.mkdir()
    log(f"workload: {args.models} models in {base / 'workload'}")
    wl = generate_workload(base / "workload", args.models)
    snap = initial_snapshot(wl.live_file)
    written, _ = write_entry_files(dags, args.files)
    out: dict[str, Any] = {"dags_expected": len(wl.expected), "entry_files": [p.name for p in written], "runs": []}
    extra = dict(MODES["on-change"])
    extra["AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES"] = str(args.parsing_processes)
    env = clean_env(home, dags, wl.specs_dir, extra)
    # This process runs request_reparse: the same folders and touch mode (it reads [core] dags_folder).
    os.environ.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                       "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
                       "DAG_FACTORY_REPARSE": "touch", "DAG_FACTORY_SPECS": str(wl.specs_dir)})
    cli_log, proc_log = work / "cli.log", work / "dag_processor.log"

    log("airflow db migrate ...")
    if run_cli([str(python), "-m", "airflow", "db", "migrate"], env=env, cwd=work, log=cli_log, timeout_s=900):
        raise RuntimeError(f"airflow db migrate failed; see {cli_log}")
    db = FleetDB(home / "airflow.db")
    write_variable(snap, python, env, work, cli_log, db)
    out["settings"] = read_settings(python, env, work)
    log("settings: " + ", ".join(f"{k}={v}" for k, v in out["settings"].items()))

    # models with a training DAG, spread over the fleet; one new one per change
    candidates = [n for n in wl.model_names if f"{n}__train" in wl.expected]
    step = max(1, len(candidates) // (2 * args.repeat + 1))
    picks = [candidates[(1 + i) * step % len(candidates)] for i in range(2 * args.repeat)]

    log(f"starting airflow dag-processor (log {proc_log}), {args.files} entry files, "
        f"parsing_processes={args.parsing_processes}")
    proc = _popen([str(python), "-m", "airflow", "dag-processor"], env=env, cwd=work, log=proc_log)
    watcher = Watcher(proc.pid)
    try:
        def first_parse_done() -> bool:
            got = db.parsed() or {}
            errors = [e for e in db.import_errors() if e[0] and "model_dags" in e[0]]
            if errors:
                raise RuntimeError(f"import error in an entry file: {errors[0][1][-1500:]}")
            return set(wl.expected) <= {d for d, (_, stale, _) in got.items() if not stale}

        bound = 900.0 + 0.6 * args.models
        waited = poll_until("the first parse (all expected DAGs in the DB)", first_parse_done, bound_s=bound,
                            every_s=2.0, proc=proc, watcher=watcher)
        poll_until("a quiet dag-processor after the first parse", quiet_check(db, watcher), bound_s=bound,
                   every_s=0.5, proc=proc, watcher=watcher)
        s = watcher.last
        out["first_parse"] = {"in_db_s": round(waited, 1), "cpu_s_until_quiet": round(s.total, 2),
                              "parses_forked": len(watcher.forks)}
        log(f"first parse in the DB after {waited:.0f} s; quiet; CPU since start {s.total:.1f} s, "
            f"{len(watcher.forks)} parse(s)")
        # the processor's own idle CPU, to read the windows against
        i0 = watcher.poll()
        time.sleep(20.0)
        i1 = watcher.poll()
        out["idle_cpu_pct_of_core"] = round(100 * (i1.total - i0.total) / (i1.t - i0.t), 2)
        if watcher.forks_between(i0.t + 1e-9, i1.t):
            out["idle_window_parses"] = watcher.forks_between(i0.t + 1e-9, i1.t)
        log(f"idle: {out['idle_cpu_pct_of_core']:.1f}% of a core")

        change_bound = max(600.0, 3.0 * waited)
        for i in range(args.repeat):
            order = VARIANTS if i % 2 == 0 else tuple(reversed(VARIANTS))
            for j, variant in enumerate(order):
                poll_until("a quiet dag-processor", quiet_check(db, watcher), bound_s=change_bound, every_s=0.5,
                           proc=proc, watcher=watcher)
                time.sleep(2.0)  # the request is clearly later than the last parse's finish (mtime vs finish time)
                r, snap = one_change(variant, picks[2 * i + j], snap, dags=dags, specs=wl.specs_dir, python=python,
                                     env=env, work=work, db=db, proc=proc, watcher=watcher, bound_s=change_bound,
                                     log=log)
                r["repeat"] = i + 1
                out["runs"].append(r)
    finally:
        stop(proc)
        out["dag_processor_exit"] = proc.returncode
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("cpu_s", "parses_forked", "visible_s", "all_files_in_db_s", "quiet_s", "dag_rows_reparsed", "files_touched_n")
    med = {v: {k: _med([r[k] for r in runs if r["variant"] == v]) for k in keys} for v in VARIANTS}
    ratio = {k: (round(med["shard"][k] / med["full"][k], 3) if med["shard"][k] is not None and med["full"][k] else None)
             for k in keys}
    return {"median": med, "shard_over_full": ratio}


def render_table(summary: dict[str, Any], n_runs: dict[str, int]) -> str:
    med, ratio = summary["median"], summary["shard_over_full"]
    rows = [("entry files touched", "files_touched_n", "{:.0f}"), ("dag-processor CPU s", "cpu_s", "{:.1f}"),
            ("parses", "parses_forked", "{:.0f}"), ("change visible in the DB/API, s", "visible_s", "{:.1f}"),
            ("every touched file in the DB, s", "all_files_in_db_s", "{:.1f}"),
            ("until quiet, s", "quiet_s", "{:.1f}"), ("DAG rows re-parsed (DB writes)", "dag_rows_reparsed", "{:.0f}")]
    lines = [f"| median of {n_runs['shard']} / {n_runs['full']} | one file (`dag_changes`) | every file (today) "
             "| one / every |", "|---|---|---|---|"]
    for label, key, fmt in rows:
        a, b, q = med["shard"][key], med["full"][key], ratio[key]
        lines.append(f"| {label} | {'-' if a is None else fmt.format(a)} | {'-' if b is None else fmt.format(b)} | "
                     f"{'-' if q is None else f'{q:.2f}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--models", type=int, default=5000, help="N models (default 5000)")
    p.add_argument("--files", type=int, default=8, help="K entry files (default 8)")
    p.add_argument("--repeat", type=int, default=3, help="changes per variant, order alternating (default 3)")
    p.add_argument("--parsing-processes", type=int, default=2, help="[dag_processor] parsing_processes (default 2)")
    p.add_argument("--json", help="default benchmarks/results/reparse_cost.json")
    p.add_argument("--keep", action="store_true", help="keep the workload and the Airflow home (path printed)")
    args = p.parse_args(argv)
    if args.models < 1 or args.files < 2 or args.repeat < 1 or args.parsing_processes < 1:
        p.error("--models, --repeat, --parsing-processes must be positive and --files at least 2")
    json_path = (Path(args.json) if args.json else ROOT / "benchmarks" / "results" / "reparse_cost.json").resolve()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)

    def log(msg: str) -> None:
        print(f"{datetime.now().strftime('%H:%M:%S')} {msg}", flush=True)

    base = Path(tempfile.mkdtemp(prefix="reparse_cost_"))
    out: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": args.models, "files": args.files, "repeat": args.repeat,
        "parsing_processes": args.parsing_processes, "python": platform.python_version(), "cpus": os.cpu_count(),
        "timeouts_s": TIMEOUT_S, "loadavg_start": os.getloadavg(),
    }
    rc = 0
    try:
        out.update(run(args, base, log))
    except (RuntimeError, TimeoutError) as exc:
        log(f"FAILED: {exc}")
        tail = base / "dag_processor.log"
        if tail.exists():
            print("".join(tail.read_text(errors="replace").splitlines(True)[-40:]))
        out["problem"] = str(exc)
        rc = 1
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
        rc = 130
    finally:
        stop_all()
        out["loadavg_end"] = os.getloadavg()
        out["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        runs = out.get("runs") or []
        if runs:
            out["summary"] = summarize(runs)
        import airflow  # noqa: PLC0415 - the version only

        out["airflow"] = airflow.__version__
        _write_json(json_path, out)
        if args.keep:
            log(f"kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    runs = out.get("runs") or []
    print()
    print(f"re-parse cost of one live change, N={args.models} models ({out.get('dags_expected', '?')} DAGs) in "
          f"{args.files} entry files, parsing_processes={args.parsing_processes}, on-change mode, Airflow "
          f"{out['airflow']}, {os.cpu_count()} CPUs, load average at start {out['loadavg_start'][0]:.2f}, "
          f"at end {out['loadavg_end'][0]:.2f}")
    if fp := out.get("first_parse"):
        print(f"first full parse: in the DB after {fp['in_db_s']:.0f} s, {fp['cpu_s_until_quiet']:.0f} CPU s; "
              f"idle dag-processor {out.get('idle_cpu_pct_of_core')}% of a core")
    if runs:
        print()
        print(render_table(out["summary"], {v: sum(1 for r in runs if r["variant"] == v) for v in VARIANTS}))
        bad = [r for r in runs if r["variant"] == "shard" and r["files_touched_n"] != 1]
        if bad:
            print(f"\nPROBLEM: a shard change touched {[r['files_touched'] for r in bad]} (1 file expected)")
    if out.get("problem"):
        print(f"\nPROBLEM: {out['problem']}")
    print(f"\nJSON: {json_path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
