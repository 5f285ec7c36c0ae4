"""Worker side of ``SharedState``: rebuild each snapshot once, keep it in the cache.

A task carries only a reference to its state's snapshot: the state's id, its
version, and where the frame is (see ``workers.blobs``: a file in the session
folder, bytes delivered with the batch by dask, or the bytes themselves when
the backend has no blob store). The first batch that needs a version maps a
file blob copy-on-write — large arrays become views of the shared
pages, writable, and a write copies only the pages it touches — unpickles it
once, and caches the rebuilt state in ``workers.cache.objects`` under
``("state", id, version)``. Later batches of any call find it there, unless a
task changed it: ``workers.changes`` tells (exactly, without copying anything), and
a changed copy is rebuilt from the snapshot, so a task that only reads, even under
``with state``, costs nothing after the first rebuild, and no batch sees another's
change. When a newer version of the same state arrives the older one is dropped
at once; otherwise the cache's byte bound and LRU order decide.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable
from typing import Any

from ..pickler import frames
from .blobs import BlobRef, read_blob
from .cache import objects
from .changes import map_range

# Per worker: the newest version of each state rebuilt here (state id -> version).
_newest: dict[str, int] = {}

# Per worker: how many snapshots were rebuilt here (tests and ``picklepool info`` read it).
rebuilds = 0


def load(pickler: Any, source: str | BlobRef | bytes) -> Any:
    """Rebuild the value of a snapshot frame: a blob path or reference, or the bytes."""
    return load_mapped(pickler, source)[0]


def load_mapped(pickler: Any, source: str | BlobRef | bytes) -> tuple[Any, tuple[int, int] | None]:
    """The value of a snapshot frame, and the ``(address, length)`` of the map its arrays view.

    Bytes delivered with the batch (dask) are first copied into an in-memory file
    (``memfd_create``) and mapped the same way, so that ``workers.changes`` can tell
    a read from a write there too; where that is not available, or for small
    frames, the arrays are views of a private bytearray and the region is None.
    """
    if isinstance(source, BlobRef):
        source = read_blob(source)
    if isinstance(source, str):
        with open(source, "rb") as f:
            length = os.fstat(f.fileno()).st_size
            mapped = mmap.mmap(f.fileno(), length, access=mmap.ACCESS_COPY)
    elif len(source) >= MEMFD_MIN and hasattr(os, "memfd_create"):
        mapped = _memfd_copy(source)
    else:
        # Bytes are read-only; a private bytearray makes the rebuilt arrays writable.
        return frames.unpack(pickler, bytearray(source)), None
    view = memoryview(mapped)
    spans = frames.layout(view)
    stream, *buffers = (view[start : start + size] for start, size in spans)
    value = pickler.loads(stream, buffers=buffers)
    del stream, buffers, view
    _release(mapped, *spans[0])
    return value, map_range(mapped)


MEMFD_MIN = 1 << 20  # frames from this size on are mapped from an in-memory file


def _memfd_copy(data: Any) -> mmap.mmap:
    """A private, copy-on-write map of an in-memory file holding *data*."""
    fd = os.memfd_create("picklepool-state", os.MFD_CLOEXEC)
    try:
        view, done = memoryview(data), 0
        while done < len(view):
            done += os.write(fd, view[done:])
        return mmap.mmap(fd, len(view), access=mmap.ACCESS_COPY)
    finally:
        os.close(fd)


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


def rebuild(
    uid: str,
    version: int,
    nbytes: int,
    cache_bytes: int | None,
    build: Callable[[], Any],
) -> Any:
    """The worker's copy of state *uid* at *version*, built at most once per version.

    *build* returns a fresh ``SharedState``. If a task changed the cached copy
    (``SharedState._changed_since_built``), the copy is rebuilt from the snapshot
    so that later batches see what the parent sent.
    """
    built: list[Any] = []

    def counted() -> Any:
        global rebuilds
        state = build()
        rebuilds += 1
        built.append(state)
        return state

    if cache_bytes is not None and cache_bytes != objects.max_bytes:
        objects.resize(cache_bytes)
    previous = _newest.get(uid)
    if previous is None or previous < version:
        if previous is not None:  # dropped before the new one is built: one copy at a time
            objects.discard(("state", uid, previous))
        _newest[uid] = version
    key = ("state", uid, version)
    state = objects.get_or_build(key, nbytes, counted)
    if not built and state._changed_since_built(version):
        objects.discard(key)
        state = objects.get_or_build(key, nbytes, counted)
    return state
