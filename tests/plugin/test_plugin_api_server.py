"""The plugin in a real `airflow api-server` (loaded through the package's entry point), over
loopback HTTP: behind Airflow's auth manager, and serving the fleet's data from the metadata DB.

The home (SQLite, 4 models with two runs per DAG, the live Variable) is the benchmark's
(benchmarks/models_page.py --prepare), built in a child process.
"""

from __future__ import annotations

import sys

import pytest
import requests

from tests.support import ROOT

sys.path.insert(0, str(ROOT))
from benchmarks.models_page import ApiServer, _free_port, prepare_in_child  # noqa: E402

MODELS = ["model_00001", "model_00002", "model_00003", "model_00004"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("plugin_api")
    port = _free_port()
    prepared = prepare_in_child(base, len(MODELS), 2, port)
    with ApiServer(prepared["env"], port, base / "api-server.log") as running:
        running.wait()
        token = requests.post(f"{running.url}/auth/token", json={"username": "admin", "password": prepared["password"]},
                              timeout=30).json()["access_token"]
        yield running.url, token


def _no_data(response: requests.Response) -> None:
    assert not any(m in response.text for m in MODELS), response.text[:500]


def test_anonymous_requests_get_401_or_the_login_page_never_data(server):
    url, _ = server
    for path in ("/dag-factory/api/models", "/dag-factory/api/models/model_00001"):
        response = requests.get(url + path, timeout=30, allow_redirects=False)
        assert response.status_code == 401, (path, response.status_code, response.text[:300])
        _no_data(response)
    for path in ("/dag-factory/models", "/dag-factory/model?dag_id=model_00001__train"):
        response = requests.get(url + path, timeout=30, allow_redirects=False)
        assert response.status_code == 302 and "/auth/login" in response.headers["location"], response.status_code
        assert "next=" in response.headers["location"]
        _no_data(response)
    forged = requests.get(url + "/dag-factory/api/models", headers={"Authorization": "Bearer not.a.jwt"}, timeout=30)
    assert forged.status_code in (401, 403)
    _no_data(forged)
    cookie = requests.get(url + "/dag-factory/models", cookies={"_token": "not.a.jwt"}, timeout=30,
                          allow_redirects=False)
    assert cookie.status_code in (302, 401, 403)
    _no_data(cookie)


def test_the_json_endpoint_serves_every_model_from_the_db(server):
    url, token = server
    response = requests.get(url + "/dag-factory/api/models", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert response.status_code == 200
    body = response.json()
    rows = {r["model"]: r for r in body["models"]}
    assert sorted(rows) == MODELS and body["live_data"]["expired"] is False
    # each entry file's last parse vs the processor's timeout (these hand-made `dag` rows have no file)
    assert body["parsing"]["timeout_seconds"] == 50.0 and body["parsing"]["files"] == []
    churn_like = rows["model_00001"]  # the examples cycled: 00001 is a churn_predictor
    assert churn_like["status"] == "active" and churn_like["version"] == "v1"
    assert churn_like["training"]["run"]["state"] in ("success", "failed")
    assert [t["version"] for t in churn_like["deployment"]["targets"]] == ["v2", "v2"]  # the 2nd run's
    assert len(churn_like["streaming"]["partitions"]) == 4 and churn_like["streaming"]["lag_seconds"] >= 120
    only = requests.get(url + "/dag-factory/api/models", params={"owner": "risk-ml"},
                        headers={"Authorization": f"Bearer {token}"}, timeout=60).json()
    assert [r["owner"] for r in only["models"]] == ["risk-ml"] and only["total"] == 4


def test_page_tab_and_ui_registration_with_the_ui_cookie(server):
    url, token = server
    page = requests.get(url + "/dag-factory/models", cookies={"_token": token}, timeout=60)
    assert page.status_code == 200 and all(m in page.text for m in MODELS)
    tab = requests.get(url + "/dag-factory/model", params={"dag_id": "model_00002__deploy"},
                       cookies={"_token": token}, timeout=60)
    assert tab.status_code == 200
    assert "Resolved spec" in tab.text and "Spec as written" in tab.text and "model: model_00002" in tab.text
    assert 'title="from _defaults.yaml">defaults</span>' in tab.text
    # access is checked on the DAG the tab names: it cannot be used to show another model
    other = requests.get(url + "/dag-factory/model", params={"dag_id": "model_00002__deploy", "model": "model_00001"},
                         cookies={"_token": token}, timeout=60)
    assert other.status_code == 400 and "model: model_00001" not in other.text
    plugins = requests.get(url + "/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}, timeout=60).json()
    [ours] = [p for p in plugins["plugins"] if p["name"] == "dag_factory"]
    views = {v["destination"]: v for v in ours["external_views"]}
    assert views["nav"]["href"] == "dag-factory/models" and views["nav"]["name"] == "Models"
    assert views["dag"]["href"] == "dag-factory/model?dag_id={DAG_ID}" and views["dag"]["name"] == "Model"
