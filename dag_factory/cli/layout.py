"""`entry-files`: split the fleet across K entry files parsed in parallel; `--auto` picks K."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from dag_factory import settings
from dag_factory.cli.common import EXIT_OK, UsageError

# Measured: one file of 1,000 models parsed in 32 s by a real dag-processor (idle machine, DB write
# excluded), against the default 50 s [dag_processor] dag_file_processor_timeout.
SECONDS_PER_MODEL, DEFAULT_TIMEOUT = 0.032, 50.0


def register(sub: argparse._SubParsersAction) -> None:
    entry = sub.add_parser("entry-files", help="split the fleet across K entry files parsed in parallel "
                                               "(same specs, same DAG ids); K=1 goes back to one file; "
                                               "--auto picks K from the fleet size")
    entry.add_argument("count", type=int, nargs="?", help="number of entry files K (1: dags/model_dags.py); "
                                                          "leave it out with --auto")
    entry.add_argument("--dags", default="dags", help="the DAGs folder (default: dags/)")
    entry.add_argument("--auto", action="store_true",
                       help="K = ceil(models / $DAG_FACTORY_MODELS_PER_FILE), models = the non-template specs "
                            "(default: off, give K)")
    entry.add_argument("--measured", action="store_true",
                       help="with --auto: use the seconds per model of the last parses in Airflow's DB (run it "
                            "where Airflow's configuration points at that DB) instead of the budget (default: off)")
    entry.add_argument("--specs", default=None, help="with --auto: the specs folder (default: $DAG_FACTORY_SPECS, "
                                                     "else specs/)")
    entry.add_argument("--dry-run", action="store_true", help="print K and why, write nothing (default: off)")
    entry.set_defaults(handler=run_entry_files)


def count_models(specs_dir: Path) -> int:
    """The models the specs alone make (one per non-template spec); live models of a template
    spec build in the file its spec name hashes to, so they do not spread across files."""
    from dag_factory.live.fleet import plan_fleet
    from dag_factory.specs.loader import load_specs

    if not specs_dir.is_dir():
        raise UsageError(f"--specs {specs_dir} is not a folder")
    result = load_specs([specs_dir], check_imports=False)
    fleet, _ = plan_fleet(result.by_name(), None)
    return len(fleet)


def count_from_budget(models: int, per_file: float) -> tuple[int, str]:
    """K = ceil(models / per_file), at least 1, and the sentence that says why."""
    count = max(1, math.ceil(models / per_file))
    seconds = per_file * SECONDS_PER_MODEL
    return count, (f"{models} model(s) / {per_file:g} models per file (DAG_FACTORY_MODELS_PER_FILE; at the "
                   f"~{SECONDS_PER_MODEL * 1000:.0f} ms a model measured in a real dag-processor a full file parses "
                   f"in ~{seconds:.0f} s, {seconds / DEFAULT_TIMEOUT:.0%} of the default {DEFAULT_TIMEOUT:g} s "
                   "dag_file_processor_timeout)")


def count_from_parses(models: int, parses: Sequence[Mapping[str, Any]], timeout: float,
                      warn_fraction: float) -> tuple[int, str] | None:
    """K from the last parses: the slowest seconds per model of any entry file, times the models,
    over the target per file (half the warn line); the same K `dag-factory status` suggests.
    None when no entry file has a parse duration and models."""
    from dag_factory.live.status import slowest_per_model, suggested_count, target_seconds

    slowest = slowest_per_model(parses)
    count = suggested_count(parses, timeout, warn_fraction, models)
    if slowest is None or count is None:
        return None
    worst, per_model = slowest
    return count, (f"measured {per_model * 1000:.0f} ms a model ({worst['file']}: {worst['seconds']:.1f} s for "
                   f"{worst['models']} model(s), last parse) x {models} model(s) = {models * per_model:.1f} s; "
                   f"target {target_seconds(timeout, warn_fraction):.1f} s a file (half the {warn_fraction:.0%} "
                   f"warn line of the {timeout:g} s dag_file_processor_timeout)")


def _measured(models: int) -> tuple[int, str] | None:
    from airflow.utils.session import create_session

    from dag_factory.live.facts import entry_file_parses, parse_timeouts

    with create_session(scoped=False) as session:
        parses = entry_file_parses(session)
    return count_from_parses(models, parses, parse_timeouts()["processor"], settings.number(settings.PARSE_WARN))


def auto_count(args: argparse.Namespace) -> tuple[int, str]:
    """K for `--auto`, and why: from the budget, or (`--measured`) from the last parses."""
    from dag_factory.layout import cli_specs_dir

    models = count_models(cli_specs_dir(args.specs))
    if args.measured:
        chosen = _measured(models)
        if chosen is not None:
            return chosen
        print("no entry file's parse duration in Airflow's DB yet: using the budget")
    return count_from_budget(models, settings.number(settings.MODELS_PER_FILE, minimum=1))


def run_entry_files(args: argparse.Namespace) -> int:
    from dag_factory.layout import write_entry_files

    if args.auto == (args.count is not None):
        raise UsageError("give K or --auto (not both)" if args.auto else "give K (the number of files) or --auto")
    if args.measured and not args.auto:
        raise UsageError("--measured goes with --auto")
    if args.count is not None and args.count < 1:
        raise UsageError(f"K must be >= 1, not {args.count}")
    if not Path(args.dags).is_dir():
        raise UsageError(f"--dags {args.dags} is not a folder")
    count = args.count
    if args.auto:
        count, why = auto_count(args)
        print(f"K={count}: {why}")
    if args.dry_run:
        return EXIT_OK
    written, removed = write_entry_files(Path(args.dags), count)
    for path in written:
        print(f"wrote   {path}")
    for path in removed:
        print(f"removed {path}")
    print(f"{args.dags}: {count} entry file(s)" + ("" if written or removed else " (unchanged)"))
    return EXIT_OK
