"""`dag-factory init`: the files a team gets, that running it again keeps their edits, and that
each generated file is valid for the tool that reads it (the spec for `validate`, the workflow for
GitHub's schema, the hook configuration for pre-commit). The whole project at work, installed
from a wheel outside this repository, is tests/package/test_install_outside.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from dag_factory.layout import entry_file_text
from tests.support import ROOT

FILES = ["dags/model_dags.py", "dags/backend_sync.py", "specs/_defaults.yaml", "specs/example_model.yaml",
         "tests/test_dag_integrity.py", ".pre-commit-config.yaml", ".github/workflows/dag-factory.yml",
         ".gitignore", "README.md", "requirements.txt"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dag_factory.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def actions(stdout: str) -> dict[str, str]:
    """{path: action} from init's report lines (`wrote     dags/model_dags.py`)."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^(wrote|overwrote|unchanged|kept)\s+(\S+)", stdout, re.M)}


def test_init_writes_the_project_then_keeps_what_exists(tmp_path):
    first = cli("init", "team", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert actions(first.stdout) == {f: "wrote" for f in FILES}
    assert "team: 10 file(s) written, 0 kept, 0 unchanged" in first.stdout
    project = tmp_path / "team"
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()) == sorted(FILES)

    again = cli("init", str(project), cwd=tmp_path)
    assert again.returncode == 0 and actions(again.stdout) == {f: "unchanged" for f in FILES}

    ours = "owner: us\n"
    (project / "specs/_defaults.yaml").write_text(ours)
    (project / "README.md").unlink()
    kept = cli("init", cwd=project)  # DIR defaults to .
    assert actions(kept.stdout)["specs/_defaults.yaml"] == "kept"
    assert "exists and differs; --force replaces it" in kept.stdout
    assert actions(kept.stdout)["README.md"] == "wrote"
    assert (project / "specs/_defaults.yaml").read_text() == ours

    forced = cli("init", "--force", str(project), cwd=tmp_path)
    assert actions(forced.stdout)["specs/_defaults.yaml"] == "overwrote"
    assert (project / "specs/_defaults.yaml").read_text() != ours


def test_the_dag_files_are_this_repositorys(tmp_path):
    cli("init", "team", cwd=tmp_path)
    for name in ("model_dags.py", "backend_sync.py"):
        assert (tmp_path / "team/dags" / name).read_text() == (ROOT / "dags" / name).read_text(), \
            f"dags/{name} and what `init` writes differ (template: dag_factory/scaffold/project-template/): edit both"
    assert (tmp_path / "team/dags/model_dags.py").read_text() == entry_file_text(1, 1)


def test_a_split_fleet_gets_no_second_whole_fleet_entry_file(tmp_path):
    dags = tmp_path / "team" / "dags"
    dags.mkdir(parents=True)
    for i in (1, 2):
        (dags / f"model_dags_{i}_of_2.py").write_text(entry_file_text(i, 2))
    result = cli("init", "team", cwd=tmp_path)
    assert actions(result.stdout)["dags/model_dags.py"] == "kept"
    assert "dags/ has model_dags_1_of_2.py, model_dags_2_of_2.py" in result.stdout
    assert not (dags / "model_dags.py").exists()


def test_init_on_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "taken").write_text("")
    result = cli("init", "taken", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "dag-factory init: taken exists and is not a folder"


def test_the_example_spec_validates_and_makes_three_dags(tmp_path):
    cli("init", "team", cwd=tmp_path)
    project = tmp_path / "team"
    validate = cli("validate", cwd=project)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "1 spec file(s), 1 valid: ok" in validate.stderr
    dags = cli("dags", "--format", "json", cwd=project)
    ids = [row["dag_id"] for row in yaml.safe_load(dags.stdout)]
    assert ids == ["example_model__train", "example_model__deploy", "example_model__stream"]
    assert "example_model__train, example_model__deploy, example_model__stream" in \
        (project / "specs/example_model.yaml").read_text()  # what its comment promises


def test_generated_ci_and_hook_configs_are_valid(tmp_path):
    cli("init", "team", cwd=tmp_path)
    project = tmp_path / "team"
    workflow = project / ".github/workflows/dag-factory.yml"
    checked = subprocess.run([Path(sys.executable).with_name("check-jsonschema"), "--builtin-schema",
                              "vendor.github-workflows", str(workflow)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    steps = yaml.safe_load(workflow.read_text())["jobs"]["specs"]["steps"]
    runs = [step["run"] for step in steps if "run" in step]
    assert "dag-factory validate --format github specs/" in runs and "python -m pytest tests/" in runs
    assert any("dag-factory plan" in r and "$GITHUB_STEP_SUMMARY" in r for r in runs)  # the pull request's plan

    for command, path in (("validate-config", project / ".pre-commit-config.yaml"),
                          ("validate-manifest", ROOT / ".pre-commit-hooks.yaml")):
        result = subprocess.run([sys.executable, "-m", "pre_commit", command, str(path)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


def test_hook_definitions_match_the_specs_of_a_consumer_repository(tmp_path):
    [published] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    cli("init", "team", cwd=tmp_path)
    [local] = yaml.safe_load((tmp_path / "team/.pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    assert published["id"] == local["id"] == "dag-factory-validate"
    assert published["entry"] == "dag-factory validate" and local["entry"] == "dag-factory validate specs"
    for hook in (published, local):
        files = re.compile(hook["files"])
        assert all(files.search(p) for p in ("specs/churn.yaml", "specs/_defaults.yaml", "specs/team/x.yml"))
        assert not any(files.search(p) for p in ("dags/x.yaml", "other/specs/x.yaml", "specs/x.json"))
