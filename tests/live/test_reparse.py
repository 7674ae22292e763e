"""Which entry files the sync asks to re-parse, and how (the API way runs in tests/e2e)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dag_factory.layout import in_shard, write_entry_files
from dag_factory.live import reparse

NOW = time.time()  # every time below is relative to this; a test never reads the clock itself


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    dags, specs = tmp_path / "dags", tmp_path / "specs"
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


def test_nothing_changed_nothing_to_re_parse(folders):
    dags, specs = folders
    assert reparse.files_to_reparse(dags, specs, None, confirm_after=C) == []
    assert reparse.files_to_reparse(dags, specs, NOW - 5000, confirm_after=C) == []


def test_live_change_re_parses_every_entry_file_then_confirms_once(folders):
    dags, specs = folders
    changed = NOW - 500  # after the files' last request (NOW - 1000)
    both = ["model_dags_1_of_2.py", "model_dags_2_of_2.py"]
    assert names(reparse.files_to_reparse(dags, specs, changed, confirm_after=C, now=changed + 1)) == both
    for entry in dags.iterdir():  # the request (a touch) right after the change
        os.utime(entry, (changed + 1, changed + 1))
    assert reparse.files_to_reparse(dags, specs, changed, confirm_after=C, now=changed + 60) == []
    # one sync later: the first request may have been swallowed by a parse already running
    assert names(reparse.files_to_reparse(dags, specs, changed, confirm_after=C, now=changed + 300)) == both
    for entry in dags.iterdir():
        os.utime(entry, (changed + 300, changed + 300))
    assert reparse.files_to_reparse(dags, specs, changed, confirm_after=C, now=changed + 600) == []


def test_a_first_request_made_late_enough_needs_no_confirmation(folders):
    dags, specs = folders
    changed = NOW - 500
    for entry in dags.iterdir():
        os.utime(entry, (changed + C + 5, changed + C + 5))
    assert reparse.files_to_reparse(dags, specs, changed, confirm_after=C, now=changed + 900) == []


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
    parsed = {"model_dags_1_of_2.py": changed + 500}  # the other file has no DAGs yet: ask
    assert reparse.files_to_reparse(dags, specs, changed, confirm_after=C, now=NOW,
                                    last_request=parsed) == [dags / "model_dags_2_of_2.py"]


def test_touch_mode_touches_and_off_mode_does_nothing(folders, monkeypatch):
    dags, specs = folders
    before = {p.name: p.stat().st_mtime for p in dags.iterdir()}
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "off")
    assert reparse.request_reparse(dags, specs, NOW - 500, confirm_after=C) == {"mode": "off", "files": []}
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "touch")
    assert reparse.request_reparse(dags, specs, NOW - 500, confirm_after=C)["files"] == [
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
    result = reparse.request_reparse(dags, specs, NOW, confirm_after=C)  # never raises: the sync succeeded
    assert result["files"] == [] and "must be one of touch, api, off" in result["error"]


def test_api_mode_with_an_unreachable_api_server_reports_why(folders, monkeypatch):
    from dag_factory.dev.backend.process import free_port

    dags, specs = folders
    monkeypatch.setenv("DAG_FACTORY_REPARSE", "api")
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", f"http://admin:pw@127.0.0.1:{free_port()}")
    result = reparse.request_reparse(dags, specs, NOW, confirm_after=C)
    assert result["mode"] == "api" and result["files"] == [] and "ConnectionError" in result["error"]
