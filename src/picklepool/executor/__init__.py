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
"""

from .backends import shutdown
from .delayed import delayed
from .parallel import Parallel, effective_n_jobs

__all__ = ["Parallel", "delayed", "effective_n_jobs", "shutdown"]
