"""`dag-factory` command line: validate specs for CI, list DAGs, run the reference backend, demo."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 on usage errors; keep it explicit
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dag-factory", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    validate = sub.add_parser("validate", help="validate spec files (exit 0 valid, 1 invalid, 2 usage)")
    validate.add_argument("paths", nargs="*", default=["specs"], help="spec files or folders (default: specs/)")
    validate.add_argument("--format", choices=("text", "json", "github"), default="text")
    validate.add_argument("--defaults", help="defaults file (default: _defaults.yaml beside each spec)")
    validate.add_argument("--no-imports", action="store_true", help="skip importing custom steps' code")

    dags = sub.add_parser("dags", help="list the DAG ids the specs produce")
    dags.add_argument("paths", nargs="*", default=["specs"])
    dags.add_argument("--format", choices=("text", "json"), default="text")

    sync = sub.add_parser("sync", help="run one backend sync now (same code as the sync DAG) and print what changed")
    sync.add_argument("--conn-id", default="model_backend", help="Airflow connection of the backend")

    status = sub.add_parser("status", help="each model: spec, live status, version, data age, DAG ids, problems")
    status.add_argument("--specs", default=None, help="specs folder (default: $DAG_FACTORY_SPECS or specs/)")
    status.add_argument("--format", choices=("text", "json"), default="text")

    backend = sub.add_parser("backend", help="run the reference model backend (for development and tests)")
    backend.add_argument("--host", default="127.0.0.1")
    backend.add_argument("--port", type=int, default=8800)
    backend.add_argument("--db", default=".dag_factory_backend.sqlite3", help="SQLite file for the backend's state")
    backend.add_argument("--token", default="dev-token")
    backend.add_argument("--job-delay", type=float, default=2.0, help="seconds a training run or deployment takes")
    backend.add_argument("--specs", default="specs", help="seed one live model per spec in this folder")

    demo = sub.add_parser("demo", help="run one model's DAGs end to end against the reference backend "
                                       "(exit 0 all runs succeeded, 1 not, 2 usage)")
    demo.add_argument("--model", default="churn_predictor", help="model to run (default: churn_predictor)")
    demo.add_argument("--home", help="Airflow home to use and keep (default: a temporary one, removed)")
    demo.add_argument("--keep", action="store_true", help="keep the temporary Airflow home and its log")
    entry = sub.add_parser("entry-files", help="split the fleet across K entry files parsed in parallel "
                                               "(same specs, same DAG ids); K=1 goes back to one file")
    entry.add_argument("count", type=int, help="number of entry files K (1: dags/model_dags.py)")
    entry.add_argument("--dags", default="dags", help="the DAGs folder (default: dags/)")

    up = sub.add_parser("up", help="run the reference backend and a local Airflow (api-server, scheduler, "
                                   "dag-processor, triggerer; SQLite) until Ctrl-C")
    up.add_argument("--home", default=".airflow", help="Airflow home, kept between starts (default: .airflow)")
    up.add_argument("--port", type=int, default=8080, help="Airflow UI/API port (default: 8080)")
    up.add_argument("--backend-port", type=int, default=8800, help="reference backend port (default: 8800)")
    up.add_argument("--project", default=".", help="folder holding specs/ and dags/ (default: .)")
    return parser


def _up(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dag_factory.local import run_local

    root = Path(args.project).resolve()
    if not (root / "specs").is_dir() or not (root / "dags").is_dir():
        print(f"dag-factory up: {root} has no specs/ and dags/ folders (use --project)", file=sys.stderr)
        return EXIT_USAGE
    return run_local(root=root, home=Path(args.home), port=args.port, backend_port=args.backend_port)


def _entry_files(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dag_factory.build.shards import write_entry_files

    if args.count < 1 or not Path(args.dags).is_dir():
        print("dag-factory entry-files: K must be >= 1 and --dags an existing folder", file=sys.stderr)
        return EXIT_USAGE
    written, removed = write_entry_files(Path(args.dags), args.count)
    for path in written:
        print(f"wrote   {path}")
    for path in removed:
        print(f"removed {path}")
    print(f"{args.dags}: {args.count} entry file(s)" + ("" if written or removed else " (unchanged)"))
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from dag_factory.specs import format_errors, load_specs

    missing = [p for p in args.paths if not __import__("os").path.exists(p)]
    if missing:
        print(f"dag-factory validate: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    result = load_specs(args.paths, check_imports=not args.no_imports, defaults_path=args.defaults)
    if args.format == "json":
        print(format_errors(result.errors, "json"))
    elif result.errors:
        print(format_errors(result.errors, args.format))
    if args.format == "text":
        status = "ok" if result.ok else f"{len(result.errors)} error(s) in {len(result.invalid_files)} file(s)"
        print(f"{len(result.files)} spec file(s), {len(result.specs)} valid: {status}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_INVALID


def _dags(args: argparse.Namespace) -> int:
    from dag_factory.specs import format_errors, load_specs

    result = load_specs(args.paths, check_imports=False)
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


def _backend(args: argparse.Namespace) -> int:
    from dag_factory.backend import server
    from dag_factory.specs import load_specs

    result = load_specs([args.specs], check_imports=False) if args.specs else None
    pairs = [(s.name, s.name) for s in result.specs] if result else []
    server.serve(host=args.host, port=args.port, db_path=args.db, token=args.token,
                 job_delay=args.job_delay, seed=server.seed_records(pairs))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from dag_factory.demo import run_demo

    return run_demo(model=args.model, home=args.home, keep=args.keep)


def _sync(args: argparse.Namespace) -> int:
    """Talks to the metadata DB directly (like `airflow variables`), so run it where Airflow's
    configuration points at the real database."""
    from dag_factory.backend.client import BackendClient, BackendError
    from dag_factory.live.store import db_read, db_write
    from dag_factory.live.sync import StaleLiveData, sync_once

    try:
        with BackendClient.from_connection(args.conn_id) as client:
            report = sync_once(client, db_read, db_write)
    except (BackendError, StaleLiveData, ValueError) as exc:
        print(f"dag-factory sync: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print("\n".join(report.lines()))
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from dag_factory.live.status import model_status, render_status
    from dag_factory.live.store import db_read

    rows = model_status(args.specs, db_read())
    print(json.dumps(rows, indent=2) if args.format == "json" else render_status(rows))
    return EXIT_OK if all(not r["problems"] for r in rows) else EXIT_INVALID


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"validate": _validate, "dags": _dags, "backend": _backend, "sync": _sync, "status": _status,
                "demo": _demo, "up": _up, "entry-files": _entry_files}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
