"""Fleet scale: the split (K entry files) that keeps every file's parse well inside Airflow's timeouts.

    .venv/bin/python benchmarks/fleet_scale.py [--models 1000,5000,10000] [--repeat 3] [--json out.json]
                                               [--headroom 0.25] [--split 5000:4,10000:8] [--no-single]
                                               [--also 1000:4] [--db-models 1000 | --db-models 0]

For each N it generates the workload of benchmarks/parse.py (N specs cycling the examples, their
`_defaults.yaml`, the live snapshot) and parses the fleet as `dag_factory.layout` splits it:
K entry files `model_dags_<i>_of_<K>.py` (`register_dags(globals(), shard=(i, K))`), each file in
its own fresh process (parse.py's measuring child: `DagBag` import, then
`DagSerialization.to_dict` per DAG). Per repetition it takes, over the K files, the median and
the max of import + serialize, the max peak RSS, and the sum of the CPU time (user + system) of
import + serialize; the table gives the medians over repetitions.

Choosing K (unless `--split N:K` says): the budget of one file is `--headroom` (default 0.25) of
`[core] dagbag_import_timeout` (30 s) for the import and of `[dag_processor]
dag_file_processor_timeout` (50 s) for import + serialize, in CPU seconds of the parse process
(its wall time on an idle machine; wall time on a shared machine moves with the others' load):
a 3-4x slower loaded host still fits. The per-model cost comes from the single file at the smallest N (measured
first); K is the smallest count whose fullest file (the real CRC-32 shard sizes of the N names)
is predicted inside the budget; if the measured slowest file is still over, K grows and is
measured again (at most twice). The single file (K=1) is also measured at every N where it is
predicted inside both timeouts, once (`--single-repeat`; `--no-single`: only at the smallest N). `--also N:K` measures
more splits for comparison (not chosen).

DB size (`--db-models`, default the smallest N; 0: off): a throwaway PostgreSQL database
(`dag_factory_bench_<random>` on 127.0.0.1:5432, user postgres; dropped at the end, also on
error), `airflow db migrate`, then Airflow's own write path (`BundleDagBag` + `sync_bag_to_db`,
what `airflow dags reserialize` does) for every DAG of that N's split; then
`pg_total_relation_size` of serialized_dag, dag, dag_version, dag_code. Other N are extrapolated
by DAG count (the workload cycles the same examples, so bytes per DAG do not depend on N).

A benchmark, not a test: it prints and writes numbers and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_DSN = "host=127.0.0.1 port=5432 user=postgres"
PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/{db}"
DB_TABLES = ("serialized_dag", "dag", "dag_version", "dag_code")
MAX_RETRIES = 2  # K bumped and re-measured at most this often per N
MIGRATE_TIMEOUT_S = 900
DB_WRITE_TIMEOUT_S = 1800


def _load_parse() -> Any:
    """benchmarks/parse.py as a module (benchmarks/ is not a package); its workload and child."""
    spec = importlib.util.spec_from_file_location("dag_factory_bench_parse", ROOT / "benchmarks" / "parse.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


bp = _load_parse()
IMPORT_LIMIT_S = bp.DAGBAG_IMPORT_TIMEOUT_S
FILE_LIMIT_S = bp.DAG_FILE_PROCESSOR_TIMEOUT_S

# --------------------------------------------------------------------------- K


def shard_sizes(names: list[str], k: int) -> list[int]:
    """Models per entry file for K files: the project's own hash (dag_factory.layout.in_shard)."""
    from dag_factory.layout import in_shard

    if k == 1:
        return [len(names)]
    return [sum(1 for n in names if in_shard(n, (i, k))) for i in range(1, k + 1)]


def choose_k(names: list[str], per_model: dict[str, float], budget: dict[str, float], start: int = 1) -> int:
    """Smallest K >= start whose fullest file is predicted inside the budget for every cost."""
    k = max(1, start)
    while k < len(names):
        fullest = max(shard_sizes(names, k))
        if all(fullest * per_model[key] <= budget[key] for key in budget):
            return k
        k += 1
    return k


# --------------------------------------------------------------------------- measuring


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure_split(wl: Any, k: int) -> dict[str, Any]:
    """The fleet in K entry files, each parsed in its own fresh process, one after the other."""
    files = bp.split_entry_files(wl, k)
    shards, problems, union = [], [], {}
    for entry in files:
        cpu0 = _children_cpu()
        r = bp.run_child(entry, scratch=wl.folder / "runs", dags_folder=entry.parent, env=bp._factory_env(wl),
                         env_files=[f"{bp.LIVE_ENV}={wl.live_file}"], label=entry.stem)
        process_cpu = _children_cpu() - cpu0
        problems.extend(f"{entry.name}: {p[:1500]}" for p in r["problems"])
        if "dag_tasks" not in r:
            shards.append({"entry": entry.name, "ok": False})
            continue
        twice = set(union) & set(r["dag_tasks"])
        if twice:
            problems.append(f"{entry.name}: {len(twice)} DAG id(s) also in another file, e.g. {sorted(twice)[:3]}")
        union.update(r["dag_tasks"])
        shards.append({
            "entry": entry.name, "ok": r["ok"], "dags": r["dags"], "tasks": r["tasks"],
            "import_s": r["import_s"], "serialize_s": r["serialize_s"],
            "import_serialize_s": r["import_s"] + r["serialize_s"],
            "import_cpu_s": r["import_cpu_s"], "serialize_cpu_s": r["serialize_cpu_s"],
            "import_serialize_cpu_s": r["import_cpu_s"] + r["serialize_cpu_s"],
            "airflow_import_s": r["airflow_import_s"], "rss_mb": r["rss_mb"], "rss_import_mb": r["rss_import_mb"],
            "process_cpu_s": process_cpu, "wall_s": r["wall_s"], "variable_reads": r["variable_reads"],
        })
    if len(files) != k:
        problems.append(f"write_entry_files wrote {len(files)} file(s), not {k}")
    problems.extend(bp._problems({"dag_tasks": union}, wl.expected))
    ok = [s for s in shards if "import_s" in s]
    out: dict[str, Any] = {"models": wl.models, "k": k, "shards": shards, "problems": problems, "ok": not problems}
    if ok:
        isz = [s["import_serialize_s"] for s in ok]
        out.update(
            dags=len(union), tasks=sum(union.values()),
            file_max_import_s=max(s["import_s"] for s in ok),
            file_median_import_s=statistics.median(s["import_s"] for s in ok),
            file_max_import_serialize_s=max(isz), file_median_import_serialize_s=statistics.median(isz),
            file_max_import_cpu_s=max(s["import_cpu_s"] for s in ok),
            file_median_import_cpu_s=statistics.median(s["import_cpu_s"] for s in ok),
            file_max_import_serialize_cpu_s=max(s["import_serialize_cpu_s"] for s in ok),
            file_median_import_serialize_cpu_s=statistics.median(s["import_serialize_cpu_s"] for s in ok),
            file_max_rss_mb=max(s["rss_mb"] for s in ok),
            sum_import_serialize_cpu_s=sum(s["import_serialize_cpu_s"] for s in ok),
            sum_import_serialize_s=sum(isz),
            sum_process_cpu_s=sum(s["process_cpu_s"] for s in ok),
            max_dags_in_file=max(s["dags"] for s in ok),
        )
    return out


SUMMARY_KEYS = ("file_max_import_s", "file_median_import_s", "file_max_import_serialize_s",
                "file_median_import_serialize_s", "file_max_import_cpu_s", "file_median_import_cpu_s",
                "file_max_import_serialize_cpu_s", "file_median_import_serialize_cpu_s", "file_max_rss_mb",
                "sum_import_serialize_cpu_s", "sum_import_serialize_s", "sum_process_cpu_s")


def summarize(runs: list[dict], budget: dict[str, float]) -> dict[str, Any]:
    """Medians over the repetitions of one (N, K)."""
    good = [r for r in runs if r.get("ok")]
    row: dict[str, Any] = {"models": runs[0]["models"], "k": runs[0]["k"], "repetitions": len(good),
                           "problems": [p for r in runs for p in r["problems"]]}
    if not good:
        return row
    row.update(dags=good[0]["dags"], tasks=good[0]["tasks"], max_dags_in_file=good[0]["max_dags_in_file"])
    for key in SUMMARY_KEYS:
        row[key] = statistics.median(r[key] for r in good)
    # judged on CPU time: what the parse costs on an idle machine (wall time moves with the others' load)
    row["fits_budget"] = (row["file_max_import_cpu_s"] <= budget["import"]
                          and row["file_max_import_serialize_cpu_s"] <= budget["import_serialize"])
    row["within_timeouts"] = (row["file_max_import_s"] <= IMPORT_LIMIT_S
                              and row["file_max_import_serialize_s"] <= FILE_LIMIT_S)
    return row


# --------------------------------------------------------------------------- DB size

DB_CHILD = r'''
import json, os, resource, sys, time
for item in sys.argv[2:]:
    name, _, path = item.partition("=")
    with open(path, encoding="utf-8") as fh:
        os.environ[name] = fh.read()
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
from airflow.utils.session import create_session

# What `airflow dags reserialize` does (airflow/cli/commands/dag_command.py), for the dags-folder bundle.
with create_session() as session:
    manager = DagBundlesManager()
    manager.sync_bundles_to_db(session=session)
    session.commit()
    bundle = manager.get_bundle("dags-folder")
    bundle.initialize()
    t0, c0 = time.perf_counter(), time.process_time()
    bag = BundleDagBag(bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
    t1, c1 = time.perf_counter(), time.process_time()
    sync_bag_to_db(bag, bundle.name, None, session=session)
    session.commit()
    t2, c2 = time.perf_counter(), time.process_time()
with open(sys.argv[1], "w") as fh:
    json.dump({"dags": len(bag.dags), "import_errors": {str(k): str(v)[-1500:] for k, v in bag.import_errors.items()},
               "parse_s": t1 - t0, "parse_cpu_s": c1 - c0, "write_s": t2 - t1, "write_cpu_s": c2 - c1,
               "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, fh)
'''


def _pg(dbname: str = "postgres"):
    import psycopg2

    conn = psycopg2.connect(f"{PG_DSN} dbname={dbname}")
    conn.autocommit = True
    return conn


def _drop_db(name: str) -> None:
    conn = _pg()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        conn.close()


def measure_db(wl: Any, k: int, scratch: Path, log=print) -> dict[str, Any]:
    """Write every DAG of this workload's K-file split into a fresh PostgreSQL DB through Airflow's
    own code path and measure the tables. The DB is dropped before returning, also on error."""
    name = f"dag_factory_bench_{secrets.token_hex(4)}"
    dags_folder = bp.split_entry_files(wl, k)[0].parent
    home = Path(tempfile.mkdtemp(prefix="db_home_", dir=scratch))
    env = bp._child_env(home, dags_folder, {**bp._factory_env(wl), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                                            PG_URL.format(db=name)})
    airflow = Path(bp.project_python()).parent / "airflow"
    out: dict[str, Any] = {"database": name, "models": wl.models, "k": k, "problems": []}
    conn = _pg()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        t0 = time.perf_counter()
        proc = subprocess.run([str(airflow), "db", "migrate"], env=env, cwd=home, capture_output=True, text=True,
                              timeout=MIGRATE_TIMEOUT_S)
        out["migrate_s"] = time.perf_counter() - t0
        if proc.returncode:
            out["problems"].append(f"airflow db migrate exited {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}")
            return out
        log(f"  DB {name}: migrated in {out['migrate_s']:.0f} s; writing {len(wl.expected)} DAGs ({k} file(s))",
            flush=True)
        child, result = home / "db_child.py", home / "db_result.json"
        child.write_text(DB_CHILD)
        cpu0 = _children_cpu()
        proc = subprocess.run([str(bp.project_python()), str(child), str(result), f"{bp.LIVE_ENV}={wl.live_file}"],
                              env=env, cwd=home, capture_output=True, text=True, timeout=DB_WRITE_TIMEOUT_S)
        out["process_cpu_s"] = _children_cpu() - cpu0
        if proc.returncode or not result.exists():
            out["problems"].append(f"DB write exited {proc.returncode}: {(proc.stderr or proc.stdout)[-2000:]}")
            return out
        out.update(json.loads(result.read_text()))
        if out["import_errors"]:
            out["problems"].append(f"{len(out['import_errors'])} import error(s): {next(iter(out['import_errors'].values()))}")
        db = _pg(name)
        try:
            with db.cursor() as cur:
                tables = {}
                for table in DB_TABLES:
                    cur.execute(f"SELECT count(*), pg_total_relation_size('{table}'), pg_relation_size('{table}') "
                                f"FROM {table}")
                    rows, total, heap = cur.fetchone()
                    tables[table] = {"rows": rows, "total_bytes": total, "heap_bytes": heap}
                cur.execute("SELECT pg_database_size(current_database())")
                out["database_bytes"] = cur.fetchone()[0]
                cur.execute("SELECT avg(pg_column_size(data)), avg(pg_column_size(data_compressed)) FROM serialized_dag")
                avg_data, avg_compressed = cur.fetchone()
                out["serialized_dag_avg_column_bytes"] = {"data": float(avg_data or 0),
                                                          "data_compressed": float(avg_compressed or 0)}
        finally:
            db.close()
        out["tables"] = tables
        out["sum_bytes"] = sum(t["total_bytes"] for t in tables.values())
        out["bytes_per_dag"] = out["sum_bytes"] / max(1, tables["serialized_dag"]["rows"])
        if tables["serialized_dag"]["rows"] != len(wl.expected):
            out["problems"].append(f"serialized_dag has {tables['serialized_dag']['rows']} rows, "
                                   f"expected {len(wl.expected)}")
        return out
    finally:
        if not conn.closed:
            conn.close()
        _drop_db(name)
        out["dropped"] = True
        shutil.rmtree(home, ignore_errors=True)


def extrapolate_db(db: dict[str, Any], dags: int) -> dict[str, Any]:
    """The measured tables scaled by DAG count (per DAG bytes are the same at every N)."""
    scale = dags / db["tables"]["serialized_dag"]["rows"]
    tables = {t: round(v["total_bytes"] * scale) for t, v in db["tables"].items()}
    return {"dags": dags, "measured": scale == 1, "tables_bytes": tables, "sum_bytes": sum(tables.values())}


# --------------------------------------------------------------------------- output


def _mb(b: float | None) -> str:
    return "–" if b is None else f"{b / 1e6:,.0f} MB" if b >= 1e7 else f"{b / 1e6:,.1f} MB"


def _f(v: Any, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def _mark(row: dict) -> str:
    over_import = row.get("file_max_import_cpu_s", 0) > IMPORT_LIMIT_S
    over_file = row.get("file_max_import_serialize_cpu_s", 0) > FILE_LIMIT_S
    return (" ‡" if over_import else "") + (" †" if over_file else "")


def render_table(rows: list[dict], chosen: dict[int, int], db: dict[int, dict], skipped: dict[int, str]) -> str:
    lines = [
        "| models (DAGs) | K files | DAGs in fullest file | import per file, CPU: median / max | "
        "import + serialize per file, CPU: median / max | (the same, wall) | peak RSS per parse (max) | "
        "CPU of a full parse (Σ import + serialize) | Σ whole processes CPU | "
        "DB: serialized_dag + dag + dag_version + dag_code |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["models"], r["k"])):
        if "file_max_import_s" not in r:
            lines.append(f"| {r['models']:,} | {r['k']} | FAILED: {str(r['problems'][:1])[:300]} ||||||||")
            continue
        k = f"**{r['k']}**" if chosen.get(r["models"]) == r["k"] else str(r["k"])
        d = db.get(r["models"])
        dbtext = "–" if d is None else (_mb(d["sum_bytes"]) + ("" if d["measured"] else " (extrapolated)"))
        reps = "" if r["repetitions"] > 1 else " (1 run)"
        lines.append(
            f"| {r['models']:,} ({r['dags']:,}){reps} | {k} | {r['max_dags_in_file']:,} | "
            f"{_f(r['file_median_import_cpu_s'])} / {_f(r['file_max_import_cpu_s'])} s | "
            f"{_f(r['file_median_import_serialize_cpu_s'])} / {_f(r['file_max_import_serialize_cpu_s'])} s{_mark(r)} | "
            f"import {_f(r['file_max_import_s'])} s, + serialize {_f(r['file_max_import_serialize_s'])} s (max) | "
            f"{r['file_max_rss_mb']:,.0f} MB | {_f(r['sum_import_serialize_cpu_s'], '.1f')} s | "
            f"{_f(r['sum_process_cpu_s'], '.1f')} s | {dbtext} |")
    notes = [f"N={n}: single file not measured ({why})" for n, why in sorted(skipped.items())]
    return "\n".join(lines + ([""] + notes if notes else []))


def render_db(dbm: dict[str, Any]) -> str:
    if not dbm.get("tables"):
        return f"DB size: not measured ({'; '.join(dbm.get('problems', [])[:1])[:500]})"
    parts = ", ".join(f"{t} {_mb(v['total_bytes'])} ({v['rows']:,} rows)" for t, v in dbm["tables"].items())
    return (f"DB size measured at N={dbm['models']:,} (K={dbm['k']}, {dbm['dags']:,} DAGs written with "
            f"sync_bag_to_db into PostgreSQL): {parts}; sum {_mb(dbm['sum_bytes'])}, "
            f"{dbm['bytes_per_dag'] / 1024:.1f} KiB per DAG; whole database {_mb(dbm['database_bytes'])}. "
            f"Parse {dbm['parse_s']:.1f} s, DB write {dbm['write_s']:.1f} s ({dbm['write_cpu_s']:.1f} CPU s in the "
            f"writing process, {dbm['write_s'] / dbm['dags'] * 1000:.1f} ms per DAG); `airflow db migrate` "
            f"{dbm['migrate_s']:.0f} s.")


# --------------------------------------------------------------------------- main


def _parse_split(text: str | None) -> dict[int, int]:
    out = {}
    for item in (text or "").split(","):
        if item.strip():
            n, _, k = item.partition(":")
            out[int(n)] = int(k)
    return out


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # the finally blocks drop the DB and remove the workloads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", default="1000,5000,10000", help="comma-separated N (default 1000,5000,10000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per (N, K); medians reported (default 3)")
    parser.add_argument("--headroom", type=float, default=0.25,
                        help="a file's budget as a fraction of each timeout, idle machine (default 0.25)")
    parser.add_argument("--split", metavar="N:K,...", help="force K for these N instead of choosing it")
    parser.add_argument("--also", metavar="N:K,...", help="also measure these splits (for comparison)")
    parser.add_argument("--no-single", action="store_true", help="the single file only at the smallest N")
    parser.add_argument("--single-repeat", type=int, default=1,
                        help="repetitions of the single file past the smallest N (default 1)")
    parser.add_argument("--db-models", type=int, metavar="N",
                        help="write this N's split into a fresh PostgreSQL DB (default: the smallest N; 0: off)")
    parser.add_argument("--json", help="write everything here (default benchmarks/results/fleet_scale.json)")
    parser.add_argument("--keep", action="store_true", help="keep the generated workloads (path printed)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    sizes = sorted({int(x) for x in args.models.split(",") if x.strip()})
    forced = _parse_split(args.split)
    also: dict[int, list[int]] = {}
    for item in (args.also or "").split(","):
        if item.strip():
            n, _, k = item.partition(":")
            also.setdefault(int(n), []).append(int(k))
    if args.repeat < 1 or not sizes or not 0 < args.headroom <= 1:
        parser.error("--repeat >= 1, at least one N, 0 < --headroom <= 1")
    db_models = sizes[0] if args.db_models is None else args.db_models
    if db_models and db_models not in sizes:
        parser.error("--db-models must be one of --models (or 0)")
    budget = {"import": args.headroom * IMPORT_LIMIT_S, "import_serialize": args.headroom * FILE_LIMIT_S}
    json_path = Path(args.json or ROOT / "benchmarks" / "results" / "fleet_scale.json").resolve()
    tmp = Path(tempfile.mkdtemp(prefix="dag_factory_fleet_scale_"))
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "benchmarks/fleet_scale.py", "argv": sys.argv[1:] if argv is None else argv,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_at_start": os.getloadavg()},
        "limits": {"dagbag_import_timeout_s": IMPORT_LIMIT_S, "dag_file_processor_timeout_s": FILE_LIMIT_S},
        "headroom": args.headroom, "budget_s": budget, "models": sizes, "repeat": args.repeat,
    }
    print(f"fleet scale: N = {', '.join(map(str, sizes))}; {args.repeat} repetition(s); budget per file "
          f"import <= {budget['import']:.1f} s, import + serialize <= {budget['import_serialize']:.1f} s; "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; workloads in {tmp}", flush=True)
    runs: list[dict] = []
    rows: list[dict] = []
    chosen: dict[int, int] = {}
    skipped: dict[int, str] = {}
    per_model: dict[str, float] | None = None
    workloads: dict[int, Any] = {}
    db_result: dict[str, Any] | None = None

    def measure(wl: Any, k: int, repeat: int = args.repeat) -> dict:
        reps = []
        for rep in range(repeat):
            r = measure_split(wl, k)
            r["repetition"] = rep
            reps.append(r)
            runs.append(r)
            if r["ok"]:
                print(f"  N={wl.models} K={k} [{rep + 1}/{repeat}] per file import median/max "
                      f"{r['file_median_import_s']:.2f}/{r['file_max_import_s']:.2f} s (CPU "
                      f"{r['file_median_import_cpu_s']:.2f}/{r['file_max_import_cpu_s']:.2f}), import+serialize "
                      f"{r['file_median_import_serialize_s']:.2f}/{r['file_max_import_serialize_s']:.2f} s (CPU "
                      f"{r['file_median_import_serialize_cpu_s']:.2f}/{r['file_max_import_serialize_cpu_s']:.2f}), RSS max "
                      f"{r['file_max_rss_mb']:.0f} MB, Σ CPU {r['sum_import_serialize_cpu_s']:.1f} s "
                      f"(whole processes {r['sum_process_cpu_s']:.1f} s); load {os.getloadavg()[0]:.2f}", flush=True)
            else:
                print(f"  N={wl.models} K={k} [{rep + 1}/{repeat}] FAILED: {r['problems'][:2]}", flush=True)
        row = summarize(reps, budget)
        rows.append(row)
        return row

    try:
        for n in sizes:
            t0 = time.perf_counter()
            wl = workloads[n] = bp.generate_workload(tmp / f"n{n}", n)
            print(f"\nN={n}: {len(wl.expected)} DAGs, {sum(wl.expected.values())} tasks (generated in "
                  f"{time.perf_counter() - t0:.1f} s; live snapshot {wl.live_file.stat().st_size / 1024:.0f} KiB)",
                  flush=True)
            measured: dict[int, dict] = {}
            if per_model is None or not args.no_single:
                predicted = None if per_model is None else {key: n * per_model[key] for key in per_model}
                if predicted is None or (predicted["import"] <= IMPORT_LIMIT_S
                                         and predicted["import_serialize"] <= FILE_LIMIT_S):
                    # past the smallest N, once: a comparison, and a minute of CPU per run at 5,000 models
                    row = measured[1] = measure(wl, 1, args.repeat if per_model is None else args.single_repeat)
                    if per_model is None and "file_max_import_s" in row:
                        per_model = {"import": row["file_max_import_cpu_s"] / n,
                                     "import_serialize": row["file_max_import_serialize_cpu_s"] / n}
                        result["per_model_cost_s"] = {**per_model, "from_models": n}
                        print(f"  per-model cost (single file, N={n}): import {per_model['import'] * 1000:.2f} ms, "
                              f"import + serialize {per_model['import_serialize'] * 1000:.2f} ms", flush=True)
                else:
                    skipped[n] = (f"predicted import {predicted['import']:.0f} s / import + serialize "
                                  f"{predicted['import_serialize']:.0f} s, past the {IMPORT_LIMIT_S} s / "
                                  f"{FILE_LIMIT_S} s timeouts")
                    print(f"  single file skipped: {skipped[n]}", flush=True)
            if per_model is None:
                raise RuntimeError(f"the single file at N={n} failed: no per-model cost to choose K from")
            k = forced.get(n) or choose_k(wl.model_names, per_model, budget)
            for attempt in range(MAX_RETRIES + 1):
                row = measured.get(k) or measure(wl, k)
                measured[k] = row
                if n in forced or row.get("fits_budget") or "file_max_import_s" not in row or attempt == MAX_RETRIES:
                    break
                over = max(row["file_max_import_cpu_s"] / budget["import"],
                           row["file_max_import_serialize_cpu_s"] / budget["import_serialize"])
                scaled = {key: per_model[key] * over for key in per_model}
                k = choose_k(wl.model_names, scaled, budget, start=k + 1)
                print(f"  K={row['k']} over the budget ({over:.2f}x): trying K={k}", flush=True)
            chosen[n] = k
            for extra in also.get(n, []):
                if extra not in measured:
                    measured[extra] = measure(wl, extra)
            result["chosen_k"] = chosen
            bp._write_json(json_path, {**result, "rows": rows, "runs": runs})

        if db_models:
            print(f"\nDB size: N={db_models}, K={chosen[db_models]}", flush=True)
            try:
                db_result = measure_db(workloads[db_models], chosen[db_models], tmp)
            except Exception as exc:  # noqa: BLE001 - report it; the parse figures stand on their own
                db_result = {"problems": [f"{type(exc).__name__}: {exc}"]}
            print(render_db(db_result), flush=True)
        db_by_n = {}
        if db_result and db_result.get("tables"):
            for n, wl in workloads.items():
                db_by_n[n] = extrapolate_db(db_result, len(wl.expected))
        result.update(rows=rows, runs=runs, db=db_result, db_by_models=db_by_n, skipped_single=skipped,
                      runtime_s=time.perf_counter() - started)
        result["machine"]["load_at_end"] = os.getloadavg()
        bp._write_json(json_path, result)
        print("\n" + render_table(rows, chosen, db_by_n, skipped))
        print(f"\nK in bold: the split chosen (fullest file inside {args.headroom:.0%} of each timeout, in CPU "
              f"seconds of the parse process = its time on an idle machine: import <= {budget['import']:.1f} s, "
              f"import + serialize <= {budget['import_serialize']:.1f} s). Medians of {args.repeat} repetition(s); "
              "per repetition the median and max over the K files, the max RSS, the sums of CPU (user + system; "
              "'whole processes' includes interpreter start and Airflow's import). Wall times move with the "
              "machine's load. ‡ CPU past dagbag_import_timeout, † CPU past dag_file_processor_timeout.")
        if db_result:
            print(render_db(db_result))
        print(f"load average at start {result['machine']['load_at_start'][0]:.2f}, at end "
              f"{result['machine']['load_at_end'][0]:.2f} ({os.cpu_count()} CPUs); run took "
              f"{result['runtime_s'] / 60:.1f} min")
        for r in rows:
            for p in r["problems"][:3]:
                print(f"PROBLEM N={r['models']} K={r['k']}: {p[:1500]}")
    finally:
        if args.keep:
            print(f"workloads kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"JSON: {json_path}")
    ok = all(r.get("ok") for r in runs) and not (db_result or {}).get("problems")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
