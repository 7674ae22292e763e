"""`dag-factory demo`: one model's DAGs, run for real against the reference backend.

It shows the whole job on a fresh machine in one command: validate the specs, make a
throwaway Airflow home, start the reference backend, run `<model>__train`, `__deploy` (with
the version training produced) and `__stream` twice with `dag.test()`, then report what
Airflow and the backend each saw.

Two processes, so that nothing the caller imported or configured leaks into the run:
the parent (the CLI) validates, picks the model, creates the Airflow home and removes it
afterwards, whatever happens to the child; the child (`python -m dag_factory.dev.demo`) starts
with an environment that points Airflow at that home before Airflow is first imported,
sends everything Airflow writes to a log file there, and prints only the report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence, TextIO

from dag_factory.layout import ENTRY_STEM, specs_dir_for
from dag_factory.specs.model import ModelSpec

if TYPE_CHECKING:
    from dag_factory.dev.backend.process import RunningBackend

LOG_NAME = "demo.log"
JOB_DELAY = 2.0  # seconds the reference backend takes per training run or deployment
NEW_RECORDS = 250  # appended to every partition between the two stream runs
RETRY_DELAY_CAP = 2.0  # seconds; a demo reports a failure in seconds, not after a 5-minute retry delay
CHILD_GRACE = 15.0  # seconds the child gets to stop its backend and exit after Ctrl-C
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# --------------------------------------------------------------------------------------------
# Parent: validate, pick the model, own the Airflow home
# --------------------------------------------------------------------------------------------

def run_demo(model: str | None = None, home: str | None = None, keep: bool = False,
             out: TextIO | None = None, project: Path | None = None) -> int:
    """Run the demo for `model` (default: the first runnable spec) of the project folder
    (dags/ and specs/; default: the current folder); 0 when every DAG run succeeded, 1 if one
    did not, 2 on usage errors. A temporary home is removed at the end unless `keep`; a
    `home` given is kept."""
    out = out or sys.stdout
    project = (project or Path.cwd()).resolve()
    if not (project / "dags" / f"{ENTRY_STEM}.py").is_file() or not (project / "specs").is_dir():
        print(f"dag-factory demo: {project} has no dags/{ENTRY_STEM}.py and specs/ (run `dag-factory init` "
              "or pass --project)", file=sys.stderr)
        return EXIT_USAGE
    if home and Path(home).exists() and not Path(home).is_dir():
        print(f"dag-factory demo: --home {home} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    home_path = Path(home).resolve() if home else Path(tempfile.mkdtemp(prefix="dag_factory_demo_"))
    temporary = home is None
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    saved_env = dict(os.environ)
    try:
        home_path.mkdir(parents=True, exist_ok=True)
        env = airflow_env(home_path, project)
        os.environ.update(env)  # validation may import custom steps, and with them Airflow
        code, model = _check_specs(model, out, project)
        if code != EXIT_OK:
            return code
        print(f"Airflow home: {home_path} ({'temporary' if temporary else 'kept'})", file=out, flush=True)
        return _run_child(model, home_path, env, project)
    except KeyboardInterrupt:
        print("dag-factory demo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        os.environ.clear()
        os.environ.update(saved_env)
        _finish_home(home_path, remove=temporary and not keep, out=out)


def airflow_env(home: Path, project: Path) -> dict[str, str]:
    """The child's whole environment: the caller's, minus every Airflow setting it had (the demo
    must not touch a real metadata DB or secrets backend), plus a private SQLite home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "DAG_FACTORY_SPECS"}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "DAG_FACTORY_SPECS": str(project / "specs"),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(
            [str(project), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _raise_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM takes the same cleanup path as Ctrl-C."""
    raise KeyboardInterrupt


def _check_specs(model: str | None, out: TextIO, project: Path) -> tuple[int, str]:
    """Validate like `dag-factory validate specs/`; (2, ...) when `model` is not a runnable spec.
    Returns the model to run (the first runnable spec when none was named)."""
    from dag_factory.specs import format_errors, load_specs

    result = load_specs([project / "specs"]).relative_to(project)
    if not result.ok:
        print(format_errors(result.errors), file=sys.stderr)
        print(f"dag-factory demo: {len(result.errors)} error(s) in specs/; fix them first "
              "(dag-factory validate specs/)", file=sys.stderr)
        return EXIT_FAILED, ""
    runnable = sorted(s.name for s in result.specs if not s.template)
    model = model or (runnable[0] if runnable else "")
    if model not in runnable:
        print(f"dag-factory demo: no model {model!r} in {project / 'specs'}; choose one of: "
              f"{', '.join(runnable) or '(none)'}", file=sys.stderr)
        return EXIT_USAGE, model
    spec = result.by_name()[model]
    print(f"specs/: {len(result.files)} spec file(s), all valid. Demo of {model}: "
          + ", ".join(spec.dag_id(kind) for kind in spec.kinds), file=out, flush=True)
    return EXIT_OK, model


def _run_child(model: str, home: Path, env: dict[str, str], project: Path) -> int:
    """Run the child and wait; on Ctrl-C give it time to stop its backend, then make sure."""
    command = [sys.executable, "-m", "dag_factory.dev.demo", "--model", model, "--home", str(home)]
    proc = subprocess.Popen(command, env=env, cwd=str(project), stdin=subprocess.DEVNULL)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop_child(proc)
        raise


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    """Ctrl-C reached the child too, SIGTERM to the parent did not: SIGTERM it either way (it
    stops once), then SIGKILL as a last resort."""
    for stop in (proc.terminate, proc.kill):
        if proc.poll() is None:
            stop()
        try:
            proc.wait(timeout=CHILD_GRACE)
            return
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
            continue


def _finish_home(home: Path, *, remove: bool, out: TextIO) -> None:
    if remove:
        shutil.rmtree(home, ignore_errors=True)
        print(f"Airflow home {home} removed (--keep keeps it, with its log {LOG_NAME})", file=out, flush=True)
    elif home.is_dir():
        print(f"Airflow home kept: {home}\nAirflow log: {home / LOG_NAME}", file=out, flush=True)


# --------------------------------------------------------------------------------------------
# Child: run the DAGs
# --------------------------------------------------------------------------------------------

@dataclass
class TaskLine:
    task_id: str
    map_index: int
    state: str
    label: str = ""  # the rendered map index, e.g. "partition 2"
    detail: str = ""  # what the task returned, for the tasks where that tells the story
    tries: int = 1


@dataclass
class RunResult:
    dag_id: str
    title: str
    state: str
    seconds: float
    run_id: str = ""
    tasks: list[TaskLine] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "success"


class Reporter:
    """Writes the report to the terminal the demo started on, whatever Airflow does with fd 1/2."""

    def __init__(self, stream: TextIO, log_path: Path) -> None:
        self.stream = stream
        self.log_path = log_path
        self.started = time.monotonic()
        self.child_pids: set[int] = set()  # processes to stop if the demo is interrupted

    def abort(self, signum: int, frame: Any) -> None:
        """Ctrl-C or SIGTERM. The child cannot unwind: inside a task, dag.test() turns the
        KeyboardInterrupt into a task failure and carries on with retries and the next tasks.
        So stop the backend (and `airflow db migrate`) now and exit; the parent removes the home."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for pid in self.child_pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        try:
            self.say("interrupted: backend stopped")
        finally:
            os._exit(EXIT_INTERRUPTED)

    def log_position(self) -> int:
        """Where the Airflow log ends now, to read back what one DAG run logged."""
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def say(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def step(self, text: str) -> None:
        self.say(f"[{time.monotonic() - self.started:5.1f}s] {text}")


def child_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m dag_factory.dev.demo`: run from a prepared environment only."""
    parser = argparse.ArgumentParser(prog="python -m dag_factory.dev.demo", description=child_main.__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--home", required=True)
    args = parser.parse_args(argv)
    if Path(os.environ.get("AIRFLOW_HOME", "")).resolve() != Path(args.home).resolve():
        parser.error("AIRFLOW_HOME must be --home: start the demo with `dag-factory demo`")
    log_path = Path(args.home) / LOG_NAME
    reporter = Reporter(_divert_output(log_path), log_path)
    signal.signal(signal.SIGINT, reporter.abort)
    signal.signal(signal.SIGTERM, reporter.abort)
    try:
        return run_model(args.model, Path(args.home), reporter)
    except Exception as exc:  # noqa: BLE001 - report it on the terminal, the traceback in the log
        traceback.print_exc()
        reporter.say(f"demo failed: {type(exc).__name__}: {exc}")
        return EXIT_FAILED


def _divert_output(log_path: Path) -> TextIO:
    """Point fd 1 and 2 at the log file (Airflow's structlog output, warnings, subprocesses)
    and return a stream on the original stdout for the report."""
    sys.stdout.flush()
    sys.stderr.flush()
    report = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    return report


def run_model(model: str, home: Path, reporter: Reporter) -> int:
    """Migrate the DB, start the backend, run the model's DAGs, report; 0 if all runs succeeded."""
    from dag_factory.dev.backend.process import start_backend
    from dag_factory.dev.backend.seed import make_gates_pass, seed_for
    from dag_factory.specs import load_specs

    specs = [s for s in load_specs([specs_dir_for(None)], check_imports=False).specs if not s.template]
    spec = next(s for s in specs if s.name == model)
    reporter.step("airflow db migrate ...")
    _migrate(reporter)
    for stale in home.glob("backend.sqlite*"):  # a kept --home: start the backend afresh, like Airflow's offsets
        stale.unlink()
    # db and log inside the home: nothing of the backend outlives the home
    with start_backend(job_delay=JOB_DELAY, token=secrets.token_hex(16), db_path=str(home / "backend.sqlite"),
                       log_path=str(home / "backend.log")) as backend:
        if backend.pid:
            reporter.child_pids.add(backend.pid)
        backend.admin("POST", "/models", seed_for(specs))
        os.environ["AIRFLOW_CONN_MODEL_BACKEND"] = f"http://:{backend.token}@127.0.0.1:{backend.port}"
        reporter.step(f"reference backend on {backend.url} (job delay {JOB_DELAY:g}s), "
                      f"{len(specs)} live model(s) seeded")
        for line in make_gates_pass(spec, backend):
            reporter.say(f"  backend: reports passing metrics for the spec's gates ({line})")
        runs, offsets = _run_dags(spec, backend, reporter)
        _report_backend(model, backend, reporter)
    _report_offsets(model, offsets, reporter)
    failed = [r for r in runs if not r.ok]
    reporter.say(f"\nResult: {len(runs) - len(failed)} of {len(runs)} DAG run(s) succeeded "
                 f"in {time.monotonic() - reporter.started:.0f}s"
                 + (f"; not successful: {', '.join(r.title for r in failed)}" if failed else ""))
    return EXIT_OK if runs and not failed else EXIT_FAILED


def _migrate(reporter: Reporter) -> None:
    """`airflow db migrate` into the log (fd 1/2 are the log now)."""
    from dag_factory.dev.stack import airflow_command

    proc = subprocess.Popen([*airflow_command(), "db", "migrate"], stdin=subprocess.DEVNULL)
    reporter.child_pids.add(proc.pid)
    if proc.wait() != 0:
        raise RuntimeError(f"airflow db migrate exited with {proc.returncode} (see {reporter.log_path})")
    reporter.child_pids.discard(proc.pid)


def _run_dags(spec: ModelSpec, backend: RunningBackend,
              reporter: Reporter) -> tuple[list[RunResult], dict[int, list[int]]]:
    """sync -> train -> deploy(version) -> stream, stream; returns the runs and offsets after each stream."""
    from dag_factory.builders.register import register_dags

    runs: list[RunResult] = [_sync(reporter)]
    dags = register_dags({"__file__": str(Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{ENTRY_STEM}.py")})
    _shorten_retry_delays(dags.values())
    version: str | None = None
    if spec.training is not None:
        train = _run(dags, spec.dag_id("training"), "train", reporter)
        runs.append(train)
        version = _trained_version(train, backend)
        for name, extra in asset_events(train.dag_id, train.run_id):
            reporter.say(f"  Asset event {name}: version {extra.get('version')}, "
                         f"metrics {_metrics(extra.get('metrics') or {})}")
    else:
        version = backend.client().get_model(spec.name).get("version")
    if spec.deployment is not None:
        runs.append(_deploy(dags, spec, version, reporter))
    offsets: dict[int, list[int]] = {}
    if spec.streaming is not None:
        runs += _stream_twice(dags, spec, backend, reporter, offsets)
    return runs, offsets


def _sync(reporter: Reporter) -> RunResult:
    """Run the backend sync DAG first, as Airflow would, then hand its snapshot to this
    (unsupervised) process the way the dag-processor sees it: the SDK reads Variables from
    the metadata DB only in supervised processes, so AIRFLOW_VAR_* stands in here."""
    from dag_factory.builders.sync_dag import build_sync_dag
    from dag_factory.live.store import db_read
    from dag_factory.settings import LIVE_VARIABLE, SYNC_DAG_ID

    dags_dir = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    sync_dag = build_sync_dag(dags_dir=str(dags_dir))
    sync_dag.fileloc = str(dags_dir / "backend_sync.py")
    _shorten_retry_delays([sync_dag])
    result = _run({SYNC_DAG_ID: sync_dag}, SYNC_DAG_ID, "sync", reporter)
    if live := db_read():
        os.environ[f"AIRFLOW_VAR_{LIVE_VARIABLE.upper()}"] = live
    return result


def _shorten_retry_delays(dags: Iterable[Any]) -> None:
    """dag.test() sleeps through retry delays; a demo should show a failure in seconds."""
    from datetime import timedelta

    cap = timedelta(seconds=RETRY_DELAY_CAP)
    for dag in dags:
        for task in dag.tasks:
            if task.retry_delay > cap:
                task.retry_delay = cap


def _deploy(dags: dict[str, Any], spec: ModelSpec, version: str | None, reporter: Reporter) -> RunResult:
    dag_id = spec.dag_id("deployment")
    if not version:
        reporter.say(f"\n{dag_id}: not run, training produced no version to deploy")
        return RunResult(dag_id, "deploy", "not run", 0.0)
    return _run(dags, dag_id, "deploy", reporter, conf={"version": version})


def _stream_twice(dags: dict[str, Any], spec: ModelSpec, backend: RunningBackend, reporter: Reporter,
                  offsets: dict[int, list[int]]) -> list[RunResult]:
    """Two micro-batches with new records in between: the offsets must move, never repeat."""
    dag_id, partitions = spec.dag_id("streaming"), list(spec.streaming.partitions)
    _forget_offsets(spec.name, partitions)  # a kept --home may hold offsets of an earlier backend
    runs = []
    for number in (1, 2):
        if number == 2:
            for p in partitions:
                backend.admin("POST", f"/streams/{spec.name}/{p}/append", {"count": NEW_RECORDS})
            reporter.say(f"\n  {NEW_RECORDS} new record(s) arrive on each partition")
        runs.append(_run(dags, dag_id, f"stream #{number}", reporter))
        for p, offset in committed_offsets(spec.name, partitions).items():
            offsets.setdefault(p, []).append(offset)
    return runs


def _run(dags: dict[str, Any], dag_id: str, title: str, reporter: Reporter,
         conf: dict[str, Any] | None = None) -> RunResult:
    """One dag.test() run, reported as it ends."""
    reporter.say("")
    reporter.step(f"running {dag_id}" + (f" with conf {json.dumps(conf)}" if conf else "") + " ...")
    started, log_start = time.monotonic(), reporter.log_position()
    try:
        dag_run = dags[dag_id].test(run_conf=conf)
    except Exception as exc:  # noqa: BLE001 - the run could not even start; say so, go on
        traceback.print_exc()
        result = RunResult(dag_id, title, "error", time.monotonic() - started, note=f"{type(exc).__name__}: {exc}")
    else:
        state = str(getattr(dag_run.state, "value", dag_run.state))
        reasons = failure_reasons(_read_log(reporter, log_start))
        result = RunResult(dag_id, title, state, time.monotonic() - started, dag_run.run_id,
                           _task_lines(dag_id, dag_run, reasons))
    _print_run(result, reporter)
    return result


def _read_log(reporter: Reporter, start: int) -> str:
    end = reporter.log_position()
    try:
        with open(reporter.log_path, "rb") as handle:
            handle.seek(start)
            return handle.read(max(0, end - start)).decode(errors="replace")
    except OSError:
        return ""


_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Exit|Timeout)\w*): (.+)$")


def failure_reasons(log_text: str) -> dict[tuple[str, int], str]:
    """Last exception message logged while each task ran, by (task_id, map_index). dag.test()
    keeps no error on the task instance; the traceback in the log is the only record."""
    reasons: dict[tuple[str, int], str] = {}
    current: tuple[str, int] | None = None
    for line in log_text.splitlines():
        if started := _TASK_START.search(line):
            current = (started.group(1), int(started.group(2)))
        elif current and (error := _EXCEPTION.match(line)):
            reasons[current] = f"{error.group(1)}: {error.group(2)}"[:200]
    return reasons


def _task_lines(dag_id: str, dag_run: Any, reasons: dict[tuple[str, int], str]) -> list[TaskLine]:
    """Task states in the order they ran, with what the interesting tasks returned."""
    tis = dag_run.get_task_instances()
    far = dag_run.end_date or dag_run.start_date
    first_start: dict[str, Any] = {}
    for ti in tis:  # a mapped task's instances stay together, in map index order
        start = ti.start_date or far
        first_start[ti.task_id] = min(first_start.get(ti.task_id, start), start)
    tis = sorted(tis, key=lambda ti: (first_start[ti.task_id], ti.task_id, ti.map_index))
    values = xcom_values(dag_id, dag_run.run_id)
    lines = []
    for ti in tis:
        label = (ti.rendered_map_index or "") if ti.map_index >= 0 else ""
        state = str(getattr(ti.state, "value", ti.state))
        detail = reasons.get((ti.task_id, ti.map_index), "") if state in ("failed", "up_for_retry") \
            else _describe(ti.task_id, values.get((ti.task_id, ti.map_index)))
        lines.append(TaskLine(ti.task_id, ti.map_index, state, label, detail, ti.try_number or 1))
    return lines


def _describe(task_id: str, value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    if task_id == "process_partition" or "next_offset" in value:
        return f"{value.get('records')} record(s), offset {value.get('after_offset')} -> {value.get('next_offset')}"
    if task_id.endswith(".rollback"):
        return f"deployment {value.get('id')} to {value.get('target')}: {value.get('status')}"
    if task_id == "publish":
        return f"version {value.get('version')}"
    if task_id.endswith(".smoke_test") and value.get("metrics"):
        return _metrics(value["metrics"])
    if task_id == "check_gates" and value.get("metrics"):
        return f"{value.get('version')}: {_metrics(value['metrics'])}"
    return ""


def _print_run(run: RunResult, reporter: Reporter) -> None:
    reporter.say(f"DAG run {run.dag_id} ({run.title}): {run.state} in {run.seconds:.1f}s"
                 + (f"  [{run.run_id}]" if run.run_id else ""))
    if run.note:
        reporter.say(f"  {run.note}")
    width = max((len(_task_name(t)) for t in run.tasks), default=0)
    for task in run.tasks:
        tries = f" (try {task.tries})" if task.tries > 1 else ""
        detail = f"  {task.detail}" if task.detail else ""
        reporter.say(f"    {_task_name(task):<{width}}  {task.state}{tries}{detail}")


def _task_name(task: TaskLine) -> str:
    if task.map_index < 0:
        return task.task_id
    return f"{task.task_id}[{task.map_index}]" + (f" ({task.label})" if task.label else "")


def xcom_values(dag_id: str, run_id: str) -> dict[tuple[str, int], Any]:
    """Every task's return value in one run, read from the metadata DB (outside any task, the
    SDK's XCom API has no supervisor to ask)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")).all()
        return {(row.task_id, row.map_index): XComModel.deserialize_value(row) for row in rows}


def asset_events(dag_id: str, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(asset name, extra) of the events one run emitted: what a scheduled deployment would get."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = (select(AssetModel.name, AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
             .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)
             .order_by(AssetEvent.id))
    with create_session() as session:
        return [(name, dict(extra or {})) for name, extra in session.execute(query)]


def _trained_version(train: RunResult, backend: RunningBackend) -> str | None:
    """The version the train run published (its `publish` XCom), else the backend's record of
    the training job this run started."""
    if not train.ok:
        return None
    value = xcom_values(train.dag_id, train.run_id).get(("publish", -1))
    if isinstance(value, dict) and value.get("version"):
        return str(value["version"])
    prefix = f"{train.dag_id}:{train.run_id}:"
    jobs = backend.admin("GET", "/jobs", params={"kind": "training"})["jobs"]
    return next((j.get("model_version") for j in reversed(jobs)
                 if str(j.get("idempotency_key", "")).startswith(prefix)), None)


# --------------------------------------------------------------------------------------------
# Offsets and the backend's view
# --------------------------------------------------------------------------------------------

def committed_offsets(model: str, partitions: Sequence[int]) -> dict[int, int]:
    """Committed offset per partition (-1: none), from the Variables in the metadata DB: outside
    a task the SDK's Variable does not read the DB, `airflow.models.variable.Variable` does."""
    from airflow.models.variable import Variable

    from dag_factory.runtime.offsets import parse_state, variable_key

    return {p: parse_state(Variable.get(variable_key(model, p), default_var=None))["offset"] for p in partitions}


def _forget_offsets(model: str, partitions: Sequence[int]) -> None:
    from airflow.models.variable import Variable

    from dag_factory.runtime.offsets import variable_key

    for p in partitions:
        Variable.delete(variable_key(model, p))


def _report_backend(model: str, backend: RunningBackend, reporter: Reporter) -> None:
    """What the backend recorded: jobs with versions and metrics, deployments in order, and
    per-partition stream counts (its proof that no record was lost or processed twice)."""
    jobs = backend.admin("GET", "/jobs", params={"model": model})["jobs"]
    reporter.say("\nBackend's view")
    for job in (j for j in jobs if j.get("kind") == "training"):
        reporter.say(f"  training job {job['id']}: version {job.get('model_version')} {job.get('status')}, "
                     f"metrics {_metrics(job.get('metrics') or {})}")
    deployments = [j for j in jobs if j.get("kind") == "deployment"]
    for number, job in enumerate(deployments, 1):
        reporter.say(f"  deployment {number}: {job.get('target')} <- {job.get('model_version')} "
                     f"{job.get('status')} ({job['id']})")
    if not jobs:
        reporter.say("  no training runs or deployments")
    for part, stats in sorted(backend.admin("GET", f"/streams/{model}").items(), key=lambda kv: int(kv[0])):
        reporter.say(f"  stream partition {part}: processed {stats['processed']}, duplicates {stats['duplicates']}, "
                     f"missing {stats['missing']} (log length {stats['length']})")


def _report_offsets(model: str, offsets: dict[int, list[int]], reporter: Reporter) -> None:
    if not offsets:
        return
    from dag_factory.runtime.offsets import VARIABLE_PREFIX

    reporter.say(f"\nCommitted offsets (Airflow Variables {VARIABLE_PREFIX}.{model}.<partition>)")
    for p, seen in sorted(offsets.items()):
        moves = " -> ".join(f"{offset} after stream #{n}" for n, offset in enumerate(seen, 1))
        reporter.say(f"  partition {p}: {moves}")


def _metrics(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in sorted(metrics.items()))


if __name__ == "__main__":
    sys.exit(child_main())
