"""Which workers a ``picklepool.Executor`` needs for ``ProcessPoolExecutor``'s settings.

``mp_context`` and ``max_tasks_per_child`` are checked as the standard library
checks them (same exception types, its messages first), then decide where the
tasks run: picklepool's warm loky workers, or a ``multiprocessing.Pool`` of the
executor's own (``executor.mpbackend``).
"""

from __future__ import annotations

import multiprocessing
import types
from typing import Any

from ..pickler.runtime import inherited_only_types

_FRESH_START = ("spawn", "forkserver")  # the start methods multiprocessing.Pool is given as they are


def pool_context(mp_context: Any, max_tasks_per_child: Any) -> Any:
    """The ``multiprocessing`` context of the executor's own pool, or None for the warm loky pool.

    As the standard library's ``ProcessPoolExecutor``: *mp_context* must be a
    ``multiprocessing`` context (``TypeError`` otherwise); *max_tasks_per_child* a
    positive int (``TypeError``, ``ValueError``) that "fork" cannot be combined with
    (``ValueError``), and that makes None mean "spawn". "spawn" and "forkserver"
    workers inherit nothing, nor do loky's: they run on the warm pool. "fork" (its
    workers inherit the parent's globals) and *max_tasks_per_child* need a pool of
    their own.
    """
    method = None
    if mp_context is not None:
        get_method = getattr(mp_context, "get_start_method", None)
        if not callable(get_method) or not hasattr(mp_context, "Process"):
            hint = (
                f"multiprocessing.get_context({mp_context!r})"
                if isinstance(mp_context, str)
                else ('multiprocessing.get_context("spawn")')
            )
            raise TypeError(
                f"Executor(mp_context={mp_context!r}): mp_context must be a multiprocessing context "
                f"(such as {hint}) or None"
            )
        method = get_method(allow_none=False)
    if max_tasks_per_child is None:
        return mp_context if method == "fork" else None
    if not isinstance(max_tasks_per_child, int) or isinstance(max_tasks_per_child, bool):
        raise TypeError(
            f"max_tasks_per_child must be an integer: Executor(max_tasks_per_child={max_tasks_per_child!r})"
        )
    if max_tasks_per_child <= 0:
        raise ValueError(
            f"max_tasks_per_child must be >= 1: Executor(max_tasks_per_child={max_tasks_per_child})"
        )
    if method == "fork":
        raise ValueError(
            "max_tasks_per_child is incompatible with the 'fork' multiprocessing start method; "
            'supply a different mp_context, such as multiprocessing.get_context("spawn"), or None '
            f"(Executor(mp_context=<'fork' context>, max_tasks_per_child={max_tasks_per_child}): "
            "replacing a worker by forking while the executor's threads run can deadlock, as the "
            "standard library's executor says too)"
        )
    return mp_context if method in _FRESH_START else multiprocessing.get_context("spawn")


def inherited_only(value: Any, depth: int = 0) -> bool:
    """True if *value* holds (in tuples, lists, sets, dict values, an object's attributes) a
    ``multiprocessing`` object that travels only when a process starts: a queue, lock,
    event, pipe, shared value or ``RawArray``/``RawValue``.

    ``ProcessPoolExecutor`` passes its ``initargs`` to each worker as it starts it, so
    such objects work there; the warm workers are running already, so an executor
    whose ``initargs`` hold one needs a pool of its own.
    """
    if _INHERITED is None:
        _load_types()
    if isinstance(value, _INHERITED):  # type: ignore[arg-type]
        return True
    if _RAW_SHARED is not None and isinstance(value, _CTYPES):
        return type(getattr(value, "_wrapper", None)) is _RAW_SHARED  # sharedctypes.RawArray, RawValue
    if depth >= 4:
        return False
    if isinstance(value, (tuple, list, set, frozenset)):
        return any(inherited_only(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(inherited_only(v, depth + 1) for v in value.values())
    if isinstance(value, _NOT_WALKED):
        return False
    try:
        attributes = object.__getattribute__(value, "__dict__")  # not a proxy's __getattr__
    except (AttributeError, TypeError):
        return False
    return type(attributes) is dict and any(inherited_only(v, depth + 1) for v in attributes.values())


_INHERITED: tuple[type, ...] | None = None
_RAW_SHARED: Any = None  # multiprocessing.heap.BufferWrapper, once _load_types ran
_CTYPES: tuple[type, ...] = ()  # ctypes' base classes, once _load_types ran
_NOT_WALKED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def _load_types() -> None:
    """The types :func:`inherited_only` looks for (multiprocessing's and ctypes' imports, once)."""
    global _INHERITED, _RAW_SHARED, _CTYPES
    try:
        import ctypes
        import multiprocessing.heap as heap
    except ImportError:  # no working sem_open or ctypes on this platform
        pass
    else:
        _RAW_SHARED = heap.BufferWrapper
        _CTYPES = (ctypes._SimpleCData, ctypes.Array, ctypes.Structure, ctypes.Union)
    _INHERITED = inherited_only_types()


def why_own_pool(mp_context: Any, max_tasks_per_child: Any, inherit: bool = False) -> str:
    if inherit:
        return "initargs holding a multiprocessing queue, lock, event, pipe or shared value"
    if max_tasks_per_child is not None:
        return f"max_tasks_per_child={max_tasks_per_child!r}"
    return "mp_context=<'fork' context>"
