"""`plan` and `render`: what a spec change does to the DAGs, and what one model's DAG looks like.

Both build the DAGs with the real builders (Airflow is imported when the command runs).
`plan` exits 0 when the plan could be made, EXIT_BREAKING with `--fail-on breaking` when a
change would fail DAG runs in flight, 2 on a usage error (unknown revision, missing folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dag_factory.cli.common import EXIT_OK, UsageError
from dag_factory.kinds import SECTIONS
from dag_factory.layout import cli_specs_dir

EXIT_BREAKING = 3  # `plan --fail-on breaking`: a task id of a DAG that stays disappears


def register(sub: argparse._SubParsersAction) -> None:
    plan = sub.add_parser("plan", help="what a spec change does to the DAGs (exit 3 on breaking with --fail-on)",
                          description="Build the DAGs of a base (a git revision or a folder) and of the current "
                                      "specs with the real builders, and show the difference: DAGs added and "
                                      "removed, and per DAG tasks, edges, schedule and arguments. See docs/plan.md.")
    plan.add_argument("path", nargs="?", help="the specs folder (default: $DAG_FACTORY_SPECS, else specs/)")
    base = plan.add_mutually_exclusive_group()
    base.add_argument("--base", metavar="REF",
                      help="git revision to compare against, read with git without touching the work tree "
                           "(default: HEAD, i.e. the uncommitted changes)")
    base.add_argument("--base-dir", metavar="DIR", help="a specs folder to compare against instead of a git revision "
                                                         "(default: off)")
    plan.add_argument("--live", metavar="FILE",
                      help="a live snapshot JSON (the value of the Variable dag_factory_live_models) applied to "
                           "both sides (default: none, DAGs from the specs alone)")
    plan.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                      help="text for a terminal, markdown for a pull request, json for scripts (default: text)")
    plan.add_argument("--fail-on", choices=("breaking",),
                      help=f"exit {EXIT_BREAKING} when a change breaks DAG runs in flight (default: always exit 0)")
    plan.add_argument("--now", metavar="ISO",
                      help="count next run times from this UTC time, e.g. 2026-01-01T00:00 (default: now)")
    plan.set_defaults(handler=run_plan)

    render = sub.add_parser("render", help="print one model's DAG task graph (text or mermaid)",
                            description="Build a model's DAGs with the real builders and print their task graphs.")
    render.add_argument("model", help="the model name (the spec's `model:`, or a live model with --live)")
    render.add_argument("--kind", choices=SECTIONS, help="one DAG kind (default: every kind the model has)")
    render.add_argument("--format", choices=("text", "mermaid"), default="text",
                        help="text, or a Mermaid flowchart for READMEs and reviews (default: text)")
    render.add_argument("--specs", metavar="DIR", help="the specs folder (default: $DAG_FACTORY_SPECS, else specs/)")
    render.add_argument("--live", metavar="FILE", help="a live snapshot JSON (default: none)")
    render.set_defaults(handler=run_render)


def _folder(given: str | None) -> Path:
    folder = cli_specs_dir(given)
    if not folder.is_dir():
        raise UsageError(f"no such specs folder: {folder}")
    return folder


def _live(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from dag_factory.live import snapshot

    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    snap = snapshot.parse(raw)
    if snap is None:
        raise UsageError(f"{path} is not a live snapshot (a JSON object with \"format\": 1 and \"models\")")
    return snap


def _now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc).replace(second=0, microsecond=0)
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"--now {text!r} is not an ISO date and time") from exc
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def run_plan(args: argparse.Namespace) -> int:
    from dag_factory.plan.render import FORMATS
    from dag_factory.plan.sides import compare, load_side
    from dag_factory.plan.sources import SourceError, specs_at_revision, specs_from_folder

    head_dir = _folder(args.path)
    snap, now = _live(args.live), _now(args.now)
    with tempfile.TemporaryDirectory(prefix="dag_factory_plan_") as tmp:
        try:
            if args.base_dir:
                base_dir, base_label = specs_from_folder(Path(args.base_dir), head_dir.resolve().name, Path(tmp)), \
                    f"folder {args.base_dir}"
            else:
                ref = args.base or "HEAD"
                base_dir, base_label = specs_at_revision(ref, head_dir, Path(tmp)), f"git {ref}"
        except SourceError as exc:
            raise UsageError(str(exc)) from exc
        base = load_side(base_dir, snap, base_label)
        head = load_side(head_dir, snap, str(args.path or head_dir))
        plan = compare(base, head, now, live=args.live)
    sys.stdout.write(FORMATS[args.format](plan))
    if args.fail_on == "breaking" and plan.breaking:
        print(f"dag-factory plan: {len(plan.breaking)} DAG(s) break runs in flight (exit {EXIT_BREAKING})",
              file=sys.stderr)
        return EXIT_BREAKING
    return EXIT_OK


def run_render(args: argparse.Namespace) -> int:
    from dag_factory.builders.register import build_dags
    from dag_factory.kinds import dag_id as make_dag_id
    from dag_factory.plan.describe import describe_dag
    from dag_factory.plan.graph import FORMATS
    from dag_factory.specs.loader import load_specs

    folder = _folder(args.specs)
    snap = _live(args.live)
    result = load_specs([folder], check_imports=False).relative_to(folder.parent)
    outputs = []
    for kind in (args.kind,) if args.kind else SECTIONS:
        dag_id = make_dag_id(args.model, kind)
        dag = build_dags(result, snap, only=dag_id).get(dag_id)
        if dag is not None:
            outputs.append(FORMATS[args.format](dag_id, describe_dag(dag)))
    if not outputs:
        invalid = [f for f in result.invalid_files if Path(f).stem == args.model]
        why = f"{invalid[0]} is invalid (dag-factory validate {invalid[0]})" if invalid else \
            f"no {args.kind + ' ' if args.kind else ''}DAG of model '{args.model}' in {folder}"
        raise UsageError(why)
    sys.stdout.write("\n".join(outputs))
    return EXIT_OK
