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
        assert self.query == {"ascending": False, "limit": 10}, self.query
        return iter([SimpleNamespace(extra=e) for e in reversed(self.extras)][:10])


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


def test_events_without_a_version_are_passed_over() -> None:
    inlets = _Inlets([{"version": "v3"}, {"version": "v4"}, {"note": "posted by hand"}])
    assert resolve_version(MODEL, _run(), _triggering({"version": "v3"}), inlets) == "v4"


def test_without_the_inlet_the_triggering_events_decide() -> None:
    # e.g. a spec's replacement of resolve_version that calls this one (the builder adds the inlet
    # to it too; an accessor without the Asset must not fail the run)
    assert resolve_version(MODEL, _run(), _triggering({"version": "v2"}, {"version": "v3"}), {}) == "v3"
    assert resolve_version(MODEL, _run(), _triggering({"version": "v3"}), None) == "v3"


def test_a_manual_run_does_not_read_the_asset_events() -> None:
    inlets = _Inlets([{"version": "v9"}])
    assert resolve_version(MODEL, _run({"version": "v1"}), {}, inlets) == "v1"
    assert not inlets.read


def test_pick_version_takes_the_last_event_with_a_version() -> None:
    assert pick_version(None, [{"version": "v1"}, {"version": "v2"}, {}]) == "v2"
    assert pick_version("v7", [{"version": "v1"}]) == "v7"
    assert pick_version(None, [None, "text", {"version": ""}]) is None


def test_resolve_version_and_a_replacement_of_it_have_the_asset_as_inlet(specs_dir) -> None:
    from dag_factory.builders.register import build_dags
    from dag_factory.specs import load_specs

    (specs_dir / "dep.yaml").write_text(
        "model: dep\ndeployment:\n  targets: [staging]\n  steps:\n"
        "    - {replace: resolve_version, python: 'dag_factory.steps:require_dataset_uri'}\n")
    dags = build_dags(load_specs([specs_dir], check_imports=False))
    for dag_id, model in (("churn_predictor__deploy", "churn_predictor"), ("dep__deploy", "dep")):
        assert dags[dag_id].get_task("resolve_version").inlets == [model_asset(model)], dag_id
