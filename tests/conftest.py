"""Shared fixtures: the repo's paths and a scratch copy of the example specs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
EXAMPLE_MODELS = ("churn_predictor", "demand_forecast", "fraud_scorer")


@pytest.fixture
def specs_dir(tmp_path: Path) -> Path:
    """A copy of specs/ (examples and _defaults.yaml) that a test may break."""
    target = tmp_path / "specs"
    shutil.copytree(SPECS, target)
    return target
