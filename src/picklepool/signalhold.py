"""Sections a signal handler's exception must not cut: the signal is raised at their end.

A Python signal handler runs in the main thread between two steps of whatever that
thread does, and one that raises (a ``SIGALRM`` deadline's exception, Ctrl-C's
``KeyboardInterrupt``) leaves that work half done. Some work cannot be left so:

- loky's ``SemLock.__init__`` creates a named semaphore (``/dev/shm/sem.loky-*``) and
  only then registers it with loky's resource tracker and arranges its unlink when the
  object is collected (``util.Finalize``): cut in between, nobody unlinks it (or only
  the tracker at the program's exit, warning of "leaked semlock objects"). A pool's
  start makes a dozen of them;
- a worker process started and not yet listed by its pool (``_processes``, or
  ``multiprocessing``'s children), which nothing stops;
- a request to the forkserver sent in part (its header without its body): the server
  read the next request's bytes as the rest, and died.

:func:`held` runs a block with the main thread's Python signal handlers replaced by one
that notes the signal; at the block's end the handlers are put back and run, once for
each time the noting one ran, as if the signal had come at that moment. They are called,
not raised again (``signal.raise_signal``): the signal's arrival already did what the C
level does, writing its number to the wakeup fd (``signal.set_wakeup_fd``: asyncio's
``loop.add_signal_handler``, whose callback then ran twice). So each delivery reaches the
program once, as without the hold: arrivals Python collapses (several before its handler
could run) are collapsed the same way, the others each run the handler. ``SIG_IGN``,
``SIG_DFL`` and handlers set in C are not held: the signal does then what it does
without picklepool (``SIGTERM``'s default ends the process at once).

Inside such a block, :func:`let_through` lets the handlers run during a wait for another
process that may be long (the forkserver's reply), whose interruption the code around it
undoes. Other threads never run Python signal handlers: there, both are no-ops.

A handler's exception caught by an ``except Exception`` meant for the work's own errors
(a fallback when pickling fails, a hook that may not be there) was lost, and with it an
alarm used as a deadline: :func:`from_handler` tells such an exception, to raise it again.
"""

from __future__ import annotations

import _signal
import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Iterator
from itertools import compress
from typing import Any

_saved: dict[int, Any] = {}  # signal -> the handler held back (while a section runs)
_noted: list[int] = []  # signals that came while held, once per run of _note, in order
_holding = False
# every signal a Python handler may be set for (not SIGKILL, SIGSTOP)
_SIGNALS = tuple(
    int(s)
    for s in signal.valid_signals()
    if s not in (getattr(signal, "SIGKILL", -1), getattr(signal, "SIGSTOP", -1)) and s < signal.NSIG
)


def _note(signum: int, frame: Any) -> None:
    _noted.append(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _hold() -> None:
    """Replace every Python handler by :func:`_note` (all put back if this is cut)."""
    global _holding
    _holding = True
    try:
        # (the C functions, no enum conversions; the signals whose handler is not callable,
        # SIG_DFL, SIG_IGN or one set in C, all but one or two, skipped at C speed: 1 us, where a
        # Python loop over the 62 took 4, at each hold, two of them a warm call. Lazily: each
        # handler is read just before its signal's turn, as one by one)
        for signum in compress(_SIGNALS, map(callable, map(_signal.getsignal, _SIGNALS))):
            handler = _signal.getsignal(signum)
            if callable(handler) and handler is not _note:
                _saved[signum] = handler
                _signal.signal(signum, _note)
    except BaseException:
        _release()
        raise


def _release() -> None:
    """Put the held handlers back, then raise the signals noted meanwhile."""
    global _holding
    _holding = False
    error: BaseException | None = None
    while _saved:
        try:  # a signal coming now runs its own handler: what it raises waits for the others
            while _saved:
                signum = next(iter(_saved))
                if _signal.getsignal(signum) is _note:  # (not one set in the section)
                    _signal.signal(signum, _saved[signum])
                del _saved[signum]
        except BaseException as exc:  # noqa: BLE001 - raised below, once every handler is back
            error = error or exc
    noted = list(_noted)
    _noted.clear()
    if error is not None:
        raise error
    _run(noted)


def _run(signals: list[int]) -> None:
    """Run the handler of each of *signals* (each runs, whatever one before raised).

    What the last raising one raised comes out, the one before as its ``__context__``, as
    when a handler raises while an exception propagates.
    """
    error: BaseException | None = None
    for signum in signals:
        try:
            handler = _signal.getsignal(signum)
            if callable(handler):
                handler(signum, sys._getframe())
            else:  # SIG_DFL or SIG_IGN, set in the section: what the signal does now
                signal.raise_signal(signum)
        except BaseException as exc:  # noqa: BLE001 - raised below, once every handler ran
            if error is not None and exc is not error and exc.__context__ is None:
                exc.__context__ = error
            error = exc
    if error is not None:
        raise error


class held:  # noqa: N801 - (used as the function it was: ``with signalhold.held():``)
    """Run the block with signal handlers held back (see the module's docstring).

    A class, not a ``contextlib.contextmanager`` generator: a warm call enters four of
    these (two of them nested, doing nothing), and the generator's machinery took 2 us
    of each.
    """

    __slots__ = ("_active",)

    def __enter__(self) -> None:
        self._active = False
        if _holding or threading.current_thread() is not threading.main_thread():
            return
        _hold()
        self._active = True

    def __exit__(self, *exc_info: object) -> None:
        if self._active:
            self._active = False
            _release()


@contextlib.contextmanager
def let_through() -> Iterator[None]:
    """Inside :func:`held`: the handlers run during the block (first those held back)."""
    if not _holding or not _main_thread():
        yield
        return
    _release()
    try:
        yield
    finally:
        _hold()


def from_handler(exc: BaseException) -> bool:
    """Whether *exc* came out of a Python signal handler: ``KeyboardInterrupt``, or one whose
    traceback passes through the code of a handler set now (or held back by :func:`held`).

    For an ``except Exception`` around work whose own errors have a fallback: the handler's
    exception (an alarm's deadline) is raised again there, not taken for the work's error.
    """
    if isinstance(exc, KeyboardInterrupt):
        return True
    codes = set()
    for signum in _SIGNALS:
        code = _code(_saved.get(signum) or _signal.getsignal(signum))
        if code is not None:
            codes.add(code)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False


def _code(handler: Any) -> Any:
    """The code object a Python handler runs (a function, method, partial, callable object)."""
    for _ in range(8):  # (a partial of a partial...: a few levels)
        if isinstance(handler, functools.partial):
            handler = handler.func
            continue
        func = getattr(handler, "__func__", handler)  # a bound method's function
        code = getattr(func, "__code__", None)
        if code is not None or not callable(handler) or isinstance(handler, type):
            return code
        handler = type(handler).__call__  # a callable object's method
    return None
