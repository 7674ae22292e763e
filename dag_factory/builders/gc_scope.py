"""Python's cyclic GC around the fleet build (issue 15, DAG_FACTORY_PARSE_GC).

Building 1,000 models allocates millions of long-lived objects (DAGs, tasks, their dicts), all
in cycles (task <-> DAG). Each young collection during the build rescans the ever-growing older
generations for nothing: nothing built is garbage until the process exits. So the build runs with
the cyclic GC paused (scoped to the call: the caller's GC state is restored, a GC the caller had
disabled stays disabled). In the dag-processor's own parse child only, which serializes the DAGs
and exits, the built objects are then frozen (gc.freeze()) so serialization's collections skip them.
"""

from __future__ import annotations

import gc
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from dag_factory.settings import PARSE_GC

MODES = ("pause-freeze", "pause", "off")

# The dag-processor's parse child: airflow/dag_processing/processor.py, where _parse_file_entrypoint
# sets os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client" and calls _parse_file(msg) -> BundleDagBag
# (which imports the entry file), serializes every DAG, sends the result and the process exits.
PROCESSOR_MODULE = "airflow.dag_processing.processor"
PROCESSOR_FRAME = "_parse_file"


def mode() -> str:
    """DAG_FACTORY_PARSE_GC; an unknown value means the default (a typo never breaks a parse)."""
    value = PARSE_GC.get().strip().lower()
    return value if value in MODES else PARSE_GC.default


def in_processor_child(dag_id: str | None) -> bool:
    """True only inside the dag-processor's parse child, the one process that may freeze.

    All three must hold:
    - _AIRFLOW_PROCESS_CONTEXT == "client": set by the parse child; the manager, scheduler and
      api-server set "server"; pytest, dag.test() and scripts set nothing. The triggerer's runner
      and the task supervisor's remote-logging block set "client" too, so this alone is not enough;
    - the parsing context names no DAG (`dag_id`): a worker's task-run parse always names one;
    - a frame of airflow.dag_processing.processor._parse_file is on this thread's stack: the parse
      child's own call chain, which no long-lived process has. Checked by module name and function
      name only (the module is never imported here), so an Airflow that renames it just stops freezing.
    """
    if dag_id is not None or os.environ.get("_AIRFLOW_PROCESS_CONTEXT") != "client":
        return False
    if PROCESSOR_MODULE not in sys.modules:
        return False
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == PROCESSOR_FRAME and frame.f_globals.get("__name__") == PROCESSOR_MODULE:
            return True
        frame = frame.f_back
    return False


@contextmanager
def paused_gc(dag_id: str | None) -> Iterator[None]:
    """Run the block with the cyclic GC paused (modes pause, pause-freeze); restore the caller's state
    after it, also when it raises. pause-freeze in the processor child: gc.freeze() after a block that
    did not raise, before the GC is enabled again (so the pause's allocations are never scanned)."""
    chosen = mode()
    if chosen == "off":
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        if chosen == "pause-freeze" and in_processor_child(dag_id):
            gc.freeze()
    finally:
        if was_enabled:
            gc.enable()
