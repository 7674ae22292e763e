"""The Models page and its JSON carry each entry file's last parse against the dag-processor's
timeout, with files near it marked, from the same `fleet_view` as `dag-factory status`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from dag_factory.live.facts import FleetFacts
from dag_factory.live.status import fleet_view
from dag_factory.plugin import pages
from dag_factory.specs.loader import load_specs

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
PARSED = (NOW - timedelta(minutes=2)).isoformat(timespec="seconds")
FACTS = FleetFacts(parses=[{"bundle": "dags-folder", "file": "model_dags_1_of_2.py", "dags": 6, "models": 2,
                            "seconds": 8.0, "parsed_at": PARSED},
                           {"bundle": "dags-folder", "file": "model_dags_2_of_2.py", "dags": 3, "models": 1,
                            "seconds": 41.5, "parsed_at": PARSED}],
                   timeouts={"processor": 50.0, "import": 30.0})


def test_the_view_and_its_json_carry_the_parse_headroom(specs_dir):
    view = fleet_view(load_specs([specs_dir], check_imports=False), None, FACTS, NOW)
    parsing = json.loads(json.dumps(view))["parsing"]  # what GET /dag-factory/api/models returns
    assert parsing["timeout_seconds"] == 50.0 and parsing["warn_fraction"] == 0.5
    assert [(f["name"], round(f["fraction"], 2), f["warn"]) for f in parsing["files"]] == [
        ("model_dags_1_of_2.py", 0.16, False), ("model_dags_2_of_2.py", 0.83, True)]
    assert parsing["suggested_count"] == 10 and len(parsing["warnings"]) == 1


def test_the_models_page_shows_each_file_and_marks_the_one_near_the_timeout(specs_dir):
    view = fleet_view(load_specs([specs_dir], check_imports=False), None, FACTS, NOW)
    html = pages.models_page(view, view["models"], {})
    table = html.split("<table id=parse-headroom>")[1].split("</table>")[0]
    assert '<tr data-file="model_dags_1_of_2.py">' in table and "8.0 s of 50 s (16%)" in table
    assert '<tr class=warn data-file="model_dags_2_of_2.py">' in table and "41.5 s of 50 s (83%)" in table
    assert "near timeout" in table and "2m00s ago" in table
    assert "`dag-factory entry-files 10`" in html.replace("&#x27;", "'").replace("&lt;", "<")


def test_without_a_recorded_parse_the_page_says_so(specs_dir):
    view = fleet_view(load_specs([specs_dir], check_imports=False), None, FleetFacts(), NOW)
    html = pages.models_page(view, view["models"], {})
    assert "id=parse-headroom>" in html and "no parse recorded yet" in html
