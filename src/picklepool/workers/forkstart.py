"""What a worker of a fork-started pool puts aside of what it inherited from the parent.

``backend="multiprocessing"`` with the "fork" start method (and an ``Executor`` whose
``mp_context`` is "fork") forks its workers from the parent: each starts with a copy of
the parent's loggers *and their handlers*. ``workers.logback`` takes a worker whose root
logger has handlers for one an ``initializer`` configured, and leaves its logging alone:
so a fork-started worker showed its tasks' records through its copies of the parent's
handlers, and those that keep records in memory (pytest's ``caplog``, a ``StringIO``
stream, a ``MemoryHandler``, a ``QueueHandler`` to a ``queue.Queue``) kept them in the
worker, lost, where the loop (and a loky worker) gave them to the parent's. A spawned
worker has none of them: :func:`start` takes them off every logger before the pool's
``initializer`` (if any) runs, so a worker's records go back to the parent's handlers,
as on loky, and an initializer that configures the worker's logging still keeps it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any


def forget_inherited_handlers() -> None:
    """Take every handler off the root logger and the named loggers (they are copies of
    the parent's, made by ``fork``; the parent's own show the records sent back)."""
    loggers: list[Any] = [logging.root, *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in list(getattr(logger, "handlers", ())):  # (a PlaceHolder has none)
            logger.removeHandler(handler)


def start(initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    """A fork-started pool worker's initializer: :func:`forget_inherited_handlers`, then
    *initializer* (``initargs``), the pool's own (None: none)."""
    from ..pickler import copiedwait

    forget_inherited_handlers()
    copiedwait.in_worker = True
    if initializer is not None:
        initializer(*initargs)
