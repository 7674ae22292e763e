"""Which entry files the sync asks to re-parse, and how (the API way runs in tests/e2e)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dag_factory.build.shards import in_shard, write_entry_files
from dag_factory.live import reparse


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    dags, specs = tmp_path / "dags", tmp_path / "specs"
    dags.mkdir()
    specs.mkdir()
    for name in ("_defaults", "alpha", "beta", "gamma", "delta"):
        (specs / f"{name}.yaml").write_text(f"model: {name}\n")
    write_entry_files(dags, 2)
    (dags / "backend_sync.py").write_text("# not an entry file\n")
    later = time.time() + 100
    for entry in dags.iterdir():
        os.utime(entry, (later, later))
    return dags, specs


def test_nothing_changed_nothing_to_re_parse(folders):
    dags, specs = folders
    assert reparse.files_to_reparse(dags, specs, live_changed=False) == []


def test_live_change_re_parses_every_entry_file(folders):
    dags, specs = folders
    assert [p.name for p in reparse.files_to_reparse(dags, specs, live_changed=True)] == [
        "model_dags_1_of_2.py", "model_dags_2_of_2.py"]


def test_a_spec_change_re_parses_only_its_own_file(folders):
    dags, specs = folders
    later = time.time() + 200
    os.utime(specs / "gamma.yaml", (later, later))
    owner = "model_dags_1_of_2.py" if in_shard("gamma", (1, 2)) else "model_dags_2_of_2.py"
    assert [p.name for p in reparse.files_to_reparse(dags, specs, live_changed=False)] == [owner]
    os.utime(specs / "_defaults.yaml", (later, later))  # every spec inherits from it
    assert len(reparse.files_to_reparse(dags, specs, live_changed=False)) == 2


def test_parse_times_from_the_api_decide_in_api_mode(folders):
    dags, specs = folders
    now = time.time()
    assert reparse.files_to_reparse(dags, specs, False, {"model_dags_1_of_2.py": now + 500}) == \
        [dags / "model_dags_2_of_2.py"]  # never parsed (no DAGs yet): ask


def test_touch_mode_touches_and_off_mode_does_nothing(folders, monkeypatch):
    dags, specs = folders
    before = {p.name: p.stat().st_mtime for p in dags.iterdir()}
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "off")
    assert reparse.request_reparse(dags, specs, live_changed=True) == {"mode": "off", "files": []}
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "touch")
    assert reparse.request_reparse(dags, specs, live_changed=True)["files"] == [
        "model_dags_1_of_2.py", "model_dags_2_of_2.py"]
    after = {p.name: p.stat().st_mtime for p in dags.iterdir()}
    assert after["backend_sync.py"] == before["backend_sync.py"]
    assert after["model_dags_1_of_2.py"] < before["model_dags_1_of_2.py"]  # now, not "later"


def test_the_old_switch_still_works_and_a_bad_mode_is_reported(folders, monkeypatch):
    dags, specs = folders
    monkeypatch.delenv("DAG_FACTORY_REPARSE", raising=False)
    monkeypatch.setenv("DAG_FACTORY_REPARSE_ON_CHANGE", "false")
    assert reparse.mode() == "off"
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "sometimes")
    result = reparse.request_reparse(dags, specs, live_changed=True)  # never raises: the sync succeeded
    assert result["files"] == [] and "must be one of touch, api, off" in result["error"]


def test_api_mode_with_an_unreachable_api_server_reports_why(folders, monkeypatch):
    from dag_factory.stack import free_port

    dags, specs = folders
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "api")
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", f"http://admin:pw@127.0.0.1:{free_port()}")
    result = reparse.request_reparse(dags, specs, live_changed=True)
    assert result["mode"] == "api" and result["files"] == [] and "ConnectionError" in result["error"]
