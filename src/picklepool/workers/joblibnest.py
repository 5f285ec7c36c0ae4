"""joblib code inside a task nests as it would inside a joblib worker.

A task that calls ``joblib.Parallel`` (directly, or through scikit-learn's
``n_jobs=-1``) inside a picklepool worker or a thread of the threading backend gets
what joblib's own ``BatchedCalls`` gives its tasks: ``joblib.parallel_config(backend=
ThreadingBackend(nesting_level=1), n_jobs=None)`` at level 1, a ``SequentialBackend``
below, instead of a new joblib loky pool of every core in each worker.

Free when the task never uses joblib: :func:`enter` looks joblib up in
``sys.modules`` and imports nothing. joblib imported by the task's own body (not by
unpickling its function) is framed from the next batch on.
"""

from __future__ import annotations

import sys
from typing import Any

from ..settings import nested_backend
from . import mirror


def enter() -> Any:
    """Enter joblib's nested config for this batch's tasks; the token for :func:`leave`, or None.

    None (nothing entered) when joblib is not loaded here or this is not a worker.
    """
    if "joblib.parallel" not in sys.modules:
        return None
    depth = mirror.nesting()[0]
    name = nested_backend(depth)
    if name is None:
        return None
    from joblib import parallel_config
    from joblib._parallel_backends import SequentialBackend, ThreadingBackend

    cls = ThreadingBackend if name == "threading" else SequentialBackend
    config = parallel_config(backend=cls(nesting_level=depth), n_jobs=None)
    config.__enter__()
    return config


def leave(config: Any) -> None:
    """Leave what :func:`enter` entered (restores joblib's config of this thread)."""
    if config is not None:
        config.__exit__(None, None, None)
