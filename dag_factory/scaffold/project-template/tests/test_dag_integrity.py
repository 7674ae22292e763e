"""DAG integrity: Airflow parses this project's dags/, and so every spec in specs/, cleanly.

Made by `dag-factory init`; yours to extend. The checks of the Astro CLI project template's DAG
test (no import errors, tags on every DAG, retries >= 2), plus two of dag_factory's own: no spec
is invalid (a broken spec becomes a `dag_factory_invalid__<file>` DAG so that the other models
keep theirs; an import-error check alone would pass), and every DAG the specs promise is there.
Run `python -m pytest tests/`. It needs Airflow (which dag-factory-ml installs), no database.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
DAGS = PROJECT / "dags"
SPECS = PROJECT / "specs"
INVALID_SPEC_PREFIX = "dag_factory_invalid__"
SYNC_DAG_ID = "dag_factory_backend_sync"
MIN_RETRIES = 2

# Airflow reads its configuration when first imported: without an AIRFLOW_HOME of yours, a
# scratch one, so that the test leaves ~/airflow alone.
os.environ.setdefault("AIRFLOW_HOME", os.path.join(tempfile.gettempdir(), "dag_integrity_airflow_home"))


@pytest.fixture(scope="module")
def dagbag():
    """dags/ parsed as the dag-processor parses it, with this project's specs."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAG_FACTORY_SPECS", str(SPECS))
        env.setenv("DAG_FACTORY_SPEC_CACHE", "off")  # read every YAML file; leave ~/.cache alone
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(DAGS))


def is_invalid_spec(dag) -> bool:
    return dag.dag_id.startswith(INVALID_SPEC_PREFIX) or "invalid-spec" in (dag.tags or ())


def spec_errors(dag) -> list[str]:
    """The errors of a broken spec, each `file:line:column: message`."""
    task = dag.task_dict.get("report_errors")
    errors = getattr(task, "op_kwargs", {}).get("errors") if task is not None else None
    return list(errors or [dag.description or dag.dag_id])


def checked_dags(dagbag) -> list:
    return [dag for dag in dagbag.dags.values() if not is_invalid_spec(dag)]


def test_no_import_errors(dagbag):
    problems = [f"{file}:\n{error}" for file, error in sorted(dagbag.import_errors.items())]
    assert not problems, "DAG files that do not import:\n" + "\n".join(problems)


def test_no_invalid_specs(dagbag):
    errors = [line for dag in dagbag.dags.values() if is_invalid_spec(dag) for line in spec_errors(dag)]
    assert not errors, "invalid specs (their models have no DAGs until fixed; `dag-factory validate` " \
                       "shows the same):\n" + "\n".join(errors)


def test_every_spec_has_its_dags(dagbag):
    from dag_factory import load_specs

    result = load_specs([str(SPECS)], check_imports=False)
    promised = {spec.dag_id(kind) for spec in result.specs if not spec.template for kind in spec.kinds}
    missing = sorted((promised | {SYNC_DAG_ID}) - set(dagbag.dag_ids))
    assert not missing, f"DAGs missing from {DAGS}: {', '.join(missing)}"


def test_dags_have_tags(dagbag):
    untagged = sorted(dag.dag_id for dag in checked_dags(dagbag) if not dag.tags)
    assert not untagged, f"DAGs without tags: {', '.join(untagged)}"


def test_dags_retry_at_least_twice(dagbag):
    few = sorted(f"{dag.dag_id} (retries={dag.default_args.get('retries')})" for dag in checked_dags(dagbag)
                 if (dag.default_args.get("retries") or 0) < MIN_RETRIES)
    assert not few, f"DAGs with fewer than {MIN_RETRIES} retries: {', '.join(few)}"
