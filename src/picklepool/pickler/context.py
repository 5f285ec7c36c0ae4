"""What a reducer may know about the call it is pickling for.

While the parent serialises a call's tasks, ``current()`` returns the call's
context: its pickler and its session folder, where a reducer can write data once
per call (a ``SharedState`` snapshot, a large buffer) and send only a reference
in each task. Outside a call (plain ``pickle.dumps``, or inside a worker) it is
None and reducers fall back to sending everything inline.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallContext:
    pickler: Any
    session: Any | None  # workers.control.Session, or None for in-process backends
    blobs: list[str] = field(default_factory=list)  # keys to drop when the call ends
    memo: dict[Any, Any] = field(default_factory=dict)  # per-call cache for reducers

    def write_blob(self, key: str, data: bytes) -> str | None:
        """Write *data* once for this call; the path workers read, or None."""
        if self.session is None:
            return None
        path: str = self.session.write_blob(key, data)
        if key not in self.blobs:
            self.blobs.append(key)
        return path


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
