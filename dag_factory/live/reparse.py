"""Ask Airflow to re-parse the entry files when what they build from has changed.

With a long `[dag_processor] min_file_process_interval` the dag-processor stops re-parsing an
unchanged fleet every 30 s; this is how changes still show up within seconds. The sync task
calls it after each run:

- live data changed (the snapshot Variable was rewritten): every entry file;
- a spec file (or `_defaults.yaml`, or the folder: a file added or removed) is newer than
  the entry file that builds it: that entry file.

A request can be lost: the dag-processor ignores an mtime or a parse request for a file it is
parsing at that moment (`manager.py` `prepare_file_queue`, `_start_new_processes`). So after a
change the sync asks once more, one run later, at least `confirm_after` seconds after the
change (half the sync interval): a parse running by then began after the change and reads it.
Then it stops asking until the next change.

Two ways, `$DAG_FACTORY_REPARSE`:

- ``touch`` (default): set the entry file's mtime; a dag-processor with
  `file_parsing_sort_mode = modified_time` re-parses a file whose mtime is newer than its
  last parse on its next loop. Needs the worker to share the DAGs folder with the
  dag-processor (LocalExecutor, one machine, a shared volume). The mtime is the time of the
  last request.
- ``api``: `PUT /api/v2/parseDagFile/{file_token}` on the api-server named by the Airflow
  connection `$DAG_FACTORY_AIRFLOW_API_CONN` (default ``airflow_api``: host, port, login,
  password of a user allowed to edit DAGs); for workers that do not share the DAGs folder.
  The entry file's last parse is what the API reports for its DAGs.
- ``off``: nothing; changes wait for `min_file_process_interval`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from dag_factory import settings
from dag_factory.layout import entry_files, in_shard, shard_of_file
from dag_factory.live import snapshot

log = logging.getLogger(__name__)
MODES = ("touch", "api", "off")
API_PAGE = 1000
API_TIMEOUT = 30


def mode() -> str:
    value = os.environ.get(settings.REPARSE.env, "").strip().lower()
    if not value:  # the earlier switch, still honoured
        legacy = os.environ.get("DAG_FACTORY_REPARSE_ON_CHANGE", "true").strip().lower()
        return "touch" if legacy in ("1", "true", "yes") else "off"
    if value not in MODES:
        raise ValueError(f"${settings.REPARSE.env} must be one of {', '.join(MODES)}, not {value!r}")
    return value


def newest_spec_change(specs_dir: Path, shard: tuple[int, int] | None) -> float:
    """Newest mtime among the shard's spec files, `_defaults.yaml` and the folder itself."""
    newest = 0.0
    try:
        newest = specs_dir.stat().st_mtime  # changes when a file is added, removed or renamed
        for path in specs_dir.iterdir():
            if path.suffix in (".yaml", ".yml") and (path.name.startswith("_") or in_shard(path.stem, shard)):
                newest = max(newest, path.stat().st_mtime)
    except OSError as exc:
        log.warning("could not read %s to look for spec changes: %s", specs_dir, exc)
    return newest


def local_bundle_folders(config_list: Any) -> dict[str, Path]:
    """Bundle name -> folder of every `LocalDagBundle` in a `dag_bundle_config_list` (the
    default `dags-folder` bundle reads `[core] dags_folder`). Other bundles (git, ...) are
    Airflow's own checkouts, never touched: a new version is parsed on Airflow's terms
    (docs/deploy.md, specs versioned with the DAGs)."""
    from airflow.configuration import conf

    if isinstance(config_list, str):
        config_list = json.loads(config_list)
    folders = {}
    for item in config_list or ():
        if isinstance(item, dict) and str(item.get("classpath", "")).endswith(".LocalDagBundle"):
            path = (item.get("kwargs") or {}).get("path") or conf.get("core", "dags_folder")
            folders[str(item.get("name"))] = Path(os.path.expanduser(path))
    return folders


def configured_bundle_folders() -> dict[str, Path]:
    """The local bundles of this Airflow's configuration; {} when it cannot be read."""
    try:
        from airflow.configuration import conf

        return local_bundle_folders(conf.getjson("dag_processor", "dag_bundle_config_list"))
    except Exception as exc:  # noqa: BLE001 - the sync DAG's own folder is still searched
        log.warning("could not read [dag_processor] dag_bundle_config_list: %s", exc)
        return {}


def entry_files_in(folders: Sequence[Path]) -> list[Path]:
    """Every entry file directly in `folders`, each once."""
    found: dict[Path, None] = {}
    for folder in folders:
        try:
            found.update(dict.fromkeys(entry_files(folder)))
        except OSError as exc:
            log.warning("could not list %s for entry files: %s", folder, exc)
    return list(found)


def files_to_reparse(dags_dirs: Path | Sequence[Path], specs_dir: Path, live: Mapping[str, Any] | None, *,
                     confirm_after: float, now: float | None = None,
                     last_request: Mapping[Path, float] | None = None) -> list[Path]:
    """The entry files to re-parse now. An entry file's inputs changed at `changed`: the last
    live change to its shard's DAGs, or its newest spec. Ask when nothing was asked since
    (`last < changed`), and once more when the last request was made within `confirm_after` of
    the change and that much time has passed. `live`: the live snapshot. `last_request`: entry
    file -> epoch seconds of its last parse (API mode); default: its mtime, i.e. the last touch."""
    now = time.time() if now is None else now
    folders = [dags_dirs] if isinstance(dags_dirs, Path) else list(dags_dirs)
    wanted = []
    for entry in entry_files_in(folders):
        shard = shard_of_file(entry)
        live_changed = snapshot.dag_changed_at(live, lambda spec: in_shard(spec, shard))
        changed = max(live_changed or 0.0, newest_spec_change(specs_dir, shard))
        last = entry.stat().st_mtime if last_request is None else last_request.get(entry, 0.0)
        if last < changed or (last < changed + confirm_after <= now):
            wanted.append(entry)
    return wanted


def touch(files: Iterable[Path]) -> list[str]:
    done = []
    for path in files:
        try:
            os.utime(path)
            done.append(path.name)
        except OSError as exc:
            log.warning("could not touch %s to request a re-parse: %s", path, exc)
    return done


class AirflowApi:
    """Just enough of Airflow's REST API: a JWT from /auth/token, the DAG list, parseDagFile."""

    def __init__(self, conn_id: str) -> None:
        import requests
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        scheme = conn.schema or (conn.extra_dejson or {}).get("scheme") or "http"
        self.base = f"{scheme}://{conn.host}{':%s' % conn.port if conn.port else ''}".rstrip("/")
        self.session = requests.Session()
        response = self.session.post(f"{self.base}/auth/token", timeout=API_TIMEOUT,
                                     json={"username": conn.login, "password": conn.password})
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST {self.base}/auth/token: HTTP {response.status_code} {response.text[:300]}")
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def entry_file_tokens(self, names: set[str]) -> dict[tuple[str, str], tuple[str, float]]:
        """(bundle, entry file name) -> (file token, its oldest DAG's last parse, epoch seconds)."""
        found: dict[tuple[str, str], tuple[str, float]] = {}
        offset = 0
        while True:
            response = self.session.get(f"{self.base}/api/v2/dags", timeout=API_TIMEOUT,
                                        params={"limit": API_PAGE, "offset": offset, "exclude_stale": "true"})
            response.raise_for_status()
            page = response.json()
            for dag in page["dags"]:
                name = Path(dag.get("relative_fileloc") or dag.get("fileloc") or "").name
                if name in names:
                    parsed = dag.get("last_parsed_time")
                    at = datetime.fromisoformat(parsed.replace("Z", "+00:00")).timestamp() if parsed else 0.0
                    key = (dag.get("bundle_name") or "", name)
                    token, oldest = found.get(key, (dag["file_token"], at))
                    found[key] = (token, min(oldest, at))
            offset += len(page["dags"])
            if not page["dags"] or offset >= page.get("total_entries", 0):
                return found

    def reparse(self, file_token: str) -> None:
        response = self.session.put(f"{self.base}/api/v2/parseDagFile/{file_token}", timeout=API_TIMEOUT)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"PUT parseDagFile: HTTP {response.status_code} {response.text[:300]}")


def _api_key(path: Path, bundles: Mapping[str, Path],
             tokens: Mapping[tuple[str, str], tuple[str, float]]) -> tuple[str, str] | None:
    """Which (bundle, file name) of the API an entry file is: the bundle whose folder holds
    it, else the one bundle that has a file of that name."""
    for name, folder in bundles.items():
        if path.parent == folder and (name, path.name) in tokens:
            return name, path.name
    matches = [key for key in tokens if key[1] == path.name]
    return matches[0] if len(matches) == 1 else None


def request_reparse(dags_dir: str | os.PathLike | None, specs_dir: str | os.PathLike | None,
                    live: Mapping[str, Any] | None, *, confirm_after: float) -> dict[str, Any]:
    """Re-parse the entry files (in `dags_dir` and every local bundle) that need it, the
    configured way; never raises (a missed request only means waiting for
    `min_file_process_interval`)."""
    how = "off"
    try:
        how = mode()
        if how == "off" or not dags_dir or not specs_dir:
            return {"mode": how, "files": []}
        bundles = {name: folder.resolve() for name, folder in configured_bundle_folders().items()}
        folders = list(dict.fromkeys([Path(dags_dir).resolve(), *bundles.values()]))
        specs = Path(specs_dir)
        if how == "touch":
            done = touch(files_to_reparse(folders, specs, live, confirm_after=confirm_after))
        else:
            api = AirflowApi(settings.AIRFLOW_API_CONN.get())
            entries = entry_files_in(folders)
            tokens = api.entry_file_tokens({p.name for p in entries})
            keys = {path: key for path in entries if (key := _api_key(path, bundles, tokens))}
            parsed_at = {path: tokens[key][1] for path, key in keys.items()}
            done = []
            for path in files_to_reparse(folders, specs, live, confirm_after=confirm_after, last_request=parsed_at):
                if path in keys:
                    api.reparse(tokens[keys[path]][0])
                    done.append(path.name)
        if done:
            log.info("asked the dag-processor to re-parse %s (%s)", ", ".join(done), how)
        return {"mode": how, "files": done}
    except Exception as exc:  # noqa: BLE001 - the sync itself succeeded; say why, go on
        log.warning("could not request a re-parse (%s): %s: %s", how, type(exc).__name__, exc)
        return {"mode": how, "files": [], "error": f"{type(exc).__name__}: {exc}"}
