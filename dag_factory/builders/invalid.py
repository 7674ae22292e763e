"""A broken spec is visible in Airflow itself: one small DAG per broken file.

`dag_factory_invalid__<file>` has the errors (file:line:column) in its description and docs,
is tagged `invalid-spec`, starts unpaused and runs once; its single task fails with every error,
so failure alerts and the UI's failed-runs views show it. Fixing the file removes the DAG.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from dag_factory.builders.common import python_task
from dag_factory.settings import INVALID_DAG_PREFIX
from dag_factory.specs.errors import SpecError

MAX_DAG_ID = 250  # Airflow's limit on a DAG id


def invalid_dag_id(file: str) -> str:
    """`dag_factory_invalid__<file stem>`, with characters a DAG id cannot hold replaced and a
    stem too long for one cut and suffixed with a short stable hash of the whole stem."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(file).stem)
    if len(INVALID_DAG_PREFIX) + len(stem) > MAX_DAG_ID:
        digest = hashlib.sha1(Path(file).stem.encode("utf-8")).hexdigest()[:12]
        stem = f"{stem[:MAX_DAG_ID - len(INVALID_DAG_PREFIX) - len(digest) - 1]}_{digest}"
    return INVALID_DAG_PREFIX + stem


def report_errors(file: str, errors: list[str]) -> None:
    raise AirflowFailException(f"{file} is invalid; its model has no DAGs until it is fixed:\n" + "\n".join(errors))


def build_invalid_dag(file: str, errors: Iterable[SpecError]) -> DAG:
    lines = [str(e) for e in errors]
    doc = "\n".join(f"- `{line}`" for line in lines)
    with DAG(
        dag_id=invalid_dag_id(file),
        schedule="@once",
        start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        is_paused_upon_creation=False,
        tags=["dag_factory", "invalid-spec"],
        description=f"INVALID SPEC {file}: {lines[0]}"[:500] if lines else f"INVALID SPEC {file}",
        doc_md=f"## `{file}` is invalid\n\nRun `dag-factory validate {file}` locally.\n\n{doc}\n",
        default_args={"owner": "dag_factory", "retries": 0},
        auto_register=False,
    ) as dag:
        python_task("report_errors", report_errors, file=file, errors=lines)
    return dag
