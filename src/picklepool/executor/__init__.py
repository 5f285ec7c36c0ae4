"""The parent side: ``Parallel``, its settings, dispatch, replies and the backends.

The data path, one direction each way, with no back and forth::

    Parallel.__call__(iterable of delayed calls)
      │ settings.resolve_settings      argument > parallel_config > env > default
      │ dispatch.Call.run              batches of (function, args, kwargs)
      │   functions.split / spec       distinct functions, each pickled once per call
      │   pickler.dumps (+ buffers)    large arrays to /dev/shm files, once per call
      │   (streaming.py: a large list  pickled into a socket while the worker
      │    for an idle worker)         unpickles it; small plain values: pickler.plain)
      ▼
    wire.Batch ──backend (loky | dask)──▶ worker: workers.runner.run_batch
      │  loky: one bytes object          mirror parent state, load, run, dumps
      │  (packed.run_packed); dask:      (dask: SharedState snapshots kept on the
      │  scattered blobs                  cluster per version, executor.kept)
      ▼
    reply bytes (or wire.Failure) ──▶ replies.ReplyReader.read ──▶ results in order
                                                               (or as completed)

After a small call (a batch per worker at most) on an idle loky pool, the next
small calls skip loky's queue threads: ``lanes.py`` writes their packed batch to a
worker's socket (a loky job, ``workers.lane.serve``) and a reader thread brings the
reply back; anything else gives the workers back to loky first.

In-process backends (threading, sequential) run ``workers.tasks.run_local`` on
the objects themselves: nothing is pickled. Nothing here is imported by a worker.

Its modules are imported as first used (``Parallel``, ``effective_n_jobs`` and
``shutdown`` here too): a first call starts its forkserver before most of them are
imported, and the two proceed together (``backends.prepare``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .. import settings
from .delayed import delayed

__all__ = ["Parallel", "delayed", "effective_n_jobs", "shutdown"]

_WHERE = {"Parallel": "parallel", "effective_n_jobs": "parallel", "shutdown": "backends"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


settings.warn_unknown_variables(2)  # (a typo such as PICKLEPOOL_PICKLR, once, as the front end loads)


if TYPE_CHECKING:
    from .backends import shutdown as shutdown
    from .parallel import Parallel as Parallel
    from .parallel import effective_n_jobs as effective_n_jobs
