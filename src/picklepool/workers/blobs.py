"""Blobs: data sent once per call and read by reference in the workers.

The parent puts a large serialised function, a ``SharedState`` snapshot or a large
buffer once per call with ``pickler.context.CallContext.put_blob(key, data)``,
which returns a small *reference*; tasks carry only the reference, and code in the
worker (a rebuild function called by the unpickler) reads the bytes with
:func:`read_blob`. A reference is one of:

    str path         a file in the parent's session folder (loky, one machine)
    BlobRef(key, n)  bytes the dask scheduler delivered to the worker along with
                     the batch (scattered to the cluster once per call); the
                     batch runner makes them visible with :func:`attached`

Rebuilt objects should be cached by key in ``workers.cache.objects``, so that each
worker rebuilds a blob once, not once per batch.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from typing import NamedTuple


class BlobRef(NamedTuple):
    """Names bytes that travel with the batch (dask), by the key they were put under."""

    key: str
    nbytes: int


_attached: contextvars.ContextVar[Mapping[str, bytes] | None] = contextvars.ContextVar(
    "picklepool_blobs", default=None
)


@contextlib.contextmanager
def attached(blobs: Mapping[str, bytes] | None) -> Iterator[None]:
    """Make the blobs delivered with a batch readable by :func:`read_blob`."""
    token = _attached.set(blobs)
    try:
        yield
    finally:
        _attached.reset(token)


def read_blob(ref: str | BlobRef) -> bytes:
    """The bytes a reference names (see the module docstring)."""
    if isinstance(ref, BlobRef):
        blobs = _attached.get()
        if blobs is None or ref.key not in blobs:
            raise LookupError(
                f"blob {ref.key!r} ({ref.nbytes} bytes) was not delivered with this batch; "
                "a BlobRef can only be read while the batch that carries it is being loaded"
            )
        return blobs[ref.key]
    with open(ref, "rb") as f:
        return f.read()


def blob_size(ref: str | BlobRef) -> int:
    """Size in bytes of the data a reference names, without reading it."""
    if isinstance(ref, BlobRef):
        return ref.nbytes
    return os.path.getsize(ref)
