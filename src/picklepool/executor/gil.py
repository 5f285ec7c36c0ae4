"""A shorter GIL switch interval while a call dispatches to loky workers.

loky moves batches to the workers and replies back on two threads of the parent
(its queue feeder and its manager). Each needs the GIL for a moment per batch,
several times: to wake up, to read each chunk of a reply from the pipe, to hand
the next batch on. While the calling thread runs the user's generator of
``delayed`` calls it holds the GIL, and CPython makes each of those threads wait
up to the switch interval (5 ms by default) every time: the "convoy effect" of
the GIL (https://bugs.python.org/issue7946). On 100k tiny tasks, batches sat
in the parent ~10-15 ms before reaching an idle worker, and replies as long
before the parent saw them.

So while a call dispatches (not while a ``return_as="generator"`` call is
suspended between results), the interval is lowered to ``DISPATCH_INTERVAL``,
and restored when the last dispatching call in the process pauses or ends. A
value the user set lower is kept; a value the user changes meanwhile is not
overwritten. ``benchmarks/`` measures the effect (``tiny_tasks``).
"""

from __future__ import annotations

import sys
import threading

DISPATCH_INTERVAL = 0.0005  # seconds

_lock = threading.Lock()
_users = 0
_saved: float | None = None  # the interval to restore, when we lowered it
_ours: float | None = None  # the interval we set, as sys reports it


def lower() -> None:
    """Enter a dispatching section (nests across threads and calls)."""
    global _users, _saved, _ours
    with _lock:
        if _users == 0:
            current = sys.getswitchinterval()
            if current > DISPATCH_INTERVAL:
                sys.setswitchinterval(DISPATCH_INTERVAL)
                _saved, _ours = current, sys.getswitchinterval()
        _users += 1


def restore() -> None:
    """Leave a dispatching section; the last one out restores the interval."""
    global _users, _saved, _ours
    with _lock:
        _users -= 1
        if _users == 0 and _saved is not None:
            if sys.getswitchinterval() == _ours:  # not changed by anyone meanwhile
                sys.setswitchinterval(_saved)
            _saved = _ours = None
