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

import os
import sys
import threading
import weakref

DISPATCH_INTERVAL = 0.0005  # seconds

# Re-entrant: the weakrefs _active makes may start a collection in this thread while it
# holds the lock, whose finalizers may end a call (a dropped generator in a reference
# cycle) or make one (a __del__): they come back here, and a plain lock waited for ever.
_lock = threading.RLock()
# The dispatching sections now open, in any thread; a scope lost to an interrupted
# cleanup drops out when its call is collected, and the next restore heals the interval.
_active: weakref.WeakSet[Scope] = weakref.WeakSet()
_saved: float | None = None  # the interval to restore, when we lowered it
_ours: float | None = None  # the interval we set, as sys reports it


def _new_lock_in_child() -> None:
    """Held by another thread at a fork, the child's copy would stay held: its calls would hang."""
    global _lock
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


class Scope:
    """One call's dispatching section; ``lower`` and ``restore`` may be repeated.

    Both are idempotent and the count of users is the set of open scopes, so a
    ``KeyboardInterrupt`` landing anywhere in a call leaves nothing behind once
    the call's ``finally`` has run ``restore``.
    """

    __slots__ = ("__weakref__",)

    def lower(self) -> None:
        global _saved, _ours
        with _lock:
            if self in _active:
                return
            if not _active and _saved is None:
                current = sys.getswitchinterval()
                if current > DISPATCH_INTERVAL:
                    _saved, _ours = current, None
                    sys.setswitchinterval(DISPATCH_INTERVAL)
                    _ours = sys.getswitchinterval()
            _active.add(self)

    def restore(self) -> None:
        global _saved, _ours
        with _lock:
            _active.discard(self)
            if _active or _saved is None:
                return
            if _ours is None or sys.getswitchinterval() == _ours:  # not changed meanwhile
                sys.setswitchinterval(_saved)
            _saved = _ours = None
