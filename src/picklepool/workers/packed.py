"""The worker's entry for a batch sent by loky: ``(fn, args)`` pickled by the parent.

Its own small module: it is what a new worker imports to unpickle its first job, and
what the parent imports to send one, before either needs the rest of ``workers``
(the batch runner, ``workers.runner``, is imported when the packed call is unpickled).
"""

from __future__ import annotations

import pickle
from typing import Any

from ..wire import unpack_batch


def run_packed(data: bytes) -> Any:
    """``fn(*args)`` of ``(fn, args)`` pickled by the parent with the standard pickler (loky).

    The parent pickles the envelope (a ``wire.Batch`` of bytes and tuples) in the
    calling thread with the C pickler, so loky's queue thread and this worker handle
    one bytes object instead of running cloudpickle over the envelope's classes:
    that thread's time is on the path of every call's first batch.
    """
    fn, args = pickle.loads(data)
    return fn(*args)


def run_packed_batch(packed: tuple[Any, ...]) -> Any:
    """``workers.runner.run_batch`` of a batch sent as ``wire.pack_batch`` made it."""
    from .runner import run_batch  # (imported with the first batch, as for run_batch itself)

    return run_batch(unpack_batch(packed))
