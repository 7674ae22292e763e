"""Every setting of dag_factory in one place: the `DAG_FACTORY_*` environment variables, their
defaults, and the ids several modules share (connection, Variable, sync DAG).

Read at call time, not import time, so a test or a deployment can change the environment
without re-importing anything. `dag-factory settings` prints the table below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Ids used in several places (connection, Variables, DAGs). Changing one renames it everywhere.
BACKEND_CONN_ID = "model_backend"
AIRFLOW_API_CONN_ID = "airflow_api"
LIVE_VARIABLE = "dag_factory_live_models"
OFFSETS_VARIABLE_PREFIX = "dag_factory.offsets"
SYNC_DAG_ID = "dag_factory_backend_sync"
INVALID_DAG_PREFIX = "dag_factory_invalid__"
RESERVED_PREFIX = "dag_factory_"  # model names may not start with it: the ids above live there


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable: its name without the prefix, default and meaning."""

    name: str
    default: str
    help: str

    @property
    def env(self) -> str:
        return f"DAG_FACTORY_{self.name}"

    def get(self) -> str:
        value = os.environ.get(self.env, "")
        return value if value.strip() else self.default


SPECS = Setting("SPECS", "", "the specs folder (default: specs/ beside the DAGs folder, or ./specs for the CLI)")
SCHEMAS = Setting("SCHEMAS", "", "a folder of JSON Schemas to use instead of the ones the package ships")
SYNC_INTERVAL = Setting("SYNC_INTERVAL", "5m", "how often the sync DAG polls the backend")
LIVE_TTL = Setting("LIVE_TTL", "1h", "how long stored live data counts as fresh")
MISSING_LISTINGS = Setting("MISSING_LISTINGS", "3", "complete listings a model may be missing before its DAGs go")
SYNC_PAGE_SIZE = Setting("SYNC_PAGE_SIZE", "100", "records per page of the backend's model listing")
REPARSE = Setting("REPARSE", "touch", "how a change asks for a re-parse: touch, api or off")
AIRFLOW_API_CONN = Setting("AIRFLOW_API_CONN", AIRFLOW_API_CONN_ID,
                           "Airflow connection of the api-server, for REPARSE=api")
BACKEND_DEADLINE = Setting("BACKEND_DEADLINE", "120s",
                           "overall deadline of one backend call, retries and slow bodies included "
                           "(the connection's extra 'deadline' overrides it)")
SYNC_TIMEOUT = Setting("SYNC_TIMEOUT", "4m", "execution_timeout of the sync task (keep it below SYNC_INTERVAL)")
ALLOWED_CODE = Setting("ALLOWED_CODE", "", "extra module prefixes (comma-separated) that python: and operator: "
                       "steps may use, besides dag_factory.steps and airflow.providers operators")
PARSE_WARN = Setting("PARSE_WARN", "0.5", "warn (status, Models page) when an entry file's last parse took this "
                     "fraction of [dag_processor] dag_file_processor_timeout: a parse past the timeout is killed "
                     "and every DAG of the file goes stale")
MODELS_PER_FILE = Setting("MODELS_PER_FILE", "400", "models per entry file for `dag-factory entry-files --auto`: "
                          "measured ~32 ms a model in a real dag-processor (1,000 models: 32 s on an idle machine), "
                          "so 400 is ~13 s, about a quarter of the default 50 s timeout, room for a loaded machine")
PARSE_GC = Setting("PARSE_GC", "pause-freeze", "Python's cyclic GC while an entry file builds its DAGs: pause-freeze "
                   "(paused during the build, restored after it; in the dag-processor's parse child only, the built "
                   "DAGs are then gc.freeze()d), pause (no freeze) or off")
SPEC_CACHE = Setting("SPEC_CACHE", "auto", "where parses keep what unchanged spec files parsed to, so a re-parse "
                     "skips their YAML: a folder of this user, auto ($XDG_CACHE_HOME/dag_factory or "
                     "~/.cache/dag_factory) or off")

ALL: tuple[Setting, ...] = (SPECS, SCHEMAS, SYNC_INTERVAL, LIVE_TTL, MISSING_LISTINGS, SYNC_PAGE_SIZE,
                            REPARSE, AIRFLOW_API_CONN, BACKEND_DEADLINE, SYNC_TIMEOUT, ALLOWED_CODE,
                            PARSE_WARN, MODELS_PER_FILE, PARSE_GC, SPEC_CACHE)


def number(setting: Setting, *, minimum: float = 0.0) -> float:
    """A numeric setting; a value that is not a number (or is below `minimum`) falls back to the
    default, so a typo in an environment variable never breaks a page or the dag-processor."""
    try:
        value = float(setting.get())
    except ValueError:
        return float(setting.default)
    return value if value >= minimum and value == value else float(setting.default)


def table() -> str:
    """The settings as a plain-text table, with the value in force."""
    rows = [(s.env, s.get() or "-", s.help) for s in ALL]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{env:<{width}}  {value:<12}  {text}" for env, value, text in rows)
