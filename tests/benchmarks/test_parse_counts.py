"""The parse counts that must not grow with the fleet (no timing; times live in benchmarks/parse.py).

Each parse runs in a fresh process on a workload from the benchmark's own generator (N specs
cycling the tests' fixture specs, tests/support.py; `_defaults.yaml`; a live snapshot for the N
models), with counters on `airflow.sdk.Variable.get` and on the spec files opened:

- a full parse of dags/model_dags.py reads at most two Variables, at N=10 as at N=300;
- a task-run parse (parsing context = one DAG) builds exactly that DAG, reads only its
  model's spec file (plus `_defaults.yaml`) and at most two Variables, at N=10, 300 and 1000;
- the fleet split across K=3 entry files (N=300): each file's parse reads one Variable, and
  the files together build exactly the single file's DAG ids, each in one file only.

N=1000 only for the task-run parse (~3 s with Airflow's import): a full parse of 1,000 models
is ~10-30 s even without serialization (Airflow's import included; more when the machine is
busy), too slow here next to the rest, and adds nothing for the Variable count that N=300 does not
catch (a read per model, or per DAG, shows as hundreds of reads at
N=300; the task-run parse at N=1000 runs the same read-the-snapshot-once code path as a full one).
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.parse import generate_workload, run_child, run_split, run_variant  # noqa: E402
from tests.support import SPECS  # noqa: E402

SIZES = (10, 300)           # full parses (dags/model_dags.py without a parsing context)
TASK_SIZES = (10, 300, 1000)  # task-run parses (one DAG): cheap whatever N
SPLIT = (300, 3)            # N, K for the split fleet
MAX_VARIABLE_READS = 2


@pytest.fixture(scope="module")
def workloads(tmp_path_factory) -> dict:
    return {n: generate_workload(tmp_path_factory.mktemp(f"workload_{n}"), n, specs_dir=SPECS)
            for n in sorted({*SIZES, *TASK_SIZES, SPLIT[0]})}


@pytest.fixture(scope="module")
def parse(workloads):
    """(variant, N) -> the child's counts; each parse once per module."""
    done: dict = {}

    def get(variant: str, n: int) -> dict:
        if (variant, n) not in done:
            done[variant, n] = run_variant(workloads[n], variant, serialize=False)
        return done[variant, n]

    return get


def _no_crash(result: dict) -> None:
    """The parse ran and imported cleanly (a task-count mismatch is the benchmark's business, not this test's)."""
    assert "dag_tasks" in result, result["problems"]
    assert result["import_errors"] == {}, result["import_errors"]
    assert not any("metadata DB" in p for p in result["problems"]), result["problems"]


def test_the_counters_count(tmp_path):
    """The harness itself: every Variable.get route and every spec-file open is seen."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text("x: 1\n")
    (specs / "b.yml").write_text("x: 2\n")
    (specs / "notes.txt").write_text("not a spec\n")
    dag_file = tmp_path / "dags" / "counting_dag.py"
    dag_file.parent.mkdir()
    dag_file.write_text(textwrap.dedent(f"""
        # airflow DAG file for the counter self-test
        from pathlib import Path
        from airflow.sdk import DAG, Variable
        from airflow.sdk.definitions.variable import Variable as DefinitionsVariable

        Variable.get("one", default=None)
        Variable.get("two", default=None)
        DefinitionsVariable.get("one", default=None)
        Path({str(specs / 'a.yaml')!r}).read_bytes()
        open({str(specs / 'b.yml')!r}).close()
        open({str(specs / 'a.yaml')!r}, "rb").close()
        Path({str(specs / 'notes.txt')!r}).read_text()
        with DAG("counter_self_test", schedule=None) as dag:
            pass
    """))
    result = run_child(dag_file, scratch=tmp_path / "runs", watch=specs, serialize=False)
    assert result["ok"], result["problems"]
    assert result["dags"] == 1
    assert result["variable_reads"] == 3
    assert result["variable_keys"] == {"one": 2, "two": 1}
    assert [Path(p).name for p in result["spec_files_read"]] == ["a.yaml", "b.yml"]
    assert result["spec_file_opens"] == 3


def test_the_generated_live_records_are_valid(workloads):
    records = json.loads(workloads[10].live_file.read_text())["models"]
    assert sorted(records) == workloads[10].model_names
    try:
        from dag_factory.live.records import record_problem
    except ImportError:
        pytest.skip("dag_factory.live.records is not there")
    assert {name: record_problem(r) for name, r in records.items()} == {name: None for name in records}


@pytest.mark.parametrize("n", SIZES)
def test_a_full_parse_reads_at_most_two_variables(parse, workloads, n):
    result = parse("factory", n)
    _no_crash(result)
    assert set(result["dag_tasks"]) == set(workloads[n].expected)
    assert result["variable_reads"] <= MAX_VARIABLE_READS, result["variable_keys"]
    assert sum(result["variable_backend_lookups"].values()) <= MAX_VARIABLE_READS, result["variable_backend_lookups"]


@pytest.mark.parametrize("n", TASK_SIZES)
def test_a_task_run_parse_builds_one_dag_from_its_own_spec(parse, workloads, n):
    wl = workloads[n]
    result = parse("factory_task", n)
    _no_crash(result)
    assert list(result["dag_tasks"]) == [wl.task_dag_id]
    models_read = [p for p in result["spec_files_read"] if not Path(p).name.startswith("_")]
    assert models_read == [str(wl.task_spec_file.resolve())]
    assert result["variable_reads"] <= MAX_VARIABLE_READS, result["variable_keys"]


def test_the_counts_do_not_grow_with_n(parse):
    small, large = SIZES
    assert parse("factory", large)["variable_reads"] <= max(parse("factory", small)["variable_reads"], 1)
    small_task = parse("factory_task", TASK_SIZES[0])
    for n in TASK_SIZES[1:]:
        task = parse("factory_task", n)
        assert task["variable_reads"] <= max(small_task["variable_reads"], 1), n
        assert len(task["spec_files_read"]) == len(small_task["spec_files_read"]), n


def test_split_entry_files_read_one_variable_each_and_build_the_single_files_dags(parse, workloads):
    n, k = SPLIT
    result = run_split(workloads[n], k, serialize=False)
    assert len(result["shards"]) == k
    for shard in result["shards"]:
        assert shard["ok"], (shard["entry"], shard["problems"])  # ran, no import errors, no DB
        assert shard["variable_reads"] == 1, (shard["entry"], shard["variable_keys"])
        assert sum(shard["variable_backend_lookups"].values()) == 1, (shard["entry"], shard["variable_backend_lookups"])
        assert shard["dags"] > 0, shard["entry"]  # 300 specs do reach all three files
    seen: dict[str, str] = {}
    for shard in result["shards"]:
        for dag_id in shard["dag_tasks"]:
            assert dag_id not in seen, f"{dag_id} in {seen[dag_id]} and {shard['entry']}"
            seen[dag_id] = shard["entry"]
    single = parse("factory", n)
    _no_crash(single)
    assert set(seen) == set(single["dag_tasks"])
    assert result["dag_tasks"] == single["dag_tasks"]  # and the same task counts
    assert result["ok"], result["problems"]  # the benchmark's own checks (the workload's DAGs, the right file)
