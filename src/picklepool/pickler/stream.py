"""A batch's pickle stream through a local socket, read while it is written.

One task with a large list argument spends most of its time being pickled in the
parent and unpickled in the worker, one after the other. A *streamed* batch
overlaps the two::

    parent (executor.streaming)                      worker (workers.streams)
    listen on <call folder>/s-<n>
    submit wire.Batch(tasks=Frames(StreamRef(path)))  ──▶ run_batch: connect(path)
    accept ◀──────────────────────────────────────────────┘
    pickler.dump(batch, writer) ── 64 KB pickle frames ──▶ pickler.load(reader) unpickles
      each frame sent as the pickler writes it               each frame as it arrives

Both sides use the call's pickler (``BasePickler.dump``/``load``): the bytes are
exactly those of ``pickler.dumps``, only cut into messages. A message is a
:data:`HEADER` (kind, length) and its payload:

    DATA    pickle bytes, in order
    BUFFER  ``"<nbytes> <path>"``: the next out-of-band buffer is that file
            (``pickler.buffers``), sent before the pickle data that uses it

The socket file is removed once the worker is connected, or when the parent
gives up; it lives in the call folder, which the call's end removes in any case.
A worker that dies mid-stream breaks the parent's send (the parent stops and the
batch's future reports the crash); a parent that dies or gives up mid-stream
closes the socket, and the worker's unpickler fails on the truncated stream.

This module holds what both sides share; it imports nothing of picklepool.
"""

from __future__ import annotations

import struct
from typing import Any

HEADER = struct.Struct("<cQ")  # kind, payload length in bytes
DATA = b"D"
BUFFER = b"B"


class StreamRef:
    """In ``Frames.data`` of a streamed batch: where its worker connects to read it.

    ``path`` is an ``AF_UNIX`` socket in the call folder. In the worker, the
    loader records the out-of-band buffer files it was told about in ``refs``
    (for error notes, like ``Frames.refs``).
    """

    __slots__ = ("path", "refs")

    def __init__(self, path: str) -> None:
        self.path = path
        self.refs: list[tuple[str, int]] = []

    def __reduce__(self) -> tuple[Any, ...]:
        return StreamRef, (self.path,)

    def __repr__(self) -> str:
        return f"StreamRef({self.path!r})"


def encode_buffer(path: str, nbytes: int) -> bytes:
    """The payload of a BUFFER message."""
    return f"{nbytes} {path}".encode()


def decode_buffer(payload: bytes) -> tuple[str, int]:
    """``(path, nbytes)`` from a BUFFER message's payload."""
    size, _, path = payload.decode().partition(" ")
    return path, int(size)


# Which batches are "large-argument" batches, for both sides: the parent streams them
# (executor.streaming), the worker keeps their memory warm (workers.warmheap).
MIN_ITEMS = 50_000  # items of a container argument (measured: below, streaming loses)
MAX_TASKS = 4  # batches of more tasks are pipelined by batching already


def argument_values(args: Any, kwargs: Any, single_arg: bool = False) -> list[Any]:
    """Every argument value of a batch's columns: *args* (argument tuples, or single
    arguments with *single_arg*) and *kwargs* (keyword dicts, or None). Items that are
    not calls are skipped (the worker reports them)."""
    values = list(args) if single_arg else [a for task in args if type(task) is tuple for a in task]
    if kwargs is not None:
        values.extend(v for kw in kwargs if type(kw) is dict for v in kw.values())
    return values
