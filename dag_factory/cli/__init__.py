"""`dag-factory`: validate specs for CI, plan and inspect the DAGs they make, keep live data in
step, and (with the development tools) run a local stack.

Each command lives in a module of this package with a `register(subparsers)` function; a
command imports what it needs only when it runs, so `dag-factory validate` starts without
importing Airflow. A user's mistake ends in one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from dag_factory.cli.common import EXIT_USAGE, Parser, UsageError

# One module per group of commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "dag_factory.cli.project",
    "dag_factory.cli.specs",
    "dag_factory.cli.plan",
    "dag_factory.cli.live",
    "dag_factory.cli.layout",
    "dag_factory.cli.dev",
)


def build_parser() -> argparse.ArgumentParser:
    from dag_factory import __version__

    parser = Parser(prog="dag-factory", description=__doc__.split("\n\n")[0],
                    epilog="Settings come from DAG_FACTORY_* environment variables: `dag-factory settings`.")
    parser.add_argument("--version", action="version", version=f"dag-factory {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        print(f"dag-factory {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - only the metadata DB's "not set up" becomes a usage error
        if not _is_missing_metadata_db(exc):
            raise
        print(f"dag-factory {args.command}: Airflow's metadata database is not set up here ({_first_line(exc)}); "
              "run it where AIRFLOW_HOME / AIRFLOW__DATABASE__SQL_ALCHEMY_CONN point at your Airflow's database, "
              "or run `airflow db migrate` first", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"dag-factory {args.command}: interrupted", file=sys.stderr)
        return 130


def _is_missing_metadata_db(exc: BaseException) -> bool:
    """SQLAlchemy's "no such table" / "relation does not exist": Airflow's DB was never migrated."""
    name = type(exc).__name__
    text = str(exc)
    return name in ("OperationalError", "ProgrammingError") and (
        "no such table" in text or "does not exist" in text or "could not connect" in text)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
