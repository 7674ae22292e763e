"""Reference model backend, HTTP routes: the contract endpoints and the admin API over
``state.Backend`` (FastAPI)."""

import asyncio
import logging
import re
import sqlite3
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from dag_factory.dev.backend.state import (
    DEFAULT_STREAM_LENGTH,
    HEALTH_PATH,
    MAX_IDEMPOTENCY_KEY,
    ApiError,
    Backend,
    json_bytes,
    parse_json_body,
    require_object,
    token_matches,
    validate_deployment_body,
    validate_stream_body,
    validate_training_body,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------

def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=json_bytes(body), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def idempotency_key(request: Request) -> str:
    """The request's Idempotency-Key; 400 if it is missing or too long."""
    key = request.headers.get("idempotency-key")
    if not key or not key.strip():
        raise ApiError(400, "the Idempotency-Key header is required on every POST")
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(400, f"Idempotency-Key is longer than {MAX_IDEMPOTENCY_KEY} characters")
    return key


def create_app(
    db_path: str,
    token: str,
    *,
    job_delay: float = 1.0,
    seed: list[dict] | None = None,
    stream_length: int = DEFAULT_STREAM_LENGTH,
) -> FastAPI:
    """The reference backend as an ASGI app over the SQLite file ``db_path``."""
    if not token:
        raise ValueError("the backend needs a non-empty token")
    backend = Backend(db_path, job_delay=job_delay, stream_length=stream_length, seed=seed)
    app = FastAPI(title="Model backend (reference)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.backend = backend

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()
        )
        return error_response(422, problems or "invalid request")

    @app.middleware("http")
    async def _gate(request: Request, call_next: Callable[[Request], Any]) -> Response:
        """Faults, then authentication, then the route; logs /api/ requests."""
        path, method = request.scope["path"], request.method
        is_api = path.startswith("/api/")
        response = fault = None
        if is_api:
            fault = backend.take_fault(method, path)
            if fault is not None:
                if fault["delay"]:
                    await asyncio.sleep(fault["delay"])
                if fault["status"] is not None:
                    headers = {"Retry-After": fault["retry_after"]} if fault["retry_after"] is not None else None
                    response = error_response(fault["status"], "injected fault", headers)
        if response is None and path != HEALTH_PATH and not token_matches(request.headers.get("authorization"), token):
            response = error_response(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})
        if response is None:
            try:
                response = await call_next(request)
            except Exception:  # noqa: BLE001 - an answer beats a dropped connection
                log.exception("unhandled error in %s %s", method, path)
                response = error_response(500, "internal error")
        if is_api:
            backend.log_request(method, path, request.url.query, response.status_code,
                                request.headers.get("idempotency-key"))
        if fault is not None and fault.get("delay_after"):
            await asyncio.sleep(fault["delay_after"])  # the work is done; only the answer is late
        return response

    def post_job(
        request: Request, key: str, body: Any, action: Callable[[sqlite3.Connection], tuple[int, dict]]
    ) -> Response:
        status, answer, replayed = backend.idempotent(key, "POST", request.scope["path"], body, action)
        return json_response(answer, status, {"Idempotent-Replayed": "true"} if replayed else None)

    # -- contract endpoints --------------------------------------------------

    @app.get(HEALTH_PATH)
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/api/v1/models")
    async def list_models(request: Request) -> Response:
        limit_text = request.query_params.get("limit", "100")
        if not re.fullmatch(r"\d{1,4}", limit_text) or not 1 <= int(limit_text) <= 500:
            raise ApiError(400, "limit must be an integer in 1..500")
        body, etag = backend.list_models(int(limit_text), request.query_params.get("page_token"))
        return Response(content=body, media_type="application/json", headers={"ETag": etag})

    @app.get("/api/v1/models/{name}")
    async def get_model(name: str) -> Response:
        return json_response(backend.get_model(name))

    @app.post("/api/v1/models/{name}/training-runs")
    async def start_training(name: str, request: Request) -> Response:
        key = idempotency_key(request)
        body = validate_training_body(parse_json_body(await request.body()))
        return post_job(request, key, body, lambda db: backend.start_training(db, name, key, body))

    @app.get("/api/v1/training-runs/{job_id}")
    async def get_training_run(job_id: str) -> Response:
        return json_response(backend.get_job(job_id, "training"))

    @app.post("/api/v1/models/{name}/deployments")
    async def deploy(name: str, request: Request) -> Response:
        key = idempotency_key(request)
        body = parse_json_body(await request.body(), allow_empty=False)
        version, target = validate_deployment_body(body)
        return post_job(request, key, body, lambda db: backend.start_deployment(db, name, key, version, target))

    @app.get("/api/v1/deployments/{job_id}")
    async def get_deployment(job_id: str) -> Response:
        return json_response(backend.get_job(job_id, "deployment"))

    @app.post("/api/v1/deployments/{job_id}/rollback")
    async def rollback(job_id: str, request: Request) -> Response:
        key = idempotency_key(request)
        body = require_object(parse_json_body(await request.body()))
        return post_job(request, key, body, lambda db: backend.rollback(db, job_id))

    @app.post("/api/v1/models/{name}/stream-batches")
    async def stream_batch(name: str, request: Request) -> Response:
        key = idempotency_key(request)
        body = parse_json_body(await request.body(), allow_empty=False)
        partition, after, max_records = validate_stream_body(body)
        return post_job(request, key, body, lambda db: backend.process_batch(db, name, partition, after, max_records))

    # -- admin endpoints -----------------------------------------------------

    @app.get("/_admin/models")
    async def admin_models() -> Response:
        return json_response({"models": backend.admin_models()})

    @app.put("/_admin/models")
    async def admin_replace_models(request: Request) -> Response:
        return json_response({"count": backend.replace_models(parse_json_body(await request.body(), allow_empty=False))})

    @app.post("/_admin/models")
    async def admin_upsert_models(request: Request) -> Response:
        records = backend.upsert_models(parse_json_body(await request.body(), allow_empty=False))
        return json_response({"models": records})

    @app.put("/_admin/models/{name}/training-metrics")
    async def admin_training_metrics(name: str, request: Request) -> Response:
        backend.set_training_metrics(name, parse_json_body(await request.body()))
        return json_response({"ok": True})

    @app.post("/_admin/models/{name}/fail-training")
    async def admin_fail_training(name: str, request: Request) -> Response:
        backend.arm_failure("training", name, parse_json_body(await request.body()))
        return json_response({"ok": True})

    @app.post("/_admin/models/{name}/fail-deployment")
    async def admin_fail_deployment(name: str, request: Request) -> Response:
        backend.arm_failure("deployment", name, parse_json_body(await request.body()))
        return json_response({"ok": True})

    @app.patch("/_admin/models/{name:path}")
    async def admin_patch_model(name: str, request: Request) -> Response:
        return json_response({"model": backend.patch_model(name, parse_json_body(await request.body()))})

    @app.delete("/_admin/models/{name:path}")
    async def admin_delete_model(name: str) -> Response:
        return json_response({"deleted": backend.delete_model(name)})

    @app.put("/_admin/targets/{target}/smoke")
    async def admin_smoke(target: str, request: Request) -> Response:
        backend.set_smoke_metrics(target, parse_json_body(await request.body()))
        return json_response({"ok": True})

    @app.post("/_admin/faults")
    async def admin_add_fault(request: Request) -> Response:
        return json_response({"id": backend.add_fault(parse_json_body(await request.body(), allow_empty=False))})

    @app.get("/_admin/faults")
    async def admin_list_faults() -> Response:
        return json_response({"faults": backend.list_faults()})

    @app.delete("/_admin/faults")
    async def admin_clear_faults() -> Response:
        backend.clear_faults()
        return json_response({"ok": True})

    @app.put("/_admin/streams/{model}/{partition}")
    async def admin_stream_length(model: str, partition: int, request: Request) -> Response:
        body = require_object(parse_json_body(await request.body()))
        return json_response({"length": backend.set_stream_length(model, partition, body.get("length"), append=False)})

    @app.post("/_admin/streams/{model}/{partition}/append")
    async def admin_stream_append(model: str, partition: int, request: Request) -> Response:
        body = require_object(parse_json_body(await request.body()))
        return json_response({"length": backend.set_stream_length(model, partition, body.get("count"), append=True)})

    @app.get("/_admin/streams/{model}")
    async def admin_stream_stats(model: str, raw: bool = False) -> Response:
        return json_response(backend.stream_stats(model, raw=raw))

    @app.get("/_admin/jobs")
    async def admin_jobs(model: str | None = None, kind: str | None = None) -> Response:
        return json_response({"jobs": backend.list_jobs(model, kind)})

    @app.patch("/_admin/jobs/{job_id}")
    async def admin_job_delay(job_id: str, request: Request) -> Response:
        return json_response(backend.set_job_delay(job_id, parse_json_body(await request.body())))

    @app.get("/_admin/requests")
    async def admin_requests(path: str | None = None, method: str | None = None) -> Response:
        return json_response(backend.request_log(path, method.upper() if method else None))

    @app.get("/_admin/settings")
    async def admin_settings() -> Response:
        return json_response(backend.settings())

    @app.put("/_admin/settings")
    async def admin_update_settings(request: Request) -> Response:
        return json_response(backend.update_settings(parse_json_body(await request.body())))

    @app.post("/_admin/reset")
    async def admin_reset(request: Request) -> Response:
        backend.reset(parse_json_body(await request.body()))
        return json_response({"ok": True})

    return app


