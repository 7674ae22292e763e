"""End to end on real Airflow processes: api-server, scheduler, dag-processor, triggerer
(+ celery worker), against the reference backend, checked through /api/v2 and the backend's
admin API. Profiles: celery (fresh PostgreSQL DB + Redis + CeleryExecutor) and sqlite
(LocalExecutor). Run: .venv/bin/python -m pytest tests/e2e -q -m e2e -p no:logging
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dag_factory.dev.backend.process import start_backend
from dag_factory.dev.stack import Stack, start_stack
from dag_factory.kinds import split_dag_id
from dag_factory.layout import entry_file_name, entry_file_text, in_shard
from tests.e2e import versioned_scenario
from tests.e2e.browser_scenario import run_browser_scenario
from tests.e2e.fault_scenario import run_fault_scenario
from tests.e2e.newest_version_scenario import run_newest_version_scenario

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "tests" / "fixtures" / "project" / "dags"  # the tests' own project (tests/support.py)
SPECS = ROOT / "tests" / "fixtures" / "project" / "specs"
MODEL = "churn_predictor"
TRAIN, DEPLOY, STREAM = f"{MODEL}__train", f"{MODEL}__deploy", f"{MODEL}__stream"
SYNC = "dag_factory_backend_sync"
STREAM_LENGTH = 300
RUN_TIMEOUT = 150
LIVE_EU = {"name": "churn_eu", "spec": MODEL, "status": "paused", "version": "v1",
           "updated_at": "2026-11-27T10:00:00Z", "streaming": {"partitions": [0], "batch_size": 50}}

pytestmark = pytest.mark.e2e


def _say(message: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _manual_only(specs: Path) -> None:
    """Training only when the test says so (the example schedules it at 03:00; with
    catchup=False the scheduler would start one run for the last interval at once)."""
    path = specs / f"{MODEL}.yaml"
    text = path.read_text()
    path.write_text(text.replace('schedule: "0 3 * * *"', "schedule: null"))


def _quick_training_retries(specs: Path) -> None:
    """Training retries after 10 s instead of 5 min, so the fault scenario's backend-down case fits a test."""
    path = specs / "_defaults.yaml"
    text = path.read_text()
    assert "  retries: 2\n  retry_delay: 5m\n" in text, "specs/_defaults.yaml changed: update this test"
    path.write_text(text.replace("  retries: 2\n  retry_delay: 5m\n", "  retries: 2\n  retry_delay: 10s\n", 1))


def _two_bundles(root: Path) -> tuple[list[dict], dict[str, list[str]], Path]:
    """The celery profile's fleet: split in two shards, each in its own local bundle, each
    bundle parsed by its own dag-processor (docs/scale.md). The sync DAG is in the first."""
    folders = [root / f"fleet_{i}" for i in (1, 2)]
    for i, folder in enumerate(folders, 1):
        folder.mkdir(parents=True)
        (folder / entry_file_name(i, 2)).write_text(entry_file_text(i, 2))
    shutil.copy(DAGS / "backend_sync.py", folders[0])
    bundles = [{"name": f.name, "classpath": versioned_scenario.LOCAL_BUNDLE, "kwargs": {"path": str(f)}} for f in folders]
    return bundles, {f"dag-processor-{i}": [f"fleet_{i}"] for i in (1, 2)}, folders[0]


def _owner(dag_id: str) -> str:
    """The bundle that must hold a DAG: the one with its spec's shard (churn_eu: churn_predictor)."""
    if dag_id == SYNC:
        return "fleet_1"
    model = split_dag_id(dag_id)[0]
    spec = MODEL if model == LIVE_EU["name"] else model
    return "fleet_1" if in_shard(spec, (1, 2)) else "fleet_2"


def _parsed_at(stack: Stack, dag_id: str) -> str:
    return stack.dag(dag_id)["last_parsed_time"]


def _spec_cache_reads(home: Path) -> list[int]:
    """Spec files each full parse read from the spec cache, from the dag-processor's file logs."""
    return [int(m.group(1)) for log in sorted((home / "logs" / "dag_processor").rglob("*.log"))
            for m in re.finditer(r"(\d+) of \d+ YAML files from the spec cache", log.read_text(errors="replace"))]


def _sync_summary(stack: Stack, run_id: str) -> dict:
    xcom = stack.api("GET", f"dags/{SYNC}/dagRuns/{run_id}/taskInstances/sync_live_models/xcomEntries/return_value")
    value = xcom["value"]
    return json.loads(value) if isinstance(value, str) else value


def _reparse_of_change(stack: Stack, model: str) -> list[str]:
    """What the sync run that saw `model` change asked to re-parse (the scheduled sync, every
    minute here, may be the one that sees it first)."""
    for run in stack.runs(SYNC):
        if run["state"] == "success":
            summary = _sync_summary(stack, run["dag_run_id"])
            if model in summary["changed"]:
                return summary["reparse"]["files"]
    raise AssertionError(f"no successful sync run saw {model} change")


def _check_two_processors(stack: Stack, backend, bundle_root: Path) -> None:
    """Every DAG comes from the bundle of its shard, every version of it too; a live change to
    one model re-parses only its bundle's file; with one processor killed, the other's DAGs
    stay fresh and the dead one's file waits for its own processor."""
    dags = stack.api("GET", "dags", params={"limit": 100})["dags"]
    assert {d["bundle_name"] for d in dags} == {"fleet_1", "fleet_2"}, dags
    for dag in dags:
        assert dag["bundle_name"] == _owner(dag["dag_id"]), dag
        versions = stack.api("GET", f"dags/{dag['dag_id']}/dagVersions")["dag_versions"]
        assert {v["bundle_name"] for v in versions} == {_owner(dag["dag_id"])}, versions
    # a live change to fraud_scorer (shard 2): the sync asks for model_dags_2_of_2.py only
    backend.admin("POST", "/models", [{"name": "fraud_scorer", "status": "paused", "version": "v1",
                                       "updated_at": "2026-11-27T11:00:00Z"}])
    _assert_run(stack, SYNC, stack.trigger(SYNC), 120)
    assert _reparse_of_change(stack, "fraud_scorer") == ["model_dags_2_of_2.py"]
    stack.wait_for(lambda: stack.dag("fraud_scorer__train")["timetable_summary"] in (None, "None"), 90,
                   "fraud_scorer__train to lose its schedule (paused by the backend)")
    # processor 2 down: processor 1 goes on parsing its own file, and never the other one
    stack.kill_process("dag-processor-2", stay_down=True)
    fraud_before, churn_before = _parsed_at(stack, "fraud_scorer__train"), _parsed_at(stack, TRAIN)
    for i in (1, 2):
        os.utime(bundle_root / f"fleet_{i}" / entry_file_name(i, 2))
    stack.wait_for(lambda: _parsed_at(stack, TRAIN) > churn_before, 90, "fleet_1 to be parsed with processor 2 down")
    time.sleep(5)  # a parse of fleet_2 would have happened by now, were it anyone else's
    assert _parsed_at(stack, "fraud_scorer__train") == fraud_before
    assert not any(d["is_stale"] for d in stack.api("GET", "dags", params={"limit": 100})["dags"])
    stack.start_process("dag-processor-2")
    stack.wait_for(lambda: _parsed_at(stack, "fraud_scorer__train") > fraud_before, 120,
                   "fleet_2 to be parsed once its processor is back")
    backend.admin("POST", "/models", [{"name": "fraud_scorer", "status": "active", "version": "v1",
                                       "updated_at": "2026-11-27T11:05:00Z"}])
    _assert_run(stack, SYNC, stack.trigger(SYNC), 120)
    for mine, other in ((1, 2), (2, 1)):
        log = stack.log_path(f"dag-processor-{mine}").read_text(errors="replace")
        assert entry_file_name(other, 2) not in log, f"dag-processor-{mine} parsed fleet_{other}'s file"


def _training_jobs(backend, run_id: str | None = None) -> list[dict]:
    jobs = backend.admin("GET", "/jobs", params={"model": MODEL, "kind": "training"})["jobs"]
    if run_id is None:
        return jobs
    return [j for j in jobs if (j.get("idempotency_key") or "").startswith(f"{TRAIN}:{run_id}:")]


def _assert_run(stack: Stack, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> None:
    state = stack.wait_run(dag_id, run_id, timeout)
    assert state == "success", f"{dag_id}/{run_id}: {state}: {stack.describe_run(dag_id, run_id)}"


def _deploy_run_for(stack: Stack, training_run_id: str):
    """The deploy run whose triggering Asset event came from our training run."""
    for run in stack.runs(DEPLOY):
        if run.get("run_type") != "asset_triggered":
            continue
        events = stack.api("GET", f"dags/{DEPLOY}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")["asset_events"]
        if any(e.get("source_run_id") == training_run_id for e in events):
            return run
    return None


@pytest.mark.parametrize("profile", ["celery", "sqlite"])
def test_stack_end_to_end(profile: str, tmp_path: Path) -> None:
    from dag_factory.dev.backend.seed import make_gates_pass, seed_for
    from dag_factory.specs import load_specs

    timings: dict[str, float] = {}
    started = time.monotonic()
    # the tests' project, copied: dags/ and specs/ side by side (sqlite: specs found beside the
    # entry file, as in a versioned bundle; celery: DAG_FACTORY_SPECS, one folder for two bundles)
    specs, dags = tmp_path / "project" / "specs", tmp_path / "project" / "dags"
    shutil.copytree(SPECS, specs)
    shutil.copytree(DAGS, dags)
    _manual_only(specs)
    _quick_training_retries(specs)
    home = Path(tempfile.mkdtemp(prefix=f"dag_factory_e2e_{profile}_"))
    layout: dict = {}
    if profile == "celery":  # issue 14: two dag-processors, each with its own bundle
        bundles, processors, dags = _two_bundles(tmp_path / "bundles")
        layout = {"bundles": bundles, "processors": processors}
    else:  # issue 14: a GitDagBundle with dags/ and specs/, parsed by its own processor on a timer
        remote, work, first = versioned_scenario.make_repository(tmp_path / "git", specs / "_defaults.yaml")
        layout = {"bundles": versioned_scenario.bundles(dags, remote),
                  "processors": {"dag-processor": ["dags-folder"], "dag-processor-git": [versioned_scenario.BUNDLE]},
                  "process_env": {"dag-processor-git": {"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10"}}}
    loaded = [s for s in load_specs([specs], check_imports=False).specs if not s.template]
    if profile == "sqlite":
        loaded += load_specs([work / "specs"], check_imports=False).specs

    with start_backend(job_delay=2.0, token=secrets.token_hex(16), log_path=str(home / "backend.log")) as backend:
        backend.admin("POST", "/models", seed_for(loaded))
        for spec in loaded:
            make_gates_pass(spec, backend)
        for partition in (0, 1, 2, 3):
            backend.admin("PUT", f"/streams/{MODEL}/{partition}", {"length": STREAM_LENGTH})

        t0 = time.monotonic()
        # Parse on change, not on a timer: the dag-processor would re-parse each file only every
        # 10 minutes; the sync asks for a re-parse when live data or a spec changed (celery: by
        # touching the entry file; sqlite: through the REST API's parseDagFile).
        on_change = {"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                     "AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE": "modified_time",
                     "DAG_FACTORY_REPARSE": "touch" if profile == "celery" else "api"}
        stack = start_stack(profile, home, dags_folder=dags, specs_dir=specs if profile == "celery" else None,
                            backend_url=backend.url, backend_token=backend.token, extra_env=on_change, **layout)
        with stack:
            timings["start"] = time.monotonic() - t0
            _say(f"{profile}: stack up in {timings['start']:.0f}s, home {home}")
            try:
                # 1. the sync DAG runs; the model DAGs appear; no import errors
                t0 = time.monotonic()
                for dag_id in (SYNC, TRAIN, DEPLOY, STREAM, "demand_forecast__train", "fraud_scorer__train"):
                    stack.wait_dag(dag_id, 120)  # from the specs, at the first parse
                backend.admin("POST", "/models", [LIVE_EU])  # a new live model: its DAGs follow the sync
                sync_run = stack.trigger(SYNC)
                stack.wait_dag(f"{LIVE_EU['name']}__train", 90)
                _assert_run(stack, SYNC, sync_run, 120)
                errors = stack.api("GET", "importErrors")
                assert errors["total_entries"] == 0, errors
                dag_ids = {d["dag_id"] for d in stack.api("GET", "dags", params={"limit": 100})["dags"]}
                assert {TRAIN, DEPLOY, STREAM, "churn_eu__train", "churn_eu__stream"} <= dag_ids, dag_ids
                assert not any(d.startswith("dag_factory_invalid__") for d in dag_ids), dag_ids
                # the dag-processor's parse children keep the spec cache (one file per entry file);
                # task-run parses never write it, so every file comes from a processor's parse
                cached = sorted((home / "spec-cache").glob("*.json"))
                assert cached and all(json.loads(f.read_text())["entries"] for f in cached), cached
                # ... and a later parse (the sync's re-parse) read the unchanged specs from it (its log)
                reads = _spec_cache_reads(home)
                assert reads and max(reads) > 0, reads
                timings["sync+dags"] = time.monotonic() - t0
                _say(f"{profile}: sync ok, {len(dag_ids)} DAGs in {timings['sync+dags']:.0f}s")

                if profile == "celery":
                    t0 = time.monotonic()
                    _check_two_processors(stack, backend, dags.parent)
                    timings["two-processors"] = time.monotonic() - t0
                    _say(f"{profile}: two dag-processors, each its own bundle: ok in {timings['two-processors']:.0f}s")
                else:
                    timings.update(versioned_scenario.run_versioned_scenario(stack, backend, work, first, _say))

                # 2. training through the API -> Asset -> deploy (staging, then production)
                t0 = time.monotonic()
                train_run = stack.trigger(TRAIN)
                # 3. (in parallel) a streaming run
                stream_run = stack.trigger(STREAM)
                _assert_run(stack, TRAIN, train_run)
                jobs = _training_jobs(backend, train_run)
                assert len(jobs) == 1, jobs
                version = jobs[0].get("model_version")
                deploy = stack.wait_for(lambda: _deploy_run_for(stack, train_run), 90,
                                        f"a {DEPLOY} run triggered by {train_run}'s Asset event")
                _assert_run(stack, DEPLOY, deploy["dag_run_id"])
                deployments = [j for j in backend.admin("GET", "/jobs", params={"model": MODEL, "kind": "deployment"})["jobs"]
                               if version is None or j.get("model_version") == version]
                assert [j["target"] for j in sorted(deployments, key=lambda j: (j["created_at"], j["id"]))] == \
                    ["staging", "production"], deployments
                timings["train+deploy"] = time.monotonic() - t0
                _say(f"{profile}: train+deploy ok ({version}) in {timings['train+deploy']:.0f}s")

                t0 = time.monotonic()
                _assert_run(stack, STREAM, stream_run)
                stack.wait_for(lambda: all(r["state"] in ("success", "failed") for r in stack.runs(STREAM)), 90,
                               f"every {STREAM} run to finish")
                counts = backend.admin("GET", f"/streams/{MODEL}")
                for partition in ("0", "1", "2", "3"):
                    c = counts[partition]
                    assert (c["processed"], c["duplicates"], c["missing"]) == (STREAM_LENGTH, 0, 0), counts
                timings["stream"] = time.monotonic() - t0
                _say(f"{profile}: stream ok in {timings['stream']:.0f}s")

                # 4. (sqlite) two trainings publish while a deployment runs: the newer version is
                # deployed (tests/e2e/newest_version_scenario.py); celery: the fault scenario, below
                if profile == "sqlite":
                    timings.update(run_newest_version_scenario(stack, backend, _say))

                # 5. kill the celery worker during the training wait, restart it
                if profile == "celery":
                    t0 = time.monotonic()
                    backend.admin("PUT", "/settings", {"job_delay": 20.0})
                    run_id = stack.trigger(TRAIN)

                    def waiting() -> bool:
                        states = {t["task_id"]: t["state"] for t in stack.task_instances(TRAIN, run_id)}
                        return states.get("wait_for_training") == "deferred"
                    stack.wait_for(waiting, 90, "wait_for_training to run")
                    stack.kill_process("celery-worker")
                    _say(f"{profile}: celery worker killed during the training wait")
                    time.sleep(3)
                    stack.start_process("celery-worker")
                    backend.admin("PUT", "/settings", {"job_delay": 2.0})
                    _assert_run(stack, TRAIN, run_id, 180)
                    jobs = _training_jobs(backend, run_id)
                    assert len(jobs) == 1, jobs
                    timings["worker-kill"] = time.monotonic() - t0
                    _say(f"{profile}: worker kill ok in {timings['worker-kill']:.0f}s")
                    timings.update(run_fault_scenario(stack, backend, _say))  # issue 11: tests/e2e/fault_scenario.py

                # 6. (sqlite) a spec made invalid while the stack runs, seen in the browser; the
                # others keep running; fixing it (one profile: the other's minutes go to the faults)
                if profile == "sqlite":
                    t0 = time.monotonic()
                    bad = specs / "demand_forecast.yaml"
                    good_text = bad.read_text()
                    bad.write_text(re.sub(r"\n  schedule:", "\n  schedual:", good_text, count=1))
                    invalid = "dag_factory_invalid__demand_forecast"
                    stack.wait_dag(invalid, 150)  # the next sync (every minute) sees the edit
                    timings.update(run_browser_scenario(stack, profile, _say))  # issue 12: tests/e2e/browser_scenario.py
                    # (churn_predictor: its training is manual-only here, so no scheduled run holds its
                    # one active-run slot; fraud_scorer's scheduled run may sit in a 5-minute retry)
                    other = stack.trigger(TRAIN)
                    _assert_run(stack, TRAIN, other)
                    assert len(_training_jobs(backend, other)) == 1
                    bad.write_text(good_text)
                    stack.wait_for(lambda: (stack.dag(invalid) or {"is_stale": True})["is_stale"], 150,
                                   f"{invalid} to go away after the fix")
                    stack.wait_for(lambda: not (stack.dag("demand_forecast__train") or {"is_stale": True})["is_stale"],
                                   150, "demand_forecast__train to be back")
                    timings["invalid-spec"] = time.monotonic() - t0
                    _say(f"{profile}: invalid spec ok in {timings['invalid-spec']:.0f}s")
            except BaseException:
                _say(f"{profile}: FAILED; logs in {home}\n{stack.logs()}")
                raise
    timings["total"] = time.monotonic() - started
    _say(f"{profile}: timings " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    shutil.rmtree(home, ignore_errors=True)
