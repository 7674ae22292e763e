"""JSON Schema validation of specs and defaults, with errors turned into SpecErrors."""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from dag_factory import settings

if TYPE_CHECKING:  # jsonschema is imported only to explain an invalid document
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SPEC_SCHEMA = "spec.schema.json"
DEFAULTS_SCHEMA = "defaults.schema.json"
LIVE_SCHEMA = "live_model.schema.json"


def read_schema(name: str) -> str:
    """A schema file's text: the copy the package ships (`dag_factory/schemas/`, identical to
    the repository's top-level `schemas/`), or $DAG_FACTORY_SCHEMAS when it is set."""
    if folder := settings.SCHEMAS.get():
        path = Path(folder) / name
        if not path.is_file():
            raise FileNotFoundError(f"dag_factory: no {name} in {folder} (${settings.SCHEMAS.env}); "
                                    f"unset it to use the schemas the package ships")
        return path.read_text(encoding="utf-8")
    return resources.files("dag_factory").joinpath("schemas", name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _document(name: str) -> Any:
    return json.loads(read_schema(name))


@lru_cache(maxsize=None)
def inlined(name: str) -> dict:
    """One schema file of schemas/ with its $refs inlined (ours are local, not recursive).

    Resolving $ref on every value was more than half of jsonschema's validation time; and
    doing it here keeps jsonschema (and `referencing`) out of a parse of valid specs.
    """
    return _inline(_document(name), name, depth=0)


def _pointer(name: str, ref: str) -> tuple[Any, str]:
    """The node a `[file]#/json/pointer` reference names, and the file it is in."""
    file, _, pointer = ref.partition("#")
    file = file or name
    node = _document(file)
    for part in filter(None, pointer.split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, file


def _inline(node: Any, name: str, depth: int) -> Any:
    if depth > 20:
        raise ValueError("schema $refs nest too deeply (recursive schemas are not inlined)")
    if isinstance(node, list):
        return [_inline(item, name, depth) for item in node]
    if not isinstance(node, dict):
        return node
    if isinstance(node.get("$ref"), str):
        resolved, file = _pointer(name, node["$ref"])
        target = _inline(resolved, file, depth + 1)
        siblings = {k: _inline(v, name, depth) for k, v in node.items() if k != "$ref"}
        merged = {**target, **siblings}  # siblings (a description) win, as in 2020-12
        if "description" in target and "description" in siblings:
            merged["$comment"] = target["description"]  # the format's own explanation, for hints
        return merged
    return {k: _inline(v, name, depth) for k, v in node.items() if k != "$defs"}


@lru_cache(maxsize=None)
def validator(name: str) -> "Draft202012Validator":
    """jsonschema's validator for one schema: it explains what is wrong, with paths."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(inlined(name))


class Problem:
    """A schema violation before it has a file location: path, message, hint, and whether
    the location is the key itself (unknown keys) rather than its value."""

    __slots__ = ("path", "message", "hint", "at_key")

    def __init__(self, path: tuple, message: str, hint: str | None = None, at_key: bool = False):
        self.path, self.message, self.hint, self.at_key = path, message, hint, at_key


@lru_cache(maxsize=None)
def _fast_is_valid(name: str) -> Callable[[Any], bool]:
    """jsonschema-rs answers "is it valid?" about 100x faster than jsonschema (1,000 specs:
    ~6 ms instead of ~600 ms); jsonschema still explains every invalid document."""
    try:
        import jsonschema_rs
    except ImportError:  # optional accelerator, like libyaml for PyYAML
        return validator(name).is_valid
    return jsonschema_rs.validator_for(inlined(name)).is_valid


def check(instance: Any, schema_name: str) -> list[Problem]:
    """All schema problems of one document, each reduced to its most useful message."""
    if _fast_is_valid(schema_name)(instance):
        return []
    v = validator(schema_name)
    problems: list[Problem] = []
    for error in v.iter_errors(instance):
        problems.extend(_explain(error))
    return problems


def _explain(error: "ValidationError") -> Iterator[Problem]:
    path = tuple(error.absolute_path)
    kind, schema, value = error.validator, error.schema, error.instance
    description = schema.get("description") if isinstance(schema, dict) else None
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(schema.get("properties", {}))
        for key in sorted(set(value) - set(allowed), key=str):
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
            yield Problem(path + (key,), f"unknown key '{key}'", hint, at_key=True)
    elif kind == "required":
        missing = [k for k in error.validator_value if k not in value]
        for key in missing:
            yield Problem(path, f"missing required key '{key}'", _property_description(schema, key))
    elif kind in ("oneOf", "anyOf"):
        branches = error.validator_value
        if all(set(b) == {"required"} for b in branches):
            names = " or ".join(f"'{b['required'][0]}'" for b in branches)
            yield Problem(path, f"needs exactly one of {names}", description)
        elif error.context:
            yield from _explain(_deepest(error.context))
        else:
            yield Problem(path, _short(error.message), description)
    elif kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        yield Problem(path, f"expected {expected}, got {_json_type(value)} {_preview(value)}", description)
    elif kind == "pattern":
        yield Problem(path, f"{_preview(value)} is not in the expected format", schema.get("$comment", description))
    elif kind == "uniqueItems":
        yield Problem(path, "contains the same item twice", description)
    elif kind == "maxItems" and isinstance(value, list):
        yield Problem(path, f"has {len(value)} items; at most {error.validator_value}", description)
    elif kind == "maxLength" and isinstance(value, str):
        yield Problem(path, f"is {len(value)} characters long; at most {error.validator_value}", description)
    elif kind == "maxProperties" and isinstance(value, dict):
        yield Problem(path, f"has {len(value)} keys; at most {error.validator_value}", description)
    else:
        yield Problem(path, _short(error.message), description)


def _deepest(errors: list["ValidationError"]) -> "ValidationError":
    """Of a oneOf's branch errors, the one that got furthest into the value."""
    from jsonschema.exceptions import best_match

    return best_match(errors, key=lambda e: (len(e.absolute_path), e.validator not in ("type", "oneOf")))


def _property_description(schema: dict, key: str) -> str | None:
    prop = schema.get("properties", {}).get(key, {})
    return prop.get("description") if isinstance(prop, dict) else None


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _preview(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
