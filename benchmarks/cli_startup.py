"""How long `dag-factory validate` takes from start to exit (what a pre-commit hook costs).

    .venv/bin/python benchmarks/cli_startup.py [--repeat 10]

Variants, alternating within each repetition, each a fresh process:
  floor       `python -c pass` (the interpreter alone)
  validate    `dag-factory validate specs/` in a project made by `dag-factory init` (its example
              spec: no `operator:` step, so Airflow is not imported)
  operator    the same with one more spec that names an operator, whose class must be checked
              (imports Airflow): what the other variant avoids
Prints the medians and their ratio to the floor. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = str(Path(sys.executable).with_name("dag-factory"))
OPERATOR_SPEC = """model: announcer
training:
  steps:
    - id: announce
      operator: airflow.providers.standard.operators.bash.BashOperator
      kwargs: {bash_command: "echo published"}
      after: publish
"""


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="runs of each variant (default: 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain, operator = Path(tmp, "plain"), Path(tmp, "operator")
        for project in (plain, operator):
            subprocess.run([CLI, "init", str(project)], check=True, capture_output=True)
        (operator / "specs" / "announcer.yaml").write_text(OPERATOR_SPEC)
        variants = {
            "floor": ([sys.executable, "-c", "pass"], plain),
            "validate": ([CLI, "validate", "specs/"], plain),
            "operator": ([CLI, "validate", "specs/"], operator),
        }
        runs: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, (cmd, cwd) in variants.items():
                runs[name].append(timed(cmd, cwd))
    medians = {name: statistics.median(times) for name, times in runs.items()}
    for name, value in medians.items():
        print(f"{name:<9} median {value * 1000:7.0f} ms   x{value / medians['floor']:5.1f} of floor   "
              f"(min {min(runs[name]) * 1000:.0f}, max {max(runs[name]) * 1000:.0f}, n={args.repeat})")
    print(json.dumps({"repeat": args.repeat, "median_s": {k: round(v, 4) for k, v in medians.items()}}))


if __name__ == "__main__":
    main()
