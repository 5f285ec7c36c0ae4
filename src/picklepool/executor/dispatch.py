"""One call of ``Parallel``: batches out, replies in, results in order.

    items ──islice──▶ batch (functions, args, kwargs) ──pickler.dumps──▶ wire.Batch
      ──backend──▶ worker: workers.runner.run_batch ──▶ reply bytes
      ──executor.replies──▶ results, in order (or as completed)

The parts: ``executor.functions`` (which tasks share a function; each pickled
once per call), ``executor.replies`` (decoding replies, the errors they report),
``executor.watchdog`` (tasks that ignore their timeout), and :class:`Call`
(submission, the ordering loop, cancellation). A task error, a pickling error or
a crashed worker cancels the call: queued batches are cancelled, batches already
in a worker skip their remaining tasks (a shared cancel flag), and the error is
raised at once.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import multiprocessing
import os
import queue
import reprlib
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import cloudpickle

from .. import forklocks, state
from ..errors import SettingValueError, TaskExitError, WorkerCrashedError, pickling_error
from ..pickler import locks
from ..pickler.buffers import CallBuffers, Frames, TempFolderError
from ..pickler.context import CallContext, active
from ..pickler.diagnose import explain, probe
from ..settings import cpu_count
from ..wire import (
    Batch,
    NumericState,
    ParentState,
    Results,
    WorkerLimits,
    command_line,
    import_path,
    thread_stack_size,
    time_zone,
)
from ..workers import (
    archiveformats,
    builtinnames,
    contextvalues,
    envvars,
    finders,
    locales,
    logback,
    loggerclass,
    mainnames,
    mirror,
    moduleglobals,
    modulesettings,
    pandasoptions,
    picklernames,
    rcparams,
    registrations,
    registries,
    warnback,
    warnfilters,
    webdefaults,
    xarrayoptions,
)
from ..workers.runner import flush_streams, run_batch
from ..workers.tasks import run_local
from . import functions, gil, interrupts, reloaded, seeded, sequential, streaming
from .backend import Backend
from .replies import Pending, ReplyReader
from .session import current_session
from .watchdog import Watchdog

log = logging.getLogger(__name__)

_headers: dict[Any, bytes] = {}  # pickler -> its pickled form (the Batch header)


def header(pickler: Any) -> bytes:
    """The pickler pickled with cloudpickle, as every batch carries it; made once per pickler."""
    data = _headers.get(pickler)
    if data is None:
        if len(_headers) >= 64:
            _headers.clear()
        data = _headers[pickler] = cloudpickle.dumps(pickler)
    return data


def parent_state(
    n_workers: int,
    numeric: tuple[Any, Any, Any, Any] | None = None,
    caller: mirror.CallerState | None = None,
) -> ParentState:
    """What this call's workers mirror (``workers.mirror``), read now, in the calling thread.

    *numeric*: the numeric settings to send (``mirror.numeric_state()`` of the thread
    that submitted the tasks); None reads the calling thread's. *caller*: those, the
    warnings filters and the context variables (``mirror.caller_state()`` of that thread,
    or asyncio task), in its place.
    """
    if caller is None:
        if numeric is None:
            caller = mirror.caller_state()
        else:
            caller = (numeric, warnfilters.pickled(), contextvalues.pickled())
    numeric, filters, context = caller
    depth, cores = mirror.nesting()
    cores = cpu_count() if cores is None else cores
    try:
        cwd = os.getcwd()
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            "this process's working folder was deleted (os.getcwd() fails): workers start each "
            "batch in the caller's working folder, so that relative paths open the same files. "
            "os.chdir() to a folder that exists before the call."
        ) from exc
    return ParentState(
        import_path(),
        sys.getrecursionlimit(),
        cwd,
        depth + 1,
        max(1, cores // max(1, n_workers)),
        _int_digits(),
        numeric,
        mirror.umask(),
        multiprocessing.get_start_method(allow_none=True),
        filters,
        (sys.stdout is not sys.__stdout__, sys.stderr is not sys.__stderr__),
        reloaded.generations(),
        warnback.redirected(),
        mirror.io_defaults(),
        joblib_backends(),
        registrations.pickled(),
        command_line(),
        time_zone(),
        logback.levels(),
        logback.disabled(),
        builtinnames.pickled(),
        pandasoptions.pickled(),
        envvars.pickled(),
        locales.read(),
        context,
        picklernames.pickled(),
        mainnames.read_script(),
        rcparams.pickled(),
        webdefaults.pickled(),
        archiveformats.pickled(),
        finders.pickled(),
        xarrayoptions.pickled(),
        registries.pickled(),
        modulesettings.pickled(),
        loggerclass.pickled(),
        moduleglobals.pickled(),
        thread_stack_size(),
    )


def joblib_backends() -> tuple[str, ...]:
    """The names under which picklepool's joblib backend is registered in joblib here.

    Imports nothing: () unless ``picklepool.joblib`` is loaded (whose ``register`` loads
    it), a few look-ups then. joblib's registry is this process's, which workers do not
    share: they register those names too (``workers.joblibnest``).
    """
    ours = sys.modules.get("picklepool.joblib")
    parallel = sys.modules.get("joblib.parallel")
    if ours is None or parallel is None:
        return ()
    backend = getattr(ours, "PicklepoolBackend", None)
    registry = getattr(parallel, "BACKENDS", None)
    if backend is None or not isinstance(registry, dict):
        return ()
    return tuple(name for name, cls in list(registry.items()) if cls is backend)


_int_digits: Callable[[], int] = getattr(sys, "get_int_max_str_digits", lambda: -1)  # 3.10.7+


PROGRESS_POLL = 0.5  # seconds between two looks at the pool while a call waits (executor.reaper)


def _task_name(items: Sequence[Any], first: int, i: int, describe: Callable[[int], str] | None) -> str:
    """Task *i* of a batch of *items* (tasks *first*...), as errors name it: ``task 3: f(x)``
    (*describe*: the call's own numbering, ``replies.Numbering``)."""
    return describe(i) if describe else functions.describe_task(i, items[i - first])


def _spec_files(specs: Sequence[Any]) -> list[Any]:
    """The shared-memory files a batch's function specs use (``CallBuffers.sent``)."""
    return [ref for spec in specs if isinstance(spec[1], Frames) for ref in spec[1].refs]


def _batch_name(items: Sequence[Any], first: int, describe: Callable[[int], str] | None) -> str:
    """The tasks of a batch, as a warning names them: ``task 3: f(x)``, and how many follow."""
    name = _task_name(items, first, first, describe)
    return name if len(items) == 1 else f"{name} (and the {len(items) - 1} later tasks of its batch)"


class Channel:
    """What tasks go through to the workers: pickler, functions, buffers, replies.

    One per ``Parallel`` call (:class:`Call`), or one for the life of a
    ``picklepool.Executor``: the functions of its tasks are pickled once per
    channel (``functions.FunctionTable``), large arrays go once through shared
    memory (``pickler.buffers.CallBuffers``), and ``replies.ReplyReader`` turns
    what comes back into results or errors. :meth:`send` makes one ``wire.Batch``
    of some tasks and hands it to the backend.

    *isolate*: every task of a batch runs and its exception comes back as its own
    (``wire.Raised``), as ``Executor`` needs; else a batch stops at its first one.
    """

    origin = "this Parallel call"  # how error notes name what the task belonged to

    def __init__(
        self,
        backend: Backend,
        pickler: Any,
        timeout: float | None = None,
        worker_limits: WorkerLimits | None = None,
        max_nbytes: int | None = None,
        mmap_mode: str = "c",
        temp_folder: str | None = None,
        isolate: bool = False,
        keep_stateful: bool = True,
        owner: Any = None,
    ) -> None:
        self.backend = backend
        self.pickler = pickler  # None for in-process backends: nothing is pickled
        self.timeout = timeout
        self.worker_limits = worker_limits
        self.isolate = isolate
        self.bytes_path = backend.moves_bytes
        self.in_caller = backend.in_caller
        # session_path() made sure the folder is there: the session it names, looked up once
        self.session = current_session() if self.bytes_path and backend.session_path() else None
        self.call_id = self.session.begin_call() if self.session else 0
        self.pid = forklocks.getpid()  # a forked child can neither read nor end it (Call.forked_error)
        # an in-process call's cancel flag (a worker's is in the session): no task starts once set
        self.stop_flag = threading.Event() if self.in_caller else None
        self.header = header(pickler) if self.bytes_path else b""
        self.parent: ParentState | NumericState | None = None
        if backend.mirrors_parent:
            self.parent = parent_state(backend.n_workers)
        elif backend.mirrors_numeric:
            numeric, context = mirror.numeric_state(), contextvalues.pickled()
            if numeric != mirror.NO_NUMERIC or context is not None:
                self.parent = NumericState(numeric, context)
        self.context = CallContext(pickler, self.session, backend.blob_store() if self.bytes_path else None)
        # large arrays via shared memory (blobs on a cluster);
        # *owner*: a `with Parallel()` block whose calls share a folder
        self.buffers = CallBuffers(self.context, self.call_id, max_nbytes, mmap_mode, temp_folder, owner)
        # a long-lived channel (Executor) sends every batch's arrays as they are then
        self.buffers.per_batch = not keep_stateful
        self.context.per_batch = not keep_stateful  # and its SharedState versions superseded
        self.functions = functions.FunctionTable(pickler, self.buffers, self.context, keep_stateful)
        # the seeded random generators its tasks were given (a Parallel call's; not an Executor's
        # submissions, nor the joblib backend's calls, which a library makes: scikit-learn's
        # LogisticRegressionCV gives each fold its random_state, a RandomState the user set)
        self.generators = seeded.SeededArguments() if keep_stateful else None
        self.watchdog = Watchdog(self.session, self.call_id, timeout) if timeout and self.session else None
        self.replies = ReplyReader(self)
        self.cancelled = False  # this call cancelled its own batches
        self.inflight: dict[int, Pending] = {}
        # batches may take the backend's shortest way (loky's lanes): a plain call's, with
        # no timeout or memory limit to enforce around them
        self.direct = False
        self.sent_direct = 0  # batches that could go the shortest way (Backend.small_call_done)

    # -- parent side of the data path -------------------------------------------------

    def send(
        self,
        items: Sequence[Any],
        first: int,
        column: functions.Column | functions.Calls | None = None,
        describe: Callable[[int], str] | None = None,
        splittable: bool = False,
    ) -> Future[Any]:
        """Pickle *items* (``(function, args, kwargs)`` triples, tasks *first*...) and submit them.

        *column*: the same calls as one function and its arguments (``Executor.map``),
        sent as they are instead of split from *items*. *describe*: how errors name
        the task at an index (``replies.Numbering``; ``task N: f(x)`` by default).
        *splittable*: independent calls, of which the worker may give back those a long
        one keeps waiting (``workers.handback``; an isolating channel's).
        Returns the backend's future of the reply (for ``replies.ReplyReader.read``).
        Raises ``PicklingError`` naming the task that cannot be pickled, and
        ``TypeError`` for an item that is not a call.
        """
        single_arg = False
        args: Sequence[Any]
        flush_streams()  # (what the program printed before: ahead of the tasks' lines in a log file)
        if column is None:
            column = functions.split(items, first, by_content=self.bytes_path)
        if isinstance(column, functions.Calls):
            funcs, fidx, args, kwargs = column.funcs, column.fidx, column.args, column.kwargs
        else:
            if not callable(column.fn):
                raise functions.bad_items(items, first)
            funcs, fidx, args, kwargs, single_arg = [column.fn], 0, column.args, None, column.single
        if not self.bytes_path:
            if single_arg:
                args = [(a,) for a in args]
            try:
                return self.backend.submit(
                    run_local,
                    funcs,
                    fidx,
                    args,
                    kwargs,
                    first,
                    self.timeout,
                    self.stop_flag,
                    self.backend.interrupts_late_tasks,
                )
            except RuntimeError as exc:  # the pool was stopped under the call: say which tasks
                raise RuntimeError(f"{_batch_name(items, first, describe)} {exc}") from exc.__cause__
        if self.generators is not None:  # the same seeded generator given to two tasks: a warning
            self.generators.note(
                args, kwargs, single_arg, first, lambda i: _task_name(items, first, i, describe)
            )
        payload: bytes | Frames
        self.buffers.begin_batch()
        self.context.begin_batch(lambda: _batch_name(items, first, describe))
        self.functions.begin_batch()
        try:
            with active(self.context):
                specs = tuple(
                    self.functions.spec(f, self._naming(items, first, fidx, k, describe))
                    for k, f in enumerate(funcs)
                )
                if self.functions.reached:  # arguments the functions hold too: theirs in the worker
                    specs, args, kwargs = self.functions.through_functions(
                        funcs,
                        specs,
                        fidx,
                        args,
                        kwargs,
                        single_arg,
                        lambda k: self._naming(items, first, fidx, k, describe),
                    )
                outbound = self._outbound(args, kwargs, single_arg)
                try:
                    if outbound is not None:
                        payload = outbound.payload  # pickled into the worker once it is there
                    else:
                        payload = self.buffers.dumps_tasks(self.pickler, (fidx, args, kwargs))
                except Exception as exc:
                    if outbound is not None:
                        outbound.close()
                    raise self._dumps_error(items, first, exc, describe) from exc
            submit = self.backend.submit
            if self.direct and outbound is None:
                submit = self.backend.submit_direct
                self.sent_direct += 1
            fut = submit(
                run_batch,
                Batch(
                    self.call_id,
                    self.session.path if self.session else None,
                    self.header,
                    specs,
                    payload,
                    first,
                    self.timeout,
                    self.worker_limits,
                    self.parent,
                    self.functions.carried(self.buffers.attachment(payload), specs),
                    self.isolate,
                    single_arg,
                    splittable and self.isolate,
                    state.gone(),
                ),
            )
            if outbound is None:
                self.context.sent(fut)  # the kept blobs it uses (SharedState versions) stay until it is done
                self.buffers.sent(payload, fut, specs=_spec_files(specs))
                return fut
            streamed: list[Any] = []
            tasks = (fidx, args, kwargs)
            try:
                with active(self.context):
                    streamed = outbound.send(
                        fut, lambda writer: self.buffers.dump_stream(self.pickler, tasks, writer), self.look
                    )
            except Exception as exc:
                # The worker reads to where the stream stopped and replies with a failure; wait
                # for that, so that, as when a batch fails to pickle before it is sent, no batch
                # of this call is left in a worker (one left would get the pool replaced).
                outbound.close()
                streaming.wait_out(fut, self.look)
                raise self._dumps_error(items, first, exc, describe) from exc
            finally:
                outbound.close()
                self.context.sent(fut)
                self.buffers.sent(payload, fut, streamed, _spec_files(specs))
            return fut
        finally:
            self.context.batch = None  # (its name holds the batch's items)
            self.functions.end_batch()  # (what a function pickled for this batch alone holds)

    @staticmethod
    def _naming(
        items: Sequence[Any], first: int, fidx: Any, k: int, describe: Callable[[int], str] | None
    ) -> Callable[[], str]:
        """How an error names the first task of function *k* of a batch (made only on an error)."""

        def where() -> str:
            i = first + (fidx.index(k) if type(fidx) is list else 0)
            return _task_name(items, first, i, describe)

        return where

    def _outbound(self, args: Any, kwargs: Any, single_arg: bool) -> streaming.Outbound | None:
        """The stream a batch goes through (``executor.streaming``), or None: pickled whole first."""
        if not (
            streaming.SUPPORTED
            and self.pickler.streams
            and streaming.worth_streaming(args, kwargs, single_arg)
        ):
            return None
        if not streaming.room_for_one(self.backend.pool_load(), cpu_count()):
            return None
        folder = self.buffers.stream_folder()
        if folder is None:
            return None
        try:
            return streaming.Outbound(folder, self.buffers.max_nbytes, self.buffers.mmap_mode)
        except OSError as exc:  # a socket path too long for AF_UNIX, ...
            log.debug("picklepool: batch not streamed (%s)", exc)
            return None

    def look(self) -> str | None:
        """One look at the pool while waiting on it: warns of what it did; why it is stalled, or None."""
        notes, stalled = self.backend.check()
        for note in notes:
            warnings.warn(f"picklepool: {note}", RuntimeWarning, stacklevel=3)
        return stalled

    def _dumps_error(
        self,
        items: Sequence[Any],
        first: int,
        exc: BaseException,
        describe: Callable[[int], str] | None = None,
    ) -> Exception:
        if isinstance(exc, TempFolderError):  # not the tasks': says so itself, and which ones
            return TempFolderError(
                exc.errno, f"{_batch_name(items, first, describe)}: {exc.strerror}", exc.filename
            )
        if isinstance(exc, (SettingValueError, locks.MixedCallers)) or (
            isinstance(exc, Exception) and interrupts.from_signal_handler(exc)
        ):
            # not the tasks': says so itself (MixedCallers: the Executor sends them apart), or
            # the program's signal handler raised it (a SIGALRM deadline) while they were pickled
            return exc
        not_a_crash = getattr(exc, "not_a_crash", None)
        # the backend went away (dask: its client was closed during the call)
        if not_a_crash and isinstance(exc, Exception):
            where = _task_name(items, first, first, describe)
            return type(exc)(f"{exc} while the batch of {where} was being sent. {not_a_crash}")
        waited = isinstance(exc, locks.SnapshotTimeout)  # a lock held: look without waiting again
        with locks.no_snapshot_wait() if waited else contextlib.nullcontext():
            for i, item in enumerate(items):
                _f, args, kwargs = item
                for root, value in (("args", args), ("kwargs", kwargs)):
                    err = probe(self.pickler, value)
                    if err is not None and not isinstance(err, Exception):
                        raise err  # Ctrl-C while looking (or a reducer's own): not a pickling error
                    if err is not None:
                        msg = explain(self.pickler, value, exc if waited else err, root=root)
                        where = _task_name(items, first, first + i, describe)
                        return pickling_error(f"{where}: {msg}", exc if waited else err)
        if describe is not None:
            return pickling_error(f"{describe(first)} or a later task of its batch: {exc}", exc)
        return pickling_error(f"tasks {first}..{first + len(items) - 1}: {exc}", exc)

    def batch_of(self, index: int) -> Pending | None:
        """The batch in flight holding task *index*, if any."""
        for batch in self.inflight.values():
            if batch.first <= index < batch.first + batch.n:
                return batch
        return None

    def close(self, clean: bool = False) -> None:
        """No more batches: remove this channel's shared-memory files and blobs.

        *clean*: every batch sent was read, none cancelled (``CallBuffers.close``).
        """
        if self.pid != forklocks.getpid():
            return  # a forked child's copy: the files are the parent's, whose call goes on
        self.buffers.close(clean)
        self.context.close()
        if self.session is not None:
            self.session.end_call(self.call_id)


PULL_STEP = 256  # items pulled between two looks at the young garbage (YoungGarbage)
SLOW_PULL = 0.02  # seconds: a pull that took longer finds the caller's generator slow (Call.run)
REPROBE = 16384  # items pulled between two looks once a look found none


class YoungGarbage:
    """Collects the young garbage made while the cyclic GC is off (the caller turned it off).

    The caller's generator runs while a batch is pulled: the cyclic garbage it makes per
    item (records parsed, frames built) would live until the batch is sent (1.6 GB where
    joblib peaks at 138 MB). Each batch probes once, with a young-generation collection
    after its first ``PULL_STEP`` items (once past twice the GC's own threshold); if that
    found garbage, it collects again every ``PULL_STEP`` items, else only every
    ``REPROBE`` items: the items pulled are alive, and rescanning them is all a
    collection would do (about 15% of 100k tiny tasks' time).
    """

    def __init__(self) -> None:
        self.threshold = 2 * gc.get_threshold()[0]
        self.since = 0
        self.step = PULL_STEP  # REPROBE while collections find nothing

    def pulled(self, n: int) -> None:
        """*n* more items were pulled."""
        self.since += n
        if self.since >= self.step:
            self.since = 0
            if self.threshold and gc.get_count()[0] > self.threshold:
                self.step = PULL_STEP if gc.collect(0) else REPROBE


class IterableFailed(Exception):
    """The caller's iterable raised *error* after giving the *items* of this batch."""

    def __init__(self, items: list[Any] | functions.Column, error: Exception) -> None:
        super().__init__(error)
        self.items, self.error = items, error


def _take(it: Iterator[Any], n: int) -> tuple[list[Any], Exception | None]:
    """Up to *n* items of *it*, and the ``Exception`` it raised meanwhile, if any.

    ``list.extend`` keeps what it appended before the iterator raised, where
    ``list(...)`` drops it.
    """
    chunk: list[Any] = []
    try:
        chunk.extend(itertools.islice(it, n))
    except Exception as error:  # noqa: BLE001 - raised once the tasks before it are done
        return chunk, error
    return chunk, None


def _part(items: list[Any] | functions.Column, start: int, end: int) -> list[Any] | functions.Column:
    """Items *start* to *end* of a pulled batch, as one of its own."""
    if isinstance(items, functions.Column):
        return functions.Column(items.fn, items.args[start:end], items.single)
    return items[start:end]


def pull(
    it: Iterator[Any], size: int, by_content: bool = False, collect: bool = True
) -> list[Any] | functions.Column:
    """Up to *size* items of *it* (:func:`pull_until` with no time limit)."""
    return pull_until(it, size, by_content, collect)[0]


def pull_until(
    it: Iterator[Any],
    size: int,
    by_content: bool = False,
    collect: bool = True,
    budget: float | None = None,
) -> tuple[list[Any] | functions.Column, bool]:
    """Up to *size* items of *it*, and whether the pull was cut short by *budget*.

    *collect*: pulled with the cyclic GC off, whose young garbage is collected
    meanwhile (see :class:`YoungGarbage`).

    *budget* (seconds): once pulling has taken longer, the items so far come back, with
    ``True``; the iterator is not at its end. A caller's generator that gives an item
    every 0.1 s (reading a queue, a sensor, a paginated API) would otherwise hold the
    items it gave, and the results of the tasks before them, until a whole batch is
    pulled: 4 results of 40 by t=3 s where joblib, pulling in another thread, gives 22.
    The clock is read between chunks that start at one item and double up to
    ``PULL_STEP``, so that a slow generator is noticed after its first item and a fast
    one costs a few clock reads per batch.

    *by_content* (a batch to pickle): ``delayed(f)(x)`` calls of one *f* come back as
    a ``functions.Column`` of their ``x``, made ``PULL_STEP`` items at a time, as they
    are pulled: the items are then still in the CPU's cache, and so is each one when
    it is freed (on 100k tiny tasks, one pass over a whole batch after pulling it
    cost as much as the caller's generator). Any other items come back as they are,
    and ``functions.split`` need not look for such calls again.

    When *it* raises (an ``Exception``: the caller's generator broke midway), the
    items it gave before are not dropped: :class:`IterableFailed` carries them and
    the error, so that their tasks run and their results come out before the error
    is raised, as in the loop the call replaces (and joblib's ``n_jobs=1``).
    """
    if budget is None and size <= PULL_STEP:
        few, error = _take(it, size)
        xs = functions.one_argument(few) if by_content and few else None
        batch = few if xs is None else functions.Column(few[0][0], xs, True)
        if error is not None:
            raise IterableFailed(batch, error)
        return batch, False
    young = YoungGarbage() if collect and size > PULL_STEP else None
    deadline = None if budget is None else time.perf_counter() + budget
    items: list[Any] = []
    single: list[Any] | None = [] if by_content else None  # the x of the calls so far
    f0: Any = None
    n = 0
    step = PULL_STEP if deadline is None else 1
    while True:
        want = min(step, size - n)
        chunk, error = _take(it, want)
        got = len(chunk)
        n += got
        if single is not None and got:
            xs = functions.one_argument(chunk, f0)
            if xs is not None:
                f0 = chunk[0][0]
                single += xs
            else:  # not such calls after all: the calls so far as triples again, then these
                items = [(f0, (x,), {}) for x in single]
                single = None
        if single is None:
            items += chunk
        del chunk
        ended = got < want or n >= size  # (a raise, error, stopped the chunk short too)
        cut = not ended and deadline is not None and time.perf_counter() > deadline
        if ended or cut:
            batch = functions.Column(f0, single, True) if single else items
            if error is not None:
                raise IterableFailed(batch, error)
            return batch, cut
        if young is not None:
            young.pulled(want)
        step = min(2 * step, PULL_STEP)


class Call(Channel):
    """The state of one ``Parallel.__call__``."""

    # asyncio.run's Ctrl-C, seen from a call made in another thread (interrupts.watch_asyncio);
    # read by run() before its first batch
    asyncio_watch: Any = None

    def __init__(
        self,
        backend: Backend,
        pickler: Any,
        batcher: Any,
        max_inflight: int,
        timeout: float | None,
        ordered: bool,
        on_progress: Callable[[int, int | None], None] | None = None,
        worker_limits: WorkerLimits | None = None,
        max_nbytes: int | None = None,
        mmap_mode: str = "c",
        temp_folder: str | None = None,
        owner: Any = None,
    ) -> None:
        super().__init__(
            backend, pickler, timeout, worker_limits, max_nbytes, mmap_mode, temp_folder, owner=owner
        )
        self.batcher = batcher
        self.max_inflight = max_inflight
        self.ordered = ordered
        self.on_progress = on_progress
        self._done: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        self.direct = timeout is None and not (worker_limits is not None and worker_limits.max_memory)
        self.total: int | None = None
        # closed before its end (return_as="generator"): (tasks finished, tasks cancelled)
        self.left_unused: tuple[int, int] | None = None
        # tasks and batches dispatched, as of the last on_progress call (Parallel.print_progress)
        self.n_dispatched_tasks = self.n_dispatched_batches = 0

    def _submit(self, items: list[Any] | functions.Column, seq: int, first: int) -> Pending:
        if type(items) is functions.Column:
            calls: functions.Calls | functions.Column = items
        else:  # pulled: not one function's one-argument calls
            calls = functions.split(items, first, self.bytes_path, single=False)
        batch = Pending(seq, first, calls)  # the columns, not the caller's triples (functions.Calls)
        fut = batch.future = self.send(calls, first, calls)
        stop = self.stop_flag
        # The callbacks hold the queue and the batch, not this call: the pool's thread runs
        # them, and may still be unwinding from one as the caller's call returns, when the
        # call's functions (a bound method's model, kept in self.table) were to go with it
        put = self._done.put
        if stop is None:
            fut.add_done_callback(lambda _f: put(batch))
            return batch

        def done(f: Future[Any]) -> None:
            # In-process: a failed batch (a task's error, its timeout) stops the call's tasks
            # not started yet at once, before its thread can take the next batch. Queued
            # first, so that the batches the flag stops are read after the failure.
            put(batch)
            if f.cancelled() or f.exception() is not None or type(f.result()) is not Results:
                stop.set()

        fut.add_done_callback(done)
        return batch

    # -- the loop -------------------------------------------------------------------------

    def start(self, iterable: Iterable[Any]) -> Iterator[list[Any]]:
        """Dispatch the first batches now; return the iterator of :meth:`run` over the rest."""
        chunks = self.run(iterable, primed=True)
        next(chunks)
        return chunks

    def _iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """``iter(iterable)``, its length noted first (``self.total``) when it has one."""
        if type(iterable) is tuple and len(iterable) == 3 and callable(iterable[0]):
            # one delayed call, (f, args, kwargs), where an iterable of them was meant (an
            # iterable of tasks never starts with a function: it named item 0, f, as bad)
            name = getattr(iterable[0], "__qualname__", None) or type(iterable[0]).__name__
            raise TypeError(
                "a Parallel instance is called with an iterable of delayed calls, but was given "
                f"one delayed call of {name}, {reprlib.repr(iterable)}: put it in a list, "
                f"Parallel(...)([delayed({name})(x)]), or write "
                f"Parallel(...)(delayed({name})(x) for x in xs)."
            )
        try:
            self.total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            pass
        try:
            return iter(iterable)
        except TypeError:
            raise TypeError(
                "a Parallel instance is called with an iterable of delayed calls, but was given "
                f"{reprlib.repr(iterable)} (type {type(iterable).__name__}), which is not iterable. "
                "Write Parallel(...)(delayed(f)(x) for x in xs)."
            ) from None

    def forked_error(self) -> RuntimeError:
        """What reading, in a forked child, a call the parent started (its generator) raises."""
        return RuntimeError(
            f"the results of this Parallel call are read in process {os.getpid()}, which was forked "
            f"from process {self.pid}, where the call was made: its workers, and the results "
            "they send back, are that process's (this one would wait for them for ever, or take "
            "the pool for crashed). Read the generator before forking, or make the call again "
            "in this process."
        )

    def run(self, iterable: Iterable[Any], primed: bool = False) -> Iterator[list[Any]]:
        """Yield lists of results: in task order, or as batches complete.

        *primed*: yield one empty list as soon as the first batches are dispatched
        (:meth:`start`), so that tasks start at the call, not at the first ``next()``
        (a backend running tasks in the calling thread yields it before any task runs).
        """
        try:
            it = self._iterate(iterable)
        except BaseException:
            self.close()  # its cancel-flag slot and folder: no batch was sent
            raise
        inflight = self.inflight
        ready: dict[int, list[Any]] = {}
        seq = next_out = dispatched = pulled = completed = 0
        exhausted = False
        # Items pulled and not sent yet, held[0]'s from item *at* on. With batch_size="auto",
        # a generator's pull waits for the next one (*ahead*), so that the pull that finds
        # its end leaves the one before it too to be shared out; once the end is found, what
        # is held goes out a fair share at a time (executor.batching).
        held: deque[list[Any] | functions.Column] = deque()
        at = 0
        # batch_size=k: each pull (k per worker) goes out in batches of *piece* tasks, its
        # size set as it is pulled (FixedBatcher.split: smaller for the short pull at the end)
        splits = self.batcher.splits
        piece = 0
        ahead = 1 if self.total is None and self.batcher.looks_ahead else 0
        # A pull that took over SLOW_PULL: the caller's generator, not the workers, sets the
        # pace. Then a batch goes out as soon as it is pulled (not held for the next pull),
        # "auto" cuts pulls at SLOW_PULL, and results are read before each pull, so that
        # none waits for the generator's next items (joblib pulls in its callback thread).
        slow = False
        budget = None if self.batcher.exact else SLOW_PULL
        # the iterable's own error: raised once the tasks it gave before it have been
        # read (their results out first, or an earlier task's error instead), as in a loop
        broke: Exception | None = None
        reported: int | None = None  # the total given with the last progress report
        # The switch interval is lowered once a second batch is on its way (executor/gil.py):
        # a call of one batch has no convoy of batches and replies to speed up.
        handoff: gil.Scope | None = None
        clean = False
        try:
            if self.backend.caller_thread:
                # n_jobs=1: each task as its item is pulled, as joblib's and the loop
                yield from sequential.run_here(self, it, primed)
                return
            # asyncio.run's count of Ctrl-Cs, read before a batch is sent: read later, a
            # Ctrl-C pressed once a task started could already be counted, or asyncio.run
            # could have put Python's handler back (the call would run to its end)
            self.asyncio_watch = interrupts.watch_asyncio()
            while True:
                if self.pid != forklocks.getpid():  # resumed in a forked child: send nothing, nor wait
                    raise self.forked_error()
                while len(inflight) < self.max_inflight:
                    if slow and inflight and not self._done.empty():
                        break  # results first: the next pull may take long
                    # Pulling a batch allocates many small tuples that the cyclic GC
                    # would only rescan: it waits until the batch is sent, and by then
                    # the caller's triples are gone (the batch keeps its columns). Not
                    # where tasks run in this process (sequential, threading): they
                    # would run with the GC off, their cyclic garbage never collected.
                    gc_was_on = gc.isenabled() and not self.backend.in_caller
                    if gc_was_on:
                        gc.disable()
                    try:
                        while not exhausted and len(held) <= (0 if slow else ahead):
                            left = None if self.total is None else self.total - pulled
                            size = self.batcher.next_size(left)
                            began = time.perf_counter()
                            cut = False
                            try:
                                items, cut = pull_until(it, size, self.bytes_path, gc_was_on, budget)
                            except IterableFailed as failed:
                                items, broke = failed.items, failed.error
                            slow = cut or time.perf_counter() - began > SLOW_PULL
                            pulled += len(items)
                            if cut:
                                self.batcher.took(len(items))
                            elif len(items) < size or broke is not None:
                                exhausted = True
                            if items:
                                held.append(items)
                                if splits:
                                    piece = self.batcher.split(len(items), exhausted)
                            del items
                        if not held:
                            break
                        head = held[0]
                        n = len(head) - at
                        if splits:  # batch_size=k: the pull in batches of its piece
                            n = min(n, piece)
                        elif exhausted:  # all that is left is held: a fair share of it at a time
                            n = min(n, self.batcher.next_size(sum(map(len, held)) - at))
                        items = head if n == len(head) else _part(head, at, at + n)
                        at += n
                        if at == len(head):
                            held.popleft()
                            at = 0
                        del head
                        inflight[seq] = self._submit(items, seq, dispatched)
                        del items
                    finally:
                        if gc_was_on:
                            gc.enable()
                    seq += 1
                    dispatched += n
                    if handoff is None and seq == 2 and self.backend.parent_threads:
                        handoff = gil.Scope()
                        handoff.lower()
                if primed:
                    primed = False
                    if handoff is not None:
                        handoff.restore()
                    yield []
                    if handoff is not None:
                        handoff.lower()
                if not inflight:
                    unreported = exhausted and broke is None and reported is None
                    if unreported and completed and self.on_progress is not None:
                        # the end of the tasks was found after the last batch was reported
                        # (pre_dispatch=1: each batch is read before the next is pulled): once more, with
                        # the total, so the last line says "finished" and a bar completes
                        self.n_dispatched_tasks, self.n_dispatched_batches = dispatched, seq
                        self.on_progress(completed, dispatched)
                    if broke is not None:
                        raise broke
                    break
                batch = self._next_done()
                try:
                    results, seconds = self.replies.read(batch)
                except TaskExitError as exc:
                    self._asyncio_ctrl_c(exc)
                    raise
                # its arguments (and their shared-memory files) can go now, and its future
                # (whose callback holds the batch: a cycle) with the reply, by reference
                # counting, as the pool's thread lets go of it, not at the next GC
                batch.items = batch.future = None
                del inflight[batch.seq]
                self.batcher.record(batch.n, seconds)
                completed += batch.n
                if self.on_progress is not None:
                    # total: the known length, else the dispatched count once exhausted.
                    total = self.total if self.total is not None else pulled if exhausted else None
                    self.n_dispatched_tasks, self.n_dispatched_batches = dispatched, seq  # for the hook
                    self.on_progress(completed, total)
                    reported = total
                if not self.ordered:
                    out = [results]
                else:
                    ready[batch.seq] = results
                    out = []
                    while next_out in ready:
                        out.append(ready.pop(next_out))
                        next_out += 1
                if not out:
                    continue
                if handoff is not None:  # the caller's code runs between results: not ours
                    handoff.restore()
                for results in out:
                    yield results
                if handoff is not None:
                    handoff.lower()
            clean = not self.cancelled  # every batch read, none left running
        except BaseException as exc:
            if isinstance(exc, GeneratorExit):  # closed early: what it leaves (Parallel's warning)
                finished = completed + sum(
                    b.n for b in inflight.values() if b.future is not None and b.future.done()
                )
                self.left_unused = (finished, dispatched - finished)
            # a real Ctrl-C, not a task's own KeyboardInterrupt (TaskInterruptError)
            ctrl_c = isinstance(exc, KeyboardInterrupt) and not isinstance(exc, TaskExitError)
            if self.pid == forklocks.getpid():  # (a forked child's copy leaves the parent's call alone)
                self._cancel(inflight, hard=ctrl_c)
            # The error's traceback holds this frame (and the call): the tasks' arguments it
            # reaches (the batch read, those still in flight, those pulled and not sent) and
            # the results read and not given yet (of the batches after one not read) would
            # live as long as the error, which a handler keeps (`except E as e: log(e)`), or
            # the pool's work item of a batch still running after it; none is needed now
            for pending in inflight.values():
                pending.items = None
            held.clear()
            ready.clear()
            batch = items = head = None  # type: ignore[assignment]
            results, out = [], []
            raise
        finally:
            if handoff is not None:
                handoff.restore()
            self.close(clean)
            mine = self.pid == forklocks.getpid()  # (not a forked child's copy)
            if 0 < seq == self.sent_direct <= self.backend.n_workers and not self.cancelled and mine:
                self.backend.small_call_done()  # a batch per worker at most, each could take a lane

    def _next_done(self) -> Pending:
        """The next finished batch; while none is, look after the pool (never wait blindly)."""
        poll = PROGRESS_POLL if self.watchdog is None else min(self.watchdog.poll, PROGRESS_POLL)
        while True:
            wait = poll
            if len(self.inflight) == 1 and self._done.empty():
                # one batch out, in a lane: its reply is read here (executor.lanes.LaneFuture)
                read_here = getattr(next(iter(self.inflight.values())).future, "read_here", None)
                if read_here is not None and read_here(poll):
                    wait = 0
            try:
                return self._done.get(timeout=wait)
            except queue.Empty:
                pass
            self._asyncio_ctrl_c(None)
            if self.watchdog is not None:
                self.watchdog.check()
            stalled = self.look()
            if stalled is not None and self._done.empty():
                pending = sorted(self.inflight.values(), key=lambda b: b.first)
                # names the task a dead worker was running (or the one past its timeout)
                error = self.replies.crash_error(pending[0], WorkerCrashedError(stalled)) if pending else None
                self.backend.shutdown(kill=True)
                raise error or WorkerCrashedError(f"{stalled}. Rerun the call.")

    def _asyncio_ctrl_c(self, task_error: TaskExitError | None) -> None:
        """Raise ``KeyboardInterrupt`` if ``asyncio.run`` had a Ctrl-C since the call began.

        *task_error*: a task's ``KeyboardInterrupt`` that a reply brought meanwhile (a
        terminal's Ctrl-C reaches the workers too, in its process group): the user's Ctrl-C,
        not the task's own, which it was taken for (a ``TaskInterruptError`` telling to fix
        the task). Python's own SIGINT handler raises in the calling thread before that
        reply is read; asyncio's only counts it, as this reads.
        """
        if self.asyncio_watch is None or not interrupts.interrupted_since(self.asyncio_watch):
            return
        if task_error is not None and not isinstance(task_error.original, KeyboardInterrupt):
            return
        raise KeyboardInterrupt(
            "Ctrl-C: asyncio.run was interrupted while this Parallel call ran (in a "
            "coroutine, or in a thread of asyncio.to_thread or run_in_executor); the "
            "call was cancelled and its workers stopped"
        ) from None

    def _cancel(self, inflight: dict[int, Pending], hard: bool) -> None:
        self.cancelled = True
        if self.session is not None:
            self.session.cancel(self.call_id)
        if self.stop_flag is not None:
            self.stop_flag.set()
        for batch in inflight.values():
            if batch.future is not None:
                batch.future.cancel()
        if hard:  # Ctrl-C: stop the workers too, leave no process behind
            try:
                self.backend.shutdown(kill=True)
            except Exception:  # pragma: no cover - best effort during interrupt
                print("picklepool: could not stop workers cleanly", file=sys.stderr)
