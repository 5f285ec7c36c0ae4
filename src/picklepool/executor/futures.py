"""``picklepool.Executor``: a ``concurrent.futures.Executor`` on picklepool's warm workers.

    submit(fn, *args) ──▶ Future, queued ──manager thread: coalesce while workers are busy──▶
      dispatch.Channel.send: functions pickled once per executor, tasks by the pickler,
      large arrays via shared memory ──▶ wire.Batch (isolate=True) ──loky──▶
      workers.runner: every task runs; an exception becomes a wire.Raised value ──▶
      replies.ReplyReader.read ──▶ each task's Future: its value, or its own exception

Tasks submitted while the workers are busy wait in a queue and leave together,
in batches sized like ``Parallel``'s automatic batches (``executor.batching``:
about 20 ms of work each, at most a share of the queue per worker), so 10,000
tiny ``submit`` calls cost a few dozen round trips, not 10,000. A task is
pending, and ``cancel()`` works, until its batch leaves. ``map(chunksize=n)``
sends chunks of *n* calls, several in one batch when they queue up (up to the
automatic batch size); each chunk travels as its function and its arguments.

One manager thread per executor sends batches and reads replies; loky's own
threads move the bytes. The worker processes are picklepool's shared warm pool
(the one ``Parallel`` uses): ``shutdown`` ends this executor, not the workers.
Two settings of ``ProcessPoolExecutor`` need workers of the executor's own, a
``multiprocessing.Pool`` (``executor.mpbackend``) stopped at ``shutdown``: an
``mp_context`` of the "fork" start method (tasks inherit the parent's globals),
and ``max_tasks_per_child`` (the pool's ``maxtasksperchild``; each batch then
carries one submission, so a worker's batches are its tasks).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import math
import multiprocessing
import numbers
import operator
import os
import queue
import threading
import time
import uuid
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor as _StdExecutor
from concurrent.futures import Future
from concurrent.futures._base import LOGGER as _LOGGER
from concurrent.futures._base import PENDING, RUNNING
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .. import keptmodules, lokycompat
from ..errors import PicklingError, WorkerCrashedError, pickling_type
from ..pickler import locks, runtime
from ..pickler.registry import resolve_pickler
from ..settings import NOT_SET, plain_number, resolve, resolve_settings
from ..wire import Failure, NotSent, Raised, TaskFailed
from ..workers import inherited, mirror
from ..workers.control import DUMPING, LOADING
from ..workers.control import RUNNING as RUNNING_STAGE
from ..workers.prologue import initialize, own_pool, start_pool_worker
from . import descriptors, gil, interrupts, limits, ongoing, poolstart, reaper, submitmap
from .backend import Backend
from .backends import BACKENDS, LokyBackend
from .batching import AutoBatcher
from .contexts import inherited_only, pool_context, why_own_pool
from .dispatch import PROGRESS_POLL, Channel, YoungGarbage, parent_state
from .exitcodes import status_advice
from .functions import Column, NotACall, describe_task, label
from .mpbackend import MultiprocessingBackend
from .replies import STOP_ITERATION_FIX, NotLoaded, Pending, crash_site

_WAKE = object()
_WAITED = (PENDING, RUNNING)  # the states a result() waits in
# .active: in an executor's manager thread, that executor's event queue (which its futures
# carry as .manager: a done-callback there waiting for one of them would wait for ever)
_in_manager = threading.local()
# seconds the manager thread waits for a future's lock that another thread holds, before
# completing that future from a thread of its own (_Future._complete)
CONTENDED = 0.05


class _Future(Future):  # type: ignore[type-arg]
    """The futures an ``Executor`` returns: a done-callback raising a ``BaseException``
    (``sys.exit()``, ``KeyboardInterrupt``) in the manager thread is logged, as the
    standard library logs an ``Exception``'s, instead of ending that thread (which left
    every later future of the standard library's executor waiting for ever). Run
    elsewhere (``cancel()``, ``add_done_callback`` on a done future), it propagates, as there.
    """

    # (number of the first call, its function): what a result(timeout) that passes names
    called: tuple[int, Any] | None = None
    manager: Any = None  # the event queue of the manager thread that completes it

    def __init__(self) -> None:
        super().__init__()
        self._pid = os.getpid()  # a forked child's copy is never completed (_forked)
        self._waiters = _Waiters(self)  # (concurrent.futures.wait and as_completed add theirs)

    def result(self, timeout: float | None = None) -> Any:
        self._forked()
        if self._state in _WAITED:
            self._own_manager("result", timeout)
        try:
            return super().result(timeout)
        except TimeoutError:
            if self.done() or self.called is None:  # the task's own TimeoutError
                raise
        raise TimeoutError(self.late(f"{timeout} s after result() was called")) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._forked()
        if self._state in _WAITED:
            self._own_manager("exception", timeout)
        return super().exception(timeout)

    def _own_manager(self, method: str | None, timeout: float | None) -> None:
        """In the manager thread that completes this future (a done-callback of another
        future of its executor): fail now, not wait for ever or for all of *timeout* (that
        thread would wait for itself; the standard library's executor hangs there too):
        ``RuntimeError``, or with a *timeout* the ``TimeoutError`` that wait would end in."""
        if self.manager is None or getattr(_in_manager, "active", None) is not self.manager:
            return
        index, fn = self.called or (0, None)
        what = f"{label(fn)}(...)" if fn is not None else "a call"
        if method is None:  # (a waiter added: timeout or not, it is not seen done in this wait)
            wait = "a concurrent.futures.wait() or as_completed() on it"
        else:
            wait = f"its {method}({'' if timeout is None else f'timeout={timeout!r}'})"
        message = (
            f"task {index} (the {_ordinal(index + 1)} call submitted to this Executor): {what}: "
            f"{wait} was asked for in a "
            "done-callback of this Executor's futures, which runs in the thread that completes "
            "them: it cannot finish while that thread waits"
        )
        fix = (
            ". Do not wait in a done-callback: add a done-callback to this future instead "
            "(chain the work), or wait for it in a thread of your own."
        )
        if method is None:
            raise RuntimeError(f"{message} (for ever, or for all of a timeout){fix}")
        if timeout is not None:
            raise TimeoutError(f"{message}, so this fails at once{fix}")
        raise RuntimeError(f"{message}, for ever{fix}")

    def _forked(self) -> None:
        """In a process forked while this future was pending: ``RuntimeError``, not a wait for
        ever (its call runs in the parent, whose manager thread completes the parent's copy)."""
        if self._pid != os.getpid() and not self.done():
            index, fn = self.called or (0, None)
            raise RuntimeError(
                f"task {index} (the {_ordinal(index + 1)} call submitted to this Executor): "
                f"{label(fn)}(...) was submitted in process {self._pid}, which this process was "
                "forked from while it was pending: it runs there, and this copy of its future "
                "would wait for ever. Get its result in that process, or submit it again to a "
                "new picklepool.Executor in this one."
            )

    def set_result(self, result: Any) -> None:
        self.called = None  # a finished call keeps neither its function nor its arguments
        self._complete(super().set_result, result)

    def set_exception(self, exception: BaseException | None) -> None:
        self.called = None
        self._complete(super().set_exception, exception)

    def _complete(self, finish: Callable[[Any], None], value: Any) -> None:
        """*finish(value)*: in the manager thread, once this future's lock is its own.

        A thread holds that lock while ``result()`` starts waiting, for microseconds. One
        that holds it longer (a finalizer the garbage collector ran inside ``result()``,
        making a call of this executor and waiting for it) would hold the manager thread
        back, and with it every other future of the executor, the finalizer's own: it waited
        for ever (the standard library's executor too). After :data:`CONTENDED` seconds
        this future is completed from a thread of its own, and the manager goes on.
        """
        manager = getattr(_in_manager, "active", None)
        condition = self._condition
        if manager is None or condition.acquire(timeout=CONTENDED):
            if manager is not None:
                condition.release()  # (the done-callbacks run without it, as the stdlib runs them)
            finish(value)
            return

        def later() -> None:
            _in_manager.active = manager  # (its done-callbacks run as in the manager thread)
            finish(value)

        threading.Thread(target=later, name="picklepool-completion", daemon=True).start()

    def cancel(self) -> bool:
        cancelled = super().cancel()
        if cancelled:
            self.called = None
        return cancelled

    def late(self, when: str) -> str:
        """The message of a wait for this future's result that ran out *when*."""
        index, fn = self.called or (0, None)
        return (
            f"task {index} (the {_ordinal(index + 1)} call submitted to this Executor): "
            f"{label(fn)}(...) was not done {when}; it goes on (cancel() stops a call only "
            "before it starts). Wait longer, or make the task faster."
        )

    def _invoke_callbacks(self) -> None:
        if getattr(_in_manager, "active", None) is None:
            return super()._invoke_callbacks()  # type: ignore[misc, no-any-return]
        for callback in self._done_callbacks:  # type: ignore[attr-defined]
            try:
                callback(self)
            except BaseException:  # noqa: BLE001 - the callback's: the manager thread goes on
                _LOGGER.exception("exception calling callback for %r", self)
        return None


# its repr and type name are the standard library's (``<Future at 0x... state=finished
# returned int>``, which logs and doctests show); pickle still finds it by its __qualname__
_Future.__name__ = "Future"


# Executors with submissions not yet done, held here so that one dropped without
# shutdown still runs them, as the standard library's does; each is let go (and can
# be collected, which gives its workers back) once it is idle.
_busy: set[Executor] = set()
_exiting = False  # the interpreter is exiting (_drain_at_exit ran): no executor takes work
_hooked: int | None = None  # the process that registered _drain_at_exit


def _drain_at_exit() -> None:
    """The interpreter exits: every executor runs what was submitted to it, then takes no more.

    As the standard library's exit hook (``concurrent.futures.process._python_exit``),
    which lets each executor's manager thread finish its pending work. Runs before
    loky's own hook and before ``reaper`` stops the pools (their workers would
    otherwise be stopped with calls still queued here), and before
    ``multiprocessing`` terminates the workers of an executor's own pool.
    """
    global _exiting
    if lokycompat.depth() >= 1:
        return  # a worker's exit does not wait for its nested executors (executor.reaper)
    ongoing.wait_at_exit()  # the calls of non-daemon threads first: they may still submit
    _exiting = True
    # a program that Ctrl-C ended does not wait for its calls: they are cancelled, the
    # workers stopped (the standard library's exit waits for every call submitted)
    stop = interrupts.exiting_on_ctrl_c()
    for executor in list(_busy):
        try:
            if stop:
                executor._terminate()
            else:
                executor.shutdown(wait=True)
        except Exception:  # noqa: BLE001 - at exit: drain the others anyway
            pass


def _hook_exit() -> None:
    """Register :func:`_drain_at_exit`, once per process."""
    global _hooked
    if _hooked == os.getpid() or _exiting or (lokycompat.interpreter_exiting() and not ongoing.admitted()):
        return  # registered; or exiting already, when nothing more can be registered
    _hooked = os.getpid()
    reaper.before_stop_at_exit(_drain_at_exit)  # before the pools it stops
    try:
        lokycompat.before_loky_exit(_drain_at_exit)  # before loky's hook, and with no loky pool
    except RuntimeError:  # "can't register atexit after shutdown": exiting
        pass


def _forget_in_child() -> None:
    """In a forked child: the parent's executors are not this process's to drain."""
    _busy.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


class _Work:
    """A queued submission: one call (``submit``) or a chunk of calls (``map``, joblib)."""

    __slots__ = ("future", "items", "chunk", "strip", "index", "back", "numeric", "caller")

    def __init__(
        self,
        future: Future[Any],
        items: Sequence[Any],
        chunk: bool,
        strip: int = 0,
        caller: int | None = None,
        numeric: mirror.CallerState | None = None,
    ) -> None:
        self.index = 0  # the number of the user's first call in it, counted by the executor
        self.future = future
        self.items = items  # (function, args, kwargs or None) triples, or a functions.Column
        self.chunk = chunk  # the future's result is the list of the calls' results
        self.strip = strip  # leading and trailing calls whose results are not the caller's
        self.back = False  # sent, and given back by its worker (workers.handback): running
        # the submitting thread's decimal context and numpy error handling, and the warnings
        # filters (workers.mirror.caller_state); None: read when it is queued (``map`` and
        # the joblib backend read theirs once, in the calling thread, for every call they
        # submit later or from other threads)
        self.numeric: mirror.CallerState | None = numeric
        # the thread the call was made for: an RLock it holds is not waited for when the
        # manager thread pickles the call (pickler.locks.snapshots_for)
        self.caller = caller


class _Waiters(list):  # type: ignore[type-arg]
    """A ``_Future``'s ``_waiters``: ``concurrent.futures.wait()`` and ``as_completed()``
    add one to each future they wait for. In a done-callback of the future's own executor
    (its manager thread, which completes it) that wait never saw it done: it waited for ever
    (or for all of its timeout, every other future of the executor held back meanwhile),
    as in the standard library's executor; it raises now, as ``result()`` there does."""

    __slots__ = ("_future",)

    def __init__(self, future: _Future) -> None:
        super().__init__()
        # weakly: no reference cycle, which kept a future (its result) past its last use
        # until the GC ran (the standard library's map frees each result it yielded)
        self._future = weakref.ref(future)

    def append(self, waiter: Any) -> None:
        future = self._future()
        if future is not None and future._state in _WAITED and future.manager is not None:  # type: ignore[attr-defined]
            future._own_manager(None, None)
        super().append(waiter)


class Executor(_StdExecutor):
    """A ``concurrent.futures.Executor`` whose tasks run on picklepool's warm workers.

    >>> from picklepool import Executor
    >>> with Executor(max_workers=2) as ex:
    ...     ex.submit(pow, 2, 5).result()
    32

    The first four parameters are ``ProcessPoolExecutor``'s, in its order (Python
    3.11: ``max_workers, mp_context, initializer, initargs, *, max_tasks_per_child``),
    so code written for it runs unchanged; picklepool's own options are keyword-only.

    max_workers: worker processes (positive int; ``TypeError`` for another type,
        ``ValueError`` for <= 0, as the standard library); None: ``parallel_config``'s
        or ``PICKLEPOOL_N_JOBS``'s n_jobs, else all usable cores (CPU affinity and
        cgroup quota counted, where the standard library takes ``os.cpu_count()``).
    mp_context: None, or a ``multiprocessing`` context (``TypeError`` for anything
        else, naming it). None, "spawn" and "forkserver": the tasks run on the warm
        loky workers, which, like spawned ones, inherit nothing from the parent (the
        default pickler sends functions of ``__main__`` by value). "fork": the
        executor forks a ``multiprocessing.Pool`` of its own at its first
        submission, as the standard library does, so the tasks see the parent's
        globals as they were then; it is stopped by ``shutdown``.
    initializer, initargs: ``initializer(*initargs)`` runs once in each worker
        before its first task of this executor (again in each replacement worker).
        ``TypeError`` if not callable. *initargs* holding ``multiprocessing`` queues,
        locks, events or shared values (which travel only as a process starts, as
        the standard library passes them) put the executor on a pool of its own
        (``workers.inherited``). If it raises, the executor is broken:
        pending and later futures raise ``BrokenProcessPool`` naming it and its
        exception (the ``__cause__``, with the worker's traceback after it).
    max_tasks_per_child: None, or a positive int (``TypeError`` / ``ValueError``
        otherwise): each worker runs at most that many of this executor's tasks
        (a ``submit``, or one chunk of ``map``, as in the standard library), then
        exits and is replaced by a fresh one. Runs on a ``multiprocessing.Pool`` of
        the executor's own with ``maxtasksperchild``, of *mp_context*'s start
        method ("spawn" when None, as the standard library); ``ValueError`` with
        "fork" (as the standard library). Each task then travels alone.
    pickler: as ``Parallel``'s ("hybrid" by default: functions defined in
        ``__main__`` and objects holding locks work).
    max_nbytes: arrays larger than this ("1M" by default; None: off) go to
        the workers through shared memory, once per executor.
    mmap_mode, temp_folder: as ``Parallel``'s.
    inner_max_num_threads, max_worker_memory, idle_worker_timeout: the worker
        limits, as ``Parallel``'s. The last two apply to the warm workers only:
        passing them with "fork" or *max_tasks_per_child* raises ``ValueError``.

    As the standard library's executors: ``submit(fn, *args, **kwargs)`` returns a
    ``Future``; a task's exception comes back through it with its own type (the
    worker's traceback as ``__cause__``); ``cancel()`` works until the task is
    sent; a worker that dies fails the pending futures with ``WorkerCrashedError``
    (a ``BrokenProcessPool``) and later submissions run on a fresh pool (where the
    standard library's executor stays broken). Errors name a task by the number of
    the call submitted: ``task 8 (the 9th call submitted to this Executor): f(8)``
    (each call of a ``map`` counts, chunked or not). Usable
    from asyncio: ``await loop.run_in_executor(ex, f, x)``. The worker processes
    are shared and stay warm after ``shutdown`` (``picklepool.shutdown()`` stops
    them). Raises ``ValueError`` for a bad setting, naming it.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        pickler: Any = NOT_SET,
        max_nbytes: int | str | None = NOT_SET,
        mmap_mode: str | None = NOT_SET,
        temp_folder: str | None = NOT_SET,
        inner_max_num_threads: int | None = NOT_SET,
        max_worker_memory: int | str | None = NOT_SET,
        idle_worker_timeout: float | None = NOT_SET,
    ) -> None:
        keptmodules.check()
        if max_workers is not None:
            max_workers = plain_number(max_workers)  # np.int64(2): as the standard library takes it
            if not isinstance(max_workers, int) or isinstance(max_workers, bool):
                raise TypeError(
                    f"max_workers must be an integer: Executor(max_workers={max_workers!r}) is not "
                    "valid; use a positive number of worker processes, or None for all usable cores"
                )
            if max_workers <= 0:
                raise ValueError(
                    f"max_workers must be greater than 0: Executor(max_workers={max_workers!r}) is not "
                    "valid; use a positive number of worker processes, or None for all usable cores"
                )
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be a callable: Executor(initializer={initializer!r})")
        try:
            iter(initargs)
        except TypeError:
            raise TypeError(
                "initargs must be a tuple of the initializer's arguments: "
                f"Executor(initargs={initargs!r:.100}) is not one; use initargs=(value,) for one argument"
            ) from None
        own_context = pool_context(mp_context, max_tasks_per_child)
        # initargs that travel only as a process starts (a multiprocessing queue or lock, as
        # ProcessPoolExecutor passes them): a pool of its own, started with them
        inherit = initializer is not None and inherited_only(initargs)
        if inherit and own_context is None:
            # None: the platform's default, as the standard library (where the objects were made)
            own_context = mp_context if mp_context is not None else multiprocessing.get_context()
        if own_context is not None:
            loky_only = {"max_worker_memory": max_worker_memory, "idle_worker_timeout": idle_worker_timeout}
            given = [f"{k}={v!r}" for k, v in loky_only.items() if v is not NOT_SET]
            if given:
                raise ValueError(
                    f"Executor({', '.join(given)}) applies to picklepool's warm workers, not to the "
                    f"pool of its own that {why_own_pool(mp_context, max_tasks_per_child, inherit)} needs; "
                    "drop it (max_tasks_per_child also bounds a leaking worker's life)"
                )
        if max_workers is None and resolve("n_jobs")[1] == "default":
            max_workers = -1  # the standard library's default, not Parallel's (joblib's 1)
        args = {
            "n_jobs": max_workers,
            "pickler": pickler,
            "max_nbytes": max_nbytes,
            "mmap_mode": mmap_mode,
            "temp_folder": temp_folder,
            "inner_max_num_threads": inner_max_num_threads,
            "max_worker_memory": max_worker_memory,
            "idle_worker_timeout": idle_worker_timeout,
            "backend": "loky",
        }
        s = resolve_settings(args, BACKENDS, mirror.nesting()[1])
        self._max_workers = s.n_workers
        # as the standard library's: max_tasks_per_child makes None mean "spawn"
        spawned = mp_context is None and max_tasks_per_child is not None
        self._mp_context = own_context if spawned else mp_context
        self._max_tasks_per_child = max_tasks_per_child
        self._initializer, self._initargs = initializer, initargs
        env = limits.worker_env(s.inner_max_num_threads, s.n_workers)
        # Made by a non-daemon thread as the main thread ends (the first one imports and starts
        # what it needs: half a second), it is that thread's, as a call it runs: the exit waits
        # until the thread shuts it down (or ends), and takes its submissions meanwhile, as the
        # standard library's executor, made at once, takes those that follow (it refused them).
        exit_token = ongoing.begin(shutdown=False, at_exit=True)
        admitted = ongoing.admit(exit_token)
        self._exit_token: int | None = None  # its token in executor.ongoing, made as the exit began
        try:
            self._init_pool(
                s, env, own_context, mp_context, initializer, initargs, inherit, max_tasks_per_child
            )
            kept = lokycompat.interpreter_exiting() and ongoing.admitted() and not _exiting
        except BaseException as exc:
            ongoing.end(exit_token)
            clear = descriptors.explained(exc, s.n_workers)
            if clear is not None:
                raise clear from exc
            raise
        finally:
            ongoing.admit(admitted)
        if kept:
            self._exit_token = exit_token
        else:
            ongoing.end(exit_token)
        keptmodules.note()

    def _init_pool(
        self,
        s: Any,
        env: Any,
        own_context: Any,
        mp_context: Any,
        initializer: Callable[..., Any] | None,
        initargs: tuple[Any, ...],
        inherit: bool,
        max_tasks_per_child: int | None,
    ) -> None:
        """``__init__``'s pool, channel and state (an ongoing call's: see there)."""
        backend: Backend
        if own_context is None:
            _refuse_at_exit(ongoing.admitted())  # the warm pool can no longer be started or used
        _refuse_in_daemon()
        _hook_exit()
        inherited_key = uuid.uuid4().hex if inherit else ""  # where its workers keep the initargs
        lokycompat.load()  # before a process is forked (see there)
        bad = lokycompat.loky_pickler_error()  # (its processes import loky)
        if bad is not None:
            raise bad
        if own_context is None and initializer is None:  # started fresh, as "spawn" does: the warm pool
            backend = LokyBackend(s.n_workers, s.idle_worker_timeout, env)
        elif own_context is None:
            # Its initializer's changes to the process stay in the workers that ran it: a pool
            # of its own (settings no other call has), given up at its shutdown, so that no
            # other call's task runs in them (they ran later Parallel calls and executors).
            backend = LokyBackend(s.n_workers, s.idle_worker_timeout, env, own_pool, (uuid.uuid4().hex,))
        else:  # "fork", max_tasks_per_child or inherited initargs: a multiprocessing.Pool of its own
            start: Callable[..., None] = start_pool_worker
            start_args: tuple[Any, ...] = (env,)
            if inherit:
                start, start_args = inherited.start_worker, (env, inherited_key, tuple(initargs))
            backend = MultiprocessingBackend(
                s.n_workers,
                own_context,
                start,
                start_args,
                max_tasks_per_child=max_tasks_per_child,
                lazy=True,
            )
        # a worker counts the pool's tasks (batches): each then carries one submission
        self._one_per_batch = max_tasks_per_child is not None
        picked = resolve_pickler(s.pickler, source=s.sources["pickler"])[0]
        self._channel = Channel(
            backend,
            picked,
            worker_limits=limits.for_call(env, s.max_worker_memory),
            max_nbytes=s.max_nbytes,
            mmap_mode=s.mmap_mode,
            temp_folder=s.temp_folder,
            isolate=True,
            keep_stateful=False,
        )
        self._channel.origin = "this Executor"
        self._closed = False
        self._stopped = False  # the workers were stopped on purpose (_terminate)
        self._pid = os.getpid()  # a forked child cannot use it (_put)
        self._prologue: list[Any] = []
        if initializer is not None:
            token = self._channel.functions.token  # the functions it sends carry it too
            created = poolstart.settings()  # what it sets stays until the parent changes it
            if inherit:  # the initargs are the worker's already
                self._prologue = [(inherited.initialize, (token, inherited_key, initializer, created), None)]
            else:
                self._prologue = [(initialize, (token, initializer, tuple(initargs), created), None)]
            self._initializer_label = label(initializer)
        self._lock = threading.Lock()
        # Held while a batch is sent and while the workers are stopped: a batch taken off
        # the queue just before terminate_workers() is either sent before the kill (and
        # breaks with the pool) or sees _stopped, never sent to the pool started after it.
        self._send_lock = threading.RLock()
        self._queue: deque[_Work] = deque()
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._woken = False
        self._max_inflight = 2 * s.n_workers
        self._batcher = AutoBatcher(s.n_workers)
        self._works: dict[int, list[_Work]] = {}  # batch seq -> what it carries
        # batch seq -> the index of its first call (after its frames) and the tasks' end,
        # for a batch whose worker may give back the calls a long one keeps waiting
        self._splittable: dict[int, tuple[int, int]] = {}
        self._reclaimed_at = 0.0  # when the workers were last asked for given-back calls
        self._checked_at = time.monotonic()  # when the pool was last looked after (_check)
        self._seq = itertools.count()
        self._next_task = 0  # tasks sent, initializers and joblib's config frames included
        self._next_call = 0  # the user's calls submitted: how errors number them
        self._shutdown = False
        self._broken: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._ongoing: int | None = None  # its token in executor.ongoing while it has work (_idle)
        self._gil = gil.Scope()

    # -- submitting ------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; return its ``Future``.

        Raises ``RuntimeError`` after ``shutdown``, ``BrokenProcessPool`` when the
        initializer failed, ``TypeError`` when *fn* is not callable (here, where the
        standard library's fails the future in a worker). A function or argument
        that cannot be pickled fails the future with ``picklepool.PicklingError``
        naming it.
        """
        _need_callable(fn, "submit")
        fut: Future[Any] = _Future()
        self._put(_Work(fut, [(fn, args, kwargs or None)], False))
        return fut

    def _submit_calls(
        self,
        items: Sequence[Any],
        strip: int = 0,
        caller: int | None = None,
        numeric: mirror.CallerState | None = None,
    ) -> Future[Any]:
        """One batch of ``(function, args, kwargs)`` calls; the future holds their results.

        The first and last *strip* calls (``workers.prologue``) run but their
        results are dropped. For ``map`` chunks and the joblib backend, which gives
        the thread of its ``joblib.Parallel`` call as *caller* (it submits from this
        executor's manager thread too); else the calling thread. *numeric*: the
        numeric settings and warnings filters (``mirror.caller_state()``) the calls run with, read by the
        caller when it started them; None: the submitting thread's, now.
        """
        fut: Future[Any] = _Future()
        self._put(_Work(fut, items, True, strip, caller, numeric))
        return fut

    def _put(self, work: _Work) -> None:
        keptmodules.check()  # (sys.modules restored since the first call: the same modules again)
        if work.numeric is None:
            work.numeric = mirror.caller_state()  # the submitter's, not the manager thread's
        if work.caller is None:
            work.caller = threading.get_ident()
        with self._lock:
            if self._pid != os.getpid():
                # its manager thread and workers are the parent's: the future waited for ever
                raise RuntimeError(
                    f"this picklepool.Executor was created in process {self._pid}, which this "
                    "process was forked from: its workers and manager thread are that "
                    "process's. Create a new picklepool.Executor in this process."
                )
            if self._broken is not None:  # the initializer's exception, as the first time
                raise BrokenProcessPool(str(self._broken)) from self._broken.__cause__
            if self._shutdown:
                _refuse_at_exit()  # shut down by the interpreter's exit (_drain_at_exit), not by you
                raise RuntimeError("cannot schedule new futures after shutdown of this picklepool.Executor")
            if _exiting or isinstance(self._channel.backend, LokyBackend):
                _refuse_at_exit(self._admits())  # every executor, as the standard library's
            work.index = self._next_call
            self._next_call += len(work.items) - 2 * work.strip
            if type(work.future) is _Future:
                work.future.manager = self._events  # (a done-callback here must not wait for it)
                if not work.strip:  # for result(timeout)'s error
                    items = work.items
                    work.future.called = (work.index, items.fn if type(items) is Column else items[0][0])
            self._queue.append(work)
            _busy.add(self)
            wake = not self._woken and len(self._channel.inflight) < self._max_inflight
            if wake:
                self._woken = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_manage,
                    args=(
                        weakref.ref(self, functools.partial(_wake, self._events)),
                        self._events,
                        self._channel,
                    ),
                    name="picklepool-executor",
                    daemon=True,
                )
                self._thread.start()
            if self._ongoing is None and self._channel.backend.shutdown_stops:
                # picklepool.shutdown() in another thread lets what it has to run end first
                self._ongoing = ongoing.begin(self._thread)
        if wake:
            self._events.put(_WAKE)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[Any]:
        """``fn`` over the zipped *iterables* (up to the shortest): an iterator of results, in order.

        The calls are all submitted at once (as the standard library does);
        *chunksize* calls travel as one chunk (chunks that queue up behind busy
        workers leave several per batch). *buffersize* (Python 3.14's): at most that
        many submissions (chunks, with *chunksize*) ahead of the results read; the
        iterables are read as the results are, so they may be endless. Reading the
        iterator raises a task's exception when it reaches it, and ``TimeoutError``
        when a result is not ready *timeout* seconds after this call; closing it
        early cancels the calls not yet sent. Raises ``ValueError`` for chunksize < 1
        or buffersize < 1, ``TypeError`` for a buffersize that is not an int, as the
        standard library, and ``TypeError`` for a *fn* that is not callable, a
        chunksize that is not an int or a timeout that is not a number (the standard
        library's ``TypeError`` for those comes from deeper, and says less). A subclass
        that overrides :meth:`submit` gets every chunk through it, as the standard
        library's (``executor.submitmap``).
        """
        try:  # an int or numpy's (the standard library fails later, with a bare TypeError)
            chunksize = operator.index(chunksize)
        except TypeError:
            raise TypeError(
                f"chunksize must be an integer: map(chunksize={chunksize!r}) is not valid"
            ) from None
        if chunksize < 1:
            raise ValueError(f"chunksize must be >= 1: map(chunksize={chunksize!r}) is not valid")
        if timeout is not None and (not isinstance(timeout, numbers.Real) or isinstance(timeout, bool)):
            raise TypeError(
                f"timeout must be a number of seconds or None: map(timeout={timeout!r}) is not valid"
            )
        if buffersize is not None:
            if not isinstance(buffersize, int) or isinstance(buffersize, bool):
                raise TypeError(f"buffersize must be an integer or None: map(buffersize={buffersize!r})")
            if buffersize < 1:
                raise ValueError(f"buffersize must be None or > 0: map(buffersize={buffersize!r})")
        _need_callable(fn, "map")
        end = None if timeout is None else time.monotonic() + float(timeout)  # numpy's too
        if type(self).submit is not Executor.submit:  # a subclass's submit sees every call
            return submitmap.map_through_submit(self, fn, iterables, end, chunksize, buffersize)
        # every call of the map runs with this thread's numeric settings and warnings filters
        # as they are now, also those submitted later, as the results are read (buffersize),
        # maybe in another thread
        numeric = mirror.caller_state()
        if buffersize is None:
            # every chunk stays alive until read: the cyclic GC would only rescan them
            # while they are made, so it waits (as in Parallel), but for the young garbage
            # the iterables make (dispatch.pull)
            gc_was_on = gc.isenabled()
            gc.disable()
            try:
                made = deque(_submissions(weakref.ref(self), fn, iterables, chunksize, numeric, gc_was_on))
            finally:
                if gc_was_on:
                    gc.enable()
            return _results(made, None, end, chunked=chunksize > 1, timeout=timeout)
        # weakly: an unread iterator does not keep the executor alive (as the standard library)
        units = _submissions(weakref.ref(self), fn, iterables, chunksize, numeric)
        return _results(
            deque(itertools.islice(units, buffersize)), units, end, chunked=chunksize > 1, timeout=timeout
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions; with *cancel_futures*, cancel the tasks not yet sent.

        *wait*: return when every sent task is done. The shared worker processes
        stay warm for later calls (``picklepool.shutdown()`` stops them).
        """
        try:
            self._shut(wait, cancel_futures)
        finally:  # (made as the exit began: the exit's wait for it ends, and its drain runs the rest)
            token, self._exit_token = self._exit_token, None
            if token is not None:
                ongoing.end(token)

    def _admits(self) -> bool:
        """Whether a submission is taken although the interpreter exits: a non-daemon thread
        made this executor as the exit began (``__init__``), and the exit still waits for it
        (its submissions, and those of the callbacks of its futures, a joblib call's)."""
        return self._exit_token is not None and not ongoing.exit_waited()

    def _shut(self, wait: bool, cancel_futures: bool) -> None:
        """:meth:`shutdown`, but for its token."""
        with self._lock:
            self._shutdown = True
            cancelled = []
            if cancel_futures:  # calls a worker gave back were sent, and run: they stay
                cancelled = [w for w in self._queue if not w.back]
                self._queue = deque(w for w in self._queue if w.back)
            thread = self._thread
        for work in cancelled:
            # notified too: concurrent.futures.wait and as_completed count a future only
            # once it is (they waited for ever on these, as on the standard library's:
            # CPython gh-87893)
            if work.future.cancel():
                work.future.set_running_or_notify_cancel()
        if thread is None:
            self._close()
            return
        self._events.put(_WAKE)
        if wait and thread is not threading.current_thread():
            thread.join()

    def _close(self) -> None:
        """The end: this executor's files go, and its hold on the shared warm pool (or its own pool)."""
        if not self._closed:
            self._closed = True
            _release(self._channel)

    def _number_anew(self) -> None:
        """The joblib backend's next call on this executor (a ``with joblib.Parallel()``
        block keeps it): its errors number its tasks from 0, as the call's own items."""
        with self._lock:
            self._next_call = 0

    def _abort(self) -> None:
        """Stop a call whose results nobody will read (joblib's abort after a task's error).

        What is not sent is cancelled; the tasks already sent run to their end, as in
        ``Parallel`` after an error (the workers may be shared with other calls: see
        :meth:`_terminate` for stopping them), and the call's shared-memory files go
        now, as ``Parallel``'s do (its running tasks have mapped theirs).
        """
        self.shutdown(wait=False, cancel_futures=True)
        self._channel.buffers.close()

    def _terminate(self) -> None:
        """Stop now: cancel what is not sent, and kill the workers running the rest.

        For Ctrl-C and joblib's ``abort_everything`` (as joblib's loky backend kills
        its workers): the shared pool is replaced on the next call.
        """
        with self._send_lock:
            self._stopped = True
            self.shutdown(wait=False, cancel_futures=True)
            self._channel.backend.shutdown(kill=True)
            thread = self._thread
        # its manager thread fails what was running, then removes the executor's files:
        # done when this returns (joblib's Parallel raises right after), not a moment later
        if thread is not None and thread is not threading.current_thread():
            thread.join(reaper.EXIT_DEADLINE)

    def terminate_workers(self) -> None:
        """Python 3.14's: stop the workers now, and shut the executor down.

        Tasks not yet sent are cancelled; those running fail with
        ``WorkerCrashedError`` (a ``BrokenProcessPool``); later submissions raise
        ``RuntimeError``. On the shared warm pool (not "fork", no
        ``max_tasks_per_child``) this stops its workers for every user of it, as
        Ctrl-C does; a new pool starts at the next call.
        """
        self._terminate()

    def kill_workers(self) -> None:
        """Python 3.14's: as :meth:`terminate_workers` (picklepool kills the workers in both)."""
        self._terminate()

    def __reduce__(self) -> Any:
        """Refused with the fix (``pickler.runtime.refuse_pool``): its workers are this process's."""
        return runtime.refuse_pool(self)

    def __copy__(self) -> Executor:
        """``copy.copy``: a shallow copy sharing this one's workers, as the standard library's
        executors give (``copy`` would otherwise go through :meth:`__reduce__`)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> Any:
        """As the standard library's (``shutdown(wait=True)``), but Ctrl-C stops at once
        (in the block, or while its end waits for the calls).

        Also under ``asyncio.run``, where Ctrl-C leaves the block as the main task's
        ``CancelledError`` (``executor.interrupts``); a task's own ``KeyboardInterrupt``
        (``TaskInterruptError``) is a task's error, which waits as any other.
        """
        if exc_type is not None and interrupts.ctrl_c(exc_type):
            self._terminate()
            return False
        try:
            return super().__exit__(exc_type, exc_val, exc_tb)
        except BaseException as exc:
            # Ctrl-C while the block's end waits for its calls (the usual moment): they ran on,
            # holding the shared warm pool, and the next call waited behind them
            if interrupts.ctrl_c(type(exc)):
                self._terminate()
            raise

    # -- the manager thread ----------------------------------------------------------------

    def _idle(self) -> None:
        """Nothing left to run (its lock held): no longer kept for its work (``_busy``), nor
        waited for by a ``picklepool.shutdown()``."""
        _busy.discard(self)
        token, self._ongoing = self._ongoing, None
        if token is not None:
            ongoing.end(token)

    def _step(self, event: Any) -> bool:
        """Handle *event* and any others waiting, send what fits; True when this executor is done."""
        while True:
            if event is not _WAKE:
                self._finish(event)
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
        self._dispatch()
        with self._lock:
            idle = not self._channel.inflight and not self._queue
            done = idle and self._shutdown
            if idle:
                self._idle()
        if idle:
            self._gil.restore()
        if done:
            self._close()
        return done

    def _take(self) -> list[_Work]:
        """The next batch's submissions, taken off the queue (lock held)."""
        q = self._queue
        if q[0].chunk:
            head = q.popleft()
            column = head.items
            if type(column) is not Column or self._one_per_batch:
                return [head]
            # Chunks of one map queued behind it leave with it, as many as one batch of
            # the automatic size holds; the queue is the end in sight, so no more than a
            # quarter of a worker's share of it (as Parallel's tail, executor.batching).
            n = len(column)
            limit = self._batcher.next_size((len(q) + 1) * n)
            chunks = [head]
            while q and type(q[0].items) is Column and n + len(q[0].items) <= limit:
                nxt: Any = q[0].items
                if nxt.fn is not column.fn or nxt.single is not column.single or q[0].numeric != head.numeric:
                    break
                chunks.append(q.popleft())
                n += len(nxt)
            self._batcher.last = n
            return chunks
        if self._one_per_batch:
            return [q.popleft()]
        if self._max_workers > 1 and len(self._channel.inflight) < self._max_workers:
            # A worker is idle: the next call starts on it now, alone, as with the standard
            # library's executor; in a batch, one could wait behind a slow one while another
            # worker has nothing to do. A lone worker runs them in order either way. (Map's
            # chunks are shared out between the workers above.)
            return [q.popleft()]
        # a share of the queue per worker at most: a worker gives back the calls that
        # wait behind a long one (workers.handback), where map's chunks above cannot
        size = self._batcher.next_size()
        size = min(size, max(1, math.ceil(len(q) / self._max_workers)))
        taken: list[_Work] = []
        while q and len(taken) < size and not q[0].chunk:
            if taken and q[0].numeric != taken[0].numeric:
                break  # a batch runs with one numeric setting: each call with its submitter's
            taken.append(q.popleft())
        self._batcher.last = len(taken)
        return taken

    def _dispatch(self) -> None:
        inflight = self._channel.inflight
        while len(inflight) < self._max_inflight:
            with self._lock:
                self._woken = False
                if not self._queue:
                    return
                taken = self._take()
            works = []
            for w in taken:
                sendable = _sendable_now(w)
                if sendable is None:
                    self._when_free(w)
                elif sendable:
                    works.append(w)
            if works:
                self._gil.lower()
                self._send(works)

    def _send(self, works: list[_Work]) -> None:
        channel = self._channel
        items: Sequence[Any]
        column = works[0].items if not self._prologue else None
        if type(column) is Column:  # map chunks (of one map: see _take): sent as their arguments
            if len(works) > 1:
                args = list(itertools.chain.from_iterable(w.items.args for w in works))  # type: ignore[attr-defined]
                column = Column(column.fn, args, column.single)
            items = column
        else:
            column = None
            items = list(self._prologue)
            for w in works:
                items.extend(w.items)
        seq, first = next(self._seq), self._next_task
        self._next_task += len(items)
        batch = Pending(seq, first, items)
        batch.apart = len(works) > 1  # a batch the worker cannot load: each sent again alone
        skip = len(self._prologue) if column is None else 0
        # single calls (not map's or joblib's chunks): a worker may give back those a long
        # one keeps waiting (workers.handback), for another worker to run; a lone worker
        # would run them after the batches sent since: out of the order submitted
        splittable = (
            self._max_workers > 1 and column is None and len(works) > 1 and not any(w.chunk for w in works)
        )
        batch.numbering = numbering = _Numbering(first, skip, works, self._naming())
        if channel.parent is not None:  # the parent as it is now: sys.path, cwd... (workers.mirror)
            channel.parent = parent_state(channel.backend.n_workers, caller=works[0].numeric)
        try:
            with self._send_lock, locks.snapshots_for(frozenset(w.caller for w in works if w.caller)):
                if self._stopped:  # taken off the queue just before terminate_workers()
                    _fail(works, BrokenProcessPool(_STOPPED_BEFORE_SENT))
                    return
                batch.future = channel.send(
                    items, first, column, describe=numbering.describe, splittable=splittable
                )
        except BaseException as exc:  # noqa: BLE001 - delivered through the futures
            if len(works) > 1:  # find the one that cannot be sent: the others go on
                for w in works:
                    self._send([w])
                return
            if isinstance(exc, NotACall):  # named by the user's index, not the batch's
                exc = NotACall(
                    exc.item, None if exc.wire is None else numbering.user_index(exc.wire), exc.wire
                )
            clear = descriptors.explained(exc, channel.backend.n_workers)
            if clear is not None:
                clear.__cause__ = exc
                exc = clear
            _fail(works, exc)
            return
        channel.inflight[seq] = batch
        self._works[seq] = works
        keptmodules.note()  # what sending it imported (the first batch's pickler, loky...)
        if splittable:
            self._splittable[seq] = (first + skip, first + len(items))
        batch.future.add_done_callback(lambda _f: self._events.put(batch))

    def _reclaim(self) -> None:
        """Send again the calls that workers gave back (``workers.handback``), first in line."""
        self._reclaimed_at = time.monotonic()
        session = self._channel.session
        if not self._splittable or session is None:
            return
        call_id = self._channel.call_id
        for pid in session.worker_pids():
            status = session.worker_status(pid)
            if status is None or status[0] != call_id or status[4] < 0:
                continue
            at = status[4]
            for seq, (start, end) in list(self._splittable.items()):
                if start < at < end:  # its first calls ran, or run: the others came back
                    self._give_back(seq, at)

    def _give_back(self, seq: int, at: int) -> None:
        """Batch *seq*'s calls from task *at* on did not run in its worker: queue them first."""
        start, _end = self._splittable.pop(seq)
        works = self._works.get(seq)
        if works is None:
            return
        n = max(0, at - start)  # each call is one task (a splittable batch's)
        self._works[seq] = works[:n]
        self._requeue(works[n:])
        self._splittable[seq] = (start, start + n)  # its reply holds the results of those only

    def _when_free(self, work: _Work) -> None:
        """*work*'s future is held by another thread (see ``_Future._complete``): wait for it
        in a thread of its own, then put the call first in line again, so that this thread
        goes on with the others (the holder may be waiting for one of them)."""
        events, lock = self._events, self._lock
        queued = self._queue

        def later() -> None:
            with work.future._condition:  # type: ignore[attr-defined]
                pass
            with lock:
                queued.appendleft(work)
            events.put(_WAKE)

        threading.Thread(target=later, name="picklepool-contended", daemon=True).start()

    def _requeue(self, back: list[_Work]) -> None:
        """Calls a worker gave back: first in line, already running (not cancellable)."""
        for w in back:
            w.back = True
        with self._lock:
            self._queue.extendleft(reversed(back))

    def _check(self) -> None:
        """Look after the pool (``executor.reaper``), never wait blindly: after a while with no
        reply, and at least that often while replies come (see ``_manage``)."""
        self._checked_at = time.monotonic()
        if not self._channel.inflight:
            return
        notes, stalled = self._channel.backend.check()
        for note in notes:
            warnings.warn(f"picklepool: {note}", RuntimeWarning, stacklevel=2)
        if stalled is None:
            return
        backend = self._channel.backend
        if self._stopped:
            # terminate_workers() or Ctrl-C stopped the workers (loky's manager thread ends
            # with them): that is what happened, not a stalled pool (as _deliver says)
            for batch in self._channel.inflight.values():
                _fail(self._works.pop(batch.seq, []), WorkerCrashedError(_STOPPED_WHILE_RUNNING))
            self._channel.inflight.clear()
            self._splittable.clear()
            return
        lost: tuple[int, int] | None = None
        if isinstance(backend, MultiprocessingBackend):
            lost, backend.lost = backend.lost, None
            backend.restart()  # its own pool: the next batch starts a fresh one
        else:
            backend.shutdown(kill=True)  # the shared warm pool is replaced at the next batch
        batches = sorted(self._channel.inflight.values(), key=lambda b: b.first)
        # the batch the dead worker ran, when it said which (a multiprocessing pool's worker)
        dead = None
        if lost is not None and lost[0] == self._channel.call_id:
            dead = next((b for b in batches if b.first <= lost[1] < b.first + b.n), None)
        advice = status_advice(stalled)  # a dead worker of a multiprocessing pool: why
        for batch in batches:
            works = self._works.pop(batch.seq, [])
            if dead is None or batch is dead:
                text = f"{stalled} ({batch.tasks()} never came back)"
            else:
                # not that worker's: stopped with the pool it broke (terminate() fails them all)
                text = (
                    f"{batch.tasks()} failed because the pool broke: "
                    f"{_pool_death(stalled, dead.describe(lost[1]) if lost else '')}"
                )
            _fail(
                works,
                WorkerCrashedError(f"{text}. {advice} Submit again." if advice else f"{text}; submit again"),
            )
        self._channel.inflight.clear()
        self._splittable.clear()

    def _check_while_busy(self) -> None:
        """Replies (or submissions) keep coming: :meth:`_check` too, every so often, on a pool
        whose dead worker's task is lost without a word (``multiprocessing.Pool``).

        The death was found only after a pause of ``PROGRESS_POLL`` seconds, which a steady
        stream of submissions never makes: the lost task's future waited for ever. Not on
        loky, whose own report of a crash, already queued, names the task that crashed.
        """
        if not self._channel.backend.reports_deaths and time.monotonic() - self._checked_at >= PROGRESS_POLL:
            self._check()

    def _finish(self, batch: Pending) -> None:
        """A batch came back: each submission's future gets its result or exception.

        Then the batch lets go of the calls and of its loky future (whose callback
        holds the batch: a cycle), so a submitted function, its arguments and its
        result are freed as soon as the caller drops them, by reference counting
        alone, as with the standard library's executor (CPython issue 16284).
        """
        try:
            self._deliver(batch)
        finally:
            batch.items = batch.numbering = batch.future = None

    def _deliver(self, batch: Pending) -> None:
        if self._channel.inflight.pop(batch.seq, None) is None:
            return  # given up on already (a stalled pool, see _check)
        works = self._works.pop(batch.seq)
        span = self._splittable.pop(batch.seq, None)  # (first call, end) if it could give calls back
        try:
            values, seconds = self._channel.replies.read(batch)
        except NotLoaded:
            # none of its calls ran: each goes again alone and fails, or not, on its own (a
            # good call batched with one whose arguments do not unpickle got that one's error)
            for w in works:
                self._send([w])
            return
        except BaseException as exc:  # noqa: BLE001 - delivered through the futures
            # loky reports the kill as its shutdown or as dead workers ("usually a segfault"),
            # whichever its manager thread sees first: either way, the workers were stopped
            if self._stopped:
                crashed = WorkerCrashedError(_STOPPED_WHILE_RUNNING)
                crashed.__cause__ = exc
                exc = crashed
            if not isinstance(exc, WorkerCrashedError):
                _fail(works, exc)
                return
            # as the stdlib: every pending future breaks; each told what happened to its call
            with self._lock:
                queued = list(self._queue)
                self._queue.clear()
            for w in works:
                _fail([w], self._crashed(w, batch, exc))
            for w in queued:
                if _sendable(w):
                    _fail([w], self._crashed(w, None, exc))
            return
        self._batcher.record(len(values), seconds)
        k = len(self._prologue)
        if k and type(values[0]) is Raised:
            self._break(batch, works, values[0])
            return
        ran = max(0, len(values) - (span[0] - batch.first)) if span is not None else len(works)
        if ran < len(works):  # given back before the status showed it: sent again, first
            self._requeue(works[ran:])
            works = works[:ran]
        for w in works:
            n = len(w.items)
            mine, k = (values, n) if k == 0 and n == len(values) else (values[k : k + n], k + n)
            if w.chunk:
                if w.strip:
                    mine = mine[w.strip : n - w.strip]
                raised = (
                    next((v for v in mine if type(v) is Raised), None)
                    if Raised in set(map(type, mine))
                    else None
                )
                if raised is None:
                    w.future.set_result(mine)
                else:
                    at = next(i for i, v in enumerate(mine) if v is raised)
                    w.future.set_exception(self._error(w.index + at, w.items[at + w.strip], raised))
            elif type(mine[0]) is Raised:
                w.future.set_exception(self._error(w.index, w.items[0], mine[0]))
            else:
                w.future.set_result(mine[0])

    def _crashed(self, work: _Work, batch: Pending | None, exc: WorkerCrashedError) -> BaseException:
        """The error of *work*, sent in *batch* (None: still queued here), failed by a crash.

        The call the dead worker was running gets the crash's error (naming it, the exit
        code or signal, what to do). Every other call it failed gets its own: naming
        itself, what it was doing (running on another worker, killed with the pool;
        waiting behind another call in a worker; sent and waiting for a worker; queued
        here), and the call whose worker died as the cause (the standard library's
        executor gives each the same words, naming no call).

        Under the joblib backend every future gets the crash's error, as under joblib's
        loky backend: joblib raises the first failed batch's, in submission order, and
        that must name the call whose worker died, not a bystander of it.
        """
        if not self._naming().own:
            return exc
        own = _Numbering(0, 0, [work], self._naming()).tasks()
        text = str(exc).replace(_POOL_RECOVERY, _EXECUTOR_RECOVERY)
        site = crash_site(exc)
        span = _span(work, batch)
        if self._stopped or site is None:  # what the workers were on is not known
            if span is None and not self._stopped:
                return _crash_copy(exc, f"{own} {_QUEUED_HERE}, when {text}")
            return _crash_copy(exc, f"{own}: {text}")
        start, end = span if span is not None else (-1, -1)
        lo, hi = start + work.strip, end - work.strip  # the wire indices of the user's calls
        dead, running = site.dead, site.running
        stage = running.get(dead, (0, RUNNING_STAGE))[1] if dead is not None else RUNNING_STAGE
        if dead is not None and start <= dead < end and (stage != RUNNING_STAGE or lo <= dead < hi):
            # its call is the one the dead worker was running (or its batch, being unpickled
            # or its results pickled: with other calls, each named first)
            if stage == RUNNING_STAGE or len(batch.numbering.works) == 1:  # type: ignore[union-attr]
                return exc if text == str(exc) else _crash_copy(exc, text)
            return _crash_copy(exc, f"{own}: {text}")
        cause = site.where.removeprefix(" while running ")
        frame = dead is not None and not cause.startswith("task")  # the initializer's, joblib's config
        if frame and dead is not None and batch is not None and batch.first <= dead < batch.first + batch.n:
            return exc if text == str(exc) else _crash_copy(exc, text)  # the batch's own frame
        state = _QUEUED_HERE if span is None else _state_at_crash(batch, lo, hi, site, own)
        if frame:  # every call would run it: its error, and where this call was
            return _crash_copy(exc, text.replace(site.where, f"{site.where}, where {own} {state}", 1))
        if dead is None or site.other:  # another call's task, or not known: said as before
            where = f" while {own} {state}"
            if site.other:
                where = (
                    f" while running a task of another call made in this process (worker pid "
                    f"{site.pid}), on the pool where {own} {state}"
                )
            return _crash_copy(exc, text.replace(site.where, where, 1))
        short, cause = _short(own), _short(cause)
        return _crash_copy(
            exc,
            f"{own} {state}, when a worker process died{site.where}: {site.detail}, which broke "
            f"the pool. {short[0].upper()}{short[1:]} failed with it, though not at fault: the "
            f"future of {cause} has the crash's error, with what to do about it. Submit "
            f"{'it' if short.startswith('task ') else 'them'} again: this Executor starts a fresh "
            "pool for its next submission (it is not broken, as the standard library's "
            "ProcessPoolExecutor would be).",
        )

    def _abandon(self, exc: BaseException) -> None:
        """The manager thread failed (a bug in picklepool): fail every unfinished future,
        which nothing would complete (they waited for ever), and later submissions."""
        error = BrokenProcessPool(
            f"this picklepool.Executor's manager thread failed ({type(exc).__name__}: {exc}); "
            "this is a bug in picklepool: please report it with the traceback. Its unfinished "
            "calls failed with this error; create a new Executor to run them again."
        )
        error.__cause__ = exc
        with self._lock:
            self._broken = error
            works = [*self._queue, *(w for ws in self._works.values() for w in ws)]
            self._queue.clear()
            self._works.clear()
            self._splittable.clear()
            self._channel.inflight.clear()
            self._idle()
        _fail(works, error)
        with contextlib.suppress(Exception):  # the error above is what matters
            self._close()

    def _running(self) -> str | None:
        """The user's calls sent and not finished, named as errors name them (``task 3:
        f(3)``, ``tasks 3..7 (first: task 3: f(3))``), or None (joblib's timeout names them)."""
        works = [w for sent in list(self._works.values()) for w in sent if not w.future.done()]
        return _Numbering(0, 0, works, self._naming()).tasks() if works else None

    def _naming(self) -> _Naming:
        """How this executor's errors name tasks: by call index; an own Executor says which."""
        init = f"the initializer {self._initializer_label}" if self._prologue else "the initializer"
        return _Naming(self._channel.origin == "this Executor", init)

    def _error(self, index: int, item: Any, raised: Raised, name: str | None = None) -> BaseException:
        """The exception of the user's call number *index* (*item*), named as such (or *name*)."""
        where = name or self._naming().name(index, item)
        one = Pending(-1, index, [item])
        one.numbering = _Named(where)
        error = raised.error
        if (
            type(error) is pickling_type(PicklingError, getattr(type(error), "_origin", None))
            and not raised.traceback
        ):  # made by workers.replies
            return type(error)(f"{where}: {error}")
        if type(error) is NotSent:  # its class cannot travel: the stand-in a call's gets
            what, message, mro = error.args
            failure = Failure("error", index, what, message, raised.traceback, tuple(mro))
            return self._channel.replies.failure_error(one, failure)
        return self._channel.replies.task_error(one, TaskFailed(index, error, raised.traceback))

    def _break(self, batch: Pending, works: list[_Work], raised: Raised) -> None:
        """The initializer raised: this executor is broken, as the standard library's."""
        error = BrokenProcessPool(
            f"the initializer {self._initializer_label} of this picklepool.Executor raised "
            f"{type(raised.error).__name__}: {raised.error} in a worker; the executor is broken. "
            "Fix the initializer and create a new Executor."
        )
        init = self._naming().initializer
        error.__cause__ = self._error(0, batch.items[0] if batch.items else None, raised, init)
        with self._lock:
            self._broken = error
            queued = list(self._queue)
            self._queue.clear()
        _fail(works + [w for w in queued if _sendable(w)], error)


class _Naming:
    """Names a task by its user call index (``_Work.index``): ``task 8: f(8)``.

    Under the joblib backend that is the item's index in the ``Parallel`` call;
    for an ``Executor`` of the user's own, it also says how it counts:
    ``task 8 (the 9th call submitted to this Executor): f(8)``.
    """

    __slots__ = ("own", "initializer")

    def __init__(self, own: bool, initializer: str) -> None:
        self.own, self.initializer = own, initializer

    def name(self, index: int, item: Any) -> str:
        text = describe_task(index, item)
        if not self.own:
            return text
        head = f"task {index}"
        return f"{head} (the {_ordinal(index + 1)} call submitted to this Executor){text[len(head) :]}"


def _ordinal(n: int) -> str:
    last = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{last}"


class _Named:
    """A ``replies.Numbering`` of one task already named."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def describe(self, index: int) -> str:
        return self.text

    def tasks(self) -> str:
        return self.text

    def user_index(self, index: int) -> int | None:
        return None


class _Numbering:
    """The user's numbering of one batch's tasks (a ``replies.Numbering``).

    The worker reports a task by its place in the batch (wire index), which also
    counts what the executor sends around the user's calls: the initializer's
    call first (*skip*: ``workers.prologue``), and joblib's config frames at both
    ends of each joblib batch (``_Work.strip``). Errors (a crash, an argument or
    result that cannot be pickled or unpickled) name the user's call instead.
    """

    __slots__ = ("first", "skip", "works", "naming")

    def __init__(self, first: int, skip: int, works: list[_Work], naming: _Naming) -> None:
        self.first, self.skip, self.works, self.naming = first, skip, works, naming

    def user_index(self, index: int) -> int | None:
        """The user's index of the call at wire index *index* (None: a frame of ours)."""
        k = index - self.first - self.skip
        for w in self.works if k >= 0 else ():
            n = len(w.items)
            if k < n:
                j = k - w.strip
                return w.index + j if 0 <= j < n - 2 * w.strip else None
            k -= n
        return None

    def describe(self, index: int) -> str:
        k = index - self.first - self.skip
        if k < 0:
            return self.naming.initializer
        for w in self.works:
            n = len(w.items)
            if k < n:
                j, calls = k - w.strip, n - 2 * w.strip
                if 0 <= j < calls:
                    return self.naming.name(w.index + j, w.items[k])
                if calls <= 0:
                    return f"the joblib configuration of an empty batch (before task {w.index})"
                at = 0 if j < 0 else calls - 1
                name = self.naming.name(w.index + at, w.items[w.strip + at])
                return f"the joblib configuration {'set before' if j < 0 else 'reset after'} {name}"
            k -= n
        return f"task {index}"

    def tasks(self) -> str:
        calls = [(w.index, len(w.items) - 2 * w.strip, w) for w in self.works if len(w.items) > 2 * w.strip]
        if not calls:
            return self.naming.initializer if self.skip else "no task"
        lo, _n, w = min(calls, key=lambda c: c[0])
        hi = max(i + n - 1 for i, n, _w in calls)
        first = self.naming.name(lo, w.items[w.strip])
        return first if hi == lo else f"tasks {lo}..{hi} (first: {first})"


# what a crash error says to do next, said of this executor (see _Executor._crashed)
_POOL_RECOVERY = " The pool is replaced on the next call."
_EXECUTOR_RECOVERY = " This Executor starts a fresh pool for its next submission."


def _span(work: _Work, batch: Pending | None) -> tuple[int, int] | None:
    """The wire indices ``(start, end)`` of *work*'s items in *batch* (its frames too)."""
    numbering = batch.numbering if batch is not None else None
    if type(numbering) is not _Numbering:
        return None
    k = numbering.first + numbering.skip
    for w in numbering.works:
        if w is work:
            return k, k + len(w.items)
        k += len(w.items)
    return None


_QUEUED_HERE = "was queued in this Executor, not yet sent to a worker"


def _short(name: str) -> str:
    """``task 3`` of ``task 3 (the 4th call submitted to this Executor): f(3)`` (or ``tasks 3..5``)."""
    return " ".join(name.split(" ", 2)[:2]).rstrip(":") if name.startswith("task") else name


def _state_at_crash(batch: Any, lo: int, hi: int, site: Any, own: str) -> str:
    """What a call (or chunk) named *own*, the wire indices *lo*..*hi* of *batch*, was doing
    when its pool broke, from what the workers were on (``replies.CrashSite.running``)."""
    numbering = batch.numbering
    for r, (pid, stage) in sorted(site.running.items()):
        if not batch.first <= r < batch.first + batch.n:
            continue
        worker = (
            f"the worker that died (pid {pid})"
            if r == site.dead
            else f"worker pid {pid} (killed with the pool)"
        )
        if stage == LOADING:
            return f"was in the batch {worker} was unpickling"
        if stage == DUMPING:
            return f"had run in {worker}, but its result was lost with it (its batch's were being pickled)"
        if lo <= r < hi:
            at = "" if hi - lo == 1 else f", at {numbering.describe(r)}"
            return f"was running on another worker (pid {pid}{at}), which was killed with the pool"
        if r < lo:
            return f"was waiting in {worker} behind {numbering.describe(r)}"
        return (
            f"had run in {worker}, but its result was lost with it (a batch's results come "
            f"back together, after {numbering.describe(r)}'s)"
        )
    return (
        "had been sent to the pool, where no worker was running it (it waited for a free one, "
        "or its result was on its way back)"
    )


def _crash_copy(exc: BaseException, text: str) -> WorkerCrashedError:
    """A ``WorkerCrashedError`` saying *text*, caused as *exc* (the pool's error, the worker's
    traceback of an initializer) is."""
    error = WorkerCrashedError(text)
    error.__cause__ = exc.__cause__ if exc.__cause__ is not None else exc
    return error


def _pool_death(stalled: str, running: str) -> str:
    """*stalled* (``MultiprocessingBackend.check``'s "...died...; multiprocessing.Pool replaced it
    and lost its task") said of the task the dead worker ran (*running*), for the others
    it took down: the pool is stopped, and the tasks queued or running on it with it."""
    death, _sep, _rest = stalled.partition("; multiprocessing.Pool replaced it and lost its task")
    return f"{death} while running {running}, and the pool was stopped with the tasks queued or running on it"


def _refuse_at_exit(admitted: bool = False) -> None:
    """``RuntimeError`` if the interpreter is exiting: the warm pool cannot start or take work
    (unless *admitted*: the exit waits for the executor, made as it began)."""
    if (_exiting or lokycompat.interpreter_exiting()) and not (admitted and not _exiting):
        raise RuntimeError(  # the standard library's words, then what to do
            "cannot schedule new futures after interpreter shutdown: a picklepool.Executor was "
            "used while the interpreter is exiting (from an atexit handler, a __del__ run at "
            "exit, or a thread still running after the main thread ended), when its workers can "
            "no longer be started or used. Submit before your program ends (join() the threads "
            "that submit before the main thread ends)."
        )


def _refuse_in_daemon() -> None:
    """``AssertionError`` saying what to do, in a daemonic process, which cannot start workers.

    A ``multiprocessing.Pool``'s workers (and a dask worker) are daemonic, and daemonic
    processes may not have children: the standard library's executor fails there too, at
    ``submit``, with ``multiprocessing``'s bare "daemonic processes are not allowed to have
    children" raised deep in loky. Same type (code catching it keeps working), said here.
    """
    if multiprocessing.current_process().daemon:
        raise AssertionError(
            "daemonic processes are not allowed to have children: a picklepool.Executor was "
            f"made in process {os.getpid()} ({multiprocessing.current_process().name}), a daemonic "
            "one (a multiprocessing.Pool's worker, or a dask worker), which cannot start the "
            "executor's worker processes. Use a concurrent.futures.ThreadPoolExecutor there, or "
            "picklepool.Parallel (which runs the call with n_jobs=1 there, as joblib does), or "
            "run the outer tasks on a picklepool.Executor or ProcessPoolExecutor, whose workers "
            "are not daemonic and may start pools of their own."
        )


def _need_callable(fn: Any, method: str) -> None:
    """``TypeError`` at ``submit``/``map`` for a *fn* that is not callable (not later, in a worker)."""
    if not callable(fn):
        raise TypeError(
            f"Executor.{method}() needs a callable as its first argument, but {fn!r:.200} (type "
            f"{type(fn).__module__}.{type(fn).__qualname__}) is not callable. Pass the function "
            f"itself, then its arguments: ex.{method}(f, x), not ex.{method}(f(x))."
        )


def _release(channel: Channel) -> None:
    """An executor's end: its files go, and its hold on the shared warm pool (or its own pool)."""
    channel.close()
    backend = channel.backend
    if isinstance(backend, MultiprocessingBackend):
        backend.close()  # its own pool, idle now: the workers exit cleanly
    else:
        backend.release()


def _wake(events: queue.SimpleQueue[Any], _ref: Any) -> None:
    events.put(_WAKE)


def _manage(ref: weakref.ref[Executor], events: queue.SimpleQueue[Any], channel: Channel) -> None:
    """The manager thread: ends with its executor's shutdown, or when it is collected.

    An executor dropped without ``shutdown`` still runs what was submitted to it
    (``_busy`` holds it until it is idle), then gives back its files and its workers,
    here, as the standard library's does (not in a weakref callback, which may run
    inside any thread's ``gc``, where the locks ``_release`` takes may be held).
    """
    _in_manager.active = events
    while True:
        try:
            event = events.get(timeout=PROGRESS_POLL)
        except queue.Empty:
            event = None
        executor = ref()
        if executor is None:
            _release(channel)
            return
        try:
            if event is None:
                executor._check()  # a stalled pool fails what was sent: send the rest
                event = _WAKE
            else:
                executor._check_while_busy()
            if executor._splittable and time.monotonic() - executor._reclaimed_at >= PROGRESS_POLL:
                executor._reclaim()  # calls a long one keeps waiting in its worker
            if executor._step(event):
                return
        except BaseException as exc:  # a bug here must not hang the futures
            executor._gil.restore()
            executor._abandon(exc)
            raise
        del executor, event  # a batch (its future's callback) would keep the executor alive


_STOPPED_WHILE_RUNNING = "the workers were stopped (terminate_workers, kill_workers or Ctrl-C) while this ran"
_STOPPED_BEFORE_SENT = (
    "not run: this Executor's workers were stopped (terminate_workers, kill_workers or Ctrl-C) "
    "as the call was about to be sent to them. Submit it to a new Executor."
)


def _sendable(work: _Work) -> bool:
    """Still to run: a call given back by a worker (running), or one not cancelled (now running)."""
    return work.back or work.future.set_running_or_notify_cancel()


def _sendable_now(work: _Work) -> bool | None:
    """:func:`_sendable`, or None when another thread has held the call's future for
    :data:`CONTENDED` seconds (its lock is taken to mark the call running)."""
    if work.back:
        return True
    condition = work.future._condition  # type: ignore[attr-defined]
    if not condition.acquire(timeout=CONTENDED):
        return None
    try:
        return work.future.set_running_or_notify_cancel()
    finally:
        condition.release()


def _fail(works: list[_Work], exc: BaseException) -> None:
    for w in works:
        if not w.future.done():
            w.future.set_exception(exc)


def _submissions(
    ref: weakref.ref[Executor],
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    chunksize: int,
    numeric: mirror.CallerState,
    collect_young: bool = False,
) -> Iterator[Future[Any]]:
    """Submit ``fn`` over the zipped *iterables* as they are read: one future per call, or per chunk.

    A chunk is its arguments (``functions.Column``): no ``(fn, args, None)`` triple
    per call, and over one iterable not even a tuple. *collect_young*: the caller
    turned the cyclic GC off; the young garbage the iterables make is collected as
    they are read (``dispatch.YoungGarbage``).
    """
    single = len(iterables) == 1 and chunksize > 1
    arguments: Iterator[Any] = iter(iterables[0]) if single else zip(*iterables, strict=False)
    end = object()
    young = YoungGarbage() if collect_young else None
    while True:
        if young is not None:
            young.pulled(chunksize)
        if chunksize == 1:
            args = next(arguments, end)
            if args is end:
                return
        else:
            chunk = list(itertools.islice(arguments, chunksize))
            if not chunk:
                return
        executor = ref()
        if executor is None:
            return  # dropped: nothing more is submitted
        if chunksize == 1:
            fut: Future[Any] = _Future()
            executor._put(_Work(fut, [(fn, args, None)], False, numeric=numeric))  # as submit()
            yield fut
        else:
            yield executor._submit_calls(Column(fn, chunk, single), numeric=numeric)
        del executor


def _result_by(fut: Future[Any], end: float, timeout: float) -> Any:
    """*fut*'s result, due at *end* (``time.monotonic()``): ``map(timeout=...)``'s wait."""
    if type(fut) is _Future and fut._state in _WAITED:
        fut._own_manager("result", timeout)
    try:
        return Future.result(fut, end - time.monotonic())
    except TimeoutError:
        if fut.done() or type(fut) is not _Future or fut.called is None:
            raise
        when = f"within map(timeout={timeout})"
    raise TimeoutError(f"{fut.late(when)} The map's calls not started yet are cancelled.") from None


def _stopped(exc: StopIteration) -> RuntimeError:
    """The error for a call of ``map`` that raised ``StopIteration``: Python's bare
    ``RuntimeError("generator raised StopIteration")`` (PEP 479), as the standard
    library's ``map`` gives, named no call; this one says which, and what to do."""
    notes = [n for n in getattr(exc, "__notes__", ()) if isinstance(n, str) and n.startswith("(raised by ")]
    # "(raised by <task>, <where it ran>)"
    where = notes[0][len("(raised by ") :].rstrip(")").rsplit(", ", 1)[0] if notes else "a call of this map"
    args = f"({', '.join(map(repr, exc.args))})" if exc.args else ""
    return RuntimeError(
        f"generator raised StopIteration: {where} raised StopIteration{args}, which would end "
        "map's results there, so Python turns it into this RuntimeError (PEP 479), as with "
        f"the standard library's executor. {STOP_ITERATION_FIX}"
    )


def _results(
    futures: deque[Future[Any]],
    more: Iterator[Future[Any]] | None,
    end: float | None,
    chunked: bool,
    timeout: float | None = None,
) -> Iterator[Any]:
    """Yield the results of *futures* in order, submitting one of *more* before each.

    Closed early (or on an error): the futures not read are cancelled. Neither this
    generator nor the futures it read keep a result once it is yielded (CPython
    issue 14406): a caller that drops each result frees it.
    """
    try:
        while futures:
            if more is not None:
                nxt = next(more, None)
                if nxt is not None:
                    futures.append(nxt)
            fut = futures[0]
            try:
                held = [fut.result() if end is None else _result_by(fut, end, timeout)]  # type: ignore[arg-type]
            except StopIteration as exc:
                raise _stopped(exc) from exc
            futures.popleft()
            del fut  # the last reference to the future, and through it to its result
            if chunked:
                chunk = held.pop()  # its results, popped as they are yielded
                chunk.reverse()
                while chunk:
                    yield chunk.pop()
            else:
                yield held.pop()
    finally:
        for fut in futures:
            fut.cancel()
