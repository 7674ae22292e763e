"""Paths and names the tests share (kept out of conftest.py, which must be imported only once).

The tests run against their own Airflow project, `tests/fixtures/project/` (dags/ and specs/ side
by side, the layout `dag-factory init` makes), never against the repository's `specs/` and
`dags/`: a team keeps its own specs in `specs/`, and adding one must not break this suite.
The fixture's entry files are byte-identical to the repository's (tests/dags/test_fixture_project.py),
so the tests still exercise the real ones. The repository's example specs have their own check
in tests/examples/.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "tests" / "fixtures" / "project"  # the tests' own project: never write into it
SPECS = PROJECT / "specs"
DAGS = PROJECT / "dags"
MODELS = ("churn_predictor", "demand_forecast", "fraud_scorer")  # the models of SPECS

# The repository's own project folders (what a team edits): only tests/examples and the drift
# check read them, and no test writes into them.
REPO_SPECS = ROOT / "specs"
REPO_DAGS = ROOT / "dags"
