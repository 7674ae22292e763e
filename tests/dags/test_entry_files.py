"""The fleet split across K entry files: the same DAG ids, each in exactly one file, and a
worker's task-run parse of one file builds the DAG the dag-processor built from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from dag_factory.cli import main
from dag_factory.layout import entry_file_text, entry_files, in_shard, shard_of_file, write_entry_files
from tests.support import DAGS, SPECS

SYNC = "dag_factory_backend_sync"


def _live(models: dict[str, str]) -> str:
    return json.dumps({"format": 1, "retired": [], "missing": {}, "rejected": {},
                       "expires_at": "2999-01-01T00:00:00+00:00",
                       "models": {name: {"name": name, "spec": spec, "status": "active", "version": "v1",
                                         "updated_at": "2026-11-27T10:00:00Z"} for name, spec in models.items()}})


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    """A specs folder of 12 models (copies of the examples, one broken) and live models."""
    specs = tmp_path / "specs"
    shutil.copytree(SPECS, specs)
    for i in range(9):
        source = ("churn_predictor", "demand_forecast", "fraud_scorer")[i % 3]
        text = (SPECS / f"{source}.yaml").read_text().replace(f"model: {source}", f"model: m{i:02d}")
        (specs / f"m{i:02d}.yaml").write_text(text)
    (specs / "zz_broken.yaml").write_text("model: zz_broken\ntraining:\n  schedule: '99 * * * *'\n")
    monkeypatch.setenv("DAG_FACTORY_SPECS", str(specs))
    monkeypatch.setenv("AIRFLOW_VAR_DAG_FACTORY_LIVE_MODELS",
                       _live({f"live_{i}": f"m{i:02d}" for i in range(0, 9, 2)} | {"ghost": "no_such_spec"}))
    return specs


def _dags_dir(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / f"dags_{count}"
    folder.mkdir()
    shutil.copy(DAGS / "backend_sync.py", folder)
    write_entry_files(folder, count)
    return folder


def test_every_spec_is_in_exactly_one_shard():
    names = [f"model_{i:05d}" for i in range(1000)]
    for count in (1, 2, 3, 4, 8):
        owners = [[i for i in range(1, count + 1) if in_shard(n, (i, count))] for n in names]
        assert all(len(o) == 1 for o in owners)
        if count > 1:  # and the shards are of similar size
            sizes = [sum(1 for o in owners if o == [i]) for i in range(1, count + 1)]
            assert max(sizes) < 1.3 * len(names) / count, sizes


def test_k_files_build_the_same_dags_as_one_each_exactly_once(fleet, tmp_path):
    one = DagBag(dag_folder=str(_dags_dir(tmp_path, 1)))
    assert one.import_errors == {}
    three_dir = _dags_dir(tmp_path, 3)
    three = DagBag(dag_folder=str(three_dir))
    assert three.import_errors == {}
    assert set(three.dag_ids) == set(one.dag_ids)
    assert {"live_0__train", "m08__train", "dag_factory_invalid__zz_broken", SYNC} <= set(three.dag_ids)
    # each DAG id from exactly one file (a DagBag keeps the last; count them per file instead)
    seen: dict[str, str] = {}
    for entry in entry_files(three_dir):
        for dag_id in DagBag(dag_folder=str(entry)).dag_ids:
            assert dag_id not in seen, f"{dag_id} in {seen.get(dag_id)} and {entry.name}"
            seen[dag_id] = entry.name
            assert three.dags[dag_id].fileloc == str(entry)
    assert set(seen) == set(one.dag_ids) - {SYNC}
    assert len({name for name in seen.values()}) == 3  # 12 specs do reach all three files


def test_a_task_run_parse_of_a_shard_builds_that_dag_the_same_way(fleet, tmp_path, monkeypatch):
    from airflow.serialization.serialized_objects import DagSerialization

    folder = _dags_dir(tmp_path, 3)
    full = DagBag(dag_folder=str(folder))
    dag_id = "live_4__deploy"
    entry = Path(full.dags[dag_id].fileloc)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", dag_id)
    only = DagBag(dag_folder=str(entry))
    assert list(only.dag_ids) == [dag_id]
    assert DagSerialization.to_dict(only.dags[dag_id]) == DagSerialization.to_dict(full.dags[dag_id])
    assert shard_of_file(entry) is not None


def test_entry_files_command_splits_and_joins(tmp_path, capsys):
    folder = tmp_path / "dags"
    folder.mkdir()
    shutil.copy(DAGS / "model_dags.py", folder)
    shutil.copy(DAGS / "backend_sync.py", folder)
    assert main(["entry-files", "4", "--dags", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "backend_sync.py", "model_dags_1_of_4.py", "model_dags_2_of_4.py", "model_dags_3_of_4.py",
        "model_dags_4_of_4.py"]
    assert "register_dags(globals(), shard=(2, 4))" in (folder / "model_dags_2_of_4.py").read_text()
    assert main(["entry-files", "1", "--dags", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["backend_sync.py", "model_dags.py"]
    assert (folder / "model_dags.py").read_text() == (DAGS / "model_dags.py").read_text() == entry_file_text(1, 1)
    assert main(["entry-files", "0", "--dags", str(folder)]) == 2
    assert "(unchanged)" not in capsys.readouterr().out


def test_register_dags_refuses_a_bad_shard():
    from dag_factory.builders.register import register_dags

    with pytest.raises(ValueError, match="1 <= index <= count"):
        register_dags({}, SPECS, shard=(0, 3))
