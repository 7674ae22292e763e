"""The scoped GC of register_dags (issue 15, DAG_FACTORY_PARSE_GC, dag_factory/builders/gc_scope.py).

The cyclic GC is paused while the fleet is built and the caller's state comes back afterwards
(enabled stays enabled, disabled stays disabled, also when the build raises). gc.freeze() happens
only in the dag-processor's parse child (simulated here with the markers it sets, and once through
Airflow's own processor._parse_file) and never in pytest, a worker's task-run parse or with `off`.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, Callable

import pytest

from dag_factory.builders import gc_scope
from dag_factory.builders import register as register_module
from dag_factory.builders.register import register_dags

PROCESSOR = "airflow.dag_processing.processor"


@pytest.fixture
def freezes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every gc.freeze() call (recorded, not done: the test process must not freeze its objects)."""
    calls: list[bool] = []
    monkeypatch.setattr(gc_scope.gc, "freeze", lambda: calls.append(True))
    return calls


@pytest.fixture
def gc_during_build(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """gc.isenabled() as seen by build_dags, once per register_dags call."""
    seen: list[bool] = []
    real = register_module.build_dags

    def spy(*args: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(register_module, "build_dags", spy)
    return seen


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DAG_FACTORY_PARSE_GC", "_AIRFLOW_PROCESS_CONTEXT", "_AIRFLOW_PARSING_CONTEXT_DAG_ID",
                 "_AIRFLOW_PARSING_CONTEXT_TASK_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def restore_gc() -> Any:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def as_processor_child(call: Callable[[], Any]) -> Any:
    """Run `call` from a function `_parse_file` of module airflow.dag_processing.processor: the frame
    the dag-processor's parse child has on its stack while BundleDagBag imports the entry file."""
    import airflow.dag_processing.processor  # noqa: F401 - loaded in the real child

    namespace: dict[str, Any] = {"__name__": PROCESSOR}
    exec("def _parse_file(call):\n    return call()\n", namespace)
    return namespace["_parse_file"](call)


def build(specs_dir: Path) -> dict[str, Any]:
    return register_dags({"__file__": str(specs_dir.parent / "dags" / "model_dags.py")}, specs_dir)


def test_an_enabled_gc_is_paused_during_the_build_and_enabled_after_it(specs_dir: Path, gc_during_build: list[bool],
                                                                       freezes: list[bool]) -> None:
    gc.enable()
    assert build(specs_dir)
    assert gc_during_build == [False]
    assert gc.isenabled()
    assert freezes == []  # pytest is not the dag-processor's child


def test_a_disabled_gc_stays_disabled(specs_dir: Path, gc_during_build: list[bool], freezes: list[bool]) -> None:
    gc.disable()
    assert build(specs_dir)
    assert gc_during_build == [False]
    assert not gc.isenabled()


@pytest.mark.parametrize("enabled", [True, False])
def test_the_gc_state_comes_back_when_the_build_raises(specs_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                       freezes: list[bool], enabled: bool) -> None:
    def boom(*args: Any, **kwargs: Any) -> dict[str, Any]:
        assert not gc.isenabled()
        raise RuntimeError("boom")

    monkeypatch.setattr(register_module, "build_dags", boom)
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    (gc.enable if enabled else gc.disable)()
    with pytest.raises(RuntimeError, match="boom"):
        as_processor_child(lambda: build(specs_dir))
    assert gc.isenabled() is enabled
    assert freezes == []  # a failed build is not frozen


def test_the_processor_child_freezes_after_the_build_then_enables_the_gc(specs_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         gc_during_build: list[bool]) -> None:
    order: list[str] = []
    monkeypatch.setattr(gc_scope.gc, "freeze", lambda: order.append(f"freeze, gc enabled={gc.isenabled()}"))
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    gc.enable()
    assert as_processor_child(lambda: build(specs_dir))
    assert order == ["freeze, gc enabled=False"]  # frozen before the pause ends: the pause's objects are never scanned
    assert gc.isenabled()


@pytest.mark.parametrize("context, dag_id, in_child", [
    (None, None, True),                       # pytest, dag.test(), a script: no process context
    ("server", None, True),                   # the manager, scheduler, api-server
    ("client", None, False),                  # "client" without the processor's frame (triggerer runner, ...)
    ("client", "m__train", True),             # a worker's task-run parse names its DAG
])
def test_no_freeze_outside_the_processor_child(specs_dir: Path, monkeypatch: pytest.MonkeyPatch, freezes: list[bool],
                                               context: str | None, dag_id: str | None, in_child: bool) -> None:
    if context:
        monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", context)
    if dag_id:
        monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", dag_id)
    (as_processor_child if in_child else (lambda call: call()))(lambda: build(specs_dir))
    assert freezes == []


def test_pause_mode_pauses_without_freezing(specs_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                            gc_during_build: list[bool], freezes: list[bool]) -> None:
    monkeypatch.setenv("DAG_FACTORY_PARSE_GC", "pause")
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    gc.enable()
    as_processor_child(lambda: build(specs_dir))
    assert gc_during_build == [False] and freezes == [] and gc.isenabled()


def test_off_leaves_the_gc_alone(specs_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                 gc_during_build: list[bool], freezes: list[bool]) -> None:
    monkeypatch.setenv("DAG_FACTORY_PARSE_GC", "off")
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    gc.enable()
    as_processor_child(lambda: build(specs_dir))
    assert gc_during_build == [True] and freezes == [] and gc.isenabled()


def test_an_unknown_mode_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAG_FACTORY_PARSE_GC", "fast please")
    assert gc_scope.mode() == "pause-freeze"
    monkeypatch.setenv("DAG_FACTORY_PARSE_GC", " OFF ")
    assert gc_scope.mode() == "off"


def test_the_marker_matches_airflows_own_parse_child(tmp_path: Path, specs_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     freezes: list[bool]) -> None:
    """Airflow's real processor._parse_file (what _parse_file_entrypoint calls after setting
    _AIRFLOW_PROCESS_CONTEXT=client) parses an entry file: the factory freezes once, and the DAGs it
    sends are the ones a plain build makes."""
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file

    dags = tmp_path / "dags"
    dags.mkdir()
    entry = dags / "model_dags.py"
    entry.write_text("from dag_factory import register_dags\n\n"
                     f"register_dags(globals(), {str(specs_dir)!r})  # airflow dag\n")
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    gc.enable()
    result = _parse_file(DagFileParseRequest(file=str(entry), bundle_path=tmp_path, bundle_name="dags-folder"),
                         log=__import__("structlog").get_logger())
    assert result is not None and not result.import_errors
    assert freezes == [True]
    assert gc.isenabled()
    assert sorted(d.dag_id for d in result.serialized_dags) == sorted(build(specs_dir))
    assert freezes == [True]  # the plain build (no processor frame) did not freeze
