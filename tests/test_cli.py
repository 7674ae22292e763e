"""The command line a user expects: a version, help that states every default, and one clear
line (exit 2) instead of a traceback when the user got something wrong."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dag_factory
from dag_factory.cli import build_parser


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DAG_FACTORY_", "AIRFLOW_CONN_"))}
    return subprocess.run([sys.executable, "-m", "dag_factory.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**clean, **env})


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version(tmp_path):
    result = _cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"dag-factory {dag_factory.__version__}"


def test_every_subcommand_and_option_has_help_that_states_its_default():
    missing = []
    for name, sub in _subcommands().items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = action.help or ""
            if not text:
                missing.append(f"{name} {action.dest}: no help")
            elif action.option_strings and action.default not in (None, False, argparse.SUPPRESS) \
                    and "default" not in text:
                missing.append(f"{name} {'/'.join(action.option_strings)}: default {action.default!r} not stated")
    assert not missing, "\n".join(missing)


def test_every_subcommand_is_listed_with_help():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in action._choices_actions}
    assert set(helps) == set(_subcommands()) and all(helps.values()), helps


@pytest.mark.parametrize(("args", "says"), [
    (("validate", "no_such_folder"), "no such file or folder: no_such_folder"),
    (("dags",), "no such file or folder: specs"),
    (("entry-files", "0"), "K must be >= 1"),
    (("entry-files", "2", "--dags", "nowhere"), "--dags nowhere is not a folder"),
    (("up",), "has no specs/ and dags/ folders"),
    (("demo",), "has no specs/ and dags/ folders"),
])
def test_a_users_mistake_is_one_line_and_exit_2(tmp_path, args, says):
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_sync_without_a_backend_connection_says_what_to_set(tmp_path):
    result = _cli("sync", cwd=tmp_path, AIRFLOW_HOME=str(tmp_path / "home"))
    assert result.returncode == 2, result
    assert "no Airflow connection 'model_backend'" in result.stderr and "AIRFLOW_CONN_MODEL_BACKEND" in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_lists_every_variable_with_its_value_in_force(tmp_path):
    result = _cli("settings", cwd=tmp_path, DAG_FACTORY_SYNC_INTERVAL="2m")
    assert result.returncode == 0
    line = next(x for x in result.stdout.splitlines() if x.startswith("DAG_FACTORY_SYNC_INTERVAL"))
    assert "2m" in line.split()
    assert "DAG_FACTORY_SPECS" in result.stdout and "DAG_FACTORY_REPARSE" in result.stdout


def test_every_setting_is_documented_in_the_configuration_reference():
    from dag_factory import settings
    from tests.support import ROOT

    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert [s.env for s in settings.ALL if f"`{s.env}`" not in text] == []
