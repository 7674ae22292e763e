"""The JSON Schemas are complete (descriptions, no unknown keys) and accept real specs (the fixture
project's; the repository's examples are checked in tests/examples)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, SPECS

# The live-record schema is deliberately open to new backend fields; specs are closed.
SCHEMAS = [ROOT / "schemas" / "spec.schema.json", ROOT / "schemas" / "defaults.schema.json"]


def walk(node, path="#"):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


@pytest.mark.parametrize("schema_file", SCHEMAS, ids=lambda p: p.name)
def test_every_property_is_described_and_objects_are_closed(schema_file):
    schema = json.loads(schema_file.read_text())
    for path, node in walk(schema):
        for name, prop in (node.get("properties") or {}).items():
            if path.endswith("/properties"):
                continue  # a property literally named "properties"
            assert "description" in prop or "$ref" in prop and "description" in _deref(schema, prop), \
                f"{schema_file.name}{path}/properties/{name} has no description"
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{schema_file.name}{path} accepts unknown keys"


def _deref(schema, prop):
    ref = prop["$ref"]
    if not ref.startswith("#/"):
        return {"description": "external"}
    node = schema
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_check_jsonschema_accepts_real_specs():
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    specs = sorted(str(p) for p in SPECS.glob("[!_]*.yaml"))
    assert specs
    run = subprocess.run([exe, "--schemafile", str(ROOT / "schemas/spec.schema.json"), *specs],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    run = subprocess.run([exe, "--schemafile", str(ROOT / "schemas/defaults.schema.json"),
                          str(SPECS / "_defaults.yaml")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    bad = subprocess.run([exe, "--schemafile", str(ROOT / "schemas/spec.schema.json"), str(ROOT / "schemas/spec.schema.json")],
                         capture_output=True, text=True)
    assert bad.returncode == 1  # the schema itself is no spec: the check can fail
