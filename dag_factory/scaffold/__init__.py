"""`dag-factory init`: the files of a team's Airflow project, planned, then written.

`project_files()` is the plan: each file's path in the project and its text, read from the
templates that ship in this package (`project-template/`, via importlib.resources), so an installed
dag-factory-ml scaffolds without its source checkout. `write_project()` writes the plan and never
replaces a file that differs unless forced, so running `init` again is safe.

(A package rather than `scaffold.py`: the templates live in its folder; a module and a folder of
the same name side by side would be ambiguous.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from dag_factory import __version__
from dag_factory.layout import entry_file_name, entry_file_text, entry_files

TEMPLATE_FOLDER = "project-template"
# Template (path under project-template/) -> path in the project. Dotfiles are stored without their dot
# (package-data globs skip hidden files); the folder's name is not a Python identifier, so setuptools
# treats it as data, not as a package it should warn about.
TEMPLATES: dict[str, str] = {
    "dags/backend_sync.py": "dags/backend_sync.py",
    "specs/_defaults.yaml": "specs/_defaults.yaml",
    "specs/example_model.yaml": "specs/example_model.yaml",
    "tests/test_dag_integrity.py": "tests/test_dag_integrity.py",
    "pre-commit-config.yaml": ".pre-commit-config.yaml",
    "github/workflows/dag-factory.yml": ".github/workflows/dag-factory.yml",
    "gitignore": ".gitignore",
    "README.md": "README.md",
}
EXAMPLE_SPEC = "specs/example_model.yaml"

Action = Literal["wrote", "overwrote", "unchanged", "kept"]


@dataclass(frozen=True, slots=True)
class ProjectFile:
    path: str  # relative to the project folder, with /
    text: str


@dataclass(frozen=True, slots=True)
class Outcome:
    path: str
    action: Action
    note: str = ""

    def line(self) -> str:
        return f"{self.action:<9} {self.path}" + (f"  ({self.note})" if self.note else "")


def template_text(name: str) -> str:
    """A template's text, from the installed package (no source checkout needed)."""
    return (resources.files(__name__) / TEMPLATE_FOLDER / name).read_text(encoding="utf-8")


def requirements_text() -> str:
    return ("# What the Airflow image (and CI) installs. dag-factory-ml brings the Airflow packages it needs\n"
            "# (apache-airflow 3.3); pin Airflow as your image does, e.g. with Airflow's constraints file.\n"
            f"dag-factory-ml=={__version__}\n")


def project_files() -> list[ProjectFile]:
    """Every file `dag-factory init` makes, in the order it reports them."""
    entry = entry_file_name(1, 1)
    files = [ProjectFile(f"dags/{entry}", entry_file_text(1, 1))]
    files += [ProjectFile(target, template_text(source)) for source, target in TEMPLATES.items()]
    files.append(ProjectFile("requirements.txt", requirements_text()))
    return files


def plan_outcome(root: Path, file: ProjectFile, force: bool) -> Outcome:
    """What writing `file` into `root` would do (reads, never writes)."""
    path = root / file.path
    if file.path.startswith("dags/") and Path(file.path).name == entry_file_name(1, 1) and not path.exists():
        split = [p.name for p in entry_files(path.parent)] if path.parent.is_dir() else []
        if split:  # the fleet is split across K entry files: a whole-fleet file would duplicate every DAG
            return Outcome(file.path, "kept", f"dags/ has {', '.join(split)}; `dag-factory entry-files 1` goes back")
    if not path.exists():
        return Outcome(file.path, "wrote")
    if path.is_file() and path.read_text(encoding="utf-8") == file.text:
        return Outcome(file.path, "unchanged")
    if force and path.is_file():
        return Outcome(file.path, "overwrote")
    return Outcome(file.path, "kept", "exists and differs; --force replaces it" if path.is_file() else "not a file")


def write_file(path: Path, text: str) -> None:
    """Write through a temporary file, so a file is never left half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_project(root: Path, *, force: bool = False, files: list[ProjectFile] | None = None) -> list[Outcome]:
    """Scaffold `root` (created if missing): write each planned file that is missing, or that
    differs when `force`; report what happened to every file."""
    root = Path(root)
    outcomes = []
    for file in project_files() if files is None else files:
        outcome = plan_outcome(root, file, force)
        if outcome.action in ("wrote", "overwrote"):
            write_file(root / file.path, file.text)
        outcomes.append(outcome)
    return outcomes
