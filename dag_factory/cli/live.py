"""`sync`, `status` and `settings`: live data and the state of the fleet, next to Airflow."""

from __future__ import annotations

import argparse
import json

from dag_factory import settings
from dag_factory.cli.common import EXIT_INVALID, EXIT_OK, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    sync = sub.add_parser("sync", help="run one backend sync now (the sync DAG's code) and print what changed",
                          description="Poll the model backend once and update the live-data Variable "
                                      f"{settings.LIVE_VARIABLE}. Run it where Airflow's configuration points "
                                      "at the metadata database (like `airflow variables`).")
    sync.add_argument("--conn-id", default=settings.BACKEND_CONN_ID,
                      help=f"Airflow connection of the model backend (default: {settings.BACKEND_CONN_ID})")
    sync.set_defaults(handler=run_sync)

    status = sub.add_parser("status", help="each model: spec, live status, version, data age, DAG ids, problems")
    status.add_argument("--specs", default=None, help="specs folder (default: $DAG_FACTORY_SPECS, else specs/)")
    status.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    status.set_defaults(handler=run_status)

    shown = sub.add_parser("settings", help="the DAG_FACTORY_* environment variables, defaults and values")
    shown.set_defaults(handler=lambda args: print(settings.table()) or EXIT_OK)


def _connection_missing(conn_id: str) -> bool:
    from airflow.sdk.exceptions import AirflowRuntimeError

    try:
        from airflow.models.connection import Connection

        Connection.get_connection_from_secrets(conn_id)
    except (AirflowRuntimeError, LookupError, ValueError):
        return True
    except Exception as exc:  # noqa: BLE001 - e.g. AirflowNotFoundException, an uninitialised DB
        return "isn't defined" in str(exc) or "not found" in str(exc).lower() or "no such table" in str(exc)
    return False


def run_sync(args: argparse.Namespace) -> int:
    import sys

    from dag_factory.client import BackendClient, BackendError
    from dag_factory.live.store import db_read, db_write
    from dag_factory.live.sync import StaleLiveData, sync_once

    if _connection_missing(args.conn_id):
        raise UsageError(f"no Airflow connection '{args.conn_id}': create it (airflow connections add "
                         f"{args.conn_id} --conn-uri http://:TOKEN@HOST:PORT) or set "
                         f"AIRFLOW_CONN_{args.conn_id.upper()}")
    try:
        with BackendClient.from_connection(args.conn_id) as client:
            report = sync_once(client, db_read, db_write)
    except (BackendError, StaleLiveData, ValueError) as exc:
        print(f"dag-factory sync: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print("\n".join(report.lines()))
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    from dag_factory.live.facts import read_facts_from_db
    from dag_factory.live.status import render_status, status_view
    from dag_factory.live.store import db_read

    # the same rows as the Models page and its JSON endpoint (dag_factory.plugin), and each entry
    # file's last parse against the dag-processor's timeout (text only: the JSON stays the rows)
    view = status_view(args.specs, db_read(), read_facts=read_facts_from_db)
    rows = view["models"]
    print(json.dumps(rows, indent=2) if args.format == "json" else render_status(rows, view["parsing"]))
    return EXIT_OK if all(not r["problems"] for r in rows) else EXIT_INVALID
