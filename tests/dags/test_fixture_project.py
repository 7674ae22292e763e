"""The tests' own project (tests/fixtures/project, see tests/support.py) stays what the tests assume:
its entry files are the repository's (so every DAG test exercises the real ones), and its specs
are exactly the models the tests name."""

from __future__ import annotations

import re

from dag_factory.specs import load_specs
from tests.support import DAGS, MODELS, REPO_DAGS, ROOT, SPECS


def _python_files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.suffix == ".py"}


def test_the_fixture_entry_files_are_byte_identical_to_the_repositorys():
    repo, fixture = _python_files(REPO_DAGS), _python_files(DAGS)
    assert repo, f"no entry files in {REPO_DAGS}"
    assert sorted(fixture) == sorted(repo), "copy the repository's dags/*.py into tests/fixtures/project/dags/"
    for name, content in repo.items():
        assert fixture[name] == content, f"tests/fixtures/project/dags/{name} differs from dags/{name}: copy it"


def test_the_fixture_specs_are_the_models_the_tests_name():
    result = load_specs([SPECS])
    assert not result.errors, result.errors
    assert sorted(s.name for s in result.specs) == sorted(MODELS)


def test_the_fixture_specs_name_an_existing_schema_for_editors():
    for path in sorted(SPECS.glob("*.yaml")):
        match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", path.read_text().splitlines()[0])
        assert match, f"{path.name}: no editor schema line"
        schema = (path.parent / match.group(1)).resolve()
        assert schema.parent == ROOT / "schemas" and schema.is_file(), (path.name, match.group(1))
