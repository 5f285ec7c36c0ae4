"""What the dispatcher needs from a backend, and what each backend can do.

A backend moves batches to workers and brings replies back; nothing more.
Instead of being checked by name, each declares its capabilities as class
attributes, read by ``Parallel`` and ``dispatch.Call``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class Backend:
    """The interface; capabilities default to those of a pool of local processes."""

    name = "base"
    moves_bytes = True  # tasks are pickled in the parent and cross as bytes
    in_caller = False  # tasks run in the calling process (no pickling, shared objects)
    caller_thread = False  # tasks run in the calling thread (a Ctrl-C may arrive inside one)
    parent_threads = False  # moves data on threads of this process (executor/gil.py)
    interrupts_late_tasks = True  # a task past its timeout is interrupted (else left to run: threading)
    mirrors_parent = False  # workers mirror the parent's sys.path, cwd, ... (workers.mirror)
    mirrors_numeric = False  # else, workers apply the calling thread's decimal/numpy settings
    enforces_limits = False  # workers apply thread and memory limits (executor.limits)
    per_parallel = False  # the pool belongs to one Parallel object: closed with it
    counts_cluster = False  # n_jobs < 0 counts the cluster's threads, not local cores
    inline_single = False  # a pool of one worker runs in the calling thread instead
    uses_threads = False  # tasks run on threads of this process (a nested call runs below threads)
    default_n_jobs = 1  # n_jobs when nothing sets it (joblib's backend.default_n_jobs)
    single_worker = False  # one worker whatever n_jobs says (joblib's SequentialBackend.effective_n_jobs)
    batch_growth = 2  # batch_size="auto": a batch holds at most this many times the previous one
    nesting_level = 0  # joblib's: 0 in a parent, 1 in a worker or pool thread, 2 below (make_backend sets it)
    # a pool broken by a crash is replaced at the next submit (Executor); False (Parallel, whose
    # calls start on a usable pool: refresh): the call's later batches fail with the crash
    renew_when_broken = True
    # the pool fails the tasks of a worker that died (loky: BrokenProcessPool); False: they are
    # lost without a word (multiprocessing.Pool), and only check() finds the death
    reports_deaths = True
    # its pool is one picklepool.shutdown() stops: a shutdown in another thread lets a call on
    # it end first (executor.ongoing)
    shutdown_stops = False

    def __init__(self, n_workers: int) -> None:
        self.n_workers = n_workers

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        raise NotImplementedError

    def submit_direct(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """As :meth:`submit`, by the shortest way the backend has (a plain call's batches)."""
        return self.submit(fn, *args)

    def small_call_done(self) -> None:
        """A plain call of at most one batch per worker just ended here (loky opens its lanes then)."""

    def pool_load(self) -> tuple[int, int] | None:
        """``(workers started, jobs queued or running)`` now; None when the backend cannot tell."""
        return None

    def refresh(self) -> None:
        """Before a call on a kept backend (``with Parallel() as p``): take a working pool."""

    def worker_pids(self) -> list[int]:
        return []

    def session_path(self) -> str | None:
        """The parent's session folder, for backends whose workers share this machine."""
        return None

    def blob_store(self) -> Any:
        """A fresh ``pickler.context.BlobStore`` for one call, or None for the session's files."""
        return None

    def release(self, wait: bool = True) -> None:
        """The call (or ``with Parallel()`` block) that made this backend is done with it.

        Backends whose pool belongs to one ``Parallel`` (``per_parallel``) shut it down;
        the loky backend gives the process's shared pool back (``executor.pool``).
        *wait*: False when a generator was closed or dropped early, or the call
        failed, so tasks still running (threads cannot be interrupted) do not block
        whoever closed it or delay the error.
        """
        if self.per_parallel:
            self.shutdown()

    def check(self) -> tuple[list[str], str | None]:
        """While a call waits: ``(notes, stalled)``, see ``executor.reaper.check``."""
        return [], None

    def shutdown(self, kill: bool = False) -> None:
        pass


class BackendChoice:
    """The backend a ``parallel_config`` block chose, as ``with parallel_config(...) as config``
    shows it in ``config["backend"]`` (joblib's backend object there): its *name* and
    the ``nesting_level`` of where the block was entered (0 in a parent, 1 inside a
    worker or a pool thread, 2 below). A description only: nothing is started, no pool
    is taken; ``Parallel`` makes the backend itself when a call runs.
    """

    __slots__ = ("context", "name", "nesting_level")

    def __init__(self, name: str, nesting_level: int, context: Any = None) -> None:
        self.name = name
        self.nesting_level = nesting_level
        self.context = context  # the multiprocessing context given as backend=, if any

    def __repr__(self) -> str:
        return f"BackendChoice({self.name!r}, nesting_level={self.nesting_level})"


class ClusterBackend(Backend):
    """What a cluster's backend is, known without importing it (``executor.dask``).

    ``n_jobs`` counts the cluster's threads, and not given it is all of them (-1),
    as joblib's dask backend; each batch costs a round trip through a scheduler,
    so ``batch_size="auto"`` grows fast.
    """

    name = "cluster"
    counts_cluster = True
    mirrors_numeric = True  # shared worker threads: only what can be put back after a batch
    default_n_jobs = -1
    batch_growth = 8  # each batch costs a round trip through the scheduler (~10 ms)
