"""`up`, `demo` and `backend`: the development tools (dag_factory.dev), for a laptop or a test."""

from __future__ import annotations

import argparse
from pathlib import Path

from dag_factory.cli.common import EXIT_OK, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("up", help="run the reference backend and a local Airflow (api-server, scheduler, "
                                   "dag-processor, triggerer; SQLite) until Ctrl-C")
    up.add_argument("--home", default=".airflow", help="Airflow home, kept between starts (default: .airflow)")
    up.add_argument("--port", type=int, default=8080, help="Airflow UI/API port (default: 8080)")
    up.add_argument("--backend-port", type=int, default=8800, help="reference backend port (default: 8800)")
    up.add_argument("--project", default=".", help="folder holding specs/ and dags/ (default: .)")
    up.set_defaults(handler=run_up)

    demo = sub.add_parser("demo", help="run one model's DAGs end to end against the reference backend "
                                       "(exit 0 all runs succeeded, 1 not, 2 usage)")
    demo.add_argument("--model", default=None, help="model to run (default: the first spec in specs/)")
    demo.add_argument("--project", default=".", help="folder holding specs/ and dags/ (default: .)")
    demo.add_argument("--home", help="Airflow home to use and keep (default: a temporary one, removed)")
    demo.add_argument("--keep", action="store_true", help="keep the temporary Airflow home and its log (default: no)")
    demo.set_defaults(handler=run_demo)

    backend = sub.add_parser("backend", help="run the reference model backend (for development and tests)")
    backend.add_argument("--host", default="127.0.0.1", help="bind address, loopback only (default: 127.0.0.1)")
    backend.add_argument("--port", type=int, default=8800, help="port (default: 8800)")
    backend.add_argument("--db", default=".dag_factory_backend.sqlite3",
                         help="SQLite file for the backend's state (default: .dag_factory_backend.sqlite3)")
    backend.add_argument("--token", default="dev-token",
                         help="bearer token (default: $DAG_FACTORY_BACKEND_TOKEN, else dev-token)")
    backend.add_argument("--job-delay", type=float, default=2.0,
                         help="seconds a training run or deployment takes (default: 2)")
    backend.add_argument("--specs", default="specs", help="seed one live model per spec in this folder (default: specs/)")
    backend.set_defaults(handler=run_backend)


def _project(folder: str) -> Path:
    root = Path(folder).resolve()
    if not (root / "specs").is_dir() or not (root / "dags").is_dir():
        raise UsageError(f"{root} has no specs/ and dags/ folders (run `dag-factory init` there, or pass --project)")
    return root


def run_up(args: argparse.Namespace) -> int:
    from dag_factory.dev.local import run_local

    return run_local(root=_project(args.project), home=Path(args.home), port=args.port,
                     backend_port=args.backend_port)


def run_demo(args: argparse.Namespace) -> int:
    from dag_factory.dev.demo import run_demo as demo

    return demo(model=args.model, home=args.home, keep=args.keep, project=_project(args.project))


def run_backend(args: argparse.Namespace) -> int:
    import os

    from dag_factory.dev.backend import server
    from dag_factory.dev.backend.seed import seed_for
    from dag_factory.specs import load_specs

    specs = [s for s in load_specs([args.specs], check_imports=False).specs if not s.template] \
        if args.specs and Path(args.specs).is_dir() else []
    token = os.environ.get("DAG_FACTORY_BACKEND_TOKEN") or args.token
    server.serve(host=args.host, port=args.port, db_path=args.db, token=token,
                 job_delay=args.job_delay, seed=seed_for(specs))
    return EXIT_OK
