"""Paths and names the tests share (kept out of conftest.py, which must be imported only once)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
DAGS = ROOT / "dags"
EXAMPLE_MODELS = ("churn_predictor", "demand_forecast", "fraud_scorer")
