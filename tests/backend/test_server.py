"""The reference backend itself: contract rules, admin API, persistence, process handling.

Raw HTTP (``requests``) against the real server process on loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from dag_factory.client import BackendUnavailable
from dag_factory.dev.backend.process import IMPORT_ROOT, RunningBackend, free_port, start_backend
from dag_factory.dev.backend.seed import seed_records
from dag_factory.dev.backend.server import main
from dag_factory.dev.backend.state import batch_range, is_loopback, job_status, merge_patch

MODELS = "/api/v1/models"


def call(backend: RunningBackend, method: str, path: str, *, key: str | None = None, token: str | None = "",
         **kwargs: Any) -> requests.Response:
    """One raw request; ``token=""`` means the right one, None means none."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token or backend.token}"
    if key is not None:
        headers["Idempotency-Key"] = key
    return requests.request(method, backend.url + path, headers=headers, timeout=10, **kwargs)


# --------------------------------------------------------------------------
# Authentication and errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", MODELS), ("GET", f"{MODELS}/churn"), ("POST", f"{MODELS}/churn/training-runs"),
        ("GET", "/api/v1/training-runs/x"), ("POST", f"{MODELS}/churn/deployments"),
        ("GET", "/api/v1/deployments/x"), ("POST", "/api/v1/deployments/x/rollback"),
        ("POST", f"{MODELS}/churn/stream-batches"), ("GET", "/_admin/models"), ("POST", "/_admin/reset"),
        ("GET", "/no/such/route"), ("GET", "/docs"), ("GET", "/openapi.json"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Bearer ", "Basic x", "t0ken-Secret-abc123"])
def test_everything_but_health_needs_the_token(backend: RunningBackend, method: str, path: str,
                                               authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = call(backend, method, path, key="k", token=None, headers=headers, json={})
    assert response.status_code == 401
    assert response.json() == {"error": "missing or invalid bearer token"}
    assert "churn" not in response.text


def test_errors_are_json_with_an_error_field(backend: RunningBackend) -> None:
    for method, path in (("GET", "/no/such/route"), ("DELETE", MODELS), ("GET", f"{MODELS}/NotAName")):
        response = call(backend, method, path)
        assert response.status_code in (404, 405)
        assert isinstance(response.json()["error"], str)


# --------------------------------------------------------------------------
# Idempotency
# --------------------------------------------------------------------------

def test_posts_need_an_idempotency_key(backend: RunningBackend) -> None:
    for path, body in ((f"{MODELS}/churn/training-runs", {}),
                       (f"{MODELS}/churn/stream-batches", {"partition": 0, "after_offset": -1})):
        assert call(backend, "POST", path, json=body).status_code == 400
        assert call(backend, "POST", path, key="x" * 251, json=body).status_code == 400
    assert backend.admin("GET", "/jobs")["jobs"] == []


def test_a_replay_returns_the_first_answer_exactly(backend: RunningBackend) -> None:
    path = f"{MODELS}/churn/training-runs"
    first = call(backend, "POST", path, key="same", json={"reason": "r"})
    time.sleep(0.3)  # the job has finished by now; the replay still says what the first answer said
    again = call(backend, "POST", path, key="same", json={"reason": "r"})
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and first.json()["status"] == "queued"
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(backend.admin("GET", "/jobs")["jobs"]) == 1


def test_a_key_reused_for_another_request_is_409(backend: RunningBackend) -> None:
    assert call(backend, "POST", f"{MODELS}/churn/training-runs", key="k1", json={}).status_code == 201
    assert call(backend, "POST", f"{MODELS}/demand/training-runs", key="k1", json={}).status_code == 409
    assert call(backend, "POST", f"{MODELS}/churn/training-runs", key="k1",
                json={"reason": "other"}).status_code == 409
    assert len(backend.admin("GET", "/jobs")["jobs"]) == 1


def test_failed_posts_are_not_remembered(backend: RunningBackend) -> None:
    path = f"{MODELS}/brand_new/training-runs"
    assert call(backend, "POST", path, key="later", json={}).status_code == 404
    backend.admin("POST", "/models", {"name": "brand_new", "status": "active", "version": "v4"})
    created = call(backend, "POST", path, key="later", json={})
    assert created.status_code == 201 and created.json()["model_version"] == "v5"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"{MODELS}/churn/training-runs", {"hyperparameters": [1, 2]}),
        (f"{MODELS}/churn/training-runs", {"dataset_uri": 5}),
        (f"{MODELS}/churn/deployments", {"version": "v2"}),
        (f"{MODELS}/churn/deployments", {"version": "", "target": "prod"}),
        (f"{MODELS}/churn/deployments", {"version": "v2", "target": "Prod!"}),
        (f"{MODELS}/churn/stream-batches", {"partition": -1, "after_offset": -1}),
        (f"{MODELS}/churn/stream-batches", {"partition": True, "after_offset": -1}),
        (f"{MODELS}/churn/stream-batches", {"partition": 0, "after_offset": -2}),
        (f"{MODELS}/churn/stream-batches", {"partition": 0, "after_offset": 0, "max_records": 0}),
        (f"{MODELS}/churn/stream-batches", "not json {"),
    ],
)
def test_bad_bodies_are_422(backend: RunningBackend, path: str, body: Any) -> None:
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    response = call(backend, "POST", path, key="bad-body", **kwargs)
    assert response.status_code == 422 and response.json()["error"]


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

def test_pagination_is_ordered_opaque_and_etagged(backend: RunningBackend) -> None:
    backend.admin("POST", "/models", [{"name": n, "status": "active"} for n in ("zeta", "alpha", "mid")])
    names, token, etags = [], None, []
    for _ in range(10):
        params = {"limit": 2, **({"page_token": token} if token else {})}
        response = call(backend, "GET", MODELS, params=params)
        assert response.status_code == 200
        etags.append(response.headers["ETag"])
        names += [m["name"] for m in response.json()["models"]]
        token = response.json()["next_page_token"]
        if token is None:
            break
    assert names == ["alpha", "churn", "demand", "fraud", "mid", "zeta"]
    assert len(set(etags)) == 3
    assert call(backend, "GET", MODELS, params={"limit": 2}).headers["ETag"] == etags[0]
    backend.admin("PATCH", "/models/alpha", {"version": "v9"})
    assert call(backend, "GET", MODELS, params={"limit": 2}).headers["ETag"] != etags[0]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"page_token": "garbage!"}])
def test_bad_listing_parameters_are_400(backend: RunningBackend, params: dict[str, Any]) -> None:
    response = call(backend, "GET", MODELS, params=params)
    assert response.status_code == 400 and response.json()["error"]


def test_invalid_names_in_paths_are_404(backend: RunningBackend) -> None:
    backend.admin("POST", "/models", {"name": "Bad Name", "status": "active"})
    for name in ("Bad%20Name", "x" * 64, "9lives"):
        assert call(backend, "GET", f"{MODELS}/{name}").status_code == 404
        assert call(backend, "POST", f"{MODELS}/{name}/training-runs", key=f"k-{name}", json={}).status_code == 404


def test_admin_patch_delete_and_retire(backend: RunningBackend) -> None:
    patched = backend.admin("PATCH", "/models/churn", {"version": "v3", "training": {"schedule": "@daily"},
                                                       "spec": None})
    model = call(backend, "GET", f"{MODELS}/churn").json()
    assert model == patched["model"] and model["version"] == "v3" and "spec" not in model
    assert model["training"]["schedule"] == "@daily" and model["training"]["dataset_uri"]
    assert model["updated_at"].endswith("Z")

    backend.admin("PATCH", "/models/churn", {"status": "retired"})
    response = call(backend, "POST", f"{MODELS}/churn/training-runs", key="after-retire", json={})
    assert response.status_code == 409
    assert backend.admin("DELETE", "/models/churn") == {"deleted": 1}
    assert call(backend, "GET", f"{MODELS}/churn").status_code == 404
    with pytest.raises(RuntimeError, match="404"):
        backend.admin("PATCH", "/models/churn", {"status": "active"})


def test_hostile_names_are_addressable_by_admin(backend: RunningBackend) -> None:
    name = "{{ var.value.secret }}/../x"
    backend.admin("POST", "/models", {"name": name, "status": "active"})
    backend.admin("PATCH", "/models/" + requests.utils.quote(name, safe=""), {"version": "v2"})
    stored = [m for m in backend.admin("GET", "/models")["models"] if m.get("name") == name]
    assert stored == [{"name": name, "status": "active", "version": "v2", "updated_at": stored[0]["updated_at"]}]


# --------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------

def test_job_status_by_age() -> None:
    status = [job_status(now=t, created_at=0.0, delay=1.0, failed=False, rolled_back=False)
              for t in (0.0, 0.49, 0.5, 0.99, 1.0, 50.0)]
    assert status == ["queued", "queued", "running", "running", "succeeded", "succeeded"]
    assert job_status(now=9, created_at=0, delay=1, failed=True, rolled_back=False) == "failed"
    assert job_status(now=0, created_at=0, delay=1, failed=True, rolled_back=True) == "rolled_back"
    assert job_status(now=0, created_at=0, delay=0, failed=False, rolled_back=False) == "succeeded"


def test_jobs_move_through_their_states(backend: RunningBackend) -> None:
    backend.admin("PUT", "/settings", {"job_delay": 0.6})
    job = call(backend, "POST", f"{MODELS}/fraud/training-runs", key="states", json={}).json()
    seen = [job["status"]]
    deadline = time.monotonic() + 5
    while seen[-1] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
        status = call(backend, "GET", f"/api/v1/training-runs/{job['id']}").json()["status"]
        if status != seen[-1]:
            seen.append(status)
    assert seen == ["queued", "running", "succeeded"]


def test_a_job_is_held_and_released_by_its_delay(backend: RunningBackend) -> None:
    backend.admin("PUT", "/settings", {"job_delay": 0})
    job = call(backend, "POST", f"{MODELS}/churn/deployments", key="hold", json={"version": "v1",
                                                                                 "target": "staging"}).json()
    assert backend.admin("PATCH", f"/jobs/{job['id']}", {"delay": 600})["status"] == "queued"
    assert call(backend, "GET", f"/api/v1/deployments/{job['id']}").json()["status"] == "queued"
    assert backend.admin("PATCH", f"/jobs/{job['id']}", {"delay": 0})["status"] == "succeeded"
    for body, status in (({"delay": -1}, 422), ({"delay": "1"}, 422), ({}, 422)):
        assert call(backend, "PATCH", f"/_admin/jobs/{job['id']}", json=body).status_code == status
    assert call(backend, "PATCH", "/_admin/jobs/nope", json={"delay": 1}).status_code == 404


def test_versions_count_per_model(backend: RunningBackend) -> None:
    def train(model: str, key: str) -> str:
        return call(backend, "POST", f"{MODELS}/{model}/training-runs", key=key, json={}).json()["model_version"]

    assert [train("churn", "a"), train("churn", "b"), train("demand", "c"), train("churn", "d")] == \
        ["v2", "v3", "v2", "v4"]
    jobs = backend.admin("GET", "/jobs", params={"model": "churn", "kind": "training"})["jobs"]
    assert [j["idempotency_key"] for j in jobs] == ["a", "b", "d"]


def test_rollback_of_unknown_deployment_is_404(backend: RunningBackend) -> None:
    assert call(backend, "POST", "/api/v1/deployments/nope/rollback", key="rb", json={}).status_code == 404
    training = call(backend, "POST", f"{MODELS}/churn/training-runs", key="t", json={}).json()
    assert call(backend, "POST", f"/api/v1/deployments/{training['id']}/rollback", key="rb2").status_code == 404
    assert call(backend, "GET", f"/api/v1/deployments/{training['id']}").status_code == 404


# --------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------

def test_batch_range() -> None:
    assert batch_range(-1, 10, 1000) == (0, 9)
    assert batch_range(995, 10, 1000) == (996, 999)
    assert batch_range(999, 10, 1000) == (1000, 999)  # empty
    assert batch_range(-1, 10, 0) == (0, -1)  # empty log


def test_reprocessing_under_a_new_key_is_counted_as_duplicate(backend: RunningBackend) -> None:
    path = f"{MODELS}/demand/stream-batches"
    body = {"partition": 0, "after_offset": -1, "max_records": 5}
    assert call(backend, "POST", path, key="s1", json=body).json() == {"partition": 0, "records": 5,
                                                                        "next_offset": 4}
    call(backend, "POST", path, key="s1", json=body)  # replay: not processed again
    call(backend, "POST", path, key="s2", json=body)  # a new key: processed again
    stats = backend.admin("GET", "/streams/demand", params={"raw": "true"})
    assert stats == {"0": {"processed": 5, "duplicates": 5, "max_offset": 4, "missing": 0, "length": 1000,
                           "counts": {str(i): 2 for i in range(5)}}}
    call(backend, "POST", path, key="s3", json={"partition": 0, "after_offset": 9, "max_records": 1})
    assert backend.admin("GET", "/streams/demand")["0"]["missing"] == 5  # offsets 5..9 skipped


def test_batch_size_defaults_to_the_records_streaming_config(backend: RunningBackend) -> None:
    answer = call(backend, "POST", f"{MODELS}/fraud/stream-batches", key="bs",
                  json={"partition": 1, "after_offset": 99}).json()
    assert answer == {"partition": 1, "records": 10, "next_offset": 109}  # seed batch_size 10


def test_stream_length_setting_and_empty_partitions(backend: RunningBackend) -> None:
    backend.admin("PUT", "/settings", {"stream_length": 3})
    path = f"{MODELS}/churn/stream-batches"
    assert call(backend, "POST", path, key="a", json={"partition": 7, "after_offset": -1,
                                                       "max_records": 10}).json()["next_offset"] == 2
    assert call(backend, "POST", path, key="b", json={"partition": 7, "after_offset": 2}).json() == \
        {"partition": 7, "records": 0, "next_offset": 2}
    assert call(backend, "POST", f"{MODELS}/nobody/stream-batches", key="c",
                json={"partition": 0, "after_offset": -1}).status_code == 404


# --------------------------------------------------------------------------
# Faults and the request log
# --------------------------------------------------------------------------

def test_fault_skip_count_method_and_admin_immunity(backend: RunningBackend) -> None:
    backend.admin("POST", "/faults", {"path_prefix": "/api/v1/models", "method": "get", "skip": 1, "count": 2,
                                      "status": 503, "retry_after": "7"})
    backend.admin("POST", "/faults", {"path_prefix": "/_admin", "count": 5, "status": 500})
    assert len(backend.admin("GET", "/faults")["faults"]) == 2
    statuses = [call(backend, "GET", MODELS).status_code for _ in range(4)]
    assert statuses == [200, 503, 503, 200]
    backend.admin("POST", "/faults", {"path_prefix": "/api/v1/models", "method": "GET", "count": 1, "status": 429,
                                      "retry_after": "7"})
    response = call(backend, "GET", f"{MODELS}/churn")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert call(backend, "POST", f"{MODELS}/churn/training-runs", key="p", json={}).status_code == 201
    backend.admin("DELETE", "/faults")
    assert backend.admin("GET", "/faults")["faults"] == []


def test_delay_faults_delay(backend: RunningBackend) -> None:
    backend.admin("POST", "/faults", {"path_prefix": "/api/v1/health", "count": 1, "delay": 0.5})
    started = time.monotonic()
    assert call(backend, "GET", "/api/v1/health").status_code == 200
    assert 0.45 <= time.monotonic() - started < 3
    with pytest.raises(RuntimeError, match="422"):
        backend.admin("POST", "/faults", {"path_prefix": "/api", "count": 1})


def test_request_log_counts_and_never_stores_the_token(backend: RunningBackend) -> None:
    call(backend, "GET", MODELS, params={"limit": 5})
    call(backend, "GET", MODELS, token=None)
    log = backend.admin("GET", "/requests")
    assert log["counts"]["GET /api/v1/models"] == 2 and log["total"] == 2
    assert [(r["status"], r["query"]) for r in log["requests"]] == [(200, "limit=5"), (401, "")]
    assert backend.token not in str(log)


# --------------------------------------------------------------------------
# Reset, persistence, restart
# --------------------------------------------------------------------------

def test_reset_reseeds_unless_told_not_to(backend: RunningBackend) -> None:
    backend.admin("PUT", "/models", [])
    backend.admin("POST", "/reset", {})
    assert [m["name"] for m in backend.admin("GET", "/models")["models"]] == ["churn", "demand", "fraud"]
    backend.admin("POST", "/reset", {"seed": False})
    assert backend.admin("GET", "/models")["models"] == []


def test_state_survives_a_restart_and_downtime_is_unavailable(backend: RunningBackend) -> None:
    job = call(backend, "POST", f"{MODELS}/churn/training-runs", key="persist", json={}).json()
    backend.admin("PUT", "/models", [{"name": "only_one", "status": "paused"}])
    port = backend.port
    backend.stop()
    with backend.client(retries=1, backoff_factor=0.01, timeout=(0.5, 1.0)) as c:
        with pytest.raises(BackendUnavailable):
            c.health()
    backend.start()
    assert backend.port == port
    assert call(backend, "GET", f"/api/v1/training-runs/{job['id']}").json()["status"] == "succeeded"
    replay = call(backend, "POST", f"{MODELS}/churn/training-runs", key="persist", json={})
    assert replay.status_code == 201 and replay.json() == job  # idempotency keys persist too
    assert [m["name"] for m in backend.admin("GET", "/models")["models"]] == ["only_one"]  # no re-seed


def test_start_backend_from_any_cwd_and_stop_frees_the_port(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    db = tmp_path / "state.sqlite"
    with start_backend(db_path=str(db), token="other", seed=seed_records([("solo", "solo")])) as running:
        assert running.client(retries=0).list_models()[0]["name"] == "solo"
        pid, url = running.pid, running.url
    assert not running.is_running() and db.exists()
    with pytest.raises(OSError):
        os.kill(pid, 0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/api/v1/health", timeout=2)


def test_the_server_stops_when_its_parent_dies(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import sys, time
        from dag_factory.dev.backend.process import start_backend
        backend = start_backend(job_delay=0.1, db_path=sys.argv[1], log_path=sys.argv[2])
        print(backend.url, backend.pid, flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(IMPORT_ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "db"), str(tmp_path / "log")],
                              stdout=subprocess.PIPE, env=env, cwd=tmp_path)
    try:
        line = parent.stdout.readline().decode().split()  # type: ignore[union-attr]
        assert len(line) == 2, "the parent did not start a backend"
        url, pid = line[0], int(line[1])
        assert requests.get(f"{url}/api/v1/health", timeout=2).status_code == 200
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the orphaned backend did not stop by itself")


def test_cli_refuses_non_loopback_without_opt_in(tmp_path: Path, capsys) -> None:
    assert main(["--host", "0.0.0.0", "--db", str(tmp_path / "x.sqlite")]) == 2
    assert "loopback" in capsys.readouterr().err
    assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")


def test_cli_serves_a_seed_file(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text('[{"name": "from_file", "status": "active", "version": "v1", "updated_at": "x"}]')
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(IMPORT_ROOT), "DAG_FACTORY_BACKEND_TOKEN": "cli-token"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dag_factory.dev.backend.server", "--port", str(port), "--db", str(tmp_path / "db"),
         "--seed-file", str(seed), "--job-delay", "0", "--log-level", "warning",
         "--exit-with-parent", str(os.getpid())],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                response = requests.get(f"http://127.0.0.1:{port}{MODELS}", timeout=1,
                                        headers={"Authorization": "Bearer cli-token"})
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("the CLI server did not start")
        assert [m["name"] for m in response.json()["models"]] == ["from_file"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------

def test_merge_patch_follows_rfc_7386() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == \
        {"a": 1, "b": {"d": 3, "e": 4}, "f": [1]}
    assert merge_patch({"a": 1}, ["x"]) == ["x"]


def test_seed_records_shape() -> None:
    plain, full = seed_records([("a_model", "spec_a")])[0], seed_records([("b", "s")], targets=["prod"],
                                                                          partitions=[0, 3])[0]
    assert set(plain) == {"name", "spec", "status", "version", "updated_at", "training"}
    assert plain["status"] == "active" and plain["version"] == "v1" and plain["updated_at"].endswith("Z")
    assert full["deployment"] == {"targets": [{"name": "prod"}]}
    assert full["streaming"] == {"partitions": [0, 3], "batch_size": 100}
