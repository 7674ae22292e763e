"""dag_factory as a team meets it, far from this checkout: a wheel of this repository installed
with its dependencies into a fresh virtualenv outside the repository, `dag-factory init` in a new
folder, a spec of the team's own, `validate`, the generated CI workflow's steps, the generated
pre-commit hook, this repository's published hook through `pre-commit try-repo`, and the
generated DAG integrity test; then a broken spec, which each of them reports with its location.

Where the dependencies come from: pip resolves and installs them for real (nothing is linked
from this repository's .venv, so a dependency missing from setup.cfg fails here), but from a
local wheelhouse instead of the index (`PIP_NO_INDEX`, `PIP_FIND_LINKS`), as behind a company
mirror. The wheelhouse holds the versions constraints.txt pins; it is downloaded once (16 s
here) and kept in $DAG_FACTORY_TEST_CACHE (default: <tmp>/dag_factory_test_cache), keyed by the
wheel's requirements and constraints.txt. That keeps the test off the network after the first
run, and pre-commit's own install of the hook repository (`pip install .` into a new virtualenv,
on every `try-repo`: it keeps no cache between calls) takes about 20 s instead of about 50 s from
the index (measured here at a load average of about 2). The two `try-repo` calls run in the
background while the rest of the test runs; the whole test took 85-110 s on the shared machine.

The hook repository given to `try-repo` is a snapshot of this working tree (tracked and new
files, as git sees them) committed into a temporary repository: `try-repo` on a dirty checkout
would take only the tracked files, so a test run before a commit would check a different tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import yaml

from tests.support import ROOT

WHEEL_SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "dag_factory")
EXTRA_WHEELS = ("pytest", "setuptools>=68", "wheel")  # the generated CI's pytest; the hook's build backend
TIMEOUT = 600
PRE_COMMIT = [sys.executable, "-m", "pre_commit"]  # the tool, from this repository's test extra


def run(cmd: list, *, env: dict[str, str], cwd: Path, ok: bool = True, timeout: float = TIMEOUT
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], env=env, cwd=str(cwd), capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if ok:
        assert result.returncode == 0, (f"{' '.join(map(str, cmd))} exited {result.returncode}\n"
                                        f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}")
    return result


def outside_env(venv: Path | None = None, **extra: str) -> dict[str, str]:
    """This machine's environment without anything that points into the checkout, its venv, the
    test session's Airflow or pip's configuration; pip installs only from local wheels."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PRE_COMMIT_HOME")
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith(("AIRFLOW", "_AIRFLOW", "DAG_FACTORY_", "PIP_"))}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not Path(p).resolve().is_relative_to(ROOT)]
    env["PATH"] = os.pathsep.join(([str(venv / "bin")] if venv else []) + path)
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "VIRTUALENV_NO_PERIODIC_UPDATE": "1"}, **extra)
    return env


def build_wheel(tmp: Path) -> Path:
    """A wheel built from a copy of the package's sources (no build output left in the checkout)."""
    src, dist = tmp / "src", tmp / "dist"
    src.mkdir()
    for name in WHEEL_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, src],
        env=outside_env(), cwd=tmp)
    [wheel] = dist.glob("dag_factory_ml-*.whl")
    return wheel


def requirements_of(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    return sorted(line for line in text.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line)


def wheelhouse(wheel: Path) -> Path:
    """Local wheels of every dependency at constraints.txt's versions (downloaded once, then kept)."""
    key = hashlib.sha256("\n".join([*requirements_of(wheel), *EXTRA_WHEELS,
                                    (ROOT / "constraints.txt").read_text()]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("DAG_FACTORY_TEST_CACHE") or Path(tempfile.gettempdir()) / "dag_factory_test_cache")
    house = cache / f"wheelhouse-{key}"
    if house.is_dir():
        return house
    cache.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{house.name}.", dir=cache))
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_NO_INDEX",)}  # this step uses the index
    run([sys.executable, "-m", "pip", "download", "-q", "-d", partial, "-c", ROOT / "constraints.txt",
         wheel, *EXTRA_WHEELS], env=env, cwd=cache)
    for own in partial.glob("dag_factory_ml-*"):
        own.unlink()
    try:
        partial.rename(house)
    except OSError:  # another run finished it first
        shutil.rmtree(partial, ignore_errors=True)
    return house


def snapshot_repo(tmp: Path) -> Path:
    """This working tree (tracked and untracked, not ignored, files) as a one-commit repository."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    repo = tmp / "hook-repo"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "snapshot"]):
        run(cmd, env=git_env, cwd=repo)
    return repo


def location(spec: Path, key: str) -> str:
    """`specs/<file>:<line>:<column>` of `key:` in a spec file."""
    for number, line in enumerate(spec.read_text().splitlines(), start=1):
        if line.lstrip().startswith(f"{key}:"):
            return f"specs/{spec.name}:{number}:{len(line) - len(line.lstrip()) + 1}"
    raise AssertionError(f"no {key}: in {spec}")


def workflow_steps(project: Path) -> list[tuple[str, str]]:
    """(name, command) of each `run:` step of the generated GitHub workflow that runs on a push
    (steps with an `if:`, e.g. the pull-request-only plan, are left out)."""
    workflow = yaml.safe_load((project / ".github/workflows/dag-factory.yml").read_text())
    return [(s.get("name", s["run"]), s["run"]) for job in workflow["jobs"].values() for s in job["steps"]
            if "run" in s and "if" not in s]


def start(cmd: list, *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """Run in the background, in a process group of its own (output to `log`)."""
    with log.open("w") as out:
        return subprocess.Popen([str(c) for c in cmd], env=env, cwd=str(cwd), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """End a background command and whatever it started (pre-commit's pip), if still running."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_team_project_outside_the_repository(tmp_path):
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = time.monotonic() - clock
        clock = time.monotonic()

    wheel = build_wheel(tmp_path)
    house = wheelhouse(wheel)
    lap("wheel")

    # A fresh virtualenv outside the repository; `pip install dag-factory-ml`, resolved by pip.
    # (PIP_COMPILE=0: no .pyc files at install time, a third of pip's CPU; Python writes them on import.)
    venv, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    cache_home = tmp_path / "xdg-cache"  # the spec cache's default place is $XDG_CACHE_HOME/dag_factory
    env = outside_env(venv, PIP_FIND_LINKS=f"{wheel.parent} {house}", PIP_COMPILE="0",
                      GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
                      PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"), XDG_CACHE_HOME=str(cache_home))
    run([sys.executable, "-m", "venv", venv], env=env, cwd=elsewhere)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "dag-factory-ml"], env=env, cwd=elsewhere)
    where = run([python, "-c", "import dag_factory, sys, sysconfig; print(dag_factory.__file__); "
                 "print(sysconfig.get_paths()['purelib']); print('\\n'.join(sys.path))"], env=env, cwd=elsewhere)
    module, purelib, *path = where.stdout.splitlines()
    assert Path(module).is_relative_to(purelib) and Path(purelib).is_relative_to(venv), (module, purelib)
    assert not any(p and Path(p).resolve().is_relative_to(ROOT) for p in path), path
    lap("venv+install")

    # `dag-factory init`, then a model of the team's own: the example copied under a new name;
    # and a second copy of the project where that spec has a typo.
    run(["dag-factory", "init", "team-airflow"], env=env, cwd=elsewhere)
    good = elsewhere / "team-airflow"
    example = (good / "specs/example_model.yaml").read_text()
    (good / "specs/fraud_model.yaml").write_text(example.replace("model: example_model", "model: fraud_model"))
    broken = elsewhere / "team-airflow-broken"
    shutil.copytree(good, broken)
    spec = broken / "specs/fraud_model.yaml"
    spec.write_text(spec.read_text().replace("  schedule:", "  schedual:"))
    error = f"{location(spec, 'schedual')}: training.schedual: unknown key 'schedual' — did you mean 'schedule'?"
    for project in (good, broken):
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"]):
            run(cmd, env=env, cwd=project)

    # This repository's hook from another repository: `pre-commit try-repo` on both projects, in the
    # background (pip's install of the hook's virtualenv takes most of the time) while the rest runs.
    try_repo = [*PRE_COMMIT, "try-repo", snapshot_repo(tmp_path), "dag-factory-validate", "--all-files"]
    tries = {p: start(try_repo, env=env, cwd=p, log=tmp_path / f"{p.name}.try-repo.log") for p in (good, broken)}
    try:
        check_the_projects(good, broken, python, env, error)
        lap("init+validate+workflow+hooks, broken spec")
        assert not (cache_home / "dag_factory").exists()  # the DAG integrity test leaves no spec cache
        check_the_spec_cache(good, python, env, cache_home / "dag_factory")
        lap("spec cache")
        passed, failed = (tries[p].wait(timeout=TIMEOUT) for p in (good, broken))
    finally:
        for process in tries.values():
            stop(process)
    passed_out, failed_out = ((tmp_path / f"{p.name}.try-repo.log").read_text() for p in (good, broken))
    assert passed == 0 and re.search(r"validate dag_factory model specs\.+Passed", passed_out), passed_out
    assert failed == 1 and re.search(r"validate dag_factory model specs\.+Failed", failed_out), failed_out
    assert error in failed_out, failed_out
    lap("try-repo (rest)")
    print("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))


def check_the_spec_cache(project: Path, python: Path, env: dict[str, str], folder: Path) -> None:
    """Two full parses of dags/ as the dag-processor makes them (no parsing context), from the
    installed wheel: the first keeps what each YAML file parsed to in the default place, a private
    folder; the second reads every file from it, and says so in its log."""
    parse = ("import logging; from airflow.dag_processing.dagbag import DagBag; "
             "logging.getLogger('dag_factory').setLevel(logging.INFO); "
             "bag = DagBag('dags'); print('dags', len(bag.dags), 'errors', len(bag.import_errors))")
    env = {**env, "AIRFLOW_HOME": str(project.parent / "airflow-home")}
    yaml_files = len(list((project / "specs").glob("*.yaml")))
    first = run([python, "-c", parse], env=env, cwd=project)
    assert re.search(r"dags [1-9]\d* errors 0", first.stdout), first.stdout
    [cached] = folder.glob("*.json")
    assert re.fullmatch(r"[0-9a-f]{40}\.json", cached.name) and folder.stat().st_mode & 0o077 == 0, cached
    assert len(json.loads(cached.read_text())["entries"]) == yaml_files
    second = run([python, "-c", parse], env=env, cwd=project)
    assert second.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]
    log = first.stdout + first.stderr, second.stdout + second.stderr
    assert f"(0 of {yaml_files} YAML files from the spec cache)" in log[0], log[0][-3000:]
    assert f"({yaml_files} of {yaml_files} YAML files from the spec cache)" in log[1], log[1][-3000:]


def check_the_projects(good: Path, broken: Path, python: Path, env: dict[str, str], error: str) -> None:
    """validate, the CI workflow's steps, the generated hook and the DAG integrity test: on the
    good project they pass; on the broken one they fail with `error` (file:line:column)."""

    validate = run(["dag-factory", "validate"], env=env, cwd=good)
    assert "2 spec file(s), 2 valid: ok" in validate.stderr
    # The generated CI workflow, step by step (its install step installs requirements.txt: the wheel).
    steps = workflow_steps(good)
    assert [name for name, _ in steps] == \
        ["Install the project", "Validate the specs", "Parse the DAGs (DAG integrity test)"]
    for name, command in steps:
        result = run(["bash", "-e", "-c", command], env=env, cwd=good)
        if command.startswith("python -m pytest"):
            assert re.search(r"\b5 passed\b", result.stdout), result.stdout
    # The generated pre-commit hook (`repo: local`).
    local = run([*PRE_COMMIT, "run", "--all-files"], env=env, cwd=good)
    assert re.search(r"validate dag_factory model specs\.+Passed", local.stdout), local.stdout

    # The broken spec: every check fails, and says where.
    local = run([*PRE_COMMIT, "run", "--all-files"], env=env, cwd=broken, ok=False)
    assert local.returncode == 1 and error in local.stdout, local.stdout
    validate = run(["dag-factory", "validate"], env=env, cwd=broken, ok=False)
    assert validate.returncode == 1 and error in validate.stdout
    integrity = run([python, "-m", "pytest", "tests/"], env=env, cwd=broken, ok=False)
    assert integrity.returncode == 1 and "1 failed, 4 passed" in integrity.stdout, integrity.stdout
    assert "FAILED tests/test_dag_integrity.py::test_no_invalid_specs" in integrity.stdout
    assert error in integrity.stdout, integrity.stdout

