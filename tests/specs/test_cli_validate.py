"""`dag-factory validate`: exit codes and the three output formats, as CI sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import PROJECT, ROOT


def run(*args: str, cwd: Path = PROJECT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dag_factory.cli", *args], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_valid_specs_folder_exits_0():
    result = run("validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 spec file(s), 3 valid: ok" in result.stderr


def test_invalid_spec_exits_1_with_located_text(specs_dir):
    (specs_dir / "bad.yaml").write_text("model: bad\ntraining:\n  schedual: '@daily'\n")
    result = run("validate", str(specs_dir))
    assert result.returncode == 1
    assert f"{specs_dir}/bad.yaml:3:3: training.schedual: unknown key 'schedual' — did you mean 'schedule'?" in result.stdout


def test_json_format(specs_dir):
    (specs_dir / "bad.yaml").write_text("model: bad\ntraining:\n  retries: -1\n")
    result = run("validate", "--format", "json", str(specs_dir))
    assert result.returncode == 1
    [error] = json.loads(result.stdout)
    assert error["file"].endswith("bad.yaml") and error["line"] == 3 and error["column"] == 12
    assert error["path"] == ["training", "retries"] and "minimum" in error["message"]
    assert json.loads(run("validate", "--format", "json").stdout) == []


def test_github_annotations(specs_dir):
    (specs_dir / "bad.yaml").write_text("model: bad\nstreaming:\n  every: soon\n")
    result = run("validate", "--format", "github", str(specs_dir / "bad.yaml"))
    assert result.returncode == 1
    line = result.stdout.strip()
    assert line.startswith(f"::error file={specs_dir}/bad.yaml,line=3,col=10,title=dag-factory schema::")


def test_usage_errors_exit_2():
    assert run("validate", "no/such/dir").returncode == 2
    assert run("validate", "--format", "xml").returncode == 2
    assert run("frobnicate").returncode == 2


def test_single_file_uses_its_folders_defaults():
    result = run("validate", "specs/demand_forecast.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dags_lists_the_dag_ids():
    result = run("dags", "--format", "json")
    assert result.returncode == 0
    ids = [row["dag_id"] for row in json.loads(result.stdout)]
    assert ids == ["churn_predictor__train", "churn_predictor__deploy", "churn_predictor__stream",
                   "demand_forecast__train", "demand_forecast__deploy",
                   "fraud_scorer__train", "fraud_scorer__deploy", "fraud_scorer__stream"]
