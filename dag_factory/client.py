"""The one HTTP client the project uses to talk to the model backend.

A small obvious API (one method per contract endpoint) over careful
internals, all in one place so every task behaves the same way:

- one ``requests.Session`` whose adapter retries connection errors, read
  errors and 408/429/500/502/503/504 with exponential backoff, for every
  method: POSTs are safe to repeat because each carries an Idempotency-Key;
- ``Retry-After`` is honoured but capped (``max_retry_after``) so a hostile or
  broken backend cannot park a task for hours;
- a (connect, read) timeout on every socket operation, and an overall ``deadline`` on every
  call that covers retries, backoff sleeps and a body trickled a byte at a time (a socket
  timeout bounds one read, not the call: a trickling proxy held a sync for 100 s and more);
- every failure ends as :class:`BackendError` (or :class:`BackendUnavailable`
  when the backend could not be reached or stayed unhealthy), naming the call
  and the reason and never the token;
- answers that are not the JSON shape the contract promises are errors too,
  not ``KeyError`` crashes further down.

Importing this module does not import Airflow; only
:meth:`BackendClient.from_connection` does.
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
import socket
import threading
import time
from typing import Any, Iterable
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout

from dag_factory import settings

log = logging.getLogger(__name__)

__all__ = ["BackendClient", "BackendError", "BackendUnavailable", "DEFAULT_CONN_ID"]

DEFAULT_CONN_ID = "model_backend"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
JOB_STATUSES = frozenset({"queued", "running", "succeeded", "failed", "rolled_back"})
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
MAX_PAGES = 10_000
MAX_IDEMPOTENCY_KEY = 250
MAX_MESSAGE = 300
READ_CHUNK = 65_536
USER_AGENT = "dag-factory-backend-client/1"


class BackendError(Exception):
    """A backend call failed.

    ``call`` names the endpoint (``"POST /api/v1/models/{name}/training-runs"``),
    ``status`` is the final HTTP status (None when no answer came), ``message``
    the backend's ``error`` text or the transport problem, and ``retryable``
    says whether trying the same call later could succeed -- so a task can
    fail fast on a 404 and retry on a 503.
    """

    def __init__(self, call: str, status: int | None, message: str, *, retryable: bool = False) -> None:
        super().__init__(call, status, message, retryable)
        self.call = call
        self.status = status
        self.message = message
        self.retryable = retryable

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        return f"{self.call} failed ({status}): {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(call={self.call!r}, status={self.status!r}, "
            f"message={self.message!r}, retryable={self.retryable!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only ``retryable`` breaks Exception's default pickling.
        return (_rebuild_error, (type(self), self.call, self.status, self.message, self.retryable))


class BackendUnavailable(BackendError):
    """The backend could not be reached, timed out, or kept answering 408/429/5xx
    after every retry: a transient condition, so always ``retryable``."""

    def __init__(self, call: str, status: int | None, message: str, *, retryable: bool = True) -> None:
        super().__init__(call, status, message, retryable=retryable)


def _rebuild_error(cls: type[BackendError], call: str, status: int | None, message: str, retryable: bool) -> BackendError:
    return cls(call, status, message, retryable=retryable)


class CappedRetry(Retry):
    """urllib3 ``Retry`` whose ``Retry-After`` sleeps never exceed ``max_retry_after``.

    A malformed ``Retry-After`` falls back to the exponential backoff instead
    of raising, and only 429/503 honour the header (not 413, which is a
    permanent client error here).
    """

    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})

    def __init__(self, *args: Any, max_retry_after: float = 60.0, deadline: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after = max_retry_after
        self.deadline = deadline  # time.monotonic() after which no retry starts

    def new(self, **kw: Any) -> CappedRetry:
        # ``Retry.new`` rebuilds from a fixed parameter list; carry the cap and deadline over.
        retry = super().new(**kw)
        retry.max_retry_after = self.max_retry_after
        retry.deadline = self.deadline
        return retry

    def remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def is_exhausted(self) -> bool:
        return super().is_exhausted() or self.remaining() <= 0

    def get_backoff_time(self) -> float:
        return max(0.0, min(super().get_backoff_time(), self.remaining()))

    def get_retry_after(self, response: Any) -> float | None:
        try:
            seconds = super().get_retry_after(response)
        except (InvalidHeader, ValueError, OverflowError):
            return None
        if seconds is None:
            return None
        return max(0.0, min(float(seconds), self.max_retry_after, self.remaining()))


class DeadlineTimeout(Timeout):
    """urllib3 ``Timeout`` whose every attempt (urllib3 clones the timeout per attempt) gets
    at most the time left until the call's deadline, so a retry cannot outlive it."""

    def __init__(self, connect: float, read: float, deadline: float) -> None:
        super().__init__(connect=connect, read=read, total=max(0.001, deadline - time.monotonic()))
        self.deadline = deadline

    def clone(self) -> DeadlineTimeout:
        return DeadlineTimeout(self._connect, self._read, self.deadline)  # type: ignore[arg-type]


class DeadlineExceeded(Exception):
    """Raised inside the client when a call ran out of time; surfaces as BackendUnavailable."""


def deadline_seconds(value: Any) -> float:
    """A deadline as seconds: a number (``45``, ``2.5``), or a duration as specs write them
    (``90s``, ``2m``, ``1m30s``: dag_factory.specs.timing.parse_duration)."""
    from dag_factory.specs.timing import parse_duration

    try:
        seconds = float(value)
    except (TypeError, ValueError):
        try:
            seconds = parse_duration(str(value)).total_seconds()
        except ValueError:
            raise ValueError(f"deadline must be seconds or a duration like 90s or 2m, got {value!r}") from None
    if not 0 < seconds < float("inf"):
        raise ValueError(f"deadline must be positive and finite, got {value!r}")
    return seconds


class _BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer``; as ``session.auth`` it also stops
    requests from replacing the header with ~/.netrc credentials."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(token=***)"


# --------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------

def normalize_base_url(base_url: str) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing slash; rejects the rest."""
    if not isinstance(base_url, str):
        raise ValueError("base_url must be a string")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("base_url must not carry credentials, a query or a fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def check_name(name: str, what: str = "model name") -> str:
    """Names go into URL paths: only contract identifiers are allowed."""
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise ValueError(f"invalid {what} {name!r}: must match ^[a-z][a-z0-9_]{{0,62}}$")
    return name


def check_id(value: str, what: str) -> str:
    """Job ids are opaque, but must be a single non-dot path segment once quoted."""
    if not isinstance(value, str) or not value or value in (".", "..") or len(value) > 256:
        raise ValueError(f"invalid {what} {value!r}")
    return value


def check_idempotency_key(key: str) -> str:
    """Keys are header values: printable ASCII, 1..250 characters."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
        raise ValueError(f"idempotency_key must be 1..{MAX_IDEMPOTENCY_KEY} printable ASCII characters")
    return key


def clean_message(text: Any, secrets: Iterable[str] = ()) -> str:
    """One short line, with every secret blanked out (backends can echo them)."""
    message = " ".join(str(text).split())
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return message


def error_text(response: requests.Response, raw: bytes | None = None) -> str:
    """The contract's ``{"error": ...}`` text, or the status reason as a fallback."""
    try:
        body = response.json() if raw is None else jsonlib.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"].strip():
        return body["error"]
    return response.reason or "no error message"


def transport_reason(exc: BaseException) -> str:
    """The root cause of a requests/urllib3 failure, without object reprs."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    deepest = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        deepest = cause
        reason = getattr(cause, "reason", None)
        nested = reason if isinstance(reason, BaseException) else None
        if nested is None and cause.args and isinstance(cause.args[0], BaseException):
            nested = cause.args[0]
        cause = nested or cause.__cause__ or cause.__context__
    text = re.sub(r"<[^<>]*object at 0x[0-9a-fA-F]+>:?\s*", "", str(deepest)).strip(" :()'\"")
    return f"{type(deepest).__name__}: {text}" if text else type(deepest).__name__


def read_body(response: requests.Response, deadline: float) -> bytes:
    """The whole body, read as it arrives (``read1``: whatever one socket read brings, b"" only
    at the end) and given up at `deadline`. Each socket read is bounded by the time left, too
    (DeadlineTimeout), so a silent backend cannot hold one read past the deadline."""
    chunks: list[bytes] = []
    while chunk := response.raw.read1(READ_CHUNK, decode_content=True):
        chunks.append(chunk)
        if time.monotonic() >= deadline:
            raise DeadlineExceeded()
    return b"".join(chunks)


class _Watch:
    """The connection a call is using right now, and a timer that shuts its socket down at the
    call's deadline: the one thing that stops a backend trickling its status line and headers
    (each socket read stays under the read timeout, so no timeout ever fires)."""

    current = threading.local()

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None
        self._done = False
        self.fired = False
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watch:
        _Watch.current.watch = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()
        _Watch.current.watch = None

    def attach(self, conn: Any) -> None:
        with self._lock:
            self._conn = conn

    def release(self, conn: Any) -> None:
        """`conn` goes back to the pool (another thread may take it next): never shut it down."""
        with self._lock:
            if self._conn is conn:
                self._conn = None

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            sock = getattr(self._conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # a blocked recv returns; the pool drops the connection
                except OSError:
                    pass


def _watched(pool: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    class WatchedPool(pool):  # type: ignore[valid-type, misc]
        def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
            if (watch := getattr(_Watch.current, "watch", None)) is not None:
                watch.attach(conn)
            return super()._make_request(conn, *args, **kwargs)

        def _put_conn(self, conn: Any) -> None:
            if (watch := getattr(_Watch.current, "watch", None)) is not None:
                watch.release(conn)
            super()._put_conn(conn)

    WatchedPool.__name__ = WatchedPool.__qualname__ = f"Watched{pool.__name__}"
    return WatchedPool


_PLAIN_POOLS = {"http": HTTPConnectionPool, "https": HTTPSConnectionPool}
_WATCHED_POOLS = {scheme: _watched(pool) for scheme, pool in _PLAIN_POOLS.items()}


class _DeadlineAdapter(HTTPAdapter):
    """HTTPAdapter whose retry policy is set per call and per thread: each call's Retry
    carries that call's deadline, and two threads sharing a client do not mix them up."""

    def __init__(self, retry: CappedRetry) -> None:
        self._local = threading.local()
        super().__init__(max_retries=retry)

    @property  # type: ignore[override]
    def max_retries(self) -> Retry:
        return getattr(getattr(self, "_local", None), "retry", None) or self._default_retry

    @max_retries.setter
    def max_retries(self, value: Retry) -> None:
        self._default_retry = value

    def use(self, retry: Retry | None) -> None:
        self._local.retry = retry

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if manager.pool_classes_by_scheme == _PLAIN_POOLS:  # an HTTP(S) proxy; SOCKS has its own pools
            manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager


def require(condition: bool, call: str, status: int, what: str) -> None:
    """Turn a broken promise of the contract into a BackendError."""
    if not condition:
        raise BackendError(call, status, f"invalid response from backend: {what}", retryable=False)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_job(body: Any, call: str, status: int) -> dict[str, Any]:
    """A contract Job: id, status and, if present, well-typed optional fields."""
    require(isinstance(body, dict), call, status, "job is not a JSON object")
    require(isinstance(body.get("id"), str) and bool(body["id"]), call, status, "job has no string id")
    require(body.get("status") in JOB_STATUSES, call, status, f"unknown job status {body.get('status')!r}")
    for key in ("model_version", "error"):
        require(key not in body or isinstance(body[key], str), call, status, f"job {key} is not a string")
    metrics = body.get("metrics")
    require(
        metrics is None or (
            isinstance(metrics, dict)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values())
        ),
        call, status, "job metrics are not an object of numbers",
    )
    return body


def validate_page(body: Any, call: str, status: int) -> tuple[list[Any], str | None]:
    """(models, next_page_token) of one listing page; items are not judged here."""
    require(isinstance(body, dict), call, status, "page is not a JSON object")
    require(isinstance(body.get("models"), list), call, status, "page has no models list")
    token = body.get("next_page_token", ...)
    require(token is None or (isinstance(token, str) and bool(token)), call, status,
            "next_page_token is neither a non-empty string nor null")
    return body["models"], token


def validate_batch(body: Any, call: str, status: int, partition: int, after_offset: int) -> dict[str, Any]:
    """A stream batch answer that cannot move the offset backwards or elsewhere."""
    require(isinstance(body, dict), call, status, "batch answer is not a JSON object")
    for key in ("partition", "records", "next_offset"):
        require(is_int(body.get(key)), call, status, f"{key} is not an integer")
    require(body["partition"] == partition, call, status, f"answer is for partition {body['partition']}")
    require(body["records"] >= 0, call, status, "records is negative")
    require(body["next_offset"] >= after_offset, call, status, "next_offset moved backwards")
    return body


# --------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------

class BackendClient:
    """Typed access to every endpoint of the model backend contract.

    >>> client = BackendClient("http://127.0.0.1:8800", token)       # doctest: +SKIP
    >>> run = client.start_training("churn", idempotency_key=key)   # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: tuple[float, float] = (3.05, 30.0),
        retries: int = 5,
        backoff_factor: float = 0.5,
        max_retry_after: float = 60.0,
        deadline: float | str | None = None,
    ) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if retries < 0 or backoff_factor < 0 or max_retry_after < 0:
            raise ValueError("retries, backoff_factor and max_retry_after must be >= 0")
        self.base_url = normalize_base_url(base_url)
        self.timeout = (float(timeout[0]), float(timeout[1]))
        self.retries = int(retries)
        # overall seconds per call (a listing: all its pages); $DAG_FACTORY_BACKEND_DEADLINE by default
        self.deadline = deadline_seconds(settings.BACKEND_DEADLINE.get() if deadline is None else deadline)
        self._token = token
        self._session = requests.Session()
        self._session.auth = _BearerAuth(token)
        self._session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        self._retry = CappedRetry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            other=0,
            redirect=0,
            allowed_methods=None,  # every method: POSTs carry an Idempotency-Key
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=max(max_retry_after, backoff_factor),
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
            max_retry_after=max_retry_after,
        )
        self._adapter = _DeadlineAdapter(self._retry)
        self._session.mount("http://", self._adapter)
        self._session.mount("https://", self._adapter)

    @classmethod
    def from_connection(cls, conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> BackendClient:
        """Build a client from the Airflow connection ``conn_id`` at task run time.

        Uses the Task SDK, so inside a task it asks the supervisor and outside
        one it reads ``AIRFLOW_CONN_<ID>`` and the configured secrets backends.
        The token is the connection's password (or ``extra.token``); the URL
        comes from host/port and the scheme from ``schema`` (``http``/``https``),
        ``extra.scheme`` or the connection type, or all of it from
        ``extra.base_url``; ``extra.deadline`` (seconds or ``90s``) overrides
        $DAG_FACTORY_BACKEND_DEADLINE. ``kwargs`` go to the constructor.
        """
        from airflow.sdk import BaseHook  # lazy: keep this module importable without Airflow

        return cls.from_airflow_connection(BaseHook.get_connection(conn_id), **kwargs)

    @classmethod
    def from_airflow_connection(cls, conn: Any, **kwargs: Any) -> BackendClient:
        """Build a client from a Connection object already fetched (triggers fetch it with
        ``await BaseHook.aget_connection``, since sync calls block the triggerer's loop)."""
        extra = conn.extra_dejson if conn.extra else {}
        token = conn.password or extra.get("token")
        if not token:
            raise ValueError(f"Airflow connection {conn.conn_id!r} has no token (set its password)")
        base_url = connection_base_url(
            conn_type=conn.conn_type, host=conn.host, port=conn.port, schema=conn.schema, extra=extra
        )
        if extra.get("deadline") not in (None, ""):
            kwargs.setdefault("deadline", extra["deadline"])
        return cls(base_url, token, **kwargs)

    def __repr__(self) -> str:
        return (f"BackendClient(base_url={self.base_url!r}, retries={self.retries}, timeout={self.timeout}, "
                f"deadline={self.deadline:g})")

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def __enter__(self) -> BackendClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- endpoints -----------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"}`` when the backend is up; raises otherwise."""
        call = "GET /api/v1/health"
        status, body = self._request("GET", "/api/v1/health")
        require(isinstance(body, dict) and body.get("status") == "ok", call, status, "status is not 'ok'")
        return body

    def list_models(self, limit: int = 100) -> list[Any]:
        """Every live model record, reading all pages.

        All or nothing: if any page fails, this raises and returns no partial
        listing (a partial listing would look like retired models). Records
        are returned as the backend sent them -- validate each one.
        """
        if not is_int(limit) or not 1 <= limit <= 500:
            raise ValueError("limit must be an integer in 1..500")
        call = "GET /api/v1/models"
        models: list[Any] = []
        seen_tokens: set[str] = set()
        token: str | None = None
        deadline = time.monotonic() + self.deadline  # one deadline for the whole listing
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"limit": limit}
            if token is not None:
                params["page_token"] = token
            status, body = self._request("GET", "/api/v1/models", params=params, deadline=deadline)
            page, token = validate_page(body, call, status)
            models.extend(page)
            if token is None:
                return models
            if token in seen_tokens:
                raise BackendError(call, status, "pagination loops: a next_page_token repeated", retryable=False)
            seen_tokens.add(token)
        raise BackendError(call, None, f"listing did not end within {MAX_PAGES} pages", retryable=False)

    def get_model(self, name: str) -> dict[str, Any]:
        """One live model record, as the backend sent it."""
        status, body = self._request("GET", "/api/v1/models/{name}", name=check_name(name))
        require(isinstance(body, dict), "GET /api/v1/models/{name}", status, "model is not a JSON object")
        return body

    def start_training(
        self,
        model: str,
        *,
        idempotency_key: str,
        dataset_uri: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Start (or, with a key already used, find again) a training run."""
        payload: dict[str, Any] = {}
        if dataset_uri is not None:
            payload["dataset_uri"] = dataset_uri
        if hyperparameters is not None:
            payload["hyperparameters"] = hyperparameters
        if reason is not None:
            payload["reason"] = reason
        return self._job("POST", "/api/v1/models/{name}/training-runs", name=check_name(model),
                         json=payload, idempotency_key=idempotency_key)

    def get_training_run(self, run_id: str) -> dict[str, Any]:
        """Current state of a training run."""
        return self._job("GET", "/api/v1/training-runs/{id}", id=check_id(run_id, "training run id"))

    def deploy(self, model: str, *, version: str, target: str, idempotency_key: str) -> dict[str, Any]:
        """Deploy ``version`` of ``model`` to ``target`` (idempotent on the key)."""
        return self._job("POST", "/api/v1/models/{name}/deployments", name=check_name(model),
                         json={"version": version, "target": check_name(target, "target name")},
                         idempotency_key=idempotency_key)

    def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        """Current state of a deployment, with smoke-check metrics once done."""
        return self._job("GET", "/api/v1/deployments/{id}", id=check_id(deployment_id, "deployment id"))

    def rollback(self, deployment_id: str, *, idempotency_key: str) -> dict[str, Any]:
        """Roll a deployment back."""
        return self._job("POST", "/api/v1/deployments/{id}/rollback", id=check_id(deployment_id, "deployment id"),
                         json={}, idempotency_key=idempotency_key)

    def process_stream_batch(
        self, model: str, *, partition: int, after_offset: int, max_records: int, idempotency_key: str
    ) -> dict[str, Any]:
        """Process the records after ``after_offset`` of one partition.

        Use a key derived from (model, partition, after_offset) so a retried
        task replays the stored answer instead of processing records twice.
        """
        if not (is_int(partition) and partition >= 0 and is_int(after_offset) and after_offset >= -1):
            raise ValueError("partition must be >= 0 and after_offset >= -1 (integers)")
        if not is_int(max_records) or max_records < 1:
            raise ValueError("max_records must be an integer >= 1")
        call_path = "/api/v1/models/{name}/stream-batches"
        status, body = self._request(
            "POST", call_path, name=check_name(model), idempotency_key=idempotency_key,
            json={"partition": partition, "after_offset": after_offset, "max_records": max_records},
        )
        return validate_batch(body, f"POST {call_path}", status, partition, after_offset)

    # -- internals -----------------------------------------------------------

    def _job(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        status, body = self._request(method, path, **kwargs)
        return validate_job(body, f"{method} {path}", status)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        deadline: float | None = None,
        **path_args: str,
    ) -> tuple[int, Any]:
        """One call with retries, all within `deadline` (time.monotonic(); default: now +
        self.deadline); returns (status, decoded JSON) or raises BackendError."""
        call = f"{method} {path}"
        url = self.base_url + path.format(**{k: quote(v, safe="") for k, v in path_args.items()})
        headers = {}
        if method == "POST":
            headers["Idempotency-Key"] = check_idempotency_key(idempotency_key)  # type: ignore[arg-type]
        started = time.monotonic()
        deadline = started + self.deadline if deadline is None else deadline
        if deadline <= started:
            raise BackendUnavailable(call, None, self._late())
        with _Watch(deadline - started) as watch:
            try:
                status, body = self._send(call, method, url, params, json, headers, deadline)
            except BackendError:
                if not watch.fired:
                    raise
            if watch.fired:  # whatever came back was cut off at the deadline
                raise BackendUnavailable(call, None, self._late("the answer came too slowly")) from None
        return status, body

    def _send(self, call: str, method: str, url: str, params: dict[str, Any] | None, json: Any,
              headers: dict[str, str], deadline: float) -> tuple[int, Any]:
        started = time.monotonic()
        retry = self._retry.new()
        retry.deadline = deadline
        self._adapter.use(retry)
        try:
            response = self._session.request(
                method, url, params=params, json=json, headers=headers, stream=True,
                timeout=DeadlineTimeout(self.timeout[0], self.timeout[1], deadline), allow_redirects=False,
            )
        except requests.exceptions.SSLError as exc:
            raise BackendError(call, None, self._clean(f"TLS error: {transport_reason(exc)}"), retryable=False) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            if time.monotonic() >= deadline:
                raise BackendUnavailable(call, None, self._late(transport_reason(exc))) from None
            message = f"backend unreachable at {self.base_url} after {self.retries} retries: {transport_reason(exc)}"
            raise BackendUnavailable(call, None, self._clean(message)) from None
        except requests.exceptions.RequestException as exc:
            raise BackendError(call, None, self._clean(transport_reason(exc)), retryable=False) from None
        finally:
            self._adapter.use(None)
        with response:
            try:
                body = read_body(response, deadline)
            except DeadlineExceeded:
                raise BackendUnavailable(call, response.status_code, self._late("the body came too slowly")) from None
            except (requests.exceptions.RequestException, Urllib3Error, OSError) as exc:
                reason = transport_reason(exc)
                late = time.monotonic() >= deadline
                raise BackendUnavailable(call, response.status_code,
                                         self._late(reason) if late else self._clean(reason)) from None
            elapsed = time.monotonic() - started
            log.debug("%s -> %s in %.3fs", call, response.status_code, elapsed)
            return response.status_code, self._decode(call, response, body, late=time.monotonic() >= deadline)

    def _late(self, why: str = "") -> str:
        return self._clean(f"no complete answer within the deadline of {self.deadline:g}s"
                           + (f" ({why})" if why else ""))

    def _decode(self, call: str, response: requests.Response, body: bytes, *, late: bool = False) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            try:
                return jsonlib.loads(body)
            except ValueError:
                raise BackendError(call, status, "invalid response from backend: body is not JSON") from None
        message = self._clean(error_text(response, body))
        if status in RETRY_STATUSES:
            tried = (f"retries stopped by the deadline of {self.deadline:g}s" if late
                     else f"after {self.retries} retries")
            raise BackendUnavailable(call, status, f"{message} ({tried})")
        if 300 <= status < 400:
            message = f"unexpected redirect ({message})"
        raise BackendError(call, status, message, retryable=False)

    def _clean(self, text: Any) -> str:
        return clean_message(text, (self._token,))


def connection_base_url(
    *, conn_type: str | None, host: str | None, port: int | None, schema: str | None, extra: dict[str, Any]
) -> str:
    """The backend URL described by an Airflow connection's fields.

    Accepts ``extra.base_url``; a host that already carries a scheme
    (``http://...``); otherwise scheme from ``schema`` (the http provider's
    convention), ``extra.scheme`` or the connection type, defaulting to http.
    """
    if isinstance(extra.get("base_url"), str) and extra["base_url"]:
        return normalize_base_url(extra["base_url"])
    if not host:
        raise ValueError("the backend connection has no host")
    if "://" in host:
        parts = urlsplit(host)
        if port and parts.port is None and parts.hostname:
            parts = parts._replace(netloc=f"{parts.netloc}:{port}")
        return normalize_base_url(parts.geturl())
    candidates = (schema, extra.get("scheme"), conn_type)
    scheme = next((c.lower() for c in candidates if isinstance(c, str) and c.lower() in ("http", "https")), "http")
    netloc = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return normalize_base_url(f"{scheme}://{netloc}" + (f":{port}" if port else ""))
