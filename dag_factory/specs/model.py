"""Typed, immutable spec objects: what the DAG builder consumes, defaults already applied."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from types import MappingProxyType
from typing import Any, Literal, Mapping

from dag_factory import kinds
from dag_factory.kinds import DagKind
from dag_factory.specs.timing import parse_duration

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
_GATE = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(>=|<=|==|>|<)\s*(\S+)\s*$")

TRAINING_STEPS = ("start_training", "wait_for_training", "check_gates", "publish")
DEPLOYMENT_STEPS = ("resolve_version",)  # then one task group per target: deploy_<target>, then:
DEPLOYMENT_FINAL = "deployed"  # the leaf that makes the run fail when any target failed
STREAMING_STEPS = ("plan_partitions", "process_partition")



def freeze(value: Any) -> Any:
    """Deep read-only copy: dicts become mappingproxies, lists tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain JSON-able copy of a frozen value (for params, XCom and request bodies)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Gate:
    metric: str
    op: str
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Gate:
        match = _GATE.match(text)
        if not match or match.group(2) not in _OPS:
            raise ValueError(f"'{text}' is not a gate like 'auc >= 0.78'")
        return cls(match.group(1), match.group(2), float(match.group(3)))

    def passes(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.threshold))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


@dataclass(frozen=True, slots=True)
class CustomStep:
    id: str
    kind: Literal["python", "operator"]
    target: str  # "pkg.mod:func" or "pkg.mod.Class"
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    replace: str | None = None
    retries: int | None = None


@dataclass(frozen=True, slots=True)
class TaskDefaults:
    retries: int = 2
    retry_delay: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class TrainingSpec:
    schedule: str | None = "@daily"
    dataset_uri: str | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    gates: tuple[Gate, ...] = ()
    timeout: timedelta = timedelta(hours=2)
    poll_interval: timedelta = timedelta(seconds=30)
    deferrable: bool = True
    tasks: TaskDefaults = TaskDefaults()
    steps: tuple[CustomStep, ...] = ()


@dataclass(frozen=True, slots=True)
class DeploymentTarget:
    name: str
    gates: tuple[Gate, ...] | None = None  # None: use the deployment's smoke-test gates


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    targets: tuple[DeploymentTarget, ...]
    smoke_gates: tuple[Gate, ...] = ()
    smoke_timeout: timedelta = timedelta(minutes=15)
    poll_interval: timedelta = timedelta(seconds=15)
    rollback_on_failure: bool = True
    tasks: TaskDefaults = TaskDefaults(retries=2, retry_delay=timedelta(minutes=1))
    steps: tuple[CustomStep, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamingSpec:
    every: timedelta = timedelta(minutes=5)
    batch_size: int = 500
    partitions: tuple[int, ...] = (0,)
    max_active_runs: int = 1
    tasks: TaskDefaults = TaskDefaults(retries=3, retry_delay=timedelta(seconds=30))
    steps: tuple[CustomStep, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model's spec after defaults were merged and everything was validated."""

    name: str
    source: str  # the spec file, for messages
    owner: str = "airflow"
    description: str = ""
    tags: tuple[str, ...] = ()
    template: bool = False
    start_date: date = date(2024, 1, 1)
    training: TrainingSpec | None = None
    deployment: DeploymentSpec | None = None
    streaming: StreamingSpec | None = None

    def dag_id(self, kind: DagKind, model: str | None = None) -> str:
        """Stable DAG id; `model` names a live model built from this spec."""
        return kinds.dag_id(model or self.name, kind)

    @property
    def kinds(self) -> tuple[DagKind, ...]:
        return tuple(k for k in kinds.SECTIONS if getattr(self, k) is not None)


def _gates(texts: Any) -> tuple[Gate, ...]:
    return tuple(Gate.parse(t) for t in texts or ())


def _tasks(section: Mapping[str, Any], default: TaskDefaults) -> TaskDefaults:
    return TaskDefaults(
        retries=section.get("retries", default.retries),
        retry_delay=parse_duration(section["retry_delay"]) if "retry_delay" in section else default.retry_delay,
    )


def _ids(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _steps(items: Any) -> tuple[CustomStep, ...]:
    out = []
    for item in items or ():
        kind = "python" if "python" in item else "operator"
        out.append(CustomStep(
            id=item.get("id") or item.get("replace"),
            kind=kind,
            target=item[kind],
            kwargs=freeze(dict(item.get("kwargs") or {})),
            before=_ids(item.get("before")),
            after=_ids(item.get("after")),
            replace=item.get("replace"),
            retries=item.get("retries"),
        ))
    return tuple(out)


def _duration(section: Mapping[str, Any], key: str, default: timedelta) -> timedelta:
    return parse_duration(section[key]) if key in section else default


def build_model_spec(doc: Mapping[str, Any], source: str) -> ModelSpec:
    """Turn a merged, schema-valid document into a ModelSpec (raises ValueError on bad values)."""
    training = deployment = streaming = None
    if (t := doc.get("training")) is not None:
        base = TrainingSpec()
        training = TrainingSpec(
            schedule=t.get("schedule", base.schedule),
            dataset_uri=t.get("dataset_uri"),
            hyperparameters=freeze(dict(t.get("hyperparameters") or {})),
            gates=_gates(t.get("gates")),
            timeout=_duration(t, "timeout", base.timeout),
            poll_interval=_duration(t, "poll_interval", base.poll_interval),
            deferrable=t.get("deferrable", base.deferrable),
            tasks=_tasks(t, base.tasks),
            steps=_steps(t.get("steps")),
        )
    if (d := doc.get("deployment")) is not None:
        base_d = DeploymentSpec(targets=())
        smoke = d.get("smoke_test") or {}
        targets = tuple(
            DeploymentTarget(x) if isinstance(x, str)
            else DeploymentTarget(x["name"], _gates(x["gates"]) if "gates" in x else None)
            for x in d.get("targets") or ()
        )
        deployment = DeploymentSpec(
            targets=targets,
            smoke_gates=_gates(smoke.get("gates")),
            smoke_timeout=_duration(smoke, "timeout", base_d.smoke_timeout),
            poll_interval=_duration(smoke, "poll_interval", base_d.poll_interval),
            rollback_on_failure=d.get("rollback_on_failure", base_d.rollback_on_failure),
            tasks=_tasks(d, base_d.tasks),
            steps=_steps(d.get("steps")),
        )
    if (s := doc.get("streaming")) is not None:
        base_s = StreamingSpec()
        streaming = StreamingSpec(
            every=_duration(s, "every", base_s.every),
            batch_size=s.get("batch_size", base_s.batch_size),
            partitions=tuple(s.get("partitions", base_s.partitions)),
            max_active_runs=s.get("max_active_runs", base_s.max_active_runs),
            tasks=_tasks(s, base_s.tasks),
            steps=_steps(s.get("steps")),
        )
    return ModelSpec(
        name=doc["model"],
        source=source,
        owner=doc.get("owner", "airflow"),
        description=doc.get("description", ""),
        tags=tuple(doc.get("tags", ())),
        template=doc.get("template", False),
        start_date=date.fromisoformat(doc.get("start_date", "2024-01-01")),
        training=training,
        deployment=deployment,
        streaming=streaming,
    )
