"""load_specs(): files -> YAML -> schema -> defaults -> rules -> ModelSpec, collecting every error."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from dag_factory.kinds import SECTIONS
from dag_factory.specs import rules, schema
from dag_factory.specs.errors import SpecError, sort_errors
from dag_factory.specs.model import ModelSpec, build_model_spec
from dag_factory.specs.yamlio import YamlDocument, YamlProblem, read_spec_file, read_yaml

if TYPE_CHECKING:
    from dag_factory.specs.cache import SpecCache

DEFAULTS_FILE = "_defaults.yaml"
SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadResult:
    """Valid specs and every error found; one bad file never hides the others."""

    specs: tuple[ModelSpec, ...]
    errors: tuple[SpecError, ...]
    files: tuple[str, ...] = ()
    invalid_files: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors

    def by_name(self) -> dict[str, ModelSpec]:
        return {s.name: s for s in self.specs}

    def relative_to(self, base: str | os.PathLike) -> LoadResult:
        """Files named as `specs/x.yaml` (relative to `base`), the same on every machine that
        parses them and whether or not another spec is invalid: a path in one DAG must not depend
        on the state of other files (that re-versioned the whole fleet each time one spec broke)."""
        # abspath, not resolve(): a symlinked spec keeps its own name (a Kubernetes ConfigMap
        # links x.yaml -> ..data/x.yaml, and its timestamped target changes with every update)
        root = Path(os.path.abspath(base))

        def rel(file: str) -> str:
            try:
                return str(Path(os.path.abspath(file)).relative_to(root))
            except ValueError:
                return file

        errors = tuple(replace(e, file=rel(e.file)) for e in self.errors)
        specs = tuple(replace(s, source=rel(s.source)) for s in self.specs)
        return replace(self, specs=specs, errors=errors, files=tuple(rel(f) for f in self.files),
                       invalid_files=tuple(sorted({e.file for e in errors})))


def discover(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Spec files under the given files and folders; names starting with _ or . are not specs."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                p for p in sorted(path.iterdir())
                if p.suffix in SPEC_SUFFIXES and not p.name.startswith(("_", ".")) and p.is_file()
            )
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def merge_defaults(defaults: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Spec values win; mappings merge key by key; lists are replaced; a defaults section
    only applies when the spec has that section (no streaming section, no streaming DAG)."""
    merged = dict(spec)
    for key, value in defaults.items():
        if key in SECTIONS and key not in spec:
            continue
        merged[key] = _deep_merge(value, spec[key]) if key in spec else value
    return merged


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _deep_merge(base[key], value) if key in base else value
        return out
    return override


class _Collector:
    def __init__(self) -> None:
        self.errors: list[SpecError] = []

    def problem(self, file: str, doc: YamlDocument | None, p: schema.Problem, code: str) -> None:
        line, column = (doc.locate(p.path, key=p.at_key) or (None, None)) if doc else (None, None)
        self.errors.append(SpecError(file, p.message, line, column, p.path, p.hint, code))

    def yaml(self, file: str, exc: YamlProblem) -> None:
        self.errors.append(SpecError(file, exc.message, exc.line, exc.column, (), exc.hint, "yaml"))


def _read(path: Path, out: _Collector, cache: SpecCache | None = None) -> YamlDocument | None:
    file = str(path)
    try:
        raw = read_spec_file(path)
    except OSError as exc:
        out.errors.append(SpecError(file, f"cannot read file: {exc.strerror}", code="io"))
        return None
    except YamlProblem as exc:
        out.yaml(file, exc)
        return None
    doc = cache.document(raw) if cache is not None else None
    if doc is None:
        try:
            doc = read_yaml(raw)
        except YamlProblem as exc:
            out.yaml(file, exc)
            return None
        if cache is not None:
            cache.remember(raw, doc)
    if not isinstance(doc.data, dict):
        found = type(doc.data).__name__ if doc.data is not None else "nothing"
        out.errors.append(SpecError(
            file, f"the top level must be a mapping of keys (model:, training:, ...), found {found}",
            1, 1, (), "start the file with 'model: <name>'", "schema"))
        return None
    return doc


def _load_defaults(path: Path, out: _Collector, cache: SpecCache | None) -> tuple[dict | None, bool]:
    """(defaults, ok): a missing file is fine; an invalid one makes its specs invalid."""
    if not path.is_file():
        return {}, True
    doc = _read(path, out, cache)
    if doc is None:
        return None, False
    problems = schema.check(doc.data, schema.DEFAULTS_SCHEMA) or list(rules.check_values(doc.data))
    for p in problems:
        out.problem(str(path), doc, p, "defaults")
    return (doc.data, not problems)


def load_specs(
    paths: Sequence[str | os.PathLike] = ("specs",),
    *,
    check_imports: bool = True,
    defaults_path: str | os.PathLike | None = None,
    cache: SpecCache | None = None,
) -> LoadResult:
    """Load and validate every spec under `paths`.

    `check_imports` imports custom steps' modules: right for CI and the CLI; the DAG entry
    file turns it off so a parse never runs user code it does not need. `cache`: what unchanged
    files parsed to (the entry file's; see dag_factory.specs.cache), saved at the end.
    """
    out = _Collector()
    defaults_cache: dict[Path, tuple[dict | None, bool]] = {}
    candidates: list[tuple[ModelSpec, YamlDocument]] = []
    files = discover(paths)
    for path in files:
        file = str(path)
        if path.name == DEFAULTS_FILE:
            defaults_cache.setdefault(path, _load_defaults(path, out, cache))
            continue
        defaults_file = Path(defaults_path) if defaults_path else path.parent / DEFAULTS_FILE
        if defaults_file not in defaults_cache:
            defaults_cache[defaults_file] = _load_defaults(defaults_file, out, cache)
        defaults, defaults_ok = defaults_cache[defaults_file]
        doc = _read(path, out, cache)
        if doc is None:
            continue
        problems = schema.check(doc.data, schema.SPEC_SCHEMA)
        if not problems:
            problems = (list(rules.check_values(doc.data)) + list(rules.check_file_name(doc.data, path.stem))
                        + list(rules.check_reserved(doc.data)))
        if problems:
            for p in problems:
                out.problem(file, doc, p, "schema")
            continue
        if not defaults_ok:
            out.errors.append(SpecError(file, f"inherits from {defaults_file}, which is invalid", 1, 1, (),
                                        "fix the errors reported for that file", "defaults"))
            continue
        merged = merge_defaults(defaults or {}, doc.data)
        step_problems = list(rules.check_steps(merged, check_imports=check_imports))
        for p in step_problems:
            out.problem(file, doc, p, "steps")
        if step_problems:
            continue
        try:
            candidates.append((build_model_spec(merged, file), doc))
        except ValueError as exc:  # values the schema allowed but a type refused
            out.errors.append(SpecError(file, str(exc), 1, 1, (), None, "schema"))
    if cache is not None:
        cache.save()
    specs = _unique(candidates, out)
    errors = tuple(sort_errors(out.errors))
    invalid = tuple(sorted({e.file for e in errors}))
    return LoadResult(tuple(sorted(specs, key=lambda s: s.name)), errors, tuple(map(str, files)), invalid)


def _unique(candidates: list[tuple[ModelSpec, YamlDocument]], out: _Collector) -> list[ModelSpec]:
    """Drop every spec whose DAG ids clash with another file's: neither wins silently."""
    owners: dict[str, list[tuple[ModelSpec, YamlDocument]]] = {}
    for spec, doc in candidates:
        for dag_id in {spec.name} | {spec.dag_id(k) for k in spec.kinds}:
            owners.setdefault(dag_id, []).append((spec, doc))
    clashing: set[str] = set()
    for dag_id, group in owners.items():
        if len(group) < 2:
            continue
        for spec, doc in group:
            others = ", ".join(o.source for o, _ in group if o is not spec)
            what = f"model '{dag_id}'" if dag_id == spec.name else f"DAG id '{dag_id}'"
            if spec.source in clashing:
                continue
            clashing.add(spec.source)
            out.problem(spec.source, doc, schema.Problem(("model",), f"{what} is also defined in {others}",
                                                         "model names must be unique across all specs"), "duplicate")
    return [spec for spec, _ in candidates if spec.source not in clashing]
