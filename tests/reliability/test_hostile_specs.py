"""Hostile specs: nothing runs at parse time that is not an operator class, nothing outside the
allowlist is imported, reserved names stay reserved, and lists and strings are bounded."""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

from dag_factory.live.records import record_problem
from dag_factory.live.snapshot import plan
from dag_factory.specs.loader import load_specs
from tests.support import DAGS

INVALID = "dag_factory_invalid__"


def parse(monkeypatch, specs: Path) -> DagBag:
    monkeypatch.setenv("DAG_FACTORY_SPECS", str(specs))
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag


def errors_of(specs: Path, **kwargs) -> list[str]:
    return [str(e) for e in load_specs([specs], **kwargs).errors]


# -- 2. only operator classes are called at parse time ----------------------------------------

def test_a_function_named_as_operator_is_never_called_at_parse_time(monkeypatch, specs_dir, tmp_path):
    marker = tmp_path / "ran_at_parse_time"
    (specs_dir / "sneaky.yaml").write_text(
        "model: sneaky\ntraining:\n  steps:\n    - id: sneak\n"
        "      operator: dag_factory.builders.common.run_python_step\n"
        f"      kwargs: {{target: 'os:system', step_kwargs: {{command: 'touch {marker}'}}}}\n")
    # allowed on purpose: this test is about the operator-class check, not the allowlist
    monkeypatch.setenv("DAG_FACTORY_ALLOWED_CODE", "dag_factory.builders.common")
    bag = parse(monkeypatch, specs_dir)
    assert not marker.exists()
    assert "sneaky__train" not in bag.dag_ids
    invalid = bag.dags[INVALID + "sneaky"]
    assert "'dag_factory.builders.common.run_python_step' is not an Airflow operator class" in invalid.description
    assert "churn_predictor__train" in bag.dag_ids


# -- 5. reserved names ------------------------------------------------------------------------

def test_a_model_may_not_take_the_reserved_prefix(specs_dir):
    (specs_dir / "dag_factory_invalid.yaml").write_text("model: dag_factory_invalid\ntraining: {}\n")
    (specs_dir / "train.yaml").write_text("model: [\n")
    errors = errors_of(specs_dir)
    assert any("dag_factory_invalid.yaml:1:8: model: 'dag_factory_invalid' starts with 'dag_factory_', "
               "which is reserved" in e for e in errors), errors


def test_the_reserved_model_becomes_an_invalid_dag_and_the_other_invalid_dag_survives(monkeypatch, specs_dir):
    (specs_dir / "dag_factory_invalid.yaml").write_text("model: dag_factory_invalid\ntraining: {}\n")
    (specs_dir / "train.yaml").write_text("model: [\n")
    bag = parse(monkeypatch, specs_dir)
    assert "dag_factory_invalid__train" in bag.dag_ids
    assert "INVALID SPEC specs/train.yaml" in bag.dags["dag_factory_invalid__train"].description
    assert "reserved" in bag.dags["dag_factory_invalid__dag_factory_invalid"].description


def test_a_live_record_may_not_take_the_reserved_prefix():
    record = {"name": "dag_factory_invalid__x", "status": "active", "version": "v1",
              "updated_at": "2026-01-01T00:00:00Z"}
    assert "reserved" in (record_problem(record) or "")
    assert record_problem({**record, "name": "churn"}) is None


# -- 6. bounded lists and strings -------------------------------------------------------------

def test_100000_tags_are_a_located_error_not_a_huge_dag(specs_dir):
    tags = ", ".join(f"t{i}" for i in range(100_000))
    (specs_dir / "tagged.yaml").write_text(f"model: tagged\ntags: [{tags}]\ntraining: {{}}\n")
    errors = [e for e in errors_of(specs_dir) if "tagged.yaml" in e]
    assert len(errors) == 1 and len(errors[0]) < 300, errors
    assert "tagged.yaml:2:7: tags: has 100000 items; at most 32 — Extra tags" in errors[0]


def test_every_list_that_reaches_a_dag_is_bounded(specs_dir):
    steps = "\n".join(f"    - {{id: s{i}, python: 'dag_factory.steps:log_stream_summary'}}" for i in range(200))
    targets = ", ".join(f"t{i}" for i in range(100))
    gates = ", ".join(f"'m{i} > 0'" for i in range(100))
    (specs_dir / "wide.yaml").write_text(
        f"model: wide\ndescription: '{'x' * 3000}'\ntraining:\n  gates: [{gates}]\n  steps:\n{steps}\n"
        f"deployment:\n  targets: [{targets}]\n")
    errors = [e for e in errors_of(specs_dir, check_imports=False) if "wide.yaml" in e]
    text = "\n".join(errors)
    for what in ("description: is 3000 characters long; at most 2000", "training.gates: has 100 items; at most 32",
                 "training.steps: has 200 items; at most 50", "deployment.targets: has 100 items; at most 32"):
        assert what in text, text


def test_huge_hyperparameters_and_step_kwargs_are_refused(specs_dir):
    big = ", ".join(f"k{i}: '{'v' * 100}'" for i in range(300))
    (specs_dir / "heavy.yaml").write_text(
        f"model: heavy\ntraining:\n  hyperparameters: {{nested: {{{big}}}}}\n  steps:\n"
        f"    - id: s\n      python: 'dag_factory.steps:log_stream_summary'\n      kwargs: {{nested: {{{big}}}}}\n")
    errors = [e for e in errors_of(specs_dir, check_imports=False) if "heavy.yaml" in e]
    text = "\n".join(errors)
    assert "training.hyperparameters: is" in text and "bytes as JSON; at most 16384" in text, text
    assert "training.steps[0].kwargs: is" in text, text


# -- rejected records that never had data -----------------------------------------------------

def test_a_rejected_new_record_does_not_claim_to_keep_data_it_never_had():
    from datetime import datetime, timedelta, timezone

    good = {"name": "churn", "status": "active", "version": "v1", "updated_at": "2026-01-01T00:00:00Z"}
    bad = {**good, "version": ""}
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    first, report = plan(None, [bad], now, ttl=timedelta(hours=1), missing_limit=3)
    line = next(x for x in report.lines() if x.startswith("REJECTED"))
    assert "last good data" not in line and "no DAGs" in line, line
    second, _ = plan(None, [good], now, ttl=timedelta(hours=1), missing_limit=3)
    _, report = plan(second, [bad], now, ttl=timedelta(hours=1), missing_limit=3)
    line = next(x for x in report.lines() if x.startswith("REJECTED"))
    assert line.endswith("(its last good data is kept)"), line


# -- 7. the allowlist -------------------------------------------------------------------------

OS_SYSTEM = "model: shell\ntraining:\n  steps:\n    - id: run\n      python: 'os:system'\n      kwargs: {command: id}\n"


def test_os_system_is_refused_by_default(specs_dir):
    (specs_dir / "shell.yaml").write_text(OS_SYSTEM)
    for check_imports in (True, False):
        errors = [e for e in errors_of(specs_dir, check_imports=check_imports) if "shell.yaml" in e]
        assert len(errors) == 1, errors
        assert "shell.yaml:5:15: training.steps[0].python: 'os:system' is not allowed" in errors[0], errors
        assert "allowed_code" in errors[0] and "DAG_FACTORY_ALLOWED_CODE" in errors[0]


def test_the_example_specs_are_allowed_by_default(specs_dir):
    assert errors_of(specs_dir) == []


EVIL_MODULE = '''
from pathlib import Path
from airflow.sdk import BaseOperator
Path({marker!r}).write_text("imported")

class TeamOperator(BaseOperator):
    def execute(self, context):
        return None
'''


def _team_module(tmp_path: Path, monkeypatch) -> Path:
    marker = tmp_path / "imported"
    package = tmp_path / "pkgs"
    package.mkdir()
    (package / "acme_team_ops.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(package))
    sys.modules.pop("acme_team_ops", None)
    return marker


TEAM_SPEC = "model: team\ntraining:\n  steps:\n    - id: own\n      operator: acme_team_ops.TeamOperator\n"


def test_an_operator_outside_the_allowlist_is_never_imported(monkeypatch, specs_dir, tmp_path):
    marker = _team_module(tmp_path, monkeypatch)
    (specs_dir / "team.yaml").write_text(TEAM_SPEC)
    errors = [e for e in errors_of(specs_dir) if "team.yaml" in e]
    assert len(errors) == 1 and "training.steps[0].operator: 'acme_team_ops.TeamOperator' is not allowed" \
        in errors[0], errors
    bag = parse(monkeypatch, specs_dir)
    assert not marker.exists()
    assert "team__train" not in bag.dag_ids
    assert "is not allowed" in bag.dags[INVALID + "team"].description


def test_the_setting_allows_a_team_package(monkeypatch, specs_dir, tmp_path):
    marker = _team_module(tmp_path, monkeypatch)
    (specs_dir / "team.yaml").write_text(TEAM_SPEC)
    monkeypatch.setenv("DAG_FACTORY_ALLOWED_CODE", "acme_team_ops")
    assert errors_of(specs_dir) == []
    bag = parse(monkeypatch, specs_dir)
    assert "team__train" in bag.dag_ids and marker.exists()


def test_the_defaults_file_allows_a_team_package(monkeypatch, specs_dir, tmp_path):
    _team_module(tmp_path, monkeypatch)
    (specs_dir / "team.yaml").write_text(TEAM_SPEC + OS_SYSTEM.split("training:\n  steps:\n")[1]
                                         .replace("id: run", "id: run_it"))
    defaults = specs_dir / "_defaults.yaml"
    defaults.write_text(defaults.read_text() + "allowed_code:\n  operators: [acme_team_ops]\n")
    errors = [e for e in errors_of(specs_dir) if "team.yaml" in e]
    assert len(errors) == 1 and "'os:system' is not allowed" in errors[0], errors  # python steps: not widened
    defaults.write_text(defaults.read_text() + "  python: ['os:system']\n")
    assert errors_of(specs_dir) == []


def test_a_spec_cannot_widen_the_allowlist_itself(specs_dir):
    (specs_dir / "shell.yaml").write_text(OS_SYSTEM + "allowed_code: {python: [os]}\n")
    errors = [e for e in errors_of(specs_dir) if "shell.yaml" in e]
    assert any("unknown key 'allowed_code'" in e for e in errors), errors


def test_the_allowlist_compares_module_and_attribute_apart():
    from dag_factory.specs.rules import is_allowed

    assert is_allowed("python", "dag_factory.steps:require_dataset_uri", ("dag_factory.steps",))
    assert not is_allowed("python", "dag_factory:steps", ("dag_factory.steps",))  # not the same thing
    assert not is_allowed("python", "dag_factory.stepsx:f", ("dag_factory.steps",))
    assert not is_allowed("python", "acme.tools.safe:x", ("acme.tools:safe",))  # one callable, not a package
    assert is_allowed("python", "acme.tools:safe", ("acme.tools:safe",))
    assert is_allowed("operator", "acme.ops.Deploy", ("acme.ops.Deploy",))
    assert not is_allowed("operator", "airflow.providers_evil.X", ("airflow.providers",))


def test_an_allowed_module_does_not_lend_what_it_imports(monkeypatch, specs_dir, tmp_path):
    package = tmp_path / "acme_tools"
    package.mkdir()
    (package / "__init__.py").write_text("from subprocess import run\n\ndef ok():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DAG_FACTORY_ALLOWED_CODE", "acme_tools")
    base = (specs_dir / "churn_predictor.yaml").read_text()
    step = "  steps:\n    - {id: sneaky, python: 'acme_tools:run', kwargs: {args: 'true', shell: true}}\n"
    (specs_dir / "churn_predictor.yaml").write_text(base.replace("training:\n", "training:\n" + step, 1))
    errors = errors_of(specs_dir)
    assert any("'acme_tools:run' is defined in 'subprocess', which is not on the allowlist" in e for e in errors), errors
    (specs_dir / "churn_predictor.yaml").write_text(base.replace("training:\n", "training:\n" + step.replace(
        "acme_tools:run', kwargs: {args: 'true', shell: true}", "acme_tools:ok'"), 1))
    assert errors_of(specs_dir) == []
