"""The spec cache: a re-parse of unchanged files skips their YAML, and never changes a result."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from dag_factory.builders.register import register_dags
from dag_factory.specs import cache as spec_cache
from dag_factory.specs.cache import SpecCache
from dag_factory.specs.loader import load_specs
from tests.support import ROOT


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", folder)
    return folder


@pytest.fixture
def cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DAG_FACTORY_SPEC_CACHE", str(folder))
    return folder


def load(specs: Path) -> tuple:
    cache = SpecCache.open(specs)
    return load_specs([specs], check_imports=False, cache=cache), cache


def test_a_second_load_parses_no_yaml_and_gives_the_same_result(specs, cache_folder, monkeypatch):
    plain = load_specs([specs], check_imports=False)
    first, cache = load(specs)
    assert first == plain and cache.hits == 0
    files = list(cache_folder.iterdir())
    assert len(files) == 1 and oct(files[0].stat().st_mode & 0o777) == "0o600"
    assert oct(cache_folder.stat().st_mode & 0o777) == "0o700"

    def no_yaml(raw):
        raise AssertionError("parsed YAML although the cache had it")

    monkeypatch.setattr("dag_factory.specs.loader.read_yaml", no_yaml)
    second, cache = load(specs)
    assert second == plain
    assert cache.hits == len([p for p in specs.iterdir() if p.suffix in (".yaml", ".yml")])
    assert files[0].stat().st_mtime_ns == list(cache_folder.iterdir())[0].stat().st_mtime_ns  # not rewritten


def test_an_edited_file_is_parsed_again(specs, cache_folder):
    load(specs)
    spec = specs / "churn_predictor.yaml"
    spec.write_text(spec.read_text().replace("description: Predicts", "description: edited after the cache was "
                                             "written. Predicts", 1))
    result, cache = load(specs)
    edited = next(s for s in result.specs if s.source == str(spec))
    assert edited.description.startswith("edited after the cache was written")
    assert cache.hits == len(list(specs.glob("*.yaml"))) - 1
    assert result == load_specs([specs], check_imports=False)


def test_errors_keep_their_lines_from_cached_data(specs, cache_folder):
    bad = specs / "broken.yaml"
    bad.write_text("model: broken\nowner: me\ntraining:\n  schedule: 12\n")
    first, _ = load(specs)
    second, cache = load(specs)
    assert cache.hits > 0
    assert [e for e in first.errors if e.file == str(bad)] == [e for e in second.errors if e.file == str(bad)]
    assert any(e.line for e in second.errors if e.file == str(bad))


def test_a_file_with_anchors_is_never_cached(specs, cache_folder):
    odd = specs / "odd.yaml"
    odd.write_text("model: odd\nowner: &o me\ndescription: *o\n")
    load(specs)
    stored = json.loads(next(cache_folder.iterdir()).read_text())["entries"]
    raw = odd.read_bytes()
    assert spec_cache._key(raw) not in stored
    assert len(stored) == len(list(specs.glob("*.yaml"))) - 1  # every other file is


@pytest.mark.parametrize("damage", ["not json", '{"format": "other", "entries": {}}', '{"format": 1}', "[]",
                                    "entries-garbage"])
def test_a_damaged_cache_means_parsing_the_yaml(specs, cache_folder, damage):
    _, cache = load(specs)
    if damage == "entries-garbage":
        stored = json.loads(cache.file.read_text())
        stored["entries"] = {k: "{not json" for k in stored["entries"]}
        cache.file.write_text(json.dumps(stored))
    else:
        cache.file.write_text(damage)
    result, cache = load(specs)
    assert cache.hits == 0
    assert result == load_specs([specs], check_imports=False)
    assert load(specs)[1].hits > 0  # and it was written again


def test_a_cache_others_can_write_is_not_used(specs, cache_folder, caplog):
    _, cache = load(specs)
    os.chmod(cache.file, 0o666)
    _, cache = load(specs)
    assert cache.hits == 0 and cache.file is None
    assert "nobody else can write" in caplog.text
    os.chmod(next(cache_folder.iterdir()), 0o600)  # the file is ours again; now the folder is not
    os.chmod(cache_folder, 0o777)
    assert load(specs)[1].hits == 0


def test_a_link_is_not_followed(specs, cache_folder, tmp_path):
    _, cache = load(specs)
    target = tmp_path / "elsewhere.json"
    target.write_bytes(cache.file.read_bytes())
    os.chmod(target, 0o600)
    cache.file.unlink()
    cache.file.symlink_to(target)
    assert load(specs)[1].hits == 0


def test_an_unwritable_place_only_costs_the_yaml(specs, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DAG_FACTORY_SPEC_CACHE", str(blocker / "cache"))
    result, cache = load(specs)
    assert result == load_specs([specs], check_imports=False) and cache.hits == 0


def test_off_and_the_default_place(specs, tmp_path, monkeypatch):
    monkeypatch.setenv("DAG_FACTORY_SPEC_CACHE", "off")
    assert spec_cache.cache_dir() is None
    assert load(specs)[1].file is None
    monkeypatch.delenv("DAG_FACTORY_SPEC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert spec_cache.cache_dir() == tmp_path / "xdg" / "dag_factory"


def test_only_the_entries_in_use_are_kept_and_old_files_go(specs, cache_folder):
    load(specs)
    (specs / "fraud_scorer.yaml").unlink()
    _, cache = load(specs)
    stored = json.loads(cache.file.read_text())["entries"]
    assert len(stored) == len(list(specs.glob("*.yaml")))
    orphan, leftover, foreign = (cache_folder / f"{'0' * 40}.json", cache_folder / f"{spec_cache._TMP_PREFIX}x",
                                 cache_folder / "not-ours.json")
    old = time.time() - (spec_cache.ORPHAN_DAYS + 1) * 86400
    for path in (orphan, leftover, foreign):
        path.write_text("{}")
        os.utime(path, (old, old))
    (specs / "extra.yaml").write_text((specs / "churn_predictor.yaml").read_text().replace(
        "churn_predictor", "extra", 1))
    load(specs)
    assert not orphan.exists() and not leftover.exists()
    assert foreign.exists()  # only the cache's own files are ever removed


def test_a_file_in_use_is_not_removed_as_an_orphan(specs, cache_folder):
    """Only a change rewrites the file; opening it keeps it from looking unused."""
    _, cache = load(specs)
    old = time.time() - (spec_cache.ORPHAN_DAYS - 1) * 86400
    os.utime(cache.file, (old, old))
    load(specs)
    assert cache.file.stat().st_mtime > time.time() - 60


def test_the_entry_file_uses_it_and_a_task_run_parse_does_not(specs, cache_folder, monkeypatch, caplog):
    namespace = {"__file__": str(specs.parent / "dags" / "model_dags.py")}
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    caplog.set_level(logging.INFO, logger="dag_factory")
    first = register_dags(dict(namespace), specs)
    assert len(list(cache_folder.iterdir())) == 1
    files = len(list(specs.glob("*.yaml")))  # _defaults.yaml too
    assert f"{len(first)} DAGs from {specs} (0 of {files} YAML files from the spec cache)" in caplog.text
    calls = []
    monkeypatch.setattr("dag_factory.specs.loader.read_yaml",
                        lambda raw: calls.append(raw) or pytest.fail("parsed YAML on a warm cache"))
    caplog.clear()
    again = register_dags(dict(namespace), specs)
    assert sorted(again) == sorted(first) and not calls
    assert f"{len(first)} DAGs from {specs} ({files} of {files} YAML files from the spec cache)" in caplog.text
    monkeypatch.undo()
    monkeypatch.setenv("DAG_FACTORY_SPEC_CACHE", str(cache_folder))
    halves = [register_dags(dict(namespace), specs, shard=(i, 2)) for i in (1, 2)]
    assert sorted([*halves[0], *halves[1]]) == sorted(first)
    assert len(list(cache_folder.iterdir())) == 3  # one file per entry file: no shard evicts another's
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", sorted(first)[0])
    monkeypatch.setattr(SpecCache, "open", classmethod(lambda cls, *a, **k: pytest.fail("a task-run parse opened it")))
    before = {p: p.stat().st_mtime_ns for p in cache_folder.iterdir()}
    assert list(register_dags(dict(namespace), specs)) == [sorted(first)[0]]
    assert {p: p.stat().st_mtime_ns for p in cache_folder.iterdir()} == before
