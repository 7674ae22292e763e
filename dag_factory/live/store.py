"""Where the live snapshot lives: the Airflow Variable `dag_factory_live_models`.

Two doors to the same row: the Task SDK (tasks and DAG parsing, where Airflow supervises the
process) and the metadata DB directly (the `dag-factory sync/status` commands, run next to
Airflow like `airflow variables`). Outside a supervised process the SDK reads only
`AIRFLOW_VAR_DAG_FACTORY_LIVE_MODELS` and secrets backends, never the DB.
"""

from __future__ import annotations

from typing import Callable

from dag_factory.settings import LIVE_VARIABLE

Reader = Callable[[], "str | None"]
Writer = Callable[[str], None]


def sdk_read() -> str | None:
    from airflow.sdk import Variable

    return Variable.get(LIVE_VARIABLE, default=None)


def sdk_write(value: str) -> None:
    from airflow.sdk import Variable

    Variable.set(LIVE_VARIABLE, value, description="dag_factory live model data; written by dag_factory_backend_sync")


def db_read() -> str | None:
    from airflow.models.variable import Variable

    return Variable.get(LIVE_VARIABLE, default_var=None)


def db_write(value: str) -> None:
    from airflow.models.variable import Variable

    Variable.set(LIVE_VARIABLE, value, description="dag_factory live model data; written by dag_factory_backend_sync")
