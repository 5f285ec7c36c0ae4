"""Blobs: data sent once per call and read by reference in the workers.

The parent puts a large serialised function, a ``SharedState`` snapshot or a large
buffer once per call with ``pickler.context.CallContext.put_blob(key, data)``,
which returns a small *reference*; tasks carry only the reference, and code in the
worker (a rebuild function called by the unpickler) reads the bytes with
:func:`read_blob`. A reference is one of:

    str path         a file in the parent's session folder (loky, one machine)
    BlobRef(key, n)  data the dask scheduler delivered to the worker along with
                     the batch (scattered to the cluster once per call, or kept
                     there across calls: ``executor.kept``); the batch runner
                     makes them visible with :func:`attached`

Rebuilt objects should be cached by key in ``workers.cache.objects``, so that each
worker rebuilds a blob once, not once per batch. A batch on dask does not carry
the data kept across calls (the workers have rebuilt it already); a worker that
has not reads a reference to it as missing, and :func:`collecting_missing` lets
the dask entry point answer ``MissingBlobs`` instead, so that the parent sends
that batch again with the data, to this worker.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple


class BlobRef(NamedTuple):
    """Names bytes that travel with the batch (dask), by the key they were put under."""

    key: str
    nbytes: int


class MissingBlobs(NamedTuple):
    """A dask batch's answer when it needs data it was not sent: send it again with these.

    *keys*: the references it could not read; *worker*: the address of the dask
    worker that ran it (None if unknown), where the data should go.
    """

    keys: tuple[str, ...]
    worker: str | None


class BlobMissing(LookupError):
    """A reference to data that was not delivered with the batch (see :func:`read_blob`)."""


_attached: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "picklepool_blobs", default=None
)
_missing: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "picklepool_missing", default=None
)


@contextlib.contextmanager
def collecting_missing(keys: list[str]) -> Iterator[None]:
    """While the block runs, :func:`read_blob` appends to *keys* each reference it misses."""
    token = _missing.set(keys)
    try:
        yield
    finally:
        _missing.reset(token)


@contextlib.contextmanager
def attached(blobs: Mapping[str, Any] | None) -> Iterator[None]:
    """Make the blobs delivered with a batch readable by :func:`read_blob` (:func:`attach`)."""
    token = attach(blobs)
    try:
        yield
    finally:
        detach(token)


def attach(blobs: Mapping[str, Any] | None) -> Any:
    """Make *blobs* readable by :func:`read_blob`; the token for :func:`detach`, or None
    when there is nothing to change (no blobs, and none visible already: a loky batch's)."""
    if blobs is None and _attached.get() is None:
        return None
    return _attached.set(blobs)


def detach(token: Any) -> None:
    """Undo :func:`attach`."""
    if token is not None:
        _attached.reset(token)


def read_blob(ref: str | BlobRef) -> Any:
    """The data a reference names (see the module docstring): bytes, or a ``FrameFile``.

    Raises :class:`BlobMissing` for a ``BlobRef`` whose data the batch did not bring.
    """
    if isinstance(ref, BlobRef):
        blobs = _attached.get()
        if blobs is None or ref.key not in blobs:
            missing = _missing.get()
            if missing is not None:
                missing.append(ref.key)
            raise BlobMissing(
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
