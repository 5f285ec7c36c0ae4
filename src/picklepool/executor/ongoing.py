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
   which may be left unread: its batches already sent get ``reaper.EXIT_DEADLINE`` to
   finish on their workers (then they are killed, its error naming the shutdown), and
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

The interpreter's exit waits for some calls too (:func:`wait_at_exit`): those that
non-daemon threads run (or read, a ``return_as="generator"`` call) when the main thread
ends, on any backend with workers; see there. A call is on record from its start, before
its pool is taken (:func:`admitted`): a first call still importing and starting what it
needs when the main thread ended was refused as a new one, and the hooks of the pool it
starts then are run by :func:`_exit_hook`, which ``threading`` took before the exit began.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Iterator

from .. import forklocks, lokycompat, signalhold
from . import interrupts

log = logging.getLogger(__name__)

# seconds between two looks at the threads waited for when nothing notifies: a thread that
# ended with a call on record, a daemon thread once the interpreter exits
RECHECK = 1.0

_changed = threading.Condition()  # (an RLock: a call may end in a collection inside a block here)
_calls: dict[int, threading.Thread] = {}  # token -> the thread that runs that call
# token -> the thread that runs (or last read, a generator) that call: the exit waits for
# those of non-daemon threads (wait_at_exit)
_exiting: dict[int, threading.Thread] = {}
_exit_waiting = False  # wait_at_exit runs
_exit_waited = False  # wait_at_exit has returned (or was skipped): the pools are being stopped
_tokens = itertools.count(1)
_shutting: set[threading.Thread] = set()  # threads in wait_for_others
_stopper: threading.Thread | None = None  # the thread in stopping(), if any
_taking: dict[threading.Thread, int] = {}  # thread -> its taking() blocks entered, not left
_before_exit: set[int] = set()  # tokens of at_exit calls begun before the interpreter's exit began
_hooked = 0  # the pid that registered _exit_hook
_starting = threading.local()  # .token: the call this thread is starting (admitting)


def begin(thread: threading.Thread | None = None, shutdown: bool = True, at_exit: bool = False) -> int:
    """A call starts, run by *thread* (this one if None); returns its token for :func:`end`.

    *shutdown*: ``picklepool.shutdown()`` lets it end first; *at_exit*: so does the
    interpreter's exit, when the thread is not a daemon thread (:func:`wait_at_exit`).
    """
    token = next(_tokens)
    thread = thread if thread is not None else threading.current_thread()
    if at_exit:
        _hook_exit()
    with _changed:
        if shutdown:
            _calls[token] = thread
        if at_exit:
            _exiting[token] = thread
            if not lokycompat.interpreter_exiting() or admitted():  # (a part of an admitted call)
                _before_exit.add(token)
    return token


def settle(token: int, shutdown: bool, at_exit: bool) -> None:
    """The call of *token*, begun before its backend was known, is on record as :func:`begin`
    with *shutdown* and *at_exit* would have put it."""
    with _changed:
        thread = _exiting.get(token) or _calls.get(token) or threading.current_thread()
        if shutdown:
            _calls[token] = thread
        else:
            _calls.pop(token, None)
        if not at_exit and _exiting.pop(token, None) is not None:
            _before_exit.discard(token)
            _changed.notify_all()


class admitting:  # noqa: N801 - used as a function: ``with admitting(token):``
    """The block starts the call of *token* in this thread (its pool, its first batches):
    :func:`admitted` tells whether the interpreter's exit lets it.

    A class, not a ``contextlib.contextmanager``: that one's exit sets the ``__traceback__``
    of the exception leaving the block, a task's own, which a frozen dataclass's refuses
    (``FrozenInstanceError`` raised instead of the task's exception).
    """

    __slots__ = ("token", "previous")

    def __init__(self, token: int) -> None:
        self.token = token
        self.previous: int | None = None

    def __enter__(self) -> None:
        self.previous = admit(self.token)

    def __exit__(self, *exc: object) -> None:
        admit(self.previous)


def admit(token: int | None) -> int | None:
    """:func:`admitting`'s start (*token*) and end (the token it returned) apart."""
    previous = getattr(_starting, "token", None)
    _starting.token = token
    return previous


def admitted() -> bool:
    """Whether the call this thread starts (:func:`admitting`) began before the interpreter's
    exit, in a non-daemon thread: the exit waits for it (:func:`wait_at_exit`), so it may
    still start its pool, as a call that had already sent its batches then runs to its end.

    A call made in a thread while its program's first call still imported and started what
    it needs (half a second, more on a loaded machine) was refused when the main thread
    ended meanwhile, as a new one, where the standard library's executor ran it.
    """
    token = getattr(_starting, "token", None)
    return (
        token in _before_exit
        and token in _exiting
        and not _exit_waited
        and not threading.current_thread().daemon
        and not interrupts.exiting_on_ctrl_c()
    )


def _hook_exit() -> None:
    """Register :func:`_exit_hook`, once per process, as a call that the exit waits for begins.

    picklepool's other exit hooks are registered as its first pool starts; a call still
    starting it when the main thread ended had none waiting for it, and the hooks that
    pool would register can no longer be (``threading._register_atexit`` refuses them
    once the exit has begun).
    """
    global _hooked
    if _hooked == forklocks.getpid():
        return
    _hooked = forklocks.getpid()
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # the interpreter is already exiting
            register(_exit_hook)


def _exit_hook() -> None:
    """The main thread ended: wait for the calls non-daemon threads run (those still
    starting their pool too), then run the exit hooks of the pools they started meanwhile
    (``lokycompat.run_late_exit_hooks``: registered too late for ``threading``).

    Registered before those of the pools (it runs after them): with a pool already
    running, they have waited and stopped it already, and this finds nothing to do.
    """
    if lokycompat.depth() >= 1 or _hooked != forklocks.getpid():
        return
    wait_at_exit()
    lokycompat.run_late_exit_hooks()
    _forget_the_program()


def _forget_the_program() -> None:
    """At exit, no call running, the pools stopped (whichever the backend): drop what the
    parent's caches hold of the program (the script's namespace, its modules, its functions'
    bytes kept, the function ``delayed`` made last). Held by picklepool's modules, which the
    interpreter clears last, they outlived the collection that follows the modules' removal
    from ``sys.modules``: ``__main__``'s objects were never collected, their ``__del__``
    never ran (a buffer not flushed, a temporary folder left behind)."""
    from ..workers import moduleglobals
    from . import reloaded, unchanged
    from .delayed import forget as forget_delayed

    for forget in (moduleglobals.forget, reloaded.forget, unchanged.forget, forget_delayed):
        try:
            forget()
        except Exception:  # noqa: BLE001 - at exit: the pools are stopped anyway
            pass


def reading(token: int) -> None:
    """The call of *token* (a generator) is read by this thread now: the exit waits as for its calls."""
    me = threading.current_thread()
    if _exiting.get(token, me) is not me:  # (a plain read: the same thread reads it on)
        with _changed:
            if token in _exiting:
                _exiting[token] = me


def end(token: int) -> None:
    """The call of *token* has ended (nothing happens for a token no longer on record)."""
    with _changed:
        found = _calls.pop(token, None) is not None
        _before_exit.discard(token)
        if _exiting.pop(token, None) is not None or found:
            _changed.notify_all()


def wait_at_exit() -> None:
    """The interpreter exits (the main thread ended; ``threading``'s exit hooks run): return
    once the calls non-daemon threads run or read (:func:`begin` with *at_exit*) have ended.

    Run by picklepool's exit hooks before they stop a pool. Python keeps running a
    non-daemon thread after the main thread ends (its exit joins them, after those hooks):
    a thread left to train while the script ends is common, and its call ran to its end
    under joblib (loky's hook lets the jobs already sent finish) and the standard
    library's executors. Its pools were killed under it: its work was lost. A new
    call made after the main thread ended is still refused (``backends._refuse_at_exit``),
    as joblib's and the standard library's executors refuse work then.

    Not waited for: daemon threads (Python's exit does not wait for them: their pools are
    stopped, killing what runs), the calling thread, and every call once Ctrl-C ended the
    program or arrives during this wait (the calls are stopped, as an ``Executor``'s then:
    the user asked the program to end); nor in a worker, whose exit does not wait for its
    nested calls (``reaper._at_exit``).
    """
    global _exit_waiting, _exit_waited
    if lokycompat.depth() >= 1 or interrupts.exiting_on_ctrl_c():
        _exit_waited = True
        return
    me = threading.current_thread()
    try:
        with _changed:
            _exit_waiting = True
            while any(_exit_waits_for(thread, me) for thread in _exiting.values()):
                _changed.wait(RECHECK)  # (notified as a call ends; a thread's end is seen here)
    except KeyboardInterrupt:  # Ctrl-C during the wait: the calls are stopped, as above
        interrupts.ctrl_c_at_exit()  # (their errors say so, not "a daemon thread")
    finally:
        _exit_waiting, _exit_waited = False, True


def exit_waited() -> bool:
    """Whether the interpreter's exit is past its wait for calls (:func:`wait_at_exit`): the
    pools are stopped from then on. Before it (other exit hooks run first), the tasks of the
    calls it will wait for may still make calls of their own."""
    return _exit_waited


def exit_waiting() -> bool:
    """Whether the interpreter's exit waits for calls now (:func:`wait_at_exit`): their tasks'
    own calls (on a threading pool's threads) may still start."""
    return _exit_waiting


def _exit_waits_for(thread: threading.Thread, me: threading.Thread) -> bool:
    """Whether the exit waits for a call of *thread* (lock held)."""
    return thread is not me and not thread.daemon and thread.is_alive()


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
    _exiting.clear()
    _before_exit.clear()
    _shutting.clear()
    _taking.clear()
    _stopper = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
