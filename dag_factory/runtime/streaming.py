"""Streaming tasks: plan one mapped task per partition, process each partition's next batch."""

from __future__ import annotations

import json
import logging
from typing import Any

from dag_factory.runtime import offsets
from dag_factory.runtime.conf import conf_value
from dag_factory.runtime.live import first, live_record

log = logging.getLogger(__name__)


def plan_partitions(model: str, conn_id: str, dag_run: Any,
                    spec_partitions: list[int], spec_batch_size: int) -> list[dict[str, Any]]:
    """One op_kwargs dict per partition: the mapped task's inputs, decided at run time from
    the run's conf, else the backend's live record, else the spec."""
    live = live_record(model).get("streaming") or {}
    batch_size = int(first(conf_value(dag_run, "batch_size"), live.get("batch_size"), spec_batch_size))
    partitions = sorted({int(p) for p in first(conf_value(dag_run, "partitions"), live.get("partitions"),
                                               spec_partitions)})
    return [{"model": model, "conn_id": conn_id, "partition": p, "max_records": batch_size} for p in partitions]


def process_partition(model: str, conn_id: str, partition: int, max_records: int) -> dict[str, Any]:
    """Process the batch after the committed offset, then commit. The key comes from the
    committed state, so a retry after a crash gets the backend's first answer back."""
    from airflow.sdk import Variable

    from dag_factory.client import BackendClient  # here, not at import: see dag_factory.runtime

    key = offsets.variable_key(model, partition)
    state = offsets.read_state(key, lambda k: Variable.get(k, default=None), lambda k: Variable.keys(prefix=k))
    idempotency_key = offsets.batch_key(model, partition, state)
    with BackendClient.from_connection(conn_id) as client:
        result = client.process_stream_batch(model, partition=partition, after_offset=state["offset"],
                                             max_records=max_records, idempotency_key=idempotency_key)
    new_state = offsets.advance(state, result)
    Variable.set(key, json.dumps(new_state, sort_keys=True))
    log.info("partition %s: %s record(s) after offset %s, committed offset %s",
             partition, result["records"], state["offset"], new_state["offset"])
    return {"partition": partition, "records": int(result["records"]),
            "after_offset": state["offset"], "next_offset": new_state["offset"]}
