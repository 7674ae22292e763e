"""Fixtures for the backend tests: one real server process per test module,
reset before every test, and clients tuned to retry fast."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from dag_factory.client import BackendClient
from dag_factory.dev.backend.process import RunningBackend, start_backend
from dag_factory.dev.backend.seed import seed_records

TOKEN = "t0ken-Secret-abc123"
JOB_DELAY = 0.2
SEED_NAMES = [("churn", "churn_predictor"), ("demand", "demand_forecast"), ("fraud", "fraud_scorer")]
SEED = seed_records(SEED_NAMES, targets=["staging", "prod"], partitions=[0, 1], batch_size=10)
FAST_RETRY = {"retries": 3, "backoff_factor": 0.01, "timeout": (2.0, 5.0), "max_retry_after": 2.0}


@pytest.fixture(scope="module")
def backend_process() -> Iterator[RunningBackend]:
    """The module's backend process (started once: a start costs about a second)."""
    with start_backend(token=TOKEN, job_delay=JOB_DELAY, seed=SEED) as running:
        yield running


@pytest.fixture
def backend(backend_process: RunningBackend) -> RunningBackend:
    """The module's backend, back in its seeded state and running."""
    if not backend_process.is_running():
        backend_process.start()
    backend_process.admin("POST", "/reset", {})
    return backend_process


@pytest.fixture
def client(backend: RunningBackend) -> Iterator[BackendClient]:
    """A client that retries quickly, so failure paths stay fast."""
    with backend.client(**FAST_RETRY) as c:
        yield c


@pytest.fixture
def seen(backend: RunningBackend) -> Callable[[str, str], int]:
    """``seen("GET", path)``: how many such requests reached the backend."""

    def count(method: str, path: str) -> int:
        answer = backend.admin("GET", "/requests", params={"path": path, "method": method})
        return answer["counts"].get(f"{method} {path}", 0)

    return count
