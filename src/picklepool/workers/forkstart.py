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
import sys
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
    parent: the callables it added to ``builtins`` (``workers.builtinnames``), pandas'
    options (``workers.pandasoptions``), matplotlib's ``rcParams`` (``workers.rcparams``)
    and xarray's options (``workers.xarrayoptions``). Their mirrors take a worker's values
    for its own and put them back when the parent takes its own back: a name the parent
    deleted from ``builtins``, or an option it reset, stayed as at the fork there."""
    import builtins
    import warnings

    from . import builtinnames

    namespace = vars(builtins)
    for name in builtinnames.added(namespace):
        del namespace[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a deprecated option's FutureWarning)
        for reset in (_reset_pandas, _reset_matplotlib, _reset_xarray):
            try:
                reset()
            except Exception:  # noqa: BLE001 - settings that cannot be reset stay as inherited
                continue


def _reset_pandas() -> None:
    from . import pandasoptions

    module = sys.modules.get(pandasoptions._MODULE)
    tree = getattr(module, "_global_config", None)
    if module is None or type(tree) is not dict:
        return
    for key, _value in pandasoptions._changed(module, tree):
        try:
            module.reset_option(key)
        except Exception:  # noqa: BLE001 - one that cannot be reset stays as inherited
            continue


def _reset_matplotlib() -> None:
    """``rcParams`` as matplotlib's import made them (its rc file; the backend stays)."""
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is not None and callable(getattr(matplotlib, "rc_file_defaults", None)):
        matplotlib.rc_file_defaults()


def _reset_xarray() -> None:
    """xarray's options as a fresh import of its options module makes them."""
    from . import xarrayoptions

    module, xarray = sys.modules.get(xarrayoptions._MODULE), sys.modules.get("xarray")
    options, set_options = getattr(module, "OPTIONS", None), getattr(xarray, "set_options", None)
    if type(options) is not dict or not callable(set_options):
        return
    defaults = xarrayoptions._fresh_defaults(module)
    changed = {k: v for k, v in defaults.items() if k in options and options[k] is not v and options[k] != v}
    if changed:
        set_options(**changed)  # (not as a with block: it stays set)


def start(initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    """A fork-started pool worker's initializer: :func:`forget_inherited_logging`, then
    *initializer* (``initargs``), the pool's own (None: none)."""
    from ..pickler import copiedwait

    forget_inherited_logging()
    forget_inherited_settings()
    copiedwait.in_worker = True
    if initializer is not None:
        initializer(*initargs)
