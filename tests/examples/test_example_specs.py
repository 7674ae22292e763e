"""The repository's own project (`dags/` and `specs/`, the examples a team starts from) as a team's
CI checks its project: the DagBag integrity checks `dag-factory init` generates (no import errors,
no invalid-spec DAGs, tags, `retries >= 2` as in the Astro CLI project template) and
`dag-factory validate specs/`.

This is the one place that reads the repository's `specs/` and `dags/`: every other test uses
the tests' own project (tests/support.py). These checks pass whatever specs the folder holds,
so a team that adds its own spec keeps a green suite (tests/examples/test_extra_spec.py proves it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import pytest
from airflow.dag_processing.dagbag import DagBag

from dag_factory.settings import INVALID_DAG_PREFIX, SYNC_DAG_ID
from dag_factory.specs import load_specs
from tests.support import REPO_DAGS, REPO_SPECS, ROOT

# The examples the README's tour copies: each names its schema, so a copy validates in an editor.
SHIPPED_EXAMPLES = ("_defaults.yaml", "churn_predictor.yaml", "demand_forecast.yaml", "fraud_scorer.yaml")


@pytest.fixture(scope="module")
def bag() -> Iterator[DagBag]:
    """The repository's dags/ parsed as the dag-processor would (specs/ beside it, no live data)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DAG_FACTORY_SPECS", raising=False)
        mp.delenv("AIRFLOW_VAR_DAG_FACTORY_LIVE_MODELS", raising=False)
        yield DagBag(dag_folder=str(REPO_DAGS))  # no examples: AIRFLOW__CORE__LOAD_EXAMPLES=False


def test_no_import_errors(bag):
    assert bag.import_errors == {}


def test_no_invalid_spec_dags(bag):
    invalid = {d: bag.dags[d].description for d in bag.dag_ids if d.startswith(INVALID_DAG_PREFIX)}
    assert invalid == {}


def test_every_spec_has_its_dags_and_the_sync_dag_is_there(bag):
    specs = load_specs([REPO_SPECS], check_imports=False)
    expected = {s.dag_id(kind) for s in specs.specs if not s.template for kind in s.kinds} | {SYNC_DAG_ID}
    assert expected - set(bag.dag_ids) == set()


def test_every_dag_has_tags(bag):
    assert [d for d, dag in bag.dags.items() if not dag.tags] == []


def test_every_dag_retries_at_least_twice(bag):
    low = {d: dag.default_args.get("retries") for d, dag in bag.dags.items()
           if not (dag.default_args.get("retries") or 0) >= 2}
    assert low == {}


def test_validate_exits_0():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAG_FACTORY_")}
    result = subprocess.run([sys.executable, "-m", "dag_factory.cli", "validate", "specs/"], cwd=ROOT,
                            env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", SHIPPED_EXAMPLES)
def test_the_shipped_examples_name_their_schema_for_editors(name):
    path = REPO_SPECS / name
    assert path.is_file(), f"specs/{name} is gone: update SHIPPED_EXAMPLES (and the README's tour)"
    expected = "defaults.schema.json" if name == "_defaults.yaml" else "spec.schema.json"
    assert path.read_text().splitlines()[0] == f"# yaml-language-server: $schema=../schemas/{expected}"
