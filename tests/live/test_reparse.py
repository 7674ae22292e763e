"""Which entry files the sync asks to re-parse, and how (the API way runs in tests/e2e)."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dag_factory.layout import in_shard, write_entry_files
from dag_factory.live import reparse

NOW = time.time()  # every time below is relative to this; a test never reads the clock itself


LOCAL = "airflow.dag_processing.bundles.local.LocalDagBundle"


@pytest.fixture
def folders(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    dags, specs = tmp_path / "dags", tmp_path / "specs"
    # Airflow's bundles: this DAGs folder only (not the tests' project of the session's config)
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
                       json.dumps([{"name": "dags-folder", "classpath": LOCAL, "kwargs": {"path": str(dags)}}]))
    dags.mkdir()
    specs.mkdir()
    for name in ("_defaults", "alpha", "beta", "gamma", "delta"):
        (specs / f"{name}.yaml").write_text(f"model: {name}\n")
    write_entry_files(dags, 2)
    (dags / "backend_sync.py").write_text("# not an entry file\n")
    for path, age in [*((p, 5000) for p in specs.iterdir()), (specs, 5000), *((e, 1000) for e in dags.iterdir())]:
        os.utime(path, (NOW - age,) * 2)  # the specs changed, then the entry files were parsed
    return dags, specs


C = 150.0  # confirm_after: half of a 5-minute sync interval


def names(paths) -> list[str]:
    return [p.name for p in paths]


def live(changed: float, **extra) -> dict:
    """A live snapshot whose content last changed at `changed` (epoch seconds)."""
    return {"format": 1, "models": {}, "changed_at": _iso(changed), **extra}


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds")


def test_nothing_changed_nothing_to_re_parse(folders):
    dags, specs = folders
    assert reparse.files_to_reparse(dags, specs, None, confirm_after=C) == []
    assert reparse.files_to_reparse(dags, specs, live(NOW - 5000), confirm_after=C) == []


def test_a_snapshot_without_dag_changes_re_parses_every_entry_file_then_confirms_once(folders):
    dags, specs = folders
    changed = NOW - 500  # after the files' last request (NOW - 1000)
    both = ["model_dags_1_of_2.py", "model_dags_2_of_2.py"]
    assert names(reparse.files_to_reparse(dags, specs, live(changed), confirm_after=C, now=changed + 1)) == both
    for entry in dags.iterdir():  # the request (a touch) right after the change
        os.utime(entry, (changed + 1, changed + 1))
    assert reparse.files_to_reparse(dags, specs, live(changed), confirm_after=C, now=changed + 60) == []
    # one sync later: the first request may have been swallowed by a parse already running
    assert names(reparse.files_to_reparse(dags, specs, live(changed), confirm_after=C, now=changed + 300)) == both
    for entry in dags.iterdir():
        os.utime(entry, (changed + 300, changed + 300))
    assert reparse.files_to_reparse(dags, specs, live(changed), confirm_after=C, now=changed + 600) == []


def test_a_first_request_made_late_enough_needs_no_confirmation(folders):
    dags, specs = folders
    changed = NOW - 500
    for entry in dags.iterdir():
        os.utime(entry, (changed + C + 5, changed + C + 5))
    assert reparse.files_to_reparse(dags, specs, live(changed), confirm_after=C, now=changed + 900) == []


def test_a_spec_change_re_parses_only_its_own_file(folders):
    dags, specs = folders
    later = NOW - 100
    os.utime(specs / "gamma.yaml", (later, later))
    owner = "model_dags_1_of_2.py" if in_shard("gamma", (1, 2)) else "model_dags_2_of_2.py"
    assert names(reparse.files_to_reparse(dags, specs, None, confirm_after=C, now=later + 1)) == [owner]
    os.utime(specs / "_defaults.yaml", (later, later))  # every spec inherits from it
    assert len(reparse.files_to_reparse(dags, specs, None, confirm_after=C, now=later + 1)) == 2


def test_parse_times_from_the_api_decide_in_api_mode(folders):
    dags, specs = folders
    changed = NOW - 1000
    parsed = {dags / "model_dags_1_of_2.py": changed + 500}  # the other file has no DAGs yet: ask
    assert reparse.files_to_reparse(dags, specs, live(changed), confirm_after=C, now=NOW,
                                    last_request=parsed) == [dags / "model_dags_2_of_2.py"]


def test_touch_mode_touches_and_off_mode_does_nothing(folders, monkeypatch):
    dags, specs = folders
    before = {p.name: p.stat().st_mtime for p in dags.iterdir()}
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "off")
    assert reparse.request_reparse(dags, specs, live(NOW - 500), confirm_after=C) == {"mode": "off", "files": []}
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "touch")
    assert reparse.request_reparse(dags, specs, live(NOW - 500), confirm_after=C)["files"] == [
        "model_dags_1_of_2.py", "model_dags_2_of_2.py"]
    after = {p.name: p.stat().st_mtime for p in dags.iterdir()}
    assert after["backend_sync.py"] == before["backend_sync.py"]
    assert after["model_dags_1_of_2.py"] > before["model_dags_1_of_2.py"] + 900  # touched: now


def test_the_old_switch_still_works_and_a_bad_mode_is_reported(folders, monkeypatch):
    dags, specs = folders
    monkeypatch.delenv("DAG_FACTORY_REPARSE", raising=False)
    monkeypatch.setenv("DAG_FACTORY_REPARSE_ON_CHANGE", "false")
    assert reparse.mode() == "off"
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "sometimes")
    result = reparse.request_reparse(dags, specs, live(NOW), confirm_after=C)  # never raises: the sync succeeded
    assert result["files"] == [] and "must be one of touch, api, off" in result["error"]


def test_api_mode_with_an_unreachable_api_server_reports_why(folders, monkeypatch):
    from dag_factory.dev.backend.process import free_port

    dags, specs = folders
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "api")
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", f"http://admin:pw@127.0.0.1:{free_port()}")
    result = reparse.request_reparse(dags, specs, live(NOW), confirm_after=C)
    assert result["mode"] == "api" and result["files"] == [] and "ConnectionError" in result["error"]


def _shard_file(spec: str) -> str:
    return "model_dags_1_of_2.py" if in_shard(spec, (1, 2)) else "model_dags_2_of_2.py"


def test_a_live_change_re_parses_only_the_entry_file_of_the_specs_it_touched(folders):
    dags, specs = folders
    changed = NOW - 500
    one = live(changed, dag_changes={"gamma": _iso(changed), "alpha": _iso(changed - 9000)})
    assert names(reparse.files_to_reparse(dags, specs, one, confirm_after=C, now=changed + 1)) == [_shard_file("gamma")]
    # a change that touched no DAG (a new version: read at run time) asks for nothing
    assert reparse.files_to_reparse(dags, specs, live(changed, dag_changes={}), confirm_after=C, now=changed + 1) == []
    everything = live(changed, dag_changes={"*": _iso(changed)})  # a first snapshot
    assert len(reparse.files_to_reparse(dags, specs, everything, confirm_after=C, now=changed + 1)) == 2


def test_entry_files_in_every_local_bundle_are_re_parsed(tmp_path, folders, monkeypatch):
    dags, specs = folders
    other = tmp_path / "bundle_b"
    other.mkdir()
    (dags / "model_dags_2_of_2.py").rename(other / "model_dags_2_of_2.py")
    os.utime(other / "model_dags_2_of_2.py", (NOW - 1000,) * 2)
    bundles = json.dumps([
        {"name": "fleet_a", "classpath": LOCAL, "kwargs": {"path": str(dags)}},
        {"name": "fleet_b", "classpath": LOCAL, "kwargs": {"path": str(other)}},
        {"name": "git", "classpath": "airflow.providers.git.bundles.git.GitDagBundle", "kwargs": {"tracking_ref": "main"}}])
    assert reparse.local_bundle_folders(bundles) == {"fleet_a": dags, "fleet_b": other}
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", bundles)
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "touch")
    changed = NOW - 500
    result = reparse.request_reparse(dags, specs, live(changed, dag_changes={"*": _iso(changed)}), confirm_after=C)
    assert result["files"] == ["model_dags_1_of_2.py", "model_dags_2_of_2.py"], result
    assert (other / "model_dags_2_of_2.py").stat().st_mtime > NOW - 100
