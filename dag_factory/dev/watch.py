"""`dag-factory up`'s spec watcher: the reference backend learns every spec in the specs folder,
at the start and whenever a spec file is added, changed or removed while `up` runs.

Airflow gets a new spec's DAGs from the spec alone (the dag-processor re-parses the entry file
every few seconds), but their runs call the backend, which answers 404 for a model it does not
know, and reports the same default metrics for every model, which some gates reject. So every
second the watcher looks at the names, sizes and mtimes of the spec files (one `scandir`); when
they changed, and then held still for one more look (a file being copied is not read half
written), it loads the folder and, through the backend's admin API:

- adds the live record a spec gives (`seed.record_for`) for every model the backend lacks;
- rewrites a record when its spec changed, if the backend still holds what the spec gave
  before; a record someone changed through the admin API is theirs and is kept (one line says
  so);
- deletes a record it added when its spec file is deleted (or now names another model);
- sets the metrics the backend reports for training runs (per model) and smoke checks (per
  target) so that every spec's gates pass (`seed.gate_settings`), whenever they change.

It acts only on spec changes: a record deleted through the admin API stays deleted until its
spec file changes (`touch` it) or `up` starts again. What each spec gave last is kept in
``<home>/backend-learned.json``, so a restarted `up` still tells its own records from changed
ones.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from dag_factory.dev.backend.seed import gate_settings, record_for
from dag_factory.dev.backend.state import now_rfc3339
from dag_factory.specs import load_specs
from dag_factory.specs.errors import SpecError
from dag_factory.specs.loader import SPEC_SUFFIXES
from dag_factory.specs.model import ModelSpec

POLL_INTERVAL = 1.0
STOP_TIMEOUT = 15.0
MAX_LINES = 10  # per kind of change and look; more are summed up in one line

Admin = Callable[..., Any]  # RunningBackend.admin: (method, path relative to /_admin, json)
Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class Change:
    """One thing the watcher does to a live record (`action`: learned, updated, kept, forgot)."""

    action: str
    name: str
    file: str
    record: dict[str, Any] | None = None
    why: str = ""


def fingerprint(folder: Path) -> Fingerprint:
    """(name, size, mtime_ns) of every YAML file in `folder`, `_defaults.yaml` included."""
    try:
        with os.scandir(folder) as entries:
            return tuple(sorted((e.name, (st := e.stat()).st_size, st.st_mtime_ns) for e in entries
                                if e.name.endswith(SPEC_SUFFIXES) and not e.name.startswith(".") and e.is_file()))
    except OSError:
        return ()


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record without its timestamp: two records that differ only there are the same."""
    return {k: v for k, v in record.items() if k != "updated_at"}


def plan_records(wanted: Mapping[str, tuple[str, dict[str, Any]]], current: Mapping[str, dict[str, Any]],
                 learned: Mapping[str, Mapping[str, Any]], file_exists: Callable[[str], bool],
                 ) -> tuple[list[Change], dict[str, dict[str, Any]]]:
    """(changes to make, what each spec gives now) from what the specs give (name -> (file,
    record)), what the backend holds and what the specs gave at the last look (`learned`)."""
    changes: list[Change] = []
    given: dict[str, dict[str, Any]] = {}
    for name, (file, want) in sorted(wanted.items()):
        have, before = current.get(name), learned.get(name)
        given[name] = {"file": file, "record": want}
        if have is None:
            changes.append(Change("learned", name, file, want))
        elif have == want:
            continue
        elif before is not None and have == before["record"]:
            changes.append(Change("updated", name, file, want))
        elif before is None or before["record"] != want:
            changes.append(Change("kept", name, file))
    files_now = {file for file, _ in wanted.values()}
    for name, before in sorted(learned.items()):
        if name in wanted:
            continue
        file = before["file"]
        if file_exists(file) and file not in files_now:
            given[name] = dict(before)  # the file has errors now: keep what it gave
        elif current.get(name) == before["record"]:
            why = f"{file} is gone" if not file_exists(file) else f"{file} names another model now"
            changes.append(Change("forgot", name, file, why=why))
    return changes, given


def settings_to_send(wanted: Mapping[str, dict[str, float] | None],
                     sent: Mapping[str, dict[str, float] | None]) -> dict[str, dict[str, float] | None]:
    """Metric settings that differ from the ones sent before (None: back to the defaults).
    Nothing sent yet counts as the defaults, so a start does not reset settings made by hand."""
    out = {path: metrics for path, metrics in wanted.items() if sent.get(path) != metrics}
    out.update({path: None for path, metrics in sent.items() if path not in wanted and metrics is not None})
    return out


def describe(change: Change) -> str:
    if change.action == "kept":
        return (f"backend: kept {change.name} as changed through the admin API (it differs from what "
                f"{change.file} gives; DELETE /_admin/models/{change.name} and touch the file to take it again)")
    if change.action == "forgot":
        return f"backend: forgot {change.name} ({change.why})"
    return f"backend: {change.action} {change.name} from {change.file}"


def describe_setting(path: str, metrics: dict[str, float] | None) -> str:
    kind, name = ("training runs of", path.split("/")[2]) if path.startswith("/models/") else \
        ("deployments to", path.split("/")[2])
    said = "the defaults" if metrics is None else ", ".join(f"{k}={v:g}" for k, v in sorted(metrics.items()))
    return f"backend: {kind} {name} report {said}"


class SpecWatcher:
    """Keeps the reference backend in step with a specs folder; `poll()` once, then `start()`."""

    def __init__(self, specs_dir: Path, *, root: Path, admin: Admin, state_path: Path, out: TextIO,
                 interval: float = POLL_INTERVAL) -> None:
        self.specs_dir, self.root, self.admin = Path(specs_dir), Path(root), admin
        self.state_path, self.out, self.interval = Path(state_path), out, interval
        self._seen: Fingerprint | None = None  # the last look
        self._done: Fingerprint | None = None  # the folder as last learned
        self._sent: dict[str, dict[str, float] | None] = {}
        self._reported: set[tuple[str, str]] = set()
        self._last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- one look
    def poll(self, *, now: bool = False) -> list[str]:
        """Learn the folder if it changed and held still since the last look (`now`: learn it
        anyway). Returns the lines printed."""
        seen = fingerprint(self.specs_dir)
        settled, self._seen = seen == self._seen, seen
        if not now and (seen == self._done or not settled):
            return []
        lines = self._learn()
        self._done = seen
        return lines

    def _learn(self) -> list[str]:
        result = load_specs([self.specs_dir], check_imports=False)
        specs = [s for s in result.specs if not s.template]
        wanted = {s.name: (self._relative(s.source), comparable(record_for(s))) for s in specs}
        current = {r["name"]: comparable(r) for r in self.admin("GET", "/models")["models"]
                   if isinstance(r, dict) and isinstance(r.get("name"), str)}
        changes, given = plan_records(wanted, current, self._load_state(),
                                      lambda file: (self.root / file).is_file())
        lines = self._errors(result.errors)
        upserts = [dict(c.record, updated_at=now_rfc3339()) for c in changes if c.record is not None]
        if upserts:
            self.admin("POST", "/models", upserts)
        for change in changes:
            if change.action == "forgot":
                self.admin("DELETE", f"/models/{change.name}")
        self._save_state(given)
        for kind in ("learned", "updated", "kept", "forgot"):
            mine = [describe(c) for c in changes if c.action == kind]
            lines += mine if len(mine) <= MAX_LINES else [
                f"backend: {kind} {len(mine)} models: "
                + ", ".join(c.name for c in changes if c.action == kind)]
        lines += self._send_settings(specs)
        self._say(lines)
        return lines

    def _send_settings(self, specs: Sequence[ModelSpec]) -> list[str]:
        """Metrics that pass the specs' gates, where they changed; what was set, to print."""
        settings = settings_to_send(gate_settings(specs), self._sent)
        for path, metrics in settings.items():
            self.admin("PUT", path, {"metrics": metrics})
            self._sent[path] = metrics
        said = [describe_setting(p, m) for p, m in settings.items()]
        return said if len(said) <= MAX_LINES else [f"backend: metrics set for {len(said)} models and targets"]

    def _errors(self, errors: Sequence[SpecError]) -> list[str]:
        """One line per spec file with errors, once per version of the file."""
        lines = []
        for file in sorted({str(e.file) for e in errors}):
            try:
                version = str((self.root / self._relative(file)).stat().st_mtime_ns)
            except OSError:
                version = ""
            if (file, version) not in self._reported:
                self._reported.add((file, version))
                lines.append(f"backend: {self._relative(file)} has errors, not learned "
                             f"(dag-factory validate {self._relative(file)})")
        return lines

    # ---- the thread
    def start(self) -> None:
        """Look every `interval` seconds in a daemon thread until `stop()`."""
        self._thread = threading.Thread(target=self._run, name="dag-factory-spec-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
                self._last_error = ""
            except Exception as exc:  # noqa: BLE001 - a backend restart or a bad file: try again next look
                message = f"backend: could not learn {self._relative(str(self.specs_dir))}/ ({exc}); trying again"
                if message != self._last_error:
                    self._say([message])
                self._last_error = message

    # ---- edges
    def _relative(self, path: str) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def _say(self, lines: list[str]) -> None:
        if lines:
            self.out.write("".join(f"{line}\n" for line in lines))
            self.out.flush()

    def _load_state(self) -> dict[str, dict[str, Any]]:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        models = state.get("models") if isinstance(state, dict) else None
        return {k: v for k, v in (models or {}).items()
                if isinstance(v, dict) and isinstance(v.get("file"), str) and isinstance(v.get("record"), dict)}

    def _save_state(self, given: Mapping[str, Any]) -> None:
        temp = self.state_path.with_suffix(".tmp")
        temp.write_text(json.dumps({"models": given}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        temp.replace(self.state_path)
