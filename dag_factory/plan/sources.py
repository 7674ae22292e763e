"""The base side's specs folder: a git revision (read with `git archive`, the work tree and the
index are never touched) or a folder, copied into a temporary folder with the same name as the
current specs folder (so error messages name the same `specs/x.yaml` on both sides)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

GIT_TIMEOUT_S = 120


class SourceError(Exception):
    """The base cannot be read (no git repository, unknown revision): a usage error."""


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise SourceError("git is not installed") from exc


def _out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode("utf-8", "replace").strip()


def _err(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


def specs_at_revision(ref: str, specs_dir: Path, dest: Path) -> Path:
    """Write the files of `specs_dir` as they are at git revision `ref` under `dest`; returns the
    folder (empty when the folder did not exist at `ref`). Raises SourceError."""
    specs_dir = specs_dir.resolve()
    probe = specs_dir if specs_dir.is_dir() else specs_dir.parent
    top = _git(probe, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise SourceError(f"{specs_dir} is not in a git repository ({_err(top)}); use --base-dir")
    root = Path(_out(top)).resolve()
    rel = specs_dir.relative_to(root).as_posix()
    commit = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if commit.returncode != 0:
        raise SourceError(f"unknown git revision '{ref}' (for a pull request: git fetch origin <branch>)")
    # the specs folder at the top of the repository: its files go under a folder of its name
    prefix = f"{specs_dir.name}/" if rel == "." else ""
    target = dest / (specs_dir.name if rel == "." else rel)
    target.mkdir(parents=True, exist_ok=True)
    listing = _git(root, "ls-tree", "--name-only", _out(commit), "--", rel)
    if listing.returncode != 0 or not _out(listing):
        return target  # the specs folder is new: every DAG is added
    archive = dest / ".base.tar"
    proc = _git(root, "archive", "--format=tar", f"--prefix={prefix}", f"--output={archive}", _out(commit), "--", rel)
    if proc.returncode != 0:
        raise SourceError(f"git archive {ref} -- {rel} failed: {_err(proc)}")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return target


def specs_from_folder(folder: Path, name: str, dest: Path) -> Path:
    """A copy of `folder` named `name` under `dest`. Raises SourceError."""
    if not folder.is_dir():
        raise SourceError(f"no such folder: {folder}")
    target = dest / name
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns(".*"))
    return target
