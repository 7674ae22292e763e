"""Seed data for the reference backend: plausible live records for a set of specs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Sequence

from dag_factory.dev.backend.state import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SMOKE_METRICS,
    DEFAULT_TRAINING_METRICS,
    now_rfc3339,
)
from dag_factory.specs.model import Gate, ModelSpec

if TYPE_CHECKING:
    from dag_factory.dev.backend.process import RunningBackend


def seed_records(
    names: list[tuple[str, str]],
    *,
    targets: list[str] | None = None,
    partitions: list[int] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dataset_uri: str | None = None,
) -> list[dict[str, Any]]:
    """Plausible LiveModel records for (model_name, spec_name) pairs.

    Each is active at version ``v1``, updated now, with a training dataset (``dataset_uri`` or
    ``s3://datasets/<model>/train.parquet``) and empty hyperparameters. ``deployment.targets`` is
    added only when ``targets`` is given and ``streaming`` only when ``partitions`` is.
    """
    stamp = now_rfc3339()
    records = []
    for model, spec in names:
        record: dict[str, Any] = {
            "name": model,
            "spec": spec,
            "status": "active",
            "version": "v1",
            "updated_at": stamp,
            "training": {"dataset_uri": dataset_uri or f"s3://datasets/{model}/train.parquet",
                         "hyperparameters": {}},
        }
        if targets:
            record["deployment"] = {"targets": [{"name": target} for target in targets]}
        if partitions is not None:
            record["streaming"] = {"partitions": list(partitions), "batch_size": batch_size}
        records.append(record)
    return records


def seed_for(specs: Sequence[ModelSpec]) -> list[dict[str, Any]]:
    """One live record per spec, with that spec's own dataset, targets, partitions and batch
    size (so its own checks, e.g. fraud_scorer's allowed dataset prefixes, pass)."""
    return [record_for(spec) for spec in specs]


def record_for(spec: ModelSpec) -> dict[str, Any]:
    """The live record `spec` gives: active at v1, its dataset, targets, partitions, batch size."""
    targets = [t.name for t in spec.deployment.targets] if spec.deployment else None
    stream = spec.streaming
    dataset = spec.training.dataset_uri if spec.training else None
    return seed_records([(spec.name, spec.name)], targets=targets, dataset_uri=dataset,
                        partitions=list(stream.partitions) if stream else None,
                        **({"batch_size": stream.batch_size} if stream else {}))[0]


_NUDGE = {">=": 0.0, "<=": 0.0, "==": 0.0, ">": 0.01, "<": -0.01}


def passing_metrics(gates: Iterable[Gate], defaults: dict[str, float]) -> dict[str, float] | None:
    """The backend's default metrics, changed just enough to pass `gates`; None when the
    defaults already pass (or the gates contradict each other, so the run shows that)."""
    metrics = dict(defaults)
    for gate in gates:
        value = metrics.get(gate.metric)
        if not isinstance(value, (int, float)) or not gate.passes(value):
            metrics[gate.metric] = round(gate.threshold + _NUDGE[gate.op], 6)
    if metrics == defaults or not all(g.passes(metrics[g.metric]) for g in gates):
        return None
    return metrics


def gate_settings(specs: Sequence[ModelSpec]) -> dict[str, dict[str, float] | None]:
    """Admin path -> metrics the reference backend should report so every spec's gates pass:
    one entry per model with training (``/models/<name>/training-metrics``) and one per
    deployment target (``/targets/<target>/smoke``); None where the defaults already pass.

    The backend keeps smoke metrics per target, not per model, so a target that several specs
    deploy to gets metrics that pass all of their gates for it (None if they contradict each
    other: the runs then show the contradiction)."""
    out: dict[str, dict[str, float] | None] = {}
    target_gates: dict[str, list[Gate]] = {}
    for spec in sorted(specs, key=lambda s: s.name):
        if spec.training is not None:
            out[f"/models/{spec.name}/training-metrics"] = passing_metrics(spec.training.gates,
                                                                           DEFAULT_TRAINING_METRICS)
        for target in spec.deployment.targets if spec.deployment is not None else ():
            gates = target.gates if target.gates is not None else spec.deployment.smoke_gates
            target_gates.setdefault(target.name, []).extend(gates)
    for target, gates in target_gates.items():
        out[f"/targets/{target}/smoke"] = passing_metrics(gates, DEFAULT_SMOKE_METRICS)
    return out


def passing_settings(spec: ModelSpec) -> list[tuple[str, dict[str, float]]]:
    """(admin path, metrics) that make the reference backend report metrics passing the spec's
    gates. It reports the same defaults for every model, which some gates reject (auc >= 0.9):
    a local stack or a demo shows the path of a good model version."""
    return [(path, metrics) for path, metrics in gate_settings([spec]).items() if metrics is not None]


def make_gates_pass(spec: ModelSpec, backend: RunningBackend) -> list[str]:
    """Tell the backend to report passing metrics for `spec`; what was set, for the report."""
    said = []
    for path, metrics in passing_settings(spec):
        backend.admin("PUT", path, {"metrics": metrics})
        said.append(f"{path}: {', '.join(f'{k}={v:g}' for k, v in sorted(metrics.items()))}")
    return said
