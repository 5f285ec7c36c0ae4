"""The small shared-memory channel between a parent and its workers.

The parent owns one *session folder* (in ``/dev/shm`` when it exists, else the
temp folder): a cancel-flag file, the workers' status files, and blobs written
once per call (large functions, shared values). Workers only read the flags and
blobs, and write their own status file: which call and task they are running, so
that the parent can name the task a crashed worker was running. The folder is
registered with loky's resource tracker, so it is removed even if the parent is
killed.
"""

from __future__ import annotations

import mmap
import os
import shutil
import struct
import tempfile
import threading
import uuid
from typing import Any

CANCEL_SLOTS = 4096
_STATUS = struct.Struct("qqq")  # call id, task running (-1: idle), its start (monotonic ns)


def _shm_root() -> str:
    root = "/dev/shm"
    if os.path.isdir(root) and os.access(root, os.W_OK):
        return root
    return tempfile.gettempdir()


def _map_file(path: str, size: int, create: bool) -> mmap.mmap:
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        if create:
            os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


class Session:
    """Parent side: the session folder, cancel flags and status reading."""

    def __init__(self) -> None:
        self.path = os.path.join(_shm_root(), f"picklepool-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.mkdir(self.path, 0o700)
        try:
            from loky.backend import resource_tracker

            resource_tracker.register(self.path, "folder")
            self._tracked = True
        except Exception:  # pragma: no cover - tracker unavailable
            self._tracked = False
        self._flags = _map_file(os.path.join(self.path, "cancel"), CANCEL_SLOTS, create=True)
        self._lock = threading.Lock()
        self._next_call = 0
        self._blobs: dict[str, set[Any]] = {}  # key -> the calls using it

    def begin_call(self) -> int:
        with self._lock:
            self._next_call += 1
            call_id = self._next_call
        self._flags[call_id % CANCEL_SLOTS] = 0
        return call_id

    def cancel(self, call_id: int) -> None:
        self._flags[call_id % CANCEL_SLOTS] = 1

    def write_blob(self, key: str, data: bytes, owner: Any = None) -> str:
        """Write *data* once under *key* for *owner* (a call); return its path.

        Calls that send the same content share one file; it is removed when the last
        of them drops it. The file is complete before any caller gets its path.
        """
        path = os.path.join(self.path, f"blob-{key}")
        with self._lock:
            owners = self._blobs.get(key)
            if owners is None:
                tmp = f"{path}.tmp{threading.get_ident()}"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
                owners = self._blobs[key] = set()
            owners.add(owner)
        return path

    def drop_blob(self, key: str, owner: Any = None) -> None:
        with self._lock:
            owners = self._blobs.get(key)
            if owners is None:
                return
            owners.discard(owner)
            if owners:
                return
            del self._blobs[key]
            try:
                os.unlink(os.path.join(self.path, f"blob-{key}"))
            except FileNotFoundError:
                pass

    def worker_status(self, pid: int) -> tuple[int, int, int] | None:
        """``(call_id, task_index, start_ns)`` a worker last reported, or None.

        ``start_ns`` (``time.monotonic_ns()``) is only kept when the call has a timeout.
        """
        try:
            with open(os.path.join(self.path, f"w{pid}"), "rb") as f:
                data = f.read(_STATUS.size)
        except OSError:
            return None
        if len(data) < _STATUS.size:
            return None
        return _STATUS.unpack(data)

    def worker_pids(self) -> list[int]:
        """PIDs of the workers that have reported a status in this session."""
        return [int(e[1:]) for e in os.listdir(self.path) if e[:1] == "w" and e[1:].isdigit()]

    def forget_worker(self, pid: int) -> None:
        try:
            os.unlink(os.path.join(self.path, f"w{pid}"))
        except FileNotFoundError:
            pass

    def close(self) -> None:
        try:
            self._flags.close()
        except (BufferError, ValueError):
            pass
        shutil.rmtree(self.path, ignore_errors=True)
        if self._tracked:
            try:
                from loky.backend import resource_tracker

                resource_tracker.unregister(self.path, "folder")
            except Exception:  # pragma: no cover
                pass


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class WorkerView:
    """Worker side: reads the cancel flags, writes this worker's status."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.flags = _map_file(os.path.join(path, "cancel"), CANCEL_SLOTS, create=False)
        status_path = os.path.join(path, f"w{os.getpid()}")
        try:
            self._status_map = _map_file(status_path, _STATUS.size, create=True)
        except FileExistsError:
            self._status_map = _map_file(status_path, _STATUS.size, create=False)
        self.status: Any = memoryview(self._status_map).cast("q")
        self.status[1] = -1
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
