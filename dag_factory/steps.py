"""Ready-made custom steps that specs can name as `python: dag_factory.steps:<name>`.

A python step receives its spec `kwargs` plus any Airflow context key it names as a
parameter (params, ti, dag_run, ...), so these functions stay plain and testable.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

log = logging.getLogger(__name__)


def require_dataset_uri(allowed_prefixes: Sequence[str], dag_run: Any, dag: Any) -> str:
    """Refuse to start training on data from outside the approved locations: checks the
    dataset start_training will use (conf, else the backend's, else the spec's)."""
    from dag_factory.runtime.training import training_inputs

    start = dag.get_task("start_training").op_kwargs
    uri, _ = training_inputs(start["model"], dag_run, start.get("spec_dataset_uri"))
    if not uri:
        raise ValueError("no dataset_uri: the backend gave none and the spec sets none")
    if not any(str(uri).startswith(p) for p in allowed_prefixes):
        raise ValueError(f"dataset_uri {uri!r} is outside the allowed prefixes {list(allowed_prefixes)}")
    log.info("dataset_uri %s is allowed", uri)
    return str(uri)


def log_stream_summary(ti: Any) -> dict[str, int]:
    """Total records this run processed over all partitions (from the mapped tasks' XComs)."""
    results = ti.xcom_pull(task_ids="process_partition", key="return_value") or []
    if isinstance(results, dict):
        results = [results]
    summary = {
        "partitions": len(results),
        "records": sum(int(r.get("records", 0)) for r in results if isinstance(r, Mapping)),
    }
    log.info("stream run processed %(records)d records over %(partitions)d partitions", summary)
    return summary
