"""Every backend call ends within its overall deadline, whatever the backend does: a body
trickled a byte at a time, or slow failures retried over and over. Real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any, Callable, Iterator

import pytest

from dag_factory.client import BackendClient, BackendUnavailable
from dag_factory.dev.backend.process import RunningBackend, start_backend
from dag_factory.dev.backend.seed import seed_records

TOKEN = "deadline-t0ken"
DEADLINE = 3.0
BOUND = 15.0  # proves termination; a call without a deadline takes 30 s here (see TrickleServer)
TRICKLE_GAP = 0.5
JOB = json.dumps({"id": "job-1", "status": "succeeded", "model_version": "v2"}).encode()
BATCH = json.dumps({"partition": 0, "records": 0, "next_offset": 5}).encode()
PAGE = json.dumps({"models": [], "next_page_token": None}).encode()


class TrickleServer:
    """A loopback HTTP server that sends headers at once, then the body one byte every
    TRICKLE_GAP seconds (60 bytes at most: 30 s, so a client without a deadline ends too).
    Connections after the first `trickled` are answered at once."""

    def __init__(self, body: bytes, trickled: int = 10**6, head_too: bool = False) -> None:
        self.body = body.ljust(60)
        self.trickled = trickled
        self.head_too = head_too  # trickle the status line and headers as well
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            slow = self.connections <= self.trickled
            threading.Thread(target=self._answer, args=(conn, slow), daemon=True).start()

    def _answer(self, conn: socket.socket, slow: bool) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
                    "Connection: close\r\n\r\n").encode()
            try:
                if not slow:
                    conn.sendall(head + self.body)
                    return
                if not self.head_too:
                    conn.sendall(head)
                for byte in (head + self.body if self.head_too else self.body):
                    if self._stop.wait(TRICKLE_GAP):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return  # the client gave up: what the deadline is for

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def trickle(request) -> Iterator[Callable[..., TrickleServer]]:
    servers: list[TrickleServer] = []

    def make(body: bytes, trickled: int = 10**6, head_too: bool = False) -> TrickleServer:
        servers.append(TrickleServer(body, trickled, head_too))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def timed(call: Callable[[], Any]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


CALLS = {
    "sync listing": (PAGE, lambda c: c.list_models()),
    "start training": (JOB, lambda c: c.start_training("churn", idempotency_key="k1")),
    "poll training": (JOB, lambda c: c.get_training_run("job-1")),
    "deploy": (JOB, lambda c: c.deploy("churn", version="v2", target="staging", idempotency_key="k2")),
    "poll deployment": (JOB, lambda c: c.get_deployment("job-1")),
    "stream batch": (BATCH, lambda c: c.process_stream_batch("churn", partition=0, after_offset=4, max_records=1,
                                                             idempotency_key="k3")),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_trickled_body_ends_at_the_deadline(trickle, name: str) -> None:
    body, call = CALLS[name]
    server = trickle(body)
    with BackendClient(server.url, TOKEN, deadline=DEADLINE, retries=2, timeout=(2.0, 5.0)) as client:
        elapsed, error = timed(lambda: call(client))
    assert isinstance(error, BackendUnavailable), error
    assert error.retryable and f"deadline of {DEADLINE:g}s" in str(error)
    assert elapsed < BOUND, f"{name} took {elapsed:.1f}s"


def test_trickled_headers_end_at_the_deadline_too(trickle) -> None:
    server = trickle(PAGE, head_too=True)  # ~170 bytes at 2/s: 85 s without a deadline
    with BackendClient(server.url, TOKEN, deadline=DEADLINE, retries=2, timeout=(2.0, 5.0)) as client:
        elapsed, error = timed(client.list_models)
    assert isinstance(error, BackendUnavailable), error
    assert f"deadline of {DEADLINE:g}s" in str(error)
    assert elapsed < BOUND, f"the listing took {elapsed:.1f}s"


@pytest.fixture(scope="module")
def backend() -> Iterator[RunningBackend]:
    seed = seed_records([("churn", "churn_predictor")], targets=["staging"], partitions=[0], batch_size=10)
    with start_backend(token=TOKEN, job_delay=0.2, seed=seed) as running:
        yield running


def test_slow_failures_retried_again_and_again_end_at_the_deadline(backend: RunningBackend) -> None:
    backend.admin("POST", "/reset", {})
    backend.admin("POST", "/faults", {"path_prefix": "/api/v1/models", "count": 20, "status": 503, "delay": 1.0})
    with backend.client(deadline=DEADLINE, retries=20, backoff_factor=0.01, timeout=(2.0, 5.0)) as client:
        elapsed, error = timed(client.list_models)
    assert isinstance(error, BackendUnavailable), error
    assert f"deadline of {DEADLINE:g}s" in str(error), error
    assert elapsed < BOUND, f"the listing took {elapsed:.1f}s"
    requests_seen = backend.admin("GET", "/requests", params={"path": "/api/v1/models", "method": "GET"})
    assert 2 <= requests_seen["counts"]["GET /api/v1/models"] < 20  # it retried, then the deadline stopped it


def test_a_call_within_its_deadline_still_works(backend: RunningBackend) -> None:
    backend.admin("POST", "/reset", {})
    with backend.client(deadline=DEADLINE) as client:
        assert [m["name"] for m in client.list_models()] == ["churn"]


def test_the_connection_extra_overrides_the_deadline_setting(backend: RunningBackend, monkeypatch) -> None:
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": backend.port, "password": TOKEN,
            "extra": {"deadline": 7}}
    monkeypatch.setenv("AIRFLOW_CONN_DEADLINE_BACKEND", json.dumps(conn))
    monkeypatch.setenv("DAG_FACTORY_BACKEND_DEADLINE", "45")
    with BackendClient.from_connection("deadline_backend") as client:
        assert client.deadline == 7.0
    monkeypatch.setenv("AIRFLOW_CONN_DEADLINE_BACKEND", json.dumps({**conn, "extra": {}}))
    with BackendClient.from_connection("deadline_backend") as client:
        assert client.deadline == 45.0


def test_the_triggerer_poll_is_cut_at_the_deadline_and_polls_again(trickle, monkeypatch) -> None:
    from dag_factory.runtime.jobs import BackendJobTrigger

    server = trickle(JOB, trickled=1)  # the first poll trickles, the next one answers
    port = int(server.url.rsplit(":", 1)[1])
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "password": TOKEN,
            "extra": {"deadline": DEADLINE}}
    monkeypatch.setenv("AIRFLOW_CONN_TRICKLE_BACKEND", json.dumps(conn))
    trigger = BackendJobTrigger("training", "job-1", conn_id="trickle_backend", poll_interval=1.0)

    async def first_event() -> Any:
        async for event in trigger.run():
            return event

    started = time.monotonic()
    event = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    elapsed = time.monotonic() - started
    assert event.payload == {"job": json.loads(JOB)}
    assert server.connections >= 2
    assert elapsed < BOUND, f"the trigger's poll took {elapsed:.1f}s"


def test_the_sync_task_has_an_execution_timeout(monkeypatch) -> None:
    from datetime import timedelta

    from dag_factory.builders.sync_dag import build_sync_dag

    assert build_sync_dag().get_task("sync_live_models").execution_timeout == timedelta(minutes=4)
    monkeypatch.setenv("DAG_FACTORY_SYNC_TIMEOUT", "90s")
    assert build_sync_dag().get_task("sync_live_models").execution_timeout == timedelta(seconds=90)
