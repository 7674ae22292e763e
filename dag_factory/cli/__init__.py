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
    "dag_factory.cli.specs",
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
    except KeyboardInterrupt:
        print(f"dag-factory {args.command}: interrupted", file=sys.stderr)
        return 130
