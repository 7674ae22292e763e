"""Task-throughput benchmark: task runs per second one Celery worker sustains and CPU s per task
run, for the generated streaming and training DAGs and for no-op DAGs of the same shape.

    .venv/bin/python benchmarks/task_throughput.py [--models 12] [--runs 5] [--train-runs 3]
                                                   [--concurrency 4] [--rounds 1] [--only stream|train]
                                                   [--no-compile] [--job-delay 12] [--defer-s 8]
                                                   [--json benchmarks/results/task_throughput.json]

Starts the real `celery` stack (`dag_factory.dev.stack.start_stack`: fresh PostgreSQL DB + Redis,
api-server, scheduler, dag-processor, triggerer, one `airflow celery worker --concurrency C`)
against the reference backend, on a temp specs folder holding only `_defaults.yaml` and M copies
of `specs/churn_predictor.yaml` without its deployment section (`tp_00`..: manual training,
streaming every 1h, 4 partitions, batch 100), and a temp DAGs folder holding the repo's two DAG
files plus a generated `noop_baseline.py`: M no-op DAGs of each shape, built only for the DAG a
task-run parse asks for (the cheapest task Airflow runs):

- `noop_XX__stream`: PythonOperator `plan_partitions` returning 4 op_kwargs + 4 mapped no-op
  `process_partition` (max_active_runs=1, retries 3): the shape of `tp_XX__stream`;
- `noop_XX__train`: no-op `start_training`, `wait_for_training` deferring to the triggerer
  (DateTimeTrigger, --defer-s) and resuming in the worker, no-op `check_gates`, no-op `publish`
  with an Asset outlet: the shape of `tp_XX__train` (whose wait defers to BackendJobTrigger: the
  backend's jobs take --job-delay s, so the first check finds them running; with a job shorter
  than start_training's end + scheduling + parse, ours would not defer and the pair would not
  match: `task_run_parses` = task runs + deferred resumes shows it).

Phases, one after the other in the same stack: streaming (no-op, ours), then training (no-op,
ours); each triggers R runs of each of its M DAGs at once (max_active_runs=1: the runs of one DAG
queue, the M DAGs run side by side), waits (bounded) for every run, and reads the /proc CPU of
each process group before and after. `--rounds 2` repeats them in ABBA order (no-op, ours, ours,
no-op) against drift. Ratios ours / no-op pair the phases of one round.

Reported per phase: task runs, wall time first queued -> last end, task runs/s, median task
duration (also per task id), median queued -> end, CPU s per task run of each process group
(worker, scheduler, triggerer, api-server, ..., backend) and of Airflow in all (without the
backend), load average; then the ratios, and correctness (every run success; the backend's
stream counts: every record processed once, no duplicates, none missing).

CPU of a process group = sum of utime+stime+cutime+cstime over every live process in the group
(the group leader's cutime/cstime hold its reaped children: the task processes forked by the
worker's pool processes are reaped inside the group). Background work in the window (the
scheduler's and dag-processor's loops) is counted too: it is part of what the stack spends.

The stack imports dag_factory from a copy taken at the start (`<tmp>/src`, first on PYTHONPATH),
byte-compiled like an installed package; `--no-compile` leaves it source only, which is what a
checkout run with PYTHONDONTWRITEBYTECODE=1 gives (every task run then compiles the package).

A benchmark, not a test: it prints and writes numbers and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
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


NOOP_FILE = '''"""No-op Airflow DAGs shaped like the generated streaming and training DAGs (task_throughput.py).

Built only for the DAG a task-run parse asks for: the cheapest task Airflow runs.
"""

from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG, Asset, BaseOperator, get_parsing_context

MODELS = {models!r}
DEFER_S = {defer_s!r}
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def noop(**kwargs):
    return None


def plan(partitions):
    return [{{"partition": p}} for p in partitions]


def start():
    return {{"id": "noop", "status": "queued"}}


class NoopDeferOperator(BaseOperator):
    """Defers to the triggerer once, resumes in the worker: the shape of WaitForJobOperator."""

    def execute(self, context):
        self.defer(trigger=DateTimeTrigger(moment=datetime.now(timezone.utc) + timedelta(seconds=DEFER_S)),
                   method_name="execute_complete", timeout=timedelta(hours=1))

    def execute_complete(self, context, event=None):
        return {{"id": "noop", "status": "succeeded"}}


def stream_dag(dag_id):
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, max_active_runs=1,
             default_args={{"retries": 3, "retry_delay": timedelta(seconds=30)}}) as dag:
        p = PythonOperator(task_id="plan_partitions", python_callable=plan, op_kwargs={{"partitions": [0, 1, 2, 3]}})
        PythonOperator.partial(task_id="process_partition", python_callable=noop,
                               map_index_template="partition {{{{ task.op_kwargs['partition'] }}}}",
                               ).expand(op_kwargs=p.output)
    return dag


def train_dag(dag_id, model):
    with DAG(dag_id=dag_id, schedule=None, start_date=START, catchup=False, max_active_runs=1,
             default_args={{"retries": 2, "retry_delay": timedelta(minutes=5)}}) as dag:
        a = PythonOperator(task_id="start_training", python_callable=start)
        b = NoopDeferOperator(task_id="wait_for_training")
        c = PythonOperator(task_id="check_gates", python_callable=noop)
        d = PythonOperator(task_id="publish", python_callable=noop,
                           outlets=[Asset(name=f"noop.model.{{model}}", uri=f"x-noop://models/{{model}}")])
        a >> b >> c >> d
    return dag


_wanted = get_parsing_context().dag_id
for _m in MODELS:
    for _dag_id, _build in ((f"{{_m}}__stream", stream_dag), (f"{{_m}}__train", lambda i, m=_m: train_dag(i, m))):
        if _wanted is None or _wanted == _dag_id:
            globals()[_dag_id] = _build(_dag_id)
'''


def write_specs(folder: Path, models: int) -> list[str]:
    folder.mkdir(parents=True)
    shutil.copy(SPECS / "_defaults.yaml", folder / "_defaults.yaml")
    text = (SPECS / f"{TEMPLATE}.yaml").read_text()
    for old, new in (('schedule: "0 3 * * *"', "schedule: null"), ("every: 10m", "every: 1h"),
                     ("batch_size: 1000", f"batch_size: {BATCH}"), ("partitions: [0, 1, 2, 3]", "partitions: [0, 1, 2, 3]")):
        assert old in text, f"specs/{TEMPLATE}.yaml changed ({old!r} missing): update this benchmark"
        text = text.replace(old, new)
    # no deployment: a published training must not start deployment runs inside the window
    text, cut = re.subn(r"(?m)^deployment:\n(?:[ \t]+.*\n)+", "", text)
    assert cut == 1, f"specs/{TEMPLATE}.yaml has no deployment section to drop: update this benchmark"
    names = [f"tp_{i:02d}" for i in range(models)]
    for name in names:
        (folder / f"{name}.yaml").write_text(text.replace(f"model: {TEMPLATE}", f"model: {name}"))
    return names


def write_dags(folder: Path, noop_models: list[str], defer_s: float) -> None:
    """The repo's DAG files plus the no-op baseline file."""
    folder.mkdir(parents=True)
    for name in ("model_dags.py", "backend_sync.py"):
        shutil.copy(DAGS / name, folder / name)
    (folder / "noop_baseline.py").write_text(NOOP_FILE.format(models=noop_models, defer_s=defer_s))


def snapshot_package(src: Path, compile_it: bool, package: Path = ROOT / "dag_factory") -> None:
    """The stack imports dag_factory from a copy taken now (edits made elsewhere during the run
    do not reach it), with its bytecode compiled as `pip install` does unless told otherwise
    (the stack inherits PYTHONDONTWRITEBYTECODE: without .pyc files every task run compiles the
    package's source again)."""
    shutil.copytree(package, src / "dag_factory", ignore=shutil.ignore_patterns("__pycache__"))
    if compile_it:
        import compileall

        assert compileall.compile_dir(str(src / "dag_factory"), quiet=1), "dag_factory does not compile"


def parse_ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def run_phase(stack, backend, label: str, dag_ids: list[str], runs_per_dag: int, timeout: float) -> dict:
    """Trigger `runs_per_dag` runs of every DAG at once, wait for all, measure CPU and task runs."""
    before, busy0, load0 = stack_cpu(stack, backend), machine_busy(), os.getloadavg()
    wall0 = time.time()
    runs = [(dag_id, stack.trigger(dag_id)) for _ in range(runs_per_dag) for dag_id in dag_ids]
    say(f"{label}: triggered {len(runs)} runs")
    deadline = time.monotonic() + timeout
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
    after, busy1, load1 = stack_cpu(stack, backend), machine_busy(), os.getloadavg()
    say(f"{label}: {len(runs) - len(pending)}/{len(runs)} runs finished in {wall_poll:.0f}s")
    tis, states = [], {}
    for dag_id, run_id in runs:
        states[(dag_id, run_id)] = stack.run(dag_id, run_id)["state"]
        tis += stack.task_instances(dag_id, run_id)
    done = [t for t in tis if t.get("end_date")]
    queued = [parse_ts(t.get("queued_when")) for t in done if t.get("queued_when")]
    ends = [parse_ts(t["end_date"]) for t in done]
    wall = max(ends) - min(queued) if queued and ends else float("nan")
    n = len(done)
    cpu = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}
    airflow_cpu = sum(v for k, v in cpu.items() if k != "backend")
    by_task: dict[str, list[float]] = {}
    for t in done:
        if t.get("duration") is not None:
            by_task.setdefault(t["task_id"], []).append(t["duration"])
    return {
        "phase": label, "dag_runs": len(runs), "dag_runs_success": sum(s == "success" for s in states.values()),
        "dag_runs_unfinished": len(pending), "task_runs": n,
        "task_states": {s: sum(t["state"] == s for t in tis) for s in {t["state"] for t in tis}},
        "wall_s_first_queued_to_last_end": round(wall, 1), "wall_s_trigger_to_all_seen_done": round(wall_poll, 1),
        "task_runs_per_s": round(n / wall, 3) if n else 0.0,
        "median_duration_s": median([t["duration"] for t in done if t.get("duration") is not None]),
        "median_duration_s_by_task": {k: median(v) for k, v in sorted(by_task.items())},
        "median_queued_to_end_s": median([parse_ts(t["end_date"]) - parse_ts(t["queued_when"])
                                          for t in done if t.get("queued_when")]),
        "cpu_s": cpu,
        "cpu_s_per_task_run": {k: round(v / n, 3) for k, v in cpu.items()} if n else {},
        "cpu_s_per_task_run_airflow": round(airflow_cpu / n, 3) if n else None,
        "cpu_cores_busy_in_window": round(airflow_cpu / wall_poll, 2),
        "machine_busy_cpu_s": round(busy1 - busy0, 1),  # everything: + PostgreSQL, Redis, other tenants
        "loadavg_1m_before_after": [round(load0[0], 2), round(load1[0], 2)],
    }


def parse_ms(home: Path, dag_ids: list[str]) -> list[int]:
    """`dag_file_parse_ms` of every task-run parse of these DAGs (the task logs' "Worker startup
    parse complete" lines: one per worker execution, so a deferred task has two)."""
    found = []
    for dag_id in dag_ids:
        for log in (home / "logs" / "tasks" / f"dag_id={dag_id}").rglob("*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if "Worker startup parse complete" in line:
                    try:
                        found.append(int(json.loads(line)["dag_file_parse_ms"]))
                    except (ValueError, KeyError, TypeError):
                        pass
    return found


def ratios(ours: dict, noop: dict) -> dict:
    """ours / no-op of one round: throughput, CPU per task run (Airflow; worker; triggerer), durations."""
    def div(a, b):
        return round(a / b, 2) if a is not None and b else None
    cpu_o, cpu_n = ours["cpu_s_per_task_run"], noop["cpu_s_per_task_run"]
    return {
        "task_runs_per_s": div(ours["task_runs_per_s"], noop["task_runs_per_s"]),
        "cpu_per_task_run_airflow": div(ours["cpu_s_per_task_run_airflow"], noop["cpu_s_per_task_run_airflow"]),
        "cpu_per_task_run_worker": div(cpu_o.get("celery-worker"), cpu_n.get("celery-worker")),
        "cpu_per_task_run_triggerer": div(cpu_o.get("triggerer"), cpu_n.get("triggerer")),
        "median_duration": div(ours["median_duration_s"], noop["median_duration_s"]),
        "median_dag_file_parse_ms": div(ours["median_dag_file_parse_ms"], noop["median_dag_file_parse_ms"]),
        "median_duration_by_task": {k: div(v, noop["median_duration_s_by_task"].get(k))
                                    for k, v in ours["median_duration_s_by_task"].items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--runs", type=int, default=5, help="runs per streaming DAG")
    parser.add_argument("--train-runs", type=int, default=3, help="runs per training DAG (0: no training phases)")
    parser.add_argument("--rounds", type=int, default=1, help="1: no-op, ours; 2: + ours, no-op (ABBA)")
    parser.add_argument("--concurrency", type=int, default=4, help="celery worker_concurrency")
    parser.add_argument("--parallelism", type=int, default=None, help="[core] parallelism (default: max(8, 2*concurrency))")
    parser.add_argument("--job-delay", type=float, default=12.0,
                        help="backend job duration (s): long enough that wait_for_training's first check finds it running")
    parser.add_argument("--defer-s", type=float, default=8.0, help="the no-op wait's deferral (s)")
    parser.add_argument("--only", choices=("stream", "train"), default=None, help="run only these phases")
    parser.add_argument("--no-compile", action="store_true",
                        help="no .pyc for dag_factory (a source checkout with PYTHONDONTWRITEBYTECODE=1)")
    parser.add_argument("--package", default=str(ROOT / "dag_factory"),
                        help="the dag_factory folder the stack runs (e.g. a copy of another version, for before/after)")
    parser.add_argument("--timeout", type=float, default=720.0, help="bound on the wait for all runs of a phase (s)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "task_throughput.json"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `kill` still stops the stack and drops its DB
    parallelism = args.parallelism or max(8, 2 * args.concurrency)

    tmp = Path(tempfile.mkdtemp(prefix="dag_factory_tp_"))
    home = tmp / "home"
    specs = tmp / "specs"
    models = write_specs(specs, args.models)
    noops = [f"noop_{i:02d}" for i in range(args.models)]
    write_dags(tmp / "dags", noops, args.defer_s)
    snapshot_package(tmp / "src", compile_it=not args.no_compile, package=Path(args.package))
    length = args.rounds * args.runs * BATCH
    result: dict = {"models": args.models, "runs_per_dag": args.runs, "train_runs_per_dag": args.train_runs,
                    "rounds": args.rounds, "concurrency": args.concurrency, "parallelism": parallelism,
                    "batch_size": BATCH, "stream_length": length, "job_delay_s": args.job_delay,
                    "noop_defer_s": args.defer_s, "dag_factory_bytecode": not args.no_compile, "package": args.package,
                    "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
                    "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                    "phases": [], "ratios": []}
    kinds = [k for k in ("stream", "train") if args.only in (None, k) and (k == "stream" or args.train_runs > 0)]
    order = [("noop", "ours") if r % 2 == 0 else ("ours", "noop") for r in range(args.rounds)]

    from dag_factory.dev.backend.seed import make_gates_pass, seed_for
    from dag_factory.specs import load_specs

    loaded = [s for s in load_specs([specs], check_imports=False).specs if not s.template]
    assert sorted(s.name for s in loaded) == models, [s.name for s in loaded]
    counts: dict = {}
    with start_backend(job_delay=args.job_delay, token=secrets.token_hex(16), log_path=str(tmp / "backend.log")) as backend:
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
               "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "16",
               "PYTHONPATH": os.pathsep.join([str(tmp / "src"), str(ROOT)])}
        t0 = time.monotonic()
        stack = start_stack("celery", home, dags_folder=tmp / "dags", specs_dir=specs, backend_url=backend.url,
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
                for base in models + noops:
                    for kind in kinds:
                        stack.wait_dag(f"{base}__{kind}", 180)
                say(f"{len(models + noops) * len(kinds)} DAGs there; settling 20 s")
                time.sleep(20)  # let the first-parse / sync-run work finish outside the window
                for r, pair in enumerate(order):
                    for kind in kinds:
                        phases = {}
                        for who in pair:
                            dag_ids = [f"{b}__{kind}" for b in (models if who == "ours" else noops)]
                            runs = args.runs if kind == "stream" else args.train_runs
                            phases[who] = run_phase(stack, backend, f"{kind}/{who}/round{r}", dag_ids, runs, args.timeout)
                            parses = parse_ms(home, dag_ids)
                            phases[who].update({"task_run_parses": len(parses), "median_dag_file_parse_ms": median(parses)})
                            result["phases"].append(phases[who])
                            time.sleep(5)  # the last run's trailing scheduler work stays in its own phase
                        result["ratios"].append({"kind": kind, "round": r,
                                                 **ratios(phases["ours"], phases["noop"])})
                        say(f"{kind} round {r}: ours/no-op {result['ratios'][-1]}")
                if "stream" in kinds:
                    counts = {m: backend.admin("GET", f"/streams/{m}") for m in models}
            except BaseException:
                say(f"FAILED; logs in {home}\n{stack.logs()}")
                raise
    stream_bad = {m: {p: c for p, c in v.items() if (c["processed"], c["duplicates"], c["missing"]) != (length, 0, 0)}
                  for m, v in counts.items()}
    stream_bad = {m: v for m, v in stream_bad.items() if v}
    result.update({"streams_ok": not stream_bad, "stream_problems": stream_bad})
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    ok = all(p["dag_runs_success"] == p["dag_runs"] for p in result["phases"]) and not stream_bad
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
