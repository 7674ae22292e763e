"""The one data function behind `dag-factory status`, the Models page and its JSON endpoint,
on fixtures: fresh and expired live data, missing, retired, paused and spec-only models, an
invalid spec, a live model without a spec, and models with and without runs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dag_factory.live.facts import FleetFacts
from dag_factory.live.status import fleet_view, render_status
from dag_factory.plugin import pages
from dag_factory.specs.loader import load_specs
from dag_factory.specs.resolved import resolve_file

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def _ts(delta: timedelta) -> str:
    return (NOW + delta).isoformat(timespec="seconds")


def _record(name: str, status: str = "active", version: str = "v3", spec: str | None = None) -> dict:
    return {"name": name, "status": status, "version": version, "updated_at": "2026-11-29T10:00:00Z",
            **({"spec": spec} if spec else {})}


def _snapshot(expires_in: timedelta) -> dict:
    return {"format": 1, "synced_at": _ts(-timedelta(minutes=10)), "expires_at": _ts(expires_in),
            "models": {"churn_predictor": _record("churn_predictor"),
                       "churn_eu": _record("churn_eu", "paused", "v1", spec="churn_predictor"),
                       "fraud_scorer": _record("fraud_scorer", version="v7"),
                       "ghost": _record("ghost", spec="no_such_spec")},
            "retired": ["demand_forecast"], "missing": {"fraud_scorer": 2}, "rejected": {}}


FACTS = FleetFacts(
    runs={"churn_predictor__train": {"id": 7, "run_id": "manual__1", "state": "success"},
          "churn_predictor__deploy": {"id": 8, "run_id": "asset__1", "state": "failed"},
          "churn_predictor__stream": {"id": 9, "run_id": "scheduled__1", "state": "success"}},
    training={"churn_predictor__train": {"metrics": {"auc": 0.81, "logloss": 0.52}, "model_version": "v3"}},
    deployed={"churn_predictor__deploy": {"staging": {"version": "v3", "run_id": "asset__1"}}},
    offsets={"churn_predictor": {0: {"offset": 299, "empty_polls": 1, "updated_at": _ts(-timedelta(minutes=2))},
                                 1: {"offset": 120, "empty_polls": 0, "updated_at": _ts(-timedelta(minutes=45))}}},
)


@pytest.fixture
def specs(specs_dir: Path):
    """The tests' example specs plus one broken file."""
    (specs_dir / "broken_model.yaml").write_text("model: broken_model\ntraining:\n  schedual: '@daily'\n")
    return load_specs([specs_dir], check_imports=False)


def _rows(view: dict) -> dict:
    return {r["model"]: r for r in view["models"]}


def test_every_kind_of_model_gets_one_row_with_its_live_status(specs):
    view = fleet_view(specs, _snapshot(timedelta(minutes=50)), FACTS, NOW)
    rows = _rows(view)
    assert {m: r["status"] for m, r in rows.items()} == {
        "broken_model": "INVALID SPEC", "churn_predictor": "active", "churn_eu": "paused",
        "fraud_scorer": "missing", "demand_forecast": "retired", "ghost": "NO SPEC"}
    assert view["models"][0]["model"] == "broken_model"  # invalid specs on top
    assert rows["churn_eu"]["spec"] == "churn_predictor" and rows["churn_eu"]["version"] == "v1"
    assert rows["churn_eu"]["dag_ids"] == ["churn_eu__train", "churn_eu__deploy", "churn_eu__stream"]
    assert rows["demand_forecast"]["dag_ids"] == []  # retired: no DAGs
    assert rows["fraud_scorer"]["problems"] == ["missing from the last 2 listing(s)"]
    assert rows["ghost"]["problems"] == ["live model 'ghost' names spec 'no_such_spec', which is not in the specs folder"]
    assert rows["churn_predictor"]["owner"] == "growth-ml" and rows["churn_predictor"]["tags"] == ["churn", "tabular"]


def test_fresh_and_expired_live_data(specs):
    fresh = fleet_view(specs, _snapshot(timedelta(minutes=50)), FACTS, NOW)
    assert fresh["live_data"]["expired"] is False and fresh["live_data"]["expires_in_seconds"] == 3000
    assert _rows(fresh)["churn_predictor"]["problems"] == []
    assert _rows(fresh)["churn_predictor"]["data_age"] == "10m00s"
    expired = fleet_view(specs, _snapshot(-timedelta(minutes=5)), FACTS, NOW)
    assert expired["live_data"]["expired"] is True
    assert _rows(expired)["churn_predictor"]["problems"] == [f"live data stale since {_ts(-timedelta(minutes=5))}"]
    assert _rows(expired)["demand_forecast"]["problems"] == []  # no live record, nothing stale


def test_no_live_data_yet(specs):
    rows = _rows(fleet_view(specs, None, None, NOW))
    assert {m: r["status"] for m, r in rows.items() if r["status"] != "INVALID SPEC"} == {
        "churn_predictor": "no live data", "demand_forecast": "no live data", "fraud_scorer": "no live data"}


def test_invalid_spec_rows_carry_located_errors(specs):
    broken = _rows(fleet_view(specs, None, None, NOW))["broken_model"]
    [error] = broken["errors"]
    assert error["location"].endswith("broken_model.yaml:3:3") and error["line"] == 3
    assert "schedual" in error["message"] and "schedule" in (error["hint"] or error["message"])
    html = pages.models_page({"models": [broken], "live_data": None}, [broken], {})
    assert "broken_model.yaml:3:3</code>" in html and "schedual" in html


def test_runs_metrics_gates_targets_and_stream_lag(specs):
    row = _rows(fleet_view(specs, _snapshot(timedelta(minutes=50)), FACTS, NOW))["churn_predictor"]
    assert row["training"]["run"]["run_id"] == "manual__1"
    assert row["training"]["gates"] == [{"gate": "auc >= 0.78", "value": 0.81, "passed": True},
                                        {"gate": "logloss <= 0.45", "value": 0.52, "passed": False}]
    assert row["deployment"]["targets"] == [{"name": "staging", "version": "v3", "run_id": "asset__1"},
                                            {"name": "production", "version": None, "run_id": None}]
    assert row["streaming"]["lag_seconds"] == 45 * 60 and row["streaming"]["lagging"] is True  # every 10m
    assert row["alerts"] == ["last deployment run failed: asset__1",
                             "last training missed gate(s): logloss <= 0.45",
                             "stream lagging: last batch 45m00s ago (every 10m)"]
    html = pages.models_page({"models": [row], "live_data": None}, [row], {})
    assert 'href="../dags/churn_predictor__train/runs/manual__1"' in html
    assert "<code>logloss &lt;= 0.45</code>: 0.52" in html and "lagging" in html


def test_a_model_with_no_runs_yet(specs):
    row = _rows(fleet_view(specs, _snapshot(timedelta(minutes=50)), FleetFacts(), NOW))["churn_eu"]
    assert row["training"] == {"run": None, "model_version": None, "metrics": {},
                               "gates": [{"gate": "auc >= 0.78", "value": None, "passed": None},
                                         {"gate": "logloss <= 0.45", "value": None, "passed": None}]}
    assert row["streaming"]["lag_seconds"] is None and row["alerts"] == []
    assert "no runs yet" in pages.models_page({"models": [row], "live_data": None}, [row], {})


def test_filters_and_sorting_keep_invalid_specs_on_top(specs):
    from dag_factory.live.status import filter_rows

    rows = fleet_view(specs, _snapshot(timedelta(minutes=50)), FACTS, NOW)["models"]
    assert [r["model"] for r in filter_rows(rows, status="paused")] == ["churn_eu"]
    assert [r["model"] for r in filter_rows(rows, owner="risk-ml")] == ["fraud_scorer"]
    assert [r["model"] for r in filter_rows(rows, tag="forecasting")] == ["demand_forecast"]
    troubled = [r["model"] for r in filter_rows(rows, problem="yes")]
    assert troubled == ["broken_model", "churn_predictor", "fraud_scorer", "ghost"]
    assert [r["model"] for r in filter_rows(rows, sort="-model")][:2] == ["broken_model", "ghost"]
    assert [r["model"] for r in filter_rows(rows, text="CHURN")] == ["churn_eu", "churn_predictor"]


def test_the_cli_table_keeps_its_columns(specs):
    text = render_status(fleet_view(specs, _snapshot(timedelta(minutes=50)), FACTS, NOW)["models"])
    lines = text.splitlines()
    assert lines[0].split() == ["model", "spec", "status", "version", "age", "dags", "/", "problems"]
    assert any(line.split()[:6] == ["churn_eu", "churn_predictor", "paused", "v1", "10m00s", "train,"]
               for line in lines)


def test_resolved_spec_says_which_keys_came_from_the_defaults(specs_dir: Path):
    resolved = resolve_file(specs_dir / "demand_forecast.yaml")
    assert resolved["as_written"].startswith("# yaml-language-server")
    assert resolved["resolved"]["training"]["timeout"] == "6h"  # the spec's own value wins
    assert resolved["resolved"]["training"]["poll_interval"] == "30s"  # from _defaults.yaml
    assert "training.poll_interval" in resolved["from_defaults"] and "owner" in resolved["from_defaults"]
    assert "training.timeout" not in resolved["from_defaults"] and "model" not in resolved["from_defaults"]
    assert "streaming" not in resolved["resolved"]  # no section in the spec: the defaults' is not applied


def test_a_live_model_whose_spec_is_invalid_points_at_the_file(specs):
    snap = {**_snapshot(timedelta(minutes=50)), "models": {"broken_model": _record("broken_model")}}
    rows = [r for r in fleet_view(specs, snap, FACTS, NOW)["models"] if r["model"] == "broken_model"]
    assert [r["status"] for r in rows] == ["INVALID SPEC", "NO SPEC"]
    assert rows[1]["spec_file"] == rows[0]["spec_file"] and rows[1]["spec_file"].endswith("broken_model.yaml")
    assert rows[1]["problems"] == [f"live model 'broken_model' uses {rows[0]['spec_file']}, which is invalid: "
                                   "no DAGs until it is fixed"]
