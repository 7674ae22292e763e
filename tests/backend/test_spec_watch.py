"""`dag-factory up`'s spec watcher (dag_factory.dev.watch) against a real reference backend:
the backend learns the specs folder, at the start and when files are added, changed or
removed, and reports metrics that pass each spec's own gates."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from dag_factory.client import BackendClient, BackendError
from dag_factory.dev.backend.process import RunningBackend
from dag_factory.dev.backend.seed import gate_settings
from dag_factory.dev.watch import SpecWatcher
from dag_factory.specs import load_specs
from dag_factory.specs.model import Gate

DEFAULTS = "owner: team\ntags: [ml]\n"
SPEC = """model: {name}
training:
  schedule: null
  dataset_uri: s3://data/{name}
  gates: ["auc >= 0.9"]
deployment:
  targets: [edge]
  smoke_test:
    gates: ["p99_latency_ms <= {p99}"]
streaming:
  partitions: {partitions}
  batch_size: 50
"""


def write_spec(specs: Path, name: str, partitions: str = "[0, 1]", p99: int = 30) -> Path:
    path = specs / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, partitions=partitions, p99=p99), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "_defaults.yaml").write_text(DEFAULTS, encoding="utf-8")
    write_spec(tmp_path / "specs", "alpha")
    return tmp_path


def watcher_for(project: Path, backend: RunningBackend) -> tuple[SpecWatcher, io.StringIO]:
    out = io.StringIO()
    return SpecWatcher(project / "specs", root=project, admin=backend.admin,
                       state_path=project / "learned.json", out=out, interval=0.1), out


def look(watcher: SpecWatcher) -> list[str]:
    """Two looks, as the watcher's thread takes them: a change is learned once it held still."""
    return watcher.poll() + watcher.poll()


def finished(get, job_id: str) -> dict:
    deadline = time.monotonic() + 10
    while (job := get(job_id))["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    return job


def test_new_spec_is_learned_with_metrics_that_pass_its_gates(project: Path, backend: RunningBackend,
                                                              client: BackendClient) -> None:
    watcher, out = watcher_for(project, backend)
    lines = watcher.poll(now=True)
    assert "backend: learned alpha from specs/alpha.yaml" in lines
    assert "backend: training runs of alpha report auc=0.9, logloss=0.31" in lines
    assert out.getvalue().splitlines() == lines
    write_spec(project / "specs", "beta", p99=25)
    assert look(watcher) == ["backend: learned beta from specs/beta.yaml",
                             "backend: training runs of beta report auc=0.9, logloss=0.31",
                             "backend: deployments to edge report p99_latency_ms=25, success_rate=1"]
    assert look(watcher) == [], "nothing changed, nothing to say"

    record = client.get_model("beta")
    assert (record["spec"], record["status"], record["streaming"], record["training"]["dataset_uri"]) == \
        ("beta", "active", {"partitions": [0, 1], "batch_size": 50}, "s3://data/beta")
    training = finished(client.get_training_run, client.start_training("beta", idempotency_key="t1")["id"])
    assert training["status"] == "succeeded" and Gate.parse("auc >= 0.9").passes(training["metrics"]["auc"])
    deployment = finished(client.get_deployment,
                          client.deploy("beta", version=training["model_version"], target="edge",
                                        idempotency_key="d1")["id"])
    gates = [Gate.parse("p99_latency_ms <= 30"), Gate.parse("p99_latency_ms <= 25")]  # alpha's and beta's
    assert all(g.passes(deployment["metrics"][g.metric]) for g in gates), deployment


def test_changed_spec_updates_the_record_unless_it_was_changed_by_hand(project: Path, backend: RunningBackend,
                                                                       client: BackendClient) -> None:
    watcher, _ = watcher_for(project, backend)
    write_spec(project / "specs", "beta")
    watcher.poll(now=True)
    backend.admin("PATCH", "/models/beta", {"streaming": {"partitions": [7]}})

    write_spec(project / "specs", "alpha", partitions="[0, 1, 2]")
    write_spec(project / "specs", "beta", partitions="[0, 1, 2]")
    lines = look(watcher)
    assert lines[0] == "backend: updated alpha from specs/alpha.yaml"
    assert lines[1].startswith("backend: kept beta as changed through the admin API"), lines
    assert client.get_model("alpha")["streaming"]["partitions"] == [0, 1, 2]
    assert client.get_model("beta")["streaming"]["partitions"] == [7]

    # a restarted `up` (same state file) knows which records are its own: nothing to do or say
    again, _ = watcher_for(project, backend)
    assert [line for line in again.poll(now=True) if not line.endswith("logloss=0.31")
            and not line.startswith("backend: deployments to")] == []


def test_removed_spec_is_forgotten_and_a_broken_one_is_reported(project: Path, backend: RunningBackend,
                                                                client: BackendClient) -> None:
    watcher, _ = watcher_for(project, backend)
    write_spec(project / "specs", "beta")
    watcher.poll(now=True)
    (project / "specs" / "alpha.yaml").unlink()
    (project / "specs" / "beta.yaml").write_text("model: beta\ntraining: {schedual: daily}\n", encoding="utf-8")
    lines = look(watcher)
    assert lines[:2] == ["backend: specs/beta.yaml has errors, not learned (dag-factory validate specs/beta.yaml)",
                         "backend: forgot alpha (specs/alpha.yaml is gone)"]
    assert "backend: training runs of alpha report the defaults" in lines
    with pytest.raises(BackendError):
        client.get_model("alpha")
    assert client.get_model("beta")["name"] == "beta", "a spec with errors keeps the record it gave"


def test_the_thread_learns_a_copied_file(project: Path, backend: RunningBackend, client: BackendClient) -> None:
    watcher, out = watcher_for(project, backend)
    watcher.poll(now=True)
    watcher.start()
    try:
        text = (project / "specs" / "alpha.yaml").read_text().replace("model: alpha", "model: gamma")
        (project / "specs" / "gamma.yaml").write_text(text, encoding="utf-8")
        deadline = time.monotonic() + 20
        while "learned gamma" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watcher.stop()
    assert "backend: learned gamma from specs/gamma.yaml\n" in out.getvalue()
    assert client.get_model("gamma")["spec"] == "gamma"


def test_a_target_shared_by_specs_passes_all_their_gates(project: Path) -> None:
    write_spec(project / "specs", "beta", p99=25)
    specs = load_specs([project / "specs"], check_imports=False).specs
    settings = gate_settings(specs)
    assert settings["/targets/edge/smoke"] == {"success_rate": 1.0, "p99_latency_ms": 25.0}
    assert settings["/models/alpha/training-metrics"] == settings["/models/beta/training-metrics"] == \
        {"auc": 0.9, "logloss": 0.31}
