"""Idempotency keys: the same on every retry of the same DAG run, different across runs."""

from __future__ import annotations

import hashlib

MAX_KEY = 250  # the contract's limit


def run_key(dag_run: object, *parts: object) -> str:
    """`<dag_id>:<run_id>:<parts...>`; hashed when it would pass the contract's 250 chars."""
    key = ":".join([str(getattr(dag_run, "dag_id")), str(getattr(dag_run, "run_id")), *map(str, parts)])
    if len(key) <= MAX_KEY:
        return key
    return key[:180] + ":sha256:" + hashlib.sha256(key.encode()).hexdigest()[:60]
