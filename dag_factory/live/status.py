"""The state of the fleet, one row per model: the ONE function behind `dag-factory status`, the
Models page and its JSON endpoint (`dag_factory.plugin`), so the three never disagree.

Inputs are data: the loaded specs, the live snapshot (the one Variable) and `FleetFacts` read
from Airflow's metadata DB (`dag_factory.live.facts`). Nothing here calls the model backend or
Airflow; with `now` given the result depends on the inputs alone (unit tests use fixtures).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from dag_factory import settings
from dag_factory.kinds import KINDS
from dag_factory.layout import cli_specs_dir
from dag_factory.live import snapshot
from dag_factory.live.facts import FleetFacts
from dag_factory.live.fleet import plan_fleet
from dag_factory.specs.gates import gate_failures
from dag_factory.specs.loader import LoadResult, load_specs
from dag_factory.specs.model import ModelSpec
from dag_factory.specs.resolved import duration_text

# A stream counts as lagging when its last committed batch is older than this many intervals.
LAG_INTERVALS = 3
INVALID, NO_SPEC = "INVALID SPEC", "NO SPEC"
DEFAULT_PROCESSOR_TIMEOUT = 50.0  # [dag_processor] dag_file_processor_timeout when the facts do not say


def _parse_ts(value: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _seconds_since(timestamp: Any, now: datetime) -> int | None:
    when = _parse_ts(timestamp) if timestamp is not None else None
    return None if when is None else int((now - when).total_seconds())


def format_age(seconds: int | None) -> str:
    """`5m03s`, `26h07m` (the CLI's format); `-` when unknown. Clock skew counts as 0."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _age(timestamp: str | None, now: datetime) -> str:
    return format_age(_seconds_since(timestamp, now))


def _snapshot_summary(snap: Mapping[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    if snap is None:
        return None
    return {"synced_at": snap.get("synced_at"), "changed_at": snap.get("changed_at"),
            "expires_at": snap.get("expires_at"), "expired": snapshot.expired(snap, now),
            "age_seconds": _seconds_since(snap.get("synced_at"), now),
            "expires_in_seconds": None if (e := _seconds_since(snap.get("expires_at"), now)) is None else -e}


def _run(facts: FleetFacts, dag_id: str) -> dict[str, Any] | None:
    run = facts.runs.get(dag_id)
    return dict(run) if run else None


def _training(spec: ModelSpec, dag_id: str, facts: FleetFacts) -> dict[str, Any]:
    result = facts.training.get(dag_id) or {}
    metrics = result.get("metrics") if isinstance(result.get("metrics"), Mapping) else {}
    gates = []
    for gate in spec.training.gates if spec.training else ():
        value = metrics.get(gate.metric) if metrics else None
        gates.append({"gate": str(gate), "value": value,
                      "passed": None if not metrics else not gate_failures([gate], metrics)})
    return {"run": _run(facts, dag_id), "model_version": result.get("model_version"),
            "metrics": dict(metrics or {}), "gates": gates}


def _deployment(spec: ModelSpec, dag_id: str, facts: FleetFacts) -> dict[str, Any]:
    deployed = facts.deployed.get(dag_id) or {}
    targets = [{"name": t.name, **dict(deployed.get(t.name) or {"version": None, "run_id": None})}
               for t in (spec.deployment.targets if spec.deployment else ())]
    return {"run": _run(facts, dag_id), "targets": targets}


def _streaming(spec: ModelSpec, model: str, dag_id: str, facts: FleetFacts, now: datetime) -> dict[str, Any]:
    every = int(spec.streaming.every.total_seconds()) if spec.streaming else 0
    partitions = []
    for partition, state in sorted((facts.offsets.get(model) or {}).items()):
        partitions.append({"partition": partition, "offset": state.get("offset"), "records": state.get("records"),
                           "updated_at": state.get("updated_at"),
                           "age_seconds": _seconds_since(state.get("updated_at"), now),
                           "caught_up": bool(state.get("empty_polls"))})
    ages = [p["age_seconds"] for p in partitions if p["age_seconds"] is not None]
    lag = max(ages) if ages else None
    return {"run": _run(facts, dag_id), "every_seconds": every, "partitions": partitions, "lag_seconds": lag,
            "lagging": lag is not None and every > 0 and lag > LAG_INTERVALS * every}


def _alerts(row: Mapping[str, Any]) -> list[str]:
    """What the Airflow side says is wrong (the CLI's exit code only counts `problems`)."""
    alerts = []
    for kind in ("training", "deployment", "streaming"):
        run = (row.get(kind) or {}).get("run") or {}
        if run.get("state") == "failed":
            alerts.append(f"last {kind} run failed: {run.get('run_id')}")
    failed_gates = [g["gate"] for g in (row.get("training") or {}).get("gates", ()) if g["passed"] is False]
    if failed_gates:
        alerts.append(f"last training missed gate(s): {', '.join(failed_gates)}")
    streaming = row.get("streaming") or {}
    if streaming.get("lagging"):
        alerts.append(f"stream lagging: last batch {format_age(streaming['lag_seconds'])} ago "
                      f"(every {duration_text(timedelta(seconds=streaming['every_seconds']))})")
    return alerts


def _model_row(name: str, spec: ModelSpec, record: Mapping[str, Any], status: str, snap: Mapping[str, Any] | None,
               facts: FleetFacts, now: datetime, problems: list[str]) -> dict[str, Any]:
    dag_ids = [spec.dag_id(k, name) for k in spec.kinds] if status != "retired" else []
    row: dict[str, Any] = {
        "model": name, "spec": spec.name, "spec_file": spec.source, "owner": spec.owner,
        "tags": sorted(spec.tags), "status": status, "version": record.get("version", "-"),
        "updated_at": record.get("updated_at"),
        "data_age": _age((snap or {}).get("synced_at"), now) if record else "-",
        "dag_ids": dag_ids, "problems": problems,
    }
    for kind in spec.kinds if dag_ids else ():
        dag_id = spec.dag_id(kind, name)
        row[kind] = (_training(spec, dag_id, facts) if kind == "training" else
                     _deployment(spec, dag_id, facts) if kind == "deployment" else
                     _streaming(spec, name, dag_id, facts, now))
    row["alerts"] = _alerts(row)
    return row


def _other_row(model: str, spec: str, status: str, problems: list[str], spec_file: str | None = None,
               errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"model": model, "spec": spec, "spec_file": spec_file, "owner": None, "tags": [], "status": status,
            "version": "-", "updated_at": None, "data_age": "-", "dag_ids": [], "problems": problems,
            "alerts": [], **({"errors": errors} if errors is not None else {})}


def fleet_view(result: LoadResult, snap: Mapping[str, Any] | None, facts: FleetFacts | None = None,
               now: datetime | None = None) -> dict[str, Any]:
    """Every model of the fleet (live and spec-only, paused, missing, retired), every invalid spec
    file with its located errors, and every live model without a spec; sorted by model name
    within each group (invalid specs first)."""
    now = now or datetime.now(timezone.utc)
    facts = facts or FleetFacts()
    specs = result.by_name()
    stale = snap is not None and snapshot.expired(snap, now)
    fleet, fleet_problems = plan_fleet(specs, snap)
    live = (snap or {}).get("models") or {}
    missing = (snap or {}).get("missing") or {}
    rejected = (snap or {}).get("rejected") or {}
    invalid = []
    for error_file in result.invalid_files:
        errors = [e for e in result.errors if e.file == error_file]
        invalid.append(_other_row(Path(error_file).stem, error_file, INVALID, [str(e) for e in errors], error_file,
                                  [{**e.to_dict(), "location": e.location} for e in errors]))
    rows = []
    for model in fleet:
        record = live.get(model.name) or {}
        problems = []
        if model.name in missing:
            problems.append(f"missing from the last {missing[model.name]} listing(s)")
        if model.name in rejected:
            problems.append(f"last record rejected: {rejected[model.name]}")
        if record and stale:
            problems.append(f"live data stale since {snap.get('expires_at')}")  # type: ignore[union-attr]
        status = ("missing" if model.name in missing else record["status"]) if record else \
            ("spec only" if snap else "no live data")
        rows.append(_model_row(model.name, model.spec, record, status, snap, facts, now, problems))
    for name in sorted(set((snap or {}).get("retired") or ()) - set(live)):
        spec = specs.get(name)
        rows.append(_model_row(name, spec, {}, "retired", snap, facts, now, []) if spec else
                    _other_row(name, "-", "retired", []))
    invalid_by_stem = {Path(f).stem: f for f in result.invalid_files}
    no_spec = []
    for problem in fleet_problems:
        name = problem.split("'")[1]
        spec_name = (live.get(name) or {}).get("spec") or name
        if spec_name in invalid_by_stem:  # the spec is there but invalid: say so, not "missing"
            file = invalid_by_stem[spec_name]
            problem = f"live model '{name}' uses {file}, which is invalid: no DAGs until it is fixed"
            no_spec.append(_other_row(name, spec_name, NO_SPEC, [problem], file))
        else:
            no_spec.append(_other_row(name, "-", NO_SPEC, [problem]))
    rows.sort(key=lambda r: r["model"])
    return {"generated_at": now.isoformat(timespec="seconds"), "live_data": _snapshot_summary(snap, now),
            "models": invalid + rows + no_spec, "parsing": parse_headroom(facts, now)}


def target_seconds(timeout: float, warn_fraction: float) -> float:
    """What one entry file's parse should take: half the warn line (at the defaults a quarter of the
    timeout), so a machine twice as busy still parses without a warning and four times as busy still in time."""
    return timeout * warn_fraction / 2


def slowest_per_model(files: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], float] | None:
    """The entry file with the most parse seconds per model, and that figure; None without figures."""
    timed = [f for f in files if f.get("seconds") and f.get("models")]
    if not timed:
        return None
    worst = max(timed, key=lambda f: f["seconds"] / f["models"])
    return worst, worst["seconds"] / worst["models"]


def suggested_count(files: Sequence[Mapping[str, Any]], timeout: float, warn_fraction: float,
                    models: int | None = None) -> int | None:
    """K that brings a file to `target_seconds` at the slowest measured seconds per model, for
    `models` (default: the models of the entry files). The fleet's hash spreads the models evenly
    across files; a template spec's live models stay together in its file. None without figures."""
    slowest = slowest_per_model(files)
    if slowest is None or timeout <= 0:
        return None
    total = sum(f.get("models") or 0 for f in files) if models is None else models
    return max(1, math.ceil(total * slowest[1] / max(target_seconds(timeout, warn_fraction), 1e-9)))


def parse_headroom(facts: FleetFacts, now: datetime, warn_fraction: float | None = None) -> dict[str, Any]:
    """Each entry file's last parse against the dag-processor's timeout: a file whose parse passes
    `dag_file_processor_timeout` is killed, nothing of it is written, and every DAG it builds goes
    stale. `warn` from `warn_fraction` of the timeout ($DAG_FACTORY_PARSE_WARN) on."""
    warn_at = settings.number(settings.PARSE_WARN) if warn_fraction is None else warn_fraction
    timeout = float(facts.timeouts.get("processor") or DEFAULT_PROCESSOR_TIMEOUT)
    bundles = {p.get("bundle") for p in facts.parses}
    files = []
    for parse in facts.parses:
        seconds = parse.get("seconds")
        fraction = None if seconds is None else seconds / timeout
        name = parse["file"] if len(bundles) < 2 else f"{parse.get('bundle')}:{parse['file']}"
        files.append({**parse, "name": name, "fraction": fraction,
                      "age_seconds": _seconds_since(parse.get("parsed_at"), now),
                      "warn": fraction is not None and fraction >= warn_at})
    count = suggested_count(files, timeout, warn_at)
    warnings = [f"{f['name']}: last parse {f['seconds']:.1f} s is {f['fraction']:.0%} of the {timeout:g} s "
                f"dag_file_processor_timeout (warning from {warn_at:.0%}); past it the parse is killed and its "
                f"{f['dags']} DAGs go stale: split the fleet across more entry files, `dag-factory entry-files "
                f"{count}` (what `dag-factory entry-files --auto --measured` picks)" for f in files if f["warn"]]
    return {"timeout_seconds": timeout, "import_timeout_seconds": facts.timeouts.get("import"),
            "warn_fraction": warn_at, "suggested_count": count, "files": files, "warnings": warnings}


def parse_line(item: Mapping[str, Any], timeout: float) -> str:
    """`model_dags_1_of_4.py: 250 model(s) (667 DAGs), last parse 12.3 s of 50 s (25 %), 2m03s ago`."""
    if item.get("seconds") is None:
        return f"{item['name']}: {item['models']} model(s) ({item['dags']} DAGs), no parse duration recorded"
    return (f"{item['name']}: {item['models']} model(s) ({item['dags']} DAGs), last parse {item['seconds']:.1f} s "
            f"of {timeout:g} s ({item['fraction']:.0%}), {format_age(item.get('age_seconds'))} ago")


FactsReader = Callable[[Mapping[str, Sequence[str]]], FleetFacts]


def fleet_state(result: LoadResult, snap: Mapping[str, Any] | None, read_facts: FactsReader | None = None,
                now: datetime | None = None) -> dict[str, Any]:
    """`fleet_view` with the facts `read_facts` finds for the fleet's DAG ids (the Airflow edge)."""
    facts = read_facts(fleet_dag_ids(result, snap)) if read_facts else None
    return fleet_view(result, snap, facts, now)


def status_view(specs_dir: str | None, raw_snapshot: str | None, now: datetime | None = None,
                read_facts: FactsReader | None = None) -> dict[str, Any]:
    """`dag-factory status`: `fleet_view` for the specs folder and the stored snapshot."""
    result = load_specs([cli_specs_dir(specs_dir)], check_imports=False)
    return fleet_state(result, snapshot.parse(raw_snapshot), read_facts, now)


def fleet_dag_ids(result: LoadResult, snap: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """kind -> DAG ids of the fleet: what `dag_factory.live.facts.read_facts` looks up."""
    fleet, _ = plan_fleet(result.by_name(), snap)
    out: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for model in fleet:
        for kind in model.spec.kinds:
            out[kind].append(model.spec.dag_id(kind, model.name))
    return out


def filter_rows(rows: Iterable[Mapping[str, Any]], *, status: str = "", owner: str = "", tag: str = "",
                problem: str = "", text: str = "", sort: str = "model") -> list[Mapping[str, Any]]:
    """The page's and the JSON endpoint's filters: exact status/owner/tag; problem `yes`/`no`
    (problems or alerts); `text` in the model or spec name; sort by a column (`-col`: descending).
    Invalid specs stay on top whatever the sort."""
    out = []
    for row in rows:
        troubled = bool(row.get("problems") or row.get("alerts"))
        if (status and row.get("status") != status) or (owner and row.get("owner") != owner) or \
                (tag and tag not in (row.get("tags") or ())) or (problem == "yes" and not troubled) or \
                (problem == "no" and troubled) or \
                (text and text.lower() not in f"{row.get('model')} {row.get('spec')}".lower()):
            continue
        out.append(row)
    key, reverse = sort.lstrip("-"), sort.startswith("-")
    out.sort(key=lambda r: _sort_value(r, key), reverse=reverse)
    out.sort(key=lambda r: r.get("status") != INVALID)
    return out


def _sort_value(row: Mapping[str, Any], key: str) -> tuple[int, Any]:
    value: Any
    if key == "training":
        value = ((row.get("training") or {}).get("run") or {}).get("state")
    elif key == "lag":
        value = (row.get("streaming") or {}).get("lag_seconds")
    elif key == "problems":
        value = len(row.get("problems") or ()) + len(row.get("alerts") or ())
    else:
        value = row.get(key)
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return (1, "") if value in (None, "-", "") else (0, value if isinstance(value, (int, float)) else str(value))


def render_parsing(parsing: Mapping[str, Any] | None) -> list[str]:
    """The entry files' parse lines of `dag-factory status` (WARN first word on a file near the timeout)."""
    if not parsing:
        return []
    timeout = parsing["timeout_seconds"]
    limit = f" (the import alone: {parsing['import_timeout_seconds']:g} s, [core] dagbag_import_timeout)" \
        if parsing.get("import_timeout_seconds") else ""
    lines = ["", f"entry files: last parse vs the {timeout:g} s [dag_processor] dag_file_processor_timeout{limit}"]
    if not parsing["files"]:
        return [*lines, "  no entry file's parse recorded in Airflow's DB yet"]
    lines += [f"{'WARN' if f['warn'] else '  '}  {parse_line(f, timeout)}" for f in parsing["files"]]
    return lines + [f"WARN  {w}" for w in parsing["warnings"]]


def render_status(rows: list[dict[str, Any]], parsing: Mapping[str, Any] | None = None) -> str:
    lines = [f"{'model':<28} {'spec':<22} {'status':<13} {'version':<10} {'age':<8} dags / problems"]
    for r in rows:
        lines.append(f"{r['model']:<28} {r['spec']:<22} {r['status']:<13} {r['version']:<10} {r['data_age']:<8} "
                     f"{', '.join(d.rsplit('__', 1)[1] for d in r['dag_ids']) or '-'}")
        lines.extend(f"{'':<28} ! {p}" for p in r["problems"])
    return "\n".join(lines + render_parsing(parsing))
