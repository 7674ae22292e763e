"""The Model tab shows a spec file "as written": only a file of the specs folder, read the way
the loader reads specs (bounded, regular files, symlinks that stay inside the folder)."""

from __future__ import annotations

import os

from dag_factory.specs.resolved import resolve_file


def test_a_symlink_out_of_the_specs_folder_is_not_shown(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (tmp_path / "airflow.cfg").write_text("secret: hunter2\n")
    os.symlink(tmp_path / "airflow.cfg", specs / "evil.yaml")
    shown = resolve_file(specs / "evil.yaml")
    assert shown["as_written"] is None and "secret" not in str(shown)
    assert "must point to a file inside it" in shown["error"]


def test_a_huge_spec_is_not_read_for_the_tab(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    with open(specs / "huge.yaml", "wb") as f:
        f.truncate(300 * 1024 * 1024)
    shown = resolve_file(specs / "huge.yaml")
    assert shown["as_written"] is None and "a spec may be at most" in shown["error"]


def test_a_spec_inside_the_folder_is_shown_with_its_defaults(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "_defaults.yaml").write_text("owner: ml\n")
    (specs / "m.yaml").write_text("model: m\n")
    shown = resolve_file(specs / "m.yaml")
    assert shown["as_written"] == "model: m\n" and shown["resolved"] == {"model": "m", "owner": "ml"}
