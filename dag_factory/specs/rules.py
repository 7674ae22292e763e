"""Checks a JSON Schema cannot express: schedules, step references and cycles,
importable callables, the allowlist of spec code, reserved names, and sizes of free-form data."""

from __future__ import annotations

import difflib
import importlib
import json
from datetime import date
from typing import Any, Iterable, Iterator, Mapping

from dag_factory import settings
from dag_factory.kinds import SECTIONS
from dag_factory.specs.model import DEPLOYMENT_FINAL, DEPLOYMENT_STEPS, STREAMING_STEPS, TRAINING_STEPS
from dag_factory.specs.schema import Problem
from dag_factory.specs.timing import schedule_problem

MAX_DATA_BYTES = 16_384  # hyperparameters, step kwargs: they are stored in the serialized DAG
# Spec code every project may use; more comes from $DAG_FACTORY_ALLOWED_CODE and _defaults.yaml.
BUILTIN_PYTHON = ("dag_factory.steps",)
BUILTIN_OPERATORS = ("airflow.providers",)

def check_values(doc: Mapping[str, Any]) -> Iterator[Problem]:
    """Value checks that hold for a spec and for the defaults file alike."""
    training = doc.get("training") or {}
    if isinstance(training.get("schedule"), str) and (why := schedule_problem(training["schedule"])):
        yield Problem(("training", "schedule"), why, "use cron ('0 3 * * *'), a preset ('@daily') or a duration ('6h')")
    if "start_date" in doc:
        try:
            date.fromisoformat(doc["start_date"])
        except ValueError:
            yield Problem(("start_date",), f"'{doc['start_date']}' is not a calendar date", "write YYYY-MM-DD")
    deployment = doc.get("deployment") or {}
    names = [t if isinstance(t, str) else t.get("name") for t in deployment.get("targets") or ()]
    for index, name in enumerate(names):
        if name in names[:index]:
            yield Problem(("deployment", "targets", index), f"target '{name}' is listed twice", "each target is deployed once")
    yield from _check_data_sizes(doc)


def _check_data_sizes(doc: Mapping[str, Any]) -> Iterator[Problem]:
    """Free-form mappings end up in the DAG (task arguments): bound them as JSON text."""
    training = doc.get("training") or {}
    places: list[tuple[tuple, Any]] = [(("training", "hyperparameters"), training.get("hyperparameters"))]
    for section in SECTIONS:
        for index, step in enumerate((doc.get(section) or {}).get("steps") or ()):
            if isinstance(step, Mapping):
                places.append(((section, "steps", index, "kwargs"), step.get("kwargs")))
    for path, value in places:
        if value is None:
            continue
        size = len(json.dumps(value, default=str, ensure_ascii=False).encode())
        if size > MAX_DATA_BYTES:
            yield Problem(path, f"is {size} bytes as JSON; at most {MAX_DATA_BYTES}",
                          "keep large data in the backend or a file, and pass its location")


def check_reserved(doc: Mapping[str, Any]) -> Iterator[Problem]:
    """Model names may not start with the prefix of dag_factory's own DAG ids (the invalid-spec
    DAGs and the sync DAG): a model could otherwise replace one of them without a word."""
    name = doc.get("model")
    if isinstance(name, str) and name.startswith(settings.RESERVED_PREFIX):
        yield Problem(("model",), f"'{name}' starts with '{settings.RESERVED_PREFIX}', which is reserved for "
                      f"dag_factory's own DAGs ({settings.SYNC_DAG_ID}, {settings.INVALID_DAG_PREFIX}<file>)",
                      "choose another model name")


def allowed_code(doc: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The allowlist in force for one merged spec: built-ins, $DAG_FACTORY_ALLOWED_CODE (both
    kinds) and the defaults file's `allowed_code` (a spec's own key is refused by its schema)."""
    extra = tuple(p.strip() for p in settings.ALLOWED_CODE.get().split(",") if p.strip())
    own = doc.get("allowed_code") or {}
    return {"python": BUILTIN_PYTHON + extra + tuple(own.get("python") or ()),
            "operator": BUILTIN_OPERATORS + extra + tuple(own.get("operators") or ())}


def split_target(kind: str, target: str) -> tuple[str, str]:
    """(module, attribute) of a step's code: `pkg.mod:func` (python) or `pkg.mod.Class` (operator)."""
    module, _, attr = target.partition(":") if kind == "python" else target.rpartition(".")
    return module, attr


def is_allowed(kind: str, target: str, entries: Iterable[str]) -> bool:
    """Pure string matching, nothing imported. The module and the attribute are compared apart:
    an entry `acme` allows the modules `acme` and `acme.*` ('acme:f', 'acme.x:f', 'acme.x.Op'; not
    'acme_other'); `acme.x:f` allows that one callable; for operators, `acme.x.Op` that one class."""
    module, attr = split_target(kind, target)
    for entry in entries:
        if ":" in entry:
            if entry == f"{module}:{attr}":
                return True
        elif module == entry or module.startswith(entry + ".") or (kind == "operator" and target == entry):
            return True
    return False


def allowlist_problem(kind: str, target: str, entries: tuple[str, ...]) -> str | None:
    if is_allowed(kind, target, entries):
        return None
    allowed = ", ".join(dict.fromkeys(entries))
    return f"'{target}' is not allowed: spec code must be on the allowlist; allowed: {allowed}"


def _allowlist_hint(kind: str, target: str) -> str:
    module = target.partition(":")[0] if kind == "python" else target.rpartition(".")[0]
    key = "python" if kind == "python" else "operators"
    return (f"to allow it, add '{module}' (or '{target}') to allowed_code.{key} in _defaults.yaml, or to "
            f"${settings.ALLOWED_CODE.env} where Airflow runs (docs/specs.md#allowed-code)")


def check_file_name(doc: Mapping[str, Any], stem: str) -> Iterator[Problem]:
    """One model per file, named after it: a worker running one task then reads one spec."""
    if doc.get("model") != stem:
        yield Problem(("model",), f"model '{doc.get('model')}' must be in a file named {doc.get('model')}.yaml "
                      f"(this file is '{stem}')", "rename the file or the model")


def builtin_steps(section: str, doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The built-in step ids of one DAG, in order; custom steps may refer to these."""
    if section == "training":
        return TRAINING_STEPS
    if section == "streaming":
        return STREAMING_STEPS
    targets = (doc.get("deployment") or {}).get("targets") or ()
    names = tuple(t if isinstance(t, str) else t["name"] for t in targets)
    return deployment_steps(names)


def deployment_steps(targets: Iterable[str]) -> tuple[str, ...]:
    return DEPLOYMENT_STEPS + tuple(f"deploy_{t}" for t in targets) + (DEPLOYMENT_FINAL,)


def check_steps(doc: Mapping[str, Any], *, check_imports: bool) -> Iterator[Problem]:
    """Custom steps: unique ids, existing references, no cycles, code on the allowlist (always,
    by name only), importable code (with `check_imports`; never for code off the allowlist)."""
    allowed = allowed_code(doc)
    for section in SECTIONS:
        steps = (doc.get(section) or {}).get("steps") or []
        if not steps:
            continue
        builtins = builtin_steps(section, doc)
        yield from _check_section_steps(section, steps, builtins)
        for index, step in enumerate(steps):
            kind = "python" if "python" in step else "operator"
            path = (section, "steps", index, kind)
            if why := allowlist_problem(kind, step[kind], allowed[kind]):
                yield Problem(path, why, _allowlist_hint(kind, step[kind]))
            elif check_imports and (why := import_problem(kind, step[kind], allowed[kind])):
                yield Problem(path, why, "is the package installed where Airflow runs?")


def _ids(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _check_section_steps(section: str, steps: list[dict], builtins: tuple[str, ...]) -> Iterator[Problem]:
    problems = list(_check_step_ids(section, steps, builtins))
    yield from problems
    if problems:
        return  # a cycle check over broken references would only add noise
    if cycle := find_cycle(step_edges(steps, builtins)):
        first = next(i for i, s in enumerate(steps) if (s.get("id") or s.get("replace")) in cycle)
        yield Problem((section, "steps", first), "steps form a cycle: " + " -> ".join(cycle + [cycle[0]]),
                      "a step cannot run both before and after another")


def _check_step_ids(section: str, steps: list[dict], builtins: tuple[str, ...]) -> Iterator[Problem]:
    ids: dict[str, int] = {}
    replaced: dict[str, int] = {}
    for index, step in enumerate(steps):
        path = (section, "steps", index)
        step_id = step.get("id") or step.get("replace")
        if not step_id:
            yield Problem(path, "a step needs an 'id' (or 'replace' to take a built-in step's id)")
            continue
        if replace := step.get("replace"):
            if replace == "process_partition" or replace.startswith("deploy_"):
                yield Problem(path + ("replace",), f"'{replace}' cannot be replaced",
                              "it is a mapped task or a task group; add steps before or after it instead")
            elif replace not in builtins:
                yield Problem(path + ("replace",), f"'{replace}' is not a built-in step of the {section} DAG",
                              _suggest(replace, builtins))
            if step.get("before") or step.get("after"):
                yield Problem(path, "a step with 'replace' takes the replaced step's place; drop 'before'/'after'")
            if replace in replaced:
                yield Problem(path + ("replace",), f"'{replace}' is already replaced by step {replaced[replace]}")
            replaced[replace] = index
        elif step_id in builtins:
            yield Problem(path + ("id",), f"'{step_id}' is a built-in step of the {section} DAG",
                          f"choose another id, or write 'replace: {step_id}' to replace it")
        if step_id in ids:
            yield Problem(path + ("id",), f"step id '{step_id}' is used twice in the {section} DAG")
        ids.setdefault(step_id, index)
    known = set(builtins) | set(ids)
    for index, step in enumerate(steps):
        for key in ("before", "after"):
            for ref in _ids(step.get(key)):
                if ref not in known:
                    at = (section, "steps", index, key)
                    yield Problem(at, f"'{ref}' is not a step of the {section} DAG", _suggest(ref, sorted(known)))


def step_edges(steps: Iterable[Any], builtins: tuple[str, ...]) -> dict[str, list[str]]:
    """Upstream -> downstream edges of one DAG, built-in chain plus custom steps.

    `steps` are spec dicts or CustomStep objects. The DAG builder wires tasks with this same
    function, so what validates is what runs.
    """
    edges: dict[str, list[str]] = {b: [] for b in builtins}
    for up, down in zip(builtins, builtins[1:]):
        edges[up].append(down)
    for step in steps:
        get = step.get if isinstance(step, Mapping) else lambda k, s=step: getattr(s, k)
        if get("replace"):
            continue  # keeps the replaced step's edges
        step_id = get("id")
        edges.setdefault(step_id, [])
        before, after = _ids(get("before")), _ids(get("after"))
        if not before and not after and builtins:
            after = [builtins[-1]]
        for ref in after:
            edges.setdefault(ref, []).append(step_id)
        for ref in before:
            edges[step_id].append(ref)
    return edges


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle in a directed graph as a list of nodes, or [] (iterative DFS)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in sorted(edges):
        if root in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(edges.get(root, ())))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return path[path.index(child):]
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(edges.get(child, ()))))
                path.append(child)
    return []


def import_problem(kind: str, target: str, allowed: Iterable[str] | None = None) -> str | None:
    """Why a step's callable or operator cannot be used, or None if it imports. With `allowed`,
    the object must also be defined in allowed code: an allowed module's `from subprocess import
    run` does not make `subprocess.run` allowed."""
    module_name, attr = split_target(kind, target)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to see
        return f"cannot import module '{module_name}': {type(exc).__name__}: {exc}"
    obj = getattr(module, attr, None)
    if obj is None:
        return f"module '{module_name}' has no attribute '{attr}'"
    if kind == "python" and not callable(obj):
        return f"'{target}' is not callable"
    if kind == "operator":
        from airflow.sdk import BaseOperator

        if not (isinstance(obj, type) and issubclass(obj, BaseOperator)):
            return f"'{target}' is not an Airflow operator class"
    home = getattr(obj, "__module__", None)
    named = allowed is not None and target in allowed  # allowed by its exact name: the user chose it
    if allowed is not None and not named and (
            not isinstance(home, str) or not is_allowed(kind, _defined_as(kind, home, obj), allowed)):
        return f"'{target}' is defined in '{home}', which is not on the allowlist (an allowed module imported it)"
    return None


def _defined_as(kind: str, home: str, obj: Any) -> str:
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", ""))
    return f"{home}:{name}" if kind == "python" else f"{home}.{name}"


def _suggest(name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else f"known steps: {', '.join(choices)}"
