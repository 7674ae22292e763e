"""Which version a deployment run deploys. The SDK's event accessors are stood in for by small
classes here; tests/e2e/newest_version_scenario.py runs the same on the real scheduler."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from airflow.sdk import Asset

from dag_factory.runtime.deployment import pick_version, resolve_version
from dag_factory.runtime.training import model_asset

MODEL = "churn"


class _Newest:
    """`inlet_events[asset]`: records the query the task makes (newest first, one event)."""

    def __init__(self, extras: list[dict[str, Any]]) -> None:
        self.extras, self.query = extras, {}

    def ascending(self, flag: bool) -> _Newest:
        self.query["ascending"] = flag
        return self

    def limit(self, n: int) -> _Newest:
        self.query["limit"] = n
        return self

    def __iter__(self):
        assert self.query == {"ascending": False, "limit": 1}, self.query
        return iter([SimpleNamespace(extra=e) for e in reversed(self.extras)][:1])


class _Inlets(dict):
    def __init__(self, extras: list[dict[str, Any]]) -> None:
        super().__init__({model_asset(MODEL): _Newest(extras)})
        self.read = False

    def __getitem__(self, asset: Asset) -> _Newest:
        self.read = True
        return super().__getitem__(asset)


def _run(conf: dict[str, Any] | None = None) -> SimpleNamespace:
    return SimpleNamespace(conf=conf or {}, dag_id=f"{MODEL}__deploy", run_id="r")


def _triggering(*extras: dict[str, Any]) -> dict[Asset, list[SimpleNamespace]]:
    return {model_asset(MODEL): [SimpleNamespace(extra=e) for e in extras]}


def test_the_conf_version_wins_over_every_event() -> None:
    inlets = _Inlets([{"version": "v9"}])
    assert resolve_version(MODEL, _run({"version": "v2"}), _triggering({"version": "v3"}), inlets) == "v2"


def test_an_asset_run_deploys_the_newest_event_not_only_the_ones_that_started_it() -> None:
    # v4 came while a deployment ran; Airflow folded it into the queue row of v3 (apache/airflow#56050)
    inlets = _Inlets([{"version": "v3"}, {"version": "v4"}])
    assert resolve_version(MODEL, _run(), _triggering({"version": "v3"}), inlets) == "v4"
    assert inlets.read


def test_a_newest_event_without_a_version_falls_back_to_the_triggering_ones() -> None:
    inlets = _Inlets([{"version": "v3"}, {"note": "posted by hand"}])
    assert resolve_version(MODEL, _run(), _triggering({"version": "v2"}, {"version": "v3"}), inlets) == "v3"


def test_a_manual_run_does_not_read_the_asset_events() -> None:
    inlets = _Inlets([{"version": "v9"}])
    assert resolve_version(MODEL, _run({"version": "v1"}), {}, inlets) == "v1"
    assert not inlets.read


def test_pick_version_takes_the_last_event_with_a_version() -> None:
    assert pick_version(None, [{"version": "v1"}, {"version": "v2"}, {}]) == "v2"
    assert pick_version("v7", [{"version": "v1"}]) == "v7"
    assert pick_version(None, [None, "text", {"version": ""}]) is None
