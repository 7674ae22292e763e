"""Shared fixtures: a private AIRFLOW_HOME (set before Airflow is imported) whose DAGs folder is
the tests' own project (tests/fixtures/project/dags, see tests/support.py), and scratch copies of
that project's specs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support import DAGS, SPECS

# Airflow reads its configuration when first imported: point it at a throwaway home first.
# (Once per session: a second import of this module must not move Airflow to another home.)
_HOME = Path(os.environ.get("DAG_FACTORY_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="dag_factory_test_airflow_"))
os.environ.update({
    "DAG_FACTORY_TEST_AIRFLOW_HOME": str(_HOME),
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "DAG_FACTORY_SPEC_CACHE": str(_HOME / "spec-cache"),  # not the user's ~/.cache
    # One key for every process of the session (test, runner, migrate): Variables are encrypted.
    "AIRFLOW__CORE__FERNET_KEY": os.environ.get("AIRFLOW__CORE__FERNET_KEY") or Fernet.generate_key().decode(),
})
os.environ.pop("DAG_FACTORY_SPECS", None)
os.environ.pop("AIRFLOW_CONN_MODEL_BACKEND", None)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB, for tests that run DAGs with dag.test()."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _HOME


@pytest.fixture
def specs_dir(tmp_path: Path) -> Path:
    """A copy of the fixture project's specs/ (the three models and _defaults.yaml) that a test may break."""
    target = tmp_path / "specs"
    shutil.copytree(SPECS, target)
    return target
