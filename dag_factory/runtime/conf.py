"""A run's conf: what a person passes when triggering a run by hand, checked before use.

The DAGs declare no `Param`s. Airflow 3.3 validates every Param against the JSON-Schema
meta-schema at DAG creation and again, once per task, at serialization: for 1,000 models that
was 60 % of the dag-processor's import + serialization time. The same checks happen here,
once, when a task reads the value, and a bad value fails the task (no retries) saying which
key, what was expected and what came.

Accepted keys (all optional; a missing or empty one falls back to the live record, then the
spec): training `dataset_uri` (string), `hyperparameters` (object), `gates` (list of gate
strings); deployment `version` (string); streaming `partitions` (list of integers >= 0),
`batch_size` (integer >= 1).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from airflow.sdk.exceptions import AirflowFailException

from dag_factory.kinds import KINDS

CONF_KEYS: Mapping[str, tuple[str, ...]] = {name: kind.conf_keys for name, kind in KINDS.items()}


def _is_gate(value: Any) -> bool:
    from dag_factory.specs.model import Gate

    try:
        Gate.parse(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


_CHECKS: Mapping[str, tuple[str, Callable[[Any], bool]]] = {
    "dataset_uri": ("a string", lambda v: isinstance(v, str)),
    "version": ("a string", lambda v: isinstance(v, str)),
    "hyperparameters": ("an object", lambda v: isinstance(v, Mapping)),
    "gates": ("a list of gate strings like 'auc >= 0.8'",
              lambda v: isinstance(v, list) and all(isinstance(g, str) and _is_gate(g) for g in v)),
    "partitions": ("a list of integers >= 0", lambda v: isinstance(v, list) and all(_is_int(p, 0) for p in v)),
    "batch_size": ("an integer >= 1", lambda v: _is_int(v, 1)),
}


def run_conf(dag_run: Any) -> Mapping[str, Any]:
    """The run's conf ({} when none)."""
    conf = getattr(dag_run, "conf", None) or {}
    if not isinstance(conf, Mapping):
        raise AirflowFailException(f"the run's conf must be a JSON object, got {_preview(conf)}")
    return conf


def conf_value(dag_run: Any, key: str) -> Any:
    """`key` from the run's conf, checked; None when not given (or given empty)."""
    value = run_conf(dag_run).get(key)
    if value in (None, "", [], {}):
        return None
    expected, ok = _CHECKS[key]
    if not ok(value):
        raise AirflowFailException(f"run conf '{key}' must be {expected}, got {_preview(value)}")
    return value


def conf_doc(kind: str) -> str:
    """One line for a DAG's docs: the conf keys a manual run accepts."""
    keys = ", ".join(f"`{k}` ({_CHECKS[k][0]})" for k in CONF_KEYS[kind])
    return f"Trigger with conf (all optional; else the live record, else the spec): {keys}."


def _preview(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
