"""The command line stays light: `dag-factory validate` (the pre-commit hook) imports Airflow only
when a spec names an `operator:` step whose class it must check, and `init`, `dags`, `settings`
never do. Each case runs the CLI's main in a fresh interpreter and reads its `sys.modules`.
(Start-up time itself is measured by benchmarks/cli_startup.py, not asserted here.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r"""
import json, sys
from dag_factory.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
airflow = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
print("RESULT " + json.dumps({"rc": rc, "airflow": airflow[:5], "steps": "dag_factory.steps" in sys.modules}))
"""

DEFAULTS = "owner: team\nstart_date: '2024-01-01'\ntraining: {retries: 2}\n"
PYTHON_STEP = """model: {name}
training:
  schedule: "@daily"
  gates: ["auc >= 0.8"]
  steps:
    - id: check_dataset_uri
      python: dag_factory.steps:require_dataset_uri
      kwargs: {{allowed_prefixes: ["s3://data/"]}}
      before: start_training
deployment:
  targets: [production]
streaming:
  every: 5m
"""
OPERATOR_STEP = """model: {name}
training:
  schedule: "@daily"
  steps:
    - id: announce
      operator: {operator}
      kwargs: {{bash_command: "echo hi"}}
      after: publish
"""
BASH = "airflow.providers.standard.operators.bash.BashOperator"


def cli(*args: str, cwd: Path, **env: str) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env})
    line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, result.stdout + result.stderr
    return {**json.loads(line[len("RESULT "):]), "output": result.stdout + result.stderr}


def specs(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_defaults.yaml").write_text(DEFAULTS)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def test_validate_without_operator_steps_does_not_import_airflow(tmp_path):
    folder = specs(tmp_path / "specs", churn=PYTHON_STEP.format(name="churn"), plain="model: plain\ntraining: {}\n")
    result = cli("validate", str(folder), cwd=tmp_path)
    assert result["rc"] == 0, result["output"]
    assert "2 spec file(s), 2 valid: ok" in result["output"]
    assert result["steps"], "the python step's module was not imported: its check did not run"
    assert result["airflow"] == [], result["airflow"]


def test_validate_imports_airflow_to_check_an_operator_class(tmp_path):
    good = specs(tmp_path / "good", churn=OPERATOR_STEP.format(name="churn", operator=BASH))
    result = cli("validate", str(good), cwd=tmp_path)
    assert result["rc"] == 0, result["output"]
    assert "airflow" in result["airflow"]

    bad = specs(tmp_path / "bad", churn=OPERATOR_STEP.format(name="churn", operator="collections.OrderedDict"))
    result = cli("validate", str(bad), cwd=tmp_path, DAG_FACTORY_ALLOWED_CODE="collections")  # allowed: checked
    assert result["rc"] == 1
    assert f"{bad}/churn.yaml:6:17: training.steps[0].operator: 'collections.OrderedDict' is not an Airflow " \
           "operator class" in result["output"]


def test_validate_no_imports_skips_airflow_even_with_operator_steps(tmp_path):
    folder = specs(tmp_path / "specs", churn=OPERATOR_STEP.format(name="churn", operator=BASH))
    result = cli("validate", "--no-imports", str(folder), cwd=tmp_path)
    assert result["rc"] == 0, result["output"]
    assert result["airflow"] == []


@pytest.mark.parametrize("args", [["init", "project"], ["dags", "specs"], ["settings"], ["--version"], ["--help"]])
def test_other_light_commands_do_not_import_airflow(tmp_path, args):
    specs(tmp_path / "specs", churn=PYTHON_STEP.format(name="churn"))
    result = cli(*args, cwd=tmp_path)
    assert result["rc"] == 0, result["output"]
    assert result["airflow"] == [], result["airflow"]
