"""An Executor's ``initargs`` that reach its workers by inheritance, as the standard library's do.

``multiprocessing``'s queues, locks, events, pipes and shared values cannot be
pickled into a running worker: they travel only when ``multiprocessing`` starts a
process. ``ProcessPoolExecutor`` passes its ``initargs`` that way, so code gives
its initializer a ``mp_context.Queue()`` or ``Lock()``. A ``picklepool.Executor``
with such initargs runs on a ``multiprocessing.Pool`` of its own, which hands them
to each worker at its start (:func:`start_worker`); the initializer itself still
runs from the executor's first batch in that worker (:func:`initialize`), so that
its failure breaks the executor as any initializer's does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import prologue

_initargs: dict[str, tuple[Any, ...]] = {}  # key -> the initargs this worker was started with


def start_worker(env: dict[str, str] | None, key: str, initargs: tuple[Any, ...]) -> None:
    """The pool's initializer: start as any own-pool worker, keep *initargs* for *key*."""
    prologue.start_pool_worker(env)
    _initargs[key] = initargs


def initialize(
    token: str, key: str, initializer: Callable[..., Any], created: dict[str, Any] | None = None
) -> None:
    """``initializer(*initargs)`` with the initargs this worker inherited, once (``prologue.initialize``)."""
    prologue.initialize(token, initializer, _initargs[key], created)
