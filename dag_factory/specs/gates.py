"""Which gates a set of metrics fails, in words a person can act on: used by the tasks at run
time and by the fleet view (`dag-factory status`, the Models page)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from dag_factory.specs.model import Gate


def gate_failures(gates: Iterable[str | Gate], metrics: Mapping[str, Any]) -> list[str]:
    """One sentence per failed gate, naming the metric, its value and the gate."""
    failures = []
    for gate in gates:
        gate = gate if isinstance(gate, Gate) else Gate.parse(gate)
        value = metrics.get(gate.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            failures.append(f"gate '{gate}' failed: metric '{gate.metric}' is missing "
                            f"(got {sorted(metrics) or 'no metrics'})")
        elif not gate.passes(value):
            failures.append(f"gate '{gate}' failed: {gate.metric} = {value:g}")
    return failures


def min_metric_gates(min_metric: Mapping[str, Any] | None) -> list[str]:
    """The backend's per-target `min_metric` as gates ('success_rate >= 0.99')."""
    return [f"{name} >= {float(value):g}" for name, value in sorted((min_metric or {}).items())]
