"""Tasks a batch may run before and after the user's own (``picklepool.Executor``).

An Executor batch can start with :func:`initialize` (its ``initializer``, once per
worker and executor) and, for the joblib backend, be framed by :func:`enter_config`
/ :func:`leave_config` (the nested ``joblib.parallel_config`` that joblib's own
``BatchedCalls`` sets around its tasks). They are plain importable functions, so
they travel by reference and cost a few bytes per batch.
"""

from __future__ import annotations

import sys
import types
import weakref
from collections.abc import Callable
from typing import Any

_initialized: set[str] = set()  # executor tokens whose initializer ran in this worker
_configs: list[Any] = []  # open joblib.parallel_config contexts, innermost last

# Globals an initializer sent by value set, per executor token: (its module, names -> values).
_overlays: dict[str, tuple[str, dict[str, Any]]] = {}
# Functions rebuilt by value for each executor token (weakly): they receive those globals.
_adopted: dict[str, weakref.WeakSet[Any]] = {}


def _by_value(func: Any) -> bool:
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    return type(func) is types.FunctionType and func.__globals__ is not getattr(module, "__dict__", None)


def start_loky_worker(initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    """loky's initializer of every warm worker: watch the parent, then the pool's own *initializer*.

    A worker watches its parent from its start (``workers.control.watch_parent``),
    not from its first batch: one that never got a batch (more workers than tasks)
    would otherwise outlive a killed parent up to its idle timeout (300 s), holding
    the parent's session folder. *initializer* (``Parallel(initializer=...)``) runs
    after, as loky runs it, and a failure of it breaks the pool as in loky.
    """
    from .control import watch_parent

    watch_parent()
    if initializer is not None:
        initializer(*initargs)


def start_pool_worker(env: dict[str, str] | None = None) -> None:
    """Start a worker of an Executor's own ``multiprocessing.Pool`` ("fork", ``max_tasks_per_child``).

    *env*: the thread variables (``OMP_NUM_THREADS``...) loky sets in the warm
    workers at start, set here too, before a task imports a numerical library.
    And let the worker start processes of its own: ``Pool`` makes its workers
    daemonic, and daemonic processes may not have children; the standard
    library's ``ProcessPoolExecutor`` workers are not daemonic, so a task may run
    its own pool (a nested ``Parallel``, an executor). A worker's children see
    their parent die and exit.
    """
    import multiprocessing
    import os

    if env:
        os.environ.update(env)
    multiprocessing.current_process()._config["daemon"] = False  # type: ignore[attr-defined]


def initialize(token: str, initializer: Callable[..., Any], initargs: tuple[Any, ...]) -> None:
    """Run ``initializer(*initargs)`` once in this worker for the executor *token*.

    An initializer defined in ``__main__`` (sent by value) that sets globals
    (``global conn; conn = connect()``) sets them for the executor's tasks too, as
    with the standard library's executors, whose tasks share the initializer's
    module: the globals it changed are given to every function of that module
    the executor sends (:func:`adopt`). Other globals stay as the parent sent them.
    """
    if token in _initialized:
        return
    before = dict(initializer.__globals__) if _by_value(initializer) else None
    initializer(*initargs)
    _initialized.add(token)
    if before is not None:
        now = initializer.__globals__
        changed = {k: v for k, v in now.items() if k not in before or before[k] is not v}
        if changed:
            _overlays[token] = (initializer.__module__, changed)
            for func in list(_adopted.get(token, ())):
                _give(func, token)


def adopt(token: str, func: Any) -> None:
    """A function rebuilt for executor *token*: give it its initializer's globals, now or later."""
    if _by_value(func):
        _adopted.setdefault(token, weakref.WeakSet()).add(func)
        _give(func, token)


def _give(func: Any, token: str) -> None:
    found = _overlays.get(token)
    if found is not None and func.__module__ == found[0]:
        func.__globals__.update(found[1])


def enter_config(backend: Any, n_jobs: Any) -> None:
    """Enter ``joblib.parallel_config(backend=backend, n_jobs=n_jobs)`` for the batch's tasks."""
    import joblib

    config = joblib.parallel_config(backend=backend, n_jobs=n_jobs)
    config.__enter__()
    _configs.append(config)


def leave_config() -> None:
    """Leave the config :func:`enter_config` entered (the last task of the batch)."""
    if _configs:
        _configs.pop().__exit__(None, None, None)
