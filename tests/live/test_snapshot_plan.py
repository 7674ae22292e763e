"""The pure sync planning: what one complete listing does to the stored snapshot."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from dag_factory.live import snapshot
from dag_factory.live.fleet import plan_fleet
from dag_factory.specs import load_specs
from tests.support import SPECS

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
TTL = timedelta(hours=1)


def rec(name, **extra):
    return {"name": name, "status": "active", "version": "v1", "updated_at": "2026-11-27T10:00:00Z", **extra}


def plan(old, listing, now=NOW, limit=3):
    return snapshot.plan(old, listing, now, ttl=TTL, missing_limit=limit)


def test_first_sync_writes_every_model():
    new, report = plan(None, [rec("a"), rec("b", spec="a")])
    assert report.written and report.added == ("a", "b") and set(new["models"]) == {"a", "b"}
    assert new["expires_at"] == "2026-11-27T13:00:00+00:00"


def test_an_unchanged_listing_writes_nothing_until_half_the_ttl_has_passed():
    first, _ = plan(None, [rec("a")])
    again, report = plan(first, [rec("a")], NOW + timedelta(minutes=10))
    assert not report.written and again == first
    later, report = plan(first, [rec("a")], NOW + timedelta(minutes=31))
    assert report.written and report.reason == "freshness renewed"
    assert later["content_hash"] == first["content_hash"] and later["expires_at"] > first["expires_at"]


def test_retired_models_are_dropped_and_listed():
    first, _ = plan(None, [rec("a"), rec("b")])
    new, report = plan(first, [rec("a"), rec("b", status="retired")])
    assert set(new["models"]) == {"a"} and new["retired"] == ["b"] and report.retired == ("b",)


def test_a_missing_model_stays_until_the_limit():
    snap, _ = plan(None, [rec("a"), rec("b")])
    for count in (1, 2):
        snap, report = plan(snap, [rec("a")])
        assert "b" in snap["models"] and snap["missing"] == {"b": count}
    snap, report = plan(snap, [rec("a")])
    assert "b" not in snap["models"] and report.removed_missing == ("b",)
    back, _ = plan(plan(None, [rec("a"), rec("b")])[0], [rec("a")])
    back, _ = plan(back, [rec("a"), rec("b")])
    assert back["missing"] == {}  # seen again: the count starts over


def test_bad_records_are_skipped_and_their_model_keeps_its_old_data():
    first, _ = plan(None, [rec("a", version="v1"), rec("b")])
    hostile = [
        rec("a", version=7),                                   # wrong type: a keeps v1
        rec("{{ var.value.secret }}"),                         # not an identifier
        rec("c", spec="$(rm -rf /)"),                          # not an identifier
        rec("d", training={"dataset_uri": "x" * 20_000}),      # huge value
        rec("e", training={"schedule": "every tuesday"}),      # not a schedule
        "not even an object",
        rec("b"),
    ]
    new, report = plan(first, hostile)
    assert new["models"]["a"]["version"] == "v1"
    assert set(new["models"]) == {"a", "b"}
    assert set(report.rejected) == {"a", "{{ var.value.secret }}", "c", "d", "e", 'record #5'}
    assert "version: expected string, got integer 7" in report.rejected["a"]
    assert "is not in the expected format" in report.rejected["c"]
    assert "bytes; at most" in report.rejected["d"]
    assert any(line.startswith("REJECTED record a:") for line in report.lines())


def test_hash_ignores_freshness_and_key_order():
    a, _ = plan(None, [rec("a"), rec("b")])
    b, _ = plan(None, [rec("b"), rec("a")], NOW + timedelta(minutes=5))
    assert a["content_hash"] == b["content_hash"] and a["synced_at"] != b["synced_at"]


def test_the_fleet_follows_live_data():
    specs = load_specs([SPECS]).by_name()
    snap, _ = plan(None, [
        rec("churn_eu", spec="churn_predictor"), rec("churn_us", spec="churn_predictor", status="paused"),
        rec("demand_forecast", status="retired"), rec("ghost", spec="no_such_spec"),
        rec("fraud_scorer", training={"schedule": "@hourly"}),
    ])
    fleet, problems = plan_fleet(specs, snap)
    by_name = {m.name: m for m in fleet}
    assert sorted(by_name) == ["churn_eu", "churn_predictor", "churn_us", "fraud_scorer"]
    assert by_name["churn_us"].paused and by_name["churn_eu"].spec.name == "churn_predictor"
    assert by_name["fraud_scorer"].training_schedule == "@hourly"
    assert problems == ["live model 'ghost' names spec 'no_such_spec', which is not in the specs folder"]
    no_live, _ = plan_fleet(specs, None)
    assert [m.name for m in no_live] == ["churn_predictor", "demand_forecast", "fraud_scorer"]


def test_parse_rejects_unreadable_snapshots():
    assert snapshot.parse(None) is None and snapshot.parse("{not json") is None
    assert snapshot.parse(json.dumps({"format": 99, "models": {}})) is None


def test_dag_changes_name_only_the_specs_whose_dags_a_change_touches():
    first, _ = plan(None, [rec("a"), rec("b", spec="a"), rec("c"), rec("d")])
    assert first["dag_changes"] == {"*": "2026-11-27T12:00:00+00:00"}  # first snapshot: everything
    later = NOW + timedelta(minutes=5)
    # a new version and a dataset: read at run time, no DAG changes
    same, report = plan(first, [rec("a", version="v2"), rec("b", spec="a"), rec("c", datasets=["x"]), rec("d")], later)
    assert report.written and same["dag_changes"] == first["dag_changes"]
    # paused, another schedule, moved to another spec, retired: those specs' DAGs change
    moved, _ = plan(same, [rec("a", version="v2", status="paused"), rec("b", spec="c"),
                          rec("c", datasets=["x"], training={"schedule": "@daily"}), rec("d", status="retired")], later)
    stamp = later.isoformat(timespec="seconds")
    assert moved["dag_changes"] == {"*": "2026-11-27T12:00:00+00:00", "a": stamp, "b": stamp, "c": stamp, "d": stamp}
    assert snapshot.dag_changed_at(moved, lambda spec: spec == "zz") == NOW.timestamp()  # "*" covers every spec
    # a day later the old entries are gone; a model added touches its own spec only
    next_day = NOW + timedelta(days=1, minutes=10)
    added, _ = plan(moved, [*[rec(n) for n in "abcd"], rec("e")], next_day)
    assert set(added["dag_changes"]) == {"a", "b", "c", "d", "e"}
    assert snapshot.dag_changed_at(added, lambda spec: spec == "zz") is None


def test_a_snapshot_from_an_older_version_counts_as_a_change_to_every_spec():
    first, _ = plan(None, [rec("a")])
    del first["dag_changes"]
    assert snapshot.dag_changed_at(first, lambda spec: False) == NOW.timestamp()  # its changed_at
    new, _ = plan(first, [rec("a", status="paused")], NOW + timedelta(minutes=1))
    assert list(new["dag_changes"]) == ["*"]


def test_a_change_to_very_many_specs_is_one_star_entry():
    first, _ = plan(None, [rec(f"m{i}") for i in range(300)])
    paused, _ = plan(first, [rec(f"m{i}", status="paused") for i in range(300)], NOW + timedelta(minutes=1))
    assert list(paused["dag_changes"]) == ["*"]
