"""The resolved spec (defaults merged) shown to people: in each DAG's docs and on the Model tab.

`plain` turns the typed spec back into spec words (`90s`, `auc >= 0.8`), `section_doc` is the
compact block a DAG's `doc_md` carries (deterministic: sorted keys, no paths, nothing live, so
the serialized DAG stays byte-identical across parses), and `resolve_file` says which keys of
a spec file came from `_defaults.yaml`.
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

from dag_factory.specs.loader import DEFAULTS_FILE, merge_defaults
from dag_factory.specs.model import Gate, ModelSpec
from dag_factory.specs.yamlio import YamlProblem, read_spec_file


def plain(value: Any) -> Any:
    """A spec object as JSON data in spec words: durations `90s`, gates `auc >= 0.8`; empty values left out."""
    if isinstance(value, timedelta):
        return duration_text(value)
    if isinstance(value, Gate):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        return {k: v for k, v in out.items() if v not in (None, (), [], {})}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def indented_json(value: Any) -> str:
    """json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False), without json's garbage.

    json's indenting encoder is pure Python and leaves ~30 objects in reference cycles per call
    (its nested closures); a parse runs with the cyclic GC paused (builders/gc_scope), so, one call
    per DAG, they stayed in memory and slowed serialization down. This makes no cycles, and strings
    and numbers go through json's C encoder. tests/specs/test_resolved.py holds the texts equal.
    """
    return "".join(_indented_json(value, "\n", []))


def _indented_json(value: Any, newline: str, out: list[str]) -> list[str]:
    """Append the text of `value` (as indented_json writes it) to `out`."""
    if isinstance(value, dict) and value:  # dict and list, as json: it refuses other mappings
        inner, sep = newline + " ", "{"
        for key, item in sorted(value.items()):
            out += (sep, inner, _json_key(key), ": ")
            _indented_json(item, inner, out)
            sep = ","
        out += (newline, "}")
    elif isinstance(value, (list, tuple)) and value:
        inner, sep = newline + " ", "["
        for item in value:
            out += (sep, inner)
            _indented_json(item, inner, out)
            sep = ","
        out += (newline, "]")
    else:
        out.append(_encode_str(value) if isinstance(value, str) else "{}" if isinstance(value, dict)
                   else "[]" if isinstance(value, (list, tuple)) else json.dumps(value))
    return out


# json's own (C) string encoder for ensure_ascii=False; numbers, booleans and None do not depend on it.
_encode_str = json.encoder.encode_basestring


def _json_key(key: Any) -> str:
    """A key as json.dumps writes it: strings quoted, numbers, booleans and None as their JSON text."""
    if isinstance(key, str):
        return _encode_str(key)
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(json.dumps(key))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def duration_text(delta: timedelta) -> str:
    """timedelta(hours=1, minutes=30) -> '1h30m' (what parse_duration reads back)."""
    seconds = int(delta.total_seconds())
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def shown_path(source: str) -> str:
    """`specs/x.yaml` for a spec file, also when it was loaded by absolute path: the same text on
    every machine (an absolute path would change the serialized DAG with the checkout's place)."""
    path = Path(source)
    return source if not path.is_absolute() else str(Path(path.parent.name) / path.name)


def section_doc(spec: ModelSpec, kind: str) -> str:
    """The resolved `kind` section (and owner) as a collapsed JSON block for `doc_md`."""
    section = {"owner": spec.owner, kind: plain(getattr(spec, kind))}
    text = indented_json(section)
    return (f"<details><summary>Resolved spec ({kind}, defaults merged)</summary>\n\n"
            f"```json\n{text}\n```\n\n</details>")


def _origins(merged: Any, written: Any, path: tuple[str, ...]) -> list[str]:
    """Dotted keys of `merged` that `written` does not have (so they came from the defaults)."""
    if not isinstance(merged, Mapping):
        return []
    out = []
    for key, value in merged.items():
        here = (*path, str(key))
        if not isinstance(written, Mapping) or key not in written:
            out.append(".".join(here))
        elif isinstance(value, Mapping):
            out.extend(_origins(value, written[key], here))
    return out


def resolve_file(spec_file: Path, defaults_file: Path | None = None) -> dict[str, Any]:
    """{as_written (text), resolved (merged document), from_defaults (dotted keys), defaults_file}.

    For display only: an unreadable file gives its error instead of raising.
    """
    import yaml

    defaults_file = defaults_file or spec_file.parent / DEFAULTS_FILE
    out: dict[str, Any] = {"as_written": None, "resolved": None, "from_defaults": [],
                           "defaults_file": defaults_file.name if defaults_file.is_file() else None}
    try:  # through read_spec_file: bounded, regular files, symlinks only within the folder
        out["as_written"] = read_spec_file(spec_file).decode("utf-8")
        written = yaml.safe_load(out["as_written"])
        defaults = yaml.safe_load(read_spec_file(defaults_file).decode("utf-8")) if defaults_file.is_file() else {}
    except YamlProblem as exc:
        out["error"] = exc.message
        return out
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    if not isinstance(written, dict):
        return out
    merged = merge_defaults(defaults if isinstance(defaults, dict) else {}, written)
    out["resolved"] = json.loads(json.dumps(merged, default=str))
    out["from_defaults"] = _origins(merged, written, ())
    return out
