"""The backend contract (docs/backend-api.yaml, OpenAPI 3.1) against its two implementations:
the reference server serves exactly the contract's operations (plus its `/_admin/` routes, which
are not part of it), its answers on a real socket validate against the contract's response
schemas, and the client calls only the contract's paths."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from fastapi.routing import APIRoute
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from dag_factory.client import BackendClient, BackendError
from dag_factory.dev.backend.app import create_app
from dag_factory.dev.backend.process import RunningBackend
from tests.support import ROOT

CONTRACT_FILE = ROOT / "docs" / "backend-api.yaml"
CONTRACT_URI = "urn:dag-factory:backend-api"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
ADMIN_PREFIX = "/_admin/"
MODEL = "churn"  # in tests/backend/conftest.py's seed, with targets staging and prod
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def is_date_time(value: object) -> bool:
    """RFC 3339 with a time zone (jsonschema checks it only when rfc3339-validator is installed)."""
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


@cache
def contract() -> dict[str, Any]:
    return yaml.safe_load(CONTRACT_FILE.read_text(encoding="utf-8"))


def shape(path: str) -> str:
    """A path template with its parameter names (and converters) left out: /a/{name:path} -> /a/{}."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def contract_operations() -> set[tuple[str, str]]:
    """(METHOD, path template) of every operation in the contract."""
    return {(method.upper(), path) for path, item in contract()["paths"].items() for method in item
            if method in METHODS}


def template_for(method: str, path: str) -> str | None:
    """The contract path template a concrete request path matches, or None."""
    for op_method, template in contract_operations():
        pattern = "^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template)) + "$"
        if op_method == method and re.match(pattern, path):
            return template
    return None


def escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def response_schema(template: str, method: str, status: int) -> tuple[dict[str, Any], str]:
    """(response object, JSON pointer of its JSON schema) for one documented answer;
    a `$ref` to #/components/responses is followed."""
    responses = contract()["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, which the contract does not list"
    response = responses[str(status)]
    pointer = f"/paths/{escape(template)}/{method.lower()}/responses/{status}"
    if "$ref" in response:
        pointer = response["$ref"].removeprefix("#")
        response = contract()["components"]["responses"][pointer.rsplit("/", 1)[1]]
    return response, f"{pointer}/content/application~1json/schema"


@cache
def registry() -> Registry:
    return Registry().with_resource(CONTRACT_URI, Resource.from_contents(contract(), default_specification=DRAFT202012))


def check_answer(response: requests.Response, template: str) -> Any:
    """Assert that `response` is one the contract documents for its operation, body and headers."""
    method = response.request.method
    documented, pointer = response_schema(template, method, response.status_code)
    body = response.json()
    validator = Draft202012Validator({"$ref": f"{CONTRACT_URI}#{pointer}"}, registry=registry(),
                                     format_checker=FORMATS)
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in validator.iter_errors(body)]
    assert not problems, f"{method} {response.url} -> {response.status_code}: {problems}\n{body}"
    missing = [h for h in documented.get("headers", {}) if h not in response.headers]
    assert not missing, f"{method} {response.url}: headers {missing} missing"
    return body


# --------------------------------------------------------------------------------------------


def test_the_server_serves_exactly_the_contract(tmp_path: Path) -> None:
    app = create_app(str(tmp_path / "backend.sqlite3"), "token")
    served = {(method, route.path) for route in app.routes if isinstance(route, APIRoute) for method in route.methods}
    public = {(m, shape(p)) for m, p in served if not p.startswith(ADMIN_PREFIX)}
    documented = {(m, shape(p)) for m, p in contract_operations()}
    assert not documented - public, f"in the contract, not served: {sorted(documented - public)}"
    assert not public - documented, f"served, not in the contract (admin routes go under {ADMIN_PREFIX}): " \
        f"{sorted(public - documented)}"
    assert any(p.startswith(ADMIN_PREFIX) for _, p in served), "the admin API is served too (not in the contract)"


def test_answers_on_a_real_socket_validate_against_the_contract(backend: RunningBackend) -> None:
    auth = {"Authorization": f"Bearer {backend.token}"}
    backend.admin("PUT", "/settings", {"job_delay": 0})  # jobs are done when first read

    def call(method: str, path: str, template: str, *, key: str | None = None, headers: dict | None = None,
             **kwargs: Any) -> Any:
        sent = dict(auth if headers is None else headers, **({"Idempotency-Key": key} if key else {}))
        response = requests.request(method, backend.url + path, headers=sent, timeout=10, **kwargs)
        return response.status_code, check_answer(response, template)

    assert call("GET", "/api/v1/health", "/api/v1/health", headers={}) == (200, {"status": "ok"})
    status, page = call("GET", "/api/v1/models", "/api/v1/models", params={"limit": 2})
    assert status == 200 and len(page["models"]) == 2 and page["next_page_token"]
    status, last = call("GET", "/api/v1/models", "/api/v1/models", params={"limit": 2, "page_token": page["next_page_token"]})
    assert (status, last["next_page_token"]) == (200, None)
    assert call("GET", "/api/v1/models", "/api/v1/models", headers={})[0] == 401
    assert call("GET", f"/api/v1/models/{MODEL}", "/api/v1/models/{name}")[1]["name"] == MODEL
    assert call("GET", "/api/v1/models/no_such_model", "/api/v1/models/{name}")[0] == 404

    training = "/api/v1/models/{name}/training-runs"
    status, job = call("POST", f"/api/v1/models/{MODEL}/training-runs", training, key="train-1",
                       json={"dataset_uri": "s3://d/churn", "hyperparameters": {"depth": 3}, "reason": "contract"})
    assert status == 201
    assert call("POST", f"/api/v1/models/{MODEL}/training-runs", training, key="train-1",
                json={"dataset_uri": "s3://d/churn", "hyperparameters": {"depth": 3}, "reason": "contract"}) == (201, job), \
        "a repeated POST replays the first answer"
    assert call("POST", "/api/v1/models/no_such_model/training-runs", training, key="train-2", json={})[0] == 404
    status, done = call("GET", f"/api/v1/training-runs/{job['id']}", "/api/v1/training-runs/{id}")
    assert (status, done["status"]) == (200, "succeeded") and done["metrics"]
    assert call("GET", "/api/v1/training-runs/tr-none", "/api/v1/training-runs/{id}")[0] == 404

    status, deployment = call("POST", f"/api/v1/models/{MODEL}/deployments", "/api/v1/models/{name}/deployments",
                              key="deploy-1", json={"version": done["model_version"], "target": "staging"})
    assert status == 201
    status, deployed = call("GET", f"/api/v1/deployments/{deployment['id']}", "/api/v1/deployments/{id}")
    assert (status, deployed["status"]) == (200, "succeeded") and deployed["metrics"]
    status, rolled = call("POST", f"/api/v1/deployments/{deployment['id']}/rollback", "/api/v1/deployments/{id}/rollback",
                          key="rollback-1", json={})
    assert (status, rolled["status"]) == (200, "rolled_back")

    status, batch = call("POST", f"/api/v1/models/{MODEL}/stream-batches", "/api/v1/models/{name}/stream-batches",
                         key="batch-1", json={"partition": 0, "after_offset": -1, "max_records": 5})
    assert (status, batch) == (200, {"partition": 0, "records": 5, "next_offset": 4})


def test_the_client_calls_only_contract_paths(backend: RunningBackend, client: BackendClient) -> None:
    backend.admin("PUT", "/settings", {"job_delay": 0})
    client.health()
    models = client.list_models(limit=2)  # several pages
    client.get_model(MODEL)
    with pytest.raises(BackendError):
        client.get_model("no_such_model")
    job = client.start_training(MODEL, idempotency_key="c-train", dataset_uri="s3://d", hyperparameters={}, reason="x")
    version = client.get_training_run(job["id"])["model_version"]
    deployment = client.deploy(MODEL, version=version, target="staging", idempotency_key="c-deploy")
    client.get_deployment(deployment["id"])
    client.rollback(deployment["id"], idempotency_key="c-rollback")
    client.process_stream_batch(MODEL, partition=0, after_offset=-1, max_records=3, idempotency_key="c-batch")
    assert len(models) > 2

    sent = [(r["method"], r["path"]) for r in backend.admin("GET", "/requests")["requests"]]
    unknown = [f"{m} {p}" for m, p in sent if template_for(m, p) is None]
    assert not unknown, f"the client called paths outside the contract: {unknown}"
    assert {(m, template_for(m, p)) for m, p in sent} == contract_operations(), \
        "one client method per contract operation, all of them called above"


def test_every_path_written_in_the_client_is_in_the_contract() -> None:
    """The URL templates in the client's source, including ones no test above reaches."""
    source = (ROOT / "dag_factory" / "client.py").read_text(encoding="utf-8")
    calls = re.findall(r'"(?:(GET|POST|PUT|PATCH|DELETE) )?(/api/[^"\s]*)"', source)
    assert calls, "the client builds its URLs from literal templates"
    paths = contract()["paths"]
    for method, path in calls:
        assert path in paths, f"client.py names {path}, which is not in {CONTRACT_FILE.name}"
        if method:
            assert method.lower() in paths[path], f"client.py names {method} {path}, not in {CONTRACT_FILE.name}"
