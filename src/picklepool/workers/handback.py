"""A worker gives back the tasks of its batch that a long task keeps waiting.

``picklepool.Executor`` sends the submissions that queue up while its workers are
busy together, in one batch, which a worker runs in order. The standard library's
executor sends each call alone, so any idle worker takes the next one. In a batch,
a call could wait behind a long one while another worker sits idle, and one that
waits for a later call of its own batch (an event, a queue) would wait forever.

So a worker running such a batch (``Batch.splittable``) watches it: the thread
that watches its parent (``control.watch_parent``) looks at the running task every
half second (:func:`check`). Once a task has run :data:`HAND_BACK_AFTER` seconds
with tasks still behind it, the worker stops there: those tasks will not run here.
It writes the index of the first one in its status (``control.STATUS``, field 4),
where the parent's executor looks every half second, and sends them again to the
next free worker. The batch's reply, when the long task ends, carries the results of the
tasks it ran only. Whether a task runs here is decided by the worker alone, under
one lock, so no task runs twice, and none is lost.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

HAND_BACK_AFTER = 1.0  # seconds a task runs before the tasks behind it in its batch go back

_lock = threading.Lock()
_gates: list[Gate] = []  # the batches being watched (one, unless a task runs a batch itself)


class Gate:
    """A batch's tasks: which ones may still start in this worker."""

    def __init__(self, status: Any, end: int) -> None:
        self.status = status  # this worker's status (control.WorkerView.status)
        self.limit = end  # tasks from here on were given back
        self.seen = -2  # the task running at the last look, and since when
        self.since = 0.0

    def enter(self, index: int) -> bool:
        """Start task *index* here (marked in the status), unless it was given back."""
        with _lock:
            if index >= self.limit:
                return False
            self.status[1] = index
            return True


def watch(status: Any, end: int) -> Gate:
    """Watch the batch beginning now, whose tasks end before *end*; :func:`done` after it."""
    gate = Gate(status, end)
    with _lock:
        _gates.append(gate)
    return gate


def done(gate: Gate) -> None:
    with _lock:
        if gate in _gates:
            _gates.remove(gate)


def check() -> None:
    """Give back the tasks waiting behind one that has run :data:`HAND_BACK_AFTER` seconds.

    Called every half second or so (``control.watch_parent``'s thread): a task is
    seen running at two looks that far apart before anything is given back.
    """
    now = time.monotonic()
    with _lock:
        for gate in _gates:
            running = gate.status[1]
            if running != gate.seen:
                gate.seen, gate.since = running, now
            elif 0 <= running < gate.limit - 1 and now - gate.since >= HAND_BACK_AFTER:
                gate.limit = running + 1  # tasks wait behind the long one: they go back
                gate.status[4] = gate.limit


def _forget_in_child() -> None:
    """A process forked by a task: its parent's batch is not its own (nor the lock's state)."""
    global _lock
    _lock = threading.Lock()
    _gates.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
