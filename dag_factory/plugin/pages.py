"""HTML of the Models page and the Model tab: pure functions of the data (escaped, no assets).

The pages live in an iframe of the Airflow UI. Links are relative (`../dags/<id>`) so they
work under a base_url prefix; a click on one moves the Airflow UI itself (its router listens
to history changes), not just the iframe, and falls back to a plain link outside the UI.
"""

from __future__ import annotations

import json
from datetime import timedelta
from html import escape
from typing import Any, Iterable, Mapping
from urllib.parse import quote, urlencode

from dag_factory.live.status import INVALID, format_age
from dag_factory.settings import INVALID_DAG_PREFIX
from dag_factory.specs.resolved import duration_text

UI = "../"  # from <root>/dag-factory/<page> to the Airflow UI's <root>/
STATUSES = ("active", "paused", "missing", "retired", "spec only", "no live data", INVALID, "NO SPEC")
COLUMNS = (("model", "model"), ("spec_file", "spec file"), ("status", "status"), ("version", "version"),
           ("data_age", "data age"), ("training", "last training"), (None, "deployed"), ("lag", "stream lag"),
           ("problems", "problems"))

STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:12px 16px;color:#1a202c;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:18px 0 6px}
.sub{color:#4a5568;margin-bottom:10px} a{color:#2b6cb0;text-decoration:none} a:hover{text-decoration:underline}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #e2e8f0;padding:4px 6px;text-align:left;
vertical-align:top} th{background:#f7fafc;position:sticky;top:0;white-space:nowrap} tr:hover td{background:#f7fafc}
.b{display:inline-block;border-radius:9px;padding:0 7px;font-size:12px;font-weight:600;white-space:nowrap}
.s-active,.s-success{background:#c6f6d5;color:#22543d} .s-paused,.s-queued,.s-running{background:#bee3f8;color:#2a4365}
.s-missing,.s-up_for_retry,.s-lagging{background:#fefcbf;color:#744210} .s-retired,.s-none{background:#e2e8f0;color:#4a5568}
.s-failed,.s-INVALID,.s-NO,.s-expired{background:#fed7d7;color:#822727} .s-spec,.s-no{background:#edf2f7;color:#2d3748}
.invalid{border:1px solid #feb2b2;background:#fff5f5;border-radius:6px;padding:8px 12px;margin:8px 0}
.invalid li{margin:2px 0} code,pre{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
pre{background:#f7fafc;border:1px solid #e2e8f0;border-radius:6px;padding:8px;overflow:auto;max-height:480px}
.prob{color:#c53030} .alert{color:#b7791f} .muted{color:#718096} .ok{color:#276749} .bad{color:#c53030}
form.f{display:flex;gap:8px;flex-wrap:wrap;align-items:center;margin:8px 0} form.f select,form.f input{padding:2px 4px}
.dflt{background:#ebf8ff} .grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
#parse-headroom{width:auto;margin:4px 0 10px} #parse-headroom tr.warn td{background:#fffff0}
.bar{display:inline-block;width:80px;height:8px;background:#e2e8f0;border-radius:4px;vertical-align:middle}
.bar i{display:block;height:8px;border-radius:4px;background:#48bb78} tr.warn .bar i{background:#d69e2e}
"""

# Move the Airflow UI (the parent window, same origin) instead of loading the UI inside the iframe.
SCRIPT = """
document.addEventListener('click', function (e) {
  var a = e.target.closest && e.target.closest('a[data-ui]');
  if (!a || window.top === window || e.ctrlKey || e.metaKey || e.shiftKey) return;
  try {
    var u = new URL(a.href), h = window.top.history, idx = ((h.state && h.state.idx) || 0) + 1;
    h.pushState({usr: null, key: Math.random().toString(36).slice(2, 10), idx: idx}, '', u.pathname + u.search + u.hash);
    window.top.dispatchEvent(new PopStateEvent('popstate', {state: h.state}));
    e.preventDefault();
  } catch (err) { /* not embedded in the same origin: follow the link */ }
});
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}<script>{SCRIPT}</script></body></html>")


def _badge(text: Any, css: str | None = None) -> str:
    word = str(text or "none")
    return f'<span class="b s-{escape((css or word).split()[0])}">{escape(word)}</span>'


def dag_link(dag_id: str, text: str | None = None) -> str:
    return f'<a data-ui href="{UI}dags/{quote(dag_id, safe="")}">{escape(text or dag_id)}</a>'


def run_link(dag_id: str, run: Mapping[str, Any] | None, text: str | None = None) -> str:
    if not run:
        return '<span class="muted">no runs yet</span>'
    href = f"{UI}dags/{quote(dag_id, safe='')}/runs/{quote(str(run['run_id']), safe='')}"
    return f'<a data-ui href="{href}" title="{escape(str(run["run_id"]))}">{text or _badge(run.get("state"))}</a>'


def tab_link(dag_id: str, text: str) -> str:
    return f'<a data-ui href="{UI}dags/{quote(dag_id, safe="")}/plugin/dag-factory-model">{escape(text)}</a>'


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else escape(str(value))


def _training_cell(row: Mapping[str, Any]) -> str:
    training = row.get("training")
    if not training:
        return '<span class="muted">-</span>'
    dag_id = f"{row['model']}__train"
    parts = [run_link(dag_id, training.get("run"))]
    for gate in training.get("gates") or ():
        mark = {True: '<span class="ok">✓</span>', False: '<span class="bad">✗</span>'}.get(gate["passed"], "")
        value = "?" if gate["value"] is None else _num(gate["value"])
        parts.append(f'<div title="{escape(gate["gate"])}"><code>{escape(gate["gate"])}</code>: {value} {mark}</div>')
    if not training.get("gates") and training.get("metrics"):
        parts.append("<div>" + ", ".join(f"{escape(k)} {_num(v)}" for k, v in sorted(training["metrics"].items()))
                     + "</div>")
    return "".join(parts)


def _deploy_cell(row: Mapping[str, Any]) -> str:
    deployment = row.get("deployment")
    if not deployment:
        return '<span class="muted">-</span>'
    dag_id = f"{row['model']}__deploy"
    out = []
    for target in deployment.get("targets") or ():
        version = target.get("version")
        shown = run_link(dag_id, {"run_id": target["run_id"]}, escape(version)) if version else \
            '<span class="muted">none</span>'
        out.append(f"<div>{escape(target['name'])}: {shown}</div>")
    run = deployment.get("run")
    if run and run.get("state") not in ("success", None):
        out.append(f"<div>latest {run_link(dag_id, run)}</div>")
    return "".join(out) or '<span class="muted">-</span>'


def _stream_cell(row: Mapping[str, Any]) -> str:
    streaming = row.get("streaming")
    if not streaming:
        return '<span class="muted">-</span>'
    dag_id = f"{row['model']}__stream"
    lag = streaming.get("lag_seconds")
    every = duration_text(timedelta(seconds=streaming.get("every_seconds") or 0))
    if lag is None:
        return f"{run_link(dag_id, streaming.get('run'))} <span class='muted'>no batch yet (every {every})</span>"
    state = _badge("lagging") if streaming.get("lagging") else ""
    caught = ", caught up" if streaming.get("partitions") and all(p["caught_up"] for p in streaming["partitions"]) \
        else ""
    return (f'{run_link(dag_id, streaming.get("run"), escape(format_age(lag)))} '
            f'<span class="muted">(every {every}{caught})</span> {state}')


def _row_html(row: Mapping[str, Any]) -> str:
    model, dag_ids = row["model"], row.get("dag_ids") or []
    name = tab_link(dag_ids[0], model) if dag_ids else escape(model)
    spec = escape(row.get("spec_file") or "-")
    if row.get("spec") not in (None, "-", model) and row.get("spec_file"):
        spec += f' <span class="muted">({escape(row["spec"])})</span>'
    dags = " ".join(dag_link(d, d.rsplit("__", 1)[1]) for d in dag_ids)
    age = escape(row.get("data_age") or "-")
    issues = "".join(f'<div class="prob">{escape(p)}</div>' for p in row.get("problems") or ()) + \
        "".join(f'<div class="alert">{escape(a)}</div>' for a in row.get("alerts") or ())
    meta = " ".join(escape(t) for t in row.get("tags") or ())
    return (f'<tr data-model="{escape(model)}" data-status="{escape(row["status"])}"><td><b>{name}</b>'
            f'<div class="muted">{escape(row.get("owner") or "")}{" · " + meta if meta else ""}</div>'
            f'<div>{dags}</div></td><td><code>{spec}</code></td><td>{_badge(row["status"])}</td>'
            f'<td>{escape(str(row.get("version") or "-"))}</td><td>{age}</td><td>{_training_cell(row)}</td>'
            f'<td>{_deploy_cell(row)}</td><td>{_stream_cell(row)}</td><td>{issues or "<span class=ok>-</span>"}</td></tr>')


def _invalid_html(rows: Iterable[Mapping[str, Any]]) -> str:
    items = []
    for row in rows:
        errors = "".join(
            f'<li><code>{escape(e["location"])}</code>: '
            f'{escape((e.get("path") and ".".join(map(str, e["path"])) + ": " or "") + e["message"])}'
            f'{" — " + escape(e["hint"]) if e.get("hint") else ""}</li>'
            for e in row.get("errors") or ())
        link = dag_link(f"{INVALID_DAG_PREFIX}{row['model']}", "invalid-spec DAG")
        items.append(f'<div class="invalid" data-invalid="{escape(row["spec_file"] or "")}">'
                     f'<b>{escape(row["spec_file"] or row["model"])}</b> is invalid ({link}):<ul>{errors}</ul></div>')
    return "".join(items)


def _parsing_html(parsing: Mapping[str, Any] | None) -> str:
    """Each entry file's last parse against the dag-processor's timeout; files near it are marked."""
    if not parsing:
        return ""
    timeout = parsing["timeout_seconds"]
    title = (f"last parse of each entry file against the {timeout:g} s [dag_processor] dag_file_processor_timeout "
             f"(warning from {parsing['warn_fraction']:.0%}, DAG_FACTORY_PARSE_WARN)")
    if not parsing["files"]:
        return f'<div class="muted" id=parse-headroom>{escape(title)}: no parse recorded yet</div>'
    rows = []
    for f in parsing["files"]:
        seconds, fraction = f.get("seconds"), f.get("fraction")
        shown = "-" if seconds is None else f"{seconds:.1f} s of {timeout:g} s ({fraction:.0%})"
        bar = "" if fraction is None else f'<span class=bar><i style="width:{min(fraction, 1) * 100:.0f}%"></i></span> '
        mark = f" {_badge('near timeout', 'lagging')}" if f.get("warn") else ""
        rows.append(f'<tr{" class=warn" if f.get("warn") else ""} data-file="{escape(f["name"])}">'
                    f'<td><code>{escape(f["name"])}</code></td><td>{f["models"]} models, {f["dags"]} DAGs</td>'
                    f'<td>{bar}{escape(shown)}{mark}</td><td class=muted>{escape(format_age(f.get("age_seconds")))} ago'
                    f'</td></tr>')
    advice = "".join(f'<div class="alert">{escape(w)}</div>' for w in parsing.get("warnings") or ())
    return (f'<div class=sub title="{escape(title)}">entry files: last parse vs the {timeout:g} s '
            f'dag_file_processor_timeout</div><table id=parse-headroom><tbody>{"".join(rows)}</tbody></table>{advice}')


def _options(name: str, values: Iterable[str], chosen: str, label: str) -> str:
    opts = [f'<option value="">{escape(label)}</option>'] + [
        f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>{escape(v)}</option>' for v in values]
    return f'<select name="{name}" onchange="this.form.submit()">{"".join(opts)}</select>'


def models_page(view: Mapping[str, Any], shown: list[Mapping[str, Any]], query: Mapping[str, str]) -> str:
    """The Models page: invalid specs on top, then one row per model with filters and sorting."""
    every = view["models"]
    invalid = [r for r in shown if r["status"] == INVALID]
    rows = [r for r in shown if r["status"] != INVALID]
    live = view.get("live_data")
    if live is None:
        freshness = "no live data yet (the sync DAG has not written it)"
    else:
        state = _badge("expired") if live["expired"] else _badge("fresh", "success")
        left = live.get("expires_in_seconds")
        freshness = (f"live data synced {escape(format_age(live.get('age_seconds')))} ago, "
                     f"{'expired' if live['expired'] else 'expires in ' + escape(format_age(left))} {state}")
    owners = sorted({r["owner"] for r in every if r.get("owner")})
    tags = sorted({t for r in every for t in r.get("tags") or ()})
    sort = query.get("sort", "model")
    heads = []
    for key, label in COLUMNS:
        if key is None:
            heads.append(f"<th>{label}</th>")
            continue
        new = f"-{key}" if sort == key else key
        arrow = " ▲" if sort == key else " ▼" if sort == f"-{key}" else ""
        heads.append(f'<th><a href="?{escape(urlencode({**query, "sort": new}))}">{label}{arrow}</a></th>')
    form = (f'<form class="f" method="get">{_options("status", STATUSES, query.get("status", ""), "any status")}'
            f'{_options("owner", owners, query.get("owner", ""), "any owner")}'
            f'{_options("tag", tags, query.get("tag", ""), "any tag")}'
            f'{_options("problem", ("yes", "no"), query.get("problem", ""), "problems: any")}'
            f'<input name="q" placeholder="model or spec" value="{escape(query.get("q", ""))}">'
            f'<input type="hidden" name="sort" value="{escape(sort)}"><button type="submit">Filter</button>'
            f' <a href="?">clear</a> · <a href="api/models?{escape(urlencode(query))}">JSON</a></form>')
    body = (f"<h1>Models</h1><div class=sub>{len(rows)} of {len(every) - sum(r['status'] == INVALID for r in every)}"
            f" model(s) shown · {sum(r['status'] == INVALID for r in every)} invalid spec file(s) · {freshness}</div>"
            f"{_parsing_html(view.get('parsing'))}{_invalid_html(invalid)}{form}"
            f"<table id=models><thead><tr>{''.join(heads)}</tr></thead><tbody>"
            f"{''.join(_row_html(r) for r in rows)}</tbody></table>")
    return _page("Models · dag_factory", body)


def _tree(value: Any, origin: set[str], path: tuple[str, ...] = (), depth: int = 0) -> list[str]:
    """The resolved document as YAML-like lines; keys from the defaults file are marked."""
    lines = []
    pad = "  " * depth
    for key, item in value.items() if isinstance(value, Mapping) else ():
        here = ".".join((*path, str(key)))
        inherited = here in origin or any(here.startswith(o + ".") for o in origin)
        mark = ' <span class="b s-spec" title="from _defaults.yaml">defaults</span>' if here in origin else ""
        css = ' class="dflt"' if inherited else ""
        if isinstance(item, Mapping) and item:
            lines.append(f"<span{css}>{pad}{escape(str(key))}:</span>{mark}")
            lines.extend(_tree(item, origin, (*path, str(key)), depth + 1))
        else:
            text = json.dumps(item, ensure_ascii=False)
            lines.append(f"<span{css}>{pad}{escape(str(key))}: {escape(text)}</span>{mark}")
    return lines


def _runs_table(runs: Mapping[str, list[Mapping[str, Any]]]) -> str:
    out = []
    for dag_id, items in runs.items():
        cells = " ".join(run_link(dag_id, r, f'{_badge(r.get("state"))} <code>{escape(r["run_id"])}</code>')
                         + f' <span class="muted">{escape(r.get("start_date") or "")}</span><br>' for r in items) \
            or '<span class="muted">no runs yet</span>'
        out.append(f"<tr><td>{dag_link(dag_id)}</td><td>{cells}</td></tr>")
    return f"<table><thead><tr><th>DAG</th><th>latest runs (newest first)</th></tr></thead>{''.join(out)}</table>"


def model_page(detail: Mapping[str, Any]) -> str:
    """The Model tab: state, recent runs, live record, the spec as written and resolved."""
    row = detail["row"]
    spec = detail.get("spec") or {}
    head = (f"<h1>{escape(row['model'])} {_badge(row['status'])}</h1><div class=sub>spec "
            f"<code>{escape(row.get('spec_file') or '-')}</code> · version {escape(str(row.get('version')))}"
            f" · owner {escape(row.get('owner') or '-')} · live data age {escape(row.get('data_age') or '-')}</div>")
    summary = (f"<table><thead><tr>{''.join(f'<th>{c[1]}</th>' for c in COLUMNS)}</tr></thead>"
               f"<tbody>{_row_html(row) if row['status'] != INVALID else ''}</tbody></table>")
    if row["status"] == INVALID:
        summary = _invalid_html([row])
    live = detail.get("live_record")
    live_html = f"<pre id=live>{escape(json.dumps(live, indent=2, sort_keys=True))}</pre>" if live else \
        '<p class="muted">no live record for this model (spec only, or not synced yet)</p>'
    written = spec.get("as_written")
    resolved = spec.get("resolved")
    origin = set(spec.get("from_defaults") or ())
    defaults_note = (f'keys marked <span class="b s-spec">defaults</span> come from '
                     f'<code>{escape(spec.get("defaults_file") or "_defaults.yaml")}</code>')
    specs_html = (
        f'<div class=grid><div><h2>Spec as written</h2><pre id=spec-written>{escape(written or "")}</pre></div>'
        f'<div><h2>Resolved spec</h2><div class=muted>{defaults_note}</div>'
        f'<pre id=spec-resolved>{chr(10).join(_tree(resolved or {}, origin))}</pre></div></div>'
    ) if written is not None else f'<p class="muted">{escape(spec.get("error") or "no spec file")}</p>'
    body = (f"{head}{summary}<h2>DAG runs</h2>{_runs_table(detail.get('runs') or {})}"
            f"{specs_html}<h2>Live record</h2>{live_html}")
    return _page(f"{row['model']} · dag_factory", body)


def message_page(title: str, text: str) -> str:
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")
