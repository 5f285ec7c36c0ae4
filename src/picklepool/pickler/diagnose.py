"""Say *where* pickling failed: the path to the offending object inside a call.

When ``pickler.dumps(task)`` raises, :func:`explain` walks the object again, one
child at a time (container items, dict values, instance attributes, closure
cells), and reports the deepest child that still fails, as a path such as
``args[1]['model'].optimizer._lock``.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

_MAX_DEPTH = 50
_MAX_CHILDREN = 10_000


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for i, (k, v) in enumerate(obj.items()):
            if i >= _MAX_CHILDREN:
                return
            yield f"[{k!r}]", v
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj[:_MAX_CHILDREN]):
            yield f"[{i}]", v
        return
    if isinstance(obj, (set, frozenset)):
        for i, v in enumerate(obj):
            if i >= _MAX_CHILDREN:
                return
            yield f"{{item {i}}}", v
        return
    if isinstance(obj, types.FunctionType):
        if obj.__closure__:
            for name, cell in zip(obj.__code__.co_freevars, obj.__closure__, strict=False):
                try:
                    yield f".<closure {name}>", cell.cell_contents
                except ValueError:
                    continue
        return
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        for k, v in state.items():
            yield f".{k}", v
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and hasattr(obj, name) and name != "__dict__":
                yield f".{name}", getattr(obj, name)


def find_culprit(pickler: Any, obj: Any, root: str = "") -> tuple[str, Any, BaseException] | None:
    """The deepest ``(path, object, error)`` under *obj* that *pickler* cannot dump."""
    seen: set[int] = set()

    def fails(value: Any) -> BaseException | None:
        try:
            pickler.dumps(value)
        except BaseException as exc:  # any failure is what we look for
            return exc
        return None

    def walk(value: Any, path: str, err: BaseException, depth: int) -> tuple[str, Any, BaseException]:
        if depth < _MAX_DEPTH and id(value) not in seen:
            seen.add(id(value))
            for suffix, child in _children(value):
                child_err = fails(child)
                if child_err is not None:
                    return walk(child, path + suffix, child_err, depth + 1)
        return path, value, err

    err = fails(obj)
    if err is None:
        return None
    return walk(obj, root, err, 0)


def explain(pickler: Any, obj: Any, exc: BaseException, root: str = "") -> str:
    """A message naming the path, type, pickler and fix for a failed dumps."""
    name = getattr(pickler, "name", type(pickler).__name__)
    found = find_culprit(pickler, obj, root)
    if found is None:
        path, culprit, err = root or "the task", obj, exc
    else:
        path, culprit, err = found
        path = path or root or "the task"
    kind = f"{type(culprit).__module__}.{type(culprit).__qualname__}"
    return (
        f"cannot pickle {path} (type {kind}) with pickler {name!r}: "
        f"{type(err).__name__}: {err}. {_fix(name, culprit)}"
    )


def _fix(pickler_name: str, culprit: Any) -> str:
    lockish = "lock" in type(culprit).__name__.lower() or "queue" in type(culprit).__name__.lower()
    if lockish and pickler_name != "hybrid":
        return (
            "Fix: use pickler='hybrid' (the default), which sends locks, conditions "
            "and queues as snapshots rebuilt in the worker, or keep the lock out of "
            "the task and pass only the data it guards."
        )
    if isinstance(culprit, (types.FunctionType, type)) and pickler_name == "pickle":
        return (
            "Fix: pickler 'pickle' sends functions and classes by reference, so they "
            "must be importable; use pickler='hybrid' or 'cloudpickle', or decorate "
            "it with picklepool.wrap_non_picklable_objects."
        )
    return (
        "Fix: pass something picklable instead (for example the data this object "
        "holds, and rebuild the object in the task), or try pickler='hybrid'."
    )
