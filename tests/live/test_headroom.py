"""Headroom you can see: each entry file's last parse against the dag-processor's timeout, read
from Airflow's own `dag` rows (a real metadata DB), shown by `dag-factory status`, and
`dag-factory entry-files --auto` picking K from the fleet size or the measured parses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dag_factory.cli.layout import count_from_budget, count_from_parses
from dag_factory.live.facts import FleetFacts
from dag_factory.live.status import parse_headroom, render_status
from tests.support import DAGS

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def _parse(file: str, seconds: float | None, models: int, dags: int | None = None, ago: int = 65) -> dict:
    return {"bundle": "dags-folder", "file": file, "dags": dags or models * 3, "models": models, "seconds": seconds,
            "parsed_at": (NOW - timedelta(seconds=ago)).isoformat(timespec="seconds")}


def test_each_entry_file_against_the_timeout_with_a_warning_past_the_fraction():
    facts = FleetFacts(parses=[_parse("model_dags_1_of_4.py", 12.3, 250, 667), _parse("model_dags_2_of_4.py", 26.0, 250),
                               _parse("model_dags_3_of_4.py", None, 250)],
                       timeouts={"processor": 50.0, "import": 30.0})
    parsing = parse_headroom(facts, NOW, warn_fraction=0.5)
    files = {f["file"]: f for f in parsing["files"]}
    assert [f["warn"] for f in parsing["files"]] == [False, True, False]
    assert files["model_dags_1_of_4.py"]["fraction"] == pytest.approx(0.246)
    assert files["model_dags_1_of_4.py"]["age_seconds"] == 65
    # the slowest file's 104 ms a model x 750 models = 78 s, over half the warn line (12.5 s) -> 7 files
    assert parsing["suggested_count"] == 7
    text = render_status([], parsing)
    assert "model_dags_1_of_4.py: 250 model(s) (667 DAGs), last parse 12.3 s of 50 s (25%), 1m05s ago" in text
    assert "WARN  model_dags_2_of_4.py: 250 model(s) (750 DAGs), last parse 26.0 s of 50 s (52%)" in text
    assert "model_dags_3_of_4.py: 250 model(s) (750 DAGs), no parse duration recorded" in text
    assert "`dag-factory entry-files 7` (what `dag-factory entry-files --auto --measured` picks)" in text
    assert "(the import alone: 30 s, [core] dagbag_import_timeout)" in text


def test_the_warn_fraction_is_a_setting_and_no_parse_yet_says_so(monkeypatch):
    monkeypatch.setenv("DAG_FACTORY_PARSE_WARN", "0.2")
    facts = FleetFacts(parses=[_parse("model_dags.py", 12.3, 400)], timeouts={"processor": 50.0})
    assert parse_headroom(facts, NOW)["files"][0]["warn"] is True
    monkeypatch.setenv("DAG_FACTORY_PARSE_WARN", "not a number")  # falls back to the default 0.5
    assert parse_headroom(facts, NOW)["warn_fraction"] == 0.5 and not parse_headroom(facts, NOW)["warnings"]
    empty = parse_headroom(FleetFacts(), NOW)
    assert empty["timeout_seconds"] == 50.0 and empty["files"] == [] and empty["suggested_count"] is None
    assert "no entry file's parse recorded in Airflow's DB yet" in render_status([], empty)


def test_auto_count_from_the_budget_and_from_measured_parses():
    assert count_from_budget(1000, 400)[0] == 3 and count_from_budget(3, 400)[0] == 1
    assert "1000 model(s) / 400 models per file" in count_from_budget(1000, 400)[1]
    # the measurement of the issue: one file of 1,000 models took 32 s -> 32 ms a model -> 32 s / 12.5 s
    count, why = count_from_parses(1000, [_parse("model_dags.py", 32.0, 1000)], 50.0, 0.5)
    assert count == 3 and "measured 32 ms a model (model_dags.py: 32.0 s for 1000 model(s)" in why
    assert count_from_parses(1000, [_parse("model_dags.py", None, 1000)], 50.0, 0.5) is None


# --- the real metadata DB -------------------------------------------------------------------------

@pytest.fixture
def dag_rows(airflow_db):
    """`dag` rows as the dag-processor writes them, in a bundle of their own; removed afterwards."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    bundle = f"headroom-{uuid.uuid4().hex[:8]}"
    parsed = datetime.now(timezone.utc) - timedelta(seconds=30)

    def row(dag_id: str, file: str, seconds: float, stale: bool = False) -> DagModel:
        dag = DagModel(dag_id=dag_id, bundle_name=bundle,
                       fileloc=f"/opt/dags/{file}", relative_fileloc=file, is_stale=stale)
        dag.last_parse_duration, dag.last_parsed_time = seconds, parsed
        return dag

    prefix = bundle.replace("-", "_")
    rows = [row(f"{prefix}_a__train", "model_dags_1_of_2.py", 12.3), row(f"{prefix}_a__deploy", "model_dags_1_of_2.py", 12.3),
            row(f"{prefix}_b__train", "model_dags_1_of_2.py", 12.3),
            row(f"{prefix}_c__stream", "team/model_dags_2_of_2.py", 31.0),
            row(f"dag_factory_invalid__{prefix}_x", "team/model_dags_2_of_2.py", 31.0),
            row(f"{prefix}_sync", "backend_sync.py", 1.0),  # not an entry file
            row(f"{prefix}_old__train", "model_dags.py", 40.0, stale=True)]  # a removed file's DAG
    with create_session() as session:
        session.add(DagBundleModel(name=bundle))
        session.flush()
        session.add_all(rows)
    yield bundle
    with create_session() as session:
        session.execute(delete(DagModel).where(DagModel.bundle_name == bundle))
        session.execute(delete(DagBundleModel).where(DagBundleModel.name == bundle))


def test_entry_file_parses_from_the_dag_rows_the_processor_writes(dag_rows):
    from airflow.utils.session import create_session

    from dag_factory.live.facts import read_facts

    with create_session() as session:
        facts = read_facts(session, {})
    mine = [p for p in facts.parses if p["bundle"] == dag_rows]
    assert [(p["file"], p["dags"], p["models"], p["seconds"]) for p in mine] == [
        ("model_dags_1_of_2.py", 3, 2, 12.3), ("team/model_dags_2_of_2.py", 2, 2, 31.0)]
    assert all(p["parsed_at"] for p in mine)
    assert facts.timeouts == {"processor": 50.0, "import": 30.0}  # Airflow's defaults, from its configuration
    parsing = parse_headroom(FleetFacts(parses=mine, timeouts=facts.timeouts), datetime.now(timezone.utc), 0.5)
    assert [f["warn"] for f in parsing["files"]] == [False, True]
    assert parsing["suggested_count"] == 5  # 15.5 s a model x 4 models / 12.5 s


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DAG_FACTORY_")}
    return subprocess.run([sys.executable, "-m", "dag_factory.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**clean, **env})


@pytest.fixture
def project(tmp_path: Path, specs_dir: Path) -> Path:
    (tmp_path / "dags").mkdir()
    shutil.copy(DAGS / "model_dags.py", tmp_path / "dags")
    return tmp_path


def test_entry_files_auto_picks_k_from_the_fleet_size(project):
    one = _cli("entry-files", "--auto", cwd=project)
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith("K=1: 3 model(s) / 400 models per file") and "(unchanged)" in one.stdout
    two = _cli("entry-files", "--auto", cwd=project, DAG_FACTORY_MODELS_PER_FILE="2")
    assert two.returncode == 0, two.stderr
    assert two.stdout.startswith("K=2: 3 model(s) / 2 models per file")
    assert sorted(p.name for p in (project / "dags").glob("model_dags*")) == ["model_dags_1_of_2.py",
                                                                             "model_dags_2_of_2.py"]
    dry = _cli("entry-files", "--auto", "--dry-run", cwd=project, DAG_FACTORY_MODELS_PER_FILE="1")
    assert dry.stdout.startswith("K=3:") and len(list((project / "dags").glob("model_dags*"))) == 2
    both = _cli("entry-files", "2", "--auto", cwd=project)
    assert both.returncode == 2 and "give K or --auto (not both)" in both.stderr


def test_entry_files_auto_measured_uses_the_last_parses_in_the_db(project, dag_rows):
    # 31 s for 2 models in team/model_dags_2_of_2.py: 15.5 s a model x 3 models / 12.5 s a file -> 4
    result = _cli("entry-files", "--auto", "--measured", "--dry-run", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("K=4: measured 15500 ms a model (team/model_dags_2_of_2.py: 31.0 s for 2 model(s)")
