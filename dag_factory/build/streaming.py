"""<model>__stream: every interval, one mapped task per partition processes the next micro-batch."""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param

from dag_factory.build.common import builtin_or_replacement, dag_kwargs, python_task, wire
from dag_factory.runtime import BACKEND_CONN_ID, streaming
from dag_factory.specs.model import STREAMING_STEPS, ModelSpec


def build_streaming_dag(spec: ModelSpec, model: str | None = None) -> DAG:
    s = spec.streaming
    assert s is not None
    name = model or spec.name
    params = {
        "partitions": Param(list(s.partitions), type="array", items={"type": "integer", "minimum": 0},
                            description="partitions to process"),
        "batch_size": Param(s.batch_size, type="integer", minimum=1, description="most records per partition per run"),
    }
    with DAG(schedule=s.every, max_active_runs=s.max_active_runs, params=params,
             **dag_kwargs(spec, "streaming", s.tasks, model)) as dag:
        plan = builtin_or_replacement(s.steps, "plan_partitions", lambda: python_task(
            "plan_partitions", streaming.plan_partitions, model=name, conn_id=BACKEND_CONN_ID))
        process = PythonOperator.partial(
            task_id="process_partition", python_callable=streaming.process_partition,
            map_index_template="partition {{ task.op_kwargs['partition'] }}",
        ).expand(op_kwargs=plan.output)
        spans = {"plan_partitions": (plan, plan), "process_partition": (process, process)}
        wire(spans, s.steps, STREAMING_STEPS)
    return dag
