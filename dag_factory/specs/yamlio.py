"""Safe, bounded YAML reading that can say where in the file a value came from.

Specs are plain data: no Python tags, no duplicate keys, no alias bombs, no huge files.
A file's size is checked before it is read and at most MAX_FILE_BYTES + 1 bytes are read
(a 300 MB file read whole raised a parse's peak memory from 143 MB to 448 MB). A symlink
may only point to a regular file inside the folder that holds it (see `read_spec_file`).
Parsing uses libyaml's C parser when present (about ten times faster on many files);
node positions are only computed when an error needs a location.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dag_factory.specs.errors import PathPart

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a spec is a page of YAML, not a data set.
MAX_NODES = 50_000  # values after alias expansion; a billion-laughs file stops here.

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class YamlProblem(Exception):
    """A file that is not usable YAML data; carries the 1-based position when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None, hint: str | None = None):
        super().__init__(message)
        self.message, self.line, self.column, self.hint = message, line, column, hint


class _SpecLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that rejects duplicate keys and keeps dates as strings."""

    # Dates stay strings: the schema describes them as "YYYY-MM-DD" text, and the
    # builder turns them into datetimes itself.
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value != "<<":
                first = seen.setdefault(key_node.value, key_node)
                if first is not key_node:
                    mark = key_node.start_mark
                    raise YamlProblem(
                        f"duplicate key '{key_node.value}' (first defined on line {first.start_mark.line + 1})",
                        mark.line + 1, mark.column + 1,
                        hint="YAML keeps only the last value; remove or rename one of them",
                    )
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed file: its data, and its text for locating values on demand."""

    data: Any
    text: str

    def locate(self, path: tuple[PathPart, ...], *, key: bool = False) -> tuple[int, int] | None:
        """1-based (line, column) of the value at `path`, or of its key when `key` is true.

        A path that does not exist (a missing key) points at the deepest existing parent.
        """
        try:
            node = yaml.compose(self.text, Loader=_SpecLoader)
        except (yaml.YAMLError, YamlProblem):
            return None
        mark = node.start_mark if node is not None else None
        for part in path:
            child = _child(node, part)
            if child is None:
                break
            key_node, node = child
            mark = key_node.start_mark if key and key_node is not None else node.start_mark
        return (mark.line + 1, mark.column + 1) if mark is not None else None


def _child(node: Node | None, part: PathPart) -> tuple[Node | None, Node] | None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == str(part):
                return key_node, value_node
    elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def _too_big(size: int, more: bool = False) -> YamlProblem:
    return YamlProblem(
        f"file is {'more than ' if more else ''}{size / 1e6:.1f} MB; "
        f"a spec may be at most {MAX_FILE_BYTES // 1024} KiB",
        hint="a spec describes a model; keep data sets and large lists in the backend",
    )


def read_spec_file(path: Path) -> bytes:
    """A spec file's bytes, refusing before reading what cannot be a spec.

    - a symlink must resolve to a file inside the folder that holds the link (checkouts and
      ConfigMap mounts link within the folder; a link elsewhere would let a spec PR read any
      file the dag-processor can, and show parts of it in error messages);
    - the file must be a regular file (a FIFO or a device would block or never end);
    - its size is checked on the opened file (no race with a swap after the check), and at
      most MAX_FILE_BYTES + 1 bytes are read.
    Raises YamlProblem for those, OSError when the file cannot be opened.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    target = None
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):  # a loop of links, or a dangling one
            raise YamlProblem("the symlink cannot be resolved (a loop, or its target is gone)",
                              hint="link to a file in the folder") from None
        if not target.is_relative_to(path.parent.resolve()):
            # the target's path stays out of the message: it would show in the invalid-spec DAG
            raise YamlProblem("a symlink in the specs folder must point to a file inside it; this one points "
                              "outside", hint="copy the file into the specs folder, or link to a file there")
    else:
        flags |= getattr(os, "O_NOFOLLOW", 0)  # swapped for a link after the check: refused, not followed
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if target is not None and not os.path.samestat(info, os.stat(target)):
            raise YamlProblem("the file changed while it was read", hint="validate again")
        if not stat.S_ISREG(info.st_mode):
            raise YamlProblem("not a regular file", hint="a spec is a plain YAML file")
        if info.st_size > MAX_FILE_BYTES:
            raise _too_big(info.st_size)
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:  # it grew after the check
        raise _too_big(len(raw), more=True)
    return raw


def read_yaml(raw: bytes) -> YamlDocument:
    """Parse one YAML document from bytes, or raise YamlProblem saying where and why."""
    if len(raw) > MAX_FILE_BYTES:
        raise _too_big(len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlProblem(
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}",
            line, column, hint="save the file as UTF-8",
        ) from None
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise YamlProblem("file is empty", 1, 1, hint="a spec needs at least 'model: <name>'")
    try:
        data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - _SpecLoader is a SafeLoader
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        tag = (exc.problem or "").split("tag ")[-1].strip().replace("tag:yaml.org,2002:", "!!")
        raise YamlProblem(
            f"tag {tag} is not allowed: specs hold plain data only",
            mark.line + 1 if mark else None, mark.column + 1 if mark else None,
            hint="remove the '!!' tag; custom code goes into a step's 'python' or 'operator' field",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise YamlProblem(
            f"YAML syntax error: {message}",
            mark.line + 1 if mark else None, mark.column + 1 if mark else None,
            hint="check indentation, colons and quotes around this position",
        ) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"YAML error: {exc}") from None
    except RecursionError:
        raise YamlProblem("YAML nesting is too deep", hint="a spec is a few levels deep") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise YamlProblem(f"a value YAML cannot read: {exc}", hint="a spec holds short values") from None
    if "&" in text:  # aliases need anchors; only then can sharing blow up on expansion
        _check_expanded_size(data)
    doc = YamlDocument(data, text)
    _check_plain(doc)
    return doc


_PLAIN = (str, int, float, bool, type(None))
_TAGS = {"set": "!!set", "bytes": "!!binary", "date": "!!timestamp", "datetime": "!!timestamp",
         "tuple": "!!omap or !!pairs"}
MAX_DEPTH = 64  # nesting levels; deeper data made the validators recurse past Python's limit


def _check_plain(doc: YamlDocument) -> None:
    """Refuse data that is not JSON's: `!!set`, `!!binary`, `!!timestamp` values, keys that are not
    text (`1:`, `on:`, `null:`) and nesting past MAX_DEPTH. The schema validator raised on some of
    them (`Unsupported type`, out of load_specs: one file took every DAG of the entry file down);
    non-text keys in free-form mappings (hyperparameters, kwargs) reached the task as text anyway
    (Airflow serializes `{0: 1}` as `{"0": 1}`, `on:` as `"True"`); and the spec cache keeps JSON."""
    stack: list[tuple[tuple[PathPart, ...], Any]] = [((), doc.data)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            line, column = doc.locate(path[:MAX_DEPTH]) or (None, None)
            raise YamlProblem(f"values nested more than {MAX_DEPTH} levels deep", line, column,
                              hint="a spec is a few levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    line, column = doc.locate((*path, key), key=True) or (None, None)
                    raise YamlProblem(f"a key is not text: YAML reads it as {key!r} ({type(key).__name__})",
                                      line, column, hint="quote the key ('1', 'on', 'null'): unquoted, YAML "
                                                         "reads 1, yes, on, null as numbers, booleans or nothing")
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, i), item) for i, item in enumerate(value))
        elif not isinstance(value, _PLAIN):
            kind = type(value).__name__
            line, column = doc.locate(path) or (None, None)
            raise YamlProblem(f"tag {_TAGS.get(kind, kind)} is not allowed: specs hold plain data only "
                              f"(text, numbers, booleans, lists, mappings)", line, column,
                              hint="remove the '!!' tag" + (" and quote the date" if kind.startswith("date") else ""))


def _check_expanded_size(data: Any) -> None:
    """Reject documents whose aliases expand to more than MAX_NODES values.

    Sizes are memoised per shared object, so this costs O(distinct values) even for a
    billion-laughs file, and a self-referencing alias is reported instead of looping.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        ident = id(value)
        if ident in sizes:
            return sizes[ident]
        if ident in active:
            raise YamlProblem("an alias refers to itself", hint="YAML aliases must not be recursive")
        active.add(ident)
        children = value.values() if isinstance(value, dict) else value
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                raise YamlProblem(
                    f"aliases expand to more than {MAX_NODES} values",
                    hint="this looks like an alias bomb; write the values out or use _defaults.yaml",
                )
        active.discard(ident)
        sizes[ident] = total
        return total

    size(data)
