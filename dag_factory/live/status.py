"""`dag-factory status`: one row per model, from the specs and the stored live snapshot."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dag_factory.layout import cli_specs_dir
from dag_factory.live import snapshot
from dag_factory.live.fleet import plan_fleet
from dag_factory.specs.loader import load_specs


def _age(timestamp: str | None, now: datetime) -> str:
    try:
        seconds = int((now - datetime.fromisoformat(timestamp)).total_seconds())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def model_status(specs_dir: str | None, raw_snapshot: str | None, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(timezone.utc)
    folder = cli_specs_dir(specs_dir)
    result = load_specs([folder], check_imports=False)
    snap = snapshot.parse(raw_snapshot)
    stale = snap is not None and snapshot.expired(snap, now)
    fleet, fleet_problems = plan_fleet(result.by_name(), snap)
    live = (snap or {}).get("models") or {}
    rows = []
    for model in fleet:
        record = live.get(model.name) or {}
        problems = []
        if model.name in ((snap or {}).get("missing") or {}):
            problems.append(f"missing from the last {snap['missing'][model.name]} listing(s)")
        if model.name in ((snap or {}).get("rejected") or {}):
            problems.append(f"last record rejected: {snap['rejected'][model.name]}")
        if record and stale:
            problems.append(f"live data stale since {snap.get('expires_at')}")
        rows.append({
            "model": model.name, "spec": model.spec.name,
            "status": record.get("status", "spec only" if snap else "no live data"),
            "version": record.get("version", "-"), "data_age": _age(snap.get("synced_at"), now) if record else "-",
            "dag_ids": [model.spec.dag_id(k, model.name) for k in model.spec.kinds], "problems": problems,
        })
    for error_file in result.invalid_files:
        rows.append({"model": Path(error_file).stem, "spec": error_file, "status": "INVALID SPEC", "version": "-",
                     "data_age": "-", "dag_ids": [], "problems": [str(e) for e in result.errors if e.file == error_file]})
    for problem in fleet_problems:
        rows.append({"model": problem.split("'")[1], "spec": "-", "status": "NO SPEC", "version": "-",
                     "data_age": "-", "dag_ids": [], "problems": [problem]})
    return rows


def render_status(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'model':<28} {'spec':<22} {'status':<13} {'version':<10} {'age':<8} dags / problems"]
    for r in rows:
        lines.append(f"{r['model']:<28} {r['spec']:<22} {r['status']:<13} {r['version']:<10} {r['data_age']:<8} "
                     f"{', '.join(d.rsplit('__', 1)[1] for d in r['dag_ids']) or '-'}")
        lines.extend(f"{'':<28} ! {p}" for p in r["problems"])
    return "\n".join(lines)
