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
as on loky, and an initializer that configures the worker's logging still keeps it. So do
the loggers' levels and ``disabled`` flags, which ``workers.logback`` takes for the worker's
own when it first follows the parent's: a level the parent had set at the fork, and took
back since, stayed in force there (a fork-started ``Executor``'s worker logged at DEBUG for
ever); they start at a new process's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any


def forget_inherited_logging() -> None:
    """Take every handler off the root logger and the named loggers, and their levels and
    ``disabled`` flags back to a new process's (they are copies of the parent's, made by
    ``fork``: the parent's own handlers show the records sent back, and ``workers.logback``
    sets the parent's levels, and its taking them back, from a new process's as on loky: a
    level inherited was the worker's own, to which it went back when the parent took its
    level back)."""
    loggers: list[Any] = [logging.root, *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        if not isinstance(logger, logging.Logger):  # (a PlaceHolder)
            continue
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.setLevel(logging.WARNING if logger is logging.root else logging.NOTSET)
        logger.disabled = False


def forget_inherited_settings() -> None:
    """Put back, as a new process has them, the mirrored settings a fork copied from the
    parent: the callables it added to ``builtins`` (``workers.builtinnames``) and pandas'
    options it set (``workers.pandasoptions``). Their mirrors take a worker's values for its
    own and put them back when the parent takes its own back: a name the parent deleted
    from ``builtins``, or a pandas option it reset, stayed as at the fork there."""
    import builtins
    import sys
    import warnings

    from . import builtinnames, pandasoptions

    namespace = vars(builtins)
    for name in builtinnames.added(namespace):
        del namespace[name]
    module = sys.modules.get(pandasoptions._MODULE)
    tree = getattr(module, "_global_config", None)
    if module is None or type(tree) is not dict:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a deprecated option's FutureWarning)
        for key, _value in pandasoptions._changed(module, tree):
            try:
                module.reset_option(key)
            except Exception:  # noqa: BLE001 - one that cannot be reset stays as inherited
                continue


def start(initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    """A fork-started pool worker's initializer: :func:`forget_inherited_logging`, then
    *initializer* (``initargs``), the pool's own (None: none)."""
    from ..pickler import copiedwait

    forget_inherited_logging()
    forget_inherited_settings()
    copiedwait.in_worker = True
    if initializer is not None:
        initializer(*initargs)
