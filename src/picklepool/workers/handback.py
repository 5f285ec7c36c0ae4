"""A worker gives back the tasks of its batch that a long task keeps waiting.

``picklepool.Executor`` sends the submissions that queue up while its workers are
busy together, in one batch, which a worker runs in order. The standard library's
executor sends each call alone, so any idle worker takes the next one. In a batch,
a call could wait behind a long one while another worker sits idle, and one that
waits for a later call of its own batch (an event, a queue) would wait forever.

So a worker running such a batch (``Batch.splittable``) watches it. Once a task
has run :data:`HAND_BACK_AFTER` seconds with tasks still behind it, the worker
stops there: those tasks will not run here. It writes the index of the first one
in its status (``control.STATUS``, field 4), where the parent's executor looks
when it has heard nothing for a while, and sends them again to the next free
worker. The batch's reply, when the long task ends, carries the results of the
tasks it ran only. Whether a task runs here is decided by the worker alone, under
one lock, so no task runs twice, and none is lost.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

HAND_BACK_AFTER = 1.0  # seconds a task runs before the tasks behind it in its batch go back

_cond = threading.Condition()
_gates: list[Gate] = []  # the batches being watched, innermost last
_thread: threading.Thread | None = None


class Gate:
    """A batch's tasks: which ones may still start in this worker."""

    def __init__(self, status: Any, end: int) -> None:
        self.status = status  # this worker's status (control.WorkerView.status)
        self.limit = end  # tasks from here on were given back
        self.since = time.monotonic()

    def enter(self, index: int) -> bool:
        """Start task *index* here (marked in the status), unless it was given back."""
        with _cond:
            if index >= self.limit:
                return False
            self.status[1] = index
            self.since = time.monotonic()
            return True


def watch(status: Any, end: int) -> Gate:
    """Watch the batch beginning now, whose tasks end before *end*; :func:`done` after it."""
    global _thread
    gate = Gate(status, end)
    with _cond:
        _gates.append(gate)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_watch, name="picklepool-handback", daemon=True)
            _thread.start()
        _cond.notify()
    return gate


def done(gate: Gate) -> None:
    with _cond:
        if gate in _gates:
            _gates.remove(gate)


def _watch() -> None:
    with _cond:
        while True:
            if not _gates:
                _cond.wait()
                continue
            gate = _gates[-1]
            late = gate.since + HAND_BACK_AFTER - time.monotonic()
            if late > 0:
                _cond.wait(late)
                continue
            running = gate.status[1]
            if running < 0:  # between two tasks
                gate.since = time.monotonic()
                continue
            if running < gate.limit - 1:  # tasks wait behind the long one: they go back
                gate.limit = running + 1
                gate.status[4] = gate.limit
            _gates.remove(gate)  # nothing more to give back


def _forget_in_child() -> None:
    """A process forked by a task: the batch and the watching thread are its parent's."""
    global _cond, _thread
    _cond, _thread = threading.Condition(), None
    _gates.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
