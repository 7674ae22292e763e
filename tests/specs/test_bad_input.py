"""Every kind of bad spec gets a located, plain error, and the good specs still load."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from dag_factory.specs import load_specs
from tests.support import MODELS


def load_with(specs_dir: Path, name: str, content: str | bytes):
    path = specs_dir / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = load_specs([specs_dir])
    assert sorted(s.name for s in result.specs) == sorted(MODELS), "the valid specs must still load"
    errors = [e for e in result.errors if e.file == str(path)]
    assert errors, f"no error reported for {name}: {result.errors}"
    assert {e.file for e in result.errors} == {str(path)}, "only the bad file may have errors"
    return errors


def test_yaml_syntax_error_points_at_the_line(specs_dir):
    [e] = load_with(specs_dir, "broken.yaml", "model: broken\ntraining:\n  gates: [auc >= 0.7\n  retries: 2\n")
    assert e.code == "yaml" and "YAML syntax error" in e.message
    assert e.line == 4 and e.column is not None


def test_empty_file(specs_dir):
    [e] = load_with(specs_dir, "empty.yaml", "# nothing yet\n\n")
    assert e.message == "file is empty" and (e.line, e.column) == (1, 1)
    assert "model:" in e.hint


def test_top_level_must_be_a_mapping(specs_dir):
    [e] = load_with(specs_dir, "list.yaml", "- model: a\n- model: b\n")
    assert "top level must be a mapping" in e.message and "found list" in e.message
    assert e.line == 1


def test_duplicate_keys_are_rejected(specs_dir):
    [e] = load_with(specs_dir, "dup.yaml", "model: dup\ntraining:\n  retries: 1\n  retries: 3\n")
    assert e.message == "duplicate key 'retries' (first defined on line 3)"
    assert (e.line, e.column) == (4, 3)


def test_python_tags_are_never_constructed(specs_dir, tmp_path):
    marker = tmp_path / "pwned"
    content = f"model: evil\ndescription: !!python/object/apply:os.system ['touch {marker}']\n"
    [e] = load_with(specs_dir, "evil.yaml", content)
    assert not marker.exists()
    assert "!!python/object/apply:os.system" in e.message and "not allowed" in e.message
    assert e.line == 2


@pytest.mark.parametrize(("value", "tag", "where"), [
    ("tags: !!set {a, b}", "!!set", (3, 7)),
    ("tags: [a, !!binary aGVsbG8=]", "!!binary", (3, 11)),
    ("description: !!timestamp 2020-01-01", "!!timestamp", (3, 14)),
])
def test_safe_tags_that_are_not_plain_data(specs_dir, value, tag, where):
    """Sets, bytes and dates: the schema validator raised on them, and one such file took every
    DAG of the entry file down."""
    [e] = load_with(specs_dir, "tagged.yaml", f"model: tagged\nowner: me\n{value}\n")
    assert e.code == "yaml" and f"tag {tag} is not allowed" in e.message
    assert (e.line, e.column) == where


# `on` and `null` are found by their parent only: the key's text is not what YAML made of it
@pytest.mark.parametrize(("key", "read_as", "line"), [("1", "1 (int)", 5), ("on", "True (bool)", 4),
                                                      ("null", "None (NoneType)", 4)])
def test_keys_yaml_reads_as_other_than_text(specs_dir, key, read_as, line):
    [e] = load_with(specs_dir, "keys.yaml", f"model: keys\nowner: me\ntraining:\n  hyperparameters:\n"
                                            f"    {key}: 3\n")
    assert e.message == f"a key is not text: YAML reads it as {read_as}"
    assert "quote the key" in e.hint and e.line == line


def test_values_the_validators_could_not_take(specs_dir):
    """A 5,000-digit number (Python refuses to convert it) and lists nested 900 deep (the validators
    recursed past Python's limit): each an error of its file, not of the parse."""
    [big] = load_with(specs_dir, "big.yaml", "model: big\nowner: me\ntraining:\n  hyperparameters: {x: "
                      + "1" * 5000 + "}\n")
    assert big.message.startswith("a value YAML cannot read")
    (specs_dir / "big.yaml").unlink()
    [deep] = load_with(specs_dir, "deep.yaml", "model: deep\nowner: me\ntraining:\n  hyperparameters:\n    x: "
                       + "[" * 900 + "]" * 900 + "\n")
    assert deep.message == "values nested more than 64 levels deep" and deep.line == 5


def test_alias_bomb_fails_fast_with_bounded_memory(specs_dir):
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    [e] = load_with(specs_dir, "bomb.yaml", "model: bomb\n" + "\n".join(rows) + "\n")
    assert time.monotonic() - started < 10  # a full expansion would be 10^9 values
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB
    assert "aliases expand to more than" in e.message and "alias bomb" in e.hint


def test_ten_megabyte_file_is_refused_unparsed(specs_dir):
    content = "model: huge\ndescription: '" + "x" * 10_000_000 + "'\n"
    [e] = load_with(specs_dir, "huge.yaml", content)
    assert "file is 10.0 MB" in e.message and "1024 KiB" in e.message


def test_bytes_that_are_not_utf8(specs_dir):
    [e] = load_with(specs_dir, "latin1.yaml", "model: latin\ndescription: caf\xe9\n".encode("latin-1"))
    assert "not UTF-8" in e.message and "0xe9" in e.message
    assert (e.line, e.column) == (2, 17)


def test_wrong_type(specs_dir):
    [e] = load_with(specs_dir, "types.yaml", "model: types\ntraining:\n  retries: two\n")
    assert e.message == 'expected integer, got string "two"'
    assert e.path == ("training", "retries") and (e.line, e.column) == (3, 12)


def test_missing_required_key(specs_dir):
    [e] = load_with(specs_dir, "nomodel.yaml", "owner: me\ntraining: {}\n")
    assert e.message == "missing required key 'model'" and e.line == 1


def test_unknown_key_suggests_the_right_one(specs_dir):
    [e] = load_with(specs_dir, "typo.yaml", "model: typo\ntraining:\n  schedual: '@daily'\n")
    assert e.message == "unknown key 'schedual'" and e.hint == "did you mean 'schedule'?"
    assert (e.line, e.column) == (3, 3) and e.dotted_path == "training.schedual"


def test_bad_cron(specs_dir):
    [e] = load_with(specs_dir, "cron.yaml", "model: cron\ntraining:\n  schedule: '61 * * * *'\n")
    assert "'61 * * * *' is not a valid cron expression" in e.message
    assert (e.line, e.column) == (3, 13)


@pytest.mark.parametrize("schedule, expected", [
    ("0 3 * *", "needs 5 fields"), ("@dayly", "unknown preset '@dayly'"), ("0s", "zero duration"),
])
def test_other_bad_schedules(specs_dir, schedule, expected):
    [e] = load_with(specs_dir, "sched.yaml", f"model: sched\ntraining:\n  schedule: '{schedule}'\n")
    assert expected in e.message


def test_two_files_declaring_the_same_model(specs_dir, tmp_path):
    (specs_dir / "twin.yaml").write_text("model: twin\ntraining: {}\n")
    (specs_dir / "twin.yml").write_text("# the same model again\nmodel: twin\n")
    other = tmp_path / "team_b"
    other.mkdir()
    (other / "churn_predictor.yaml").write_text("model: churn_predictor\n")
    result = load_specs([specs_dir, other])
    assert sorted(s.name for s in result.specs) == ["demand_forecast", "fraud_scorer"]
    by_file = {str(Path(e.file).relative_to(tmp_path)): e for e in result.errors}
    assert set(by_file) == {"specs/twin.yaml", "specs/twin.yml", "specs/churn_predictor.yaml",
                            "team_b/churn_predictor.yaml"}
    assert by_file["specs/twin.yaml"].message == f"model 'twin' is also defined in {specs_dir}/twin.yml"
    assert (by_file["specs/twin.yml"].line, by_file["specs/twin.yml"].column) == (2, 8)
    assert "is also defined in" in by_file["team_b/churn_predictor.yaml"].message


def test_file_must_be_named_after_its_model(specs_dir):
    [e] = load_with(specs_dir, "churn_v2.yaml", "model: churn_two\n")
    assert e.message == "model 'churn_two' must be in a file named churn_two.yaml (this file is 'churn_v2')"
    assert (e.line, e.column) == (1, 8)


def test_bad_name(specs_dir):
    [e] = load_with(specs_dir, "name.yaml", "model: Churn-Model\n")
    assert '"Churn-Model" is not in the expected format' in e.message
    assert "lower-case" in e.hint


def test_every_error_of_every_file_at_once(specs_dir):
    (specs_dir / "one.yaml").write_text("model: one\ntraining:\n  retries: x\n  timeout: forever\n")
    (specs_dir / "two.yaml").write_text("model: two\nstreaming:\n  batch_size: 0\n  evry: 5m\n")
    result = load_specs([specs_dir])
    got = {(Path(e.file).name, e.dotted_path) for e in result.errors}
    assert got == {("one.yaml", "training.retries"), ("one.yaml", "training.timeout"),
                   ("two.yaml", "streaming.batch_size"), ("two.yaml", "streaming.evry")}
