"""Airflow 3.3 re-hashes the whole DAG, its schedule included, on every `>>`: a reproduction with
plain Airflow code (no dag_factory), for the upstream report in docs/upstream-dag-hash.md.

    .venv/bin/python benchmarks/upstream_dag_hash.py [--dags 500] [--tasks 10] [--repeat 3]

Builds N DAGs of K chained `EmptyOperator`s (K - 1 edges each), scheduled either on one Asset or
on a cron string, wired three ways:

- `>>`            Airflow's own `a >> b` (what every DAG file does)
- `>>, id hash`   the same, with `DAG.__hash__` replaced by `object.__hash__` in that process
                  (what an identity hash upstream would give; a measurement, never product code)
- `direct`        `a.downstream_task_ids.add(b.task_id); b.upstream_task_ids.add(a.task_id)`,
                  which is all `>>` changes for two tasks of one DAG (what dag_factory's `link` does)

Every measurement is a fresh interpreter (Airflow imported before the clock starts); the
configurations alternate within each repetition; medians are reported, with the ratio to `>>`
of the same schedule paired by repetition. A separate small build in each child counts calls of
`DAG.__hash__` and `Asset.__hash__` per DAG with a profile hook (nothing replaced). The script
also shows that a DAG's hash changes when a task is added (a DAG put in a set is not found
in it after that). A benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SCHEDULES = ("asset", "cron")
WIRINGS = (">>", ">>, id hash", "direct")

CHILD = r'''
import json, sys, time
from datetime import datetime, timezone

n, k, schedule_kind, wiring = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset
from airflow.sdk.definitions.dag import DAG as SdkDag

# Airflow's own hash functions, counted per DAG below with a profile hook
codes = {SdkDag.__hash__.__code__: "dag_hash", Asset.__hash__.__code__: "asset_hash"}
if wiring == ">>, id hash":
    SdkDag.__hash__ = object.__hash__


def edge(a, b):
    if wiring == "direct":
        a.downstream_task_ids.add(b.task_id)
        b.upstream_task_ids.add(a.task_id)
    else:
        a >> b


def build(count, prefix):
    dags = []
    for i in range(count):
        if schedule_kind == "asset":
            schedule = [Asset(name=f"{prefix}.model.{i}", uri=f"x-repro://models/{i}", group="ml-model")]
        else:
            schedule = "0 3 * * *"
        with DAG(dag_id=f"{prefix}_{i}", schedule=schedule, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
                 catchup=False, auto_register=False) as dag:
            tasks = [EmptyOperator(task_id=f"t{j}") for j in range(k)]
            for a, b in zip(tasks, tasks[1:]):
                edge(a, b)
        dags.append(dag)
    return dags


# calls per DAG, counted on a small build with a profile hook (before any timing)
counts = {"dag_hash": 0, "asset_hash": 0}


def hook(frame, event, arg):
    if event == "call" and frame.f_code in codes:
        counts[codes[frame.f_code]] += 1


sample = 20
sys.setprofile(hook)
check = build(sample, "count")
sys.setprofile(None)

t0, c0 = time.perf_counter(), time.process_time()
dags = build(n, "dag")
built, cpu = time.perf_counter() - t0, time.process_time() - c0
edges = sum(len(t.downstream_task_ids) for d in dags for t in d.tasks)

# the hash of a DAG follows its task list: a DAG in a set is lost when a task is added
probe = check[0]
before = hash(probe)
bag = {probe}
with probe:
    EmptyOperator(task_id="added_later")
print(json.dumps({"build_s": built, "build_cpu_s": cpu, "dags": len(dags), "edges": edges,
                  "dag_hash_per_dag": counts["dag_hash"] / sample, "asset_hash_per_dag": counts["asset_hash"] / sample,
                  "hash_changed_on_add_task": hash(probe) != before, "found_in_set_after_add_task": probe in bag}))
'''


def run_child(n: int, k: int, schedule: str, wiring: str, home: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(n), str(k), schedule, wiring], env=env, cwd=home,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"child {schedule}/{wiring} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags", type=int, default=500, help="N DAGs per build (default 500)")
    parser.add_argument("--tasks", type=int, default=10, help="K chained tasks per DAG (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions, configurations alternating (default 3)")
    args = parser.parse_args(argv)
    import airflow

    print(f"Airflow {airflow.__version__}, Python {sys.version.split()[0]}; N={args.dags} DAGs x K={args.tasks} "
          f"chained EmptyOperators ({args.tasks - 1} edges each); {args.repeat} repetition(s); "
          f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="upstream_dag_hash_") as tmp:
        for rep in range(args.repeat):
            order = [(s, w) for s in SCHEDULES for w in WIRINGS]
            for schedule, wiring in (order if rep % 2 == 0 else order[::-1]):
                r = run_child(args.dags, args.tasks, schedule, wiring, Path(tmp))
                runs.setdefault((schedule, wiring), []).append(r)
                print(f"  [{rep + 1}/{args.repeat}] {schedule:5s} {wiring:12s} build {r['build_s']:6.2f} s "
                      f"(CPU {r['build_cpu_s']:6.2f} s)", flush=True)
    print("\n| schedule | wiring | build s (median) | × `>>` (paired) | build CPU s (median) | × `>>` (CPU, paired) "
          "| DAG.__hash__ calls per DAG | Asset.__hash__ calls per DAG |\n|---|---|---|---|---|---|---|---|")
    for schedule in SCHEDULES:
        for wiring in WIRINGS:
            rs = runs[(schedule, wiring)]
            cells = []
            for key in ("build_s", "build_cpu_s"):
                times = [r[key] for r in rs]
                base = [r[key] for r in runs[(schedule, ">>")]]
                paired = statistics.median(t / b for t, b in zip(times, base))
                cells.append(f"{statistics.median(times):.2f} | {paired:.2f}×")
            print(f"| {schedule} | {wiring} | {' | '.join(cells)} | "
                  f"{rs[0]['dag_hash_per_dag']:.0f} | {rs[0]['asset_hash_per_dag']:.0f} |")
    first = runs[("asset", ">>")][0]
    print(f"\nedges per build: {first['edges']} in {first['dags']} DAGs (the same in every configuration: "
          f"{sorted({r['edges'] for rs in runs.values() for r in rs})})")
    print(f"a DAG's hash changes when a task is added: {first['hash_changed_on_add_task']}; "
          f"the DAG is still found in a set it was put in before: {first['found_in_set_after_add_task']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
