"""Data kept on a dask cluster across calls: one ``SharedState`` snapshot per state.

A state's snapshot is the same bytes for as long as its version does not move,
so sending it again with every call (48 MB for the bench's value: ~90 ms to
scatter it and ~90 ms more for each other worker to fetch it) buys nothing.
Per client, :class:`KeptBlobs` holds one scattered snapshot per state (its
*family*, the state's id):

    call 1   SharedState.__reduce__ ──▶ CallContext.keep_blob ──▶ not kept: pack,
             scatter once (a ``workers.framefile.FrameFile``: no join) ──▶ kept
    call n   same version: kept ──▶ nothing is packed or sent; tasks carry the
             reference, and each worker finds its rebuilt copy in its cache
    worker without the copy (new, restarted, evicted): its batch answers
             ``MissingBlobs`` ──▶ sent again with the data, to that worker
    version moves on ──▶ the next call scatters the new one; the old one is
             released as soon as no running call uses it
    state garbage-collected, client closed, ``picklepool.shutdown()``, exit ──▶ released
             (at exit before dask's own handlers close a cluster: :func:`hook_exit`)

Batches do not carry the kept data (only the resent ones do), so the scheduler
spreads them over the workers instead of sending them all to the one holding a
large dependency. If the worker holding the only copy dies, the snapshot is
packed and scattered again from the state, under its lock, provided its version
has not moved on; otherwise the batches that still need that old version fail
with ``WorkerCrashedError``.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import threading
import time
import weakref
from typing import Any

from ..forklocks import renew_in_child
from ..pickler.context import Make
from ..workers.framefile import FrameFile


class Kept:
    """One snapshot on the cluster: its key, scattered future and size; who uses it."""

    __slots__ = ("key", "family", "future", "nbytes", "make", "users", "current")

    def __init__(self, key: str, family: str, future: Any, nbytes: int, make: Make) -> None:
        self.key, self.family, self.future, self.nbytes, self.make = key, family, future, nbytes, make
        self.users = 0  # calls holding it (``checkout`` .. ``checkin``)
        self.current = True  # False once superseded or forgotten: released when unused


class KeptBlobs:
    """The snapshots kept on one client's cluster (see the module docstring). Thread-safe."""

    def __init__(self, client: Any) -> None:
        self._client = weakref.ref(client)  # weak: the registry must not keep a client alive
        self._by_family: dict[str, Kept] = {}
        self._by_key: dict[str, Kept] = {}  # current ones and superseded ones still in use
        self._watched: set[str] = set()  # families whose owner has a finalizer
        # families whose owner is gone, not yet released: a finalizer may run in a thread that
        # holds a lock releasing takes (a collection inside such a block): it only notes them
        self._gone: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()

    def checkout(self, key: str, family: str, owner: Any, make: Make) -> Kept:
        """The kept snapshot *key* for a call (scattered now if needed); pair with :meth:`checkin`.

        *owner* (weak-referenceable) bounds its life; *make* returns the frame's
        pieces, called with the owner's lock held (as the caller of this method
        does). A newer *key* of the same *family* supersedes the older one.
        Raises what scattering raises (``OSError`` when the cluster is gone).
        """
        self.take_gone()
        with self._lock:
            kept = self._by_key.get(key)
            if kept is not None and kept.current and _alive(kept.future):
                kept.users += 1
                return kept
        pieces = make()
        if pieces is None:
            raise LookupError(f"the snapshot {key!r} cannot be made again")
        frame = FrameFile.of_pieces(pieces)
        future = self._scatter(frame)
        fresh = Kept(key, family, future, frame.nbytes, make)
        fresh.users = 1
        release: list[Any] = []
        with self._lock:
            old = self._by_family.get(family)
            if old is not None:
                old.current = False
                if old.users == 0:
                    self._by_key.pop(old.key, None)
                    release.append(old.future)
            self._by_family[family] = self._by_key[key] = fresh
            watch = family not in self._watched
            self._watched.add(family)
        if watch:
            weakref.finalize(owner, self._owner_gone, family)
        _release(release)
        return fresh

    def checkin(self, kept: Kept) -> None:
        """A call is done with *kept*: released now if it is no longer current."""
        self.take_gone()
        release: list[Any] = []
        with self._lock:
            kept.users -= 1
            if kept.users <= 0 and not kept.current:
                if self._by_key.get(kept.key) is kept:
                    del self._by_key[kept.key]
                release.append(kept.future)
        _release(release)

    def futures(self, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """The scattered futures of *keys*, restoring lost ones; None if one is unknown or gone."""
        out = {}
        for key in keys:
            with self._lock:
                kept = self._by_key.get(key)
            if kept is None or not self.restore(kept):
                return None
            out[key] = kept.future
        return out

    def restore(self, kept: Kept) -> bool:
        """Scatter *kept* again if the cluster lost it; False if it cannot be made again."""
        with self._lock:
            if _alive(kept.future):
                return True
        pieces = kept.make()
        if pieces is None:
            return False
        future = self._scatter(FrameFile.of_pieces(pieces))
        with self._lock:
            old, kept.future = kept.future, future
        _release([old])
        return True

    def _owner_gone(self, family: str) -> None:
        """*family*'s owner was garbage-collected: released now if no thread holds a lock
        that releasing takes (this one may: the finalizer runs where a collection happens),
        else by the next ``checkout`` or ``checkin``."""
        self._gone.append(family)
        if _idle(self._lock) and _idle(_registries_lock):
            self.take_gone()

    def take_gone(self) -> None:
        """Release the snapshots of the owners gone since (:meth:`_owner_gone`)."""
        while True:
            try:
                family = self._gone.popleft()
            except IndexError:
                return
            self.forget(family)

    def forget(self, family: str) -> None:
        """The owner of *family* is gone: release its snapshot once no call uses it."""
        with self._lock:
            self._watched.discard(family)
        self._drop(family)

    def _drop(self, family: str) -> None:
        release: list[Any] = []
        with self._lock:
            kept = self._by_family.pop(family, None)
            if kept is not None:
                kept.current = False
                if kept.users == 0:
                    self._by_key.pop(kept.key, None)
                    release.append(kept.future)
        _release(release)

    def release_all(self) -> None:
        """Release every snapshot no call uses (``picklepool.shutdown``); in use: at checkin."""
        with self._lock:
            families = list(self._by_family)
        for family in families:
            self._drop(family)

    def keys(self) -> list[str]:
        """The keys kept now, current or still in use (for tests)."""
        with self._lock:
            return list(self._by_key)

    def _scatter(self, frame: FrameFile) -> Any:
        client = self._client()
        if client is None:
            raise RuntimeError("the dask client of these kept snapshots is gone")
        if _in_worker():  # dask keeps the object itself there, unpickled: no views of live data
            frame = frame.settled()
        [future] = client.scatter([frame], hash=False)
        return future


def _in_worker() -> bool:
    """Whether this thread runs a dask task (a call made inside a task)."""
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def _idle(lock: Any) -> bool:
    """Whether no thread holds *lock* (this instant)."""
    if not lock.acquire(blocking=False):
        return False
    lock.release()
    return True


def _alive(future: Any) -> bool:
    return future is not None and future.status == "finished"


def _release(futures: list[Any]) -> None:
    for future in futures:
        release(future)


# Keys picklepool let go of lately, per client: the exit handler waits for the scheduler to
# drop them. A key whose release is still on its way when dask's own exit handler closes
# the cluster is logged as lost ("Removing worker ... caused the cluster to lose scattered
# data", an ERROR; a WARNING for a batch's reply), though nothing was.
_let_go: weakref.WeakKeyDictionary[Any, collections.deque[str]] = weakref.WeakKeyDictionary()
_exit_hooked = False
EXIT_WAIT = 2.0  # seconds the exit handler waits at most for the scheduler


def release(future: Any) -> None:
    """Release a dask future of picklepool's (a batch, a call's scattered data, a snapshot)."""
    client = getattr(future, "client", None)
    with contextlib.suppress(RuntimeError):  # the client's loop is closed: nothing to release
        future.release()
        if client is not None:
            with _registries_lock:
                _let_go.setdefault(client, collections.deque(maxlen=1024)).append(future.key)


def hook_exit() -> None:
    """Once distributed is imported: let go of the cluster's data before its exit handlers.

    ``atexit`` runs the handlers last registered first: registered after distributed's
    (``close_clusters``, ``_close_global_client``), this one runs before them.
    """
    global _exit_hooked
    with _registries_lock:
        if _exit_hooked:
            return
        _exit_hooked = True
    with contextlib.suppress(RuntimeError):  # "can't register atexit after shutdown"
        atexit.register(_let_go_at_exit)


async def _loop_turn() -> None:
    """Run on the client's loop after the callbacks queued before it (``Client.sync``)."""


def _let_go_at_exit() -> None:
    """Release the kept snapshots; wait (a little) until the scheduler dropped what was released."""
    release_all()
    with _registries_lock:
        pending = [(client, set(keys)) for client, keys in _let_go.items()]
        _let_go.clear()
    deadline = time.monotonic() + EXIT_WAIT
    for client, keys in pending:
        if client.status != "running" or client.asynchronous:
            continue
        try:  # Future.release() hands the client's loop a callback: let those run first
            client.sync(_loop_turn, callback_timeout=EXIT_WAIT)
        except Exception:  # noqa: BLE001 - exiting: the client's loop is gone, nothing to wait for
            continue
        while time.monotonic() < deadline:
            try:
                keys -= set(client.futures)  # held again (a call still running): not waited for
                on_cluster = {k for held in client.has_what().values() for k in held}
            except Exception:  # noqa: BLE001 - exiting: the scheduler is gone, nothing to wait for
                break
            if not keys & on_cluster:
                break
            time.sleep(0.01)


# Per client, its kept snapshots; clients closed since are dropped at the next look-up.
_registries: weakref.WeakKeyDictionary[Any, KeptBlobs] = weakref.WeakKeyDictionary()
# Re-entrant: a blob released from a weakref callback (an argument array collected) may run
# in a thread inside a block holding it (a collection at any allocation there)
_registries_lock = threading.RLock()
renew_in_child(globals(), "_registries_lock", threading.RLock)  # (held at a fork: held for ever in the child)


def kept_for(client: Any) -> KeptBlobs:
    """The kept snapshots of *client*'s cluster."""
    with _registries_lock:
        for other in [c for c in _registries if c is not client and c.status in ("closing", "closed")]:
            del _registries[other]  # its futures are gone with it
        registry = _registries.get(client)
        if registry is None:
            registry = _registries[client] = KeptBlobs(client)
        return registry


def release_all() -> None:
    """Release every kept snapshot not in use by a running call, on every client."""
    with _registries_lock:
        registries = list(_registries.values())
    for registry in registries:
        registry.release_all()
