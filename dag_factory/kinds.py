"""The kinds of DAG a spec can produce, in one registry.

A kind is a spec section (`training:`), a DAG id suffix (`__train`), the builder that turns a
model into that DAG, and the run conf keys its tasks accept. Adding a kind means a schema
section, a dataclass in `specs/model.py`, one builder, one run-time module, and a row here.
Builders are named by import path so that this module imports nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

DagKind = Literal["training", "deployment", "streaming"]


@dataclass(frozen=True, slots=True)
class Kind:
    name: DagKind  # also the spec section
    suffix: str  # <model>__<suffix> is the DAG id
    builder: str  # "module:function", called with a FleetModel
    conf_keys: tuple[str, ...]  # what a manual run's conf may set (dag_factory.runtime.conf)

    def build(self, model: Any) -> Any:
        module, _, function = self.builder.partition(":")
        make: Callable[[Any], Any] = getattr(importlib.import_module(module), function)
        return make(model)


KINDS: Mapping[str, Kind] = {k.name: k for k in (
    Kind("training", "train", "dag_factory.builders.training:build_training_dag",
         ("dataset_uri", "hyperparameters", "gates")),
    Kind("deployment", "deploy", "dag_factory.builders.deployment:build_deployment_dag", ("version",)),
    Kind("streaming", "stream", "dag_factory.builders.streaming:build_streaming_dag", ("partitions", "batch_size")),
)}
SECTIONS: tuple[DagKind, ...] = tuple(KINDS)  # type: ignore[assignment]
BY_SUFFIX: Mapping[str, Kind] = {k.suffix: k for k in KINDS.values()}


def dag_id(model: str, kind: str) -> str:
    """`<model>__<suffix>`: stable, and the same in every process that parses the file."""
    return f"{model}__{KINDS[kind].suffix}"


def split_dag_id(value: str) -> tuple[str, Kind] | None:
    """`churn__train` -> ("churn", training); None for an id no kind makes."""
    model, sep, suffix = value.rpartition("__")
    kind = BY_SUFFIX.get(suffix) if sep else None
    return (model, kind) if kind else None
