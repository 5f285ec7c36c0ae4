"""Worker side of the thread limits: applied around each batch.

The parent decides the limits (``executor.limits``) and sends them with every
batch in a ``wire.WorkerLimits``; :func:`before_batch` applies the threadpoolctl
limit once per setting and import wave, not per task.
"""

from __future__ import annotations

import sys

from ..wire import WorkerLimits

# (threads, len(sys.modules)) when the limit was last applied, or found not needed yet
_applied: tuple[int, int] | None = None


def before_batch(limits: WorkerLimits) -> None:
    """Limit this worker's thread pools: once per setting and import wave, not per task."""
    global _applied
    n = limits.threads
    if n is None:
        return
    now = (n, len(sys.modules))
    if _applied == now:
        return
    if sys.modules.keys().isdisjoint(NATIVE_POOLS):
        # Nothing with a thread pool of its own loaded yet: the variables loky set at
        # the worker's start (OMP_NUM_THREADS...) limit whatever loads later, as in a
        # joblib worker. threadpoolctl (over 20 ms to import) waits until it can matter.
        _applied = now  # looked again after the next import
        return
    limit_threads(n)
    _applied = now


# Packages that load BLAS or OpenMP thread pools (threadpoolctl's targets) on import.
NATIVE_POOLS = (
    "numpy",
    "scipy",
    "sklearn",
    "torch",
    "numexpr",
    "numba",
    "mkl",
    "tensorflow",
    "jax",
    "cv2",
    "xgboost",
    "lightgbm",
    "catboost",
    "faiss",
    "threadpoolctl",
)


def limit_threads(n: int) -> bool:
    """Limit the BLAS/OpenMP pools loaded in this process to *n* threads.

    Returns False when threadpoolctl is not installed (the environment variables
    set at worker start are then the only limit).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(limits=n)
    return True
