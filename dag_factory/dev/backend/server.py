"""Run the reference model backend: ``python -m dag_factory.dev.backend.server --db FILE``
(or ``dag-factory backend``). Binds to loopback unless told otherwise."""

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from dag_factory.dev.backend.app import create_app
from dag_factory.dev.backend.state import DEFAULT_STREAM_LENGTH, TOKEN_ENV, is_loopback

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def load_seed_file(path: str) -> list[Any]:
    """A seed file is a JSON list of LiveModel records."""
    with open(path, encoding="utf-8") as handle:
        seed = json.load(handle)
    if not isinstance(seed, list):
        raise ValueError(f"{path}: the seed file must hold a JSON list of records")
    return seed


def watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    """Stop this server when the process that started it is gone (no orphans)."""

    def loop() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        log.warning("parent process %d is gone; stopping", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        os._exit(1)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dag_factory.dev.backend.server", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback unless --allow-remote)")
    parser.add_argument("--port", type=int, default=8800)
    parser.add_argument("--db", required=True, help="SQLite file holding all state")
    parser.add_argument("--token", default=None, help=f"bearer token (default: ${TOKEN_ENV}, else dev-token)")
    parser.add_argument("--job-delay", type=float, default=1.0, help="seconds until a job finishes")
    parser.add_argument("--stream-length", type=int, default=DEFAULT_STREAM_LENGTH, help="records per partition")
    parser.add_argument("--seed-file", default=None, help="JSON list of LiveModel records for a new database")
    parser.add_argument("--allow-remote", action="store_true", help="allow binding a non-loopback address")
    parser.add_argument("--exit-with-parent", type=int, default=None, metavar="PID",
                        help="stop when process PID is no longer this server's parent")
    parser.add_argument("--log-level", default="info")
    return parser


def serve(
    *,
    db_path: str,
    token: str,
    host: str = "127.0.0.1",
    port: int = 8800,
    job_delay: float = 1.0,
    seed: list[dict] | None = None,
    stream_length: int = DEFAULT_STREAM_LENGTH,
    allow_remote: bool = False,
    log_level: str = "info",
    exit_with_parent: int | None = None,
) -> None:
    """Run the backend under uvicorn in this process until interrupted."""
    import uvicorn

    if not is_loopback(host) and not allow_remote:
        raise ValueError(f"refusing to bind {host}: not a loopback address (pass allow_remote=True)")
    app = create_app(db_path, token, job_delay=job_delay, seed=seed, stream_length=stream_length)
    if exit_with_parent is not None:
        watch_parent(exit_with_parent)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=3)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: parse flags, then :func:`serve`."""
    args = build_parser().parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        print(f"refusing to bind {args.host}: not a loopback address (use --allow-remote)", file=sys.stderr)
        return 2
    serve(
        db_path=args.db,
        token=args.token or os.environ.get(TOKEN_ENV) or "dev-token",
        host=args.host,
        port=args.port,
        job_delay=args.job_delay,
        seed=load_seed_file(args.seed_file) if args.seed_file else None,
        stream_length=args.stream_length,
        allow_remote=args.allow_remote,
        log_level=args.log_level,
        exit_with_parent=args.exit_with_parent,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

