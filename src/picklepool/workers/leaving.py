"""A worker leaving its pool does not wait for the threads its tasks left running.

A loky worker leaves its pool when it is retired (a task timed out, memory recycling), when
it idles out, or when its pool shuts down; it then exits as any Python process does,
joining its non-daemon threads first. A thread a task started and left running (a
library's background thread, a ``threading.Thread(...).start()`` without ``join``) held
that exit for as long as it ran, and loky's manager thread, which joins the leaving worker
without a deadline, held every reply of the pool's next calls behind it (until the parent
killed the worker ``executor.reaper.EXIT_DEADLINE`` seconds later, warning only then; under
joblib, until the thread ended).

:func:`install`, at the worker's start, registers a hook that runs as the worker exits,
before those threads are joined (``threading._register_atexit``, which the standard
library's own ``concurrent.futures`` uses): it gives them :data:`GRACE` seconds to end, then
says on stderr which are still running, runs the worker's ``atexit`` functions, flushes its
streams and ends the process without them (``os._exit(0)``). Their work is lost, as when a
worker is killed; in the loop they would have kept the parent running until they ended.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time

GRACE = 1.0  # seconds a leaving worker waits for its tasks' non-daemon threads


def install() -> None:
    """Register :func:`_leave` in this worker (once; where this Python has the hook)."""
    register = getattr(threading, "_register_atexit", None)
    if register is None or getattr(install, "done", None) == os.getpid():
        return
    install.done = os.getpid()  # type: ignore[attr-defined]
    try:
        register(_leave)
    except RuntimeError:  # (already shutting down)
        pass


def running() -> list[threading.Thread]:
    """The non-daemon threads of this process besides the main one and the calling one."""
    mine = (threading.main_thread(), threading.current_thread())
    return [t for t in threading.enumerate() if t not in mine and not t.daemon and t.is_alive()]


def _leave() -> None:
    left = running()
    if not left:
        return
    deadline = time.monotonic() + GRACE
    for thread in left:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [t for t in left if t.is_alive()]
    if not left:
        return
    names = ", ".join(repr(t.name) for t in left[:5])
    if len(left) > 5:
        names += f" and {len(left) - 5} more"
    try:
        print(
            f"picklepool: worker {os.getpid()} left its pool with threads its tasks started still "
            f"running ({names}) {GRACE:g} s later: it exits without them, and their work is lost "
            "(waiting would hold up the pool's next calls). Join such a thread in the task that "
            "starts it, or make it a daemon thread.",
            file=sys.stderr,
            flush=True,
        )
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - (a closed or replaced stream)
                pass
        os._exit(0)
