"""Specs versioned with the DAGs (issue 14): a `GitDagBundle` holding `dags/` and `specs/`, on
the sqlite stack that test_stack_e2e.py already starts (CI has one stack start's time).

The bundle's remote is a local bare repository (a file path: nothing leaves the machine). A
training run starts on the spec's first commit; while its wait is deferred, a second commit
renames one of its tasks and changes what that task says. The run must finish on its own
version: the old task id, the old text, the first commit as its bundle version. A run started
afterwards gets the new task. What still comes from the unversioned live-data Variable is in
docs/deploy.md.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from dag_factory.dev.backend.process import RunningBackend
from dag_factory.dev.stack import Stack
from dag_factory.layout import entry_file_text

BUNDLE = "versioned"
MODEL = "versioned_scorer"
TRAIN = f"{MODEL}__train"
GIT_BUNDLE = "airflow.providers.git.bundles.git.GitDagBundle"
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
SPEC = """\
model: versioned_scorer
owner: ml-platform
description: A model whose spec is versioned in git with its DAGs.
tags: [versioned]
training:
  schedule: null
  dataset_uri: s3://ml-data/versioned
  gates: ["auc >= 0.9"]
  steps:
    - id: {step}
      operator: airflow.providers.standard.operators.bash.BashOperator
      kwargs:
        bash_command: "echo built from spec {text}"
      after: publish
deployment:
  targets: [staging]
streaming:
  every: 1h
  partitions: [0]
"""
Say = Callable[[str], None]


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60,
                          env={"GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@127.0.0.1", "GIT_COMMITTER_NAME": "e2e",
                               "GIT_COMMITTER_EMAIL": "e2e@127.0.0.1", "HOME": str(cwd), "PATH": "/usr/bin:/bin"})
    return done.stdout.strip()


def _commit(work: Path, step: str, text: str, message: str) -> str:
    (work / "specs" / f"{MODEL}.yaml").write_text(SPEC.format(step=step, text=text))
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", message)
    _git(work, "push", "-q", "origin", "HEAD:main")
    return _git(work, "rev-parse", "HEAD")


def make_repository(root: Path, defaults: Path) -> tuple[Path, Path, str]:
    """(bare remote, working clone, first commit): a project with dags/ and specs/ in git."""
    remote, work = root / "remote.git", root / "work"
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    _git(root, "clone", "-q", str(remote), str(work))
    (work / "dags").mkdir()
    (work / "specs").mkdir()
    (work / "dags" / "model_dags.py").write_text(entry_file_text(1, 1))
    (work / "specs" / "_defaults.yaml").write_text(defaults.read_text())
    first = _commit(work, "announce", "one", "a versioned model")
    return remote, work, first


def bundles(dags_folder: Path, remote: Path) -> list[dict[str, Any]]:
    """The DAGs folder (local, unversioned) and the git bundle (refreshed every 3 s)."""
    return [{"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(dags_folder)}},
            {"name": BUNDLE, "classpath": GIT_BUNDLE,
             "kwargs": {"repo_url": str(remote), "tracking_ref": "main", "refresh_interval": 3}}]


def _states(stack: Stack, run_id: str) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in stack.task_instances(TRAIN, run_id)}


def _tasks_if(stack: Stack, task_id: str) -> set[str] | None:
    """The DAG's task ids once `task_id` is among them, else None."""
    tasks = {t["task_id"] for t in stack.api("GET", f"dags/{TRAIN}/tasks")["tasks"]}
    return tasks if task_id in tasks else None


def _log_text(stack: Stack, run_id: str, task_id: str) -> str:
    log = stack.api("GET", f"dags/{TRAIN}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1")
    return str(log.get("content"))


def run_versioned_scenario(stack: Stack, backend: RunningBackend, work: Path, first: str, say: Say) -> dict[str, float]:
    """A run started on one spec version finishes on it, after a commit renamed its task."""
    t0 = time.monotonic()
    dag = stack.wait_dag(TRAIN, 150)
    assert (dag["bundle_name"], dag.get("bundle_version")) == (BUNDLE, first), dag
    backend.admin("PUT", "/settings", {"job_delay": 25.0})
    run_id = stack.trigger(TRAIN)
    stack.wait_for(lambda: _states(stack, run_id).get("wait_for_training") == "deferred", 120,
                   f"{TRAIN}/{run_id}: wait_for_training deferred")
    second = _commit(work, "announce_v2", "two", "rename the announce step")
    say(f"versioned: run {run_id} waits on {first[:8]}; pushed {second[:8]}, which renames its task")
    # Wait for the content, not for the DAG's bundle_version: Airflow records the bundle version
    # current when a parse's result is collected, so a parse of the old checkout that ends after
    # the refresh is stored under the new version (docs/airflow-facts.md).
    tasks = stack.wait_for(lambda: _tasks_if(stack, "announce_v2"), 120, f"{TRAIN} to be parsed from {second[:8]}")
    assert "announce" not in tasks, tasks
    assert stack.dag(TRAIN)["bundle_version"] == second
    backend.admin("PUT", "/settings", {"job_delay": 2.0})
    state = stack.wait_run(TRAIN, run_id, 180)
    assert state == "success", stack.describe_run(TRAIN, run_id)
    assert stack.run(TRAIN, run_id).get("bundle_version") == first
    states = _states(stack, run_id)
    assert states.get("announce") == "success" and "announce_v2" not in states, states
    assert "built from spec one" in _log_text(stack, run_id, "announce")
    later = stack.trigger(TRAIN)
    assert stack.wait_run(TRAIN, later, 180) == "success", stack.describe_run(TRAIN, later)
    assert stack.run(TRAIN, later).get("bundle_version") == second
    assert _states(stack, later).get("announce_v2") == "success"
    assert "built from spec two" in _log_text(stack, later, "announce_v2")
    figures = {"versioned": time.monotonic() - t0}
    say(f"versioned: the run finished on {first[:8]} with task 'announce'; the next ran 'announce_v2' "
        f"on {second[:8]} ({figures['versioned']:.0f}s)")
    return figures
