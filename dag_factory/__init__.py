"""dag_factory: per-model YAML specs in, Airflow 3 training/deployment/streaming DAGs out.

The public names are imported lazily (as `airflow.sdk` does) so that importing the package
from a DAG file costs only what that parse uses.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "register_dags": "dag_factory.builders.register",
    "build_sync_dag": "dag_factory.builders.sync_dag",
    "load_specs": "dag_factory.specs.loader",
    "LoadResult": "dag_factory.specs.loader",
    "ModelSpec": "dag_factory.specs.model",
    "SpecError": "dag_factory.specs.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dag_factory' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
