"""BackendClient against the real reference backend process, over loopback.

No mocks: failures are injected by the server's admin API, or served by a
tiny stdlib HTTP server for answers the reference backend never gives.
"""

from __future__ import annotations

import json
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator
from urllib.parse import quote

import pytest
import requests

from dag_factory.client import BackendClient, BackendError, BackendUnavailable
from dag_factory.dev.backend.process import RunningBackend, free_port

MODELS = "/api/v1/models"
TOKEN = "garbage-Server-t0ken"  # for clients of servers other than the backend fixture
SEED_SIZE = 3  # models in the conftest backend's seed
JOB_DELAY = 0.2
FAST_RETRY: dict[str, Any] = {"retries": 3, "backoff_factor": 0.01, "timeout": (2.0, 5.0), "max_retry_after": 2.0}


def wait_for_job(get: Callable[[str], dict[str, Any]], job_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll a job until it leaves queued/running (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(job_id)
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")


# --------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------

def test_health_works_without_a_token(backend: RunningBackend) -> None:
    assert requests.get(f"{backend.url}/api/v1/health", timeout=5).json() == {"status": "ok"}
    with backend.client(**FAST_RETRY) as c:
        assert c.health() == {"status": "ok"}


def test_wrong_token_is_401_not_retried_and_never_echoed(backend: RunningBackend, seen) -> None:
    wrong = "wrong-token-Zq9"
    with BackendClient(backend.url, wrong, **FAST_RETRY) as c:
        with pytest.raises(BackendError) as caught:
            c.list_models()
    error = caught.value
    assert error.status == 401 and error.retryable is False
    assert not isinstance(error, BackendUnavailable)
    assert error.call == "GET /api/v1/models"
    assert "GET /api/v1/models" in str(error) and "401" in str(error)
    for text in (str(error), repr(error), str(error.args)):
        assert wrong not in text and backend.token not in text
    assert seen("GET", MODELS) == 1  # a 401 is final: no retry


def test_missing_token_gets_401_and_no_data(backend: RunningBackend) -> None:
    response = requests.get(f"{backend.url}{MODELS}", timeout=5)
    assert response.status_code == 401
    assert set(response.json()) == {"error"}


# --------------------------------------------------------------------------
# Listing and pagination
# --------------------------------------------------------------------------

def test_list_models_reads_every_page(backend: RunningBackend, client: BackendClient, seen) -> None:
    extra = [{"name": f"model_{i:02d}", "status": "active", "version": "v1", "updated_at": "2024-01-01T00:00:00Z"}
             for i in range(8)]
    backend.admin("POST", "/models", extra)
    models = client.list_models(limit=3)
    names = [m["name"] for m in models]
    assert names == sorted(names) and len(names) == len(set(names)) == 11
    assert seen("GET", MODELS) == 4  # 11 records in pages of 3


def test_a_failing_page_fails_the_whole_listing(backend: RunningBackend, client: BackendClient, seen) -> None:
    backend.admin("POST", "/models", [{"name": f"model_{i}", "status": "active"} for i in range(4)])
    attempts = client.retries + 1
    backend.admin("POST", "/faults", {"path_prefix": MODELS, "method": "GET", "skip": 1,
                                      "count": attempts, "status": 500})
    result: list[Any] | None = None
    with pytest.raises(BackendUnavailable) as caught:
        result = client.list_models(limit=2)
    assert result is None  # nothing partial escapes
    assert caught.value.status == 500 and caught.value.retryable
    assert "injected fault" in caught.value.message
    assert seen("GET", MODELS) == 1 + attempts  # page 1 once, page 2 every attempt


def test_a_repeated_page_token_stops_the_listing(garbage: "GarbageServer") -> None:
    garbage.answers[MODELS] = (200, {}, {"models": [{"name": "a"}], "next_page_token": "same"})
    with BackendClient(garbage.url, TOKEN, **FAST_RETRY) as c:
        with pytest.raises(BackendError, match="next_page_token repeated"):
            c.list_models()
    assert garbage.hits[MODELS] == 2


def test_hostile_records_are_returned_as_is(backend: RunningBackend, client: BackendClient) -> None:
    hostile = [
        {"name": "{{ var.value.secret }}", "status": "active", "version": "v1", "updated_at": "now"},
        {"name": 42, "status": ["active"], "version": None},
        {"name": "ok_model", "status": "active", "version": "x" * 10_000, "updated_at": "2024-01-01T00:00:00Z",
         "training": "not-an-object", "streaming": {"partitions": [-1, "0", 1e9]}},
        {"no_name": True},
        "just a string",
        None,
    ]
    backend.admin("PUT", "/models", hostile)
    got = client.list_models(limit=2)
    canonical = sorted(json.dumps(r, sort_keys=True) for r in hostile)
    assert sorted(json.dumps(r, sort_keys=True) for r in got) == canonical
    assert client.get_model("ok_model") == hostile[2]


# --------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------

def test_500s_are_retried_until_success(backend: RunningBackend, client: BackendClient, seen) -> None:
    backend.admin("POST", "/faults", {"path_prefix": MODELS, "count": 2, "status": 500})
    assert len(client.list_models()) == SEED_SIZE
    assert seen("GET", MODELS) == 3


def test_503_on_post_is_retried_and_creates_one_job(backend: RunningBackend, client: BackendClient) -> None:
    path = f"{MODELS}/churn/training-runs"
    backend.admin("POST", "/faults", {"path_prefix": path, "count": 2, "status": 503})
    run = client.start_training("churn", idempotency_key="post-retry-1")
    jobs = backend.admin("GET", "/jobs", params={"model": "churn"})["jobs"]
    assert [j["id"] for j in jobs] == [run["id"]]


def test_429_retry_after_is_honoured(backend: RunningBackend, client: BackendClient, seen) -> None:
    backend.admin("POST", "/faults", {"path_prefix": MODELS, "count": 1, "status": 429, "retry_after": "1"})
    started = time.monotonic()
    client.list_models()
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5
    assert seen("GET", MODELS) == 2


def test_a_huge_retry_after_is_capped(backend: RunningBackend) -> None:
    backend.admin("POST", "/faults", {"path_prefix": MODELS, "count": 2, "status": 429, "retry_after": "86400"})
    with backend.client(**{**FAST_RETRY, "max_retry_after": 0.3}) as c:
        started = time.monotonic()
        assert len(c.list_models()) == SEED_SIZE
        assert time.monotonic() - started < 3


def test_a_garbled_retry_after_falls_back_to_backoff(backend: RunningBackend, client: BackendClient) -> None:
    backend.admin("POST", "/faults", {"path_prefix": MODELS, "count": 1, "status": 503, "retry_after": "soon-ish"})
    started = time.monotonic()
    assert len(client.list_models()) == SEED_SIZE
    assert time.monotonic() - started < 3


def test_429_forever_ends_as_backend_unavailable(backend: RunningBackend, client: BackendClient, seen) -> None:
    backend.admin("POST", "/faults", {"path_prefix": MODELS, "count": 50, "status": 429, "retry_after": "0"})
    with pytest.raises(BackendUnavailable) as caught:
        client.list_models()
    assert caught.value.status == 429 and caught.value.retryable
    assert seen("GET", MODELS) == client.retries + 1


def test_404_is_final_and_not_retried(backend: RunningBackend, client: BackendClient, seen) -> None:
    with pytest.raises(BackendError) as caught:
        client.get_model("absent_model")
    assert caught.value.status == 404 and not caught.value.retryable
    assert "absent_model" in caught.value.message
    assert seen("GET", f"{MODELS}/absent_model") == 1


def test_a_read_timeout_on_post_is_retried_with_the_same_key(backend: RunningBackend) -> None:
    path = f"{MODELS}/fraud/training-runs"
    backend.admin("POST", "/faults", {"path_prefix": path, "count": 1, "delay": 1.0})
    with backend.client(**{**FAST_RETRY, "timeout": (2.0, 0.4)}) as c:
        run = c.start_training("fraud", idempotency_key="slow-post-1")
    time.sleep(1.0)  # the first, delayed attempt completes now: it must replay, not create
    jobs = backend.admin("GET", "/jobs", params={"model": "fraud"})["jobs"]
    assert [j["id"] for j in jobs] == [run["id"]]
    log = backend.admin("GET", "/requests", params={"path": path, "method": "POST"})["requests"]
    assert [r["idempotency_key"] for r in log] == ["slow-post-1", "slow-post-1"]


def test_connection_refused_is_backend_unavailable_after_bounded_retries() -> None:
    port = free_port()
    with BackendClient(f"http://127.0.0.1:{port}", TOKEN, retries=3, backoff_factor=0.05) as c:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as caught:
            c.list_models()
        elapsed = time.monotonic() - started
    error = caught.value
    assert error.status is None and error.retryable
    assert "Connection refused" in str(error) and f"127.0.0.1:{port}" in str(error)
    assert "after 3 retries" in str(error)
    assert TOKEN not in str(error) + repr(error)
    assert elapsed < 3  # backoff 0, 0.1, 0.2


def test_backend_errors_survive_pickling() -> None:
    error = BackendUnavailable("GET /api/v1/health", 503, "down")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is BackendUnavailable and repr(copy) == repr(error)


# --------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------

def test_same_idempotency_key_gives_the_same_job(backend: RunningBackend, client: BackendClient) -> None:
    first = client.start_training("churn", idempotency_key="train-churn-2024-01-01", reason="schedule")
    again = client.start_training("churn", idempotency_key="train-churn-2024-01-01", reason="schedule")
    assert again["id"] == first["id"] and again["model_version"] == first["model_version"]
    jobs = backend.admin("GET", "/jobs", params={"model": "churn", "kind": "training"})["jobs"]
    assert len(jobs) == 1 and jobs[0]["idempotency_key"] == "train-churn-2024-01-01"


def test_reusing_a_key_for_another_request_is_an_error(client: BackendClient) -> None:
    client.start_training("churn", idempotency_key="k-reuse", reason="a")
    with pytest.raises(BackendError) as caught:
        client.start_training("churn", idempotency_key="k-reuse", reason="b")
    assert caught.value.status == 409 and not caught.value.retryable


def test_training_run_succeeds_with_metrics_and_a_new_version(backend: RunningBackend, client: BackendClient) -> None:
    backend.admin("PUT", "/models/demand/training-metrics", {"metrics": {"mape": 0.12}})
    run = client.start_training("demand", idempotency_key="t-demand-1", dataset_uri="s3://d/x.parquet",
                                hyperparameters={"depth": 6})
    assert run["status"] == "queued" and run["model_version"] == "v2"
    done = wait_for_job(client.get_training_run, run["id"])
    assert done == {**done, "status": "succeeded", "model_version": "v2", "metrics": {"mape": 0.12}}
    second = client.start_training("demand", idempotency_key="t-demand-2")
    assert second["model_version"] == "v3"


def test_injected_training_failure(backend: RunningBackend, client: BackendClient) -> None:
    backend.admin("POST", "/models/churn/fail-training", {"error": "OOM on worker 3"})
    run = client.start_training("churn", idempotency_key="t-fail-1")
    done = wait_for_job(client.get_training_run, run["id"])
    assert done["status"] == "failed" and done["error"] == "OOM on worker 3" and "metrics" not in done
    retry = client.start_training("churn", idempotency_key="t-fail-2")  # only the next one fails
    assert wait_for_job(client.get_training_run, retry["id"])["status"] == "succeeded"


def test_deployment_smoke_metrics_failure_and_rollback(backend: RunningBackend, client: BackendClient) -> None:
    ok = client.deploy("fraud", version="v7", target="staging", idempotency_key="d-1")
    done = wait_for_job(client.get_deployment, ok["id"])
    assert done["status"] == "succeeded" and done["model_version"] == "v7"
    assert done["metrics"] == {"success_rate": 1.0, "p99_latency_ms": 40.0}

    backend.admin("PUT", "/targets/prod/smoke", {"metrics": {"success_rate": 0.5, "p99_latency_ms": 900.0}})
    bad = wait_for_job(client.get_deployment, client.deploy("fraud", version="v7", target="prod",
                                                            idempotency_key="d-2")["id"])
    assert bad["metrics"]["success_rate"] == 0.5
    rolled = client.rollback(bad["id"], idempotency_key="rb-1")
    assert rolled["status"] == "rolled_back"
    assert client.get_deployment(bad["id"])["status"] == "rolled_back"

    backend.admin("POST", "/models/fraud/fail-deployment", {"target": "prod", "error": "image pull failed"})
    failed = wait_for_job(client.get_deployment, client.deploy("fraud", version="v8", target="prod",
                                                               idempotency_key="d-3")["id"])
    assert failed["status"] == "failed" and failed["error"] == "image pull failed"


def test_unknown_job_ids_are_404(client: BackendClient) -> None:
    for get in (client.get_training_run, client.get_deployment):
        with pytest.raises(BackendError) as caught:
            get("no-such-job")
        assert caught.value.status == 404


def test_path_parameters_are_checked_and_quoted(backend: RunningBackend, client: BackendClient, seen) -> None:
    for bad in ("../_admin", "Churn", "", "a/b", "x" * 64):
        with pytest.raises(ValueError):
            client.get_model(bad)
    with pytest.raises(BackendError) as caught:
        client.get_training_run("a/b?c=d")
    assert caught.value.status == 404
    assert seen("GET", "/api/v1/training-runs/a/b?c=d") == 1  # one segment, quoted
    with pytest.raises(ValueError):
        client.get_deployment("..")


# --------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------

def test_stream_batches_process_each_record_exactly_once(backend: RunningBackend, client: BackendClient) -> None:
    backend.admin("PUT", "/streams/churn/1", {"length": 50})
    offset, batches = -1, 0
    while batches < 100:
        key = f"churn-1-after-{offset}"
        batch = client.process_stream_batch("churn", partition=1, after_offset=offset, max_records=7,
                                            idempotency_key=key)
        replay = client.process_stream_batch("churn", partition=1, after_offset=offset, max_records=7,
                                             idempotency_key=key)  # a retried task
        assert replay == batch
        batches += 1
        if batch["records"] == 0:
            assert batch["next_offset"] == offset
            break
        offset = batch["next_offset"]
    assert offset == 49 and batches == 9  # 7 full batches, one of 1, one empty
    stats = backend.admin("GET", "/streams/churn", params={"raw": "true"})["1"]
    assert stats["processed"] == 50 and stats["duplicates"] == 0 and stats["missing"] == 0
    assert set(stats["counts"].values()) == {1}

    backend.admin("POST", "/streams/churn/1/append", {"count": 5})
    more = client.process_stream_batch("churn", partition=1, after_offset=49, max_records=100,
                                       idempotency_key="churn-1-after-49-again")
    assert more == {"partition": 1, "records": 5, "next_offset": 54}


# --------------------------------------------------------------------------
# Airflow connection
# --------------------------------------------------------------------------

def test_from_connection_reads_the_uri_env_var(backend: RunningBackend, monkeypatch) -> None:
    token = quote(backend.token, safe="")
    monkeypatch.setenv("AIRFLOW_CONN_MODEL_BACKEND", f"http://:{token}@127.0.0.1:{backend.port}")
    with BackendClient.from_connection(**FAST_RETRY) as c:
        assert c.base_url == backend.url
        assert len(c.list_models()) == SEED_SIZE
        assert backend.token not in repr(c)


def test_from_connection_reads_the_json_env_var(backend: RunningBackend, monkeypatch) -> None:
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": backend.port, "schema": "http",
            "password": backend.token}
    monkeypatch.setenv("AIRFLOW_CONN_OTHER_BACKEND", json.dumps(conn))
    with BackendClient.from_connection("other_backend") as c:
        assert c.get_model("fraud")["name"] == "fraud"


# --------------------------------------------------------------------------
# Answers the reference backend never gives
# --------------------------------------------------------------------------

class GarbageServer:
    """A loopback HTTP server answering ``answers[path] = (status, headers, body)``."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, dict[str, str], Any]] = {}
        self.hits: dict[str, int] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?")[0]
                owner.hits[path] = owner.hits.get(path, 0) + 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, body = owner.answers.get(path, (404, {}, {"error": "nothing here"}))
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def garbage() -> Iterator[GarbageServer]:
    server = GarbageServer()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("path", "body", "call"),
    [
        (MODELS, b"<html>proxy error</html>", lambda c: c.list_models()),
        (MODELS, {"models": "nope", "next_page_token": None}, lambda c: c.list_models()),
        (MODELS, {"models": [], "next_page_token": 7}, lambda c: c.list_models()),
        (f"{MODELS}/churn", ["not", "an", "object"], lambda c: c.get_model("churn")),
        (f"{MODELS}/churn/training-runs", {"id": "x", "status": "exploded"},
         lambda c: c.start_training("churn", idempotency_key="k")),
        ("/api/v1/training-runs/x", {"status": "succeeded"}, lambda c: c.get_training_run("x")),
        ("/api/v1/deployments/x", {"id": "x", "status": "succeeded", "metrics": {"success_rate": "high"}},
         lambda c: c.get_deployment("x")),
        (f"{MODELS}/churn/stream-batches", {"partition": 0, "records": 3, "next_offset": 5},
         lambda c: c.process_stream_batch("churn", partition=0, after_offset=10, max_records=3,
                                          idempotency_key="k")),
        (f"{MODELS}/churn/stream-batches", {"partition": 1, "records": 3, "next_offset": 13},
         lambda c: c.process_stream_batch("churn", partition=0, after_offset=10, max_records=3,
                                          idempotency_key="k")),
        ("/api/v1/health", {"status": "degraded"}, lambda c: c.health()),
    ],
)
def test_answers_off_contract_are_backend_errors(garbage: GarbageServer, path: str, body: Any, call) -> None:
    garbage.answers[path] = (200, {}, body)
    with BackendClient(garbage.url, TOKEN, **FAST_RETRY) as c:
        with pytest.raises(BackendError, match="invalid response from backend") as caught:
            call(c)
    assert caught.value.status == 200 and not caught.value.retryable


def test_a_backend_echoing_the_token_has_it_scrubbed(garbage: GarbageServer) -> None:
    garbage.answers[MODELS] = (400, {}, {"error": f"bad request from Bearer {TOKEN}\n" + "x" * 5000})
    with BackendClient(garbage.url, TOKEN, **FAST_RETRY) as c:
        with pytest.raises(BackendError) as caught:
            c.list_models()
    text = str(caught.value) + repr(caught.value)
    assert TOKEN not in text and "***" in text and len(caught.value.message) <= 300 and "\n" not in text


def test_a_redirect_is_not_followed(garbage: GarbageServer) -> None:
    garbage.answers[MODELS] = (302, {"Location": "http://127.0.0.2:9/steal"}, {"error": "moved"})
    with BackendClient(garbage.url, TOKEN, **FAST_RETRY) as c:
        with pytest.raises(BackendError, match="unexpected redirect") as caught:
            c.list_models()
    assert caught.value.status == 302


def test_jobs_poll_until_done_within_job_delay(client: BackendClient) -> None:
    run = client.start_training("fraud", idempotency_key="poll-1")
    started = time.monotonic()
    assert wait_for_job(client.get_training_run, run["id"])["status"] == "succeeded"
    assert time.monotonic() - started < JOB_DELAY + 2
