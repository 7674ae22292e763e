"""Several dag-processors: a fleet split across two LocalDagBundles, parsed by two real
`airflow dag-processor --bundle-name X` processes, against one dag-processor parsing both.

    .venv/bin/python benchmarks/processors.py [--models 2000] [--files 4] [--parsing-processes 1]
                                              [--repeat 1] [--db sqlite|postgres] [--json PATH] [--keep]

For N generated models (`benchmarks.parse.generate_workload`: specs + the live snapshot) and K
entry files (`dag_factory.layout.entry_file_text(i, K)`), files 1..K/2 go to the folder
bundle_a and the rest to bundle_b (the specs are shared through DAG_FACTORY_SPECS); both are
LocalDagBundles in [dag_processor] dag_bundle_config_list. Variants, each in a fresh
AIRFLOW_HOME and a fresh metadata DB (`airflow db migrate`, the live snapshot imported as the
Variable), same files, same machine, same run, alternating the order when repeated:

- one: one `airflow dag-processor` (no --bundle-name: it parses both bundles);
- two: `airflow dag-processor --bundle-name bundle_a` and `... --bundle-name bundle_b`.

Each processor runs with `[dag_processor] parsing_processes` = --parsing-processes and the
on-change settings (min_file_process_interval = 3600, file_parsing_sort_mode = modified_time,
timeouts 600 s: the harness of benchmarks/idle_cpu.py). Measured per variant:

- first full parse: wall seconds from the start of the processors until every expected DAG of
  every entry file is in the DB (not stale); CPU seconds of each processor's process tree until
  then (incl. reaped parse children and the processor's own start-up); peak RSS (VmHWM) of each
  processor main process;
- one re-parse of everything: after the processors are quiet, every entry file is touched;
  wall seconds until every file's DAGs have a newer last_parsed_time; CPU seconds until then.

The DB is SQLite (two writer processes) unless --db postgres: a throwaway database
dag_factory_bench_<random> on 127.0.0.1:5432 (user postgres, trust), dropped afterwards, also on
error. A benchmark, not a test: it prints and writes numbers and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.idle_cpu import (  # noqa: E402
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
from benchmarks.parse import generate_workload, project_python  # noqa: E402
from benchmarks.reparse_cost import QUIET_S, FleetDB, initial_snapshot, write_variable  # noqa: E402

BUNDLES = ("bundle_a", "bundle_b")
VARIANTS: dict[str, list[str | None]] = {"one": [None], "two": list(BUNDLES)}
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
LOCK_MARKERS = ("database is locked", "could not serialize access", "deadlock detected")


# --------------------------------------------------------------------------- the metadata DB


class PgDB(FleetDB):
    """FleetDB's reads against PostgreSQL (timestamps as ISO text, as SQLite gives them)."""

    def __init__(self, dsn: str):
        self.dsn = dsn

    def _query(self, sql: str, args: tuple = ()) -> list[tuple] | None:
        import psycopg2

        try:
            con = psycopg2.connect(self.dsn, connect_timeout=5)
            try:
                with con.cursor() as cur:
                    cur.execute(sql.replace("?", "%s"), args)
                    return [tuple(_text(v) for v in row) for row in cur.fetchall()]
            finally:
                con.close()
        except psycopg2.Error:
            return None


def _text(value: Any) -> Any:
    return value.isoformat(sep=" ", timespec="microseconds") if isinstance(value, datetime) else value


def _pg_admin(sql: str) -> None:
    import psycopg2

    con = psycopg2.connect(PG_ADMIN, connect_timeout=5)
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(sql)
    finally:
        con.close()


def create_pg_db() -> str:
    name = f"dag_factory_bench_{secrets.token_hex(4)}"
    _pg_admin(f"CREATE DATABASE {name}")
    return name


def drop_pg_db(name: str) -> None:
    _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --------------------------------------------------------------------------- layout and processes


def write_bundles(base: Path, files: int) -> dict[str, list[Path]]:
    """Entry files 1..K/2 in bundle_a, the rest in bundle_b: {bundle: [files]}."""
    from dag_factory.layout import entry_file_name, entry_file_text

    out: dict[str, list[Path]] = {b: [] for b in BUNDLES}
    for i in range(1, files + 1):
        bundle = BUNDLES[0] if i <= files // 2 else BUNDLES[1]
        folder = base / bundle
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / entry_file_name(i, files)
        path.write_text(entry_file_text(i, files), encoding="utf-8")
        out[bundle].append(path)
    return out


def bundle_config(base: Path) -> str:
    return json.dumps([{"name": b, "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(base / b)}} for b in BUNDLES])


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


class Processors:
    """The dag-processors of one variant, each followed by its own Watcher."""

    def __init__(self, names: list[str | None]):
        self.names = [n or "all" for n in names]
        self.procs: list[Any] = []
        self.watchers: list[Watcher] = []
        self.rss: dict[str, float] = {}

    def start(self, python: Path, env: dict[str, str], work: Path, bundles: list[str | None]) -> None:
        for label, bundle in zip(self.names, bundles):
            cmd = [str(python), "-m", "airflow", "dag-processor"] + (["--bundle-name", bundle] if bundle else [])
            proc = _popen(cmd, env=env, cwd=work, log=work / f"dag_processor_{label}.log")
            self.procs.append(proc)
            self.watchers.append(Watcher(proc.pid))

    def poll(self) -> None:
        for label, proc, w in zip(self.names, self.procs, self.watchers):
            if proc.poll() is not None:
                raise RuntimeError(f"the dag-processor {label} exited ({proc.returncode})")
            w.poll()
            if (rss := peak_rss_mb(proc.pid)) is not None:
                self.rss[label] = max(rss, self.rss.get(label, 0.0))

    def cpu(self) -> dict[str, float]:
        return {label: w.last.total if w.last else 0.0 for label, w in zip(self.names, self.watchers)}

    def parse_running(self) -> bool:
        return any(w.parse_running() for w in self.watchers)

    def forks(self) -> int:
        return sum(len(w.forks) for w in self.watchers)

    def stop(self) -> list[int | None]:
        for proc in self.procs:
            stop(proc)
        return [p.returncode for p in self.procs]


def poll_until(what: str, cond: Callable[[], bool], procs: Processors, *, bound_s: float, every_s: float) -> float:
    t0 = time.monotonic()
    while True:
        procs.poll()
        if cond():
            return time.monotonic() - t0
        if time.monotonic() - t0 > bound_s:
            raise TimeoutError(f"{what}: not within {bound_s:.0f} s")
        time.sleep(every_s)


def quiet(db: FleetDB, procs: Processors) -> Callable[[], bool]:
    """True once no parse process ran and the DB's newest last_parsed_time held still for QUIET_S."""
    state = {"value": db.newest_parse(), "since": time.monotonic()}

    def check() -> bool:
        v = db.newest_parse()
        if v != state["value"] or procs.parse_running():
            state["value"], state["since"] = v, time.monotonic()
            return False
        return time.monotonic() - state["since"] >= QUIET_S

    return check


# --------------------------------------------------------------------------- one variant


def run_variant(variant: str, rep: int, wl, files: dict[str, list[Path]], base: Path, args,
                log: Callable[[str], None]) -> dict[str, Any]:
    python = project_python()
    work = base / f"{variant}_{rep}"
    home, empty = work / "home", work / "empty_dags"
    home.mkdir(parents=True)
    empty.mkdir()
    extra = dict(MODES["on-change"])
    extra["AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES"] = str(args.parsing_processes)
    extra["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = bundle_config(base)
    pg_name = None
    result: dict[str, Any] = {"variant": variant, "repeat": rep, "problems": []}
    procs = Processors(VARIANTS[variant])
    try:
        if args.db == "postgres":
            pg_name = create_pg_db()
            extra["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{pg_name}"
            db: FleetDB = PgDB(f"host=127.0.0.1 port=5432 user=postgres dbname={pg_name}")
            result["db"] = f"postgres ({pg_name})"
        else:
            db = FleetDB(home / "airflow.db")
            result["db"] = "sqlite"
        env = clean_env(home, empty, wl.specs_dir, extra)
        cli_log = work / "cli.log"
        log(f"[{variant} #{rep}] airflow db migrate ({result['db']}) ...")
        if run_cli([str(python), "-m", "airflow", "db", "migrate"], env=env, cwd=work, log=cli_log, timeout_s=900):
            raise RuntimeError(f"airflow db migrate failed; see {cli_log}")
        write_variable(initial_snapshot(wl.live_file), python, env, work, cli_log, db)
        if rep == 1 and variant == args.first:
            result["settings"] = read_settings(python, env, work)
            log(f"[{variant} #{rep}] settings: " + ", ".join(f"{k}={v}" for k, v in result["settings"].items()))

        all_files = [p for b in BUNDLES for p in files[b]]
        bound = 900.0 + 0.6 * args.models
        load = os.getloadavg()[0]
        log(f"[{variant} #{rep}] starting {len(procs.names)} dag-processor(s): {', '.join(procs.names)}")
        t0 = time.monotonic()
        procs.start(python, env, work, VARIANTS[variant])

        def all_in_db() -> bool:
            got = db.parsed() or {}
            errors = [e for e in db.import_errors() if e[0] and "model_dags" in e[0]]
            if errors:
                raise RuntimeError(f"import error in an entry file: {errors[0][1][-1500:]}")
            return set(wl.expected) <= {d for d, (_, stale, _) in got.items() if not stale}

        wall = poll_until("the first parse (all expected DAGs in the DB)", all_in_db, procs, bound_s=bound, every_s=1.0)
        cpu = procs.cpu()
        rows = db.parsed() or {}
        per_bundle = {}
        for d, (_, stale, loc) in rows.items():
            if not stale:
                per_bundle[loc] = per_bundle.get(loc, 0) + 1
        result["first_parse"] = {"wall_s": round(wall, 1), "cpu_s": round(sum(cpu.values()), 1),
                                 "cpu_s_per_processor": {k: round(v, 1) for k, v in cpu.items()},
                                 "parses_forked": procs.forks(), "loadavg_1m_at_start": round(load, 2),
                                 "dags_per_file": dict(sorted(per_bundle.items()))}
        log(f"[{variant} #{rep}] first parse: all {len(wl.expected)} DAGs in the DB after {wall:.1f} s; CPU "
            f"{sum(cpu.values()):.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in cpu.items())}); load {load:.2f}")

        # ---- one re-parse of everything ------------------------------------------------------
        poll_until("quiet processors", quiet(db, procs), procs, bound_s=bound, every_s=0.5)
        time.sleep(2.0)  # the touch is clearly later than the last parse's finish (mtime vs finish time)
        procs.poll()
        before = db.file_span() or {}
        if len(before) != len(all_files):
            raise RuntimeError(f"DB has DAGs for {sorted(before)}, expected {len(all_files)} entry files")
        cpu0 = procs.cpu()
        forks0 = procs.forks()
        load = os.getloadavg()[0]
        for p in all_files:
            os.utime(p)

        def reparsed() -> bool:
            spans = db.file_span() or {}
            return all(p.name in spans and (spans[p.name][0] or "") > (before[p.name][1] or "") for p in all_files)

        wall = poll_until("the re-parse of every entry file", reparsed, procs, bound_s=bound, every_s=0.5)
        cpu1 = procs.cpu()
        cpu = {k: cpu1[k] - cpu0[k] for k in cpu1}
        result["reparse"] = {"wall_s": round(wall, 1), "cpu_s": round(sum(cpu.values()), 1),
                             "cpu_s_per_processor": {k: round(v, 1) for k, v in cpu.items()},
                             "parses_forked": procs.forks() - forks0, "loadavg_1m_at_touch": round(load, 2)}
        log(f"[{variant} #{rep}] re-parse of {len(all_files)} files: {wall:.1f} s; CPU {sum(cpu.values()):.1f} s "
            f"({', '.join(f'{k} {v:.1f}' for k, v in cpu.items())}); {procs.forks() - forks0} parse(s); "
            f"load {load:.2f}")
        procs.poll()
        result["peak_rss_mb"] = dict(procs.rss)
        result["since_start_s"] = round(time.monotonic() - t0, 1)
    finally:
        result["exit_codes"] = procs.stop()
        locked = [f"{p.name}: {m}" for p in sorted(work.glob("dag_processor_*.log"))
                  for m in LOCK_MARKERS if m in p.read_text(errors="replace")]
        if locked:
            result["problems"].append("lock errors in the processor logs: " + "; ".join(locked))
        if pg_name:
            try:
                drop_pg_db(pg_name)
            except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                result["problems"].append(f"could not drop {pg_name}: {exc}")
    return result


# --------------------------------------------------------------------------- report


def _med(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 1) if vals else None


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in results if "reparse" in r]
    med: dict[str, dict[str, Any]] = {}
    for v in VARIANTS:
        rs = [r for r in ok if r["variant"] == v]
        if not rs:
            continue
        m: dict[str, Any] = {"n": len(rs)}
        for phase in ("first_parse", "reparse"):
            m[phase] = {"wall_s": _med([r[phase]["wall_s"] for r in rs]), "cpu_s": _med([r[phase]["cpu_s"] for r in rs]),
                        "cpu_s_per_processor": {k: _med([r[phase]["cpu_s_per_processor"][k] for r in rs])
                                                for k in rs[0][phase]["cpu_s_per_processor"]}}
        m["peak_rss_mb"] = {k: _med([r["peak_rss_mb"].get(k) for r in rs]) for k in rs[0]["peak_rss_mb"]}
        med[v] = m
    ratio = {}
    if "one" in med and "two" in med:
        for phase in ("first_parse", "reparse"):
            ratio[phase] = {k: round(med["two"][phase][k] / med["one"][phase][k], 2) if med["one"][phase][k] else None
                            for k in ("wall_s", "cpu_s")}
        ratio["peak_rss_total"] = round(sum(med["two"]["peak_rss_mb"].values()) / sum(med["one"]["peak_rss_mb"].values()), 2)
    return {"median": med, "two_over_one": ratio}


def render_table(summary: dict[str, Any]) -> str:
    med, ratio = summary["median"], summary["two_over_one"]

    def per(m: dict[str, Any]) -> str:
        return " + ".join(f"{v:.1f}" for v in m.values())

    lines = ["| variant (runs) | first parse wall s | first parse CPU s (per processor) | re-parse wall s "
             "| re-parse CPU s (per processor) | peak RSS MiB of the main process(es) |", "|---|---|---|---|---|---|"]
    for v, m in med.items():
        fp, rp = m["first_parse"], m["reparse"]
        lines.append(f"| {v} ({m['n']}) | {fp['wall_s']:.1f} | {fp['cpu_s']:.1f} ({per(fp['cpu_s_per_processor'])}) | "
                     f"{rp['wall_s']:.1f} | {rp['cpu_s']:.1f} ({per(rp['cpu_s_per_processor'])}) | "
                     f"{per(m['peak_rss_mb'])} |")
    if ratio:
        lines.append(f"| two / one | {ratio['first_parse']['wall_s']:.2f} | {ratio['first_parse']['cpu_s']:.2f} | "
                     f"{ratio['reparse']['wall_s']:.2f} | {ratio['reparse']['cpu_s']:.2f} | "
                     f"{ratio['peak_rss_total']:.2f} (sum) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--models", type=int, default=2000, help="N models (default 2000)")
    p.add_argument("--files", type=int, default=4, help="K entry files, split in two bundles (default 4)")
    p.add_argument("--parsing-processes", type=int, default=1, help="per processor (default 1)")
    p.add_argument("--repeat", type=int, default=1, help="runs per variant, order alternating (default 1)")
    p.add_argument("--first", choices=tuple(VARIANTS), default="one", help="the variant run first (default one)")
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite", help="metadata DB (default sqlite)")
    p.add_argument("--json", help="default benchmarks/results/processors.json")
    p.add_argument("--keep", action="store_true", help="keep the workload and the Airflow homes (path printed)")
    args = p.parse_args(argv)
    if args.models < 1 or args.files < 2 or args.repeat < 1 or args.parsing_processes < 1:
        p.error("--models, --repeat, --parsing-processes must be positive and --files at least 2")
    json_path = (Path(args.json) if args.json else ROOT / "benchmarks" / "results" / "processors.json").resolve()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)

    def log(msg: str) -> None:
        print(f"{datetime.now().strftime('%H:%M:%S')} {msg}", flush=True)

    import airflow  # noqa: PLC0415 - the version only

    base = Path(tempfile.mkdtemp(prefix="processors_"))
    out: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "models": args.models,
        "files": args.files, "parsing_processes": args.parsing_processes, "repeat": args.repeat, "db": args.db,
        "airflow": airflow.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "timeouts_s": TIMEOUT_S, "loadavg_start": os.getloadavg(), "results": [],
    }
    rc = 0
    try:
        log(f"workload: {args.models} models in {base / 'workload'}")
        wl = generate_workload(base / "workload", args.models)
        files = write_bundles(base, args.files)
        out["dags_expected"] = len(wl.expected)
        out["bundles"] = {b: [p.name for p in fs] for b, fs in files.items()}
        log(f"{len(wl.expected)} DAGs expected; " + "; ".join(f"{b}: {', '.join(n)}" for b, n in out["bundles"].items()))
        second = next(v for v in VARIANTS if v != args.first)
        for rep in range(1, args.repeat + 1):
            order = (args.first, second) if rep % 2 else (second, args.first)
            for variant in order:
                try:
                    r = run_variant(variant, rep, wl, files, base, args, log)
                except (RuntimeError, TimeoutError) as exc:
                    log(f"[{variant} #{rep}] FAILED: {exc}")
                    for f in sorted((base / f"{variant}_{rep}").glob("dag_processor_*.log")):
                        print(f"--- {f.name}\n" + "".join(f.read_text(errors="replace").splitlines(True)[-30:]))
                    r = {"variant": variant, "repeat": rep, "problems": [str(exc)]}
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
        out["summary"] = summarize(out["results"])
        _write_json(json_path, out)
        if args.keep:
            log(f"kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"one vs two dag-processors, N={args.models} models ({out.get('dags_expected', '?')} DAGs) in {args.files} "
          f"entry files over 2 LocalDagBundles, parsing_processes={args.parsing_processes} per processor, on-change "
          f"mode, {args.db}, Airflow {airflow.__version__}, {os.cpu_count()} CPUs, load average at start "
          f"{out['loadavg_start'][0]:.2f}, at end {out['loadavg_end'][0]:.2f}")
    print()
    print(render_table(out["summary"]))
    for r in out["results"]:
        if r.get("problems"):
            print(f"\n{r['variant']} #{r['repeat']}: PROBLEMS: " + "; ".join(r["problems"]))
    print(f"\nJSON: {json_path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
