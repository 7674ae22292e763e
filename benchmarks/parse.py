"""Parse-time benchmark: one entry file building N models' DAGs, side by side with the alternatives.

    .venv/bin/python benchmarks/parse.py [--models 100,300,1000] [--repeat 5] [--json out.json]
                                         [--variants floor,factory,factory_cheaphash,factory_split,factory_task,dagfactory110]
                                         [--split 4] [--task-baseline 10] [--profile factory]

For each N it generates a workload in a temp dir (N specs cycling the examples in specs/, their
`_defaults.yaml`, a live snapshot for the N models, the same DAGs as a handwritten Python file,
and as dag-factory 1.1.0 YAML), then measures every variant in a fresh process, alternating
variants within each repetition, and reports medians:

- import: filling `DagBag(dag_folder=<entry file>)` (what the dag-processor pays every parse)
- serialize: `DagSerialization.to_dict(dag)` for every DAG of the bag
- peak RSS after the import and at the end (after serialization)
- Variable reads: calls of `airflow.sdk.Variable.get` during the import
- specs read: distinct spec/YAML files of the workload opened during the import

`factory_split` is the fleet split across K entry files (`--split K`, dag_factory.layout):
each file parsed in its own fresh process like `factory`; per repetition it reports the max over
the K files (what each file must fit in Airflow's timeouts) and the sum (the total cost).

A benchmark, not a test: tests/benchmarks/test_parse_counts.py asserts only the counts.
See benchmarks/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pprint
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
ENTRY_FILE = ROOT / "dags" / "model_dags.py"
VENVS = ROOT / "benchmarks" / ".venvs"
DAGFACTORY_VENV = VENVS / "dagfactory110"
DAGFACTORY_REQUIREMENTS = ("dag-factory==1.1.0", "apache-airflow==3.3.2")
LIVE_VARIABLE = "dag_factory_live_models"
LIVE_ENV = "AIRFLOW_VAR_" + LIVE_VARIABLE.upper()
VARIANTS = ("floor", "floor_cheaphash", "factory", "factory_cold", "factory_gc_off", "factory_gc_pause", "factory_before",
            "factory_cheaphash", "factory_nogc", "factory_nogc_freeze", "factory_split", "factory_task", "dagfactory110")
# *_cheaphash: the same parse with Airflow's DAG.__hash__ made an identity hash in the child (issue 15:
# what an upstream fix would give); factory_before: the builders as before issue 15 (`>>` for every
# edge); factory_gc_off: the factory with DAG_FACTORY_PARSE_GC=off (no GC pause or freeze in register_dags:
# the factory before the scoped GC of issue 15); factory_gc_pause: DAG_FACTORY_PARSE_GC=pause (paused, never
# frozen); factory_cold: a first parse, DAG_FACTORY_SPEC_CACHE=off (every other factory variant re-parses
# unchanged specs with the spec cache an earlier parse left, as a dag-processor does); factory_nogc: Python's
# cyclic GC off during the whole DagBag
# fill, done by the benchmark (PARSE_GC=off); factory_nogc_freeze: the same, then gc.freeze() before
# serialization. Off by default (ask with --variants):
WHAT_IFS = ("floor_cheaphash", "factory_cold", "factory_gc_off", "factory_gc_pause", "factory_before", "factory_nogc",
            "factory_nogc_freeze")
# Variants whose product GC handling is switched off (DAG_FACTORY_PARSE_GC=off): the baseline and the
# what-ifs that manage the GC themselves.
PARSE_GC_OFF = ("factory_gc_off", "factory_before", "factory_nogc", "factory_nogc_freeze")
DEFAULT_VARIANTS = tuple(v for v in VARIANTS if v not in WHAT_IFS)
CHEAP_HASH = {"floor_cheaphash": "floor", "factory_cheaphash": "factory"}  # variant -> the variant it patches
DEFAULT_SPLIT = 4  # factory_split: entry files (--split)
SECTIONS = ("training", "deployment", "streaming")
SUFFIX = {"training": "train", "deployment": "deploy", "streaming": "stream"}
CHILD_TIMEOUT_S = 1800
# Airflow's defaults: [core] dagbag_import_timeout, [dag_processor] dag_file_processor_timeout. The
# children run with the import timeout off so that every parse is measured to the end; the table
# marks medians past these limits (where the dag-processor would give up on the file).
DAGBAG_IMPORT_TIMEOUT_S = 30
DAG_FILE_PROCESSOR_TIMEOUT_S = 50

_DURATION = re.compile(r"^(?:\d+[smhd])+$")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# --------------------------------------------------------------------------- the measuring child
# Runs in a fresh interpreter (this project's venv, or dag-factory 1.1.0's own venv): standard
# library and Airflow only. Results go to a JSON file, so log output on stdout never matters.
CHILD = r'''
import argparse, builtins, collections, io, json, os, resource, sys, time

p = argparse.ArgumentParser()
p.add_argument("--entry", required=True)
p.add_argument("--out", required=True)
p.add_argument("--watch", default="")          # count .yaml/.yml files opened under this folder
p.add_argument("--env-file", action="append", default=[])  # NAME=path: set os.environ[NAME] from a file
p.add_argument("--no-serialize", action="store_true")
p.add_argument("--profile", default="")        # cProfile the DagBag fill into this file
p.add_argument("--profile-serialize", default="")  # cProfile the serialization loop into this file
p.add_argument("--cheap-hash", action="store_true")  # DAG.__hash__ = object.__hash__ (benchmark only)
p.add_argument("--before-issue15", action="store_true")  # dag_factory's builders with `>>` and the runtime callable
p.add_argument("--gc-off", action="store_true")  # the cyclic GC off during the DagBag fill (a what-if)
p.add_argument("--gc-freeze", action="store_true")  # gc.freeze() after the DagBag fill (a what-if)
p.add_argument("--processor-child", action="store_true")  # look like the dag-processor's parse child (below)
a = p.parse_args()

# Large values (the live snapshot of 1,000 models is ~0.5 MB) cannot go through execve:
# Linux refuses one environment string over 128 KiB. Set them in-process, before Airflow loads.
for item in a.env_file:
    name, _, path = item.partition("=")
    with open(path, encoding="utf-8") as fh:
        os.environ[name] = fh.read()

t_start = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
import airflow
import airflow.sdk
import airflow.sdk.definitions.variable as sdk_variable
import airflow.sdk.execution_time.context as sdk_context
t_airflow = time.perf_counter()

# The DagBag fill, called as the dag-processor's parse child calls it (--processor-child): with
# _AIRFLOW_PROCESS_CONTEXT=client (what processor._parse_file_entrypoint sets), the processor module
# loaded, and the fill inside a function `_parse_file` of module `airflow.dag_processing.processor`
# (dag_factory.builders.gc_scope.in_processor_child looks for exactly these), and what was loaded before
# the parse frozen: DagProcessorManager.before_run calls gc.freeze() before it forks its parse children,
# so there the GC never rescans Airflow's own modules. Without it: a plain call.
if a.processor_child:
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"
    import airflow.dag_processing.processor  # noqa: F401 - loaded in the real child too
    import gc
    gc.freeze()  # as the dag-processor manager does before it forks the parse child
    _ns = {"__name__": "airflow.dag_processing.processor", "DagBag": DagBag}
    exec("def _parse_file(entry):\n    return DagBag(dag_folder=entry)\n", _ns)
    fill = _ns["_parse_file"]
else:
    def fill(entry):
        return DagBag(dag_folder=entry)

# --- counters, installed before the DAG file is imported --------------------------------------
var_calls = collections.Counter()   # outermost Variable.get calls, by API
var_keys = collections.Counter()    # ... by key
backend_lookups = collections.Counter()  # the SDK's _get_variable (every route ends there)
_depth = [0]


def _wrap_get(cls, label):
    original = cls.__dict__["get"]
    func = original.__func__ if isinstance(original, classmethod) else original

    def get(klass, key, *args, **kwargs):
        if _depth[0] == 0:
            var_calls[label] += 1
            var_keys[key] += 1
        _depth[0] += 1
        try:
            return func(klass, key, *args, **kwargs)
        finally:
            _depth[0] -= 1

    get.__wrapped__ = func
    cls.get = classmethod(get)


if a.cheap_hash:
    # What an identity hash upstream would give (docs/upstream-dag-hash.md): every `>>` builds a
    # set of the tasks' DAGs, and DAG.__hash__ hashes every task id and the schedule. Only here,
    # to measure what is left to win; never in the product.
    from airflow.sdk.definitions.dag import DAG as _SdkDag
    _SdkDag.__hash__ = object.__hash__

if a.before_issue15:
    # The factory as it built DAGs before issue 15, for a same-run comparison: every edge with
    # Airflow's `>>`, the mapped task with the runtime function itself as its callable, DAG() reading
    # its config for every DAG, the docs' JSON from json's indenting encoder (the parent also turns the
    # spec cache and the GC scope off).
    import dag_factory.builders.common as _common
    import dag_factory.builders.deployment as _deployment
    import dag_factory.builders.streaming as _streaming
    import dag_factory.runtime.streaming as _runtime_streaming
    import dag_factory.specs.resolved as _resolved

    def _shift(up, down):
        up >> down

    _common.link = _deployment.link = _shift
    _streaming.process_partition = _runtime_streaming.process_partition
    _common._read_config_defaults = dict
    _resolved.indented_json = lambda value: json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False)

_wrap_get(sdk_variable.Variable, "airflow.sdk.Variable.get")
if airflow.sdk.Variable is not sdk_variable.Variable:  # a different class behind airflow.sdk
    _wrap_get(airflow.sdk.Variable, "airflow.sdk.Variable.get (re-exported)")
try:
    from airflow.models.variable import Variable as _OrmVariable
    if _OrmVariable is not sdk_variable.Variable:
        _wrap_get(_OrmVariable, "airflow.models.Variable.get")
except Exception:  # noqa: BLE001 - not every Airflow has it
    pass
_orig_lookup = sdk_context._get_variable


def _counting_lookup(key, *args, **kwargs):
    backend_lookups[key] += 1
    return _orig_lookup(key, *args, **kwargs)


sdk_context._get_variable = _counting_lookup

watch = os.path.realpath(a.watch) + os.sep if a.watch else ""
opened = collections.Counter()   # path -> opens
listings = [0]                   # listdir/scandir of the watched folder
_open, _os_open, _listdir, _scandir = io.open, os.open, os.listdir, os.scandir


def _note(path):
    try:
        if isinstance(path, int):
            return
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        return
    full = os.path.realpath(path)
    if full.startswith(watch) and full.endswith((".yaml", ".yml")):
        opened[full] += 1


def counting_open(file, *args, **kwargs):
    _note(file)
    return _open(file, *args, **kwargs)


def counting_os_open(path, *args, **kwargs):
    _note(path)
    return _os_open(path, *args, **kwargs)


def _note_listing(path):
    try:
        if os.path.realpath(os.fsdecode(os.fspath(path))) + os.sep == watch:
            listings[0] += 1
    except TypeError:
        pass


def counting_listdir(path=".", *args, **kwargs):
    _note_listing(path)
    return _listdir(path, *args, **kwargs)


def counting_scandir(path=".", *args, **kwargs):
    _note_listing(path)
    return _scandir(path, *args, **kwargs)


if watch:
    io.open = builtins.open = counting_open   # pathlib's read_bytes/read_text/open go through io.open
    os.open, os.listdir, os.scandir = counting_os_open, counting_listdir, counting_scandir

# CPU time inside the cyclic GC, and full (generation 2) collections: where the GC settings act.
import gc as _gc
_gc_cpu, _gc_started, _gc_full = [0.0], [0.0], [0]


def _gc_callback(phase, info):
    if phase == "start":
        _gc_started[0] = time.process_time()
    else:
        _gc_cpu[0] += time.process_time() - _gc_started[0]
        _gc_full[0] += info.get("generation") == 2


_gc.callbacks.append(_gc_callback)

# --- the parse --------------------------------------------------------------------------------
gc0 = (_gc_cpu[0], _gc_full[0])
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
c0 = time.process_time()  # CPU time too: on a shared machine it moves far less than wall time
if a.gc_off:
    import gc
    gc.disable()
t0 = time.perf_counter()
if a.profile:
    import cProfile
    prof = cProfile.Profile()
    bag = prof.runcall(fill, a.entry)
    prof.dump_stats(a.profile)
else:
    bag = fill(a.entry)
t1 = time.perf_counter()
c1 = time.process_time()
gc1 = (_gc_cpu[0], _gc_full[0])
if a.gc_freeze:
    import gc
    gc.freeze()  # what the parse built moves to the permanent generation: serialization does not rescan it
if a.gc_off:
    gc.enable()
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reads = dict(var_calls)
keys = dict(var_keys)
lookups = dict(backend_lookups)
files = dict(opened)
listed = listings[0]
if watch:
    io.open = builtins.open = _open
    os.open, os.listdir, os.scandir = _os_open, _listdir, _scandir

tasks = {dag_id: len(dag.tasks) for dag_id, dag in bag.dags.items()}
t2 = time.perf_counter()
c2 = time.process_time()
if a.profile_serialize:
    import cProfile
    prof = cProfile.Profile()
    prof.enable()
if not a.no_serialize:
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
if a.profile_serialize:
    prof.disable()
    prof.dump_stats(a.profile_serialize)
t3 = time.perf_counter()
c3 = time.process_time()
gc3 = (_gc_cpu[0], _gc_full[0])
rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

with open(a.out, "w", encoding="utf-8") as fh:
    json.dump({
        "airflow_version": airflow.__version__,
        "python": sys.version.split()[0],
        "cheap_hash": a.cheap_hash,
        "before_issue15": a.before_issue15,
        "gc_off": a.gc_off,
        "gc_freeze": a.gc_freeze,
        "processor_child": a.processor_child,
        "parse_gc": os.environ.get("DAG_FACTORY_PARSE_GC", ""),
        "gc_frozen_objects": _gc.get_freeze_count(),
        "gc_cpu_import_s": gc1[0] - gc0[0],
        "gc_cpu_serialize_s": gc3[0] - gc1[0],  # from the end of the fill (after any --gc-freeze / --gc-off)
        "gc_full_collections_import": gc1[1] - gc0[1],
        "gc_full_collections_serialize": gc3[1] - gc1[1],
        "airflow_import_s": t_airflow - t_start,
        "import_s": t1 - t0,
        "serialize_s": None if a.no_serialize else t3 - t2,
        "import_cpu_s": c1 - c0,
        "serialize_cpu_s": None if a.no_serialize else c3 - c2,
        "rss_before_mb": rss0 / 1024,
        "rss_import_mb": rss_import / 1024,
        "rss_mb": rss_end / 1024,
        "dags": len(bag.dags),
        "tasks": sum(tasks.values()),
        "dag_tasks": tasks,
        "import_errors": {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()},
        "variable_reads": sum(reads.values()),
        "variable_reads_by_api": reads,
        "variable_keys": keys,
        "variable_backend_lookups": lookups,
        "spec_files_read": sorted(files),
        "spec_file_opens": sum(files.values()),
        "spec_dir_listings": listed,
    }, fh)
'''

# --------------------------------------------------------------------------- the workload


def _seconds(value: Any) -> int:
    if isinstance(value, (int, float)):
        return int(value)
    return sum(int(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(str(value)))


def _schedule(value: Any) -> str | int | None:
    """A cron/preset string as is, a duration ("6h") as seconds, or None."""
    if value is None:
        return None
    text = str(value)
    return _seconds(text) if _DURATION.match(text) else text


def _merge(defaults: dict, spec: dict, top: bool = True) -> dict:
    """The spec format's rule: mappings merge key by key and the spec wins; lists are replaced;
    a section in the defaults applies only to specs that have that section."""
    out = dict(spec)
    for key, value in defaults.items():
        if top and key in SECTIONS and key not in spec:
            continue
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _merge(value, out[key], top=False)
    return out


def _steps(section: dict) -> list[dict]:
    steps = []
    for raw in section.get("steps") or ():
        steps.append({
            "id": raw.get("replace") or raw["id"], "replace": bool(raw.get("replace")),
            "python": raw.get("python"), "operator": raw.get("operator"), "kwargs": raw.get("kwargs") or {},
            "before": _as_list(raw.get("before")), "after": _as_list(raw.get("after")), "retries": raw.get("retries"),
        })
    return steps


def _as_list(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def example_shapes(specs_dir: Path = SPECS) -> dict[str, dict]:
    """The example specs (with their defaults) as plain data: what the floor and the dag-factory
    YAML reproduce by hand. Only the keys the examples use."""
    defaults = yaml.safe_load((specs_dir / "_defaults.yaml").read_text()) or {}
    shapes = {}
    for path in sorted(specs_dir.glob("[!_]*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if raw.get("template"):
            continue
        s = _merge(defaults, raw)
        shape: dict[str, Any] = {
            "spec": path.stem, "owner": s.get("owner", "airflow"), "description": s.get("description"),
            "tags": sorted(s.get("tags") or ()), "start_date": str(s.get("start_date", "2024-01-01")),
        }
        if t := s.get("training"):
            shape["training"] = {
                "schedule": _schedule(t.get("schedule")), "timeout_s": _seconds(t.get("timeout", "2h")),
                "poll_s": _seconds(t.get("poll_interval", "30s")), "deferrable": bool(t.get("deferrable", True)),
                "retries": t.get("retries", 0), "retry_delay_s": _seconds(t.get("retry_delay", "5m")),
                "dataset_uri": t.get("dataset_uri"), "hyperparameters": t.get("hyperparameters") or {},
                "gates": [str(g) for g in t.get("gates") or ()], "steps": _steps(t)}
        if d := s.get("deployment"):
            smoke = d.get("smoke_test") or {}
            targets = [{"name": x, "gates": None} if isinstance(x, str) else {"name": x["name"], "gates": x.get("gates")}
                       for x in d.get("targets") or ()]
            shape["deployment"] = {
                "targets": targets, "smoke_gates": [str(g) for g in smoke.get("gates") or ()],
                "smoke_timeout_s": _seconds(smoke.get("timeout", "15m")), "poll_s": _seconds(smoke.get("poll_interval", "15s")),
                "rollback": bool(d.get("rollback_on_failure", True)), "retries": d.get("retries", 0),
                "retry_delay_s": _seconds(d.get("retry_delay", "1m")), "steps": _steps(d)}
        if st := s.get("streaming"):
            shape["streaming"] = {
                "every_s": _seconds(st.get("every", "5m")), "batch_size": st.get("batch_size", 500),
                "partitions": list(st.get("partitions") or [0]), "max_active_runs": st.get("max_active_runs", 1),
                "retries": st.get("retries", 0), "retry_delay_s": _seconds(st.get("retry_delay", "30s")),
                "steps": _steps(st)}
        shapes[path.stem] = shape
    return shapes


def expected_task_counts(name: str, shape: dict) -> dict[str, int]:
    """DAG id -> number of tasks the factory builds for one model of this shape."""
    out = {}
    added = {k: sum(1 for st in shape[k]["steps"] if not st["replace"]) for k in SECTIONS if k in shape}
    if "training" in shape:
        out[f"{name}__train"] = 4 + added["training"]
    if "deployment" in shape:
        d = shape["deployment"]
        out[f"{name}__deploy"] = 2 + len(d["targets"]) * (4 if d["rollback"] else 3) + added["deployment"]
    if "streaming" in shape:
        out[f"{name}__stream"] = 2 + added["streaming"]
    return out


def model_name(i: int) -> str:
    return f"model_{i:05d}"


@dataclass
class Workload:
    """One generated workload; paths are absolute."""

    folder: Path
    models: int
    specs_dir: Path
    live_file: Path
    floor_file: Path
    dagfactory_entry: Path
    dagfactory_yaml_dir: Path
    dagfactory_lib: Path
    model_names: list[str]
    expected: dict[str, int]           # DAG id -> tasks, every model
    task_dag_id: str                   # the DAG a task-run parse asks for
    task_spec_file: Path               # the one spec file that parse needs
    spec_of: dict[str, str] = field(repr=False, default_factory=dict)   # model -> example it copies
    shapes: dict[str, dict] = field(repr=False, default_factory=dict)

    @property
    def spec_cache(self) -> Path:
        """DAG_FACTORY_SPEC_CACHE of the factory variants (dag_factory.specs.cache)."""
        return self.folder / "spec-cache"


def live_snapshot(names: list[str], shape_of: dict[str, dict], now: datetime | None = None) -> dict[str, Any]:
    """The Variable's document for these models: one active LiveModel record each, built from its
    own spec (backend-api.yaml); data only, no change of DAG structure."""
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    models = {}
    for name in names:
        shape = shape_of[name]
        record: dict[str, Any] = {"name": name, "spec": name, "status": "active", "version": "v1",
                                  "updated_at": "2026-01-01T00:00:00+00:00"}
        if t := shape.get("training"):
            record["training"] = {"dataset_uri": t["dataset_uri"] or f"s3://ml-data/{name}",
                                  "hyperparameters": t["hyperparameters"]}
        if d := shape.get("deployment"):
            record["deployment"] = {"targets": [{"name": x["name"], "min_metric": {"success_rate": 0.99}}
                                                for x in d["targets"]]}
        if st := shape.get("streaming"):
            record["streaming"] = {"partitions": st["partitions"], "batch_size": st["batch_size"]}
        models[name] = record
    snap: dict[str, Any] = {"format": 1, "models": models, "retired": [], "missing": {}, "rejected": {}}
    try:  # the project's own hash, when the live package is there; the same algorithm otherwise
        from dag_factory.live.snapshot import content_hash
    except ImportError:
        import hashlib

        def content_hash(s):
            content = {k: s.get(k) for k in ("models", "retired", "missing", "rejected")}
            return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    snap["content_hash"] = content_hash(snap)
    snap["synced_at"] = now.isoformat()
    snap["expires_at"] = (now + timedelta(days=7)).isoformat()
    return snap


def generate_workload(folder: str | os.PathLike, models: int, *, specs_dir: Path = SPECS) -> Workload:
    """Write one workload of `models` models into `folder` (created; must be empty or new):

    specs/            N specs model_00001.yaml... cycling the examples, plus _defaults.yaml
    live.json         the live snapshot for the N models (the Variable's value)
    floor/floor_dags.py            the same DAGs, handwritten, from a plain Python list
    dagfactory/entry.py + models/  the same DAGs for dag-factory 1.1.0, one YAML per model
    """
    folder = Path(folder).resolve()
    shapes = example_shapes(specs_dir)
    examples = sorted(shapes)
    out_specs = folder / "specs"
    out_specs.mkdir(parents=True, exist_ok=True)
    shutil.copy(specs_dir / "_defaults.yaml", out_specs / "_defaults.yaml")
    sources = {stem: (specs_dir / f"{stem}.yaml").read_text() for stem in examples}
    names, shape_of, expected = [], {}, {}
    for i in range(models):
        stem = examples[i % len(examples)]
        name = model_name(i + 1)
        text, count = re.subn(rf"(?m)^model:\s*{re.escape(stem)}\s*$", f"model: {name}", sources[stem], count=1)
        if count != 1:
            raise ValueError(f"{stem}.yaml: no top-level 'model: {stem}' line to rename")
        (out_specs / f"{name}.yaml").write_text(text)
        names.append(name)
        shape_of[name] = shapes[stem]
        expected.update(expected_task_counts(name, shapes[stem]))

    live_file = folder / "live.json"
    live_file.write_text(json.dumps(live_snapshot(names, shape_of), separators=(",", ":")))

    floor_file = folder / "floor" / "floor_dags.py"
    floor_file.parent.mkdir(exist_ok=True)
    floor_file.write_text(_floor_source(shapes, [(n, shape_of[n]["spec"]) for n in names]))

    df_dir = folder / "dagfactory"
    (df_dir / "models").mkdir(parents=True, exist_ok=True)
    (df_dir / "lib").mkdir(exist_ok=True)
    (df_dir / "lib" / "bench_callables.py").write_text(_CALLABLES)
    (df_dir / "defaults.yml").write_text(_dagfactory_defaults())
    for name in names:
        (df_dir / "models" / f"{name}.yaml").write_text(_dagfactory_yaml(name, shape_of[name]))
    (df_dir / "entry.py").write_text(_DAGFACTORY_ENTRY.format(models=str(df_dir / "models"), defaults=str(df_dir)))

    task_model = next((n for n in names if f"{n}__deploy" in expected), names[0])
    task_dag = f"{task_model}__deploy" if f"{task_model}__deploy" in expected else next(iter(expected))
    return Workload(folder=folder, models=models, specs_dir=out_specs, live_file=live_file, floor_file=floor_file,
                    dagfactory_entry=df_dir / "entry.py", dagfactory_yaml_dir=df_dir / "models",
                    dagfactory_lib=df_dir / "lib", model_names=names, expected=expected, task_dag_id=task_dag,
                    task_spec_file=out_specs / f"{task_model}.yaml",
                    spec_of={n: shape_of[n]["spec"] for n in names}, shapes=shapes)


# --- the floor: handwritten Python building the same DAGs ---------------------------------------

_FLOOR = '''"""The floor: the same airflow DAGs as the dag_factory entry file, handwritten in Python from a
plain list (no YAML, no validation). Generated by benchmarks/parse.py for {count} models."""

import importlib
from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset, BaseOperator, TaskGroup, TriggerRule

SHAPES = {shapes}

MODELS = {models}

SUFFIX = {{"training": "train", "deployment": "deploy", "streaming": "stream"}}


def noop(**kwargs):
    return kwargs


def run_python_step(target, step_kwargs, **context):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)(**step_kwargs)


class WaitForJob(BaseOperator):
    """Stand-in for the factory's deferrable wait (same arguments, no behaviour)."""

    def __init__(self, *, kind, job_task_id, poll_interval, timeout, deferrable=True, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.job_task_id = kind, job_task_id
        self.poll_interval, self.timeout, self.deferrable = poll_interval, timeout, deferrable

    def execute(self, context):
        return None


def task(task_id, **op_kwargs):
    return PythonOperator(task_id=task_id, python_callable=noop, op_kwargs=op_kwargs)


def custom(step):
    extra = {{}} if step["retries"] is None else {{"retries": step["retries"]}}
    if step["python"]:
        return PythonOperator(task_id=step["id"], python_callable=run_python_step,
                              op_kwargs={{"target": step["python"], "step_kwargs": step["kwargs"]}}, **extra)
    module, _, attr = step["operator"].rpartition(".")
    return getattr(importlib.import_module(module), attr)(task_id=step["id"], **step["kwargs"], **extra)


def wire(spans, builtins, steps):
    """Built-in chain, then custom steps: `before` X -> step >> X, `after` X (default: the last) -> X >> step."""
    for step in steps:
        if step["replace"]:
            continue
        node = custom(step)
        spans[step["id"]] = (node, node)
    for up, down in zip(builtins, builtins[1:]):
        spans[up][1] >> spans[down][0]
    for step in steps:
        if step["replace"]:
            continue
        after = step["after"] or ([] if step["before"] else [builtins[-1]])
        for ref in after:
            spans[ref][1] >> spans[step["id"]][0]
        for ref in step["before"]:
            spans[step["id"]][1] >> spans[ref][0]


def made(steps, step_id, make):
    step = next((s for s in steps if s["replace"] and s["id"] == step_id), None)
    return custom(step) if step else make()


def dag_args(name, shape, kind, section):
    return dict(
        dag_id=f"{{name}}__{{SUFFIX[kind]}}",
        start_date=datetime.fromisoformat(shape["start_date"]).replace(tzinfo=timezone.utc),
        catchup=False,
        tags=sorted({{"dag_factory", kind, f"model:{{name}}", *shape["tags"]}}),
        description=(shape["description"] or f"{{kind}} of {{name}}")[:500],
        doc_md=f"Handwritten ({{kind}} of model `{{name}}`).",
        default_args={{"owner": shape["owner"], "retries": section["retries"],
                      "retry_delay": timedelta(seconds=section["retry_delay_s"])}},
    )


def model_asset(name):
    return Asset(name=f"dag_factory.model.{{name}}", uri=f"x-dag-factory://models/{{name}}", group="ml-model")


def training_dag(name, shape):
    t = shape["training"]
    schedule = timedelta(seconds=t["schedule"]) if isinstance(t["schedule"], int) else t["schedule"]
    with DAG(schedule=schedule, max_active_runs=1, **dag_args(name, shape, "training", t)) as dag:
        steps = t["steps"]
        spans = {{}}
        for step_id, make in (
            ("start_training", lambda: task("start_training", model=name, conn_id="model_backend")),
            ("wait_for_training", lambda: WaitForJob(
                task_id="wait_for_training", kind="training", job_task_id="start_training",
                poll_interval=timedelta(seconds=t["poll_s"]), timeout=timedelta(seconds=t["timeout_s"]),
                deferrable=t["deferrable"])),
            ("check_gates", lambda: task("check_gates", spec_gates=t["gates"])),
            ("publish", lambda: PythonOperator(task_id="publish", python_callable=noop,
                                               op_kwargs={{"model": name}}, outlets=[model_asset(name)])),
        ):
            node = made(steps, step_id, make)
            spans[step_id] = (node, node)
        wire(spans, ["start_training", "wait_for_training", "check_gates", "publish"], steps)
    return dag


def deployment_dag(name, shape):
    d = shape["deployment"]
    asset = model_asset(name)
    with DAG(schedule=[asset], max_active_runs=1,
             **dag_args(name, shape, "deployment", d)) as dag:
        steps = d["steps"]
        node = made(steps, "resolve_version", lambda: PythonOperator(
            task_id="resolve_version", python_callable=noop, op_kwargs={{"model": name}}, inlets=[asset]))
        spans = {{"resolve_version": (node, node)}}
        order = ["resolve_version"]
        for target in d["targets"]:
            group = f"deploy_{{target['name']}}"
            gates = target["gates"] if target["gates"] is not None else d["smoke_gates"]
            with TaskGroup(group, tooltip=f"deploy to {{target['name']}}"):
                deploy = task("deploy", model=name, target=target["name"], conn_id="model_backend")
                wait = WaitForJob(task_id="wait", kind="deployment", job_task_id=f"{{group}}.deploy",
                                  poll_interval=timedelta(seconds=d["poll_s"]),
                                  timeout=timedelta(seconds=d["smoke_timeout_s"]))
                smoke = task("smoke_test", target=target["name"], gates=gates, wait_task_id=f"{{group}}.wait")
                deploy >> wait >> smoke
                if d["rollback"]:
                    rollback = task("rollback", target=target["name"], conn_id="model_backend",
                                    deploy_task_id=f"{{group}}.deploy")
                    rollback.trigger_rule = TriggerRule.ONE_FAILED
                    rollback.retries = max(rollback.retries or 0, 3)
                    [deploy, wait, smoke] >> rollback
            spans[group] = (deploy, smoke)
            order.append(group)
        node = made(steps, "deployed", lambda: task("deployed", targets=[x["name"] for x in d["targets"]]))
        spans["deployed"] = (node, node)
        wire(spans, order + ["deployed"], steps)
    return dag


def streaming_dag(name, shape):
    s = shape["streaming"]
    with DAG(schedule=timedelta(seconds=s["every_s"]), max_active_runs=s["max_active_runs"],
             **dag_args(name, shape, "streaming", s)) as dag:
        steps = s["steps"]
        plan = made(steps, "plan_partitions", lambda: task("plan_partitions", model=name, conn_id="model_backend"))
        process = PythonOperator.partial(
            task_id="process_partition", python_callable=noop,
            map_index_template="partition {{{{ task.op_kwargs['partition'] }}}}",
        ).expand(op_kwargs=plan.output)
        spans = {{"plan_partitions": (plan, plan), "process_partition": (process, process)}}
        wire(spans, ["plan_partitions", "process_partition"], steps)
    return dag


for _name, _spec in MODELS:
    _shape = SHAPES[_spec]
    if "training" in _shape:
        globals()[f"{{_name}}__train"] = training_dag(_name, _shape)
    if "deployment" in _shape:
        globals()[f"{{_name}}__deploy"] = deployment_dag(_name, _shape)
    if "streaming" in _shape:
        globals()[f"{{_name}}__stream"] = streaming_dag(_name, _shape)
'''


def _floor_source(shapes: dict[str, dict], models: list[tuple[str, str]]) -> str:
    return _FLOOR.format(count=len(models), shapes=pprint.pformat(shapes, width=110, sort_dicts=True),
                         models=pprint.pformat(models, width=110, compact=True))


# --- dag-factory 1.1.0: one YAML per model ------------------------------------------------------

_CALLABLES = '''"""Task callables the dag-factory 1.1.0 YAML points at (never run by the benchmark)."""


def noop(**kwargs):
    return kwargs


def run_python_step(target, step_kwargs, **context):
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)(**step_kwargs)
'''

_DAGFACTORY_ENTRY = '''"""dag-factory 1.1.0's entry file for the benchmark: every YAML in models/ (one per model).
(The words airflow and DAG must stay in this file for the dag-processor's safe mode.)"""

from dagfactory import load_yaml_dags

load_yaml_dags(globals_dict=globals(), dags_folder={models!r}, defaults_config_path={defaults!r})
'''

_PY_OP = "airflow.providers.standard.operators.python.PythonOperator"


def _dagfactory_defaults() -> str:
    return yaml.safe_dump({"catchup": False, "default_args": {"owner": "ml-platform"}}, sort_keys=False)


def _td(seconds: int) -> dict:
    return {"__type__": "datetime.timedelta", "seconds": seconds}


def _df_task(callable_name: str = "noop", **extra: Any) -> dict:
    return {"operator": _PY_OP, "python_callable": f"bench_callables.{callable_name}", **extra}


def _df_custom(step: dict) -> dict:
    extra = {} if step["retries"] is None else {"retries": step["retries"]}
    if step["python"]:
        return _df_task("run_python_step", op_kwargs={"target": step["python"], "step_kwargs": step["kwargs"]}, **extra)
    return {"operator": step["operator"], **step["kwargs"], **extra}


def _df_wire(tasks: dict, spans: dict, builtins: list[str], steps: list[dict]) -> None:
    """The floor's wiring, as dag-factory `dependencies` (task -> its upstream tasks)."""
    def deps(task_id: str) -> list:
        return tasks[task_id].setdefault("dependencies", [])

    for step in steps:
        if step["replace"]:
            continue
        tasks[step["id"]] = _df_custom(step)
        spans[step["id"]] = (step["id"], step["id"])
    for up, down in zip(builtins, builtins[1:]):
        deps(spans[down][0]).append(spans[up][1])
    for step in steps:
        if step["replace"]:
            continue
        for ref in step["after"] or ([] if step["before"] else [builtins[-1]]):
            deps(spans[step["id"]][0]).append(spans[ref][1])
        for ref in step["before"]:
            deps(spans[ref][0]).append(spans[step["id"]][1])


def _df_replaced(steps: list[dict], step_id: str, made: dict) -> dict:
    step = next((s for s in steps if s["replace"] and s["id"] == step_id), None)
    return _df_custom(step) if step else made


def _df_dag(name: str, shape: dict, kind: str, section: dict) -> dict:
    return {
        "description": (shape["description"] or f"{kind} of {name}")[:500],
        "start_date": shape["start_date"],
        "tags": sorted({"dag_factory", kind, f"model:{name}", *shape["tags"]}),
        "default_args": {"owner": shape["owner"], "retries": section["retries"],
                         "retry_delay": _td(section["retry_delay_s"])},
    }


def _dagfactory_yaml(name: str, shape: dict) -> str:
    """One model's DAGs in dag-factory 1.1.0's YAML: same DAG ids and task counts as the factory
    (task ids inside deployment groups are `<target>_<step>`: dag-factory needs unique task keys)."""
    doc: dict[str, Any] = {}
    uri = f"x-dag-factory://models/{name}"
    if t := shape.get("training"):
        dag = _df_dag(name, shape, "training", t)
        dag["schedule"] = _td(t["schedule"]) if isinstance(t["schedule"], int) else t["schedule"]
        dag["max_active_runs"] = 1
        steps = t["steps"]
        tasks = {
            "start_training": _df_replaced(steps, "start_training", _df_task(
                op_kwargs={"model": name, "conn_id": "model_backend"})),
            "wait_for_training": _df_replaced(steps, "wait_for_training", _df_task(op_kwargs={
                "kind": "training", "job_task_id": "start_training", "poll_interval_s": t["poll_s"],
                "timeout_s": t["timeout_s"], "deferrable": t["deferrable"]})),
            "check_gates": _df_replaced(steps, "check_gates", _df_task(op_kwargs={"spec_gates": t["gates"]})),
            "publish": _df_replaced(steps, "publish", _df_task(op_kwargs={"model": name}, outlets=[uri])),
        }
        builtins = list(tasks)
        _df_wire(tasks, {b: (b, b) for b in builtins}, builtins, steps)
        dag["tasks"] = tasks
        doc[f"{name}__train"] = dag
    if d := shape.get("deployment"):
        dag = _df_dag(name, shape, "deployment", d)
        dag["schedule"] = [uri]
        dag["max_active_runs"] = 1
        steps = d["steps"]
        tasks = {"resolve_version": _df_replaced(steps, "resolve_version",
                                                 _df_task(op_kwargs={"model": name}, inlets=[uri]))}
        spans = {"resolve_version": ("resolve_version", "resolve_version")}
        groups, order = {}, ["resolve_version"]
        for target in d["targets"]:
            tname, group = target["name"], f"deploy_{target['name']}"
            gates = target["gates"] if target["gates"] is not None else d["smoke_gates"]
            groups[group] = {"tooltip": f"deploy to {tname}"}
            ids = {s: f"{tname}_{s}" for s in ("deploy", "wait", "smoke_test", "rollback")}
            tasks[ids["deploy"]] = _df_task(task_group_name=group, op_kwargs={
                "model": name, "target": tname, "conn_id": "model_backend"})
            tasks[ids["wait"]] = _df_task(task_group_name=group, dependencies=[ids["deploy"]], op_kwargs={
                "kind": "deployment", "job_task_id": f"{group}.{ids['deploy']}", "poll_interval_s": d["poll_s"],
                "timeout_s": d["smoke_timeout_s"]})
            tasks[ids["smoke_test"]] = _df_task(task_group_name=group, dependencies=[ids["wait"]], op_kwargs={
                "target": tname, "gates": gates, "wait_task_id": f"{group}.{ids['wait']}"})
            if d["rollback"]:
                tasks[ids["rollback"]] = _df_task(
                    task_group_name=group, trigger_rule="one_failed", retries=max(d["retries"], 3),
                    dependencies=[ids["deploy"], ids["wait"], ids["smoke_test"]],
                    op_kwargs={"target": tname, "conn_id": "model_backend",
                               "deploy_task_id": f"{group}.{ids['deploy']}"})
            spans[group] = (ids["deploy"], ids["smoke_test"])
            order.append(group)
        tasks["deployed"] = _df_replaced(steps, "deployed", _df_task(
            op_kwargs={"targets": [x["name"] for x in d["targets"]]}))
        spans["deployed"] = ("deployed", "deployed")
        order.append("deployed")
        _df_wire(tasks, spans, order, steps)
        dag["task_groups"] = groups
        dag["tasks"] = tasks
        doc[f"{name}__deploy"] = dag
    if s := shape.get("streaming"):
        dag = _df_dag(name, shape, "streaming", s)
        dag["schedule"] = _td(s["every_s"])
        dag["max_active_runs"] = s["max_active_runs"]
        steps = s["steps"]
        tasks = {
            "plan_partitions": _df_replaced(steps, "plan_partitions", _df_task(
                op_kwargs={"model": name, "conn_id": "model_backend"})),
            "process_partition": _df_task(
                map_index_template="partition {{ task.op_kwargs['partition'] }}",
                expand={"op_kwargs": "plan_partitions.output"}),
        }
        builtins = list(tasks)
        _df_wire(tasks, {b: (b, b) for b in builtins}, builtins, steps)
        dag["tasks"] = tasks
        doc[f"{name}__stream"] = dag
    # libyaml's emitter when there is one: the pure-Python one takes ~15 s for 1,000 models
    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False,
                     default_flow_style=False, width=120)


# --------------------------------------------------------------------------- running the variants


def project_python() -> Path:
    venv = ROOT / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def _child_env(home: Path, dags_folder: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "_AIRFLOW", "DAG_FACTORY")) and k not in ("PYTHONPATH",)}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        # Parsing needs no DB; a file here afterwards means something opened one (reported).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "0",  # measure to the end; limits are flagged in the table
        # dag-factory 1.1.0's plugin reports DAG runs to Scarf unless told not to (no runs here; off anyway).
        "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
        "SCARF_NO_ANALYTICS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.update(extra)
    return env


def run_variant(workload: Workload, variant: str, *, python: Path | None = None, serialize: bool = True,
                task_dag_id: str | None = None, profile: Path | None = None, keep_home: bool = False,
                split: int = DEFAULT_SPLIT, profile_serialize: Path | None = None) -> dict[str, Any]:
    """Parse one variant's entry file in a fresh process; returns the child's measurements plus
    `ok` and `problems` (import errors, wrong DAG set or task counts, a DB touched, a crash).
    `factory_split`: `split` entry files, each in its own process (see run_split).
    `*_cheaphash`: that variant with `DAG.__hash__` replaced by `object.__hash__` in the child."""
    wl = workload
    cheap_hash = variant in CHEAP_HASH
    base = CHEAP_HASH.get(variant, "factory" if variant in WHAT_IFS else variant)
    if variant == "factory_split":
        if profile:
            raise ValueError("factory_split is K parses; profile `factory` (or one shard with run_child)")
        return run_split(wl, split, python=python, serialize=serialize, keep_home=keep_home)
    extra: dict[str, str] = {}
    env_files = [f"{LIVE_ENV}={wl.live_file}"]  # the same live data in every variant's environment
    expected = dict(wl.expected)
    watch: Path | None = None
    if base == "floor":
        entry, dags_folder = wl.floor_file, wl.floor_file.parent
    elif base in ("factory", "factory_task"):
        entry, dags_folder, watch = ENTRY_FILE, ENTRY_FILE.parent, wl.specs_dir
        extra.update(_factory_env(wl))
        if variant in ("factory_cold", "factory_before"):
            extra["DAG_FACTORY_SPEC_CACHE"] = "off"
        if variant in PARSE_GC_OFF:
            extra["DAG_FACTORY_PARSE_GC"] = "off"
        elif variant == "factory_gc_pause":
            extra["DAG_FACTORY_PARSE_GC"] = "pause"
        if variant == "factory_task":
            dag_id = task_dag_id or wl.task_dag_id
            extra["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
            extra["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = "deploy_" + _first_target(wl, dag_id) + ".deploy"
            expected = {dag_id: wl.expected[dag_id]}
    elif variant == "dagfactory110":
        entry, dags_folder, watch = wl.dagfactory_entry, wl.dagfactory_entry.parent, wl.dagfactory_yaml_dir
        extra["PYTHONPATH"] = str(wl.dagfactory_lib)
    else:
        raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    result = run_child(entry, scratch=wl.folder / "runs", python=python, dags_folder=dags_folder, env=extra,
                       env_files=env_files, watch=watch, serialize=serialize, profile=profile, keep_home=keep_home,
                       label=variant, cheap_hash=cheap_hash, profile_serialize=profile_serialize,
                       before_issue15=variant == "factory_before", gc_off=variant.startswith("factory_nogc"),
                       gc_freeze=variant == "factory_nogc_freeze",
                       # a worker's task-run parse is not the dag-processor's child; every other variant is
                       processor_child=variant != "factory_task")
    result.update(variant=variant, models=wl.models)
    result["import_serialize_s"] = _import_serialize(result)
    result["import_serialize_cpu_s"] = _import_serialize(result, cpu=True)
    if "dag_tasks" in result:
        result["problems"].extend(_problems(result, expected))
        result["ok"] = not result["problems"]
    if result["ok"]:
        result.pop("log_tail", None)
    return result


def _import_serialize(result: dict, cpu: bool = False) -> float | None:
    imp, ser = result.get("import_cpu_s" if cpu else "import_s"), result.get("serialize_cpu_s" if cpu else "serialize_s")
    return imp + ser if imp is not None and ser is not None else None


def _factory_env(wl: Workload) -> dict[str, str]:
    return {"DAG_FACTORY_SPECS": str(wl.specs_dir), "DAG_FACTORY_SPEC_CACHE": str(wl.spec_cache)}


def warm_spec_cache(wl: Workload, split: int) -> None:
    """What a dag-processor's re-parse finds: the spec cache an earlier parse of the same files left
    (one entry file, and each of `split`). factory_cold measures a first parse (the cache off)."""
    from dag_factory.layout import select
    from dag_factory.specs.cache import SpecCache
    from dag_factory.specs.loader import discover, load_specs

    for shard in (None, *((i, split) for i in range(1, split + 1) if split > 1)):
        paths = [wl.specs_dir] if shard is None else select(discover([wl.specs_dir]), shard)
        cache = SpecCache.open(wl.specs_dir, shard, folder=wl.spec_cache)
        load_specs(paths, check_imports=False, cache=cache)


def split_entry_files(wl: Workload, count: int) -> list[Path]:
    """`count` entry files (`model_dags_<i>_of_<K>.py`, written by the project's own
    `write_entry_files`) in a DAGs folder of the workload; index order."""
    from dag_factory.layout import entry_files, shard_of_file, write_entry_files

    folder = wl.folder / f"dags_split_{count}"
    folder.mkdir(parents=True, exist_ok=True)
    write_entry_files(folder, count)
    return sorted(entry_files(folder), key=lambda p: (shard_of_file(p) or (1, 1))[0])


def _model_of(dag_id: str) -> str:
    return dag_id.rpartition("__")[0]


def run_split(workload: Workload, count: int, *, python: Path | None = None, serialize: bool = True,
              keep_home: bool = False) -> dict[str, Any]:
    """The fleet split across `count` entry files: each file parsed in its own fresh process, one
    after the other, exactly like `factory` (same environment, counters, serialization). Returns
    one run: per-file maxima (import_s, serialize_s, import_serialize_s, RSS, Variable reads, spec
    files read), sums over the files (sum_*), the union of the DAGs, and every file's own numbers
    in `shards`. Checked: no import errors, no DAG id in two files, the union of DAG ids and task
    counts == the workload's, and each file builds only the models that hash to it."""
    wl = workload
    from dag_factory.layout import in_shard, shard_of_file

    result: dict[str, Any] = {"variant": "factory_split", "models": wl.models, "split": count, "problems": [],
                              "shards": []}
    files = split_entry_files(wl, count)
    if len(files) != count:
        result["problems"].append(f"write_entry_files wrote {len(files)} entry file(s), not {count}")
    runs = []
    for entry in files:
        r = run_child(entry, scratch=wl.folder / "runs", python=python, dags_folder=entry.parent,
                      env=_factory_env(wl), env_files=[f"{LIVE_ENV}={wl.live_file}"], watch=wl.specs_dir,
                      serialize=serialize, keep_home=keep_home, label=entry.stem, processor_child=True)
        r["import_serialize_s"] = _import_serialize(r)
        runs.append((entry, r))
        result["problems"].extend(f"{entry.name}: {p}" for p in r["problems"])
    result["wall_s"] = sum(r["wall_s"] for _, r in runs)
    done = [(e, r) for e, r in runs if "dag_tasks" in r]
    for entry, r in runs:
        result["shards"].append({
            "entry": entry.name, "shard": shard_of_file(entry), "ok": r["ok"], "problems": r["problems"],
            **{k: r.get(k) for k in ("import_s", "serialize_s", "import_serialize_s", "airflow_import_s",
                                     "rss_before_mb", "rss_import_mb", "rss_mb", "dags", "tasks", "dag_tasks",
                                     "variable_reads", "variable_keys", "variable_backend_lookups",
                                     "spec_file_opens", "spec_dir_listings", "wall_s")},
            "spec_files_read": len(r["spec_files_read"]) if "spec_files_read" in r else None,
        })
        if not r["ok"] and "log_tail" in r:
            result.setdefault("log_tail", r["log_tail"])
    if done and len(done) == len(runs):
        first = done[0][1]
        result.update(airflow_version=first["airflow_version"], python=first["python"])

        def most(key: str) -> Any:
            values = [r[key] for _, r in done if r.get(key) is not None]
            return max(values) if values else None

        def total(key: str) -> Any:
            values = [r[key] for _, r in done]
            return None if any(v is None for v in values) else sum(values)

        for key in ("import_s", "serialize_s", "import_serialize_s", "airflow_import_s", "rss_before_mb",
                    "rss_import_mb", "rss_mb", "variable_reads", "spec_file_opens", "spec_dir_listings"):
            result[key] = most(key)
        for key in ("import_s", "serialize_s", "import_serialize_s", "variable_reads", "tasks"):
            result[f"sum_{key}"] = total(key)
        # per key (and per API), the most any one file's parse did: a per-parse count, like variable_reads
        for key in ("variable_keys", "variable_backend_lookups", "variable_reads_by_api"):
            merged: dict[str, int] = {}
            for _, r in done:
                for k, v in (r.get(key) or {}).items():
                    merged[k] = max(merged.get(k, 0), v)
            result[key] = merged
        widest = max(done, key=lambda er: len(er[1]["spec_files_read"]))[1]
        result["spec_files_read"] = widest["spec_files_read"]  # the file that read the most specs
        result["spec_files_read_total"] = len({p for _, r in done for p in r["spec_files_read"]})
        result["import_errors"] = {k: v for _, r in done for k, v in r["import_errors"].items()}
        union: dict[str, int] = {}
        where: dict[str, str] = {}
        twice = []
        for entry, r in done:
            for dag_id, tasks in r["dag_tasks"].items():
                if dag_id in where:
                    twice.append((dag_id, where[dag_id], entry.name))
                where[dag_id] = entry.name
                union[dag_id] = tasks
        result["dag_tasks"] = union
        result["dags"] = len(union)
        result["tasks"] = sum(union.values())
        if twice:
            result["problems"].append(f"{len(twice)} DAG id(s) in two entry files (dag, file, file): {twice[:5]}")
        result["problems"].extend(_problems(result, wl.expected))
        if not twice and not result["problems"]:
            strays = [(d, f) for d, f in where.items() if not in_shard(_model_of(d), shard_of_file(files[0].parent / f))]
            if strays:
                result["problems"].append(f"{len(strays)} DAG(s) in a file their model does not hash to: {strays[:5]}")
    result["ok"] = not result["problems"]
    return result


def run_child(entry: Path, *, scratch: Path, python: Path | None = None, dags_folder: Path | None = None,
              env: dict[str, str] | None = None, env_files: list[str] = (), watch: Path | None = None,
              serialize: bool = True, profile: Path | None = None, keep_home: bool = False,
              label: str = "child", cheap_hash: bool = False, profile_serialize: Path | None = None,
              before_issue15: bool = False, gc_off: bool = False, gc_freeze: bool = False,
              processor_child: bool = False) -> dict[str, Any]:
    """Fill a DagBag from one DAG file in a fresh interpreter with its own temp AIRFLOW_HOME and
    the counters installed; the child's measurements plus `ok`, `problems` and `wall_s`.
    `cheap_hash`: Airflow's DAG.__hash__ replaced by an identity hash in the child (a measurement only).
    `processor_child`: the fill looks like the dag-processor's parse child to dag_factory (see CHILD)."""
    python = python or project_python()
    scratch.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=f"{label}_home_", dir=scratch))
    child = scratch / "child.py"
    if not child.exists() or child.read_text() != CHILD:
        child.write_text(CHILD)
    out = home / "result.json"
    cmd = [str(python), str(child), "--entry", str(entry), "--out", str(out)]
    cmd += [arg for f in env_files for arg in ("--env-file", f)]
    if watch:
        cmd += ["--watch", str(watch)]
    if not serialize:
        cmd.append("--no-serialize")
    if profile:
        cmd += ["--profile", str(profile)]
    if profile_serialize:
        cmd += ["--profile-serialize", str(profile_serialize)]
    if cheap_hash:
        cmd.append("--cheap-hash")
    if before_issue15:
        cmd.append("--before-issue15")
    if gc_off:
        cmd.append("--gc-off")
    if gc_freeze:
        cmd.append("--gc-freeze")
    if processor_child:
        cmd.append("--processor-child")
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=_child_env(home, dags_folder or entry.parent, env or {}), cwd=home,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    result: dict[str, Any] = {"wall_s": time.perf_counter() - started, "problems": []}
    if proc.returncode != 0 or not out.exists():
        result["problems"].append(f"child exited {proc.returncode}: {(proc.stderr or proc.stdout)[-3000:]}")
    else:
        result.update(json.loads(out.read_text()))
        if result["import_errors"]:
            first = next(iter(result["import_errors"].items()))
            result["problems"].append(f"{len(result['import_errors'])} import error(s); "
                                      f"first {first[0]}: {first[1][-600:]}")
        if (home / "airflow.db").exists():
            result["problems"].append("the parse created the metadata DB (it should not touch one)")
    result["ok"] = not result["problems"]
    result["log_tail"] = (proc.stderr + proc.stdout)[-3000:]
    if not keep_home:
        shutil.rmtree(home, ignore_errors=True)
    return result


def _first_target(wl: Workload, dag_id: str) -> str:
    name = dag_id.rpartition("__")[0]
    shape = wl.shapes.get(wl.spec_of.get(name, "")) or {}
    targets = (shape.get("deployment") or {}).get("targets") or [{"name": "x"}]
    return targets[0]["name"]


def _problems(result: dict, expected: dict[str, int]) -> list[str]:
    """The DAG set and task counts against what the factory builds from the workload."""
    out = []
    got = result["dag_tasks"]
    if set(got) != set(expected):
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        out.append(f"DAG set differs: {len(got)} DAGs, expected {len(expected)}; "
                   f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                   f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}")
    else:
        wrong = [(d, got[d], n) for d, n in expected.items() if got[d] != n]
        if wrong:
            out.append(f"{len(wrong)} DAG(s) with another task count (dag, got, expected): {wrong[:5]}")
    return out


# --- dag-factory 1.1.0's own virtualenv ----------------------------------------------------------


def ensure_dagfactory_env(venv: Path = DAGFACTORY_VENV, log=print) -> tuple[Path | None, str]:
    """(python of a venv with dag-factory 1.1.0 + Airflow 3.3.2, "") or (None, why not).

    Created once with `python -m venv` + pip (the project's constraints first, then unpinned)
    and reused; never a project dependency. The folder ignores itself for git."""
    python = venv / "bin" / "python"
    check = ("import dagfactory, airflow; assert dagfactory.__version__ == '1.1.0', dagfactory.__version__; "
             "print(airflow.__version__)")

    def ready() -> bool:
        if not python.exists():
            return False
        ok = subprocess.run([str(python), "-c", check], capture_output=True, text=True,
                            env={**os.environ, "AIRFLOW_HOME": tempfile.gettempdir() + "/dagfactory110_check_home",
                                 "AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY": "False", "DO_NOT_TRACK": "1"})
        return ok.returncode == 0

    if ready():
        return python, ""
    venv.parent.mkdir(parents=True, exist_ok=True)
    ignore = venv.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    log(f"dagfactory110: creating {venv} (once; pip install {' '.join(DAGFACTORY_REQUIREMENTS)}) ...")
    base = getattr(sys, "_base_executable", sys.executable)
    made = subprocess.run([base, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        return None, f"python -m venv failed: {made.stderr.strip()[-500:]}"
    attempts = [["-c", str(ROOT / "constraints.txt")], []]
    why = ""
    for extra in attempts:
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", *DAGFACTORY_REQUIREMENTS, *extra],
                             capture_output=True, text=True, timeout=3600)
        if pip.returncode == 0 and ready():
            return python, ""
        why = (pip.stderr or pip.stdout).strip()[-800:]
    return None, f"pip could not install {' '.join(DAGFACTORY_REQUIREMENTS)}: {why}"


# --------------------------------------------------------------------------- reporting

_METRICS = ("import_s", "serialize_s", "import_serialize_s", "import_cpu_s", "serialize_cpu_s", "import_serialize_cpu_s",
            "rss_import_mb", "rss_mb", "variable_reads",
            "spec_file_opens", "spec_dir_listings", "airflow_import_s", "dags", "tasks",
            "sum_import_s", "sum_serialize_s", "sum_import_serialize_s",
            "gc_cpu_import_s", "gc_cpu_serialize_s", "gc_full_collections_import", "gc_full_collections_serialize")


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict]) -> list[dict]:
    groups: dict[tuple[str, int], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["variant"], run["models"]), []).append(run)
    floor = {n: _median([r["import_s"] for r in rs if r.get("ok")]) for (v, n), rs in groups.items() if v == "floor"}
    floor_rss = {n: _median([r["rss_mb"] for r in rs if r.get("ok")]) for (v, n), rs in groups.items() if v == "floor"}
    floor_rss_imp = {n: _median([r["rss_import_mb"] for r in rs if r.get("ok")])
                     for (v, n), rs in groups.items() if v == "floor"}
    for run in runs:  # JSON of an earlier version: no per-run import + serialize
        if "import_serialize_s" not in run:
            run["import_serialize_s"] = _import_serialize(run)
    out = []
    for (variant, n), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], VARIANTS.index(kv[0][0]))):
        good = [r for r in rs if r.get("ok")]
        row: dict[str, Any] = {"variant": variant, "models": n, "runs": len(rs), "ok_runs": len(good)}
        row["files"] = max((r.get("split") or 1 for r in rs), default=1)
        for m in _METRICS:
            row[f"median_{m}"] = _median([r.get(m) for r in good])
        row["min_import_s"] = min((r["import_s"] for r in good), default=None)
        row["max_import_s"] = max((r["import_s"] for r in good), default=None)
        row["max_variable_reads"] = max((r["variable_reads"] for r in good), default=None)
        row["max_spec_files_read"] = max((len(r["spec_files_read"]) for r in good), default=None)
        row["problems"] = sorted({p for r in rs for p in r.get("problems", [])})
        fi, fr, fri = floor.get(n), floor_rss.get(n), floor_rss_imp.get(n)
        full = variant != "factory_task"
        row["import_x_floor"] = row["median_import_s"] / fi if full and fi and row["median_import_s"] else None
        row["rss_x_floor"] = row["median_rss_mb"] / fr if full and fr and row["median_rss_mb"] else None
        row["rss_import_x_floor"] = (row["median_rss_import_mb"] / fri
                                     if full and fri and row["median_rss_import_mb"] else None)
        # Robust to a noisy machine: the ratio within each repetition (same minutes), then the median.
        floor_by_rep = {r.get("repetition"): r["import_s"] for r in groups.get(("floor", n), []) if r.get("ok")}
        paired = [r["import_s"] / floor_by_rep[r.get("repetition")] for r in good
                  if full and floor_by_rep.get(r.get("repetition"))]
        row["import_x_floor_paired"] = _median(paired)
        floor_min = min((r["import_s"] for r in groups.get(("floor", n), []) if r.get("ok")), default=None)
        row["import_x_floor_min"] = row["min_import_s"] / floor_min if full and floor_min and row["min_import_s"] else None
        # the same two ratios for serialize, the sum, and in CPU time
        for key in ("serialize_s", "import_serialize_s", "import_cpu_s", "serialize_cpu_s", "import_serialize_cpu_s"):
            mine, theirs = row[f"median_{key}"], _median([r.get(key) for r in groups.get(("floor", n), []) if r.get("ok")])
            row[f"{key[:-2]}_x_floor"] = mine / theirs if full and mine and theirs else None
            by_rep = {r.get("repetition"): r.get(key) for r in groups.get(("floor", n), []) if r.get("ok")}
            row[f"{key[:-2]}_x_floor_paired"] = _median([r[key] / by_rep[r.get("repetition")] for r in good
                                                         if full and r.get(key) and by_rep.get(r.get("repetition"))])
        out.append(row)
    # *_cheaphash against the variant it patches, paired by repetition: what the hash still costs
    for row in out:
        if row["variant"] not in CHEAP_HASH:
            continue
        base_runs = {r.get("repetition"): r for r in groups.get((CHEAP_HASH[row["variant"]], row["models"]), [])
                     if r.get("ok")}
        for key in ("import_s", "import_serialize_s", "import_cpu_s", "import_serialize_cpu_s"):
            row[f"{key[:-2]}_x_uncheap_paired"] = _median([
                r[key] / base_runs[r.get("repetition")][key] for r in groups[(row["variant"], row["models"])]
                if r.get("ok") and r.get(key) and base_runs.get(r.get("repetition"), {}).get(key)])
    task_rows = sorted((r for r in out if r["variant"] == "factory_task"), key=lambda r: r["models"])
    if task_rows and task_rows[0]["median_import_s"]:
        base = task_rows[0]
        # the baseline's runs by (the N they were measured next to, repetition): paired ratios
        base_by = {(r.get("paired_with", base["models"]), r.get("repetition")): r["import_s"]
                   for r in groups.get(("factory_task", base["models"]), []) if r.get("ok")}
        for r in task_rows:
            r["import_x_task_smallest_n"] = (r["median_import_s"] / base["median_import_s"]
                                             if r["median_import_s"] else None)
            r["task_baseline_models"] = base["models"]
            paired = []
            for run in groups[("factory_task", r["models"])]:
                rep = run.get("repetition")
                ref = base_by.get((r["models"], rep)) or base_by.get((base["models"], rep))
                if run.get("ok") and "paired_with" not in run and ref:
                    paired.append(run["import_s"] / ref)
            r["import_x_task_smallest_n_paired"] = _median(paired) if r is not base else 1.0
    single = {r["models"]: r for r in out if r["variant"] == "factory"}
    for r in out:
        one = single.get(r["models"])
        if r["variant"] != "factory_split" or not one:
            continue
        for key, mine in (("import_s", "median_import_s"), ("import_serialize_s", "median_import_serialize_s"),
                          ("sum_import_serialize_s", "median_sum_import_serialize_s")):
            theirs = one["median_import_serialize_s" if key.startswith("sum_") else f"median_{key}"]
            r[f"{key}_x_single_file"] = r[mine] / theirs if r[mine] and theirs else None
    return out


GOAL_MODELS = 1000  # the N the goals are stated at (issues 5 and 15); the largest N when it was not measured


def goal_ratios(rows: list[dict], runs: list[dict] = ()) -> dict[str, Any]:
    """The numbers issues 5 and 15 ask about, at N=1000 (else the largest N measured with the full
    variants; `runs`: for the per-repetition dag-factory / factory ratio)."""
    full = [r["models"] for r in rows if r["variant"] in ("floor", "factory")]
    if not full:
        return {}
    n = GOAL_MODELS if GOAL_MODELS in full else max(full)
    at = {r["variant"]: r for r in rows if r["models"] == n}

    def ratio(a: str, key_a: str, b: str, key_b: str) -> float | None:
        x, y = (at.get(a) or {}).get(key_a), (at.get(b) or {}).get(key_b)
        return x / y if x and y else None

    task = sorted((r for r in rows if r["variant"] == "factory_task"), key=lambda r: r["models"])
    task_n = next((r for r in task if r["models"] == n), task[-1] if task else None)
    factory_runs = [r["max_variable_reads"] for r in rows
                    if r["variant"].startswith("factory") and r["max_variable_reads"] is not None]
    split = at.get("factory_split") or {}
    by_rep: dict[tuple[str, Any], float] = {(r["variant"], r.get("repetition")): r["import_s"] for r in runs
                                            if r.get("ok") and r["models"] == n and "paired_with" not in r}
    df_paired = _median([t / by_rep["factory", rep] for (v, rep), t in by_rep.items()
                         if v == "dagfactory110" and by_rep.get(("factory", rep))])
    factory, cheap = at.get("factory") or {}, at.get("factory_cheaphash") or {}

    def paired(a: str, b: str, key: str) -> float | None:
        """Median over repetitions of a's `key` / b's `key` at N=n."""
        of = {(r["variant"], r.get("repetition")): r.get(key) for r in runs
              if r.get("ok") and r["models"] == n and "paired_with" not in r}
        return _median([v / of[b, rep] for (var, rep), v in of.items() if var == a and v and of.get((b, rep))])

    return {
        "models": n,
        "nogc_x_factory": {key: paired("factory_nogc", "factory", key) for key in ("import_s", "import_cpu_s")},
        "factory_x_gc_off": {key: paired("factory", "factory_gc_off", key)
                             for key in ("import_s", "import_cpu_s", "serialize_s", "serialize_cpu_s",
                                         "import_serialize_s", "import_serialize_cpu_s", "rss_import_mb", "rss_mb")},
        "gc_cpu": {v: {key: (at.get(v) or {}).get(f"median_{key}")
                       for key in ("gc_cpu_import_s", "gc_cpu_serialize_s", "gc_full_collections_import",
                                   "gc_full_collections_serialize")}
                   for v in ("floor", "factory", "factory_gc_off", "factory_gc_pause") if at.get(v)},
        "cold_x_floor": {key: paired("factory_cold", "floor", key)
                         for key in ("import_s", "import_serialize_s", "import_cpu_s", "import_serialize_cpu_s")},
        "factory_x_cold": {key: paired("factory", "factory_cold", key) for key in ("import_s", "import_cpu_s")},
        "gc_off_x_floor": {key: paired("factory_gc_off", "floor", key)
                           for key in ("import_s", "import_serialize_s", "import_cpu_s", "import_serialize_cpu_s")},
        "nogc_freeze_x_floor": {key: paired("factory_nogc_freeze", "floor", key)
                                for key in ("import_cpu_s", "serialize_cpu_s", "import_serialize_cpu_s")},
        "nogc_import_x_floor_paired": paired("factory_nogc", "floor", "import_s"),
        "nogc_import_cpu_x_floor_paired": paired("factory_nogc", "floor", "import_cpu_s"),
        "factory_x_before": {key: paired("factory", "factory_before", key)
                             for key in ("import_s", "import_cpu_s", "serialize_s", "serialize_cpu_s",
                                         "import_serialize_s", "import_serialize_cpu_s")},
        "factory_import_x_floor": ratio("factory", "median_import_s", "floor", "median_import_s"),
        "factory_import_x_floor_paired": factory.get("import_x_floor_paired"),
        "factory_serialize_x_floor": factory.get("serialize_x_floor"),
        "factory_serialize_x_floor_paired": factory.get("serialize_x_floor_paired"),
        "factory_import_serialize_x_floor": factory.get("import_serialize_x_floor"),
        "factory_import_serialize_x_floor_paired": factory.get("import_serialize_x_floor_paired"),
        "factory_import_cpu_x_floor_paired": factory.get("import_cpu_x_floor_paired"),
        "factory_serialize_cpu_x_floor_paired": factory.get("serialize_cpu_x_floor_paired"),
        "factory_import_serialize_cpu_x_floor_paired": factory.get("import_serialize_cpu_x_floor_paired"),
        "factory_cheaphash_import_cpu_x_factory_paired": cheap.get("import_cpu_x_uncheap_paired"),
        "factory_cheaphash_import_serialize_cpu_x_factory_paired": cheap.get("import_serialize_cpu_x_uncheap_paired"),
        "factory_cheaphash_import_x_factory_paired": cheap.get("import_x_uncheap_paired"),
        "factory_cheaphash_import_serialize_x_factory_paired": cheap.get("import_serialize_x_uncheap_paired"),
        "factory_cheaphash_import_x_floor_paired": cheap.get("import_x_floor_paired"),
        "floor_cheaphash_import_x_floor_paired": (at.get("floor_cheaphash") or {}).get("import_x_uncheap_paired"),
        "dagfactory110_import_x_factory": ratio("dagfactory110", "median_import_s", "factory", "median_import_s"),
        "dagfactory110_import_x_factory_paired": df_paired,
        "factory_rss_x_floor": ratio("factory", "median_rss_mb", "floor", "median_rss_mb"),
        "factory_task_x_baseline": task_n.get("import_x_task_smallest_n") if task_n else None,
        "factory_task_x_baseline_paired": task_n.get("import_x_task_smallest_n_paired") if task_n else None,
        "factory_task_models": [task[0]["models"], task_n["models"]] if task_n else None,
        "max_variable_reads_per_parse": max(factory_runs) if factory_runs else None,
        "split_files": split.get("files"),
        "split_file_max_import_serialize_s": split.get("median_import_serialize_s"),
        "factory_import_serialize_s": (at.get("factory") or {}).get("median_import_serialize_s"),
        "split_file_max_import_serialize_x_single_file": split.get("import_serialize_s_x_single_file"),
        "split_sum_import_serialize_x_single_file": split.get("sum_import_serialize_s_x_single_file"),
    }


def render_ratios(g: dict[str, Any]) -> str:
    if not g:
        return ""

    def x(v: float | None) -> str:
        return "—" if v is None else f"{v:.2f}×"

    def with_cpu(ratios: dict[str, Any], *keys: str) -> str:
        """`import 0.82× (CPU 0.81×), import + serialize ...` for the ratios' `<key>_s` / `<key>_cpu_s`."""
        return ", ".join(f"{k.replace('_', ' + ')} {x(ratios.get(f'{k}_s'))} (CPU {x(ratios.get(f'{k}_cpu_s'))})"
                         for k in keys)

    n = g["models"]
    lines = [f"At N={n} (medians of this run):",
             f"- factory import / floor import: {x(g['factory_import_x_floor'])} "
             f"(paired {x(g['factory_import_x_floor_paired'])}; CPU time paired "
             f"{x(g.get('factory_import_cpu_x_floor_paired'))}; goal ≤ 0.85×, issue 15)",
             f"- factory serialize / floor serialize: {x(g.get('factory_serialize_x_floor'))} "
             f"(paired {x(g.get('factory_serialize_x_floor_paired'))}; CPU time paired "
             f"{x(g.get('factory_serialize_cpu_x_floor_paired'))}; goal ≤ 1×, issue 15)",
             f"- factory import + serialize / floor: {x(g.get('factory_import_serialize_x_floor'))} "
             f"(paired {x(g.get('factory_import_serialize_x_floor_paired'))}; CPU time paired "
             f"{x(g.get('factory_import_serialize_cpu_x_floor_paired'))}; goal ≤ 0.95×, issue 15)"]
    if g.get("factory_cheaphash_import_x_factory_paired") is not None:
        lines.append(f"- left to win with an identity DAG.__hash__ (factory_cheaphash / factory, paired): import "
                     f"{x(g['factory_cheaphash_import_x_factory_paired'])} (CPU "
                     f"{x(g.get('factory_cheaphash_import_cpu_x_factory_paired'))}), import + serialize "
                     f"{x(g.get('factory_cheaphash_import_serialize_x_factory_paired'))} (CPU "
                     f"{x(g.get('factory_cheaphash_import_serialize_cpu_x_factory_paired'))})")
    gcx = g.get("factory_x_gc_off") or {}
    if gcx.get("import_s") is not None:
        off = g.get("gc_off_x_floor") or {}
        lines.append(f"- factory / factory_gc_off (DAG_FACTORY_PARSE_GC=pause-freeze vs off), paired: "
                     f"{with_cpu(gcx, 'import', 'serialize', 'import_serialize')}, peak RSS after import "
                     f"{x(gcx.get('rss_import_mb'))}, at the end {x(gcx.get('rss_mb'))}; factory_gc_off / floor: "
                     f"import {x(off.get('import_s'))}, import + serialize {x(off.get('import_serialize_s'))}")
    cold = g.get("cold_x_floor") or {}
    if cold.get("import_s") is not None:
        warm = g.get("factory_x_cold") or {}
        lines.append(f"- a first parse, no spec cache (factory_cold / floor, paired): "
                     f"{with_cpu(cold, 'import', 'import_serialize')}; factory / factory_cold: {with_cpu(warm, 'import')}")
    if g.get("gc_cpu"):
        lines.append("- CPU s inside the cyclic GC (median; full collections) during import / serialize: " + ", ".join(
            f"{v} {_fmt(c['gc_cpu_import_s'], '.2f')} ({_fmt(c['gc_full_collections_import'], '.0f')}) / "
            f"{_fmt(c['gc_cpu_serialize_s'], '.2f')} ({_fmt(c['gc_full_collections_serialize'], '.0f')})"
            for v, c in g["gc_cpu"].items()))
    nogc = g.get("nogc_x_factory") or {}
    if nogc.get("import_s") is not None:
        lines.append(f"- factory_nogc / factory (the cyclic GC off during the parse), paired: import "
                     f"{x(nogc['import_s'])} (CPU {x(nogc.get('import_cpu_s'))}); factory_nogc / floor import "
                     f"{x(g.get('nogc_import_x_floor_paired'))} (CPU {x(g.get('nogc_import_cpu_x_floor_paired'))})")
    freeze = g.get("nogc_freeze_x_floor") or {}
    if freeze.get("import_cpu_s") is not None:
        lines.append(f"- factory_nogc_freeze / floor (GC off during the parse, gc.freeze() after it), CPU paired: "
                     f"import {x(freeze['import_cpu_s'])}, serialize {x(freeze.get('serialize_cpu_s'))}, "
                     f"import + serialize {x(freeze.get('import_serialize_cpu_s'))}")
    before = g.get("factory_x_before") or {}
    if before.get("import_s") is not None:
        lines.append(f"- factory / factory_before (the factory as before issue 15), paired: "
                     f"{with_cpu(before, 'import', 'serialize', 'import_serialize')}")
    if g.get("floor_cheaphash_import_x_floor_paired") is not None:
        lines.append(f"- the floor with an identity DAG.__hash__ (floor_cheaphash / floor import, paired): "
                     f"{x(g['floor_cheaphash_import_x_floor_paired'])}")
    lines += [f"- dag-factory 1.1.0 import / factory import: {x(g['dagfactory110_import_x_factory'])} "
              f"(paired {x(g.get('dagfactory110_import_x_factory_paired'))}; goal ≥ 4×)",
              f"- peak RSS factory / floor: {x(g['factory_rss_x_floor'])} (goal ≤ 1.3×)"]
    if g["factory_task_models"]:
        a, b = g["factory_task_models"]
        lines.append(f"- task-run parse (factory_task) N={b} / N={a}: {x(g['factory_task_x_baseline'])} "
                     f"(paired {x(g.get('factory_task_x_baseline_paired'))}; goal ≤ 1.5×)")
    lines.append(f"- Variable reads per parse (max over every factory* parse): {g['max_variable_reads_per_parse']} "
                 "(goal ≤ 2)")
    if g["split_files"]:
        lines.append(f"- factory_split, K={g['split_files']}: per-file max import + serialize "
                     f"{_fmt(g['split_file_max_import_serialize_s'], '.2f')} s vs the single file's "
                     f"{_fmt(g['factory_import_serialize_s'], '.2f')} s "
                     f"({x(g['split_file_max_import_serialize_x_single_file'])}); all K files together "
                     f"{x(g['split_sum_import_serialize_x_single_file'])} the single file")
    return "\n".join(lines)


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render_table(rows: list[dict]) -> str:
    head = ("variant", "N", "DAGs", "files", "import s", "(min)", "serialize s", "import + serialize s",
            "import CPU s", "import + serialize CPU s", "Σ files import + serialize s", "RSS MB (import)", "RSS MB (end)",
            "Variable reads", "spec files read",
            "import × floor", "(paired)", "(min)", "import + serialize × floor", "(paired)", "RSS × floor")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        name = r["variant"] + ("" if r["ok_runs"] == r["runs"] else f" ({r['runs'] - r['ok_runs']} failed)")
        reads = "—" if r["max_variable_reads"] is None else str(r["max_variable_reads"])
        specs = ("—" if r["variant"] in ("floor", "floor_cheaphash") or r["max_spec_files_read"] is None
                 else str(r["max_spec_files_read"]))
        imp, ser = r["median_import_s"], r["median_serialize_s"]
        both = r.get("median_import_serialize_s")
        split = r["variant"] == "factory_split"
        total = r.get("median_sum_import_serialize_s") if split else None
        lines.append("| " + " | ".join((
            name, str(r["models"]), _fmt(r["median_dags"], ".0f"), str(r.get("files") or 1),
            _fmt(imp, ".2f") + (" ‡" if imp is not None and imp > DAGBAG_IMPORT_TIMEOUT_S else ""),
            _fmt(r["min_import_s"], ".2f"), _fmt(ser, ".2f"),
            _fmt(both, ".2f") + (" †" if both is not None and both > DAG_FILE_PROCESSOR_TIMEOUT_S else ""),
            _fmt(r.get("median_import_cpu_s"), ".2f"), _fmt(r.get("median_import_serialize_cpu_s"), ".2f"),
            _fmt(total, ".2f"),
            _fmt(r["median_rss_import_mb"], ".0f"),
            _fmt(r["median_rss_mb"], ".0f"), reads, specs,
            _fmt(r["import_x_floor"], ".2f") + ("×" if r["import_x_floor"] else ""),
            _fmt(r.get("import_x_floor_paired"), ".2f") + ("×" if r.get("import_x_floor_paired") else ""),
            _fmt(r.get("import_x_floor_min"), ".2f") + ("×" if r.get("import_x_floor_min") else ""),
            _fmt(r.get("import_serialize_x_floor"), ".2f") + ("×" if r.get("import_serialize_x_floor") else ""),
            _fmt(r.get("import_serialize_x_floor_paired"), ".2f")
            + ("×" if r.get("import_serialize_x_floor_paired") else ""),
            _fmt(r["rss_x_floor"], ".2f") + ("×" if r["rss_x_floor"] else ""),
        )) + " |")
    lines.append("")
    lines.append("import s: median; (min): the fastest run. import + serialize s: median of the per-run sums. "
                 "import × floor: median over the floor's median; (paired): median of the per-repetition ratios; "
                 "(min): fastest over fastest. import + serialize × floor: the same for the per-run sums. "
                 "CPU s: the measuring process's CPU time (user + system) for the same work, medians.")
    cheap = [r for r in rows if r.get("import_x_uncheap_paired") is not None]
    if cheap:
        lines.append("")
        lines.append("*_cheaphash: the same parse with Airflow's `DAG.__hash__` replaced by `object.__hash__` in the "
                     "measuring process (what an upstream identity hash would give; never in the product). Against "
                     "the unpatched variant, paired by repetition: " + ", ".join(
                         f"{r['variant']} N={r['models']} import {r['import_x_uncheap_paired']:.2f}×"
                         + ("" if r.get("import_serialize_x_uncheap_paired") is None else
                            f", import + serialize {r['import_serialize_x_uncheap_paired']:.2f}×") for r in cheap))
    if any(r["variant"] == "factory_split" for r in rows):
        lines.append("")
        lines.append("factory_split: the fleet in `files` entry files, each parsed in its own process; its import, "
                     "serialize, import + serialize, RSS, Variable reads and spec files read are per repetition the "
                     "max over its files (what one file must fit in), then the median; Σ files: the sum over its "
                     "files (the total work); DAGs: the union.")
    if any(" ‡" in line or " †" in line for line in lines):
        lines.append("")
        lines.append(f"‡ past Airflow's default `[core] dagbag_import_timeout` ({DAGBAG_IMPORT_TIMEOUT_S} s): the "
                     "dag-processor would fail the file with an import timeout. † past the default `[dag_processor] "
                     f"dag_file_processor_timeout` ({DAG_FILE_PROCESSOR_TIMEOUT_S} s) for parse + serialization.")
    task = [r for r in rows if r.get("import_x_task_smallest_n") is not None]
    if len(task) > 1:
        lines.append("")
        lines.append("factory_task (parsing context = one `__deploy` DAG), import time vs N="
                     f"{task[0]['task_baseline_models']}: " + ", ".join(
                         f"N={r['models']} {r['median_import_s']:.3f} s ({r['import_x_task_smallest_n']:.2f}×"
                         + ("" if r is task[0] or r.get("import_x_task_smallest_n_paired") is None else
                            f", paired {r['import_x_task_smallest_n_paired']:.2f}×") + ")"
                         for r in task))
        if any(r.get("import_x_task_smallest_n_paired") is not None for r in task[1:]):
            lines.append(f"(the N={task[0]['task_baseline_models']} task-run parse runs right after the one at "
                         "each N, in every repetition; paired: median of those per-repetition ratios)")
    split = [r for r in rows if r.get("import_serialize_s_x_single_file") is not None]
    if split:
        lines.append("")
        lines.append(f"factory_split (K={split[0]['files']}) vs the single file (factory), median import + serialize "
                     "per file (max over the K files) and Σ over the K files: " + ", ".join(
                         f"N={r['models']} {r['median_import_serialize_s']:.2f} s "
                         f"({r['import_serialize_s_x_single_file']:.2f}×), Σ "
                         f"{_fmt(r.get('median_sum_import_serialize_s'), '.2f')} s "
                         f"({_fmt(r.get('sum_import_serialize_s_x_single_file'), '.2f')}×)" for r in split))
    return "\n".join(lines)


def print_profile(path: Path, top: int = 10, out=print) -> dict[str, list]:
    """Top cumulative entries of a profile: inside dag_factory/airflow, and overall for context.
    The DagBag fill's own call chain (>= 90% of the total) is left out: it says nothing."""
    import pstats

    stats = pstats.Stats(str(path))
    total = stats.total_tt
    entries = []
    for (file, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        entries.append((ct, tt, nc, file, line, func))
    entries.sort(reverse=True)
    chain_cutoff = 0.9 * max((e[0] for e in entries), default=0)

    def short(file: str) -> str:
        for marker in ("/site-packages/", str(ROOT) + "/"):
            if marker in file:
                return file.split(marker, 1)[1]
        return file

    ours = [e for e in entries if e[0] < chain_cutoff and ("/airflow/" in e[3] or "/dag_factory/" in e[3])]
    overall = [e for e in entries if e[0] < chain_cutoff]
    result = {}
    for title, rows in (("inside dag_factory and airflow", ours[:top]), ("overall", overall[:top])):
        out(f"\nprofile ({title}), total {total:.2f} s, by cumulative time:")
        out(f"{'cum s':>8} {'own s':>8} {'calls':>9}  function")
        for ct, tt, nc, file, line, func in rows:
            out(f"{ct:8.3f} {tt:8.3f} {nc:9d}  {short(file)}:{line}({func})")
        result[title] = [{"cumulative_s": ct, "own_s": tt, "calls": nc, "where": f"{short(file)}:{line}",
                          "function": func} for ct, tt, nc, file, line, func in rows]
    return result


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", default="100,300,1000", help="comma-separated N (default 100,300,1000)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per variant and N (median reported)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"any of {','.join(VARIANTS)} (default {','.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--split", type=int, default=DEFAULT_SPLIT, metavar="K",
                        help=f"factory_split: entry files the fleet is split across (default {DEFAULT_SPLIT})")
    parser.add_argument("--task-baseline", type=int, default=10,
                        help="also measure factory_task at this N, the reference for 'stays flat' (0: off)")
    parser.add_argument("--json", help="write all runs and medians here (default benchmarks/results/parse.json)")
    parser.add_argument("--profile", metavar="VARIANT",
                        help="afterwards, cProfile one parse of VARIANT at the largest N and print the top entries")
    parser.add_argument("--profile-top", type=int, default=10)
    parser.add_argument("--profile-phase", choices=("import", "serialize"), default="import",
                        help="--profile: the DagBag fill (default) or DagSerialization.to_dict of every DAG")
    parser.add_argument("--keep", action="store_true", help="keep the generated workloads (path printed)")
    parser.add_argument("--specs", default=str(SPECS), metavar="DIR",
                        help="the example specs (and _defaults.yaml) the workload cycles (default specs/)")
    parser.add_argument("--report", metavar="JSON", help="only print the table of an earlier run's JSON")
    args = parser.parse_args(argv)
    if args.report:
        earlier = json.loads(Path(args.report).read_text())
        rows = summarize(earlier["runs"])
        print(render_table(rows) + "\n\n" + render_ratios(goal_ratios(rows, earlier["runs"])))
        return 0

    sizes = sorted({int(x) for x in args.models.split(",") if x.strip()})
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    if args.profile and args.profile not in VARIANTS:
        parser.error(f"--profile: unknown variant {args.profile!r}")
    if args.profile == "factory_split":
        parser.error("--profile: factory_split is K parses of a K-th of the fleet; profile factory instead")
    if args.split < 1:
        parser.error("--split: K must be >= 1")
    notes: list[str] = []
    pythons: dict[str, Path] = {v: project_python() for v in VARIANTS}
    if "dagfactory110" in variants or args.profile == "dagfactory110":
        df_python, why = ensure_dagfactory_env()
        if df_python is None:
            msg = f"dagfactory110 skipped: {why}"
            print(msg, flush=True)
            notes.append(msg)
            variants = [v for v in variants if v != "dagfactory110"]
        else:
            pythons["dagfactory110"] = df_python

    json_path = (Path(args.json) if args.json else ROOT / "benchmarks" / "results" / "parse.json").resolve()
    tmp = Path(tempfile.mkdtemp(prefix="dag_factory_parse_bench_"))
    runs: list[dict] = []
    print(f"workloads in {tmp}; variants {', '.join(variants)}; N = {', '.join(map(str, sizes))}; "
          f"{args.repeat} repetition(s); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    result: dict[str, Any] = {
        "benchmark": "benchmarks/parse.py",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_at_start": os.getloadavg()},
        "models": sizes, "variants": variants, "repeat": args.repeat, "notes": notes,
        "split": args.split if "factory_split" in variants else None, "task_baseline": args.task_baseline,
        "limits": {"dagbag_import_timeout_s": DAGBAG_IMPORT_TIMEOUT_S,
                   "dag_file_processor_timeout_s": DAG_FILE_PROCESSOR_TIMEOUT_S},
    }
    try:
        workloads: dict[int, Workload] = {}

        def workload(n: int) -> Workload:
            t0 = time.perf_counter()
            wl = workloads[n] = generate_workload(tmp / f"n{n}", n, specs_dir=Path(args.specs).resolve())
            warm_spec_cache(wl, args.split)
            print(f"\nN={n}: {len(wl.expected)} DAGs, {sum(wl.expected.values())} tasks "
                  f"(generated in {time.perf_counter() - t0:.1f} s; live snapshot "
                  f"{wl.live_file.stat().st_size / 1024:.0f} KiB)", flush=True)
            return wl

        def measure(wl: Workload, v: str, rep: int, **tags: Any) -> None:
            r = run_variant(wl, v, python=pythons[v], split=args.split)
            r.update(repetition=rep, **tags)
            runs.append(r)
            label = f"  [{rep + 1}/{args.repeat}] {v:14s}" + (f" (N={wl.models}, task baseline)" if tags else "")
            if r["ok"] and v == "factory_split":
                print(f"{label} K={r['split']}: per file max import {r['import_s']:7.2f} s  max import+serialize "
                      f"{_fmt(r['import_serialize_s'], '6.2f')} s  Σ import+serialize "
                      f"{_fmt(r['sum_import_serialize_s'], '6.2f')} s  RSS {r['rss_mb']:6.0f} MB  Variable reads "
                      f"{r['variable_reads']} (per file)  specs read {len(r['spec_files_read'])} (most in one file)",
                      flush=True)
            elif r["ok"]:
                print(f"{label} import {r['import_s']:7.2f} s  serialize {_fmt(r['serialize_s'], '6.2f')} s  RSS "
                      f"{r['rss_mb']:6.0f} MB  Variable reads {r['variable_reads']}  specs read "
                      f"{len(r['spec_files_read'])}", flush=True)
            else:
                print(f"{label} FAILED: {r['problems'][0][:1500]}", flush=True)

        # factory_task's reference N (--task-baseline): measured right after factory_task at every N,
        # in the same repetition (same minutes of a noisy machine), so the ratio can be paired.
        baseline = args.task_baseline if "factory_task" in variants and args.task_baseline else 0
        if baseline and baseline not in sizes:
            base_wl = workload(baseline)
            warm = run_variant(base_wl, "factory_task", python=pythons["factory_task"])  # not recorded
            print(f"  warm-up factory_task (not recorded): import {_fmt(warm.get('import_s'), '.2f')} s", flush=True)
        for n in sizes:
            wl = workload(n)
            for rep in range(args.repeat):
                for v in variants:
                    measure(wl, v, rep)
                    if v == "factory_task" and baseline and baseline != n:
                        measure(workloads[baseline], "factory_task", rep, paired_with=n)

        rows = summarize(runs)
        ratios = goal_ratios(rows, runs)
        first = next((r for r in runs if r.get("ok")), {})
        result.update(python=first.get("python"), airflow_version=first.get("airflow_version"),
                      medians=rows, ratios=ratios, runs=runs, profile=None)
        result["machine"]["load_at_end"] = os.getloadavg()
        _write_json(json_path, result)
        print("\n" + render_table(rows))
        if ratios:
            print("\n" + render_ratios(ratios))
        print(f"\nload average at start {result['machine']['load_at_start'][0]:.2f}, "
              f"at end {result['machine']['load_at_end'][0]:.2f} ({os.cpu_count()} CPUs)")
        for r in rows:
            for p in r["problems"]:
                print(f"PROBLEM {r['variant']} N={r['models']}: {p[:2000]}")
        for note in notes:
            print(note)

        if args.profile:
            n = sizes[-1]
            phase = args.profile_phase
            prof = json_path.with_suffix(f".{args.profile}.n{n}{'' if phase == 'import' else '.serialize'}.prof")
            if phase == "import":
                r = run_variant(workloads[n], args.profile, python=pythons[args.profile], serialize=False, profile=prof)
            else:
                r = run_variant(workloads[n], args.profile, python=pythons[args.profile], profile_serialize=prof)
            if r["ok"] and prof.exists():
                key = "import_s" if phase == "import" else "serialize_s"
                print(f"\ncProfile of {args.profile} at N={n}: {phase} {r[key]:.2f} s under the profiler "
                      f"(stats: {prof})")
                result["profile"] = {"variant": args.profile, "models": n, "phase": phase, "file": str(prof),
                                     f"{key}_profiled": r[key], "top": print_profile(prof, args.profile_top)}
            else:
                print(f"\ncProfile of {args.profile} at N={n} failed: {r['problems'][:1]}")
                result["profile"] = {"variant": args.profile, "models": n, "failed": r["problems"]}
            _write_json(json_path, result)
    finally:
        if args.keep:
            print(f"\nworkloads kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nJSON: {json_path}")
    return 0 if all(r.get("ok") for r in runs) else 1


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
