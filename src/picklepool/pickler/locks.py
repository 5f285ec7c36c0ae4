"""Locks, conditions, events, semaphores and queues sent as snapshots.

A lock cannot cross a process boundary: what matters on the other side is the
state it guards. The reducers here turn each synchronisation object into a
snapshot of that state, and a module-level ``_rebuild_*`` function builds a
fresh, *released* object from it in the worker:

    _thread.lock, _thread.RLock        -> a new released lock of the same kind
    threading.Condition(lock)          -> Condition(rebuilt lock), no waiters
    threading.Event                    -> a new Event, set if the original was set
    threading.Semaphore                -> a new Semaphore with the same value
    threading.BoundedSemaphore         -> same value and the same upper bound
    queue.Queue, LifoQueue,            -> same class, items, order, maxsize and
      PriorityQueue (and subclasses)      unfinished-task count; fresh mutex and
                                          conditions tied to it
    queue.SimpleQueue                  -> a new SimpleQueue with the same items

Shared references stay shared: the pickler memoises each reduced object, so two
objects holding the same lock hold the same rebuilt lock, and a Queue's three
conditions stay tied to its one rebuilt mutex.

Consistency: a Queue is copied while holding its mutex, so a worker never sees
half of a ``put``. The items themselves are pickled after the mutex is released
(a shallow snapshot: the queue's own structure is consistent; an item that other
threads mutate is guarded by whatever guards it). A ``SimpleQueue`` has no lock
Python code can take; its items are read twice and accepted when both reads
agree, which is exact when no other thread uses the queue meanwhile.

These reducers are used by the ``hybrid`` pickler (see ``hybrid.py``, which
also snapshots user objects that own an RLock while holding it). Under
``pickle`` and ``cloudpickle`` locks stay unpicklable, as in the stdlib.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import queue
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import PicklingError
from . import copiedwait

LockType = type(threading.Lock())  # _thread.lock
RLockType = type(threading.RLock())  # _thread.RLock (the C implementation)
PyRLockType: type = threading._PyRLock  # type: ignore[attr-defined]  # pure-Python RLock
SimpleQueueType = queue.SimpleQueue

#: Seconds to wait for a Queue's mutex (or a nested object's lock) before giving
#: up with a PicklingError, instead of hanging on a lock that is never released.
SNAPSHOT_TIMEOUT = 10.0

Reduced = tuple[Any, ...]

_waits = threading.local()


class SnapshotTimeout(PicklingError):
    """A lock a snapshot needs stayed held past its wait (``snapshot_timeout()``)."""


def lock_order_error(what: str, wait: float, fix: str) -> SnapshotTimeout:
    """The error of a snapshot whose lock (*what*'s) stayed held by another thread for *wait*
    seconds while this thread held an enclosing object's lock for its own snapshot."""
    return SnapshotTimeout(
        f"could not snapshot {what}: it stayed held by another thread for {wait:g}s while the "
        f"lock of an enclosing object was held for its own snapshot (a lock-order conflict). {fix}"
    )


def snapshot_timeout() -> float:
    """Seconds a snapshot waits for a lock: ``SNAPSHOT_TIMEOUT``, or none in this
    thread inside :func:`no_snapshot_wait`."""
    return getattr(_waits, "seconds", SNAPSHOT_TIMEOUT)


@contextlib.contextmanager
def no_snapshot_wait() -> Iterator[None]:
    """Snapshots in this thread do not wait for a held lock: for looking, after a
    snapshot already waited its time, for the task that holds the object (each
    probe waited the whole time again: a 10 s failure took 20 s to report)."""
    previous = getattr(_waits, "seconds", None)
    _waits.seconds = 0.0
    try:
        yield
    finally:
        if previous is None:
            del _waits.seconds
        else:
            _waits.seconds = previous


def holds_for_snapshot() -> bool:
    """True while this thread holds a lock for a snapshot still being written (an
    enclosing object's): a lock met then is waited for ``snapshot_timeout()`` only, as
    a thread holding it may be waiting for the enclosing one (a lock-order conflict)."""
    return bool(getattr(_waits, "held", 0))


def note_hold(change: int) -> None:
    """This thread took (+1) or released (-1) a lock held for a snapshot being written."""
    _waits.held = getattr(_waits, "held", 0) + change


_callers = threading.local()


@contextlib.contextmanager
def snapshots_for(threads: frozenset[int]) -> Iterator[None]:
    """Snapshots made in this thread are for calls that *threads* (their idents) made.

    An ``Executor`` (and the joblib backend, which runs on one) pickles its calls in
    its manager thread, not in the thread that submitted them. A submitter that holds
    an object's RLock while it submits that object and waits for the result (``with
    self._lock: ex.submit(f, self).result()``) would wait for ever on the manager
    thread, which waits for the lock. Inside this block such a lock, held by one of
    *threads*, is not waited for: the snapshot is taken under its submitter's hold, as
    ``Parallel``, which pickles in the calling thread, takes it (see :func:`held_by_caller`).
    """
    previous = getattr(_callers, "idents", None)
    _callers.idents = threads
    try:
        yield
    finally:
        _callers.idents = previous


def owner_of(lock: Any) -> int | None:
    """The ident of the thread holding the RLock *lock*, or None (released, or unknown)."""
    owner = getattr(lock, "_owner", None)  # the pure-Python RLock
    if owner is not None:
        return int(owner)
    match = _OWNER.search(repr(lock))  # the C RLock shows its owner only in its repr (0: none)
    return (int(match.group(1)) or None) if match else None


_OWNER = re.compile(r"owner=(\d+)")


class MixedCallers(Exception):
    """An RLock met while pickling a batch of calls made by several threads is held by one
    of them: whether it is held by the thread that made the call it belongs to (not waited
    for) or by another one (waited for, its change in progress not seen half done) cannot
    be told here. The batch's calls are to be pickled again one by one."""


def held_by_caller(lock: Any) -> bool:
    """True when an RLock is held by the thread this thread pickles for (:func:`snapshots_for`).

    For the calls of several threads, one of which holds it: :class:`MixedCallers` (only
    the call's own thread's hold may be taken as the snapshot's).
    """
    idents: frozenset[int] = getattr(_callers, "idents", None) or frozenset()
    if not idents or owner_of(lock) not in idents:
        return False
    if len(idents) > 1:
        raise MixedCallers("an RLock held by one of the threads whose calls are pickled together")
    return True


#: Seconds a snapshot waits for a lock another thread holds before it says so (it waits on).
HELD_WARNING = 10.0


def acquire_unless_caller(lock: Any, timeout: float = -1, what: str = "an object") -> bool | None:
    """Take *lock* for a snapshot: True when taken; None when a thread this one pickles
    for holds it (:func:`snapshots_for`: not taken, the snapshot is made under that
    thread's hold); False when *timeout* passed first.

    With no *timeout*, a lock still held after ``HELD_WARNING`` seconds is said so
    (:func:`_held_long`): a call waiting for ever on a lock never released showed nothing.
    """
    if lock.acquire(blocking=False):
        return True
    if held_by_caller(lock):
        return None
    if timeout >= 0:
        return bool(lock.acquire(timeout=timeout))
    if lock.acquire(timeout=HELD_WARNING):
        return True
    _held_long(lock, what)
    return bool(lock.acquire())


def _held_long(lock: Any, what: str) -> None:
    """*what*'s *lock* stayed held ``HELD_WARNING`` seconds: a ``RuntimeWarning`` saying so, at
    the first frame outside picklepool and the picklers (the call, in the calling thread).

    Its holder is not named: an RLock shows its owner's ident only, which the system
    gives to the next thread once that one ends (a thread that ended holding the lock
    was then named as one of loky's).
    """
    import warnings

    from .context import current

    ctx = current()
    batch = ctx.batch_name() if ctx is not None else None
    tasks = f" for {batch}" if batch else ""
    warnings.warn(
        f"picklepool has waited {HELD_WARNING:g} s to snapshot {what}{tasks}: another thread holds "
        "that lock. The call goes on once it is released (a snapshot is made under the lock, "
        "so that no task sees a change half done); a lock that is never released (held for "
        "ever, or by a thread that ended without releasing it) makes the call wait for ever.",
        RuntimeWarning,
        stacklevel=callers_level(),
    )


def callers_level() -> int:
    """The ``stacklevel`` of the first frame outside picklepool and cloudpickle (1 if none)."""
    import os
    import sys

    ours = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), f"{os.sep}cloudpickle{os.sep}")
    frame: Any = sys._getframe(2)  # (_held_long's caller is level 2 of the warning)
    level = 2
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(ours[0]) or ours[1] in name or name.endswith(f"{os.sep}pickle.py")):
            return level
        frame, level = frame.f_back, level + 1
    return 1


# -- rebuilders: run in the worker (or wherever the bytes are loaded) -----------------


def _rebuild_lock() -> Any:
    return threading.Lock()


def _rebuild_rlock() -> Any:
    return threading.RLock()


def _rebuild_py_rlock() -> Any:
    return PyRLockType()


def _rebuild_condition(lock: Any) -> threading.Condition:
    return copiedwait.copied(lock)  # (in a worker: a wait nothing can end raises, copiedwait)


def _rebuild_event(is_set: bool) -> threading.Event:
    event = copiedwait.guard(threading.Event())
    if is_set:
        event.set()
    return event


def _rebuild_semaphore(value: int) -> threading.Semaphore:
    return copiedwait.guard(threading.Semaphore(value))


def _rebuild_bounded_semaphore(value: int, initial: int) -> threading.BoundedSemaphore:
    sem = copiedwait.guard(threading.BoundedSemaphore(initial))
    for _ in range(initial - value):
        sem.acquire(blocking=False)
    return sem


def _rebuild_empty(cls: Any) -> Any:
    """An empty instance of *cls*; its state (items, fresh mutex, ...) is set by BUILD."""
    return cls.__new__(cls)


class CopiedSimpleQueue(queue.SimpleQueue):  # type: ignore[type-arg]
    """A worker's copy of the parent's ``queue.SimpleQueue``: ``get()`` with no timeout on
    it empty, which only the parent's ``put()`` would have filled, raises
    ``copiedwait.CopiedWaitError`` when no other thread of the worker could fill it."""

    __slots__ = ()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block and timeout is None and self.empty():
            copiedwait.refuse_endless_wait()
        return super().get(block, timeout)

    def __reduce__(self) -> Any:
        return _reduce_simple_queue(self)  # (a plain SimpleQueue again where it is rebuilt)


def _rebuild_simple_queue(items: list[Any]) -> queue.SimpleQueue[Any]:
    q: queue.SimpleQueue[Any] = CopiedSimpleQueue() if copiedwait.in_worker else queue.SimpleQueue()
    for item in items:
        q.put(item)
    return q


# -- reducers: run in the parent, inside the pickler ------------------------------------


def _reduce_lock(lock: Any) -> Reduced:
    return (_rebuild_lock, ())


def _reduce_rlock(lock: Any) -> Reduced:
    return (_rebuild_rlock, ())


def _reduce_py_rlock(lock: Any) -> Reduced:
    return (_rebuild_py_rlock, ())


def _reduce_condition(cond: threading.Condition) -> Reduced:
    return (_rebuild_condition, (cond._lock,))  # type: ignore[attr-defined]


def _reduce_event(event: threading.Event) -> Reduced:
    return (_rebuild_event, (event.is_set(),))


def _reduce_semaphore(sem: threading.Semaphore) -> Reduced:
    return (_rebuild_semaphore, (sem._value,))  # type: ignore[attr-defined]


def _reduce_bounded_semaphore(sem: threading.BoundedSemaphore) -> Reduced:
    return (_rebuild_bounded_semaphore, (sem._value, sem._initial_value))  # type: ignore[attr-defined]


def reduce_queue(q: queue.Queue[Any]) -> Reduced:
    """Snapshot a ``queue.Queue`` (or subclass) while holding its mutex."""
    wait = snapshot_timeout()
    if not q.mutex.acquire(timeout=wait):
        raise SnapshotTimeout(
            f"could not snapshot a {type(q).__qualname__}: its mutex stayed held for "
            f"{wait:g}s (is the calling thread holding q.mutex, or is "
            "another thread stuck inside a put/get?). Release it before sending the queue."
        )
    try:
        state = dict(vars(q))
        items = q.queue
        state["queue"] = items.copy() if hasattr(items, "copy") else copy.copy(items)
    finally:
        q.mutex.release()
    return (_rebuild_empty, (type(q),), state)


def reduce_condition_subclass(cond: threading.Condition) -> Reduced:
    """A user subclass of Condition: its attributes, without the waiting threads."""
    state = dict(vars(cond))
    state["_waiters"] = deque()
    return (_rebuild_empty, (type(cond),), state)


def simple_queue_items(q: queue.SimpleQueue[Any], attempts: int = 1000) -> list[Any]:
    """The items of a SimpleQueue, oldest first, without taking them out.

    CPython's SimpleQueue keeps its items at the tail of one list, which the
    garbage collector can see. Read the size, the tail, and the size again; accept
    the tail when nothing changed in between.
    """
    for _ in range(attempts):
        lists = [r for r in gc.get_referents(q) if type(r) is list]
        if len(lists) != 1:
            break
        items = lists[0]
        n = q.qsize()
        tail = items[-n:] if n else []
        if q.qsize() == n and len(tail) == n:
            return tail
    raise PicklingError(
        "could not snapshot a queue.SimpleQueue: its items could not be read "
        "consistently (it kept changing, or this Python does not expose them). "
        "Use queue.Queue, which is snapshotted under its mutex, or send a list of the items."
    )


def _reduce_simple_queue(q: queue.SimpleQueue[Any]) -> Reduced:
    return (_rebuild_simple_queue, (simple_queue_items(q),))


#: Reducers by exact type, for a pickler's ``dispatch_table``.
REDUCERS: dict[type, Callable[[Any], Reduced]] = {
    LockType: _reduce_lock,
    RLockType: _reduce_rlock,
    PyRLockType: _reduce_py_rlock,
    threading.Condition: _reduce_condition,
    threading.Event: _reduce_event,
    threading.Semaphore: _reduce_semaphore,
    threading.BoundedSemaphore: _reduce_bounded_semaphore,
    queue.Queue: reduce_queue,
    queue.LifoQueue: reduce_queue,
    queue.PriorityQueue: reduce_queue,
    SimpleQueueType: _reduce_simple_queue,
    CopiedSimpleQueue: _reduce_simple_queue,
}

#: Types whose instances are snapshotted under their own RLock by ``hybrid``.
RLOCK_TYPES = frozenset({RLockType, PyRLockType})


def is_sync_object(obj: Any) -> bool:
    """True for the objects this module reduces (used by error messages)."""
    return type(obj) in REDUCERS or isinstance(obj, (queue.Queue, threading.Condition))
