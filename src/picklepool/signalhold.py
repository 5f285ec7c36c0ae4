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
that notes the signal; at the block's end the handlers are put back and each noted
signal is raised again (``signal.raise_signal``): its handler runs there, as if the
signal had come at that moment. Inside such a block, :func:`let_through` lets the
handlers run during a wait for another process that may be long (the forkserver's
reply), whose interruption the code around it undoes. Other threads never run Python
signal handlers: there, both are no-ops.
"""

from __future__ import annotations

import _signal
import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

_saved: dict[int, Any] = {}  # signal -> the handler held back (while a section runs)
_noted: list[int] = []  # signals that came while held, in order
_holding = False
# every signal a Python handler may be set for (not SIGKILL, SIGSTOP)
_SIGNALS = tuple(
    int(s)
    for s in signal.valid_signals()
    if s not in (getattr(signal, "SIGKILL", -1), getattr(signal, "SIGSTOP", -1)) and s < signal.NSIG
)


def _note(signum: int, frame: Any) -> None:
    if signum not in _noted:
        _noted.append(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _hold() -> None:
    """Replace every Python handler by :func:`_note` (all put back if this is cut)."""
    global _holding
    _holding = True
    try:
        for signum in _SIGNALS:
            handler = _signal.getsignal(signum)  # (the C functions: no enum conversions)
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
    _raise(noted)


def _raise(signals: list[int]) -> None:
    if signals:
        try:
            signal.raise_signal(signals[0])  # its handler runs here, and may raise
        finally:
            _raise(signals[1:])


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Run the block with signal handlers held back (see the module's docstring)."""
    if _holding or not _main_thread():
        yield
        return
    _hold()
    try:
        yield
    finally:
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
