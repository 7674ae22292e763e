"""`<home>/stack.env`, which `dag-factory up`'s banner tells a person to source before running
`airflow dags list`: from a shell whose PATH lacks the venv, it must find the stack's Airflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dag_factory.dev.stack import stack_env_text


def test_sourcing_stack_env_puts_this_venvs_airflow_first(tmp_path: Path) -> None:
    odd_home = str(tmp_path / "a home with 'quotes', $dollars and spaces")
    env_file = tmp_path / "stack.env"
    env_file.write_text(stack_env_text({"AIRFLOW_HOME": odd_home, "AIRFLOW_CONN_MODEL_BACKEND": "http://:secret@x"},
                                       {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}), encoding="utf-8")
    shell = subprocess.run(
        ["bash", "-c", f'source "{env_file}" && command -v airflow && printf "%s\\n" "$AIRFLOW_HOME" '
                       '"$AIRFLOW__CORE__EXECUTOR" "${AIRFLOW_CONN_MODEL_BACKEND-unset}"'],
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True, text=True, timeout=30, check=True)
    assert shell.stdout.splitlines() == [str(Path(sys.executable).with_name("airflow")), odd_home,
                                         "LocalExecutor", "unset"], shell.stderr
