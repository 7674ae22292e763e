"""Reference model backend, state and behaviour: the contract in ``docs/backend-api.yaml``
over one SQLite file, independent of HTTP (routes: ``app``; command line: ``server``).

It exists so that the factory can be developed, demonstrated and tested
against a real HTTP server whose behaviour -- including its failures -- is
under the test's control. It is not a production backend.

Run it::

    python -m dag_factory.dev.backend.server --host 127.0.0.1 --port 8800 \\
        --db /tmp/backend.sqlite --token dev-token --job-delay 1.0 \\
        --seed-file seed.json

The token may also come from the environment variable
``DAG_FACTORY_BACKEND_TOKEN`` (preferred: command lines are visible in ``ps``).
It binds to loopback only unless ``--allow-remote`` is given.

Behaviour of the contract endpoints
-----------------------------------
- Every endpoint except ``GET /api/v1/health`` needs ``Authorization: Bearer
  <token>`` (401 otherwise). Every error body is ``{"error": "..."}``.
- Every ``POST`` under ``/api/`` needs an ``Idempotency-Key`` header (400 if
  missing or longer than 250 characters). The first successful (2xx) answer is
  stored under the key together with the method, path and a hash of the JSON
  body; repeating the same request with the same key returns that stored
  answer (same status and body, header ``Idempotent-Replayed: true``) and does
  no work. Reusing a key for a different method, path or body is a 409.
  Error answers (4xx) are not stored: they changed nothing, so a retry is
  evaluated afresh.
- ``GET /api/v1/models`` orders records by name (records whose name is not a
  string sort last), pages with ``limit`` (1..500) and an opaque
  ``page_token``, and sets an ``ETag`` (hash of the page body). Records are
  returned exactly as stored -- the admin API can store hostile data.
- Path names must match ``^[a-z][a-z0-9_]{0,62}$``; anything else is a 404.
  POSTs for a model whose status is ``retired`` are a 409.
- Jobs (training runs, deployments) have no worker: their status is computed
  from their age when read. ``queued`` for the first half of the job delay,
  ``running`` for the second half, then ``succeeded`` (or ``failed`` if a
  failure was injected). The delay, the metrics and any injected failure are
  fixed when the job is created.
- A training run gets a new ``model_version`` ``v<N+1>``: N is the highest of
  the model's record version (``vN``) and the versions handed out before.
  Metrics default to ``{"auc": 0.86, "logloss": 0.31}``. Jobs never change
  the live model records; only the admin API does.
- A deployment's ``metrics`` are the smoke check of its target, default
  ``{"success_rate": 1.0, "p99_latency_ms": 40.0}``. Rolling a deployment back
  (in any state) makes it ``rolled_back``.
- Stream batches: each (model, partition) is a finite log with offsets
  ``0..N-1`` (N = 1000 unless set). A batch after ``after_offset`` processes
  offsets ``after_offset+1 .. min(after_offset+max_records, N-1)`` and answers
  ``{"partition", "records", "next_offset"}`` where ``next_offset`` is the last
  processed offset (``after_offset`` if nothing was new). ``max_records``
  defaults to the record's ``streaming.batch_size`` or 100 (capped at
  100000). Every processed (model, partition, offset) is counted, so the admin
  API can prove that no record was lost or processed twice. Any partition
  number >= 0 is accepted.

Admin endpoints (token-protected, JSON bodies, never subject to faults)
---------------------------------------------------------------------
==========  ====================================  ==========================================
Method      Path                                  Body / query -> answer
==========  ====================================  ==========================================
GET         /_admin/models                        -> ``{"models": [raw records]}``
PUT         /_admin/models                        ``[any JSON values]``: replace every record,
                                                  stored as-is (hostile data allowed)
POST        /_admin/models                        ``{record}`` or ``[{record}, ...]``: upsert by
                                                  ``name`` (any JSON value), stored as-is
PATCH       /_admin/models/{name}                 ``{changes}``: RFC 7386 JSON merge patch
                                                  (null deletes a key); ``updated_at`` is set to
                                                  now unless the patch sets it. 404 if absent.
                                                  Retire: ``{"status": "retired"}``.
DELETE      /_admin/models/{name}                 -> ``{"deleted": n}``
PUT         /_admin/models/{name}/training-metrics ``{"metrics": {...} | null}`` (null = default)
POST        /_admin/models/{name}/fail-training   ``{"error": str, "count": 1}``: the next
                                                  ``count`` training runs of the model fail
POST        /_admin/models/{name}/fail-deployment ``{"target": str | null, "error": str,
                                                  "count": 1}``: the next deployments (to that
                                                  target, or any) fail
PUT         /_admin/targets/{target}/smoke        ``{"metrics": {...} | null}``: smoke-check
                                                  metrics of deployments to that target
POST        /_admin/faults                        ``{"path_prefix": "/api/v1/models",
                                                  "method": null, "count": 1, "skip": 0,
                                                  "status": 500 | 429 | ... | null,
                                                  "retry_after": "5" | null,
                                                  "delay": 2.0 | null,
                                                  "delay_after": 5.0 | null}`` -> ``{"id": n}``.
                                                  Matching ``/api/`` requests: the first
                                                  ``skip`` pass, the next ``count`` are delayed
                                                  by ``delay`` s and/or answered ``status``
                                                  (with ``Retry-After`` if given);
                                                  ``delay_after`` does the work, then holds the
                                                  answer back (a crash-after-work window).
GET         /_admin/faults                        -> ``{"faults": [...]}``
DELETE      /_admin/faults                        remove all faults
PUT         /_admin/streams/{model}/{partition}   ``{"length": N}``: the log has offsets 0..N-1
POST        /_admin/streams/{model}/{partition}/append ``{"count": K}``: K more records
GET         /_admin/streams/{model}?raw=true      -> ``{"0": {"processed": distinct offsets,
                                                  "duplicates": extra processings,
                                                  "max_offset": -1 if none, "missing": gaps
                                                  below max_offset, "length": N,
                                                  "counts": {"offset": n} (only with raw)}}``
GET         /_admin/jobs?model=&kind=             -> ``{"jobs": [{id, kind, model, status,
                                                  idempotency_key, model_version, target,
                                                  created_at, request}]}`` (kind: training|deployment;
                                                  request: the training POST body as received)
PATCH       /_admin/jobs/{id}                     ``{"delay": s}`` -> the job: its delay, counted
                                                  from its creation (hold a job, or let it finish
                                                  now; a longer one reopens a finished job)
GET         /_admin/requests?path=&method=        -> ``{"counts": {"GET /api/v1/models": n},
                                                  "total": n, "requests": [last 200]}``
                                                  (``/api/`` requests only, exact path match)
GET, PUT    /_admin/settings                      ``{"job_delay": s, "stream_length": N}``
POST        /_admin/reset                         ``{"seed": true}``: forget everything
                                                  (models, jobs, keys, faults, counts, logs,
                                                  settings) and re-insert the seed unless
                                                  ``seed`` is false
==========  ====================================  ==========================================

State lives in one SQLite file (WAL); restarting the server on the same file
keeps everything. The seed is inserted once, into a database never seeded.
"""

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")
DEFAULT_TRAINING_METRICS: dict[str, float] = {"auc": 0.86, "logloss": 0.31}
DEFAULT_SMOKE_METRICS: dict[str, float] = {"success_rate": 1.0, "p99_latency_ms": 40.0}
DEFAULT_STREAM_LENGTH = 1000
DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 100_000
MAX_IDEMPOTENCY_KEY = 250
MAX_VERSION_LENGTH = 128
REQUEST_LOG_TAIL = 200
TOKEN_ENV = "DAG_FACTORY_BACKEND_TOKEN"
HEALTH_PATH = "/api/v1/health"

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    sort_key TEXT NOT NULL,
    name_json TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS models_order ON models (sort_key, pos);
CREATE INDEX IF NOT EXISTS models_name ON models (name_json);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    created_at REAL NOT NULL,
    delay REAL NOT NULL,
    idempotency_key TEXT NOT NULL,
    model_version TEXT,
    target TEXT,
    fail_error TEXT,
    metrics TEXT,
    rolled_back_at REAL,
    request TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    target TEXT,
    error TEXT NOT NULL,
    remaining INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path_prefix TEXT NOT NULL,
    method TEXT,
    skip INTEGER NOT NULL,
    remaining INTEGER NOT NULL,
    status INTEGER,
    retry_after TEXT,
    delay REAL,
    delay_after REAL
);
CREATE TABLE IF NOT EXISTS streams (
    model TEXT NOT NULL,
    part INTEGER NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (model, part)
);
CREATE TABLE IF NOT EXISTS stream_counts (
    model TEXT NOT NULL,
    part INTEGER NOT NULL,
    rec_offset INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (model, part, rec_offset)
);
CREATE TABLE IF NOT EXISTS request_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL,
    status INTEGER NOT NULL,
    idempotency_key TEXT
);
"""

# Tables emptied by a reset (everything but the "seeded" marker is state).
STATE_TABLES = (
    "models", "jobs", "idempotency", "settings", "failures", "faults",
    "streams", "stream_counts", "request_log",
)


class ApiError(Exception):
    """An HTTP error answer: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# --------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------

def is_name(value: Any) -> bool:
    """True for a contract identifier (``^[a-z][a-z0-9_]{0,62}$``)."""
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def now_rfc3339() -> str:
    """Current UTC time as RFC 3339 with a ``Z`` suffix, second precision."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_bytes(value: Any) -> bytes:
    """Compact JSON encoding used for every body the server writes."""
    return json.dumps(value, separators=(",", ":")).encode()


def canonical_hash(value: Any) -> str:
    """Stable hash of a JSON value, to tell two request bodies apart."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_int(value: Any) -> bool:
    """JSON integer (bool is not one, even though Python thinks so)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """JSON number, excluding bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_json_body(raw: bytes, *, allow_empty: bool = True) -> Any:
    """Decode a request body; an empty body is ``{}`` where allowed."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(422, "a JSON body is required")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, f"body is not valid JSON: {exc}") from None


def require_object(body: Any, what: str = "body") -> dict[str, Any]:
    """Reject anything but a JSON object."""
    if not isinstance(body, dict):
        raise ApiError(422, f"{what} must be a JSON object")
    return body


def record_keys(record: Any) -> tuple[str, str]:
    """(sort_key, name_json) of a stored record: valid names sort first, by name."""
    name = record.get("name") if isinstance(record, dict) else None
    name_json = json.dumps(name, sort_keys=True)
    if isinstance(name, str):
        return name, name_json
    return "\uffff" + json.dumps(record, sort_keys=True)[:200], name_json


def encode_page_token(sort_key: str, pos: int) -> str:
    """Opaque token for keyset pagination after (sort_key, pos)."""
    return base64.urlsafe_b64encode(json_bytes([sort_key, pos])).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[str, int]:
    """Inverse of :func:`encode_page_token`; 400 for anything else."""
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        raise ApiError(400, "invalid page_token") from None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and is_int(value[1])):
        raise ApiError(400, "invalid page_token")
    return value[0], value[1]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def job_status(*, now: float, created_at: float, delay: float, failed: bool, rolled_back: bool) -> str:
    """Lazy job state machine: queued -> running -> succeeded/failed, by age."""
    if rolled_back:
        return "rolled_back"
    age = now - created_at
    if age < delay / 2:
        return "queued"
    if age < delay:
        return "running"
    return "failed" if failed else "succeeded"


def render_job(row: sqlite3.Row, now: float) -> dict[str, Any]:
    """The contract's Job object for a stored job row."""
    status = job_status(
        now=now, created_at=row["created_at"], delay=row["delay"],
        failed=row["fail_error"] is not None, rolled_back=row["rolled_back_at"] is not None,
    )
    job: dict[str, Any] = {"id": row["id"], "status": status, "model": row["model"]}
    if row["model_version"] is not None:
        job["model_version"] = row["model_version"]
    if row["target"] is not None:
        job["target"] = row["target"]
    if status == "succeeded" and row["metrics"] is not None:
        job["metrics"] = json.loads(row["metrics"])
    if status == "failed":
        job["error"] = row["fail_error"]
    return job


def version_number(version: Any) -> int:
    """N for a version string ``vN``; 0 for anything else."""
    if isinstance(version, str):
        match = re.fullmatch(r"v(\d{1,9})", version)
        if match:
            return int(match.group(1))
    return 0


def validate_metrics(value: Any) -> dict[str, float] | None:
    """Metrics are a flat object of numbers (or null for the default)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) and is_number(v) for k, v in value.items()):
        raise ApiError(422, "metrics must be an object of numbers")
    return value


def validate_training_body(body: Any) -> dict[str, Any]:
    """Check the optional fields of a training-run request."""
    body = require_object(body)
    for key, kind in (("dataset_uri", str), ("hyperparameters", dict), ("reason", str)):
        if key in body and not isinstance(body[key], kind):
            raise ApiError(422, f"{key} must be a {'string' if kind is str else 'object'}")
    return body


def validate_deployment_body(body: Any) -> tuple[str, str]:
    """(version, target) of a deployment request."""
    body = require_object(body)
    version, target = body.get("version"), body.get("target")
    if not isinstance(version, str) or not 0 < len(version) <= MAX_VERSION_LENGTH:
        raise ApiError(422, f"version must be a non-empty string of at most {MAX_VERSION_LENGTH} characters")
    if not is_name(target):
        raise ApiError(422, "target must be a name matching ^[a-z][a-z0-9_]{0,62}$")
    return version, target


def validate_stream_body(body: Any) -> tuple[int, int, int | None]:
    """(partition, after_offset, max_records or None) of a stream-batch request."""
    body = require_object(body)
    partition, after, max_records = body.get("partition"), body.get("after_offset"), body.get("max_records")
    if not is_int(partition) or partition < 0:
        raise ApiError(422, "partition must be an integer >= 0")
    if not is_int(after) or after < -1:
        raise ApiError(422, "after_offset must be an integer >= -1")
    if max_records is not None and (not is_int(max_records) or max_records < 1):
        raise ApiError(422, "max_records must be an integer >= 1")
    return partition, after, max_records


def batch_range(after_offset: int, max_records: int, length: int) -> tuple[int, int]:
    """Inclusive offsets to process; empty (first > last) when nothing is new."""
    return after_offset + 1, min(after_offset + max_records, length - 1)


def token_matches(header: str | None, token: str) -> bool:
    """Constant-time check of ``Authorization: Bearer <token>``."""
    if not header:
        return False
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (the only default binds)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------
# State: one SQLite database behind a lock
# --------------------------------------------------------------------------

class Backend:
    """All backend state and behaviour, independent of HTTP."""

    def __init__(
        self,
        db_path: str,
        *,
        job_delay: float = 1.0,
        stream_length: int = DEFAULT_STREAM_LENGTH,
        seed: list[Any] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.default_job_delay = float(job_delay)
        self.default_stream_length = int(stream_length)
        self.seed = json.loads(json.dumps(seed or []))
        with self.tx() as db:
            seeded = db.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone()
            empty = db.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 0
            if not seeded and empty:
                self._insert_models(db, self.seed)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('seeded', '1')")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One serialised write transaction; rolled back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- settings ------------------------------------------------------------

    @staticmethod
    def _setting(db: sqlite3.Connection, key: str, default: Any) -> Any:
        row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    @staticmethod
    def _set_setting(db: sqlite3.Connection, key: str, value: Any) -> None:
        if value is None:
            db.execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def settings(self) -> dict[str, Any]:
        with self.tx() as db:
            return {
                "job_delay": self._setting(db, "job_delay", self.default_job_delay),
                "stream_length": self._setting(db, "stream_length", self.default_stream_length),
            }

    def update_settings(self, body: Any) -> dict[str, Any]:
        body = require_object(body)
        if "job_delay" in body and not (is_number(body["job_delay"]) and body["job_delay"] >= 0):
            raise ApiError(422, "job_delay must be a number >= 0")
        if "stream_length" in body and not (is_int(body["stream_length"]) and body["stream_length"] >= 0):
            raise ApiError(422, "stream_length must be an integer >= 0")
        with self.tx() as db:
            for key in ("job_delay", "stream_length"):
                if key in body:
                    self._set_setting(db, key, body[key])
        return self.settings()

    # -- models --------------------------------------------------------------

    @staticmethod
    def _insert_models(db: sqlite3.Connection, records: list[Any]) -> None:
        for record in records:
            sort_key, name_json = record_keys(record)
            db.execute(
                "INSERT INTO models (sort_key, name_json, data) VALUES (?, ?, ?)",
                (sort_key, name_json, json.dumps(record)),
            )

    @staticmethod
    def _find_model(db: sqlite3.Connection, name: str) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT data FROM models WHERE name_json = ? ORDER BY pos LIMIT 1", (json.dumps(name),)
        ).fetchone()
        if row is None:
            return None
        record = json.loads(row["data"])
        return record if isinstance(record, dict) else None

    def _live_model(self, db: sqlite3.Connection, name: str) -> dict[str, Any]:
        """The record a job is for: 404 if unknown, 409 if retired."""
        record = self._find_model(db, name) if is_name(name) else None
        if record is None:
            raise ApiError(404, f"no model named {name!r}")
        if record.get("status") == "retired":
            raise ApiError(409, f"model {name!r} is retired")
        return record

    def list_models(self, limit: int, page_token: str | None) -> tuple[bytes, str]:
        """One page of raw records, and its ETag."""
        after = decode_page_token(page_token) if page_token else None
        with self.tx() as db:
            if after is None:
                rows = db.execute(
                    "SELECT pos, sort_key, data FROM models ORDER BY sort_key, pos LIMIT ?", (limit + 1,)
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT pos, sort_key, data FROM models WHERE (sort_key, pos) > (?, ?) "
                    "ORDER BY sort_key, pos LIMIT ?",
                    (after[0], after[1], limit + 1),
                ).fetchall()
        page = rows[:limit]
        next_token = encode_page_token(page[-1]["sort_key"], page[-1]["pos"]) if len(rows) > limit else None
        body = (
            b'{"models":[' + b",".join(row["data"].encode() for row in page)
            + b'],"next_page_token":' + json_bytes(next_token) + b"}"
        )
        return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

    def get_model(self, name: str) -> dict[str, Any]:
        with self.tx() as db:
            record = self._find_model(db, name) if is_name(name) else None
        if record is None:
            raise ApiError(404, f"no model named {name!r}")
        return record

    def admin_models(self) -> list[Any]:
        with self.tx() as db:
            return [json.loads(r["data"]) for r in db.execute("SELECT data FROM models ORDER BY sort_key, pos")]

    def replace_models(self, body: Any) -> int:
        if not isinstance(body, list):
            raise ApiError(422, "body must be a JSON list of records")
        with self.tx() as db:
            db.execute("DELETE FROM models")
            self._insert_models(db, body)
        return len(body)

    def upsert_models(self, body: Any) -> list[dict[str, Any]]:
        records = body if isinstance(body, list) else [body]
        for record in records:
            if not isinstance(record, dict) or "name" not in record:
                raise ApiError(422, "each record must be a JSON object with a name")
        with self.tx() as db:
            for record in records:
                sort_key, name_json = record_keys(record)
                updated = db.execute(
                    "UPDATE models SET sort_key = ?, data = ? WHERE name_json = ?",
                    (sort_key, json.dumps(record), name_json),
                ).rowcount
                if not updated:
                    self._insert_models(db, [record])
        return records

    def patch_model(self, name: str, patch: Any) -> dict[str, Any]:
        patch = require_object(patch)
        with self.tx() as db:
            row = db.execute(
                "SELECT pos, data FROM models WHERE name_json = ? ORDER BY pos LIMIT 1", (json.dumps(name),)
            ).fetchone()
            if row is None:
                raise ApiError(404, f"no model named {name!r}")
            merged = merge_patch(json.loads(row["data"]), patch)
            if "updated_at" not in patch:
                merged["updated_at"] = now_rfc3339()
            sort_key, name_json = record_keys(merged)
            db.execute(
                "UPDATE models SET sort_key = ?, name_json = ?, data = ? WHERE pos = ?",
                (sort_key, name_json, json.dumps(merged), row["pos"]),
            )
        return merged

    def delete_model(self, name: str) -> int:
        with self.tx() as db:
            return db.execute("DELETE FROM models WHERE name_json = ?", (json.dumps(name),)).rowcount

    # -- idempotent POSTs ----------------------------------------------------

    def idempotent(
        self,
        key: str,
        method: str,
        path: str,
        body: Any,
        action: Callable[[sqlite3.Connection], tuple[int, dict[str, Any]]],
    ) -> tuple[int, dict[str, Any], bool]:
        """Run ``action`` once per key; replay its stored 2xx answer after that."""
        body_hash = canonical_hash(body)
        with self.tx() as db:
            row = db.execute(
                "SELECT method, path, body_hash, status, response FROM idempotency WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                if (row["method"], row["path"], row["body_hash"]) != (method, path, body_hash):
                    raise ApiError(409, "Idempotency-Key was already used for a different request")
                return row["status"], json.loads(row["response"]), True
            status, response = action(db)
            if 200 <= status < 300:
                db.execute(
                    "INSERT INTO idempotency (key, method, path, body_hash, status, response) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key, method, path, body_hash, status, json.dumps(response)),
                )
            return status, response, False

    @staticmethod
    def _take_failure(db: sqlite3.Connection, kind: str, model: str, target: str | None) -> str | None:
        """Consume one injected failure for this job, if any is armed."""
        row = db.execute(
            "SELECT id, error FROM failures WHERE kind = ? AND model = ? AND remaining > 0 "
            "AND (target IS NULL OR target = ?) ORDER BY id LIMIT 1",
            (kind, model, target),
        ).fetchone()
        if row is None:
            return None
        db.execute("UPDATE failures SET remaining = remaining - 1 WHERE id = ?", (row["id"],))
        return row["error"]

    def _insert_job(self, db: sqlite3.Connection, **fields: Any) -> dict[str, Any]:
        now = time.time()
        row = {
            "created_at": now,
            "delay": self._setting(db, "job_delay", self.default_job_delay),
            "target": None,
            "rolled_back_at": None,
            **fields,
        }
        columns = ", ".join(row)
        db.execute(f"INSERT INTO jobs ({columns}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        stored = db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone()
        return render_job(stored, now)

    def start_training(self, db: sqlite3.Connection, name: str, key: str,
                       body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        record = self._live_model(db, name)
        counter_key = f"version_counter:{name}"
        number = max(self._setting(db, counter_key, 0), version_number(record.get("version"))) + 1
        self._set_setting(db, counter_key, number)
        metrics = self._setting(db, f"training_metrics:{name}", DEFAULT_TRAINING_METRICS)
        job = self._insert_job(
            db, id="tr-" + uuid.uuid4().hex[:16], kind="training", model=name, idempotency_key=key,
            model_version=f"v{number}", fail_error=self._take_failure(db, "training", name, None),
            metrics=json.dumps(metrics), request=json.dumps(body or {}),
        )
        return 201, job

    def start_deployment(
        self, db: sqlite3.Connection, name: str, key: str, version: str, target: str
    ) -> tuple[int, dict[str, Any]]:
        self._live_model(db, name)
        metrics = self._setting(db, f"smoke:{target}", DEFAULT_SMOKE_METRICS)
        job = self._insert_job(
            db, id="dp-" + uuid.uuid4().hex[:16], kind="deployment", model=name, idempotency_key=key,
            model_version=version, target=target,
            fail_error=self._take_failure(db, "deployment", name, target), metrics=json.dumps(metrics),
        )
        return 201, job

    def rollback(self, db: sqlite3.Connection, job_id: str) -> tuple[int, dict[str, Any]]:
        row = db.execute("SELECT * FROM jobs WHERE id = ? AND kind = 'deployment'", (job_id,)).fetchone()
        if row is None:
            raise ApiError(404, f"no deployment {job_id!r}")
        now = time.time()
        if row["rolled_back_at"] is None:
            db.execute("UPDATE jobs SET rolled_back_at = ? WHERE id = ?", (now, job_id))
        return 200, render_job(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone(), now)

    def get_job(self, job_id: str, kind: str) -> dict[str, Any]:
        with self.tx() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ? AND kind = ?", (job_id, kind)).fetchone()
        if row is None:
            raise ApiError(404, f"no {kind.replace('training', 'training run')} {job_id!r}")
        return render_job(row, time.time())

    def list_jobs(self, model: str | None, kind: str | None) -> list[dict[str, Any]]:
        with self.tx() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE (? IS NULL OR model = ?) AND (? IS NULL OR kind = ?) "
                "ORDER BY created_at, rowid",
                (model, model, kind, kind),
            ).fetchall()
        now = time.time()
        return [
            {
                **render_job(row, now), "kind": row["kind"], "idempotency_key": row["idempotency_key"],
                "created_at": row["created_at"], "request": json.loads(row["request"] or "{}"),
            }
            for row in rows
        ]

    def set_job_delay(self, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        delay = body.get("delay")
        if not (is_number(delay) and 0 <= delay <= 3600):
            raise ApiError(422, "delay must be a number of seconds in 0..3600")
        with self.tx() as db:
            if db.execute("UPDATE jobs SET delay = ? WHERE id = ?", (float(delay), job_id)).rowcount == 0:
                raise ApiError(404, f"no job {job_id}")
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return render_job(row, time.time())

    # -- streams -------------------------------------------------------------

    def _stream_length(self, db: sqlite3.Connection, model: str, partition: int) -> int:
        row = db.execute("SELECT length FROM streams WHERE model = ? AND part = ?", (model, partition)).fetchone()
        if row is not None:
            return row["length"]
        return self._setting(db, "stream_length", self.default_stream_length)

    def process_batch(
        self, db: sqlite3.Connection, name: str, partition: int, after: int, max_records: int | None
    ) -> tuple[int, dict[str, Any]]:
        record = self._live_model(db, name)
        if max_records is None:
            streaming = record.get("streaming")
            size = streaming.get("batch_size") if isinstance(streaming, dict) else None
            max_records = size if is_int(size) and size >= 1 else DEFAULT_BATCH_SIZE
        max_records = min(max_records, MAX_BATCH_SIZE)
        first, last = batch_range(after, max_records, self._stream_length(db, name, partition))
        if last < first:
            return 200, {"partition": partition, "records": 0, "next_offset": after}
        db.executemany(
            "INSERT INTO stream_counts (model, part, rec_offset, count) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (model, part, rec_offset) DO UPDATE SET count = count + 1",
            ((name, partition, offset) for offset in range(first, last + 1)),
        )
        return 200, {"partition": partition, "records": last - first + 1, "next_offset": last}

    def set_stream_length(self, model: str, partition: int, length: Any, *, append: bool) -> int:
        if not is_int(length) or length < 0:
            raise ApiError(422, "count must be an integer >= 0" if append else "length must be an integer >= 0")
        with self.tx() as db:
            if append:
                length += self._stream_length(db, model, partition)
            db.execute(
                "INSERT OR REPLACE INTO streams (model, part, length) VALUES (?, ?, ?)", (model, partition, length)
            )
        return length

    def stream_stats(self, model: str, *, raw: bool) -> dict[str, dict[str, Any]]:
        with self.tx() as db:
            stats = db.execute(
                "SELECT part, COUNT(*) AS n, SUM(count) AS total, MAX(rec_offset) AS max_offset "
                "FROM stream_counts WHERE model = ? GROUP BY part",
                (model,),
            ).fetchall()
            parts = {row["part"] for row in stats} | {
                row["part"] for row in db.execute("SELECT part FROM streams WHERE model = ?", (model,))
            }
            by_part = {row["part"]: row for row in stats}
            result: dict[str, dict[str, Any]] = {}
            for part in sorted(parts):
                row = by_part.get(part)
                n, total, max_offset = (row["n"], row["total"], row["max_offset"]) if row else (0, 0, -1)
                entry: dict[str, Any] = {
                    "processed": n,
                    "duplicates": total - n,
                    "max_offset": max_offset,
                    "missing": max_offset + 1 - n,
                    "length": self._stream_length(db, model, part),
                }
                if raw:
                    entry["counts"] = {
                        str(r["rec_offset"]): r["count"]
                        for r in db.execute(
                            "SELECT rec_offset, count FROM stream_counts WHERE model = ? AND part = ? "
                            "ORDER BY rec_offset",
                            (model, part),
                        )
                    }
                result[str(part)] = entry
        return result

    # -- failure injection ---------------------------------------------------

    def set_training_metrics(self, name: str, body: Any) -> None:
        metrics = validate_metrics(require_object(body).get("metrics"))
        with self.tx() as db:
            self._set_setting(db, f"training_metrics:{name}", metrics)

    def set_smoke_metrics(self, target: str, body: Any) -> None:
        metrics = validate_metrics(require_object(body).get("metrics"))
        with self.tx() as db:
            self._set_setting(db, f"smoke:{target}", metrics)

    def arm_failure(self, kind: str, name: str, body: Any) -> None:
        body = require_object(body)
        count, target = body.get("count", 1), body.get("target")
        error = body.get("error", f"{kind} failed (injected)")
        if not is_int(count) or count < 1:
            raise ApiError(422, "count must be an integer >= 1")
        if not isinstance(error, str) or (target is not None and not isinstance(target, str)):
            raise ApiError(422, "error and target must be strings")
        with self.tx() as db:
            db.execute(
                "INSERT INTO failures (kind, model, target, error, remaining) VALUES (?, ?, ?, ?, ?)",
                (kind, name, target, error, count),
            )

    def add_fault(self, body: Any) -> int:
        body = require_object(body)
        prefix, method = body.get("path_prefix"), body.get("method")
        count, skip = body.get("count", 1), body.get("skip", 0)
        status, retry_after, delay = body.get("status"), body.get("retry_after"), body.get("delay")
        delay_after = body.get("delay_after")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ApiError(422, "path_prefix must be a path starting with /")
        if method is not None and not isinstance(method, str):
            raise ApiError(422, "method must be a string")
        if not (is_int(count) and count >= 1 and is_int(skip) and skip >= 0):
            raise ApiError(422, "count must be >= 1 and skip >= 0")
        if status is not None and not (is_int(status) and 100 <= status <= 599):
            raise ApiError(422, "status must be an HTTP status code")
        if delay is not None and not (is_number(delay) and 0 <= delay <= 600):
            raise ApiError(422, "delay must be a number of seconds in 0..600")
        if delay_after is not None and not (is_number(delay_after) and 0 <= delay_after <= 600):
            raise ApiError(422, "delay_after must be a number of seconds in 0..600")
        if delay_after is not None and status is not None:
            raise ApiError(422, "delay_after delays a real answer; it cannot be combined with status")
        if status is None and delay is None and delay_after is None:
            raise ApiError(422, "a fault needs a status, a delay, a delay_after, or status and delay")
        with self.tx() as db:
            cursor = db.execute(
                "INSERT INTO faults (path_prefix, method, skip, remaining, status, retry_after, delay, delay_after) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (prefix, method.upper() if method else None, skip, count, status,
                 None if retry_after is None else str(retry_after), delay, delay_after),
            )
            return int(cursor.lastrowid or 0)

    def list_faults(self) -> list[dict[str, Any]]:
        with self.tx() as db:
            return [dict(row) for row in db.execute("SELECT * FROM faults ORDER BY id")]

    def clear_faults(self) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM faults")

    def take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        """The fault this request triggers, if any; counts it down."""
        with self.tx() as db:
            rows = db.execute(
                "SELECT * FROM faults WHERE remaining > 0 AND (method IS NULL OR method = ?) ORDER BY id", (method,)
            ).fetchall()
            fired = None
            for row in rows:
                if not path.startswith(row["path_prefix"]):
                    continue
                if row["skip"] > 0:
                    db.execute("UPDATE faults SET skip = skip - 1 WHERE id = ?", (row["id"],))
                elif fired is None:
                    fired = dict(row)
                    db.execute("UPDATE faults SET remaining = remaining - 1 WHERE id = ?", (row["id"],))
            db.execute("DELETE FROM faults WHERE remaining <= 0")
            return fired

    # -- request log and reset -----------------------------------------------

    def log_request(self, method: str, path: str, query: str, status: int, key: str | None) -> None:
        with self.tx() as db:
            db.execute(
                "INSERT INTO request_log (at, method, path, query, status, idempotency_key) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), method, path, query, status, key),
            )

    def request_log(self, path: str | None, method: str | None) -> dict[str, Any]:
        where = "WHERE (? IS NULL OR path = ?) AND (? IS NULL OR method = ?)"
        args = (path, path, method, method)
        with self.tx() as db:
            counts = {
                f"{row['method']} {row['path']}": row["n"]
                for row in db.execute(
                    f"SELECT method, path, COUNT(*) AS n FROM request_log {where} GROUP BY method, path", args
                )
            }
            tail = [
                dict(row)
                for row in db.execute(
                    f"SELECT at, method, path, query, status, idempotency_key FROM request_log {where} "
                    f"ORDER BY id DESC LIMIT {REQUEST_LOG_TAIL}",
                    args,
                )
            ]
        return {"counts": counts, "total": sum(counts.values()), "requests": tail[::-1]}

    def reset(self, body: Any) -> None:
        reseed = require_object(body).get("seed", True)
        with self.tx() as db:
            for table in STATE_TABLES:
                db.execute(f"DELETE FROM {table}")
            if reseed:
                self._insert_models(db, self.seed)


