"""The settings for picklepool's own warm worker processes, given to a call whose backend
has none to apply them to: say so, and what does that there.

``inner_max_num_threads``, ``max_worker_memory`` and ``idle_worker_timeout`` are applied by
the loky backend's workers only. On dask the cluster's processes are the cluster's, on
threading and sequential the tasks run in this process, and a ``multiprocessing.Pool`` is
started with this process's environment and lives for one call. They were ignored there
without a word (joblib's ``parallel_config`` refuses ``inner_max_num_threads`` for those
backends: "does not accept setting the inner_max_num_threads argument"); given as an
argument or in a ``parallel_config`` they now warn once per ``Parallel`` made, as
``maxtasksperchild`` does on a backend without a ``multiprocessing.Pool``. Set in the
environment (``PICKLEPOOL_MAX_WORKER_MEMORY``...) they are defaults for the calls that can
use them, and stay silent.
"""

from __future__ import annotations

import warnings
from typing import Any

# (setting, backend) -> what does that on that backend
_INSTEAD: dict[tuple[str, str], str] = {
    ("inner_max_num_threads", "dask"): (
        "the dask workers' BLAS/OpenMP threads are set where they start: OMP_NUM_THREADS, "
        "OPENBLAS_NUM_THREADS and MKL_NUM_THREADS in the environment of `dask worker` (dask's "
        "nannies set them to 1 by default: distributed.nanny.pre-spawn-environ), or "
        "threadpoolctl.threadpool_limits(n) inside the task"
    ),
    ("inner_max_num_threads", "in process"): (
        "its tasks run in this process and share its BLAS/OpenMP threads: limit them around the "
        "call with threadpoolctl.threadpool_limits(n)"
    ),
    ("inner_max_num_threads", "multiprocessing"): (
        "its workers start with this process's environment: set OMP_NUM_THREADS (and "
        "OPENBLAS_NUM_THREADS, MKL_NUM_THREADS) before the call, or use backend='loky'"
    ),
    ("max_worker_memory", "dask"): (
        "dask's nannies restart a worker past the cluster's own limit: "
        "LocalCluster(memory_limit='2GB') or `dask worker --memory-limit 2GB`"
    ),
    ("max_worker_memory", "in process"): "its tasks run in this process: use backend='loky'",
    ("max_worker_memory", "multiprocessing"): (
        "use maxtasksperchild=n, which replaces its worker processes after n batches, or backend='loky'"
    ),
    ("idle_worker_timeout", "dask"): (
        "the cluster's workers are not picklepool's: cluster.adapt(minimum=..., maximum=...) "
        "retires idle ones"
    ),
    ("idle_worker_timeout", "in process"): "its tasks run in this process: leave it out",
    ("idle_worker_timeout", "multiprocessing"): (
        "its pool lives for one call (or `with Parallel()` block), and ends with it"
    ),
}
SETTINGS = ("inner_max_num_threads", "max_worker_memory", "idle_worker_timeout")


def warn_unapplied(s: Any) -> None:
    """Warn for each of :data:`SETTINGS` that *s* (``settings.Settings``) gives explicitly to
    a backend other than loky's, which would not apply it."""
    backend = s.backend
    if backend == "loky" or s.n_workers == 1 or not isinstance(backend, str):
        return
    kind = "in process" if backend in ("threading", "sequential") else backend
    for name in SETTINGS:
        value, source = getattr(s, name, None), s.sources.get(name, "default")
        instead = _INSTEAD.get((name, kind))
        if value is None or instead is None or source == "default" or source.startswith("env var"):
            continue
        from ..pickler.locks import callers_level

        warnings.warn(
            f"{name}={value!r} (from {source}) is ignored on backend={backend!r}: only the loky "
            f"backend's worker processes apply it. Instead, {instead}.",
            UserWarning,
            stacklevel=callers_level(),
        )
