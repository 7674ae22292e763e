"""`dag-factory plan` on small spec trees, one kind of change per test, as a reviewer sees it.

Both sides are built with the real builders (in this process, through the CLI's `main`); the
trees are written here from short YAML strings, independent of the repo's example specs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dag_factory.cli import main
from tests.support import ROOT

NOW = "2026-01-01T00:00"
GOLDEN = Path(__file__).parent / "golden"

DEFAULTS = """\
owner: ml
training:
  schedule: "0 3 * * *"
  retries: 2
deployment:
  retries: 1
"""


def train(name: str, extra: str = "") -> str:
    return f"model: {name}\ntraining:\n  dataset_uri: s3://data/{name}\n{extra}"


def deploy(name: str, targets: str) -> str:
    return f"model: {name}\ndeployment:\n  targets: {targets}\n"


def tree(folder: Path, files: dict[str, str]) -> Path:
    """A specs folder holding `files` (name -> YAML text) and the fixture defaults."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {"_defaults.yaml": DEFAULTS, **files}.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def sides(tmp_path: Path, base: dict[str, str], head: dict[str, str]) -> tuple[Path, Path]:
    return tree(tmp_path / "base" / "specs", base), tree(tmp_path / "specs", head)


def plan(capsys, base: Path, head: Path, *args: str) -> tuple[int, str]:
    code = main(["plan", "--base-dir", str(base), str(head), "--now", NOW, *args])
    return code, capsys.readouterr().out


def plan_json(capsys, base: Path, head: Path, *args: str) -> tuple[int, dict]:
    code, out = plan(capsys, base, head, "--format", "json", *args)
    return code, json.loads(out)


def changes_of(data: dict, dag_id: str) -> list[str]:
    [dag] = [d for d in data["dags"] if d["dag_id"] == dag_id]
    return [c["text"] for c in dag["changes"]]


def test_dags_added_and_removed_say_why(tmp_path, capsys):
    base, head = sides(tmp_path,
                       {"a.yaml": train("a"), "b.yaml": train("b"), "t.yaml": train("t")},
                       {"a.yaml": train("a") + deploy("a", "[prod]").split("\n", 1)[1],
                        "c.yaml": train("c"), "t.yaml": "template: true\n" + train("t")})
    code, out = plan(capsys, base, head)
    assert code == 0
    assert "+ a__deploy (new deployment section)" in out
    assert "+ c__train (new spec)" in out
    assert "- b__train (spec removed)" in out
    assert "- t__train (template)" in out
    assert out.rstrip().endswith("2 DAGs added, 2 removed, 0 changed (0 breaking), 1 unchanged")


def test_nothing_changed(tmp_path, capsys):
    base, head = sides(tmp_path, {"a.yaml": train("a")}, {"a.yaml": train("a")})
    code, out = plan(capsys, base, head, "--fail-on", "breaking")
    assert code == 0
    assert "no changes" in out and "0 DAGs added, 0 removed, 0 changed (0 breaking), 1 unchanged" in out


STEP = """\
  steps:
    - id: check_data
      python: dag_factory.steps:require_dataset_uri
      kwargs: {{allowed_prefixes: ["s3://"]}}
      {where}
"""


def test_a_new_step_adds_a_task_and_breaks_nothing(tmp_path, capsys):
    base, head = sides(tmp_path, {"a.yaml": train("a")},
                       {"a.yaml": train("a", STEP.format(where="before: start_training"))})
    code, data = plan_json(capsys, base, head, "--fail-on", "breaking")
    assert code == 0
    assert changes_of(data, "a__train") == ["task check_data added", "edge check_data >> start_training added"]
    assert data["summary"] == "0 DAGs added, 0 removed, 1 changed (0 breaking), 0 unchanged"


def test_a_renamed_step_is_breaking_and_fails_with_fail_on(tmp_path, capsys):
    step = STEP.format(where="after: check_gates")
    base, head = sides(tmp_path, {"a.yaml": train("a", step)},
                       {"a.yaml": train("a", step.replace("id: check_data", "id: verify_data"))})
    code, data = plan_json(capsys, base, head)
    assert code == 0  # without --fail-on a plan is only information
    assert changes_of(data, "a__train") == [
        "task check_data renamed to verify_data: BREAKING for runs in flight"]
    assert data["counts"]["breaking"] == 1
    code, out = plan(capsys, base, head, "--fail-on", "breaking")
    assert code == 3
    assert "~ a__train  [BREAKING for runs in flight]" in out
    assert "1 changed (1 breaking)" in out


def test_a_reorder_changes_edges_only_and_is_not_breaking(tmp_path, capsys):
    base, head = sides(tmp_path, {"a.yaml": train("a", STEP.format(where="after: start_training"))},
                       {"a.yaml": train("a", STEP.format(where="after: check_gates"))})
    code, data = plan_json(capsys, base, head, "--fail-on", "breaking")
    assert code == 0
    assert changes_of(data, "a__train") == ["edge start_training >> check_data removed",
                                            "edge check_gates >> check_data added"]


def test_schedule_change_shows_the_next_run_times(tmp_path, capsys):
    base, head = sides(tmp_path, {"a.yaml": train("a"), "b.yaml": train("b", '  schedule: "@daily"\n')},
                       {"a.yaml": train("a", '  schedule: "30 4 * * 1"\n'),
                        "b.yaml": train("b", '  schedule: "@hourly"\n')})
    _, data = plan_json(capsys, base, head)
    assert changes_of(data, "a__train") == [
        "schedule: 0 3 * * * (At 03:00) → 30 4 * * 1 (At 04:30, only on Monday); next runs (UTC): "
        "2026-01-01 03:00, 2026-01-02 03:00, 2026-01-03 03:00 → 2026-01-05 04:30, 2026-01-12 04:30, 2026-01-19 04:30"]
    assert changes_of(data, "b__train") == [
        "schedule: 0 0 * * * (At 00:00) → 0 * * * * (Every hour); next runs (UTC): "
        "2026-01-01 00:00, 2026-01-02 00:00, 2026-01-03 00:00 → 2026-01-01 00:00, 2026-01-01 01:00, 2026-01-01 02:00"]


def test_retries_from_the_defaults_change_every_training_dag_once(tmp_path, capsys):
    specs = {f"m{i:02d}.yaml": train(f"m{i:02d}") + deploy(f"m{i:02d}", "[prod]").split("\n", 1)[1] for i in range(30)}
    base, head = sides(tmp_path, specs, specs)
    (head / "_defaults.yaml").write_text(DEFAULTS.replace("retries: 2", "retries: 5"), encoding="utf-8")
    code, out = plan(capsys, base, head, "--fail-on", "breaking")
    assert code == 0
    assert out.rstrip().endswith("0 DAGs added, 0 removed, 30 changed (0 breaking), 30 unchanged")
    # one group for the 30 DAGs: the change is read once
    assert "~ m00__train, m01__train, m02__train, m03__train, m04__train and 25 more DAGs\n" \
           "    default_args.retries: 2 → 5\n    retries: 2 → 5 in all 4 tasks\n" in out
    assert "__deploy" not in out


def test_a_target_added_in_the_middle_of_a_deployment(tmp_path, capsys):
    base, head = sides(tmp_path, {"a.yaml": deploy("a", "[staging, prod]")},
                       {"a.yaml": deploy("a", "[staging, canary, prod]")})
    code, data = plan_json(capsys, base, head, "--fail-on", "breaking")
    assert code == 0
    assert changes_of(data, "a__deploy") == [
        "task deploy_canary.deploy added", "task deploy_canary.rollback added",
        "task deploy_canary.smoke_test added", "task deploy_canary.wait added",
        "edge deploy_staging.smoke_test >> deploy_prod.deploy removed",
        "edge deploy_canary.smoke_test >> deploy_prod.deploy added",
        "edge deploy_staging.smoke_test >> deploy_canary.deploy added",
        'task deployed: op_kwargs.targets: ["staging", "prod"] → ["staging", "canary", "prod"]']


CUSTOM = """\
  steps:
    - id: announce
      operator: {operator}
      {kwargs}
      after: publish
    - id: check_data
      python: {python}
      kwargs: {{allowed_prefixes: ["s3://"]}}
      before: start_training
"""


def test_custom_steps_operator_and_callable_changes(tmp_path, capsys):
    old = CUSTOM.format(operator="airflow.providers.standard.operators.bash.BashOperator",
                        kwargs='kwargs: {bash_command: "echo hi"}', python="dag_factory.steps:require_dataset_uri")
    new = CUSTOM.format(operator="airflow.providers.standard.operators.empty.EmptyOperator",
                        kwargs="retries: 4", python="dag_factory.steps:log_stream_summary")
    base, head = sides(tmp_path, {"a.yaml": train("a", old)}, {"a.yaml": train("a", new)})
    code, data = plan_json(capsys, base, head, "--fail-on", "breaking")
    assert code == 0
    assert changes_of(data, "a__train") == [
        "task announce: operator: airflow.providers.standard.operators.bash.BashOperator → "
        "airflow.providers.standard.operators.empty.EmptyOperator",
        "task announce: retries: 2 → 4",
        "task check_data: callable: dag_factory.steps:require_dataset_uri → dag_factory.steps:log_stream_summary"]


def test_a_base_whose_spec_was_invalid(tmp_path, capsys):
    broken = train("a").replace("dataset_uri", "dataset_url")
    base, head = sides(tmp_path, {"a.yaml": broken, "b.yaml": train("b")}, {"a.yaml": train("a"), "b.yaml": broken
                                                                           .replace("model: a", "model: b")})
    code, out = plan(capsys, base, head)
    assert code == 0
    assert "+ a__train (was invalid)" in out
    assert "- dag_factory_invalid__a (spec fixed)" in out
    assert "- b__train (spec is invalid)" in out
    assert "+ dag_factory_invalid__b (spec is invalid)" in out


def test_a_custom_operator_that_fails_to_build_makes_the_whole_spec_invalid(tmp_path, capsys):
    step = ("  steps:\n    - id: notify\n      operator: airflow.providers.standard.operators.bash.{cls}\n"
            "      kwargs: {{bash_command: echo}}\n      after: deployed\n")
    spec = train("a") + deploy("a", "[prod]").split("\n", 1)[1] + step
    base, head = sides(tmp_path, {"a.yaml": spec.format(cls="BashOperator")},
                       {"a.yaml": spec.format(cls="NoSuchOperator")})
    code, out = plan(capsys, base, head)
    assert code == 0
    assert out.splitlines()[2:-2] == ["+ dag_factory_invalid__a (spec is invalid)",
                                      "- a__deploy (spec is invalid)", "- a__train (spec is invalid)"]


def write_snapshot(path: Path, models: dict[str, dict], retired: list[str]) -> Path:
    records = {name: {"name": name, "status": "active", "version": "v1", **r} for name, r in models.items()}
    path.write_text(json.dumps({"format": 1, "models": records, "retired": retired}), encoding="utf-8")
    return path


def test_live_data_changes_which_models_exist(tmp_path, capsys):
    tpl = "model: tpl\ntemplate: true\ntraining:\n  dataset_uri: s3://data/tpl\n"
    streaming = "streaming:\n  every: 5m\n"
    base, head = sides(tmp_path, {"a.yaml": train("a"), "tpl.yaml": tpl},
                       {"a.yaml": train("a") + streaming, "tpl.yaml": tpl + streaming})
    _, out = plan(capsys, base, head)
    assert "no live data (specs only)" in out
    assert out.splitlines()[2:-2] == ["+ a__stream (new streaming section)"]
    live = write_snapshot(tmp_path / "live.json", {"eu": {"spec": "tpl"}, "us": {"spec": "tpl", "status": "paused"}},
                          retired=["a"])
    _, out = plan(capsys, base, head, "--live", str(live))
    assert f"live data from {live}" in out
    assert out.splitlines()[2:-2] == ["+ eu__stream (new streaming section)", "+ us__stream (new streaming section)"]
    assert out.rstrip().endswith("2 DAGs added, 0 removed, 0 changed (0 breaking), 2 unchanged")


def test_golden_markdown(tmp_path, capsys, monkeypatch):
    base_files = {"a.yaml": train("a", STEP.format(where="after: check_gates")),
                  "b.yaml": deploy("b", "[staging, prod]"), "c.yaml": train("c")}
    head_files = {"a.yaml": train("a", STEP.format(where="after: check_gates").replace("check_data", "verify_data")
                                  + '  schedule: "@weekly"\n'),
                  "b.yaml": deploy("b", "[staging, canary, prod]"), "d.yaml": train("d")}
    more = {f"{name}.yaml": train(name) for name in "efgh"}
    _, head = sides(tmp_path, {**base_files, **more}, {**head_files, **more})
    (head / "_defaults.yaml").write_text(DEFAULTS.replace("retries: 2", "retries: 3"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code = main(["plan", "--base-dir", "base/specs", "specs", "--now", NOW, "--format", "markdown"])
    out = capsys.readouterr().out
    assert code == 0
    if os.environ.get("DAG_FACTORY_UPDATE_GOLDEN") == "1":  # after an intended change; review the diff
        (GOLDEN / "plan.md").write_text(out, encoding="utf-8")
    assert out == (GOLDEN / "plan.md").read_text(encoding="utf-8")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                   check=True, capture_output=True)


def test_git_revision_base_leaves_the_work_tree_alone(tmp_path):
    repo = tmp_path / "repo"
    step = STEP.format(where="after: check_gates")
    specs = tree(repo / "specs", {"a.yaml": train("a", step), "b.yaml": train("b")})
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    (specs / "a.yaml").write_text(train("a", step.replace("check_data", "verify_data")), encoding="utf-8")
    (specs / "b.yaml").unlink()
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True).stdout
    cli = [sys.executable, "-m", "dag_factory.cli", "plan", "--now", NOW]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*cli, "--format", "markdown", "--fail-on", "breaking"], cwd=repo, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith(
        "### dag-factory plan\n\n**0 DAGs added, 1 removed, 1 changed (1 breaking), 0 unchanged**")
    assert "specs against git HEAD" in done.stdout and "| removed | `b__train` | spec removed |" in done.stdout
    assert subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True,
                          text=True).stdout == status
    assert not (repo / "specs" / "b.yaml").exists()
    bad = subprocess.run([*cli, "--base", "no-such-branch"], cwd=repo, env=env, capture_output=True, text=True)
    assert bad.returncode == 2
    assert "unknown git revision 'no-such-branch'" in bad.stderr


@pytest.mark.parametrize("fmt, expected", [
    ("text", "a__deploy  schedule: assets: x-dag-factory://models/a; 10 tasks\n  resolve_version  "
             "[PythonOperator: dag_factory.runtime.deployment.resolve_version]\n"
             "      -> deploy_staging.deploy\n"),
    ("mermaid", 'flowchart LR\n  %% a__deploy  schedule: assets: x-dag-factory://models/a\n'
                '  t_resolve_version["resolve_version"]\n  t_deployed["deployed"]\n'
                '  subgraph t_deploy_staging_group["deploy_staging"]\n'
                '    t_deploy_staging_deploy["deploy"]\n'),
])
def test_render_prints_the_real_task_graph(tmp_path, capsys, fmt, expected):
    specs = tree(tmp_path / "specs", {"a.yaml": deploy("a", "[staging, prod]")})
    assert main(["render", "a", "--kind", "deployment", "--format", fmt, "--specs", str(specs)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(expected)
    if fmt == "mermaid":
        assert "  t_deploy_staging_smoke_test --> t_deploy_prod_deploy\n" in out
    assert main(["render", "nope", "--specs", str(specs)]) == 2
    assert "no DAG of model 'nope'" in capsys.readouterr().err

