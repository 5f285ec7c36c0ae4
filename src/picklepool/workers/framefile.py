"""A snapshot frame that dask keeps in a worker as an in-memory file, not as bytes.

A ``SharedState`` snapshot stays on a dask cluster as long as its version is
current (``executor.kept``). Scattered as plain bytes, a worker would hold it
twice: dask's bytes, plus the in-memory file ``workers.snapshots`` copies them
into so that the rebuilt arrays are copy-on-write views it can check for
writes. A :class:`FrameFile` is that file from the start:

    parent   FrameFile.of_pieces(frame pieces) ──pickle protocol 5──▶ the pieces
             as out-of-band buffers (no join of the frame; dask sends each as is)
    worker   _frame_file(size, *buffers) ──▶ written once into ``memfd_create``;
             dask's store holds the FrameFile (its descriptor), and
             ``snapshots.Pristine`` maps the same file (``os.dup``): one copy
    dask     moving it to another worker, or spilling it: pickled again as one
             out-of-band buffer, a read-only map of the file

Where ``memfd_create`` is missing (not Linux) or the frame is small, the worker
keeps the frame as bytes instead (:attr:`FrameFile.data`).
"""

from __future__ import annotations

import mmap
import os
import pickle
import weakref
from typing import Any

MEMFD_MIN = 1 << 20  # frames from this size on are kept in an in-memory file (bytes)


def memfd_copy(pieces: Any) -> int:
    """An in-memory file holding the bytes-like *pieces* one after the other: its descriptor.

    Raises ``OSError`` (the file is closed again) when it cannot be written.
    """
    fd = os.memfd_create("picklepool-state", os.MFD_CLOEXEC)
    try:
        for piece in pieces:
            view, done = memoryview(piece).cast("B"), 0
            while done < len(view):
                done += os.write(fd, view[done:])
    except BaseException:
        os.close(fd)
        raise
    return fd


class FrameFile:
    """A frame (``pickler.frames``) of *nbytes* bytes: pieces in the parent, a file in a worker.

    Exactly one of ``pieces`` (parent: the frame's bytes-like pieces, not copied),
    ``fd`` (worker: an in-memory file) and ``data`` (worker: bytes) is set.
    ``sys.getsizeof`` gives *nbytes*, which dask uses to account for its memory.
    """

    __slots__ = ("nbytes", "pieces", "fd", "data", "_closer", "__weakref__")

    def __init__(self, nbytes: int, pieces: list[Any] | None, fd: int | None, data: bytes | None) -> None:
        self.nbytes, self.pieces, self.fd, self.data = nbytes, pieces, fd, data
        self._closer = weakref.finalize(self, os.close, fd) if fd is not None else None

    @classmethod
    def of_pieces(cls, pieces: list[Any]) -> FrameFile:
        """The parent's side: wraps *pieces* (they must not change until it is pickled)."""
        return cls(sum(memoryview(p).nbytes for p in pieces), pieces, None, None)

    def settled(self) -> FrameFile:
        """The worker's form of this frame (its own in-memory file, or bytes): a copy of the pieces.

        For dask's scatter from inside a worker, which keeps the very object
        instead of pickling it: the pieces are views of a live value.
        """
        if self.pieces is None:
            return self
        return _frame_file(self.nbytes, *self.pieces)

    def __sizeof__(self) -> int:
        return self.nbytes

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        if self.pieces is not None:
            parts: list[Any] = list(self.pieces)
        elif self.fd is not None:
            parts = [mmap.mmap(self.fd, self.nbytes, access=mmap.ACCESS_READ)] if self.nbytes else []
        else:
            parts = [self.data or b""]
        if isinstance(protocol, int) and protocol >= 5:
            return (_frame_file, (self.nbytes, *(pickle.PickleBuffer(p) for p in parts)))
        return (_frame_file, (self.nbytes, b"".join(bytes(memoryview(p)) for p in parts)))

    def __repr__(self) -> str:
        where = "pieces" if self.pieces is not None else "file" if self.fd is not None else "bytes"
        return f"<FrameFile {self.nbytes} bytes ({where})>"


def _frame_file(nbytes: int, *parts: Any) -> FrameFile:
    """Unpickling side of :class:`FrameFile`: the frame written into an in-memory file."""
    if nbytes >= MEMFD_MIN and hasattr(os, "memfd_create"):
        return FrameFile(nbytes, None, memfd_copy(parts), None)
    return FrameFile(nbytes, None, None, b"".join(bytes(memoryview(p)) for p in parts))
