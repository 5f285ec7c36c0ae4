"""The small shared-memory channel between a parent and its workers: the worker side.

The parent owns one *session folder* (in ``/dev/shm`` when it exists, else the
temp folder): a cancel-flag file, the workers' status files, and blobs written
once per call (large functions, shared values). Workers only read the flags and
blobs, and write their own status file: which call and task they are running, so
that the parent can name the task a crashed worker was running. The folder is
registered with loky's resource tracker, so it is removed even if the parent is
killed. The parent side is ``executor.session.Session``; this module holds the
worker side (:class:`WorkerView`) and the layout both sides share.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import threading
from typing import Any

from .. import lokycompat
from . import handback

CANCEL_SLOTS = 4096
# call id, task (-1: idle), its start (monotonic ns, with a timeout), stage (below), and
# the first task of the batch given back, not run here (-1: none; workers.handback)
STATUS = struct.Struct("qqqqq")
RUNNING, LOADING, DUMPING = 0, 1, 2  # stages: a task runs; the batch is unpickled; results pickled


def shm_root() -> str:
    root = "/dev/shm"
    if os.path.isdir(root) and os.access(root, os.W_OK):
        return root
    return lokycompat.temp_root()


def map_file(path: str, size: int, create: bool) -> mmap.mmap:
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        if create:
            os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class WorkerView:
    """Worker side: reads the cancel flags, writes this worker's status."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.flags = map_file(os.path.join(path, "cancel"), CANCEL_SLOTS, create=False)
        status_path = os.path.join(path, f"w{os.getpid()}")
        try:
            self._status_map = map_file(status_path, STATUS.size, create=True)
        except FileExistsError:
            self._status_map = map_file(status_path, STATUS.size, create=False)
        self.status: Any = memoryview(self._status_map).cast("q")
        self.status[1] = self.status[4] = -1
        # A worker that exits normally (recycled, idle, shut down) removes its status
        # file; the parent removes those of workers that died (Call._crash_error).
        from multiprocessing.util import Finalize

        Finalize(self, _remove, args=(status_path,), exitpriority=10)

    def cancelled(self, call_id: int) -> bool:
        return self.flags[call_id % CANCEL_SLOTS] != 0


_views: dict[str, WorkerView] = {}


def worker_view(path: str) -> WorkerView | None:
    """The (cached) view of a session folder, or None if it is gone."""
    view = _views.get(path)
    if view is None:
        try:
            view = _views[path] = WorkerView(path)
        except OSError:
            return None
    return view


def watched_view(path: str) -> WorkerView | None:
    """:func:`worker_view`, with the parent watched (:func:`watch_parent`): a batch's one call."""
    view = _views.get(path)
    if view is None:
        view = worker_view(path)
        if view is None:
            return None
    if _watching is None:
        watch_parent()
    return view


PARENT_POLL = 0.5  # seconds between two looks at the parent's pid
# In a worker the forkserver forked: a pipe that reaches end of file when the parent
# dies (set by workers.forkserver; -1: watch the parent's pid)
parent_alive = -1
_watching: int | None = None  # pid of the process that started the watch


def watch_parent(parent: int | None = None) -> None:
    """Exit this worker within ``PARENT_POLL`` seconds of its parent's death.

    *parent*: the pid to watch (None: ``os.getppid()`` now); a worker given it exits
    even when that parent died before the watch began.

    A killed parent cannot stop its workers; loky's own workers would wait out
    their idle timeout (300 s), holding their memory and, through the resource
    tracker, the parent's session folder and semaphores. A daemon thread compares
    ``os.getppid()`` with the parent's pid and ends the process when it changes
    (the orphan was adopted by init or a subreaper); in a worker the forkserver
    forked, it waits for the parent's pipe to end instead (``workers.forkserver``:
    its process parent is the server). Started once per process. The
    same thread looks after the batches ``workers.handback`` watches.
    """
    global _watching
    if _watching is not None:  # (a forked child forgets it: _forget_watch)
        return
    _watching = os.getpid()
    expected = os.getppid() if parent is None else parent
    alive = parent_alive  # forked by the forkserver: the parent's pipe, not its pid
    stop = threading.Event()

    poller = select.poll()  # (not select.select: the pipe's number may be over 1023)
    if alive >= 0:
        poller.register(alive, select.POLLIN)

    def watch() -> None:
        while True:
            if alive >= 0:
                died = bool(poller.poll(PARENT_POLL * 1000))
            else:
                stop.wait(PARENT_POLL)
                died = os.getppid() != expected
            if died:
                _kill_children()  # this worker's own pools (nested calls) go with it
                os._exit(70)  # EX_SOFTWARE: nobody is left to read a result
            handback.check()  # an Executor's calls a long one keeps waiting go back

    threading.Thread(target=watch, name="picklepool-parent-watch", daemon=True).start()


class _EveryCallCancelled:
    """A forked child's cancel flags: every call's is set."""

    def __getitem__(self, slot: int) -> int:
        return 1


# True in a process forked from a worker (a task's os.fork(), multiprocessing's "fork")
forked_child = [False]


def _forget_watch() -> None:
    global _watching, parent_alive
    _watching = None  # a forked child has no watching thread: its first batch starts one
    parent_alive = -1  # and its parent is this process
    # A child a task forked that comes back from the task runs no other task of the batch
    # (they ran twice, side effects too): the cancel check before the next one stops it
    # (in a batch of more than 64 tasks, read every 32 tasks), and the runner ends it.
    forked_child[0] = bool(_views)
    for view in _views.values():
        view.flags = _EveryCallCancelled()  # type: ignore[assignment]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_watch)


def _kill_children() -> None:
    try:
        import psutil

        for proc in psutil.Process().children(recursive=True):
            proc.kill()
    except Exception:  # noqa: BLE001 - exiting anyway; orphans watch their own parent
        pass
