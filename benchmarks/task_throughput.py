"""Task-throughput benchmark: task runs per second one Celery worker sustains, and CPU s per task run.

    .venv/bin/python benchmarks/task_throughput.py [--models 12] [--runs 5] [--concurrency 4]
                                                   [--json benchmarks/results/task_throughput.json]

Starts the real `celery` stack (`dag_factory.dev.stack.start_stack`: fresh PostgreSQL DB + Redis,
api-server, scheduler, dag-processor, triggerer, one `airflow celery worker --concurrency C`)
against the reference backend, on a temp specs folder holding only `_defaults.yaml` and M copies
of `specs/churn_predictor.yaml` (`tp_00`..: manual training, streaming every 1h, 4 partitions,
batch 100), each partition's stream R*batch records long. After every `tp_XX__stream` DAG is
there it takes a /proc CPU baseline, triggers R runs of each streaming DAG at once (5 task runs per
DAG run: plan_partitions + 4 mapped process_partition; max_active_runs=1, so the runs of one DAG
queue and the M DAGs run side by side), waits (bounded) for every run, then reads the CPU again
(before stopping anything) and the task instances through /api/v2.

Reported: task runs, wall time first queued -> last end, task runs/s, median task duration,
median queued -> end latency, CPU s of each process group (worker, scheduler, api-server, ...)
per task run, and correctness (every run success; the backend's stream counts: every record
processed once, no duplicates, none missing).

CPU of a process group = sum of utime+stime+cutime+cstime over every live process in the group
(the group leader's cutime/cstime hold its reaped children: the task processes forked by the
worker's pool processes are reaped inside the group). Background work in the window (the
scheduler's and dag-processor's loops) is counted too: it is part of what the stack spends.

A benchmark, not a test: it prints and writes numbers and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dag_factory.dev.backend.process import start_backend  # noqa: E402
from dag_factory.dev.stack import start_stack  # noqa: E402

DAGS = ROOT / "dags"
SPECS = ROOT / "specs"
TEMPLATE = "churn_predictor"
PARTITIONS = (0, 1, 2, 3)
BATCH = 100
CLK = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    print(f"[throughput {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def group_cpu(pgid: int) -> float:
    """CPU seconds (utime+stime+cutime+cstime) of every live process in process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is state (field 3); pgrp is field 5 -> fields[2]; utime..cstime fields 14-17
        if int(fields[2]) == pgid:
            total += sum(int(x) for x in fields[11:15])
    return total / CLK


def stack_cpu(stack, backend) -> dict[str, float]:
    cpu = {name: group_cpu(proc.pid) for name, proc in stack.processes.items()}
    pid = backend.pid
    if pid is not None:
        cpu["backend"] = group_cpu(pid) if os.getpgid(pid) == pid else pid_cpu(pid)
    return cpu


def pid_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        return sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15]) / CLK


def machine_busy() -> float:
    """CPU seconds the whole machine (all tenants, PostgreSQL and Redis too) was busy."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK  # user nice system idle iowait irq softirq steal


def write_specs(folder: Path, models: int) -> list[str]:
    folder.mkdir(parents=True)
    shutil.copy(SPECS / "_defaults.yaml", folder / "_defaults.yaml")
    text = (SPECS / f"{TEMPLATE}.yaml").read_text()
    for old, new in (('schedule: "0 3 * * *"', "schedule: null"), ("every: 10m", "every: 1h"),
                     ("batch_size: 1000", f"batch_size: {BATCH}"), ("partitions: [0, 1, 2, 3]", "partitions: [0, 1, 2, 3]")):
        assert old in text, f"specs/{TEMPLATE}.yaml changed ({old!r} missing): update this benchmark"
        text = text.replace(old, new)
    names = [f"tp_{i:02d}" for i in range(models)]
    for name in names:
        (folder / f"{name}.yaml").write_text(text.replace(f"model: {TEMPLATE}", f"model: {name}"))
    return names


def parse_ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--runs", type=int, default=5, help="runs per streaming DAG")
    parser.add_argument("--concurrency", type=int, default=4, help="celery worker_concurrency")
    parser.add_argument("--parallelism", type=int, default=None, help="[core] parallelism (default: max(8, 2*concurrency))")
    parser.add_argument("--timeout", type=float, default=720.0, help="bound on the wait for all runs (s)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "task_throughput.json"))
    args = parser.parse_args()
    parallelism = args.parallelism or max(8, 2 * args.concurrency)

    tmp = Path(tempfile.mkdtemp(prefix="dag_factory_tp_"))
    home = tmp / "home"
    specs = tmp / "specs"
    models = write_specs(specs, args.models)
    stream_dags = [f"{m}__stream" for m in models]
    length = args.runs * BATCH
    result: dict = {"models": args.models, "runs_per_dag": args.runs, "concurrency": args.concurrency,
                    "parallelism": parallelism, "batch_size": BATCH, "stream_length": length,
                    "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}

    from dag_factory.dev.backend.seed import make_gates_pass, seed_for
    from dag_factory.specs import load_specs

    loaded = [s for s in load_specs([specs], check_imports=False).specs if not s.template]
    assert sorted(s.name for s in loaded) == models, [s.name for s in loaded]
    with start_backend(job_delay=2.0, token=secrets.token_hex(16), log_path=str(tmp / "backend.log")) as backend:
        backend.admin("POST", "/models", seed_for(loaded))
        for spec in loaded:
            make_gates_pass(spec, backend)
            for p in PARTITIONS:
                backend.admin("PUT", f"/streams/{spec.name}/{p}", {"length": length})
        env = {"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
               "AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE": "modified_time",
               "DAG_FACTORY_REPARSE": "touch",
               "DAG_FACTORY_SYNC_INTERVAL": "1h",  # the sync DAG stays out of the window
               "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(args.concurrency),
               "AIRFLOW__CORE__PARALLELISM": str(parallelism),
               "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "16"}
        t0 = time.monotonic()
        stack = start_stack("celery", home, dags_folder=DAGS, specs_dir=specs, backend_url=backend.url,
                            backend_token=backend.token, extra_env=env)
        with stack:
            try:
                cmd = stack.commands["celery-worker"]
                if cmd[cmd.index("--concurrency") + 1] != str(args.concurrency):
                    # restart the worker with the wanted concurrency (nothing is queued yet)
                    stack.stop_process("celery-worker")
                    cmd[cmd.index("--concurrency") + 1] = str(args.concurrency)
                    stack.start_process("celery-worker")
                say(f"stack up in {time.monotonic() - t0:.0f}s, home {home}")
                for dag_id in stream_dags:
                    stack.wait_dag(dag_id, 180)
                say(f"{len(stream_dags)} streaming DAGs there; settling 20 s")
                time.sleep(20)  # let the first-parse / sync-run work finish outside the window
                before, busy0 = stack_cpu(stack, backend), machine_busy()
                wall0 = time.time()
                runs = [(dag_id, stack.trigger(dag_id)) for _ in range(args.runs) for dag_id in stream_dags]
                say(f"triggered {len(runs)} runs ({len(runs) * 5} task runs expected)")
                deadline = time.monotonic() + args.timeout
                pending = set(runs)
                while pending and time.monotonic() < deadline:
                    for dag_id in {d for d, _ in pending}:
                        for r in stack.runs(dag_id):
                            key = (dag_id, r["dag_run_id"])
                            if key in pending and r["state"] in ("success", "failed"):
                                pending.discard(key)
                    if pending:
                        stack.check_alive()
                        time.sleep(2)
                wall_poll = time.time() - wall0
                after, busy1 = stack_cpu(stack, backend), machine_busy()
                say(f"{len(runs) - len(pending)}/{len(runs)} runs finished in {wall_poll:.0f}s")

                tis, states, run_info = [], {}, []
                for dag_id, run_id in runs:
                    info = stack.run(dag_id, run_id)
                    states[(dag_id, run_id)] = info["state"]
                    run_info.append((dag_id, parse_ts(info.get("start_date")), parse_ts(info.get("end_date"))))
                    tis += stack.task_instances(dag_id, run_id)
                counts = {m: backend.admin("GET", f"/streams/{m}") for m in models}
            except BaseException:
                say(f"FAILED; logs in {home}\n{stack.logs()}")
                raise
    done = [t for t in tis if t.get("end_date")]
    queued = [parse_ts(t.get("queued_when")) for t in done if t.get("queued_when")]
    ends = [parse_ts(t["end_date"]) for t in done]
    wall = max(ends) - min(queued) if queued and ends else float("nan")
    n = len(done)
    cpu = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}
    total_cpu = sum(cpu.values())
    airflow_cpu = sum(v for k, v in cpu.items() if k != "backend")
    stream_bad = {m: {p: c for p, c in v.items() if (c["processed"], c["duplicates"], c["missing"]) != (length, 0, 0)}
                  for m, v in counts.items()}
    stream_bad = {m: v for m, v in stream_bad.items() if v}
    # where the time of a DAG's run chain goes: the run itself, and the gap from one run's end
    # to the next queued run's start (max_active_runs=1)
    run_secs, gaps = [], []
    for dag_id in stream_dags:
        chain = sorted((s, e) for d, s, e in run_info if d == dag_id and s and e)
        run_secs += [e - s for s, e in chain]
        gaps += [b[0] - a[1] for a, b in zip(chain, chain[1:])]
    result.update({
        "median_dag_run_s": round(statistics.median(run_secs), 2) if run_secs else None,
        "median_gap_between_runs_of_a_dag_s": round(statistics.median(gaps), 2) if gaps else None,
        "dag_runs": len(runs), "dag_runs_success": sum(s == "success" for s in states.values()),
        "dag_runs_unfinished": len(pending), "task_runs": n,
        "task_states": {s: sum(t["state"] == s for t in tis) for s in {t["state"] for t in tis}},
        "wall_s_first_queued_to_last_end": round(wall, 1), "wall_s_trigger_to_all_seen_done": round(wall_poll, 1),
        "task_runs_per_s": round(n / wall, 3) if n else 0.0,
        "median_duration_s": round(statistics.median(t["duration"] for t in done if t.get("duration") is not None), 2),
        "median_queued_to_end_s": round(statistics.median(
            parse_ts(t["end_date"]) - parse_ts(t["queued_when"]) for t in done if t.get("queued_when")), 2),
        "median_start_to_end_s": round(statistics.median(
            parse_ts(t["end_date"]) - parse_ts(t["start_date"]) for t in done if t.get("start_date")), 2),
        "cpu_s": cpu, "cpu_s_total": round(total_cpu, 1),
        "cpu_s_per_task_run": {k: round(v / n, 3) for k, v in cpu.items()} if n else {},
        "cpu_s_per_task_run_airflow": round(airflow_cpu / n, 3) if n else None,
        "cpu_cores_busy_in_window": round(total_cpu / wall_poll, 2),
        "machine_busy_cpu_s": round(busy1 - busy0, 1),  # everything: + PostgreSQL, Redis, other tenants
        "streams_ok": not stream_bad, "stream_problems": stream_bad,
    })
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    ok = result["dag_runs_success"] == len(runs) and not stream_bad
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
