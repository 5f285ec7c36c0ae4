"""Backends move batches to workers and bring replies back; nothing more.

Process backends (loky, dask) move bytes only: the parent has already pickled
each batch with the call's pickler. In-process backends (threading, sequential)
run the same batch runner on the objects themselves, with no copy.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import loky

from ..workers.control import Session

IDLE_WORKER_TIMEOUT = 300.0  # seconds a warm loky worker waits for work before exiting

BACKENDS = ("loky", "threading", "sequential", "dask")


_cores_cache: dict[Any, int] = {}


def cpu_count(only_physical_cores: bool = False) -> int:
    """Usable cores: CPU affinity, cgroup quotas and ``LOKY_MAX_CPU_COUNT`` respected.

    Remembered while the affinity and ``LOKY_MAX_CPU_COUNT`` stay the same (loky's
    count reads cgroup files, ~0.1 ms a call, which would show in every call).
    """
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    key = (affinity, os.environ.get("LOKY_MAX_CPU_COUNT"), only_physical_cores)
    count = _cores_cache.get(key)
    if count is None:
        count = _cores_cache[key] = int(loky.cpu_count(only_physical_cores=only_physical_cores))
    return count


# Every loky executor picklepool has used (loky keeps one per thread), for shutdown().
_executors: weakref.WeakSet[Any] = weakref.WeakSet()

_session: Session | None = None
_session_lock = threading.Lock()


def session() -> Session:
    """The parent's shared-memory session folder, created on first use."""
    global _session
    with _session_lock:
        if _session is None or not os.path.isdir(_session.path):
            _session = Session()
            import atexit

            atexit.register(_session.close)
        return _session


class Backend:
    """What the dispatcher needs from a backend."""

    name = "base"
    moves_bytes = True  # tasks are pickled in the parent and cross as bytes
    parent_threads = False  # moves data on threads of this process (executor/gil.py)

    def __init__(self, n_workers: int) -> None:
        self.n_workers = n_workers

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        raise NotImplementedError

    def worker_pids(self) -> list[int]:
        return []

    def session_path(self) -> str | None:
        return None

    def blob_store(self) -> Any:
        """A fresh ``pickler.context.BlobStore`` for one call, or None for the session's files."""
        return None

    def shutdown(self, kill: bool = False) -> None:
        pass


_context: Any = None


def _loky_context() -> Any:
    """Our own instance of loky's start method.

    loky and joblib's vendored copy both register a start method named "loky", and
    the one imported last wins: asking for it by name could start picklepool's
    workers with joblib's loader. An instance of standalone loky's context does not
    depend on import order.
    """
    global _context
    if _context is None:
        from loky.backend.context import LokyContext

        _context = LokyContext()
    return _context


class LokyBackend(Backend):
    """Warm, reusable loky worker processes, shared by every call in the process."""

    name = "loky"
    parent_threads = True

    def __init__(
        self, n_workers: int, idle_timeout: float | None = None, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(n_workers)
        self.idle_timeout = IDLE_WORKER_TIMEOUT if idle_timeout is None else idle_timeout
        self.env = env  # set in each worker at start (thread limits, workers.limits)
        self._executor = self._get()

    def _get(self) -> Any:
        executor = loky.get_reusable_executor(
            max_workers=self.n_workers, timeout=self.idle_timeout, env=self.env, context=_loky_context()
        )
        _executors.add(executor)
        return executor

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        try:
            return self._executor.submit(fn, *args)  # type: ignore[no-any-return]
        except (loky.process_executor.ShutdownExecutorError, RuntimeError):
            # Broken by a crash in an earlier call, or shut down: get a fresh pool.
            self._executor = self._get()
            return self._executor.submit(fn, *args)  # type: ignore[no-any-return]

    def refresh(self) -> None:
        """Take the current reusable executor (a new one after a crash)."""
        self._executor = self._get()

    def worker_pids(self) -> list[int]:
        return sorted(getattr(self._executor, "_processes", {}) or {})

    def session_path(self) -> str | None:
        return session().path

    def shutdown(self, kill: bool = False) -> None:
        self._executor.shutdown(wait=True, kill_workers=kill)


class ThreadingBackend(Backend):
    """A thread pool in the calling process: no pickling, objects shared as they are."""

    name = "threading"
    moves_bytes = False

    def __init__(self, n_workers: int) -> None:
        super().__init__(n_workers)
        self._pool = ThreadPoolExecutor(n_workers, thread_name_prefix="picklepool")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        try:
            return self._pool.submit(fn, *args)
        except RuntimeError as exc:
            raise RuntimeError(
                "this threading pool was shut down while the call still had tasks to send "
                "(for example a return_as='generator' read after its `with Parallel(...)` "
                "block ended). Consume the generator inside the block."
            ) from exc

    def shutdown(self, kill: bool = False) -> None:
        self._pool.shutdown(wait=not kill, cancel_futures=kill)


class SequentialBackend(Backend):
    """Runs each batch at once in the calling thread (``n_jobs=1``, debugging)."""

    name = "sequential"
    moves_bytes = False

    def __init__(self, n_workers: int = 1) -> None:
        super().__init__(1)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        return fut


def shutdown(wait: bool = True, kill: bool = False) -> None:
    """Stop picklepool's warm worker processes now (they restart on the next call).

    Idle workers also exit by themselves after ``idle_worker_timeout`` seconds. With
    the dask backend, this closes the connections picklepool opened to a
    ``scheduler_address``; it never closes your own ``Client`` or cluster.
    """
    for executor in list(_executors):
        executor.shutdown(wait=wait, kill_workers=kill)
        _executors.discard(executor)
    dask_backend = sys.modules.get(f"{__package__}.dask")
    if dask_backend is not None:  # imported only if backend="dask" was used
        dask_backend.close_clients()


def make_backend(name: str, n_workers: int, **options: Any) -> Backend:
    if name == "loky":
        return LokyBackend(n_workers, options.get("idle_worker_timeout"), options.get("worker_env"))
    if name == "threading":
        return ThreadingBackend(n_workers)
    if name == "sequential":
        return SequentialBackend()
    if name == "dask":
        from .dask import DaskBackend

        return DaskBackend(n_workers, options.get("scheduler_address"))
    raise ValueError(f"unknown backend {name!r}; valid backends are {list(BACKENDS)}")
