"""Worker side of ``SharedState``: rebuild each snapshot once, keep it in the cache.

A task carries only a reference to its state's snapshot: the state's id, its
version, and where the frame is (see ``workers.blobs``: a file in the session
folder, bytes delivered with the batch by dask, or the bytes themselves when
the backend has no blob store). The first batch that needs a version keeps the
frame (:class:`Pristine`: the blob's open file, or the delivered bytes copied
into an in-memory file; small frames as bytes), maps it copy-on-write — large
arrays become views of the shared pages, writable, and a write copies only the
pages it touches — unpickles it once, and caches the rebuilt state in
``workers.cache.objects`` under ``("state", id, version)``. Later batches of any
call find it there.

Every task must see the parent's version, whatever the tasks before it on this
worker did. So the first time a task reaches the value, :class:`WorkerCopy`
asks ``workers.changes`` (exactly, without copying anything) whether an earlier
task changed it, and rebuilds a changed copy in place from the kept frame: a
task that only reads, even under ``with state``, costs that check and no
rebuild, and no task sees another's change, in the same batch or a later one.
When a newer version of the same state arrives the older one is dropped at
once; otherwise the cache's byte bound and LRU order decide.
"""

from __future__ import annotations

import mmap
import os
import weakref
from collections.abc import Callable
from typing import Any

from ..pickler import frames
from .blobs import BlobRef, read_blob
from .cache import objects
from .changes import Baseline, map_range
from .framefile import MEMFD_MIN, FrameFile, memfd_copy
from .tasks import current_task

# Per worker: the newest version of each state rebuilt here (state id -> version).
_newest: dict[str, int] = {}

# Per worker: how many of each parent's states gone this worker has heard of (``forget``).
_forgotten: dict[str, int] = {}

# Per worker: how many snapshots were rebuilt here (tests and ``picklepool info`` read it).
rebuilds = 0


Source = str | BlobRef | bytes | FrameFile  # where a snapshot frame is (see ``Pristine.of``)


def load(pickler: Any, source: Source) -> Any:
    """Rebuild the value of a snapshot frame: a blob path or reference, or the bytes."""
    return load_mapped(pickler, source)[0]


def load_mapped(pickler: Any, source: Source) -> tuple[Any, tuple[int, int] | None]:
    """The value of a snapshot frame, and the ``(address, length)`` of the map its arrays view.

    Bytes delivered with the batch (dask) are first copied into an in-memory file
    (``memfd_create``) and mapped the same way, so that ``workers.changes`` can tell
    a read from a write there too; a ``FrameFile`` (dask, a snapshot kept on the
    cluster) is such a file already. Where that is not available, or for small
    frames, the arrays are views of a private bytearray and the region is None.
    """
    pristine = Pristine.of(source)
    try:
        return pristine.load(pickler)
    finally:
        pristine.close()


class Pristine:
    """A snapshot's frame as this worker received it, kept to rebuild the value again.

    Large frames stay where they are, in a file: the blob (loky; the open file
    outlives the call that wrote it), the in-memory file of a ``FrameFile`` dask
    delivered (the same file dask keeps: not copied), or an in-memory file holding
    bytes delivered with the batch; the copy's arrays are copy-on-write views of
    that file already, so keeping it open costs no memory. Small frames (under
    ``MEMFD_MIN``, or without ``memfd_create``) are kept as bytes.
    """

    __slots__ = ("fd", "data", "length", "_closer", "__weakref__")

    def __init__(self, fd: int | None, data: bytes | None, length: int) -> None:
        self.fd, self.data, self.length = fd, data, length
        self._closer = weakref.finalize(self, os.close, fd) if fd is not None else None

    @classmethod
    def of(cls, where: Source) -> Pristine:
        """The frame *where* names (see ``workers.blobs``), kept as a file or bytes.

        Raises ``blobs.BlobMissing`` for a reference to data the batch did not bring.
        """
        source = read_blob(where) if isinstance(where, BlobRef) else where
        if isinstance(source, FrameFile):
            if source.fd is not None:
                return cls(os.dup(source.fd), None, source.nbytes)
            source = source.data if source.data is not None else b"".join(source.pieces or ())
        if isinstance(source, str):
            fd = os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                length = os.fstat(fd).st_size
                if length >= MEMFD_MIN:
                    return cls(os.dup(fd), None, length)
                return cls(None, _read_all(fd, length), length)
            finally:
                os.close(fd)
        if len(source) >= MEMFD_MIN and hasattr(os, "memfd_create"):
            return cls(memfd_copy([source]), None, len(source))
        return cls(None, bytes(source), len(source))

    def load(self, pickler: Any) -> tuple[Any, tuple[int, int] | None]:
        """A new value from the frame, and the region of the map its arrays view (or None)."""
        if self.fd is None:  # bytes are read-only: a private bytearray makes arrays writable
            assert self.data is not None
            return frames.unpack(pickler, bytearray(self.data)), None
        mapped = mmap.mmap(self.fd, self.length, access=mmap.ACCESS_COPY)
        return _unpickle_mapped(pickler, mapped)

    def close(self) -> None:
        if self._closer is not None:
            self._closer()


def _read_all(fd: int, length: int) -> bytes:
    chunks, done = [], 0
    while done < length:
        chunk = os.pread(fd, length - done, done)
        if not chunk:
            break
        chunks.append(chunk)
        done += len(chunk)
    return b"".join(chunks)


def _unpickle_mapped(pickler: Any, mapped: mmap.mmap) -> tuple[Any, tuple[int, int]]:
    view = memoryview(mapped)
    spans = frames.layout(view)
    stream, *buffers = (view[start : start + size] for start, size in spans)
    value = pickler.loads(stream, buffers=buffers)
    del stream, buffers, view
    _release(mapped, *spans[0])
    return value, map_range(mapped)


def _release(mapped: mmap.mmap, start: int, size: int) -> None:
    """Drop the pickle stream's pages from this worker's memory once it is read.

    The rebuilt arrays keep the map, and their own pages, alive; the stream's
    pages would otherwise stay resident with them for nothing.
    """
    if not hasattr(mapped, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return  # pragma: no cover - not on every platform
    page = mmap.PAGESIZE
    first = -(-start // page) * page  # only whole pages inside the stream
    last = (start + size) // page * page
    if last > first:
        mapped.madvise(mmap.MADV_DONTNEED, first, last - first)


class WorkerCopy:
    """What a worker's ``SharedState`` copy needs to give every task the parent's version.

    The copy calls :meth:`enter_task` whenever a task reaches its value (``with
    state``, ``state.value``, ``state.version``, ``state.set``). The first such call
    of each task (``workers.tasks.current_task``) checks whether an earlier task
    changed the value (``workers.changes``, exact, without copies; a value it
    cannot inspect counts as changed after any access by an earlier task) and if so
    rebuilds it in place from the frame this worker already holds
    (:class:`Pristine`): nothing is sent again. Later calls in the same task cost
    a comparison, so a task sees its own changes, and only its own.
    """

    __slots__ = ("pickler", "version", "baseline", "pristine", "mark")

    def __init__(self, pickler: Any, version: int, pristine: Pristine) -> None:
        self.pickler, self.version, self.pristine = pickler, version, pristine
        self.baseline: Baseline | None = None
        self.mark: tuple[int, int] | None = None  # None: built, nothing has run since

    def build(self) -> Any:
        """A new value from the frame; watches it. Counted in ``rebuilds``."""
        global rebuilds
        self.baseline = None  # it holds the old value's containers: let them go first
        value, region = self.pristine.load(self.pickler)
        self.baseline = Baseline.watch(value, region)
        self.mark = None
        rebuilds += 1
        return value

    def enter_task(self, state: Any) -> None:
        """Before a task reads *state*: put the parent's version back if another task changed it."""
        mark = current_task()
        if mark == self.mark:
            return
        fresh, self.mark = self.mark is None, mark
        if fresh:
            return
        baseline = self.baseline
        # A value the check cannot inspect is never trusted: any access by an earlier
        # task (through ``value`` it may have changed anything) means a rebuilt copy.
        if baseline is not None and state._version == self.version and not baseline.changed():
            return
        with state._lock:
            state._value = None  # drop the changed value first: one copy at a time
            state._value = self.build()
            state._version = self.version
            self.mark = mark


def forget(sender: str, count: int, uids: tuple[str, ...], only_these: bool = False) -> None:
    """The parent *sender* garbage-collected *count* states sent to workers so far, the last
    ones *uids* (``wire.Batch.states_gone``): drop this worker's copies of those it has not
    dropped yet.

    A copy holds its snapshot's open file (memory in ``/dev/shm`` that no listing shows) and
    the rebuilt value; no later batch can name a state that is gone. When more went since
    this worker's last batch than *uids* lists, every copy goes (the states still in use
    are rebuilt by the next batch that needs them), unless *only_these*: a cluster's worker
    holds other programs' states too, which then stay to the cache's bound.
    """
    new = count - _forgotten.get(sender, 0)
    if new <= 0:
        return
    _forgotten[sender] = count
    if new > len(uids) and not only_these:
        drop = set(_newest)
        _newest.clear()
    else:
        drop = set(uids[-new:])
        for uid in drop:
            _newest.pop(uid, None)
    for key in objects.keys():
        if type(key) is tuple and len(key) == 3 and key[0] == "state" and key[1] in drop:
            objects.discard(key)


def rebuild(
    uid: str,
    version: int,
    nbytes: int,
    cache_bytes: int | None,
    build: Callable[[], Any],
) -> Any:
    """The worker's copy of state *uid* at *version*, built at most once per version.

    *build* returns a fresh ``SharedState`` (with a :class:`WorkerCopy`). The copy
    is kept as it is: whether a task changed it is checked when the next task
    reaches its value (:meth:`WorkerCopy.enter_task`), not here.
    """
    if cache_bytes is not None and cache_bytes != objects.max_bytes:
        objects.resize(cache_bytes)
    previous = _newest.get(uid)
    if previous is None or previous < version:
        if previous is not None:  # dropped before the new one is built: one copy at a time
            objects.discard(("state", uid, previous))
        _newest[uid] = version
    return objects.get_or_build(("state", uid, version), nbytes, build)
