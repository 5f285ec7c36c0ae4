"""A frame: one object as a pickle stream plus its out-of-band buffers, end to end.

    pickler.dumps(obj, buffer_callback) ──▶ stream + [PickleBuffer, ...]
    frame = head | stream | pad | buffer 0 | pad | buffer 1 | ...   (64-byte aligned)

``pack`` returns the frame as a list of pieces without copying the buffers (the
caller writes them to a file, or joins them while it still holds the lock that
keeps them from changing). ``unpack`` reads a frame from any buffer — an mmap of
a blob, a bytearray read from a file — and rebuilds the object with its arrays as
views into that buffer, so a large numpy array is never copied on the way in.
Used by ``SharedState`` snapshots and checkpoints.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

ALIGN = 64
MAGIC = b"PPFRAME1"
_HEAD = struct.Struct("<8sII")  # magic, number of out-of-band buffers, reserved


def pack(pickler: Any, obj: Any) -> list[Any]:
    """Serialise *obj* with *pickler* into frame pieces (bytes-like, not copied)."""
    buffers: list[pickle.PickleBuffer] = []
    stream = pickler.dumps(obj, buffer_callback=buffers.append)
    try:
        raws = [buf.raw() for buf in buffers]
    except BufferError:  # a non-contiguous buffer: send everything in-band instead
        stream, raws = pickler.dumps(obj), []
    lengths = [len(stream), *(raw.nbytes for raw in raws)]
    head = _HEAD.pack(MAGIC, len(raws), 0) + struct.pack(f"<{len(lengths)}Q", *lengths)
    pieces: list[Any] = [head]
    offset = len(head)
    for segment, size in zip([stream, *raws], lengths, strict=True):
        pad = -offset % ALIGN
        if pad:
            pieces.append(bytes(pad))
            offset += pad
        pieces.append(segment)
        offset += size
    return pieces


def size(pieces: list[Any]) -> int:
    """Total length in bytes of the pieces returned by :func:`pack`."""
    return sum(memoryview(p).nbytes for p in pieces)


def unpack(pickler: Any, data: Any) -> Any:
    """Rebuild the object of a frame; out-of-band buffers stay views into *data*.

    Arrays come back writable when *data* is writable (a bytearray, a copy-on-write
    mmap) and read-only otherwise.
    """
    segments = split(data)
    return pickler.loads(segments[0], buffers=segments[1:])


def split(data: Any) -> list[memoryview]:
    """The segments of a frame: the pickle stream, then each out-of-band buffer."""
    view = memoryview(data).cast("B")
    return [view[start : start + length] for start, length in layout(view)]


def layout(view: memoryview) -> list[tuple[int, int]]:
    """``(offset, length)`` of each segment of the frame in *view*."""
    if view.nbytes < _HEAD.size or bytes(view[:8]) != MAGIC:
        raise ValueError("not a picklepool frame (bad magic); the data is damaged or foreign")
    _, count, _ = _HEAD.unpack_from(view)
    lengths = struct.unpack_from(f"<{count + 1}Q", view, _HEAD.size)
    offset = _HEAD.size + 8 * (count + 1)
    spans = []
    for length in lengths:
        offset += -offset % ALIGN
        if offset + length > view.nbytes:
            raise ValueError(
                f"picklepool frame is truncated: needs {offset + length} bytes, has {view.nbytes}"
            )
        spans.append((offset, length))
        offset += length
    return spans
