"""`validate` and `dags`: what the specs say, without Airflow (unless a step names an operator)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dag_factory.cli.common import EXIT_INVALID, EXIT_OK, UsageError
from dag_factory.layout import cli_specs_dir


def register(sub: argparse._SubParsersAction) -> None:
    validate = sub.add_parser("validate", help="validate spec files (exit 0 valid, 1 invalid, 2 usage)",
                              description="Check spec files against the schemas and the cross-file rules; "
                                          "every error carries file:line:column and a hint.")
    validate.add_argument("paths", nargs="*", help="spec files or folders (default: $DAG_FACTORY_SPECS, else specs/)")
    validate.add_argument("--format", choices=("text", "json", "github"), default="text",
                          help="text for people, json for scripts, github for workflow annotations (default: text)")
    validate.add_argument("--defaults", help="defaults file (default: _defaults.yaml beside each spec)")
    validate.add_argument("--no-imports", action="store_true",
                          help="do not import custom steps' code (default: import it, as a parse would)")
    validate.set_defaults(handler=run_validate)

    dags = sub.add_parser("dags", help="list the DAG ids the specs produce",
                          description="The DAG ids the specs make (without live data), one per line.")
    dags.add_argument("paths", nargs="*", help="spec files or folders (default: $DAG_FACTORY_SPECS, else specs/)")
    dags.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    dags.set_defaults(handler=run_dags)


def _paths(given: list[str]) -> list[str]:
    paths = given or [str(cli_specs_dir())]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    return paths


def run_validate(args: argparse.Namespace) -> int:
    from dag_factory.specs import format_errors, load_specs
    from dag_factory.specs.loader import DEFAULTS_FILE

    result = load_specs(_paths(args.paths), check_imports=not args.no_imports, defaults_path=args.defaults)
    if args.format == "json":
        print(format_errors(result.errors, "json"))
    elif result.errors:
        print(format_errors(result.errors, args.format))
    if args.format == "text":
        status = "ok" if result.ok else f"{len(result.errors)} error(s) in {len(result.invalid_files)} file(s)"
        specs = [f for f in result.files if Path(f).name != DEFAULTS_FILE]
        defaults = " (+ defaults)" if len(specs) < len(result.files) else ""
        print(f"{len(specs)} spec file(s){defaults}, {len(result.specs)} valid: {status}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_INVALID


def run_dags(args: argparse.Namespace) -> int:
    from dag_factory.specs import format_errors, load_specs

    result = load_specs(_paths(args.paths), check_imports=False)
    rows = [
        {"model": s.name, "dag_id": s.dag_id(kind), "kind": kind, "source": s.source}
        for s in result.specs if not s.template for kind in s.kinds
    ]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['dag_id']:<48} {row['kind']:<11} {row['source']}")
    if result.errors:
        print(format_errors(result.errors), file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_INVALID
