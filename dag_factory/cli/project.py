"""`init`: scaffold a team's Airflow project around dag_factory."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from dag_factory.cli.common import EXIT_OK, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    init = sub.add_parser(
        "init", help="make an Airflow project for dag_factory in DIR: dags/, specs/ with a commented example, "
                     "pre-commit, a CI workflow and a DAG integrity test (existing files are kept)",
        description="Write the files of an Airflow project that uses dag_factory: dags/ (the entry file and "
                    "the backend sync DAG), specs/ (_defaults.yaml and a commented example), "
                    "tests/test_dag_integrity.py, .pre-commit-config.yaml, .github/workflows/dag-factory.yml, "
                    "requirements.txt, README.md, .gitignore. A file that exists and differs is kept unless "
                    "--force; running it again is safe.")
    init.add_argument("dir", nargs="?", default=".", metavar="DIR",
                      help="project folder, created if missing (default: .)")
    init.add_argument("--force", action="store_true",
                      help="replace files that exist and differ from the templates (default: keep them)")
    init.set_defaults(handler=run_init)


def run_init(args: argparse.Namespace) -> int:
    from dag_factory.scaffold import EXAMPLE_SPEC, write_project

    root = Path(args.dir)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} exists and is not a folder")
    outcomes = write_project(root, force=args.force)
    for outcome in outcomes:
        print(outcome.line())
    written = sum(o.action in ("wrote", "overwrote") for o in outcomes)
    kept = sum(o.action == "kept" for o in outcomes)
    print(f"{root}: {written} file(s) written, {kept} kept, {len(outcomes) - written - kept} unchanged")
    if written:
        where = "" if root.resolve() == Path.cwd().resolve() else f"cd {shlex.quote(args.dir)} && "
        print(f"next: {where}cp {EXAMPLE_SPEC} specs/<your_model>.yaml (set `model:` to <your_model>), "
              "then `dag-factory validate` and `python -m pytest tests/`")
    return EXIT_OK
