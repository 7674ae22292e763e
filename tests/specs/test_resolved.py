"""The resolved-spec block of a DAG's docs: the same text as json's indenting encoder, no cycles."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from dag_factory.specs import load_specs
from dag_factory.specs.resolved import indented_json, plain, section_doc

ROOT = Path(__file__).resolve().parents[2]


def reference(value: object) -> str:
    return json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False)


@pytest.mark.parametrize("value", [
    {}, [], (), "", 0, -1, 10**30, 1.5, -0.0, 1e100, float("inf"), float("nan"), True, False, None,
    "plain", 'quote " and \\ back', "new\nline\ttab\x00\x1f", "ünïcødé ✓ 🚀", "\u2028\u2029",
    {"b": 1, "a": [1, {"d": [], "c": {}}], "é": {"x": None}},
    [[], [[]], [{}], {"k": [1, 2, [3, [4, {}]]]}],
    {"a": (1, 2), "b": ("x",)},
    {1: "int key", 2.5: "float key"}, {True: 1}, {None: 0},
    {"nested": {"deeper": {"deepest": {"list": [{"a": 1}, {"b": [True, False, None]}]}}}},
])
def test_the_same_text_as_json(value: object) -> None:
    assert indented_json(value) == reference(value)


def test_every_example_specs_docs_are_unchanged() -> None:
    """The serialized DAGs keep their bytes: each section's block is json.dumps's text."""
    specs = [s for s in load_specs([ROOT / "specs"], check_imports=False).specs if not s.template]
    assert specs
    for spec in specs:
        for kind in spec.kinds:
            expected = reference({"owner": spec.owner, kind: plain(getattr(spec, kind))})
            assert f"```json\n{expected}\n```" in section_doc(spec, kind)


def test_what_json_refuses_is_refused() -> None:
    with pytest.raises(TypeError):
        indented_json({"when": object()})
    with pytest.raises(TypeError):
        indented_json({("tuple", "key"): 1})


def test_no_garbage_cycles() -> None:
    """json's indenting encoder leaves its closures in cycles; with the GC paused they piled up."""
    spec = next(s for s in load_specs([ROOT / "specs"], check_imports=False).specs if not s.template)
    kind = spec.kinds[0]
    section_doc(spec, kind)  # warm up (imports, caches)
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(50):
            section_doc(spec, kind)
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()
