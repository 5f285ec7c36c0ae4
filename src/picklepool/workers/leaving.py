"""A worker leaving its pool does not wait for the threads (or processes) its tasks left running.

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
library's own ``concurrent.futures`` uses; run before the standard library's thread pools'
hook, and telling their threads to end as it does): it gives them :data:`GRACE` seconds to end, then
says on stderr which are still running, runs the worker's ``atexit`` functions, flushes its
streams and ends the process without them (``os._exit(0)``). Their work is lost, as when a
worker is killed; in the loop they would have kept the parent running until they ended.

The child processes a task started with ``multiprocessing`` and left running (a
``Process(...).start()`` without ``join``, not a daemon) hold that exit the same way:
``multiprocessing``'s own exit function joins them without a deadline, before the threads'
hook runs. :func:`install` also registers a ``multiprocessing`` finalizer that runs before
that join (:func:`_leave_children`): it gives them :data:`GRACE` seconds too, then names
those still running on stderr and stops them (``terminate()``, then ``kill()``), so that
none outlives the worker. Before, the parent killed the worker and its children
``executor.reaper.EXIT_DEADLINE`` seconds later, with a line that blamed a thread. (Daemon
children ``multiprocessing`` terminates itself; a ``subprocess.Popen`` child is not waited
for at exit, in the loop either: left as it is.)
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from typing import Any

GRACE = 1.0  # seconds a leaving worker waits for its tasks' non-daemon threads (and processes)
EXIT_PRIORITY = 100  # of the finalizer that stops them: among the first multiprocessing runs


def install() -> None:
    """Register :func:`_leave` in this worker (once; where this Python has the hook).

    After the standard library's thread pools' own hook, which such hooks run in reverse
    order: that one joins a ``ThreadPoolExecutor``'s threads without a deadline, so ours
    must run first (it tells them to end as that one does, then waits for them, a while)."""
    register = getattr(threading, "_register_atexit", None)
    if register is None or getattr(install, "done", None) == os.getpid():
        return
    install.done = os.getpid()  # type: ignore[attr-defined]
    import concurrent.futures.thread  # noqa: F401 - (registers its hook now: before ours)

    try:
        register(_leave)
    except RuntimeError:  # (already shutting down)
        pass
    from multiprocessing import util

    # run by multiprocessing's exit function before it joins this process's children
    util.Finalize(None, _leave_children, args=(os.getpid(),), exitpriority=EXIT_PRIORITY)


def _end_thread_pools() -> None:
    """Tell the threads of the ``ThreadPoolExecutor`` s tasks left open to end once their
    work is done, as the standard library's exit hook does (``_python_exit``), without its
    join: an idle pool's threads end at once, a busy one's after its work."""
    pools = sys.modules.get("concurrent.futures.thread")
    lock = getattr(pools, "_global_shutdown_lock", None)
    queues = getattr(pools, "_threads_queues", None)
    if lock is None or queues is None:
        return
    with lock:
        pools._shutdown = True  # type: ignore[union-attr]
    for queue in list(queues.values()):
        queue.put(None)


def running() -> list[threading.Thread]:
    """The non-daemon threads of this process besides the main one and the calling one."""
    mine = (threading.main_thread(), threading.current_thread())
    return [t for t in threading.enumerate() if t not in mine and not t.daemon and t.is_alive()]


def _still_running(items: list[Any]) -> list[Any]:
    """*items* (threads or processes) joined for :data:`GRACE` seconds in all: those still running."""
    deadline = time.monotonic() + GRACE
    for item in items:
        item.join(max(0.0, deadline - time.monotonic()))
    return [item for item in items if item.is_alive()]


def _names(names: list[str]) -> str:
    """The first five of *names*, and how many more."""
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _leave() -> None:
    left = running()
    if not left:
        return
    _end_thread_pools()
    left = _still_running(left)
    if not left:
        return
    names = _names([repr(t.name) for t in left])
    try:
        sys.stderr.write(  # (one write: several workers' lines do not run together)
            f"picklepool: worker {os.getpid()} left its pool with threads its tasks started still "
            f"running ({names}) {GRACE:g} s later: it exits without them, and their work is lost "
            "(waiting would hold up the pool's next calls). Join such a thread in the task that "
            "starts it (shut down a ThreadPoolExecutor it makes), or make it a daemon thread.\n"
        )
        sys.stderr.flush()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - (a closed or replaced stream)
                pass
        os._exit(0)


def children() -> list:
    """The child processes ``multiprocessing``'s exit would join: started by this process's
    tasks, not daemons, still running (not loky's: a nested call's pool is stopped apart,
    ``lokycompat.before_loky_exit``)."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return []
    try:
        active = mp.active_children()
    except Exception:  # noqa: BLE001 - (a process object a task broke)
        return []
    return [p for p in active if not p.daemon and not type(p).__module__.startswith("loky")]


def _leave_children(pid: int) -> None:
    if pid != os.getpid():  # (a copy in a child forked by other means than multiprocessing)
        return
    procs = children()
    if not procs:
        return
    procs = _still_running(procs)
    if not procs:
        return
    names = _names([f"{p.name!r} pid {p.pid}" for p in procs])
    try:
        sys.stderr.write(  # (one write: several workers' lines do not run together)
            f"picklepool: worker {os.getpid()} left its pool with child processes its tasks "
            f"started still running ({names}) {GRACE:g} s later: it stops them, and their work "
            "is lost (waiting would hold up the pool's next calls). Join such a process in the "
            "task that starts it, or make it a daemon process.\n"
        )
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - (a closed or replaced stream)
        pass
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + GRACE
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()
