"""Backends move batches to workers and bring replies back; nothing more.

Process backends (loky, dask) move bytes only: the parent has already pickled
each batch with the call's pickler. In-process backends (threading, sequential)
run the same batch runner on the objects themselves, with no copy.
"""

from __future__ import annotations

import _signal
import contextvars
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from types import MappingProxyType
from typing import Any

from .. import forklocks, lokycompat, signalhold
from ..errors import CallerInterrupt
from ..settings import NOT_SET, cpu_count, push_config
from ..wire import Batch, pack_batch
from ..workers import mirror, sklearnconfig
from ..workers.packed import run_packed, run_packed_batch
from . import lanes, ongoing, pool, reaper
from .backend import Backend, ClusterBackend
from .mpbackend import MultiprocessingBackend
from .session import session
from .threadpool import thread_pool

IDLE_WORKER_TIMEOUT = 300.0  # seconds a warm loky worker waits for work before exiting

# What a threading pool's tasks do not inherit from their caller's parallel_config.
_NESTED_MASK = MappingProxyType({"backend": NOT_SET, "n_jobs": NOT_SET})


class LokyBackend(Backend):
    """Warm, reusable loky worker processes, shared by every call in the process.

    The executor is the process's one warm pool (``executor.pool``): calls from any
    thread share it; this object holds it from its creation to :meth:`release`.
    """

    name = "loky"
    shutdown_stops = True
    parent_threads = True
    mirrors_parent = True
    enforces_limits = True
    inline_single = True

    def __init__(
        self,
        n_workers: int,
        idle_timeout: float | None = None,
        env: dict[str, str] | None = None,
        initializer: Any = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(n_workers)
        self.idle_timeout = IDLE_WORKER_TIMEOUT if idle_timeout is None else idle_timeout
        self.env = env  # set in each worker at start (thread limits, workers.limits)
        self._init = (initializer, initargs)
        self._executor: Any = None
        self._shared = False
        self._sent = False  # the call sent a batch to this executor: a crash of it is the call's
        self._pid = forklocks.getpid()
        try:
            self._get()
        except BaseException:  # a signal handler's, at the hold's end: the caller never gets this
            self.release()  # backend, nor gives its pool back (its users count stayed one up)
            raise

    def _get(self) -> None:
        self.release()
        # held: a signal handler's exception (Ctrl-C, an alarm) between the pool's start and
        # this object taking it left a pool nobody released, or a start half done
        with signalhold.held():
            self._executor, self._shared = pool.acquire(
                self.n_workers, self.idle_timeout, self.env, *self._init
            )
            self._pid = forklocks.getpid()
            self._sent = False

    def _inherited(self) -> bool:
        """True in a process forked since the executor was taken: it is the parent's.

        Its workers are the parent's children, its manager thread does not run here:
        it is dropped without a look (stopping it killed the parent's workers, from a
        ``with Parallel() as p`` block the child went on using).
        """
        if self._executor is not None and self._pid != forklocks.getpid():
            self._executor = None
            return True
        return False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._submit(_packed(fn, args), fn, args)

    def submit_direct(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """As :meth:`submit`, through an idle worker's lane when there is one (``executor.lanes``)."""
        packed = _packed(fn, args)
        if packed is not None:
            fut = lanes.submit(self._executor, packed)
            if fut is not None:
                self._sent = True
                return fut
        return self._submit(packed, fn, args)

    def _submit(self, packed: bytes | None, fn: Callable[..., Any], args: tuple[Any, ...]) -> Future[Any]:
        if packed is not None:
            fn, args = run_packed, (packed,)
        try:  # loky's jobs need its workers: lanes give them back first
            future = lanes.loky_submit(self._executor, fn, *args)
        except RuntimeError as exc:  # loky's ShutdownExecutorError is one
            broken = isinstance(exc, BrokenProcessPool) and not self.renew_when_broken
            if self._sent and (broken or lokycompat.interpreter_exiting()):
                # a crash broke the pool this call sent batches to, or the interpreter's exit
                # stopped it (a call in a thread the main thread did not join): no more of its
                # tasks start, and the error names what stopped it (replies.crash_error)
                failed: Future[Any] = Future()
                failed.set_exception(exc)
                return failed
            # Broken by a crash in an earlier call (or another thread's, before this call sent
            # anything), or shut down: get a fresh pool (not while the interpreter exits: the
            # exit's hooks have run, nothing would stop it, and the exit would wait for it).
            _refuse_at_exit("loky", self.n_workers)
            self._get()
            future = lanes.loky_submit(self._executor, fn, *args)
        self._sent = True
        return future

    def small_call_done(self) -> None:
        """A call of a batch per worker at most ended: the next ones may skip loky's queues.

        See ``executor.lanes``.
        """
        if self._executor is not None and not lanes.is_open(self._executor):
            lanes.open_for(self._executor, session().path, self.idle_timeout)

    def pool_load(self) -> tuple[int, int] | None:
        executor = self._executor
        if executor is None or not lokycompat.usable(executor):
            return None
        started = min(lokycompat.size(executor), len(lokycompat.worker_processes(executor)))
        return started, lokycompat.pending(executor) - lanes.lane_jobs(executor)

    def refresh(self) -> None:
        """Before a call on a kept backend: a fresh executor if this one broke (or is a parent's)."""
        self._inherited()
        self._sent = False  # a new call
        if self._executor is None or not lokycompat.usable(self._executor):
            # (the exit's hooks stopped it: a pool started now would be stopped by nothing,
            # and Python's exit then waited for ever for loky's thread)
            _refuse_at_exit("loky", self.n_workers)
            self._get()

    def release(self, wait: bool = True) -> None:
        self._inherited()
        if self._executor is None:  # (nothing to give back: no hold, 3 us)
            return
        with signalhold.held():  # (given back once, whatever a signal handler raises)
            executor, self._executor = self._executor, None
            if executor is not None:
                pool.release(executor, self._shared)

    def worker_pids(self) -> list[int]:
        return sorted(lokycompat.worker_processes(self._executor))

    def session_path(self) -> str | None:
        return session().path

    def check(self) -> tuple[list[str], str | None]:
        return reaper.check(self._executor)

    def shutdown(self, kill: bool = False) -> None:
        if self._executor is not None and not self._inherited():
            reaper.stop(self._executor, kill=kill)


def _packed(fn: Callable[..., Any], args: tuple[Any, ...]) -> bytes | None:
    """``(fn, args)`` pickled here with the standard pickler, or None if it cannot be.

    What loky then moves is one bytes object (``workers.packed.run_packed``): its queue
    thread does not run cloudpickle over the batch's envelope (its namedtuple classes)
    on the way to an idle worker. Anything the standard pickler refuses goes as it is.
    """
    if len(args) == 1 and type(args[0]) is Batch and fn is _run_batch():  # as plain tuples
        fn, args = run_packed_batch, (pack_batch(args[0]),)
    try:
        return pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - loky's own pickler takes it, or says why
        if signalhold.from_handler(exc):  # (an alarm's deadline, not the pickle's error)
            raise
        return None


def _run_batch() -> Any:
    """``workers.runner.run_batch`` once something imported it (not imported here: the
    parent imports the worker's side with its first call, ``executor.dispatch``)."""
    runner = sys.modules.get("picklepool.workers.runner")
    return getattr(runner, "run_batch", None)


def _learning(settings: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a pool thread under the caller's scikit-learn *settings*
    (``workers.sklearnconfig``; None: its defaults)."""
    sklearnconfig.apply(settings)
    return fn(*args)


class ThreadingBackend(Backend):
    """A thread pool in the calling process: no pickling, objects shared as they are.

    ``timeout``, as joblib's: a task past it makes the call fail with
    ``TaskTimeoutError`` at its deadline, and the call's tasks not started yet are
    cancelled; the task itself is not interrupted (its objects are the caller's: one
    stopped halfway would leave them half changed) and runs on in its own daemon
    thread until it returns (``workers.tasks.execute_watched``).
    """

    name = "threading"
    moves_bytes = False
    in_caller = True
    interrupts_late_tasks = False
    per_parallel = True
    uses_threads = True
    inline_single = True

    def __init__(self, n_workers: int) -> None:
        super().__init__(n_workers)
        self._pool = thread_pool(n_workers)
        self._pid = os.getpid()
        self._released = False  # its call or block ended: a task sent now is told so
        self._stopped = False  # shut down by a failure (Ctrl-C): the next call gets a new pool
        self.refresh()

    def refresh(self) -> None:
        """Take the caller's context now: its ``parallel_config`` and nesting reach the threads.

        In a process forked since (a ``with Parallel() as p`` block kept across
        ``os.fork``), a new thread pool: the threads of this one are not there, and
        its tasks waited for ever. So too after a call of the block that a failure
        stopped (Ctrl-C: :meth:`shutdown`): the block's next calls failed, saying the
        pool was shut down as for a generator read after its block ended.

        As joblib's ``BatchedCalls`` (``parallel_config(backend=nested, n_jobs=None)``
        around each task), the caller's ``backend`` and ``n_jobs`` do not: a task's own
        calls get the nested default (``settings.nested_backend``) unless it gives them.
        """
        if self._pid != os.getpid() or (self._stopped and not self._released):
            self._pool = thread_pool(self.n_workers)
            self._pid = os.getpid()
            self._stopped = False
        depth, cores = mirror.nesting()
        share = max(1, (cpu_count() if cores is None else cores) // self.n_workers)
        context = contextvars.copy_context()
        context.run(mirror.enter_thread, depth + 1, share)
        context.run(push_config, _NESTED_MASK)
        self._context = context
        # scikit-learn's settings are the thread's, not the context's: applied in each task's
        # thread (the decimal context and numpy's settings travel in the context)
        self._learn = sklearnconfig.read()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        try:
            # one copy per task: a context can be entered by one thread at a time
            if self._learn is not None or "sklearn._config" in sys.modules:
                return self._pool.submit(self._context.copy().run, _learning, self._learn, fn, *args)
            return self._pool.submit(self._context.copy().run, fn, *args)
        except RuntimeError as exc:
            if lokycompat.interpreter_exiting():
                raise RuntimeError(
                    f"could not start: the interpreter began to exit ({reaper.exit_cause()}) and "
                    "Python's exit stopped the threading pool while the call still had tasks to "
                    f"send: {reaper.exit_advice(reaper.exit_cause())}; or pass n_jobs=1 to run the "
                    "tasks in the calling thread."
                ) from exc
            if not self._released:  # (a failure of this call stopped it: Ctrl-C)
                raise RuntimeError(
                    "could not start: this threading pool was shut down during the call (Ctrl-C) "
                    "while the call still had tasks to send; they were not run. Make the call "
                    "again: the next call gets a new pool."
                ) from exc
            raise RuntimeError(
                "could not start: this threading pool was shut down while the call still had "
                "tasks to send (for example a return_as='generator' read after its "
                "`with Parallel(...)` block ended). Consume the generator inside the block."
            ) from exc

    def release(self, wait: bool = True) -> None:
        """The call or ``with Parallel()`` block that made it ended: the pool goes, for good."""
        self._released = True
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def shutdown(self, kill: bool = False) -> None:
        """Stop the pool (Ctrl-C: *kill*, its queued tasks cancelled); :meth:`refresh` makes another."""
        self._stopped = True
        self._pool.shutdown(wait=not kill, cancel_futures=kill)


class SequentialBackend(Backend):
    """Runs each batch at once in the calling thread (``n_jobs=1``, debugging)."""

    name = "sequential"
    moves_bytes = False
    in_caller = True
    caller_thread = True
    single_worker = True

    def __init__(self, n_workers: int = 1) -> None:
        super().__init__(1)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        watching = watch_ctrl_c()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        finally:
            if watching:
                unwatch_ctrl_c()
        return fut


def _caller_interrupt(signum: int, frame: Any) -> None:
    raise CallerInterrupt


_SIGINT = int(signal.SIGINT)


def watch_ctrl_c() -> bool:
    """While a batch (or an ``n_jobs=1`` task) runs in the main thread, a Ctrl-C raises
    ``CallerInterrupt``.

    A task's own ``KeyboardInterrupt`` comes back as ``TaskInterruptError`` (also an
    ``Exception``); a real Ctrl-C landing in a task must not: ``except Exception``
    around the call would swallow it. Only Python's default handler is replaced
    (not one of the program's own, nor an outer batch's); True if it was. The C
    functions of ``_signal``: ``signal.signal``'s enum conversions cost ~5 us a task.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if _signal.getsignal(_SIGINT) is not signal.default_int_handler:
            return False
        _signal.signal(_SIGINT, _caller_interrupt)
    except (ValueError, OSError):  # pragma: no cover - no signals here
        return False
    return True


def unwatch_ctrl_c() -> None:
    """Python's default SIGINT handler again, unless a task installed one of its own."""
    try:
        if _signal.getsignal(_SIGINT) is _caller_interrupt:
            _signal.signal(_SIGINT, signal.default_int_handler)
    except (ValueError, OSError):  # pragma: no cover
        pass


def shutdown(wait: bool = True, kill: bool = False) -> None:
    """Stop picklepool's warm worker processes and their forkserver (they restart on the next call).

    *wait* (the default), as ``ProcessPoolExecutor.shutdown(wait=True)``: the work
    running in other threads ends first, on the workers it runs on, and then the
    workers and the forkserver are stopped; when this returns, no worker and no
    forkserver is left. That work is a ``Parallel`` call returning a list, to its
    end, and what was submitted to an ``Executor`` (or a joblib call on the
    ``"picklepool"`` backend). Not waited for: a call begun meanwhile (what it sends
    once the workers are stopped goes to a new pool), a ``return_as="generator"`` call
    (its batches already sent get 5 s to finish, then their workers are killed and it
    fails naming ``picklepool.shutdown()``; the rest run on a new pool once it is read
    again), the calling thread's own calls, and, from an ``atexit`` handler, calls in
    daemon threads (the exit has killed their workers). While the workers are
    stopped, a call in another thread that needs them waits, then starts a new pool.

    *wait=False*: stop without waiting for the running tasks (they still finish, and
    a call's later batches start a new pool). *kill*: kill the workers at once; the
    calls running there fail with ``WorkerCrashedError`` naming
    ``picklepool.shutdown(kill=True)`` (an ``Executor``'s later submissions start a
    new pool).

    Idle workers also exit by themselves after ``idle_worker_timeout`` seconds. With
    the dask backend, this closes the connections picklepool opened to a
    ``scheduler_address``; it never closes your own ``Client`` or cluster.
    """
    pool.shutdown_all(wait=wait, kill=kill)
    dask_backend = sys.modules.get(f"{__package__}.dask")
    if dask_backend is not None:  # imported only if backend="dask" was used
        dask_backend.close_clients()


def prepare(name: str, n_workers: int) -> None:
    """Start what the workers of a pool of *name* are forked from, before anything else.

    The forkserver's start (its imports, about 70 ms of CPU) then runs while this
    process imports and computes what the call needs (loky, cloudpickle, psutil are
    imported as first used): a first call waits for the longer of the two, not both.
    A call :func:`make_backend` would refuse raises its error here, and starts nothing.
    """
    _refuse_at_exit(name, n_workers)
    kind = BACKENDS.get(name)
    if kind in (LokyBackend, MultiprocessingBackend) and n_workers > 1:
        # (processes that import loky, the resource tracker of a multiprocessing pool's too)
        bad = lokycompat.loky_pickler_error()
        if bad is not None:
            raise bad
    if kind is LokyBackend and n_workers > 1:
        pool.prepare()


def make_backend(name: str, n_workers: int, **options: Any) -> Backend:
    """The backend *name* with *n_workers* workers (*options*: see ``Parallel``).

    A pool of one worker of a backend that says so (``inline_single``) runs in the
    calling thread instead, as joblib does for ``n_jobs=1``. Raises ``ValueError``
    for an unknown name.
    """
    _refuse_at_exit(name, n_workers)
    backend = _make(name, n_workers, **options)
    backend.nesting_level = mirror.nesting()[0]  # joblib's attribute: where the call is made
    return backend


def _refuse_at_exit(name: str, n_workers: int) -> None:
    """Raise ``RuntimeError`` for a pool of *name* whose workers can no longer start or run.

    Once the main thread has ended, a call non-daemon thread was running runs to its end
    (``ongoing.wait_at_exit``), and a call its tasks make on a threading pool's threads too
    (part of it), until that wait is over (also while the exit hooks before it run). A new
    call is refused, also from a non-daemon thread, which Python still runs: the exit has
    begun, when loky's and the standard library's executors refuse work ("cannot schedule
    new futures after interpreter shutdown"; joblib's loky calls fail so too), and the
    exit's hooks, which stop the pools before Python joins the threads (loky's joins the
    pools' threads there), are about to run or have run: a pool started then would be
    stopped under its call, or by nothing. Refused at once, the call says what to do.
    """
    if (
        name in ("loky", "threading")
        and n_workers > 1
        and lokycompat.interpreter_exiting()
        and not (mirror.nesting()[0] >= 1 and not ongoing.exit_waited())
        and not ongoing.admitted()  # (a call begun before the main thread ended)
    ):
        raise RuntimeError(
            f"a Parallel call with n_jobs={n_workers} on the {name} backend was made while the "
            "interpreter is exiting (from an atexit handler, a __del__ run at exit, or a thread "
            "still running after the main thread ended): its workers can no longer be started or "
            "used (a call a non-daemon thread was running then runs to its end; a new one does not "
            "start). Make the call before your program ends (join() the threads that make calls "
            "before the main thread ends), or pass n_jobs=1 to run its tasks in this thread."
        )


def _make(name: str, n_workers: int, **options: Any) -> Backend:
    init = (options.get("initializer"), options.get("initargs") or ())
    if init[0] is not None and name not in ("loky", "multiprocessing"):
        raise ValueError(
            f"initializer={init[0]!r:.100} runs once in each new worker process (loky, "
            f"multiprocessing), and the {name} backend has none: its tasks would run without "
            "what it sets. Call it yourself before the Parallel call, or use backend='loky'."
        )
    if name == "dask":
        from .dask import DaskBackend

        n_jobs = options.get("n_jobs", n_workers)  # n_jobs < 0 counts the cluster's threads
        return DaskBackend(n_jobs if n_jobs < 0 else n_workers, options.get("scheduler_address"))
    cls = BACKENDS.get(name)
    if cls is None:
        raise ValueError(f"unknown backend {name!r}; valid backends are {list(BACKENDS)}")
    if n_workers == 1 and cls.inline_single and init[0] is None:  # (an initializer: one worker process)
        return SequentialBackend()
    if cls is LokyBackend:
        return LokyBackend(n_workers, options.get("idle_worker_timeout"), options.get("worker_env"), *init)
    if cls is MultiprocessingBackend:
        return MultiprocessingBackend(
            n_workers,
            options.get("context"),
            *init,
            max_tasks_per_child=options.get("maxtasksperchild"),
            names_initializer=True,
        )
    return cls(n_workers)


# name -> class; "dask" is imported only when used: what choosing it needs is ClusterBackend
BACKENDS: Mapping[str, Any] = MappingProxyType(
    {
        "loky": LokyBackend,
        "threading": ThreadingBackend,
        "sequential": SequentialBackend,
        "multiprocessing": MultiprocessingBackend,
        "dask": ClusterBackend,
    }
)
