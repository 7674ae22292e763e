"""<model>__stream: every interval, one mapped task per partition processes the next micro-batch."""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from dag_factory.builders.common import builtin_or_replacement, dag_kwargs, python_task, schedule_for, wire
from dag_factory.live.fleet import FleetModel
from dag_factory.runtime import streaming
from dag_factory.settings import BACKEND_CONN_ID
from dag_factory.specs.model import STREAMING_STEPS


def build_streaming_dag(model: FleetModel) -> DAG:
    s = model.spec.streaming
    assert s is not None
    name = model.name
    with DAG(schedule=schedule_for(model, s.every), max_active_runs=s.max_active_runs,
             **dag_kwargs(model, "streaming", s.tasks)) as dag:
        plan = builtin_or_replacement(s.steps, "plan_partitions", lambda: python_task(
            "plan_partitions", streaming.plan_partitions, model=name, conn_id=BACKEND_CONN_ID,
            spec_partitions=list(s.partitions), spec_batch_size=s.batch_size))
        process = PythonOperator.partial(
            task_id="process_partition", python_callable=process_partition,
            map_index_template="partition {{ task.op_kwargs['partition'] }}",
        ).expand(op_kwargs=plan.output)
        spans = {"plan_partitions": (plan, plan), "process_partition": (process, process)}
        wire(spans, s.steps, STREAMING_STEPS)
    return dag


# The mapped task's callable, kept two lines long on purpose: Airflow 3.3 serializes a mapped
# task's partial kwargs one by one, so for `python_callable` it reads the function's source
# (inspect.getsource: ~1 ms for the 17-line runtime function, 0.06 ms for this one) on every
# serialization, then drops it and stores only the name (serialized_objects.py,
# serialize_mapped_operator). Same name, same parameters: the serialized DAG is unchanged.
def process_partition(model: str, conn_id: str, partition: int, max_records: int) -> dict[str, Any]:
    return streaming.process_partition(model, conn_id, partition, max_records)
