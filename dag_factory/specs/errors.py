"""Spec errors as data: one shape for people, JSON for CI, and GitHub annotations."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Iterable

PathPart = str | int


@dataclass(frozen=True, slots=True)
class SpecError:
    """One problem in one file, located well enough for an editor to jump to it."""

    file: str
    message: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    path: tuple[PathPart, ...] = ()
    hint: str | None = None
    code: str = "invalid"

    @property
    def dotted_path(self) -> str:
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out

    @property
    def location(self) -> str:
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.column or 1}"

    def __str__(self) -> str:
        where = f"{self.dotted_path}: " if self.path else ""
        hint = f" — {self.hint}" if self.hint else ""
        return f"{self.location}: {where}{self.message}{hint}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["path"] = list(self.path)
        return out

    def to_github(self) -> str:
        """A GitHub Actions workflow command that annotates the line in the PR diff."""
        props = [f"file={self.file}"]
        if self.line is not None:
            props += [f"line={self.line}", f"col={self.column or 1}"]
        props.append(f"title=dag-factory {self.code}")
        text = str(self).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return f"::error {','.join(props)}::{text}"


def sort_errors(errors: Iterable[SpecError]) -> list[SpecError]:
    return sorted(errors, key=lambda e: (e.file, e.line or 0, e.column or 0, e.message))


def format_errors(errors: Iterable[SpecError], fmt: str = "text") -> str:
    errors = sort_errors(errors)
    if fmt == "json":
        return json.dumps([e.to_dict() for e in errors], indent=2)
    if fmt == "github":
        return "\n".join(e.to_github() for e in errors)
    return "\n".join(str(e) for e in errors)
