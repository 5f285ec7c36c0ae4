"""What a reducer may know about the call it is pickling for.

While the parent serialises a call's tasks, ``current()`` returns the call's
context: its pickler and its *blob store*, where a reducer can put data once per
call (a ``SharedState`` snapshot, a large buffer) and send only a reference in
each task. Outside a call (plain ``pickle.dumps``, or inside a worker) it is
None and reducers fall back to sending everything inline.

    ref = ctx.put_blob(key, data)      parent, while pickling: once per call
    -> tasks carry ref (small)
    workers.blobs.read_blob(ref)       worker, while unpickling: the bytes

The store depends on the backend: loky writes a file in the session folder in
/dev/shm (the reference is its path); dask scatters the bytes to the cluster once
(the reference is a ``workers.blobs.BlobRef``, and each batch carries the call's
scattered futures, which dask resolves on the worker). In-process backends have
no store: ``put_blob`` returns None and the value is pickled inline.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


class BlobStore(Protocol):
    """Where a backend keeps the data a call sends once."""

    def put(self, key: str, data: bytes | list[Any]) -> Any:
        """Store *data* (bytes, or bytes-like pieces to be concatenated) under *key*.

        Once: later puts of the key are free. Returns its reference.
        """

    def drop(self, key: str) -> None:
        """Forget *key*: the call is over."""

    def attachment(self) -> Any:
        """What every batch carries so that workers can read references (None for files)."""


class SessionStore:
    """Blobs as files in the parent's session folder; the reference is the path."""

    def __init__(self, session: Any, owner: Any) -> None:
        self.session = session
        self.owner = owner  # the call: calls sending the same content share one file

    def put(self, key: str, data: bytes | list[Any]) -> str:
        return self.session.write_blob(key, data, self.owner)  # type: ignore[no-any-return]

    def drop(self, key: str) -> None:
        self.session.drop_blob(key, self.owner)

    def attachment(self) -> None:
        return None


@dataclass
class CallContext:
    pickler: Any
    session: Any | None  # workers.control.Session, or None (in-process backends, dask)
    store: BlobStore | None = None  # None: the session's files, if there is a session
    blobs: list[str] = field(default_factory=list)  # keys to drop when the call ends
    memo: dict[Any, Any] = field(default_factory=dict)  # per-call cache for reducers

    def __post_init__(self) -> None:
        if self.store is None and self.session is not None:
            self.store = SessionStore(self.session, id(self))

    def put_blob(self, key: str, data: bytes | list[Any]) -> Any:
        """Send *data* (bytes, or pieces to concatenate) once for this call.

        Returns a reference for ``workers.blobs.read_blob``, or None without a store.
        """
        if self.store is None:
            return None
        ref = self.store.put(key, data)
        if key not in self.blobs:
            self.blobs.append(key)
        return ref

    def attachment(self) -> Any:
        """What each batch carries for the workers to read this call's blobs."""
        return self.store.attachment() if self.store is not None else None

    def close(self) -> None:
        """The call is over: drop its blobs."""
        keys, self.blobs = self.blobs, []
        if self.store is not None:
            for key in keys:
                self.store.drop(key)


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("picklepool_call", default=None)


def current() -> CallContext | None:
    return _current.get()


@contextlib.contextmanager
def active(ctx: CallContext) -> Iterator[CallContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
