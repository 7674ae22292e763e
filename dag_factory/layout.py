"""The project layout: where the specs are, which entry files build the fleet, and how the
fleet is split across K entry files parsed in parallel by the dag-processor.

One file is parsed by one process, so a single entry file's import + serialization time
grows with the fleet until it meets `dagbag_import_timeout` / `dag_file_processor_timeout`.
K files (`model_dags_<i>_of_<K>.py`) each build the models whose spec name hashes to them:
the same specs, the same DAG ids, a K-th of the work per file, and `[dag_processor]
parsing_processes` of them at once. The hash (CRC-32 of the spec name) is the same in every
process and on every machine, so the dag-processor and a worker always agree on the file.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path
from typing import Iterable

from dag_factory import settings

ENTRY_STEM = "model_dags"
ENTRY_FILE_PATTERN = re.compile(rf"^{ENTRY_STEM}(?:_(\d+)_of_(\d+))?\.py$")
Shard = tuple[int, int]  # (index from 1, count)


def specs_dir_for(entry_file: str | os.PathLike | None) -> Path:
    """$DAG_FACTORY_SPECS, else specs/ beside the DAGs folder that holds the entry file
    (the layout `dag-factory init` makes: dags/ and specs/ side by side)."""
    if configured := settings.SPECS.get():
        return Path(configured)
    base = Path(entry_file).resolve().parent if entry_file else Path.cwd()
    return base.parent / "specs"


def cli_specs_dir(given: str | os.PathLike | None = None) -> Path:
    """The specs folder a command works on: the option, else $DAG_FACTORY_SPECS, else ./specs."""
    return Path(given or settings.SPECS.get() or "specs")


def check_shard(shard: Shard | None) -> Shard | None:
    if shard is None:
        return None
    index, count = shard
    if not (isinstance(index, int) and isinstance(count, int) and 1 <= index <= count):
        raise ValueError(f"shard must be (index, count) with 1 <= index <= count, not {shard!r}")
    return None if count == 1 else (index, count)


def in_shard(spec_name: str, shard: Shard | None) -> bool:
    """Does this spec (file stem = spec name) belong to `shard`?"""
    if shard is None:
        return True
    index, count = shard
    return zlib.crc32(spec_name.encode("utf-8")) % count == index - 1


def entry_file_name(index: int, count: int) -> str:
    return f"{ENTRY_STEM}.py" if count == 1 else f"{ENTRY_STEM}_{index}_of_{count}.py"


def entry_file_text(index: int, count: int) -> str:
    shard = "" if count == 1 else f", shard=({index}, {count})"
    part = "Every model's" if count == 1 else f"Part {index} of {count} of the fleet's"
    return (f'"""{part} Airflow DAGs (training, deployment, streaming), built from specs/ by dag_factory.\n\n'
            '(The words "airflow" and "dag" must stay in this file: the dag-processor\'s safe mode skips\n'
            'files that contain neither.) `dag-factory entry-files K` splits the fleet across K files.\n"""\n\n'
            "from dag_factory import register_dags\n\n"
            f"register_dags(globals(){shard})\n")


def shard_of_file(entry_file: Path) -> Shard | None:
    """`model_dags_2_of_4.py` -> (2, 4); `model_dags.py` -> None (the whole fleet)."""
    match = ENTRY_FILE_PATTERN.match(Path(entry_file).name)
    if not match or match.group(1) is None:
        return None
    return int(match.group(1)), int(match.group(2))


def entry_files(dags_dir: Path) -> list[Path]:
    """The entry files in a DAGs folder: `model_dags.py` or `model_dags_<i>_of_<K>.py`."""
    return sorted(p for p in Path(dags_dir).iterdir() if ENTRY_FILE_PATTERN.match(p.name) and p.is_file())


def write_entry_files(dags_dir: Path, count: int) -> tuple[list[Path], list[Path]]:
    """Make `dags_dir` hold exactly `count` entry files: (written, removed). New files are
    written before old ones are removed, so every DAG id has a file at every moment
    (a DAG briefly in two files is harmless; one in none would go stale)."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, not {count!r}")
    dags_dir = Path(dags_dir)
    wanted = {entry_file_name(i, count): entry_file_text(i, count) for i in range(1, count + 1)}
    written = []
    for name, text in wanted.items():
        path = dags_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
            written.append(path)
    removed = [p for p in entry_files(dags_dir) if p.name not in wanted]
    for path in removed:
        path.unlink()
    return written, removed


def select(stems: Iterable[Path], shard: Shard | None) -> list[Path]:
    """The spec files of `shard` among `stems`."""
    return [p for p in stems if in_shard(p.stem, shard)]
