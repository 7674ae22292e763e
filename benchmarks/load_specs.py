"""How long loading and validating N generated specs takes (what `dag-factory validate` does).

    .venv/bin/python benchmarks/load_specs.py [--models 1000] [--repeat 7]

Each repetition runs in a fresh process (cold caches, imports included separately), and the
median is reported; the figure goes into the README. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from dag_factory.specs import load_specs
t1 = time.perf_counter()
result = load_specs([sys.argv[1]], check_imports=False)
t2 = time.perf_counter()
assert result.ok and len(result.specs) == int(sys.argv[2]), result.errors[:3]
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1}))
"""


def generate(folder: Path, models: int) -> None:
    """N specs shaped like the examples: a third with all three DAGs, custom steps included."""
    shutil.copy(ROOT / "specs" / "_defaults.yaml", folder / "_defaults.yaml")
    examples = [p for p in sorted((ROOT / "specs").glob("[!_]*.yaml"))]
    for i in range(models):
        source = examples[i % len(examples)]
        text = source.read_text()
        name = source.stem
        (folder / f"{name}_{i:05d}.yaml").write_text(text.replace(f"model: {name}", f"model: {name}_{i:05d}", 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), args.models)
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, "-c", _CHILD, tmp, str(args.models)],
                                 check=True, capture_output=True, text=True, cwd=ROOT)
            runs.append(json.loads(out.stdout))
    load = statistics.median(r["load_s"] for r in runs)
    imp = statistics.median(r["import_s"] for r in runs)
    result = {"models": args.models, "repeat": args.repeat, "median_load_s": round(load, 3),
              "median_import_s": round(imp, 3), "min_load_s": round(min(r["load_s"] for r in runs), 3),
              "max_load_s": round(max(r["load_s"] for r in runs), 3)}
    print(f"load+validate {args.models} specs: median {load:.3f} s "
          f"(min {result['min_load_s']:.3f}, max {result['max_load_s']:.3f}, n={args.repeat}); "
          f"import of dag_factory.specs: median {imp:.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
