"""`dag-factory demo` as a user runs it: one command, its own Airflow home, a readable report.

The demo runs once per module (about 40 s) in a subprocess whose environment has none of this
test session's Airflow settings, with TMPDIR pointed at a fresh folder so that anything the
demo leaves behind is visible.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dag_factory.dev.backend.seed import passing_metrics
from dag_factory.dev.demo import failure_reasons
from dag_factory.specs import load_specs
from dag_factory.specs.model import Gate
from tests.support import PROJECT, SPECS

MODEL = "churn_predictor"
RUN_LINE = re.compile(r"^DAG run (\S+) \((.+?)\): (\S+) in ", re.M)


def demo_env(tmp: Path) -> dict[str, str]:
    """The caller's environment without the test session's Airflow home and settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DAG_FACTORY"))}
    env["TMPDIR"] = str(tmp)
    return env


def run_demo(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dag_factory.cli", "demo", *args], cwd=PROJECT, env=demo_env(tmp),
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp = tmp_path_factory.mktemp("demo_tmp")
    return run_demo(tmp), tmp


@pytest.fixture(scope="module")
def spec():
    return load_specs([SPECS], check_imports=False).by_name()[MODEL]


def test_every_dag_run_succeeds_and_the_report_stays_readable(demo):
    result, _ = demo
    assert result.returncode == 0, result.stdout + result.stderr
    assert RUN_LINE.findall(result.stdout) == [
        ("dag_factory_backend_sync", "sync", "success"),  # live data first, as in Airflow
        (f"{MODEL}__train", "train", "success"),
        (f"{MODEL}__deploy", "deploy", "success"),
        (f"{MODEL}__stream", "stream #1", "success"),
        (f"{MODEL}__stream", "stream #2", "success"),
    ]
    assert "Result: 5 of 5 DAG run(s) succeeded" in result.stdout
    assert re.search(r"^ +process_partition\[3\] \(partition 3\) +success", result.stdout, re.M)
    assert not re.search(r"^ +\S+ +(failed|upstream_failed|up_for_retry)\b", result.stdout, re.M)
    assert "[info" not in result.stdout + result.stderr  # Airflow's own log went to the log file


def test_the_deployment_gets_the_version_training_produced(demo, spec):
    out = demo[0].stdout
    trained = re.findall(r"^  training job tr-\S+: version (v\d+) succeeded, metrics auc=\S+ logloss=\S+$", out, re.M)
    assert len(trained) == 1
    assert f'running {MODEL}__deploy with conf {{"version": "{trained[0]}"}}' in out
    deployments = re.findall(r"^  deployment (\d+): (\w+) <- (v\d+) (\w+) ", out, re.M)
    assert deployments == [(str(n), t.name, trained[0], "succeeded")
                           for n, t in enumerate(spec.deployment.targets, 1)]
    assert [t.name for t in spec.deployment.targets] == ["staging", "production"]


def test_streams_lose_and_repeat_nothing_and_offsets_advance(demo, spec):
    out = demo[0].stdout
    partitions = [str(p) for p in spec.streaming.partitions]
    counts = re.findall(r"^  stream partition (\d+): processed (\d+), duplicates (\d+), missing (\d+)", out, re.M)
    assert [c[0] for c in counts] == partitions
    assert all(int(processed) > 0 and dup == "0" and missing == "0" for _, processed, dup, missing in counts)
    offsets = re.findall(r"^  partition (\d+): (-?\d+) after stream #1 -> (-?\d+) after stream #2$", out, re.M)
    assert [o[0] for o in offsets] == partitions
    assert all(-1 < int(first) < int(second) for _, first, second in offsets)
    processed = {p: int(n) for p, n, _, _ in counts}
    assert all(processed[p] == int(second) + 1 for p, _, second in offsets)


def test_the_temporary_home_is_removed(demo):
    result, tmp = demo
    homes = re.findall(r"^Airflow home: (\S+) \(temporary\)$", result.stdout, re.M)
    assert len(homes) == 1 and Path(homes[0]).parent == tmp
    assert not Path(homes[0]).exists()
    assert f"Airflow home {homes[0]} removed" in result.stdout
    assert sorted(os.listdir(tmp)) == []  # nor a backend temp dir


def test_an_unknown_model_is_a_usage_error(tmp_path):
    result = run_demo(tmp_path, "--model", "no_such_model")
    assert result.returncode == 2
    assert "no model 'no_such_model'" in result.stderr and MODEL in result.stderr
    assert "running" not in result.stdout
    assert os.listdir(tmp_path) == []


def test_passing_metrics_changes_only_what_a_gate_rejects():
    defaults = {"auc": 0.86, "logloss": 0.31}
    assert passing_metrics([Gate.parse("auc >= 0.78"), Gate.parse("logloss <= 0.45")], defaults) is None
    assert passing_metrics([Gate.parse("auc >= 0.9"), Gate.parse("mape < 0.2")], defaults) == \
        {"auc": 0.9, "logloss": 0.31, "mape": 0.19}
    assert passing_metrics([Gate.parse("auc >= 0.9"), Gate.parse("auc <= 0.5")], defaults) is None


def test_failure_reasons_name_the_task_that_raised():
    log = "\n".join([
        "x [info ] [DAG TEST] starting task_id=deploy_production.wait map_index=-1 [airflow]",
        "Traceback (most recent call last):",
        '  File "jobs.py", line 149, in _finish',
        "airflow.sdk.exceptions.AirflowFailException: deployment job dp-1 ended failed: disk full",
        "x [info ] [DAG TEST] starting task_id=process_partition map_index=2 [airflow]",
        "ValueError: offset state out of range",
    ])
    assert failure_reasons(log) == {
        ("deploy_production.wait", -1): "AirflowFailException: deployment job dp-1 ended failed: disk full",
        ("process_partition", 2): "ValueError: offset state out of range",
    }
