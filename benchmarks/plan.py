"""`dag-factory plan` on a large fleet, side by side with two plain DagBag parses of the same trees.

    .venv/bin/python benchmarks/plan.py [--models 1000] [--repeat 3] [--scenarios section,common] [--json out.json]

The fleet: N specs cloning the examples in specs/ (churn_predictor, demand_forecast, fraud_scorer;
only `model:` and the file name change) plus specs/_defaults.yaml, as `base/specs`; `head/specs`
is the same fleet with one change to `_defaults.yaml`:

- `section`: `training.retries` 2 -> 3 (every training DAG changes, the other kinds do not)
- `common`: `start_date` changes (every DAG of every kind changes: the worst case for plan)

Per repetition and scenario, each variant runs in a fresh interpreter (Airflow imported before
the clock starts), the variants alternating:

- `plan`: `load_side` of both trees + `compare` + the markdown rendering (what `dag-factory plan
  --base-dir` does after its imports)
- `plan, GC on`: the same with Python's cyclic garbage collector left on (`compare` pauses it)
- `parse x2`: `DagBag(dag_folder=...)` of an entry file for the base tree, then one for the head
  tree (what a plan by parsing both sides would cost at the least, without serialization)

Reports medians of wall time, CPU time and peak RSS, and the ratios to parse x2. A
benchmark, not a test: it asserts nothing about time; it prints how many DAGs the plan found
changed, so a plan that skipped work it should have done shows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("churn_predictor", "demand_forecast", "fraud_scorer")
SCENARIOS = {
    "section": ("  retries: 2\n  retry_delay: 5m", "  retries: 3\n  retry_delay: 5m"),
    "common": ('start_date: "2024-01-01"', 'start_date: "2024-02-01"'),
}
CHILD_TIMEOUT_S = 1200

CHILD = r'''
import json, os, sys, time
mode, base, head, out = sys.argv[1:5]
import airflow.sdk  # noqa: F401 - imported before the clock starts, like the dag-processor
from airflow.dag_processing.dagbag import DagBag
from datetime import datetime, timezone
from dag_factory.plan.sides import compare, load_side
from dag_factory.plan.render import to_markdown
result = {}
cpu0 = time.process_time()
t0 = time.perf_counter()
if mode.startswith("plan"):
    if mode == "plan-gc":  # the collector left on, to measure what pausing it saves
        import contextlib
        import dag_factory.plan.sides as sides
        sides.gc_paused = contextlib.nullcontext
    plan = compare(load_side(__import__("pathlib").Path(base), None, "base"),
                   load_side(__import__("pathlib").Path(head), None, "head"),
                   datetime(2026, 1, 1, tzinfo=timezone.utc))
    text = to_markdown(plan)
    result["changed"] = len(plan.of("changed"))
    result["unchanged"] = plan.unchanged
    result["markdown_bytes"] = len(text.encode())
else:
    dags = 0
    for folder in (base, head):
        bag = DagBag(dag_folder=os.path.join(os.path.dirname(folder), "dags"))
        assert not bag.import_errors, bag.import_errors
        dags += len(bag.dags)
    result["dags"] = dags
result["seconds"] = time.perf_counter() - t0
result["cpu_seconds"] = time.process_time() - cpu0
import resource
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
with open(out, "w") as fh:
    json.dump(result, fh)
'''

ENTRY = "# airflow dag\nfrom dag_factory import register_dags\n\nregister_dags(globals(), specs_dir={specs!r})\n"


def write_fleet(folder: Path, n: int, defaults: str) -> Path:
    """`folder/specs` with N cloned example specs and `folder/dags/model_dags.py` over it."""
    specs = folder / "specs"
    specs.mkdir(parents=True)
    (specs / "_defaults.yaml").write_text(defaults, encoding="utf-8")
    texts = [(name, (ROOT / "specs" / f"{name}.yaml").read_text(encoding="utf-8")) for name in EXAMPLES]
    for i in range(n):
        name, text = texts[i % len(texts)]
        model = f"model_{i + 1:05d}"
        (specs / f"{model}.yaml").write_text(text.replace(f"model: {name}", f"model: {model}"), encoding="utf-8")
    (folder / "dags").mkdir()
    (folder / "dags" / "model_dags.py").write_text(ENTRY.format(specs=str(specs)), encoding="utf-8")
    return specs


def run_child(mode: str, base: Path, head: Path, work: Path) -> dict:
    out = work / f"{mode}.json"
    home = work / "airflow_home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "DAG_FACTORY_"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(ROOT)})
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(base), str(head), str(out)], env=env,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000, help="N specs (default: 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default: 3)")
    parser.add_argument("--scenarios", default="section,common", help="comma-separated (default: section,common)")
    parser.add_argument("--json", help="write every run and the medians here (default: off)")
    args = parser.parse_args()
    defaults = (ROOT / "specs" / "_defaults.yaml").read_text(encoding="utf-8")
    report: dict = {"models": args.models, "repeat": args.repeat, "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="dag_factory_plan_bench_") as tmp:
        for scenario in args.scenarios.split(","):
            old, new = SCENARIOS[scenario]
            assert old in defaults, f"{scenario}: {old!r} not in specs/_defaults.yaml"
            work = Path(tmp) / scenario
            base = write_fleet(work / "base", args.models, defaults)
            head = write_fleet(work / "head", args.models, defaults.replace(old, new))
            runs: dict[str, list[dict]] = {"plan": [], "plan, GC on": [], "parse x2": []}
            for _ in range(args.repeat):
                runs["plan"].append(run_child("plan", base, head, work))
                runs["plan, GC on"].append(run_child("plan-gc", base, head, work))
                runs["parse x2"].append(run_child("parse", base, head, work))
            medians = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
            cpu = {k: statistics.median(r["cpu_seconds"] for r in v) for k, v in runs.items()}
            rss = {k: statistics.median(r["peak_rss_mb"] for r in v) for k, v in runs.items()}
            first = runs["plan"][0]
            report["scenarios"][scenario] = {"runs": runs, "medians": medians, "cpu_medians": cpu, "rss_medians": rss}
            print(f"{scenario}: N={args.models}, {runs['parse x2'][0]['dags'] // 2} DAGs a side; the plan found "
                  f"{first['changed']} changed, {first['unchanged']} unchanged (markdown {first['markdown_bytes']:,} "
                  f"bytes)", flush=True)
            for variant in runs:
                print(f"  {variant:<16} {medians[variant]:6.2f} s wall ({medians[variant] / medians['parse x2']:.2f}"
                      f" of parse x2)  {cpu[variant]:6.2f} s CPU ({cpu[variant] / cpu['parse x2']:.2f})  "
                      f"peak RSS {rss[variant]:,.0f} MB", flush=True)
            shutil.rmtree(work)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
