"""Issue 15 changed how the builders make DAGs, not what the dag-processor stores.

The builders wire edges with `dag_factory.builders.common.link`, not Airflow's `>>` (`>>`
re-hashes the whole DAG, Asset schedule included, for every edge), and give the mapped
`process_partition` a two-line callable (Airflow reads a mapped callable's source at every
serialization). Every DAG is serialized (`DagSerialization.to_dict`, what
`airflow/dag_processing/processor.py` sends to the DB in 3.3) and compared byte for byte with
the same specs built through the reference path: the same builders with every `link` turned
back into `>>` and the runtime function itself as the mapped callable. Two spec trees: a copy of
the tests' example specs, and a generated fleet of 30 models with live data. A worker's task-run
parse (parsing context = one DAG id) builds that DAG byte-identical to the dag-processor's parse.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from airflow.sdk.definitions.dag import DAG
from airflow.serialization.serialized_objects import DagSerialization

from dag_factory.builders import common
from dag_factory.builders import streaming as streaming_builder
from dag_factory.builders.register import register_dags
from dag_factory.kinds import KINDS
from dag_factory.runtime import streaming as streaming_runtime
from dag_factory.settings import LIVE_VARIABLE
from dag_factory.specs import resolved
from tests.support import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.parse import generate_workload  # noqa: E402

FLEET = 30
# every builder module imported, so that reference_path finds each one that uses `link`
BUILDERS = tuple(importlib.import_module(kind.builder.partition(":")[0]) for kind in KINDS.values())


@pytest.fixture
def fleet(tmp_path: Path, specs_dir: Path) -> tuple[Path, str]:
    """30 generated models (cycling the example specs) and their live snapshot (the Variable's value)."""
    workload = generate_workload(tmp_path / "fleet", FLEET, specs_dir=specs_dir)
    return workload.specs_dir, workload.live_file.read_text()


def parse(specs: Path, dag_id: str | None = None) -> dict[str, DAG]:
    """What the entry file builds (register_dags), as the dag-processor (dag_id None) or a worker."""
    namespace: dict[str, Any] = {"__file__": str(specs.parent / "dags" / "model_dags.py")}
    with pytest.MonkeyPatch.context() as mp:
        if dag_id is None:
            mp.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
        else:
            mp.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", dag_id)
        return register_dags(namespace, specs)


def serialized(dags: dict[str, DAG]) -> dict[str, str]:
    """DAG id -> the JSON text of what the dag-processor stores (key order kept: byte for byte)."""
    return {dag_id: json.dumps(DagSerialization.to_dict(dag)) for dag_id, dag in sorted(dags.items())}


def reference_path(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The builders as before issue 15: every builder module's `link` becomes Airflow's own `>>`
    (the edges recorded, to prove the path was taken), the mapped task gets the runtime function,
    `DAG()` reads its config defaults itself for every DAG, and the docs' JSON comes from json."""
    assert streaming_builder.process_partition is not streaming_runtime.process_partition
    monkeypatch.setattr(streaming_builder, "process_partition", streaming_runtime.process_partition)
    monkeypatch.setattr(common, "_read_config_defaults", dict)
    monkeypatch.setattr(resolved, "indented_json",
                        lambda value: json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False))
    monkeypatch.setenv("DAG_FACTORY_SPEC_CACHE", "off")  # every YAML parsed, not what the first parse cached
    edges: list[tuple[str, str]] = []

    def shift(up, down) -> None:
        edges.append((up.node_id, down.node_id))
        up >> down

    patched, ours = 0, common.link
    for name, module in list(sys.modules.items()):
        if name.startswith("dag_factory.builders.") and getattr(module, "link", None) is ours:
            monkeypatch.setattr(module, "link", shift)
            patched += 1
    assert patched >= 2, "no builder module wires through common.link any more: update this test"
    return edges


def dag_hashes(build: Callable[[], dict[str, DAG]]) -> tuple[dict[str, DAG], int]:
    """Run `build`, counting calls of Airflow's `DAG.__hash__` (a profile hook; nothing replaced)."""
    code = DAG.__hash__.__code__
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        if event == "call" and frame.f_code is code:
            calls += 1

    sys.setprofile(profile)
    try:
        dags = build()
    finally:
        sys.setprofile(None)
    return dags, calls


def relatives(dags: dict[str, DAG]) -> dict[str, dict[str, tuple[list[str], list[str]]]]:
    """Both directions of every task's edges: what a worker's parse runs with (the serialized form
    keeps only the downstream ids)."""
    return {dag_id: {t.task_id: (sorted(t.upstream_task_ids), sorted(t.downstream_task_ids)) for t in dag.tasks}
            for dag_id, dag in sorted(dags.items())}


def edge_count(dags: dict[str, DAG]) -> int:
    return sum(len(task.downstream_task_ids) for dag in dags.values() for task in dag.tasks)


def assert_same_as_reference(monkeypatch: pytest.MonkeyPatch, specs: Path) -> dict[str, str]:
    ours, our_hashes = dag_hashes(lambda: parse(specs))
    mine = serialized(ours)
    with monkeypatch.context() as mp:
        made = reference_path(mp)
        reference, reference_hashes = dag_hashes(lambda: parse(specs))
        theirs = serialized(reference)
    assert made, "the reference build made no edge through `>>`"
    assert sorted(mine) == sorted(theirs)
    different = [dag_id for dag_id in mine if mine[dag_id] != theirs[dag_id]]
    assert not different, f"serialized differently from the reference path: {different}"
    assert relatives(ours) == relatives(reference)
    # not a test of speed: of where the hashes come from. Airflow hashes the DAG twice per `>>`
    # edge; ours leaves only Airflow's own edges (the mapped task's XComArg), fewer than one per DAG.
    assert edge_count(ours) > len(ours)
    assert reference_hashes >= 2 * len(made)
    assert our_hashes < len(ours), (our_hashes, len(ours))
    return mine


def test_example_specs_serialize_exactly_as_before(monkeypatch, specs_dir):
    monkeypatch.delenv("AIRFLOW_VAR_" + LIVE_VARIABLE.upper(), raising=False)
    mine = assert_same_as_reference(monkeypatch, specs_dir)
    assert {dag_id.rpartition("__")[2] for dag_id in mine} == {"train", "deploy", "stream"}


def test_airflow_config_defaults_are_the_configured_ones(monkeypatch, specs_dir):
    """The config values a build passes to every DAG are the ones `DAG()` would read itself."""
    monkeypatch.delenv("AIRFLOW_VAR_" + LIVE_VARIABLE.upper(), raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG", "7")
    monkeypatch.setenv("AIRFLOW__CORE__MAX_CONSECUTIVE_FAILED_DAG_RUNS_PER_DAG", "3")
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DISABLE_BUNDLE_VERSIONING", "True")
    assert_same_as_reference(monkeypatch, specs_dir)
    dags = parse(specs_dir).values()
    assert {(d.max_active_tasks, d.max_consecutive_failed_dag_runs, d.disable_bundle_versioning)
            for d in dags} == {(7, 3, True)}


def test_a_generated_fleet_with_live_data_serializes_exactly_as_before(monkeypatch, fleet):
    specs, live = fleet
    monkeypatch.setenv("AIRFLOW_VAR_" + LIVE_VARIABLE.upper(), live)
    mine = assert_same_as_reference(monkeypatch, specs)
    assert len(mine) == FLEET * 8 // 3, sorted(mine)[:5]
    # the live data is in the DAGs (else this would only repeat the example test)
    assert any('"model_00030"' in text for dag_id, text in mine.items() if dag_id.startswith("model_00030__"))


def test_a_task_run_parse_builds_the_dag_the_processor_built(monkeypatch, fleet):
    specs, live = fleet
    monkeypatch.setenv("AIRFLOW_VAR_" + LIVE_VARIABLE.upper(), live)
    full = serialized(parse(specs))
    for dag_id, text in full.items():
        one = serialized(parse(specs, dag_id=dag_id))
        assert list(one) == [dag_id]
        assert one[dag_id] == text, f"{dag_id}: the task-run parse serializes differently"


def test_an_operator_with_its_own_edge_code_still_gets_it(tmp_path, monkeypatch, specs_dir):
    """`link` takes `>>` when a custom step's operator overrides what `>>` calls."""
    module = tmp_path / "edge_hook_operator.py"
    module.write_text(
        "from airflow.sdk import BaseOperator\n\n\n"
        "class Recording(BaseOperator):\n"
        "    calls = []\n\n"
        "    def update_relative(self, other, upstream=True, edge_modifier=None):\n"
        "        Recording.calls.append((self.task_id, other.task_id, upstream))\n\n"
        "    def execute(self, context):\n"
        "        return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DAG_FACTORY_ALLOWED_CODE", "edge_hook_operator")  # a code allowlist, where there is one
    spec = specs_dir / "churn_predictor.yaml"
    text = spec.read_text()
    assert "\ndeployment:\n" in text
    spec.write_text(text.replace("\ndeployment:\n", "\ndeployment:\n  steps:\n"
                                 "    - id: recorded\n"
                                 "      operator: edge_hook_operator.Recording\n"
                                 "      after: deployed\n", 1))
    dags = parse(specs_dir)
    recording = importlib.import_module("edge_hook_operator").Recording
    assert dags["churn_predictor__deploy"].get_task("recorded").upstream_task_ids == {"deployed"}
    assert recording.calls == [("recorded", "deployed", True)]  # `>>` told the downstream task
