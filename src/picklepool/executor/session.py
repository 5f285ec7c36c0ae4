"""The parent's session folder: cancel flags, worker status, blobs; and its cleanup.

One folder per parent process (in ``/dev/shm`` when it exists, else the temp
folder), named ``picklepool-<pid>-<random>``, created at the first call that
needs it and removed at exit (also a process ``multiprocessing`` started, which
leaves without running ``atexit``'s handlers). Its layout is in ``workers.control``, whose
``WorkerView`` is the workers' side of it. It is registered with loky's resource
tracker, so it goes even when the parent is killed once its workers have exited
(they notice their parent's death within about a second, see
``workers.control.watch_parent``); and a new session removes the folders of
earlier picklepool processes that died without cleaning up.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import stat
import threading
import time
from multiprocessing.util import Finalize
from typing import Any

from .. import lokycompat
from ..workers import journal, logback, warnback
from ..workers.control import CANCEL_SLOTS, STATUS, map_file, shm_root
from . import leftovers
from .printed import write_journaled

_STALE = re.compile(r"picklepool-(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


STALE_AFTER = 60.0  # seconds a dead process's folder is left alone (another pid namespace?)
ENDED_KEPT = 64  # exited workers whose last status a session keeps (Session.ended)
SPARE_FOLDERS = 4  # empty call folders a session keeps for the next calls (calls from threads)


def remove_stale_folders(roots: tuple[str, ...] | None = None) -> list[str]:
    """Remove ``picklepool-<pid>-*`` folders whose process is gone; return their paths.

    Looks in ``/dev/shm`` and the temp folder (spilled buffers). Left alone: folders
    of live processes and of this one, of other users, and those changed in the last
    ``STALE_AFTER`` seconds (a process in another pid namespace sharing ``/dev/shm``
    looks dead from here, but its folder changes at every call).
    """
    removed = []
    now = time.time()
    uid = os.getuid()
    for root in roots or (shm_root(), lokycompat.temp_root()):
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            m = _STALE.match(name)
            if m is None or int(m[1]) == os.getpid() or _alive(int(m[1])):
                continue
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and now - st.st_mtime > STALE_AFTER:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


class Session:
    """Parent side: the session folder, cancel flags and status reading."""

    def __init__(self) -> None:
        announce_child()  # before its folder: a forked child's, removed by its parent if it cannot
        self.pid = os.getpid()  # a forked child neither uses nor removes it (_forget_in_child)
        self.path = os.path.join(shm_root(), f"picklepool-{self.pid}-{os.urandom(4).hex()}")
        os.mkdir(self.path, 0o700)
        self._tracked = False
        try:
            self._tracked = lokycompat.track_folder(self.path)
            self._flags = map_file(os.path.join(self.path, "cancel"), CANCEL_SLOTS, create=True)
        except BaseException:  # (out of descriptors, of space): no folder left for loky's tracker
            try:  # (by name: rmtree needs descriptors, which may be what is missing)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.path, "cancel"))
                os.rmdir(self.path)
            except OSError:
                pass  # (the tracker removes it at the exit)
            else:
                if self._tracked:
                    lokycompat.track_folder(self.path, register=False)
            raise
        # Re-entrant: a collection that starts in this thread while it holds the lock (an
        # allocation in write_blob, begin_call) may run finalizers that end a call (a dropped
        # generator in a reference cycle gives back its blobs) or make one (a __del__)
        self._lock = threading.RLock()
        self._next_call = 0
        self._live: dict[int, int] = {}  # cancel-flag slot -> the running call holding it
        self._blobs: dict[str, set[Any]] = {}  # key -> the calls using it
        self._closed = False
        # pid -> the last status of an exited worker whose file is gone (forget_worker):
        # the call it broke names its task from here, whoever swept it first
        self.ended: dict[int, tuple[int, int, int, int, int]] = {}
        self.spare_folders: list[str] = []  # empty call folders of calls that ended cleanly

    def take_folder(self) -> str | None:
        """An empty call folder a call that ended cleanly gave back, or None: make one.

        A call's folder holds its large arguments and results; a warm call of small
        values leaves it empty, and the next call takes it over instead of making and
        removing a folder of its own (two system calls, 0.07 ms with cold caches).
        """
        with self._lock:
            return self.spare_folders.pop() if self.spare_folders else None

    def give_back_folder(self, path: str) -> bool:
        """Keep *path*, the empty folder of a call that ended with none of its batches
        running (nothing writes there any more), for the next call; False: remove it."""
        with self._lock:
            if self._closed or len(self.spare_folders) >= SPARE_FOLDERS:
                return False
            self.spare_folders.append(path)
            return True

    def begin_call(self) -> int:
        """A new call's id, whose cancel-flag slot no running call holds (end_call frees it).

        Ids follow each other, and a call's flag is slot ``id % CANCEL_SLOTS``: an id whose
        slot a call still running holds is skipped. Before, a call 4096 ids later shared the
        slot of one still open (an unread ``return_as="generator"``), and that one's cancel
        (closed, dropped) stopped the other's workers: its remaining batches came back as
        cancelled, taken for the end of its results (silently fewer of them).
        """
        with self._lock:
            for _ in range(CANCEL_SLOTS):
                self._next_call += 1
                if self._next_call % CANCEL_SLOTS not in self._live:
                    break
            # else all 4096 held by calls running at once: this one shares the last slot
            call_id = self._next_call
            self._live[call_id % CANCEL_SLOTS] = call_id
        self._flags[call_id % CANCEL_SLOTS] = 0
        return call_id

    def end_call(self, call_id: int) -> None:
        """The call is over: its cancel-flag slot may serve another call.

        Without the lock (as :meth:`cancel`): a generator the cyclic GC collects runs this
        at any allocation, also in a thread inside :meth:`begin_call`. Only this call
        frees its slot, and no other call takes it meanwhile (begin_call skips it).
        """
        if self._live.get(call_id % CANCEL_SLOTS) == call_id:
            self._live.pop(call_id % CANCEL_SLOTS, None)

    def cancel(self, call_id: int) -> None:
        """Stop the workers' remaining tasks of *call_id* (a call still running in this process)."""
        if self._flags.closed:  # the session ended (interpreter exit): its workers are gone
            return
        if os.getpid() != self.pid:
            # a forked child closing or dropping a call it inherited (a generator): the call,
            # its flags and its workers are the parent's, which goes on reading it
            return
        if self._live.get(call_id % CANCEL_SLOTS) != call_id:
            return  # ended: its slot may be another running call's now
        self._flags[call_id % CANCEL_SLOTS] = 1

    def write_blob(self, key: str, data: bytes | list[Any], owner: Any = None) -> str:
        """Write *data* (bytes, or bytes-like pieces, written in order) once under *key*
        for *owner* (a call); return its path.

        Calls that send the same content share one file; it is removed when the last
        of them drops it. The file is complete before any caller gets its path.
        """
        path = os.path.join(self.path, f"blob-{key}")
        with self._lock:
            owners = self._blobs.get(key)
            if owners is None:
                tmp = f"{path}.tmp{threading.get_ident()}"
                with open(tmp, "wb") as f:
                    if isinstance(data, list):
                        f.writelines(data)
                    else:
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

    def worker_status(self, pid: int) -> tuple[int, int, int, int, int] | None:
        """``(call_id, task_index, start_ns, stage, given_back)`` a worker last reported, or None.

        *stage* is ``workers.control.RUNNING`` (task_index runs), ``LOADING`` or
        ``DUMPING`` (the batch starting at task_index is unpickled, its results pickled).
        *given_back*: the first task of its batch the worker gave back, or -1
        (``workers.handback``).

        ``start_ns`` (``time.monotonic_ns()``) is only kept when the call has a timeout.
        """
        try:
            with open(os.path.join(self.path, f"w{pid}"), "rb") as f:
                data = f.read(STATUS.size)
        except OSError:
            return None
        if len(data) < STATUS.size:
            return None
        return STATUS.unpack(data)

    def worker_pids(self) -> list[int]:
        """PIDs of the workers that have reported a status in this session (none once it is closed)."""
        try:
            entries = os.listdir(self.path)
        except FileNotFoundError:  # closed at exit: a shutdown() from a later atexit handler raised
            return []
        return [int(e[1:]) for e in entries if e[:1] == "w" and e[1:].isdigit()]

    def forget_worker(self, pid: int, last: tuple[int, int, int, int, int] | None = None) -> None:
        """Remove an exited worker's status file, keeping its *last* status in :attr:`ended`."""
        if last is not None:
            with self._lock:
                if len(self.ended) >= ENDED_KEPT:
                    del self.ended[next(iter(self.ended))]  # the oldest
                self.ended[pid] = last
        try:
            os.unlink(os.path.join(self.path, f"w{pid}"))
        except FileNotFoundError:
            pass
        # what its tasks logged, printed and warned in the batch it died in, which its reply would
        # have brought, in the order they did
        for kind, data in journal.read(self.path, pid):
            if kind == journal.LOG:
                logback.show_journaled(data)
            elif kind == journal.WARNING:
                warnback.show_journaled(data)
            else:
                write_journaled(kind, data)

    def close(self) -> None:
        if os.getpid() != self.pid or self._closed:  # a forked child's exit: the folder is its parent's
            return
        sweep_children()  # what its ended forked children left (their names are in this folder)
        self._closed = True
        try:
            self._flags.close()
        except (BufferError, ValueError):
            pass
        shutil.rmtree(self.path, ignore_errors=True)
        if self._tracked:
            lokycompat.track_folder(self.path, register=False)


_session: Session | None = None
_session_lock = threading.Lock()


def session() -> Session:
    """The parent's shared-memory session folder, created on first use.

    After this process forked, the first call also removes what its forked children
    that have ended left (:func:`sweep_children`); a warm call only reads a flag.
    """
    global _session
    with _session_lock:
        if _session is None or not os.path.isdir(_session.path):
            remove_stale_folders()
            _session = Session()
            atexit.register(_session.close)
            # A process multiprocessing started leaves with os._exit, after its finalizers
            # and without atexit's handlers: its folder stayed until loky's tracker removed
            # it, warning about a leak. After the pools are stopped (lokycompat: 100).
            Finalize(None, _session.close, exitpriority=50)
        current = _session
    if _forked:
        sweep_children()
    return current


# Forked children. A child forked from this process (os.fork(), a multiprocessing "fork"
# Process) shares its loky resource tracker: what the child's calls make (its session
# folder, its pools' semaphores ``sem.loky-<pid>-*``) is registered there. A child that
# ends with os._exit() (or is killed: SIGKILL, a crash) cannot remove them; they stayed in
# /dev/shm while this process lived, and its tracker removed them at its exit with "leaked"
# warnings. The child names itself in this process's session folder (``c<pid>``) before it
# makes any of them (announce_child); this process removes what an ended one left, and
# takes it off the tracker (sweep_children): at the next fork, at the first call after a
# fork, at picklepool.shutdown() and at exit.
_forked = False  # forked since the last sweep_children: the next call sweeps
_parent_folder: str | None = None  # in a forked child: its parent's session folder
_announced = False
_children_lock = threading.Lock()


def announce_child() -> None:
    """In a forked child of a process with a session: name it in the parent's session
    folder (once), before the child makes a folder or a pool of its own."""
    global _announced
    if _announced or _parent_folder is None:
        return
    _announced = True
    try:
        os.close(os.open(os.path.join(_parent_folder, f"c{os.getpid()}"), os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError:  # the parent's session ended (it exited, or shut it down)
        pass


def sweep_children() -> list[str]:
    """Remove what this process's ended forked children left; return the paths removed.

    The children are those named in the session folder (:func:`announce_child`);
    one still running is left alone, and so is a pid another process holds now (the
    child was reaped, its pid reused: ``leftovers.exited``), until a later sweep.
    Their folders and semaphores go as a killed worker's do (``leftovers.remove``):
    off loky's resource tracker too, which would warn about them at exit.
    """
    global _forked
    current = _session
    if current is None or current.pid != os.getpid() or current._closed:
        return []
    if not _children_lock.acquire(blocking=False):
        return []  # another thread sweeps them
    try:
        _forked = False  # (before looking: a fork meanwhile is swept next time)
        try:
            names = os.listdir(current.path)
        except OSError:
            return []
        ended = [
            int(n[1:]) for n in names if n[:1] == "c" and n[1:].isdigit() and leftovers.exited(int(n[1:]))
        ]
        if not ended:
            return []
        removed = leftovers.remove(ended)
        for pid in ended:
            try:
                os.unlink(os.path.join(current.path, f"c{pid}"))
            except OSError:
                pass
        return removed
    finally:
        _children_lock.release()


def _after_fork_in_parent() -> None:
    """This process forked: sweep the children of earlier forks that have ended, and the
    new one at the next call (it may not have named itself yet)."""
    global _forked
    if _session is None:
        return  # no session: no child names itself here
    try:
        sweep_children()
    except Exception:  # noqa: BLE001 - an at-fork hook's error is only printed; the next sweep retries
        pass
    _forked = True


def _forget_in_child() -> None:
    """In a forked child: its calls get a session of their own (call ids, cancel flags);
    it names itself in its parent's (announce_child), or in the one its parent was told of."""
    global _session, _session_lock, _parent_folder, _announced, _forked, _children_lock
    if _session is not None:
        _parent_folder = _session.path
    _session, _session_lock = None, threading.Lock()
    _announced, _forked, _children_lock = False, False, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_parent=_after_fork_in_parent, after_in_child=_forget_in_child)


def current_session() -> Session | None:
    """The session if one was made (never creates one just to look)."""
    return _session
