"""Custom steps, defaults inheritance and the typed objects the builder gets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from dag_factory.specs import load_specs
from dag_factory.specs.model import Gate
from tests.support import SPECS


def only_errors(specs_dir: Path, name: str, text: str, **kw):
    (specs_dir / name).write_text(text)
    return [e for e in load_specs([specs_dir], **kw).errors if e.file.endswith(name)]


STEP = "model: steps\ntraining:\n  steps:\n"


def test_step_referring_to_a_missing_step(specs_dir):
    text = STEP + "    - {id: x, python: 'dag_factory.steps:require_dataset_uri', before: start_trainig}\n"
    [e] = only_errors(specs_dir, "steps.yaml", text)
    assert e.message == "'start_trainig' is not a step of the training DAG"
    assert e.hint == "did you mean 'start_training'?" and e.line == 4


def test_cycle_among_custom_steps(specs_dir):
    text = STEP + (
        "    - {id: a, python: 'dag_factory.steps:require_dataset_uri', after: b}\n"
        "    - {id: b, python: 'dag_factory.steps:require_dataset_uri', after: a}\n"
    )
    [e] = only_errors(specs_dir, "steps.yaml", text)
    assert e.message == "steps form a cycle: a -> b -> a" and e.line == 4


def test_cycle_through_built_in_steps(specs_dir):
    text = STEP + "    - {id: a, python: 'dag_factory.steps:require_dataset_uri', after: publish, before: start_training}\n"
    [e] = only_errors(specs_dir, "steps.yaml", text)
    assert "cycle" in e.message and "start_training" in e.message


def test_callable_that_cannot_be_imported(specs_dir, monkeypatch):
    monkeypatch.setenv("DAG_FACTORY_ALLOWED_CODE", "no_such_pkg")  # allowed, so its import is tried
    [e] = only_errors(specs_dir, "steps.yaml", STEP + "    - {id: a, python: 'no_such_pkg.mod:fn'}\n")
    assert e.message.startswith("cannot import module 'no_such_pkg.mod'")
    assert e.dotted_path == "training.steps[0].python"
    assert not only_errors(specs_dir, "steps.yaml", STEP + "    - {id: a, python: 'no_such_pkg.mod:fn'}\n",
                           check_imports=False)


def test_operator_that_is_not_an_operator(specs_dir, monkeypatch):
    monkeypatch.setenv("DAG_FACTORY_ALLOWED_CODE", "json")  # allowed, so the class is imported and checked
    [e] = only_errors(specs_dir, "steps.yaml", STEP + "    - {id: a, operator: 'json.JSONDecoder'}\n")
    assert e.message == "'json.JSONDecoder' is not an Airflow operator class"
    [e] = only_errors(specs_dir, "steps.yaml", STEP + "    - {id: a, operator: 'json.NoSuch'}\n")
    assert e.message == "module 'json' has no attribute 'NoSuch'"


def test_step_needs_python_or_operator(specs_dir):
    [e] = only_errors(specs_dir, "steps.yaml", STEP + "    - {id: a, python: 'm:f', operator: 'a.B'}\n")
    assert e.message == "needs exactly one of 'python' or 'operator'"


def test_replace_rules(specs_dir):
    text = STEP + (
        "    - {replace: check_gates, python: 'dag_factory.steps:require_dataset_uri'}\n"
        "    - {replace: nope, python: 'dag_factory.steps:require_dataset_uri'}\n"
        "    - {id: publish, python: 'dag_factory.steps:require_dataset_uri'}\n"
    )
    errors = only_errors(specs_dir, "steps.yaml", text)
    assert [e.message for e in errors] == [
        "'nope' is not a built-in step of the training DAG",
        "'publish' is a built-in step of the training DAG",
    ]
    assert errors[1].hint == "choose another id, or write 'replace: publish' to replace it"


def test_deployment_steps_can_refer_to_target_groups(specs_dir):
    text = ("model: dep\ndeployment:\n  targets: [staging, prod]\n  steps:\n"
            "    - {id: approve, python: 'dag_factory.steps:require_dataset_uri', before: deploy_prod}\n")
    assert not only_errors(specs_dir, "dep.yaml", text)


def test_defaults_are_inherited_and_overridden():
    specs = load_specs([SPECS]).by_name()
    churn, demand = specs["churn_predictor"], specs["demand_forecast"]
    assert churn.owner == "growth-ml" and demand.owner == "ml-platform"  # override / inherit
    assert demand.streaming is None  # no section in the spec: defaults don't create one
    assert demand.training.timeout == timedelta(hours=6) and churn.training.timeout == timedelta(hours=2)
    assert churn.streaming.partitions == (0, 1, 2, 3) and churn.streaming.tasks.retries == 3
    assert churn.training.gates == (Gate("auc", ">=", 0.78), Gate("logloss", "<=", 0.45))
    assert [t.name for t in churn.deployment.targets] == ["staging", "production"]
    assert churn.deployment.targets[0].gates is None and churn.deployment.smoke_gates == (Gate("success_rate", ">=", 0.99),)


def test_invalid_defaults_make_their_specs_invalid_and_say_why(specs_dir):
    (specs_dir / "_defaults.yaml").write_text("training:\n  schedule: 'every day'\n")
    result = load_specs([specs_dir])
    assert not result.specs
    defaults_errors = [e for e in result.errors if e.file.endswith("_defaults.yaml")]
    assert len(defaults_errors) == 1 and "needs 5 fields" in defaults_errors[0].message
    assert defaults_errors[0].line == 2
    assert all("which is invalid" in e.message for e in result.errors if e not in defaults_errors)


def test_spec_objects_are_immutable():
    spec = load_specs([SPECS]).by_name()["churn_predictor"]
    import dataclasses

    import pytest
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"
    with pytest.raises(TypeError):
        spec.training.hyperparameters["max_depth"] = 1


def test_dates_stay_text_and_are_checked(specs_dir):
    [e] = only_errors(specs_dir, "d.yaml", "model: d\nstart_date: 2024-02-30\n")
    assert e.message == "'2024-02-30' is not a calendar date" and e.line == 2
