"""Helpers for the run-time tests (not fixtures: see conftest.py)."""

from __future__ import annotations

TOKEN = "rt-token-5f0c2b9e"


def airflow_variable(key: str) -> str | None:
    """Read a Variable from the metadata DB (the SDK's Variable.get does not, outside a task)."""
    from airflow.models.variable import Variable

    return Variable.get(key, default_var=None)


def clear_variables(prefix: str) -> None:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(Variable).filter(Variable.key.like(f"{prefix}%")).delete(synchronize_session=False)


