"""The Docker image's install, checked without a Docker engine.

The Dockerfile COPYs the sources to a build folder and RUNs scripts/install-image. Here the same
COPYs (with .dockerignore applied) go to a temporary folder, a fresh virtualenv gets what the
official image brings (Airflow at the pinned version), the same script installs into it and into
an "/opt/airflow" of its own, and Airflow's DagBag parses that dags folder with the environment the
Dockerfile sets, from a folder where the source checkout is not importable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support import REPO_SPECS, ROOT

DOCKERFILE = ROOT / "Dockerfile"
IMAGE_AIRFLOW_DIR = "/opt/airflow"
PIP_TIMEOUT = 900


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue  # Docker drops comment lines, inside a continued instruction too
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            name, _, args = full.partition(" ")
            result.append((name.upper(), args.strip()))
    return result


def pinned(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.split("==")[0].strip().lower() == name:
            return line.split("==")[1].strip()
    raise AssertionError(f"constraints.txt pins no {name}")


def image_env(steps: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, args in steps:
        if name == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {args!r}: use the KEY=value form"
                env[key] = value
    return env


def copies(steps: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context."""
    result = []
    for name, args in steps:
        if name != "COPY":
            continue
        words = shlex.split(args)
        assert not any(w.startswith("--from") for w in words), "a COPY --from: extend this test"
        paths = [w for w in words if not w.startswith("--")]
        result.append((paths[:-1], paths[-1]))
    return result


def ignore_patterns() -> list[re.Pattern[str]]:
    """.dockerignore as regexes (Docker's rules: paths from the context root, `*` stays in one
    folder, `**` crosses folders, a matched folder drops all it holds)."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), ".dockerignore exceptions (!) are not mimicked here: extend this test"
        line = line.strip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif line.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif line[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif line[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(line[i]), i + 1
        patterns.append(re.compile(regex + "(?:/.*)?"))
    return patterns


def ignored(relative: str, patterns: list[re.Pattern[str]]) -> bool:
    return any(p.fullmatch(relative) for p in patterns)


def mimic_copies(steps: list[tuple[str, str]], build_root: str, into: Path) -> None:
    """Run the Dockerfile's COPYs into `into` (standing for `build_root`): a folder source's
    contents go into the destination, a file goes into a destination that ends in /."""
    patterns = ignore_patterns()
    for sources, dest in copies(steps):
        assert dest.startswith(build_root), f"COPY to {dest}: expected under {build_root}"
        target = into / dest[len(build_root):].lstrip("/")
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file in the repo"
            assert not ignored(source, patterns), f"COPY {source}, but .dockerignore excludes it"
            if path.is_file():
                assert dest.endswith("/"), f"COPY {source} {dest}: end the destination with /"
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name)
                continue
            for file in sorted(path.rglob("*")):
                relative = file.relative_to(ROOT).as_posix()
                if file.is_file() and not ignored(relative, patterns):
                    out = target / file.relative_to(path)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, out)


def expected_dag_ids() -> set[str]:
    """Each example spec's train and deploy DAGs, and a stream DAG where it has a streaming
    section (templates give DAGs only for live models), plus the backend sync DAG."""
    ids = {"dag_factory_backend_sync"}
    for path in sorted(REPO_SPECS.glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        doc = yaml.safe_load(path.read_text())
        if doc.get("template"):
            continue
        ids |= {f"{doc['model']}__train", f"{doc['model']}__deploy"}
        if doc.get("streaming"):
            ids.add(f"{doc['model']}__stream")
    return ids


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without anything that points at the source checkout, its venv
    or the test session's Airflow (the image's own environment is added by the caller)."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_USER", "PIP_TARGET", "PIP_PREFIX")
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith(("AIRFLOW", "DAG_FACTORY_", "_AIRFLOW"))}
    env.update(extra)
    return env


def run(cmd: list[Any], *, env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], env=env, cwd=str(cwd), capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (f"{' '.join(map(str, cmd))} exited {result.returncode}\n"
                                    f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}")
    return result


PARSE = r"""
import importlib.metadata, json, sys, sysconfig
import airflow, dag_factory
from airflow.configuration import conf
from airflow.dag_processing.dagbag import DagBag

folder = conf.get("core", "dags_folder")
bag = DagBag(dag_folder=folder)  # no example DAGs: AIRFLOW__CORE__LOAD_EXAMPLES=False
print("RESULT " + json.dumps({
    "dag_factory": dag_factory.__file__,
    "purelib": sysconfig.get_paths()["purelib"],
    "airflow": airflow.__version__,
    "celery": importlib.metadata.version("celery"),
    "dags_folder": folder,
    "dag_ids": sorted(bag.dag_ids),
    "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
}))
"""


def test_dockerfile_builds_on_the_pinned_airflow_and_runs_the_install_script():
    steps = instructions(DOCKERFILE.read_text())
    airflow = pinned("apache-airflow")
    from importlib.metadata import version

    assert version("apache-airflow") == airflow, "the dev venv's Airflow is not the one constraints.txt pins"
    froms = [args for name, args in steps if name == "FROM"]
    assert len(froms) == 1 and re.fullmatch(rf"apache/airflow:{re.escape(airflow)}(-python3\.\d+)?", froms[0]), \
        f"FROM {froms}: expected apache/airflow:{airflow}[-python3.N] (the version constraints.txt pins)"
    runs = [args for name, args in steps if name == "RUN"]
    assert any(re.search(rf"scripts/install-image\s+python\s+{IMAGE_AIRFLOW_DIR}(\s|$)", r) for r in runs), runs
    users = [args for name, args in steps if name == "USER"]
    assert users and users[-1] == "airflow", "the image must end as the airflow user"
    install = next(i for i, (name, args) in enumerate(steps) if name == "RUN" and "install-image" in args)
    assert steps.index(("USER", "airflow")) < install, "install as the airflow user (pip installs into its env)"
    env = image_env(steps)
    assert env["DAG_FACTORY_SPECS"] == f"{IMAGE_AIRFLOW_DIR}/specs"
    assert "DAG_FACTORY_SCHEMAS" not in env, "the package ships its schemas"
    assert "AIRFLOW__CORE__DAGS_FOLDER" not in env, "left to Airflow/Helm (git-sync sets its own dags folder)"
    script = (ROOT / "scripts/install-image").read_text()
    assert "--no-cache-dir" in script and "-c constraints.txt" in script and "apache-airflow==${AIRFLOW_VERSION}" in script
    assert os.access(ROOT / "scripts/install-image", os.X_OK)


def test_image_install_parses_every_dag_in_a_fresh_venv(tmp_path):
    started = time.monotonic()
    steps = instructions(DOCKERFILE.read_text())
    sources = [s for s, _ in copies(steps)]
    build_root = os.path.commonpath([dest for _, dest in copies(steps)])
    build = tmp_path / "build"
    mimic_copies(steps, build_root, build)
    assert (build / "scripts/install-image").is_file(), f"no COPY of scripts/install-image: {sources}"

    opt = tmp_path / "opt" / "airflow"  # stands for /opt/airflow, the image's AIRFLOW_HOME
    image = {k: v.replace(IMAGE_AIRFLOW_DIR, str(opt)) for k, v in image_env(steps).items()}
    cwd = tmp_path / "elsewhere"  # neither the repo nor the build folder: only the venv's dag_factory imports
    cwd.mkdir()
    airflow = pinned("apache-airflow")
    env = clean_env(**{"AIRFLOW_HOME": str(opt), "AIRFLOW_VERSION": airflow, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                       **image})  # the image's own ENV wins

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], env=env, cwd=cwd, timeout=120)
    python = venv / "bin" / "python"
    # What the official image brings: Airflow with the celery, postgres and redis providers.
    run([python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt",
         f"apache-airflow[celery,postgres,redis]=={airflow}"], env=env, cwd=cwd, timeout=PIP_TIMEOUT)
    base_done = time.monotonic()

    # The Dockerfile's RUN: the same script, from the copied build folder.
    run(["bash", build / "scripts" / "install-image", python, opt], env=env, cwd=cwd, timeout=PIP_TIMEOUT)
    for folder in ("dags", "specs"):
        assert sorted(p.name for p in (opt / folder).iterdir()) == \
            sorted(p.name for p in (ROOT / folder).iterdir() if p.name != "__pycache__"), folder

    parsed = run([python, "-c", PARSE], env=env, cwd=cwd, timeout=300)
    line = next(x for x in parsed.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert Path(result["dag_factory"]).is_relative_to(Path(result["purelib"])), result["dag_factory"]
    assert Path(result["purelib"]).is_relative_to(venv), result["purelib"]
    assert result["airflow"] == airflow and result["celery"] == pinned("celery")
    assert Path(result["dags_folder"]) == opt / "dags"
    assert result["import_errors"] == {}
    assert set(result["dag_ids"]) == expected_dag_ids()

    # The CLI of the installed (non-editable) package validates the image's specs with the
    # schemas it ships: no $DAG_FACTORY_SCHEMAS, no source checkout.
    cli = venv / "bin" / "dag-factory"
    assert "DAG_FACTORY_SCHEMAS" not in env
    run([cli, "validate", opt / "specs"], env=env, cwd=cwd, timeout=120)
    print(f"fresh venv + Airflow {base_done - started:.0f}s, install-image + parse {time.monotonic() - base_done:.0f}s")
