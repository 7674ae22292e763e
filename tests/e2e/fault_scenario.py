"""Faults survived on the real stack (issue 11): one scenario for the celery profile of
test_stack_e2e.py, on the stack that test already started (CI has one stack start's time).

A model's training, deployment and several streaming runs go on while, one after another:
the scheduler is SIGKILLed and restarted, PostgreSQL is restarted, Redis is restarted
(``shutdown nosave``: its queues are lost), the backend is down for longer than one retry
cycle, the triggerer is SIGKILLed during a deferred training wait and the dag-processor is
SIGKILLed while it parses the entry file. Then the backend's own counts must prove: one training
job per DAG run, every record of every partition processed once, deployments in target order,
no DAG lost or stale, and a sync that brings the live data back to fresh.

PostgreSQL and Redis are the machine's shared services: they are put back in ``finally``,
also when the scenario fails. Figures and what they mean: docs/reliability.md.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from dag_factory.dev.backend.process import RunningBackend
from dag_factory.dev.stack import Stack, StackError

PARTITIONS = (0, 1, 2, 3)
APPEND = 40  # records added to each partition before each streaming run
JOB_DELAY = 2.0
SYNC_DAG = "dag_factory_backend_sync"
LONG_JOB_DELAY = 20.0  # long enough for wait_for_training to defer and the triggerer to die under it
SLOW_ANSWER = 8.0  # s the backend holds a stream batch's answer back in the PostgreSQL step
RUN_TIMEOUT = 240.0
PG_PORT, REDIS_PORT = 5432, 6379
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", str(REDIS_PORT),
               "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]

Say = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# machine services (shared: always put back)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        time.sleep(0.2)
    return port_open(port)


def _pg_cluster(action: str, check: bool = True) -> None:
    """`pg_ctlcluster` on the machine's newest cluster (scripts/services starts it the same way)."""
    version = sorted(os.listdir("/etc/postgresql"), key=lambda v: [int(p) for p in v.split(".") if p.isdigit()])[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                   check=check, timeout=120, stdin=subprocess.DEVNULL, capture_output=True)


def ensure_postgresql() -> None:
    """PostgreSQL answers again (other engineers' and CI's tests share it)."""
    if not port_open(PG_PORT):
        _pg_cluster("start", check=False)
    if not _wait_port(PG_PORT, 60):
        raise RuntimeError("PostgreSQL is not answering on 127.0.0.1:5432 after the fault scenario")


def restart_postgresql() -> float:
    """Restart the machine's PostgreSQL (every connection is cut); seconds it took."""
    started = time.monotonic()
    try:
        _pg_cluster("restart")
    finally:
        ensure_postgresql()
    return time.monotonic() - started


def ensure_redis() -> None:
    """Redis answers again, started as scripts/services starts it."""
    if not port_open(REDIS_PORT):
        Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
        Path("/var/log/redis").mkdir(parents=True, exist_ok=True)
        subprocess.run(REDIS_START, timeout=30, stdin=subprocess.DEVNULL, capture_output=True)
    if not _wait_port(REDIS_PORT, 60):
        raise RuntimeError("Redis is not answering on 127.0.0.1:6379 after the fault scenario")


def restart_redis() -> float:
    """Shut Redis down without saving (queued messages are lost), start it again; seconds."""
    started = time.monotonic()
    try:
        subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"],
                       timeout=30, stdin=subprocess.DEVNULL, capture_output=True)
        deadline = time.monotonic() + 30
        while port_open(REDIS_PORT) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        ensure_redis()
    return time.monotonic() - started


# --------------------------------------------------------------------------------------------
# stack helpers


def group_pids(pgid: int) -> set[int]:
    """Live processes of a process group (the stack runs each Airflow process in its own)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.add(int(entry))
    return pids


def revive(stack: Stack, restarted: list[str], why: str) -> None:
    """Start again whatever Airflow process exited, as a supervisor (systemd, Kubernetes) would."""
    for name, proc in list(stack.processes.items()):
        if proc.poll() is not None:
            restarted.append(f"{name} (exit {proc.returncode}, {why})")
            stack.start_process(name)


def wait(stack: Stack, predicate: Callable[[], Any], timeout: float, what: str, *,
         restarted: list[str] | None = None, why: str = "", interval: float = 1.0) -> Any:
    """Like Stack.wait_for; with `restarted`, an Airflow process that exits is started again
    (and listed) instead of failing the wait."""
    if restarted is None:
        return stack.wait_for(predicate, timeout, what, interval)
    deadline = time.monotonic() + timeout
    while True:
        revive(stack, restarted, why)
        try:
            return stack.wait_for(predicate, min(10.0, max(1.0, deadline - time.monotonic())), what, interval)
        except StackError:
            if time.monotonic() >= deadline:
                raise


def tis(stack: Stack, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    return stack.task_instances(dag_id, run_id)


def task_in(stack: Stack, dag_id: str, run_id: str, task_id: str, states: set[str]) -> bool:
    return any(t["task_id"] == task_id and t["state"] in states for t in tis(stack, dag_id, run_id))


def all_failed_once(stack: Stack, dag_id: str, run_id: str, task_id: str, count: int) -> bool:
    """Each of the `count` instances failed a try (its client retries used up) and waits for, or
    runs, an Airflow retry."""
    found = [t for t in tis(stack, dag_id, run_id) if t["task_id"] == task_id]
    return len(found) == count and all(t["state"] == "up_for_retry" or (t.get("try_number") or 0) >= 2
                                       for t in found)


def all_started(stack: Stack, dag_id: str, run_id: str, task_id: str, count: int) -> bool:
    """All `count` mapped instances have started, and one at least still runs."""
    states = [t["state"] for t in tis(stack, dag_id, run_id) if t["task_id"] == task_id]
    return len(states) == count and "running" in states and set(states) <= {"running", "success"}


def max_try(stack: Stack, dag_id: str, run_id: str, task_id: str) -> int:
    return max((t.get("try_number") or 0 for t in tis(stack, dag_id, run_id) if t["task_id"] == task_id), default=0)


def succeed(stack: Stack, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT, **kw: Any) -> None:
    """Wait for the run to finish; it must have succeeded."""
    def done() -> str | None:
        state = stack.run(dag_id, run_id)["state"]
        return state if state in ("success", "failed") else None
    state = wait(stack, done, timeout, f"run {dag_id}/{run_id} to finish", **kw)
    assert state == "success", f"{dag_id}/{run_id}: {state}: {stack.describe_run(dag_id, run_id)}"


def active_dag_ids(stack: Stack) -> set[str]:
    return {d["dag_id"] for d in stack.api("GET", "dags", params={"limit": 1000})["dags"]}


def parsed_after(stack: Stack, dag_id: str, moment: datetime) -> bool:
    dag = stack.dag(dag_id) or {}
    stamp = dag.get("last_parsed_time")
    return bool(stamp) and datetime.fromisoformat(stamp.replace("Z", "+00:00")) > moment


def deploy_run_for(stack: Stack, deploy_dag: str, training_run_id: str) -> dict[str, Any] | None:
    """The deploy run whose triggering Asset event came from this training run."""
    for run in stack.runs(deploy_dag):
        if run.get("run_type") != "asset_triggered":
            continue
        events = stack.api("GET", f"dags/{deploy_dag}/dagRuns/{quote(run['dag_run_id'], safe='')}"
                                  "/upstreamAssetEvents")["asset_events"]
        if any(e.get("source_run_id") == training_run_id for e in events):
            return run
    return None


def append_records(backend: RunningBackend, model: str, count: int) -> None:
    for partition in PARTITIONS:
        backend.admin("POST", f"/streams/{model}/{partition}/append", {"count": count})


# --------------------------------------------------------------------------------------------
# what the backend counted


def jobs(backend: RunningBackend, model: str, kind: str) -> list[dict[str, Any]]:
    return backend.admin("GET", "/jobs", params={"model": model, "kind": kind})["jobs"]


def version_of(backend: RunningBackend, model: str, train_dag: str, run_id: str) -> str:
    """The model version a training DAG run's one job produced."""
    [job] = [j for j in jobs(backend, model, "training") if j["idempotency_key"] == f"{train_dag}:{run_id}:start_training"]
    return job["model_version"]


def deployed_by(backend: RunningBackend, model: str, deploy_dag: str, run_id: str) -> set[str]:
    """The versions one deploy run asked the backend to deploy (`<dag_id>:<run_id>:deploy:<target>:<version>`)."""
    return {j["model_version"] for j in jobs(backend, model, "deployment")
            if j["idempotency_key"].startswith(f"{deploy_dag}:{run_id}:deploy:")}


def training_jobs_per_run(backend: RunningBackend, model: str, train_dag: str) -> dict[str, int]:
    """Training jobs by the DAG run their idempotency key names (`<dag_id>:<run_id>:start_training`)."""
    per_run: dict[str, int] = {}
    for job in jobs(backend, model, "training"):
        key = job.get("idempotency_key") or ""
        assert key.startswith(f"{train_dag}:") and key.endswith(":start_training"), job
        run_id = key[len(train_dag) + 1:-len(":start_training")]
        per_run[run_id] = per_run.get(run_id, 0) + 1
    return per_run


def deployment_targets(backend: RunningBackend, model: str, deploy_dag: str, run_id: str) -> list[str]:
    """Targets the backend was asked to deploy to for one deploy run, in the order it saw them."""
    found = [j for j in jobs(backend, model, "deployment")
             if (j.get("idempotency_key") or "").startswith(f"{deploy_dag}:{run_id}:deploy:")]
    return [j["target"] for j in sorted(found, key=lambda j: (j["created_at"], j["id"]))]


# --------------------------------------------------------------------------------------------


def run_fault_scenario(stack: Stack, backend: RunningBackend, say: Say, model: str = "churn_predictor",
                       targets: tuple[str, ...] = ("staging", "production")) -> dict[str, float]:
    """The scenario; returns seconds per fault (fault -> the work it hit finished) and in all."""
    train, deploy, stream = f"{model}__train", f"{model}__deploy", f"{model}__stream"
    started = time.monotonic()
    figures: dict[str, float] = {}
    restarted: list[str] = []
    dags_before = active_dag_ids(stack)
    stream_runs: list[str] = []
    backend.admin("PUT", "/settings", {"job_delay": JOB_DELAY})
    try:
        # 1. scheduler: SIGKILL while a streaming run's tasks are queued or running
        append_records(backend, model, APPEND)
        run = stack.trigger(stream)
        stream_runs.append(run)
        wait(stack, lambda: task_in(stack, stream, run, "process_partition", {"queued", "running"}), 120,
             f"{stream}/{run}: process_partition queued or running", interval=0.3)
        t0 = time.monotonic()
        stack.kill_process("scheduler")
        stack.start_process("scheduler")
        succeed(stack, stream, run)
        figures["scheduler"] = time.monotonic() - t0
        say(f"faults: scheduler killed + restarted; the streaming run it hit succeeded in {figures['scheduler']:.0f}s")

        # 2. PostgreSQL restart once every partition's task has started (none waits in the broker:
        # a task the worker receives during the outage stays queued for minutes, see docs). The
        # backend processes each batch at once but answers SLOW_ANSWER s later, so the tasks are
        # between the backend's work and their offset commit when the database goes away.
        append_records(backend, model, APPEND)
        backend.admin("POST", "/faults", {"path_prefix": f"/api/v1/models/{model}/stream-batches",
                                          "delay_after": SLOW_ANSWER, "count": len(PARTITIONS)})
        run = stack.trigger(stream)
        stream_runs.append(run)
        wait(stack, lambda: all_started(stack, stream, run, "process_partition", len(PARTITIONS)), 120,
             f"{stream}/{run}: every process_partition started", interval=0.3)
        t0 = time.monotonic()
        figures["postgresql-down"] = restart_postgresql()
        succeed(stack, stream, run, restarted=restarted, why="PostgreSQL restart")
        backend.admin("DELETE", "/faults")
        figures["postgresql"] = time.monotonic() - t0
        say(f"faults: PostgreSQL restarted ({figures['postgresql-down']:.1f}s); the streaming run succeeded in "
            f"{figures['postgresql']:.0f}s; processes started again: {restarted or 'none'}")

        # 3. Redis restart (shutdown nosave: the broker's queues are gone) once the streaming run
        # is planning its partitions: their tasks go through the new broker
        append_records(backend, model, APPEND)
        run = stack.trigger(stream)
        stream_runs.append(run)
        wait(stack, lambda: task_in(stack, stream, run, "plan_partitions", {"running", "success"}), 120,
             f"{stream}/{run}: plan_partitions running", interval=0.1, restarted=restarted, why="after PostgreSQL")
        t0, revived_before = time.monotonic(), len(restarted)
        figures["redis-down"] = restart_redis()
        succeed(stack, stream, run, restarted=restarted, why="Redis restart")
        figures["redis"] = time.monotonic() - t0
        say(f"faults: Redis restarted ({figures['redis-down']:.1f}s); the streaming run succeeded in "
            f"{figures['redis']:.0f}s; processes started again: {restarted[revived_before:] or 'none'}")

        # 4. the backend down for longer than one retry cycle: until the training task and every
        # partition's task used up their client retries and wait for an Airflow retry
        append_records(backend, model, APPEND)
        backend.stop()
        t0 = time.monotonic()
        down_train, run = stack.trigger(train), stack.trigger(stream)
        stream_runs.append(run)
        wait(stack, lambda: all_failed_once(stack, train, down_train, "start_training", 1)
             and all_failed_once(stack, stream, run, "process_partition", len(PARTITIONS)), 180,
             "start_training and every process_partition to fail on the unreachable backend")
        backend.start()
        figures["backend-down"] = time.monotonic() - t0
        t0 = time.monotonic()
        succeed(stack, train, down_train)
        succeed(stack, stream, run)
        figures["backend"] = time.monotonic() - t0
        tries = (max_try(stack, train, down_train, "start_training"), max_try(stack, stream, run, "process_partition"))
        assert min(tries) >= 2, f"a task did not need an Airflow retry: tries {tries}"
        say(f"faults: backend down {figures['backend-down']:.0f}s; training and streaming succeeded "
            f"{figures['backend']:.0f}s after it was back")

        # 5. triggerer: SIGKILL while wait_for_training is deferred (the trigger polls the job)
        backend.admin("PUT", "/settings", {"job_delay": LONG_JOB_DELAY})
        run = stack.trigger(train)
        wait(stack, lambda: task_in(stack, train, run, "wait_for_training", {"deferred"}), 120,
             f"{train}/{run}: wait_for_training deferred", interval=0.5)
        backend.admin("PUT", "/settings", {"job_delay": JOB_DELAY})  # the job has its delay; deployments quick
        t_trig = time.monotonic()
        stack.kill_process("triggerer")
        stack.start_process("triggerer")
        say("faults: triggerer killed during the deferred training wait, restarted")

        # 6. dag-processor: SIGKILL while a parse of the entry file runs (while the trigger waits);
        # the processor and the file are the ones that own the model's DAGs
        owner = stack.dag(train)
        entry, processor = Path(owner["fileloc"]), stack.processor_of(owner["bundle_name"])
        leader = stack.processes[processor].pid
        before = group_pids(leader)
        os.utime(entry)  # asks for a parse (file_parsing_sort_mode = modified_time)
        parser = wait(stack, lambda: group_pids(leader) - before, 60, f"{processor} to start a parse",
                      interval=0.05)
        killed_at = datetime.now(timezone.utc)
        t0 = time.monotonic()
        stack.kill_process(processor)
        stack.start_process(processor)
        wait(stack, lambda: parsed_after(stack, train, killed_at), 120, "the entry file to be parsed again")
        figures["dag-processor"] = time.monotonic() - t0
        say(f"faults: dag-processor killed mid-parse (pid(s) {sorted(parser)}), parsed again in "
            f"{figures['dag-processor']:.0f}s")

        # after the last fault: a record changed in the backend must reach the live snapshot
        t_sync = time.monotonic()
        updated_at = backend.admin("PATCH", f"/models/{model}", {})["model"]["updated_at"]
        sync_run = stack.trigger(SYNC_DAG)

        succeed(stack, train, run)
        figures["triggerer"] = time.monotonic() - t_trig
        say(f"faults: the training run whose wait lost its triggerer succeeded in {figures['triggerer']:.0f}s")

        check_sync(stack, sync_run, model, updated_at)
        figures["sync"] = time.monotonic() - t_sync
        say(f"faults: sync back to fresh {figures['sync']:.0f}s after the last fault")
        check_deployment(stack, backend, model, deploy, down_train, targets)
        check_newest_deployed(stack, backend, model, train, deploy, run, targets)
    finally:
        ensure_postgresql()
        ensure_redis()
        if not backend.is_running():
            backend.start()

    say("faults: " + check_counts(stack, backend, model, train, stream, stream_runs, dags_before))
    figures["faults total"] = time.monotonic() - started
    if restarted:
        say(f"faults: Airflow processes that exited and were started again: {restarted}")
    return {f"fault:{k}" if k != "faults total" else k: v for k, v in figures.items()}


def check_deployment(stack: Stack, backend: RunningBackend, model: str, deploy_dag: str, training_run: str,
                     targets: tuple[str, ...]) -> None:
    """The training run's Asset event started one deploy run; it deployed to each target once, in order."""
    found = wait(stack, lambda: deploy_run_for(stack, deploy_dag, training_run), 120,
                 f"a {deploy_dag} run triggered by {training_run}")
    succeed(stack, deploy_dag, found["dag_run_id"])
    order = deployment_targets(backend, model, deploy_dag, found["dag_run_id"])
    assert order == list(targets), (found["dag_run_id"], order)


def check_newest_deployed(stack: Stack, backend: RunningBackend, model: str, train_dag: str, deploy_dag: str,
                          training_run: str, targets: tuple[str, ...]) -> None:
    """The last training run's version was deployed to each target once, in order: by the run its
    event started, or, when that event came while a deployment was held up, by the run an earlier
    event started (apache/airflow#56050; tests/e2e/newest_version_scenario.py)."""
    version = version_of(backend, model, train_dag, training_run)

    def deploy_run() -> str | None:
        return next((r["dag_run_id"] for r in stack.runs(deploy_dag)
                     if version in deployed_by(backend, model, deploy_dag, r["dag_run_id"])), None)
    found = wait(stack, deploy_run, 120, f"a {deploy_dag} run deploying {version} of {training_run}")
    succeed(stack, deploy_dag, found)
    assert deployment_targets(backend, model, deploy_dag, found) == list(targets), found


def check_sync(stack: Stack, sync_run: str, model: str, updated_at: str) -> None:
    """The sync run started after the faults succeeded and stored the backend's change: fresh again."""
    from dag_factory.live import snapshot

    succeed(stack, SYNC_DAG, sync_run)
    raw = stack.api("GET", "variables/dag_factory_live_models")["value"]
    snap = snapshot.parse(raw)
    assert snap is not None, raw[:500]
    assert snap["models"][model]["updated_at"] == updated_at, (snap["models"][model], updated_at)
    assert not snapshot.expired(snap, datetime.now(timezone.utc)), snap.get("expires_at")


def check_counts(stack: Stack, backend: RunningBackend, model: str, train: str, stream: str,
                 stream_runs: list[str], dags_before: set[str]) -> str:
    """What the backend counted and what Airflow shows, after every fault; a summary line."""
    runs = {r["dag_run_id"]: r["state"] for r in stack.runs(train)}
    per_run = training_jobs_per_run(backend, model, train)
    assert set(per_run) <= set(runs), f"training jobs for unknown runs: {set(per_run) - set(runs)}"
    assert all(n == 1 for n in per_run.values()), f"more than one training job for a run: {per_run}"
    assert all(per_run.get(r) == 1 for r, s in runs.items() if s == "success"), (runs, per_run)
    stack.wait_for(lambda: all(r["state"] in ("success", "failed") for r in stack.runs(stream)), 120,
                   f"every {stream} run to finish")
    assert all(stack.run(stream, r)["state"] == "success" for r in stream_runs)
    counts = backend.admin("GET", f"/streams/{model}")
    for partition in PARTITIONS:
        c = counts[str(partition)]
        assert (c["processed"], c["duplicates"], c["missing"]) == (c["length"], 0, 0), counts
    dags_after = active_dag_ids(stack)
    assert dags_before <= dags_after, f"DAGs lost: {sorted(dags_before - dags_after)}"
    stale = [d for d in sorted(dags_before) if (stack.dag(d) or {"is_stale": True})["is_stale"]]
    assert not stale, f"stale after the faults: {stale}"
    errors = stack.api("GET", "importErrors")
    assert errors["total_entries"] == 0, errors
    return (f"{len(per_run)} training runs with 1 job each; records processed once per partition: "
            + ", ".join(f"p{p} {counts[str(p)]['processed']}/{counts[str(p)]['length']}" for p in PARTITIONS)
            + f" (duplicates 0, missing 0); {len(dags_before)} DAGs, none stale, no import errors")


