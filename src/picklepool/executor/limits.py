"""Worker limits: BLAS/OpenMP threads per worker, idle time, and the per-batch hooks.

No thread oversubscription: ``n_jobs`` workers that each start a BLAS or OpenMP
pool as wide as the machine run ``n_jobs x cores`` threads on ``cores`` cores,
and every matrix product slows down. picklepool gives each loky worker
``inner_max_num_threads`` threads (default ``max(1, cores // n_jobs)``) in two
ways:

1. At worker start, through the environment (loky's ``env=``, see
   ``executor.backends.LokyBackend``): ``OMP_NUM_THREADS``,
   ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and the others in
   :data:`THREAD_VARS`. Libraries read these when they load, so this covers
   libraries a task imports at any time. With the default setting a variable
   the user already set in the parent's environment is kept as it is (as
   joblib does); an explicit ``inner_max_num_threads`` overrides them all.
   Nothing else in the environment is changed (``OPENBLAS_CORETYPE``,
   ``OPENBLAS_L2_SIZE`` and the like pass through untouched).
2. In the worker (``workers.limits``), with threadpoolctl when it is installed (the ``threads``
   extra): :func:`before_batch` calls ``threadpool_limits(n)`` once per setting,
   and again only after new modules were imported (``len(sys.modules)``
   changed), so libraries already loaded are limited too, at the cost of a
   scan per import wave instead of per task. Without threadpoolctl the
   environment variables alone do the job. The threadpoolctl limit is read
   from the environment the workers were started with (:func:`for_call`), so
   the two always agree; when the user's own variables make them differ,
   threadpoolctl is left out and the user's variables rule.

The limit changes the workers' environment, so a different limit (another
``n_jobs`` or ``inner_max_num_threads``) starts fresh workers, as in joblib.

Idle time: a loky worker that waits ``idle_worker_timeout`` seconds (default
300; ``parallel_config`` or ``PICKLEPOOL_IDLE_WORKER_TIMEOUT``) without work
exits by itself, through loky's own timeout; the next call starts new ones.
``picklepool.shutdown()`` stops every worker at once.
In-process backends (threading, sequential) are not limited: their threads
share the parent's pools, which picklepool leaves alone; dask manages its own.

Memory limits are in :mod:`picklepool.executor.memory`; both travel to the
worker with each batch in one small ``wire.WorkerLimits`` tuple.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..settings import cpu_count
from ..wire import THREAD_VARS, WorkerLimits
from .memory import prepare_parent


def _cores() -> int:
    return cpu_count()


def default_threads(n_workers: int) -> int:
    """``max(1, cores // n_workers)``: cores as in ``picklepool.cpu_count()``."""
    return max(1, _cores() // max(1, n_workers))


def worker_env(
    threads: int | None, n_workers: int, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The thread variables loky sets in each worker at start.

    *threads* is the ``inner_max_num_threads`` setting (None: the default).
    """
    if threads is not None:
        return {var: str(threads) for var in THREAD_VARS}
    n = str(default_threads(n_workers))
    if environ is None:
        data = getattr(os.environ, "_data", None)
        if type(data) is dict and os.name == "posix":  # os.environ's own dict, read at C speed
            key = (n, tuple(map(data.get, _THREAD_VARS_RAW)))
            made = _made.get(key)
            if made is None:
                if len(_made) >= 16:
                    _made.clear()
                made = _made[key] = {var: os.environ.get(var) or n for var in THREAD_VARS}
            return dict(made)
        environ = os.environ
    return {var: environ.get(var) or n for var in THREAD_VARS}


_THREAD_VARS_RAW = tuple(map(os.fsencode, THREAD_VARS)) if os.name == "posix" else THREAD_VARS
_made: dict[Any, dict[str, str]] = {}  # (default, raw values) -> worker_env: every call asks


def for_call(env: Mapping[str, str] | None, max_memory: int | None) -> WorkerLimits | None:
    """The limits a loky call's batches carry, or None when there is nothing to do.

    *env* is what the workers were started with (:func:`worker_env`), so the
    threadpoolctl limit always agrees with it. When its thread variables differ
    (the user set some of them in the parent's environment and left the default
    ``inner_max_num_threads``), the user's variables rule and threadpoolctl is
    not used.
    """
    values = {env.get(var) for var in THREAD_VARS} if env else set()
    threads = None
    if len(values) == 1:
        (value,) = values
        threads = int(value) if value and value.isdigit() else None
    if threads is None and max_memory is None:
        return None
    if max_memory is not None:
        prepare_parent()
    return WorkerLimits(threads, max_memory)


def info(n_jobs: int | None = None) -> dict[str, Any]:
    """Thread limits for ``picklepool info``: plain values, safe to print.

    Keys: ``cores``, ``n_jobs``, ``inner_max_num_threads`` (the default for that
    many workers), ``env`` (the thread variables as set in this process; None
    when unset), ``threadpoolctl`` (its version, or None when not installed).
    """
    cores = _cores()
    n_workers = cores if n_jobs is None or n_jobs < 0 else n_jobs
    try:
        import threadpoolctl

        version: str | None = threadpoolctl.__version__
    except ImportError:
        version = None
    return {
        "cores": cores,
        "n_jobs": n_workers,
        "inner_max_num_threads": default_threads(n_workers),
        "env": {var: os.environ.get(var) for var in THREAD_VARS},
        "threadpoolctl": version,
    }
