"""Parsed spec data by the hash of the file's bytes, so a re-parse of unchanged specs skips YAML.

A dag-processor parses the same spec files again and again; PyYAML builds their data in Python
(~0.23 ms a file, about half of loading 1,000 specs). This keeps what a file's bytes parsed to, as
JSON (which Python reads in C), keyed by a hash of the bytes: an edited file has a new key, so
nothing is ever stale. Only the YAML step is skipped; the schema, the rules and the build run on
every parse as before.

Safe by construction:
- spec data is JSON's (read_yaml refuses sets, bytes, dates and keys that are not text), so JSON
  gives it back exactly; a file with an `&` anywhere (an anchor shares values) is parsed every time;
- the folder and file must belong to this user and be writable by nobody else, or they are not
  used (a cache someone else can write could change what a spec says); links are not followed;
- any problem (unreadable, corrupt, another format or reader, a full disk) means "parse the YAML":
  the cache can make a parse faster, never fail one or change its result.
One file per specs folder and entry file (shard), rewritten atomically only when its entries
change; only files named like the cache's own are ever removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import time
from pathlib import Path

import yaml

from dag_factory.settings import SPEC_CACHE
from dag_factory.specs import yamlio
from dag_factory.specs.yamlio import YamlDocument

log = logging.getLogger(__name__)


def _reader_version() -> str:
    """What a file's bytes parse to depends on PyYAML and on our reader (yamlio's checks)."""
    try:
        reader = hashlib.blake2b(Path(yamlio.__file__).read_bytes(), digest_size=8).hexdigest()
    except OSError:  # no source file (a zipped install): the cache is then never used
        return ""
    return f"dag_factory-spec-cache-1 pyyaml-{yaml.__version__} libyaml-{yaml.__with_libyaml__} reader-{reader}"


# Part of every file: another format, PyYAML or reader means the file starts afresh.
FORMAT = _reader_version()
ORPHAN_DAYS = 7  # a cache file unused this long is removed (e.g. after a re-split into K entry files)
_NAME = re.compile(r"[0-9a-f]{40}\.json")  # the cache's own files; nothing else in the folder is touched
_TMP_PREFIX, _TMP_HOURS = ".tmp-spec-cache-", 1  # a write killed half-way leaves one; removed after an hour


def cache_dir() -> Path | None:
    """DAG_FACTORY_SPEC_CACHE: a folder, `off`, or (default) $XDG_CACHE_HOME/dag_factory, ~/.cache/dag_factory."""
    value = SPEC_CACHE.get().strip()
    if value.lower() == "off" or not FORMAT:
        return None
    if value and value.lower() != "auto":
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "dag_factory"


def _key(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=20).hexdigest()


def _private(info: os.stat_result, want_dir: bool) -> bool:
    """Ours and writable by nobody else."""
    kind_ok = stat.S_ISDIR(info.st_mode) if want_dir else stat.S_ISREG(info.st_mode)
    return kind_ok and info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read_private(file: Path) -> bytes:
    """The file's bytes, if it and its folder are private (the file opened without following a link)."""
    if not _private(file.parent.lstat(), want_dir=True):
        raise PermissionError(f"{file.parent} is not a folder of this user that nobody else can write")
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not _private(os.fstat(f.fileno()), want_dir=False):
            raise PermissionError(f"{file} is not a file of this user that nobody else can write")
        return f.read()


class SpecCache:
    """What spec files' bytes parsed to. `document(raw)` before parsing, `remember` after,
    `save()` at the end of the load (writes only when the entries changed). No method raises."""

    def __init__(self, file: Path | None, entries: dict[str, str]):
        self.file = file
        self._stored = entries  # key -> the data's JSON text
        self._used: dict[str, str] = {}
        self._changed = False  # an entry added or a damaged one replaced
        self.hits = self.misses = 0

    @classmethod
    def open(cls, specs_folder: str | os.PathLike, shard: tuple[int, int] | None = None,
             folder: Path | None = None) -> SpecCache:
        """The cache of one specs folder (of the entry file of one `shard`), kept in `folder`
        (default: DAG_FACTORY_SPEC_CACHE); empty when it cannot be used."""
        try:
            folder = folder or cache_dir()
            if folder is None:
                return cls(None, {})
            part = "" if shard is None else f"{shard[0]} of {shard[1]}"
            # the path as given, not resolved: git-sync swaps a link on every commit, which would
            # start a new file each time (entries are keyed by content; any stable name will do)
            file = folder / (_key(f"{os.path.abspath(specs_folder)}\0{part}".encode()) + ".json")
        except Exception as exc:  # noqa: BLE001 - e.g. no home folder: parse without it
            log.info("dag_factory: no spec cache (%s)", exc)
            return cls(None, {})
        try:
            stored = json.loads(_read_private(file))
            entries = stored["entries"] if stored.get("format") == FORMAT else {}
            if not isinstance(entries, dict):
                entries = {}
            if time.time() - os.lstat(file).st_mtime > ORPHAN_DAYS * 86400 / 2:
                os.utime(file, follow_symlinks=False)  # in use: not an orphan for another shard's save
        except FileNotFoundError:
            entries = {}
        except PermissionError as exc:
            log.warning("dag_factory: not using the spec cache: %s", exc)
            return cls(None, {})
        except Exception as exc:  # noqa: BLE001 - corrupt, a link, another format: parse every spec
            log.info("dag_factory: spec cache %s unusable (%s); parsing every spec", file, exc)
            entries = {}
        return cls(file, entries)

    def document(self, raw: bytes) -> YamlDocument | None:
        """The parsed document for these bytes, or None (parse them)."""
        if self.file is None:
            return None
        try:
            key = _key(raw)
            text = self._stored.get(key)
            doc = None if text is None else YamlDocument(json.loads(text), raw.decode("utf-8"))  # fresh objects
        except Exception:  # noqa: BLE001 - a damaged entry: parse the YAML, and save() replaces it
            doc = None
        if doc is None:
            self.misses += 1
            return None
        self._used[key] = text
        self.hits += 1
        return doc

    def summary(self) -> str:
        """For the parse's log line: how much YAML this load skipped."""
        if self.file is None:
            return "spec cache off"
        return f"{self.hits} of {self.hits + self.misses} YAML files from the spec cache"

    def remember(self, raw: bytes, doc: YamlDocument) -> None:
        """Keep what `raw` parsed to (JSON data: read_yaml refuses anything else), unless anchors share values."""
        if self.file is None or b"&" in raw:
            return
        try:
            self._used[_key(raw)] = json.dumps(doc.data, separators=(",", ":"), ensure_ascii=False)
            self._changed = True
        except Exception:  # noqa: BLE001 - e.g. nested too deep for json: just not cached
            return

    def save(self) -> None:
        """Write the entries this load used, if they differ from the stored ones."""
        if self.file is None or not (self._changed or self._used.keys() != self._stored.keys()):
            return
        folder = self.file.parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _private(folder.lstat(), want_dir=True):
                return
            text = json.dumps({"format": FORMAT, "entries": self._used}, separators=(",", ":"))
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                os.replace(tmp, self.file)
            except BaseException:
                os.unlink(tmp)
                raise
            self._stored, self._changed = dict(self._used), False
            _remove_orphans(folder, keep=self.file)
        except Exception as exc:  # noqa: BLE001 - a full disk, a read-only folder: the next parse tries again
            log.info("dag_factory: could not write the spec cache %s (%s)", self.file, exc)


def _remove_orphans(folder: Path, keep: Path) -> None:
    """The cache's own files unused for ORPHAN_DAYS (a folder or shard no entry file parses any
    more; `open` touches a file in use) and temporary files of writes that were killed."""
    now = time.time()
    for path in folder.iterdir():
        if path == keep:
            continue
        if _NAME.fullmatch(path.name):
            age = ORPHAN_DAYS * 86400
        elif path.name.startswith(_TMP_PREFIX):
            age = _TMP_HOURS * 3600
        else:
            continue
        try:
            if now - path.lstat().st_mtime > age:
                path.unlink()
        except OSError:
            pass
