"""Whether the user pressed Ctrl-C: for what stops the workers at once instead of waiting.

A plain ``KeyboardInterrupt`` is one (not a task's own, which comes back as a
``TaskExitError``). Under ``asyncio.run`` (Python 3.11+) Ctrl-C raises nothing in the
coroutines: the runner's SIGINT handler cancels the main task, so a ``with Executor()``
block in a coroutine is left with ``CancelledError``, which would wait for every call
sent (:func:`ctrl_c`). And a program that an uncaught Ctrl-C ends leaves with its
``KeyboardInterrupt`` in ``sys.last_value`` when the exit hooks run
(:func:`exiting_on_ctrl_c`). Both are only looked at as a block or the program ends.
A ``Parallel`` call made under ``asyncio.run`` (in a coroutine, or in a thread of
``asyncio.to_thread``) looks between two looks at the pool (:func:`watch_asyncio`): it would
have run to its end.
"""

from __future__ import annotations

import _signal
import functools
import signal
import sys
import weakref
from typing import Any

from .. import signalhold
from ..errors import TaskExitError

_SIGINT = int(signal.SIGINT)


def ctrl_c(exc_type: Any) -> bool:
    """Whether an exception of *exc_type* leaving a block is the user's Ctrl-C."""
    if exc_type is None or not isinstance(exc_type, type):
        return False
    if issubclass(exc_type, KeyboardInterrupt):
        return not issubclass(exc_type, TaskExitError)
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or not issubclass(exc_type, asyncio.CancelledError):
        return False
    return _asyncio_interrupted(asyncio)


def _asyncio_interrupted(asyncio: Any) -> bool:
    """Whether an ``asyncio.Runner`` (``asyncio.run``) handles SIGINT and has had one.

    Its handler is ``functools.partial(runner._on_sigint, main_task=...)``; it counts
    the signals in ``_interrupt_count`` and re-raises ``KeyboardInterrupt`` once the
    main task has ended. A cancellation that comes after one is part of that Ctrl-C.
    """
    runner_type = getattr(asyncio, "Runner", None)
    if runner_type is None:  # Python 3.10: Ctrl-C raises KeyboardInterrupt in the loop
        return False
    try:
        handler = signal.getsignal(signal.SIGINT)
    except (ValueError, AttributeError):  # pragma: no cover - no SIGINT here
        return False
    if not isinstance(handler, functools.partial):
        return False
    runner = getattr(handler.func, "__self__", None)
    return isinstance(runner, runner_type) and getattr(runner, "_interrupt_count", 0) > 0


_ctrl_c_at_exit = False  # a Ctrl-C came while the exit waited for calls (ongoing.wait_at_exit)


def ctrl_c_at_exit() -> None:
    """Note that Ctrl-C interrupted the interpreter's exit: :func:`exiting_on_ctrl_c` says so."""
    global _ctrl_c_at_exit
    _ctrl_c_at_exit = True


def exiting_on_ctrl_c() -> bool:
    """Whether the interpreter exits because Ctrl-C ended the program (not interactive), or
    interrupted its exit (:func:`ctrl_c_at_exit`).

    Python stores the uncaught exception in ``sys.last_value`` before the exit hooks
    run; an interactive session keeps there the last error shown at its prompt, so it
    is not read there.
    """
    if _ctrl_c_at_exit:
        return True
    if sys.flags.interactive or hasattr(sys, "ps1"):
        return False
    last = getattr(sys, "last_value", None)
    return isinstance(last, KeyboardInterrupt) and not isinstance(last, TaskExitError)


def watch_asyncio() -> tuple[weakref.ref[Any], int] | None:
    """What :func:`interrupted_since` needs, for a call made while ``asyncio.run`` runs: the
    runner, and its count of SIGINTs now; None when no runner handles SIGINT.

    The runner's Ctrl-C only cancels its main task. A call made in another thread
    (``asyncio.to_thread``, ``run_in_executor(None, ...)``) ran to its end while
    ``asyncio.run`` waited for that thread; one made in a coroutine itself, blocking the
    loop, ran to its end before the cancellation could reach the coroutine. Read before the
    call sends its first batch: read later, the Ctrl-C could already be counted, or
    ``asyncio.run`` could have put Python's SIGINT handler back once it cancelled the main
    task (it then waits for the threads). A Ctrl-C before the call does not stop it.
    """
    asyncio = sys.modules.get("asyncio")
    runner_type = getattr(asyncio, "Runner", None)
    if runner_type is None:
        return None
    # (the C function: signal.getsignal's enum conversion cost ~8 us of a cold one-task call)
    handler = _signal.getsignal(_SIGINT)
    if not isinstance(handler, functools.partial):
        return None
    runner = getattr(handler.func, "__self__", None)
    if not isinstance(runner, runner_type):
        return None
    return weakref.ref(runner), getattr(runner, "_interrupt_count", 0)


def interrupted_since(watch: tuple[weakref.ref[Any], int]) -> bool:
    """Whether the runner :func:`watch_asyncio` found has had a Ctrl-C since."""
    runner = watch[0]()
    return runner is not None and getattr(runner, "_interrupt_count", 0) > watch[1]


def from_signal_handler(exc: BaseException) -> bool:
    """Whether *exc* was raised by one of this process's Python signal handlers (a SIGALRM
    deadline's ``Timeout``), which a signal ran in the middle of whatever the thread did:
    pickling a batch, for one. It is the program's own exception, to let through as it is
    (``signalhold.from_handler``: any frame of its traceback, a handler held back too)."""
    return signalhold.from_handler(exc)
