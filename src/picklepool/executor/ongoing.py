"""The calls running on picklepool's warm workers, which ``picklepool.shutdown()`` lets end first.

``shutdown()`` stops the workers in two steps (``pool.shutdown_all``):

1. With ``wait=True`` (and not ``kill``), :func:`wait_for_others`: the calls other
   threads were running when it began end on the workers they run on; their pools
   are left alone meanwhile. Such a call (:func:`begin` to :func:`end`) is a
   ``Parallel`` call returning a list, from the moment it holds its pool to its end,
   and an ``Executor`` from a submission until it has nothing left to run (in its
   manager thread's name; one that another thread keeps giving work is waited for
   until it has none). A call begun later is not waited for (a thread making calls in
   a loop would hold the shutdown for ever), nor a ``return_as="generator"`` call,
   which may be left unread: its batches already sent finish on their workers, and
   the rest go to a new pool when it is read again.
2. :func:`stopping`: every pool, then the forkserver, are stopped. A pool (or a
   forkserver) is only started outside this step: a call that needs one meanwhile (a
   new call in another thread, the next batch of a call whose pool was just stopped,
   an ``Executor``'s) waits for its end (:func:`taking`), then starts a new one.

Before, there was only the second step, without that exclusion: the pools were
stopped under the running calls, whose next batches started a new pool from the
forkserver not stopped yet; ``forkserver.stop`` then waited 5 s for that server's
new children, and ``shutdown()`` returned with them running (a call of ``n_jobs=2``
ended on 4 processes, 2 of them left warm).

Not waited for: the calling thread's own calls (it cannot wait for itself: a
shutdown from a progress hook, from a done-callback in an ``Executor``'s manager
thread, with a generator of its own half read); those of a thread that waits in a
``shutdown()`` itself (two threads shutting down from within their calls would wait
for each other); and, once the interpreter exits, those of daemon threads (Python's
exit does not wait for those threads, and its hooks already stopped their pools:
``reaper._at_exit``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Iterator

from .. import lokycompat, signalhold

log = logging.getLogger(__name__)

# seconds between two looks at the threads waited for when nothing notifies: a thread that
# ended with a call on record, a daemon thread once the interpreter exits
RECHECK = 1.0

_changed = threading.Condition()  # (an RLock: a call may end in a collection inside a block here)
_calls: dict[int, threading.Thread] = {}  # token -> the thread that runs that call
_tokens = itertools.count(1)
_shutting: set[threading.Thread] = set()  # threads in wait_for_others
_stopper: threading.Thread | None = None  # the thread in stopping(), if any
_taking: dict[threading.Thread, int] = {}  # thread -> its taking() blocks entered, not left


def begin(thread: threading.Thread | None = None) -> int:
    """A call starts, run by *thread* (this one if None); returns its token for :func:`end`."""
    token = next(_tokens)
    with _changed:
        _calls[token] = thread if thread is not None else threading.current_thread()
    return token


def end(token: int) -> None:
    """The call of *token* has ended (nothing happens for a token no longer on record)."""
    with _changed:
        if _calls.pop(token, None) is not None:
            _changed.notify_all()


def wait_for_others() -> None:
    """Return once the calls other threads are running now have ended (see the module's docstring)."""
    me = threading.current_thread()
    try:
        with _changed:
            _shutting.add(me)
            _changed.notify_all()  # a shutdown() waiting for this thread's call stops waiting for it
            waited = {token for token, thread in _calls.items() if thread is not me}
            threads = _still_running(waited)
        if threads:  # (a shutdown that waits long: for whom)
            names = ", ".join(sorted(thread.name for thread in threads))
            log.debug("picklepool.shutdown(): waiting for the calls of threads %s to end", names)
        with _changed:
            while _still_running(waited):
                _changed.wait(RECHECK)
    finally:
        with _changed:
            _shutting.discard(me)


def _still_running(waited: set[int]) -> set[threading.Thread]:
    """The threads whose calls among *waited* (tokens; the ended ones are dropped) a shutdown
    waits for (lock held)."""
    waited &= _calls.keys()
    return {_calls[token] for token in waited if _waits_for(_calls[token])}


def _waits_for(thread: threading.Thread) -> bool:
    """Whether a shutdown waits for a call of *thread* (lock held)."""
    if not thread.is_alive() or thread in _shutting:
        return False
    return not (thread.daemon and lokycompat.interpreter_exiting())


@contextlib.contextmanager
def stopping() -> Iterator[None]:
    """The block stops the pools: it begins once the pools being taken are, and none is until it ends.

    One thread at a time (two shutdowns stop the pools one after the other). Set before
    the wait for the pools being taken: a stream of calls taking pools does not hold it off.
    """
    global _stopper
    me = threading.current_thread()
    with _changed:
        outer = _stopper is me  # (a shutdown within this one's stop, in this thread: part of it)
        while _stopper is not None and not outer:
            _changed.wait()
        _stopper = me
        while any(thread is not me for thread in _taking):
            _changed.wait()
    try:
        yield
    finally:
        if not outer:
            with _changed:
                _stopper = None
                _changed.notify_all()


@contextlib.contextmanager
def taking() -> Iterator[None]:
    """The block takes a pool, maybe starting it (or starts the forkserver): not while :func:`stopping` runs.

    A pool started while the pools are stopped was forked from the forkserver about to be
    stopped, which then waited 5 s for it (and its workers stayed after the shutdown). A
    thread already in such a block goes on (it would wait for the stop, which waits for it).
    """
    me = threading.current_thread()
    with _changed:
        if _stopper is not None and _stopper is not me and me not in _taking:
            with signalhold.let_through():  # the wait takes nothing: Ctrl-C may end it
                while _stopper is not None and _stopper is not me and me not in _taking:
                    _changed.wait()
        _taking[me] = _taking.get(me, 0) + 1
    try:
        yield
    finally:
        with _changed:
            if _taking[me] == 1:
                del _taking[me]
            else:
                _taking[me] -= 1
            _changed.notify_all()


def _forget_in_child() -> None:
    """In a forked child: the parent's calls and shutdowns are not this process's."""
    global _changed, _stopper
    _changed = threading.Condition()  # another thread may have held it at the fork
    _calls.clear()
    _shutting.clear()
    _taking.clear()
    _stopper = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
