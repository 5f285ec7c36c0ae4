"""A joblib backend on picklepool's workers: joblib's ``Parallel`` (and scikit-learn) on picklepool.

    from picklepool.joblib import register      # or picklepool.register_joblib_backend
    register()
    with joblib.parallel_config(backend="picklepool", n_jobs=2):
        GridSearchCV(model, grid).fit(X, y)     # every joblib.Parallel inside runs here

Each joblib batch (``BatchedCalls``) becomes one batch of a ``picklepool.Executor``
made for the ``Parallel`` call: its calls are sent through picklepool's pickler
("hybrid" unless ``parallel_config(backend="picklepool", pickler=...)`` says
otherwise), functions once per call, large arrays through shared memory, and
framed by the nested ``parallel_config`` joblib sets for them
(``workers.prologue``). joblib keeps its own batching (``AutoBatchingMixin``),
``return_as``, ``timeout``, ``prefer``/``require`` (a ``require="sharedmem"`` call
runs on threads, as with loky) and nesting (a Parallel inside a task runs on
threads, then sequentially, as under joblib's loky backend).

Importing this module changes nothing; :func:`register` does, once. (Absolute
imports: ``import joblib`` here and everywhere is joblib itself.)
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import threading
import warnings
from typing import Any

from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    SequentialBackend,
)
from joblib.parallel import BatchedCalls, register_parallel_backend

from .errors import TaskExitError
from .settings import NOT_SET, check_setting, cpu_count, parse_n_jobs
from .wire import add_note
from .workers import mirror
from .workers.prologue import enter_config, leave_config

NAME = "picklepool"
# where a bad setting was given (errors name it): the backend's own parameters, and joblib's
CONFIG = "joblib.parallel_config(backend='picklepool', ...)"
JOBLIB_ARGS = "joblib.Parallel(...) or joblib.parallel_config(...)"


class PicklepoolBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """joblib's ``ParallelBackendBase`` on a ``picklepool.Executor``.

    Backend parameters (``parallel_config(backend="picklepool", **params)``):
    ``pickler`` (default "hybrid"), and the ``Executor``'s ``inner_max_num_threads``,
    ``max_worker_memory``, ``idle_worker_timeout``. joblib's own ``max_nbytes``,
    ``mmap_mode`` and ``temp_folder`` apply to picklepool's shared memory.
    """

    supports_retrieve_callback = True
    supports_inner_max_num_threads = True
    supports_sharedmem = False
    uses_threads = False
    default_n_jobs = 1  # joblib: n_jobs=None means 1 unless a parallel_config says otherwise

    def __init__(
        self, nesting_level: int | None = None, inner_max_num_threads: int | None = None, **params: Any
    ):
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **params)
        unknown = set(params) - {"pickler", "max_worker_memory", "idle_worker_timeout"}
        if unknown:
            raise ValueError(
                f"parallel_config(backend='picklepool', ...): unknown parameter(s) {sorted(unknown)}; "
                "valid ones are pickler, inner_max_num_threads, max_worker_memory, idle_worker_timeout"
            )
        # checked here, at the `with` line, each error naming where it was given (not later,
        # as an Executor's "argument")
        for key in ("max_worker_memory", "idle_worker_timeout"):
            if key in params:
                check_setting(key, params[key], CONFIG)
        if params.get("pickler") is not None:
            from .pickler.registry import resolve_pickler

            resolve_pickler(params["pickler"], source=CONFIG)
        self._executor: Any = None
        self._options: dict[str, Any] = {}
        self._caller: int | None = None  # the thread of the joblib.Parallel call (start_call)
        # that thread's decimal context and numpy error handling, read when the call starts:
        # every batch runs with them, also those joblib dispatches from its callbacks
        self._numeric: mirror.CallerState | None = None

    def effective_n_jobs(self, n_jobs: Any) -> int:
        """Workers for joblib's *n_jobs*: None 1, -1 all usable cores, -n all but n-1.

        1, with a warning, where joblib's loky backend runs sequentially too: in a
        daemonic process (a ``multiprocessing`` pool's or a dask worker), which cannot
        start the workers (``AssertionError: daemonic processes are not allowed to have
        children`` before), and below threads (a task of joblib's threading backend).
        """
        if n_jobs is None:
            return 1
        n = parse_n_jobs(n_jobs, source="joblib n_jobs")
        n = max(1, cpu_count() + 1 + n) if n < 0 else n
        where = _no_workers_here(self.nesting_level) if n != 1 else None
        if where is not None:
            warnings.warn(
                f"picklepool-backed parallel loops cannot be nested {where}: setting n_jobs=1 "
                f"for this call (n_jobs={n_jobs!r}), as joblib's loky backend does. Use "
                "backend='threading' for the inner call, or n_jobs=1 to silence this.",
                UserWarning,
                stacklevel=3,
            )
            return 1
        return n

    def configure(
        self, n_jobs: Any = 1, parallel: Any = None, prefer: Any = None, require: Any = None, **kwargs: Any
    ) -> int:
        """Make the ``Executor`` of one joblib ``Parallel`` call; return its worker count."""
        n = self.effective_n_jobs(n_jobs)
        if n == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        from .executor import ongoing

        # the joblib call has begun: made by a non-daemon thread as the main thread ends (the
        # first imports what it needs), it runs to its end (executor.ongoing, Executor)
        token = ongoing.begin(shutdown=False, at_exit=True)
        try:
            with ongoing.admitting(token):
                return self._configure(n, parallel, kwargs)
        finally:
            ongoing.end(token)

    def _configure(self, n: int, parallel: Any, kwargs: dict[str, Any]) -> int:
        """:meth:`configure`, once *n* workers are known."""
        from .executor.futures import Executor

        for key in ("max_nbytes", "mmap_mode", "temp_folder"):
            if key in kwargs:
                check_setting(key, kwargs[key], JOBLIB_ARGS)
        check_setting("inner_max_num_threads", self.inner_max_num_threads, JOBLIB_ARGS)
        params = self.backend_kwargs
        self._options = {
            "pickler": params.get("pickler", NOT_SET),
            "max_nbytes": kwargs.get("max_nbytes", NOT_SET),
            "mmap_mode": kwargs.get("mmap_mode", NOT_SET),
            "temp_folder": kwargs.get("temp_folder", NOT_SET),
            "inner_max_num_threads": self.inner_max_num_threads,
            "max_worker_memory": params.get("max_worker_memory", NOT_SET),
            "idle_worker_timeout": params.get("idle_worker_timeout", NOT_SET),
        }
        self._executor = Executor(n, **self._options)
        self._executor._channel.origin = "this joblib.Parallel call"
        self.parallel = parallel
        self._n_jobs = n
        return n

    def submit(self, func: Any, callback: Any = None) -> Any:
        """Send one joblib batch; its future's result is the list of the calls' results."""
        if isinstance(func, BatchedCalls):
            # (register: a task's own parallel_config(backend="picklepool") works in the worker)
            nested = (enter_config, (func._backend, func._n_jobs, register), None)
            items = [nested, *func.items, (leave_config, (), None)]
            # joblib submits from its callbacks too (the executor's manager thread): the
            # call's own thread is the one that may hold the locks of what it sends
            future = self._executor._submit_calls(items, strip=1, caller=self._caller, numeric=self._numeric)
        else:  # a plain callable (joblib's own tests submit these)
            future = self._executor.submit(func)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, future: Any) -> Any:
        """The batch's results, or its task's exception, raised as one joblib can take.

        joblib's callback sets ``__traceback__ = None`` on the exception it gets here; one
        whose class refuses attribute assignment (a frozen dataclass, a ``__setattr__``
        that raises) failed that callback, and the call waited for the batch for ever
        (joblib's loky backend gives a ``BrokenProcessPool`` instead: it cannot rebuild
        it). It comes as a ``RuntimeError`` naming the task, caused by the exception.
        """
        try:
            return future.result()
        except BaseException as exc:
            try:
                exc.__traceback__ = exc.__traceback__  # what joblib does with it next
            except Exception as refused:  # noqa: BLE001 - any refusal: said below, not a hang
                notes = getattr(exc, "__notes__", None) or [""]
                where = notes[-1].strip("()") if "raised by task" in notes[-1] else "raised by a task"
                error = RuntimeError(
                    f"{type(exc).__qualname__}: {exc} ({where}) cannot be raised by joblib.Parallel: "
                    f"joblib sets the __traceback__ of a task's exception, and this one refuses it "
                    f"({type(refused).__name__}: {refused}). Catch it inside the task, make its "
                    "class accept attribute assignment (not a frozen dataclass), or run the call "
                    "with picklepool.Parallel, which raises it as itself."
                )
                raise error from exc
            raise

    def start_call(self) -> None:
        """A call starts: nothing of an earlier, aborted one may be dispatched in it."""
        self._caller = threading.get_ident()
        self._numeric = mirror.caller_state()  # (numeric settings, warnings filters, context variables)
        _drop_ready_batches(getattr(self, "parallel", None))
        if self._executor is not None:  # kept across the calls of a `with joblib.Parallel()` block
            # joblib pickles every batch anew: each call sees the globals of its moment
            self._executor._channel.functions.renew()
            self._executor._number_anew()  # "task 2" is the call's third item, not the block's

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Stop the call now (an error, Ctrl-C): cancel what is not sent; a fresh executor if asked.

        On Ctrl-C or joblib's ``timeout`` the workers running the rest are killed, as
        joblib's loky backend kills its own; after a task's error (or a generator closed
        early) its tasks already running end on their own, as in picklepool's ``Parallel``:
        the workers are picklepool's shared warm pool, and killing them failed the calls
        other threads were running there (``WorkerCrashedError``, "usually a segfault").

        The batches joblib split off ahead and has not dispatched (``_ready_batches``,
        kept by the ``Parallel`` object across calls) are dropped: joblib would
        dispatch them in the next call of the same ``Parallel`` (a ``with`` block, or
        an object called again), whose results would then start with this call's
        tasks (joblib 1.6 does so with each of its own backends)."""
        _drop_ready_batches(getattr(self, "parallel", None))
        if self._executor is not None:
            exc = sys.exc_info()[1]
            if _stops_workers(exc):
                if exc is not None and _timed_out(exc):
                    _name_timeout(exc, self._executor, getattr(self.parallel, "timeout", None))
                self._executor._terminate()
            else:
                self._executor._abort()
            self._executor = None
        if ensure_ready and self.parallel is not None:
            self.configure(n_jobs=self._n_jobs, parallel=self.parallel, **self._options)

    def terminate(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.reset_batch_stats()


def _no_workers_here(nesting_level: int | None) -> str | None:
    """Where a call cannot (or, as under joblib's loky backend, does not) start workers, or None."""
    if multiprocessing.current_process().daemon:
        worker = sys.modules.get("distributed.worker")
        if worker is not None and getattr(getattr(worker, "thread_state", None), "key", None) is not None:
            return (
                "inside a dask worker's task (a daemonic process, which cannot have children; "
                "dask.config.set({'distributed.worker.daemon': False}) before the cluster starts lifts it)"
            )
        return "inside a daemonic multiprocessing worker, which cannot have children"
    if nesting_level and threading.current_thread() is not threading.main_thread():
        return "below threads (a task of joblib's threading backend)"
    return None


def _name_timeout(exc: BaseException, executor: Any, timeout: Any) -> None:
    """joblib's ``timeout=`` passed: its bare ``TimeoutError()`` gets a note naming the
    tasks still running (as a task's error is named) and what to do."""
    running = executor._running()
    if running is None or any("timeout=" in n for n in getattr(exc, "__notes__", ())):
        return
    add_note(
        exc,
        f"(joblib's timeout={timeout!r} s passed before {running} of this joblib.Parallel "
        "call had finished: its workers were killed. Give the call a longer timeout=, or "
        "run that task alone (n_jobs=1) to see why it takes so long.)",
    )


def _stops_workers(exc: BaseException | None) -> bool:
    """Whether joblib aborts a call for *exc* (in flight) in a way that stops the workers.

    A real Ctrl-C (not a task's own ``KeyboardInterrupt``, a ``TaskExitError``) or
    another ``BaseException`` of the caller, and joblib's ``timeout`` (a task may be stuck):
    yes. A task's exception, a generator closed early (``GeneratorExit``), none: no.
    """
    if exc is None or isinstance(exc, (TaskExitError, GeneratorExit)):
        return False
    return _timed_out(exc) or not isinstance(exc, Exception)


def _timed_out(exc: BaseException | None) -> bool:
    """Whether *exc* is joblib's ``timeout=`` passing: the bare ``multiprocessing.TimeoutError()``
    joblib makes (not the built-in ``TimeoutError``, which a task raises: a socket's, a
    ``Future.result(timeout=...)``'s, named by a note as every task error is)."""
    return type(exc) is multiprocessing.TimeoutError and not exc.args and not getattr(exc, "__notes__", None)


def _drop_ready_batches(parallel: Any) -> None:
    """Empty joblib's queue of batches split off ahead (``Parallel._ready_batches``)."""
    ready = getattr(parallel, "_ready_batches", None)
    if ready is None:
        return
    with parallel._lock:
        while True:
            try:
                ready.get(block=False)
            except queue.Empty:
                return


def register() -> None:
    """Register the ``"picklepool"`` joblib backend (idempotent; needs joblib installed).

    Afterwards ``joblib.parallel_config(backend="picklepool", n_jobs=...)`` runs every
    ``joblib.Parallel`` call inside it on picklepool's workers.
    """
    register_parallel_backend(NAME, PicklepoolBackend)


register_joblib_backend = register
