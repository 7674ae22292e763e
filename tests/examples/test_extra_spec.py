"""A team adds its own spec to `specs/`, and this project's suite still passes.

Never written into the real checkout: the repository's files (tracked, and new ones git does not
ignore) are copied to a temporary folder, `specs/extra_model.yaml` is added there, and pytest runs
a representative part of the suite inside that copy in a subprocess (its own Airflow home, its
own imports): the tests that used to name the example models or the repository's DAG ids, and
the examples' check (which must now see the extra model's DAGs). The run-time tests take their
specs the same way (tests/support.py) but need a migrated DB and a DAG runner (about a minute
more), so the full check is by hand: add a spec to specs/, run `pytest -m "not e2e" tests`,
remove it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, SPECS

EXTRA = "extra_model"
SUBSET = [
    "tests/dags/test_dagbag.py",
    "tests/dags/test_fixture_project.py",
    "tests/specs/test_bad_input.py",
    "tests/specs/test_cli_validate.py",
    "tests/specs/test_steps_and_defaults.py",
    "tests/live/test_snapshot_plan.py",
    "tests/backend/test_backend_command.py",
    "tests/examples/test_example_specs.py",
]


def copy_of_the_checkout(target: Path) -> Path:
    """The files a clone (plus this working tree's uncommitted and new files) would have."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no list of the project's files to copy")
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True, timeout=60).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def extra_spec_text() -> str:
    """The fixture's churn_predictor spec under a new model name, as a team would copy it."""
    text = (SPECS / "churn_predictor.yaml").read_text()
    text, renamed = re.subn(r"(?m)^model: churn_predictor$", f"model: {EXTRA}", text)
    assert renamed == 1, "tests/fixtures/project/specs/churn_predictor.yaml has no 'model: churn_predictor' line"
    return text.replace("$schema=../../../../schemas/", "$schema=../schemas/", 1)


def child_env(copy: Path, tmp: Path) -> dict[str, str]:
    """This environment without the test session's Airflow, dag_factory and pytest settings;
    imports come from the copy."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "_AIRFLOW", "DAG_FACTORY", "PYTEST_")) and k != "PYTHONPATH"}
    return {**env, "PYTHONPATH": str(copy), "TMPDIR": str(tmp)}


def test_the_suite_passes_with_an_extra_spec_in_specs(tmp_path):
    copy = copy_of_the_checkout(tmp_path / "checkout")
    assert (copy / "specs").is_dir() and (copy / "tests" / "fixtures" / "project" / "dags").is_dir()
    (copy / "specs" / f"{EXTRA}.yaml").write_text(extra_spec_text())
    (tmp_path / "tmp").mkdir()
    env = child_env(copy, tmp_path / "tmp")

    listed = subprocess.run([sys.executable, "-m", "dag_factory.cli", "dags", "--format", "json"], cwd=copy, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    ids = [row["dag_id"] for row in json.loads(listed.stdout)]
    assert {f"{EXTRA}__train", f"{EXTRA}__deploy", f"{EXTRA}__stream"} <= set(ids)  # the spec is live

    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not e2e", *SUBSET],
                         cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert re.search(r"\b\d+ passed\b", summary) and "failed" not in summary and "error" not in summary, summary
