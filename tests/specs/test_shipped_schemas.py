"""The package ships the JSON Schemas it validates with; `schemas/` at the top level is the one
source (and the editor schema people point their IDE at). The shipped copies must not drift."""

from __future__ import annotations

from importlib import resources

from tests.support import ROOT


def test_shipped_schemas_are_byte_identical_to_the_published_ones():
    published = {p.name: p.read_bytes() for p in (ROOT / "schemas").glob("*.json")}
    shipped = {p.name: p.read_bytes() for p in resources.files("dag_factory").joinpath("schemas").iterdir()
               if p.name.endswith(".json")}
    assert published, "no schemas/ at the top level"
    assert shipped == published, "dag_factory/schemas/ differs from schemas/: copy schemas/*.json into dag_factory/schemas/"


def test_validation_reads_the_shipped_schemas_without_a_checkout(tmp_path, monkeypatch):
    from dag_factory.specs import schema

    monkeypatch.delenv("DAG_FACTORY_SCHEMAS", raising=False)
    assert schema.read_schema(schema.SPEC_SCHEMA).encode() == (ROOT / "schemas" / schema.SPEC_SCHEMA).read_bytes()
    monkeypatch.setenv("DAG_FACTORY_SCHEMAS", str(tmp_path))
    try:
        schema.read_schema(schema.SPEC_SCHEMA)
    except FileNotFoundError as exc:
        assert "DAG_FACTORY_SCHEMAS" in str(exc) and str(tmp_path) in str(exc)
    else:
        raise AssertionError("an empty $DAG_FACTORY_SCHEMAS folder must be an error, not a silent fallback")
