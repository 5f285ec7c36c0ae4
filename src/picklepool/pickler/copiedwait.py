"""A wait on a worker's copy of the parent's Event, Queue, Condition or Semaphore that nothing
can end.

Under ``hybrid``, a ``threading.Event``, ``queue.Queue``, ``Condition``, ``Semaphore`` or
``queue.SimpleQueue``
that a task gets (an argument, a global of its function) is a copy (``pickler.locks``):
the parent's ``set()``, ``put()``, ``notify()`` or ``release()`` never reaches it. A task
that waits on one without a timeout (a stop flag ``ev.wait()``, a consumer's ``q.get()``
on an empty queue, ``sem.acquire()`` at 0) waited for ever, with no word, where the loop's
thread was woken by the parent (under joblib these objects are refused when the call is
sent: "cannot pickle '_thread.lock' object").

In a worker (:data:`in_worker`, set as a worker starts), the conditions of such copies
are :class:`CopiedCondition` (a ``SimpleQueue``, which has none, is
``pickler.locks.CopiedSimpleQueue``): a wait on one with no timeout, when no other thread of the
worker but picklepool's idle ones could wake it (the task started none: it could not be woken
but by a signal handler), raises :class:`CopiedWaitError` saying why and what to do. A
task that started a thread of its own (which may set the copy), or a wait with a
timeout, waits as before. Elsewhere (the parent rebuilding what a task returns) they are
the standard library's.
"""

from __future__ import annotations

import threading
from typing import Any

# True in a worker process of picklepool's pools (workers.prologue, workers.forkstart)
in_worker = False


class CopiedWaitError(RuntimeError):
    """A task waited, with no timeout, on its copy of a synchronisation object of the parent
    that no thread of its worker could wake."""


class CopiedCondition(threading.Condition):
    """A ``threading.Condition`` of a worker's copy of the parent's Event, Queue, Condition or
    Semaphore: see the module."""

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            refuse_endless_wait()
        return super().wait(timeout)

    def __reduce__(self) -> Any:
        return copied, (self._lock,)  # type: ignore[attr-defined]


def refuse_endless_wait() -> None:
    """Raise :class:`CopiedWaitError` when no other thread of this worker but its idle ones
    could end the calling thread's wait (on a copy: the parent's changes never reach it)."""
    if _nobody_else():
        raise CopiedWaitError(
            "the task waits, with no timeout, on a threading.Event, queue.Queue, "
            "queue.SimpleQueue, threading.Condition, Semaphore or Barrier that came from the parent "
            "(an argument, or a global of its function): a worker has a copy of it, which the "
            "parent's set(), put(), notify() or release() does not reach, and no other thread of "
            "the worker could wake it, so it would wait for ever. Fix: share it between processes, "
            "with a multiprocessing.Manager() (manager.Event(), manager.Queue()), pass the "
            "task the value it waits for as an argument, or give the wait a timeout."
        )


# the threads of a worker that never run a task's code (others may: an Executor's callbacks,
# a nested call's tasks), so cannot wake a wait
_IDLE = frozenset({"picklepool-parent-watch"})


def _nobody_else() -> bool:
    """Whether the calling thread is the only one of this worker but its idle ones (:data:`_IDLE`)."""
    me = threading.current_thread()
    return all(t is me or t.name in _IDLE for t in threading.enumerate())


def copied(lock: Any = None) -> threading.Condition:
    """A condition on *lock* (None: a new ``Lock``) for a copy rebuilt here: a
    :class:`CopiedCondition` in a worker, the standard library's elsewhere."""
    if lock is None:
        lock = threading.Lock()
    return CopiedCondition(lock) if in_worker else threading.Condition(lock)


def guard(obj: Any) -> Any:
    """*obj* (a new ``Event`` or ``Semaphore``), its condition :func:`copied` in a worker."""
    if in_worker:
        obj._cond = CopiedCondition(threading.Lock())
    return obj
