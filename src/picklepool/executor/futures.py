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
"""

from __future__ import annotations

import functools
import gc
import itertools
import math
import queue
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor as _StdExecutor
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import WorkerCrashedError
from ..pickler.registry import resolve_pickler
from ..settings import NOT_SET, resolve_settings
from ..wire import Raised, TaskFailed
from ..workers import mirror
from ..workers.prologue import initialize
from . import gil, limits
from .backends import BACKENDS, LokyBackend
from .batching import AutoBatcher
from .dispatch import PROGRESS_POLL, Channel
from .functions import Column, label
from .replies import Pending

_WAKE = object()


class _Work:
    """A queued submission: one call (``submit``) or a chunk of calls (``map``, joblib)."""

    __slots__ = ("future", "items", "chunk", "strip", "index")

    def __init__(self, future: Future[Any], items: Sequence[Any], chunk: bool, strip: int = 0) -> None:
        self.index = 0  # the number of the user's first call in it, counted by the executor
        self.future = future
        self.items = items  # (function, args, kwargs or None) triples, or a functions.Column
        self.chunk = chunk  # the future's result is the list of the calls' results
        self.strip = strip  # leading and trailing calls whose results are not the caller's


class Executor(_StdExecutor):
    """A ``concurrent.futures.Executor`` whose tasks run on picklepool's warm workers.

    >>> from picklepool import Executor
    >>> with Executor(max_workers=2) as ex:
    ...     ex.submit(pow, 2, 5).result()
    32

    max_workers: worker processes (positive int); None: ``parallel_config``'s or
        ``PICKLEPOOL_N_JOBS``'s n_jobs, else all usable cores.
    pickler: as ``Parallel``'s ("hybrid" by default: functions defined in
        ``__main__`` and objects holding locks work).
    max_nbytes: arrays of at least this size ("1M" by default; None: off) go to
        the workers through shared memory, once per executor.
    mmap_mode, temp_folder: as ``Parallel``'s.
    initializer, initargs: ``initializer(*initargs)`` runs once in each worker
        before its first task of this executor. If it raises, the executor is
        broken: pending and later futures raise ``BrokenProcessPool``.
    inner_max_num_threads, max_worker_memory, idle_worker_timeout: the worker
        limits, as ``Parallel``'s.

    As the standard library's executors: ``submit(fn, *args, **kwargs)`` returns a
    ``Future``; a task's exception comes back through it with its own type (the
    worker's traceback as ``__cause__``); ``cancel()`` works until the task is
    sent; a worker that dies fails the pending futures with ``WorkerCrashedError``
    (a ``BrokenProcessPool``) and later submissions run on a fresh pool. Usable
    from asyncio: ``await loop.run_in_executor(ex, f, x)``. The worker processes
    are shared and stay warm after ``shutdown`` (``picklepool.shutdown()`` stops
    them). Raises ``ValueError`` for a bad setting, naming it.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        pickler: Any = NOT_SET,
        max_nbytes: int | str | None = NOT_SET,
        mmap_mode: str | None = NOT_SET,
        temp_folder: str | None = NOT_SET,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        inner_max_num_threads: int | None = NOT_SET,
        max_worker_memory: int | str | None = NOT_SET,
        idle_worker_timeout: float | None = NOT_SET,
    ) -> None:
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers <= 0
        ):
            raise ValueError(
                f"Executor(max_workers={max_workers!r}) is not valid: use a positive number of "
                "worker processes, or None for all usable cores"
            )
        if initializer is not None and not callable(initializer):
            raise TypeError(f"Executor(initializer={initializer!r}): the initializer must be callable")
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
        env = limits.worker_env(s.inner_max_num_threads, s.n_workers)
        backend = LokyBackend(s.n_workers, s.idle_worker_timeout, env)
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
        self._prologue: list[Any] = []
        if initializer is not None:
            token = self._channel.functions.token  # the functions it sends carry it too
            self._prologue = [(initialize, (token, initializer, tuple(initargs)), None)]
            self._initializer_label = label(initializer)
        self._lock = threading.Lock()
        self._queue: deque[_Work] = deque()
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._woken = False
        self._max_inflight = 2 * s.n_workers
        self._batcher = AutoBatcher(s.n_workers)
        self._works: dict[int, list[_Work]] = {}  # batch seq -> what it carries
        self._seq = itertools.count()
        self._next_task = 0  # tasks sent, initializers and joblib's config frames included
        self._next_call = 0  # the user's calls submitted: how errors number them
        self._shutdown = False
        self._broken: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._gil = gil.Scope()

    # -- submitting ------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; return its ``Future``.

        Raises ``RuntimeError`` after ``shutdown``, ``BrokenProcessPool`` when the
        initializer failed. A function or argument that cannot be pickled fails
        the future with ``picklepool.PicklingError`` naming it.
        """
        fut: Future[Any] = Future()
        self._put(_Work(fut, [(fn, args, kwargs or None)], False))
        return fut

    def _submit_calls(self, items: Sequence[Any], strip: int = 0) -> Future[Any]:
        """One batch of ``(function, args, kwargs)`` calls; the future holds their results.

        The first and last *strip* calls (``workers.prologue``) run but their
        results are dropped. For ``map`` chunks and the joblib backend.
        """
        fut: Future[Any] = Future()
        self._put(_Work(fut, items, True, strip))
        return fut

    def _put(self, work: _Work) -> None:
        with self._lock:
            if self._broken is not None:
                raise BrokenProcessPool(str(self._broken))
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown of this picklepool.Executor")
            work.index = self._next_call
            self._next_call += len(work.items) - 2 * work.strip
            self._queue.append(work)
            wake = not self._woken and len(self._channel.inflight) < self._max_inflight
            if wake:
                self._woken = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_manage,
                    args=(weakref.ref(self, functools.partial(_wake, self._events)), self._events),
                    name="picklepool-executor",
                    daemon=True,
                )
                self._thread.start()
        if wake:
            self._events.put(_WAKE)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """``fn`` over the zipped *iterables*: an iterator of results, in order.

        The calls are all submitted at once (as the standard library does);
        *chunksize* calls travel together (chunks that queue up leave several per
        batch). Reading the iterator raises a task's exception when it reaches it,
        and ``TimeoutError`` when a result is not ready *timeout* seconds after
        this call. Raises ``ValueError`` for chunksize < 1.
        """
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"map(chunksize={chunksize!r}) is not valid: use a positive int")
        end = None if timeout is None else time.monotonic() + timeout
        arguments = zip(*iterables, strict=False)
        if chunksize == 1:
            futures = [self.submit(fn, *args) for args in arguments]
            return _results(futures, end, chunked=False)
        # A chunk is its arguments (functions.Column): no (fn, args, None) triple per
        # call, and over one iterable not even a tuple. The cyclic GC would only rescan
        # the chunks while they are made (all stay alive): it waits, as in Parallel.
        single = len(iterables) == 1
        values = iter(iterables[0]) if single else arguments
        futures = []
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            while True:
                chunk = list(itertools.islice(values, chunksize))
                if not chunk:
                    break
                futures.append(self._submit_calls(Column(fn, chunk, single)))
        finally:
            if gc_was_on:
                gc.enable()
        return _results(futures, end, chunked=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more submissions; with *cancel_futures*, cancel the tasks not yet sent.

        *wait*: return when every sent task is done. The shared worker processes
        stay warm for later calls (``picklepool.shutdown()`` stops them).
        """
        with self._lock:
            self._shutdown = True
            cancelled = list(self._queue) if cancel_futures else []
            if cancel_futures:
                self._queue.clear()
            thread = self._thread
        for work in cancelled:
            work.future.cancel()
        if thread is None:
            self._close()
            return
        self._events.put(_WAKE)
        if wait and thread is not threading.current_thread():
            thread.join()

    def _close(self) -> None:
        """The end: this executor's files go, and its hold on the shared warm pool."""
        self._channel.close()
        self._channel.backend.release()

    def _terminate(self) -> None:
        """Stop now: cancel what is not sent, and kill the workers running the rest.

        For Ctrl-C and joblib's ``abort_everything`` (as joblib's loky backend kills
        its workers): the shared pool is replaced on the next call.
        """
        self.shutdown(wait=False, cancel_futures=True)
        self._channel.backend.shutdown(kill=True)

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> Any:
        """As the standard library's (``shutdown(wait=True)``), but Ctrl-C stops at once."""
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._terminate()
            return False
        return super().__exit__(exc_type, exc_val, exc_tb)

    # -- the manager thread ----------------------------------------------------------------

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
            if type(column) is not Column:
                return [head]
            # Chunks of one map queued behind it leave with it, as many as one batch of
            # the automatic size holds, at most a share of the queue per worker.
            n = len(column)
            limit = min(self._batcher.next_size(0), math.ceil((len(q) + 1) * n / self._max_workers))
            chunks = [head]
            while q and type(q[0].items) is Column and n + len(q[0].items) <= limit:
                nxt: Any = q[0].items
                if nxt.fn is not column.fn or nxt.single is not column.single:
                    break
                chunks.append(q.popleft())
                n += len(nxt)
            self._batcher.last = n
            return chunks
        size = self._batcher.next_size(0)
        size = min(size, max(1, math.ceil(len(q) / self._max_workers)))
        taken: list[_Work] = []
        while q and len(taken) < size and not q[0].chunk:
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
            works = [w for w in taken if w.future.set_running_or_notify_cancel()]
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
        try:
            batch.future = channel.send(items, first, column)
        except BaseException as exc:  # noqa: BLE001 - delivered through the futures
            if len(works) > 1:  # find the one that cannot be sent: the others go on
                for w in works:
                    self._send([w])
                return
            _fail(works, exc)
            return
        channel.inflight[seq] = batch
        self._works[seq] = works
        batch.future.add_done_callback(lambda _f: self._events.put(batch))

    def _check(self) -> None:
        """No reply for a while: look after the pool (``executor.reaper``), never wait blindly."""
        if not self._channel.inflight:
            return
        notes, stalled = self._channel.backend.check()
        for note in notes:
            warnings.warn(f"picklepool: {note}", RuntimeWarning, stacklevel=2)
        if stalled is None:
            return
        self._channel.backend.shutdown(kill=True)
        for batch in sorted(self._channel.inflight.values(), key=lambda b: b.first):
            works = self._works.pop(batch.seq, [])
            _fail(works, WorkerCrashedError(f"{stalled} ({batch.tasks()} never came back); submit again"))
        self._channel.inflight.clear()

    def _finish(self, batch: Pending) -> None:
        """A batch came back: each submission's future gets its result or exception."""
        if self._channel.inflight.pop(batch.seq, None) is None:
            return  # given up on already (a stalled pool, see _check)
        works = self._works.pop(batch.seq)
        try:
            values, seconds = self._channel.replies.read(batch)
        except BaseException as exc:  # noqa: BLE001 - delivered through the futures
            _fail(works, exc)
            if isinstance(exc, WorkerCrashedError):  # as the stdlib: every pending future breaks
                with self._lock:
                    queued = list(self._queue)
                    self._queue.clear()
                _fail([w for w in queued if w.future.set_running_or_notify_cancel()], exc)
            return
        self._batcher.record(len(values), seconds)
        k = len(self._prologue)
        if k and type(values[0]) is Raised:
            self._break(batch, works, values[0])
            return
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
        batch.items = None

    def _error(self, index: int, item: Any, raised: Raised) -> BaseException:
        """The exception of the user's call number *index* (*item*), named as such."""
        one = Pending(-1, index, [item])
        return self._channel.replies.task_error(one, TaskFailed(index, raised.error, raised.traceback))

    def _break(self, batch: Pending, works: list[_Work], raised: Raised) -> None:
        """The initializer raised: this executor is broken, as the standard library's."""
        error = BrokenProcessPool(
            f"the initializer {self._initializer_label} of this picklepool.Executor raised "
            f"{type(raised.error).__name__}: {raised.error} in a worker; the executor is broken. "
            "Fix the initializer and create a new Executor."
        )
        error.__cause__ = self._error(0, batch.items[0] if batch.items else None, raised)
        with self._lock:
            self._broken = error
            queued = list(self._queue)
            self._queue.clear()
        _fail(works + [w for w in queued if w.future.set_running_or_notify_cancel()], error)


def _wake(events: queue.SimpleQueue[Any], _ref: Any) -> None:
    events.put(_WAKE)


def _manage(ref: weakref.ref[Executor], events: queue.SimpleQueue[Any]) -> None:
    """The manager thread: ends with its executor's shutdown, or when it is collected."""
    while True:
        try:
            event = events.get(timeout=PROGRESS_POLL)
        except queue.Empty:
            event = None
        executor = ref()
        if executor is None:
            return  # dropped without shutdown, nothing in flight (a batch's callback holds it)
        try:
            if event is None:
                executor._check()
            elif executor._step(event):
                return
        except BaseException:  # pragma: no cover - a bug here must not hang the futures
            executor._gil.restore()
            raise
        del executor


def _fail(works: list[_Work], exc: BaseException) -> None:
    for w in works:
        if not w.future.done():
            w.future.set_exception(exc)


def _results(futures: list[Future[Any]], end: float | None, chunked: bool) -> Iterator[Any]:
    """Yield the results of *futures* in order; cancel the rest when closed early."""
    try:
        futures.reverse()
        while futures:
            fut = futures[-1]
            value = fut.result() if end is None else fut.result(end - time.monotonic())
            futures.pop()
            if chunked:
                yield from value
            else:
                yield value
    finally:
        for fut in futures:
            fut.cancel()
