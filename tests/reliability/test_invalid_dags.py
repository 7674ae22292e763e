"""Invalid-spec DAGs never take the fleet down and never hide a file's errors: a file name too
long for a DAG id, and two files whose ids coincide."""

from __future__ import annotations

from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

from dag_factory.builders.invalid import MAX_DAG_ID, invalid_dag_id
from tests.support import DAGS, MODELS


def parse(monkeypatch, specs: Path) -> DagBag:
    monkeypatch.setenv("DAG_FACTORY_SPECS", str(specs))
    return DagBag(dag_folder=str(DAGS / "model_dags.py"))


def test_a_file_name_too_long_for_a_dag_id_still_gets_its_invalid_dag(monkeypatch, specs_dir):
    name = "a" * 240
    (specs_dir / f"{name}.yaml").write_text("model: [\n")
    bag = parse(monkeypatch, specs_dir)
    assert not bag.import_errors, bag.import_errors
    invalid = [d for d in bag.dag_ids if d.startswith("dag_factory_invalid__")]
    assert invalid == [invalid_dag_id(f"specs/{name}.yaml")] and len(invalid[0]) <= MAX_DAG_ID
    assert {f"{m}__train" for m in MODELS} <= set(bag.dag_ids)
    assert invalid_dag_id(f"specs/{name}.yaml") == invalid_dag_id(f"specs/{name}.yaml")  # stable
    assert invalid_dag_id(f"specs/{name}.yaml") != invalid_dag_id(f"specs/{name[:-1]}b.yaml")


def test_files_that_share_an_invalid_dag_id_share_the_dag_and_keep_all_errors(monkeypatch, specs_dir):
    (specs_dir / "x.yaml").write_text("model: x\nschedual: 1\n")
    (specs_dir / "x.yml").write_text("model: x\nowner: [\n")
    bag = parse(monkeypatch, specs_dir)
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["dag_factory_invalid__x"]
    assert "specs/x.yaml" in dag.doc_md and "specs/x.yml" in dag.doc_md, dag.doc_md
