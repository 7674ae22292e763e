"""Specs + live snapshot -> the models that get DAGs. Pure; what live data may change is here.

- A non-template spec always gives its own model DAGs (a new YAML file shows up at once),
  unless the backend retired that name.
- A live model gets the DAGs of the spec it names (`spec`, default: its own name): one spec
  serves many live models; a model naming a missing spec gets none and is reported.
- `paused` keeps the DAGs (history, manual runs) but without a schedule; `retired` removes them.
- Live data may change: which models exist, paused or not, the training schedule. It may not
  change task ids or structure: targets, steps and sections come from the spec; versions,
  datasets, hyperparameters, gates, partitions and batch sizes are read by the tasks at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from dag_factory.layout import Shard, in_shard
from dag_factory.specs.model import ModelSpec


@dataclass(frozen=True, slots=True)
class FleetModel:
    name: str
    spec: ModelSpec
    paused: bool = False
    training_schedule: str | None = None  # the backend's override, if any


def dag_inputs(name: str, record: Mapping[str, Any]) -> tuple[str, bool, str | None]:
    """What of a live record its model's DAGs are built from: (the spec it names, paused or not,
    the training schedule). The tasks read the rest at run time, so only a change here makes
    the sync ask for a re-parse (dag_factory.live.snapshot.specs_with_dag_changes)."""
    return (record.get("spec") or name, record.get("status") == "paused",
            (record.get("training") or {}).get("schedule"))


def spec_name_of(model: str, snap: Mapping[str, Any] | None) -> str:
    """Which spec a model name is built from (its own name unless live data says otherwise)."""
    return dag_inputs(model, ((snap or {}).get("models") or {}).get(model) or {})[0]


def shard_snapshot(snap: Mapping[str, Any] | None, shard: Shard | None) -> Mapping[str, Any] | None:
    """The live snapshot with only the models whose spec is in `shard`."""
    if snap is None or shard is None:
        return snap
    models = {k: v for k, v in (snap.get("models") or {}).items() if in_shard(spec_name_of(k, snap), shard)}
    return {**snap, "models": models}


def plan_fleet(specs: Mapping[str, ModelSpec], snap: Mapping[str, Any] | None) -> tuple[list[FleetModel], list[str]]:
    """(models to build, problems to report), sorted by model name."""
    if snap is None:
        return [FleetModel(s.name, s) for s in sorted(specs.values(), key=lambda s: s.name) if not s.template], []
    live: Mapping[str, Any] = snap.get("models") or {}
    retired = set(snap.get("retired") or ())
    fleet: dict[str, FleetModel] = {}
    problems: list[str] = []
    for name, record in live.items():
        spec_name, paused, schedule = dag_inputs(name, record)
        spec = specs.get(spec_name)
        if spec is None:
            problems.append(f"live model '{name}' names spec '{spec_name}', which is not in the specs folder")
            continue
        fleet[name] = FleetModel(name, spec, paused=paused, training_schedule=schedule)
    for spec in specs.values():
        if not spec.template and spec.name not in fleet and spec.name not in retired:
            fleet[spec.name] = FleetModel(spec.name, spec)
    return [fleet[name] for name in sorted(fleet)], problems
