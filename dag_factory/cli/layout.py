"""`entry-files`: split the fleet across K entry files parsed in parallel."""

from __future__ import annotations

import argparse
from pathlib import Path

from dag_factory.cli.common import EXIT_OK, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    entry = sub.add_parser("entry-files", help="split the fleet across K entry files parsed in parallel "
                                               "(same specs, same DAG ids); K=1 goes back to one file")
    entry.add_argument("count", type=int, help="number of entry files K (1: dags/model_dags.py)")
    entry.add_argument("--dags", default="dags", help="the DAGs folder (default: dags/)")
    entry.set_defaults(handler=run_entry_files)


def run_entry_files(args: argparse.Namespace) -> int:
    from dag_factory.layout import write_entry_files

    if args.count < 1:
        raise UsageError(f"K must be >= 1, not {args.count}")
    if not Path(args.dags).is_dir():
        raise UsageError(f"--dags {args.dags} is not a folder")
    written, removed = write_entry_files(Path(args.dags), args.count)
    for path in written:
        print(f"wrote   {path}")
    for path in removed:
        print(f"removed {path}")
    print(f"{args.dags}: {args.count} entry file(s)" + ("" if written or removed else " (unchanged)"))
    return EXIT_OK
