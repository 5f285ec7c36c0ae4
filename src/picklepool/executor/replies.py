"""Reading a batch's reply in the parent, and turning failures into the right errors.

A reply is what ``workers.runner.run_batch`` returned (``wire`` lists the kinds),
or the exception the backend raised for the batch (a dead worker, a cancelled
future). Every error says what went wrong, where (the task index and its
function, with short arguments: ``task 3: crash_task(3)``) and what to do.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import os
import re
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from .. import lokycompat
from ..errors import (
    CallerInterrupt,
    RemoteTraceback,
    TaskExitError,
    TaskInterruptError,
    TaskSystemExitError,
    TaskTimeoutError,
    UnpicklingError,
    WorkerCrashedError,
    error_text,
    pickling_error,
)
from ..forklocks import renew_in_child
from ..pickler.culprit import first_failing_item
from ..pickler.diagnose import class_rebuilding
from ..pickler.homes import import_advice
from ..pickler.mainalias import main_by_another_name
from ..wire import Cancelled, Captured, Failure, Results, TaskFailed, add_note, decode_failure, unpack_reply
from ..workers import builtinnames, mirror
from ..workers.control import DUMPING, LOADING
from ..workers.prologue import INITIALIZER_FIX, initializer_failure
from ..workers.runner import first_unloadable
from ..workers.tasks import TIMEOUT_ADVICE
from . import clusteradvice, functions, leftovers, reaper
from .exitcodes import crash_advice, pickling_fault
from .functions import describe_task, label
from .printed import show_captured

_EXITS = (SystemExit, KeyboardInterrupt, GeneratorExit)
# what to do about a task's StopIteration (a Parallel call's, an Executor map's)
STOP_ITERATION_FIX = (
    "Make the function return a value or raise another exception (next(it, default) for an "
    "iterator that may be exhausted)."
)
_PARALLEL = "this Parallel call"  # a Parallel call's origin (executor.dispatch.Channel)

# loky fails every job a crash broke with one exception object: the dead worker found by
# the first call that looked, ``(call, task, pid, stage)``, for the calls of other threads
# on the same pool (the look sweeps the worker's status: a second look finds nothing)
_culprits: weakref.WeakKeyDictionary[BaseException, tuple[int, int, int, int]] = weakref.WeakKeyDictionary()
_culprits_lock = threading.Lock()
renew_in_child(globals(), "_culprits_lock", threading.Lock)  # (held at a fork: held for ever in the child)


class CrashSite:
    """What a crash error's message says of where the crash happened (``crash_site``), for
    an ``Executor`` to tell each of the calls one crash failed what happened to it.

    *where*: the words of the message that say it (`` while running task 3: f(3) (worker
    pid 41)``); *dead*: the wire index of the call's own task the dead worker was on
    (running it, or its batch's first while it unpickled the batch or pickled its
    results: its stage is in *running*; None: another call's, or not known), *pid* that
    worker's; *other*: the dead worker
    ran another call's task; *detail*: its exit code or signal (``exit code EXIT(1)``);
    *running*: ``{wire index: (pid, stage)}`` of the call's tasks workers of the broken
    pool were on when it broke (the dead one and those killed with it).
    """

    __slots__ = ("where", "dead", "pid", "other", "detail", "running")

    def __init__(
        self,
        where: str,
        dead: int | None,
        pid: int | None,
        other: bool,
        detail: str,
        running: dict[int, tuple[int, int]],
    ) -> None:
        self.where, self.dead, self.pid, self.other = where, dead, pid, other
        self.detail, self.running = detail, running


# the CrashSite of each crash error made by ReplyReader.crash_error (not an attribute: the
# error may be pickled, and its message says it all)
_sites: weakref.WeakKeyDictionary[BaseException, CrashSite] = weakref.WeakKeyDictionary()


def crash_site(error: BaseException) -> CrashSite | None:
    """The :class:`CrashSite` of a crash error ``ReplyReader.crash_error`` made, if any."""
    try:
        return _sites.get(error)
    except TypeError:  # (not weakly referenceable)
        return None


PROBE_BYTES = 64 << 20  # at most this much sent again to find a task whose arguments do not load
# at most this much of a reply is searched for the result that does not unpickle (pickler.culprit:
# about 0.4 s a MB of small values, only when the reply failed)
CULPRIT_BYTES = 4 << 20
PROBE_WAIT = 5.0  # seconds to wait for a worker's answer (it may be busy with the call's other tasks)


class Numbering(Protocol):
    """How a batch's tasks are named when its wire indices are not the user's (``Executor``)."""

    def describe(self, index: int) -> str: ...  # the task at wire index *index*

    def tasks(self) -> str: ...  # the batch's user calls, ``tasks 3..5 (first: ...)``

    def user_index(self, index: int) -> int | None: ...  # the user's index (None: a frame)


class Pending:
    """A batch in flight: its place in the call, its items (for error messages), its future.

    *numbering*: set when the batch carries frames around the user's calls (an
    ``Executor``'s initializer, joblib's config): errors then name the user's call
    index, not the position in the batch the worker reports.
    """

    __slots__ = ("seq", "first", "n", "items", "future", "numbering", "apart")

    def __init__(self, seq: int, first: int, items: Sequence[Any]) -> None:
        self.seq, self.first, self.n = seq, first, len(items)
        self.items: Sequence[Any] | None = items  # dropped once the batch succeeded
        self.future: Any = None
        self.numbering: Numbering | None = None
        # independent submissions (an Executor's): if the worker cannot load the batch,
        # none of them ran, and each is sent again alone (NotLoaded) rather than failed
        self.apart = False

    def tasks(self) -> str:
        """``tasks 3..5 (first: task 3: f(3))``, or ``task 3: f(3)`` alone."""
        if self.numbering is not None:
            return self.numbering.tasks()
        if self.n == 1:
            return self.describe(self.first)
        return f"tasks {self.first}..{self.first + self.n - 1} (first: {self.describe(self.first)})"

    def describe(self, index: int) -> str:
        """``task 3: f(3)`` for a task of this batch (just ``task N`` for others)."""
        if self.numbering is not None:
            return self.numbering.describe(index)
        k = index - self.first
        return describe_task(index, self.items[k]) if self.items and 0 <= k < self.n else f"task {index}"


class NotLoaded(Exception):
    """A worker could not load the functions or arguments of a batch marked ``Pending.apart``:
    none of its tasks ran; its submissions are to be sent again one by one, each to
    succeed or fail on its own (as with the standard library's executor)."""


def _callables_noun(items: Sequence[Any] | None, names: list[str]) -> str:
    """``class``/``classes`` when the *names* (``module.qualname``, as ``functions.label``
    gives them) a worker could not rebuild are the batch's classes (``delayed(Model)(x)``),
    else ``function``/``functions``."""
    if type(items) is functions.Calls:
        funcs: Sequence[Any] = items.funcs
    elif type(items) is functions.Column:
        funcs = [items.fn]
    else:
        funcs = [item[0] for item in items] if items else []
    classes = {label(f) for f in funcs if isinstance(f, type)}
    if all(n in classes for n in names):
        return "class" if len(names) == 1 else "classes"
    return "function" if len(names) == 1 else "functions"


class ReplyReader:
    """Decodes the replies of one call; raises the errors they report."""

    def __init__(self, call: Any) -> None:
        self.call = call  # executor.dispatch.Channel: pickler, buffers, backend, session, timeout
        # made inside a task of an n_jobs=1 call (in this thread's context, which an
        # Executor's thread reading the replies does not share) or of dask: its notes say so
        self.in_caller_task = functions.in_caller_task.get() or mirror.in_dask_task()
        # (the pool's error, what the dead worker was doing): every batch one crash broke
        # is told the same culprit, read once (its status and batch may be gone by the next)
        # (and the CrashSite's dead task, its pid, another call's, and the tasks workers ran)
        self._crash: tuple[BaseException, str, tuple[int | None, int | None, bool, dict[int, Any]]] | None = (
            None
        )

    def read(self, batch: Pending) -> tuple[list[Any], float]:
        """``(results, seconds)`` of a finished batch, or the error it reports, raised."""
        call = self.call
        try:
            reply = batch.future.result()
        except CancelledError:
            if call.cancelled:
                return [], 0.0
            tasks = batch.tasks()
            if lokycompat.interpreter_exiting():
                raise RuntimeError(
                    f"{tasks} {_were(tasks)} cancelled by the interpreter's exit "
                    f"({reaper.exit_cause()}): {reaper.exit_advice(reaper.exit_cause())}."
                ) from None
            raise RuntimeError(
                f"{tasks} {_were(tasks)} cancelled because their {call.backend.name} pool was shut "
                "down while the call was still running (for example a return_as='generator' read "
                "after its `with Parallel(...)` block ended). Consume the generator inside the block."
            ) from None
        except BrokenProcessPool as exc:
            crash = self.crash_error(batch, exc)
            raise crash from crash.__cause__ or exc  # (an initializer's traceback, when it has one)
        except RuntimeError as exc:
            # picklepool.shutdown(kill=True) in another thread: loky may fail the jobs
            # (running ones too) with its "shut down" error before it sees the workers die
            killed = reaper.stopped_by(getattr(call.backend, "_executor", None))
            if killed and lokycompat.dropped_by_kill(exc):
                raise self.crash_error(batch, exc) from exc
            raise
        if type(reply) is Captured:  # what the tasks printed, for this process's redirected streams
            # with the warnings they gave, for its own handling, and their log records, for its
            # loggers, in the order the tasks gave them
            show_captured(call.pickler, reply)
            reply = reply.reply
        if call.bytes_path:
            failure = decode_failure(reply)
            if failure is not None:
                raise self.failure_error(batch, failure)
            try:
                reply = unpack_reply(call.buffers.loads(call.pickler, reply))
            except Exception as exc:
                message = error_text(exc)
                advice = _parent_import_advice(message)
                name = call.pickler.name
                if type(reply) is bytes and (
                    _TASK_FAILED in reply[:64] or (batch.n == 1 and _RAISED in reply[:64])
                ):  # (wire.TaskFailed's name, or a one-call batch's wire.Raised: an Executor's)
                    # the task raised, and its exception is what does not unpickle here
                    raise UnpicklingError(
                        f"{batch.tasks()} raised an exception that could not be unpickled in the "
                        f"parent with pickler {call.pickler.name!r}: {message}."
                        f"{advice or _rebuild_advice('exception', 'this process', message, name, exc)}"
                    ) from exc
                culprit = self._unloadable_result(batch, reply)
                what = f"the reply of {batch.tasks()}"
                if culprit is not None:
                    what = f"the result of {batch.describe(culprit)}"
                raise UnpicklingError(
                    f"{what} could not be unpickled in the parent with "
                    f"pickler {call.pickler.name!r}: {message}."
                    f"{advice or _rebuild_advice('results', 'this process', message, name, exc)}"
                ) from exc
        kind = type(reply)
        if kind is Results:
            return reply.values, reply.seconds
        if kind is TaskFailed:
            error = self.task_error(batch, reply)
            # Not kept by this frame, nor by the batch's future (an in-process backend's
            # holds the reply itself), which the error's traceback reaches: that cycle kept
            # the call's frames alive after it failed, and with them the caller's generator
            # of tasks, not closed (its `with` blocks, a lock it holds, open) until the GC ran
            del reply
            batch.future = None  # (done: nothing is left to cancel)
            try:
                raise error
            finally:
                del error
        if kind is Failure:
            raise self.failure_error(batch, reply)
        if kind is Cancelled:
            if call.cancelled:
                return [], 0.0
            # never taken for the end of the results: they would be fewer, silently
            tasks = batch.tasks()
            raise RuntimeError(
                f"{tasks} {_were(tasks)} skipped by {_their(tasks)} worker as cancelled, but "
                f"{call.origin} was not cancelled: its cancel flag was set by something else "
                "(a call that shared it). Their results are missing: rerun the call, and "
                "report this as a picklepool bug."
            )
        raise RuntimeError(f"picklepool: unexpected reply for {batch.tasks()}: {type(reply).__name__}")

    def task_error(self, batch: Pending, failed: TaskFailed) -> BaseException:
        """The task's own exception, with the worker's traceback as its cause and a note."""
        error, where = failed.error, batch.describe(failed.task)
        if isinstance(error, CallerInterrupt):
            # a real Ctrl-C that landed in a task run in the calling thread: not the task's own.
            # Inside a task of an outer n_jobs=1 call, it stays one for that call to tell too
            # (a plain KeyboardInterrupt there was the outer task's own: TaskInterruptError)
            real = CallerInterrupt() if functions.in_caller_task.get() else KeyboardInterrupt()
            return real.with_traceback(error.__traceback__)
        if isinstance(error, _EXITS) or (isinstance(error, StopIteration) and self.call.origin == _PARALLEL):
            # (an Executor's future raises a task's StopIteration itself, as the standard library's)
            return exit_error(error, where, failed.traceback)
        if type(error) is TaskTimeoutError and str(error).startswith(f"task {failed.task} "):
            # made by the worker, which knows the index only: name the function too
            error = TaskTimeoutError(f"{where}{str(error)[len(f'task {failed.task}') :]}")
            return error
        if failed.traceback:
            _attach_remote(error, RemoteTraceback(failed.traceback))
        of, place = self._source(where, "in this process" if self.call.in_caller else "in a worker")
        add_note(error, f"(raised by {where}{of}, {place})")
        # a plugin's import; globals()[name]; breakpoint() or input() with no terminal to read
        cluster = clusteradvice.is_dask(self.call.backend)  # (no sys.path, builtins nor initializer there)
        advice = (
            (cluster and clusteradvice.task_import(error) or None)
            or import_advice(error)
            or _runtime_module_advice(error, cluster)
            or _import_hook_advice(error, cluster)
            or _main_lookup_advice(error)
            or _builtins_advice(error, cluster)
            or _stdin_advice(error)
        )
        if advice is not None and not self.call.in_caller:
            add_note(error, advice)
        return error

    def _source(self, where: str, place: str) -> tuple[str, str]:
        """How a task's error note names its call and where the task ran: ``" of this Parallel
        call"``, *place*. The note reaches the top caller too when the call was made inside a
        task (nested): it then says so, and "this process" is the worker that ran that task."""
        origin = self.call.origin
        depth = mirror.nesting()[0]
        if not depth and not self.in_caller_task:  # (a task of an n_jobs=1 call: no depth)
            return ("" if origin in where else f" of {origin}"), place
        if place == "in this process" and (lokycompat.any_depth() or (depth and not mirror.below_threads())):
            place = "in the worker running that task"
        elif place == "in a worker":
            place = "in a worker of that Executor" if "Executor" in origin else "in a worker of that call"
        name = origin.removeprefix("this ")
        return f" of {'an' if name[:1] in 'AEIOU' else 'a'} {name} made inside a task", place

    def failure_error(self, batch: Pending, failure: Failure) -> BaseException:
        where = batch.describe(failure.task)
        if failure.kind == "error":
            error = stand_in(failure)
            error.__cause__ = RemoteTraceback(failure.traceback) if failure.traceback else None
            of, place = self._source(where, "in a worker")
            add_note(
                error,
                f"(raised by {where}{of}, {place}; the exception could "
                "not be pickled back, so this is a stand-in of the same name)",
            )
            return error
        if failure.kind == "bad-item":
            k = failure.task - batch.first
            if batch.numbering is None or not batch.items or not 0 <= k < batch.n:
                return TypeError(failure.message)
            return functions.NotACall(batch.items[k], batch.numbering.user_index(failure.task), failure.task)
        if failure.kind == "dump":
            message = f"{where}: the result could not be sent back: {failure.message}"
            error = pickling_error(message, failure.mro[0] if failure.mro else None)
            error.__cause__ = RemoteTraceback(failure.traceback) if failure.traceback else None
            return error
        return self.load_error(batch, failure)

    def load_error(self, batch: Pending, failure: Failure) -> UnpicklingError:
        if batch.apart and batch.n > 1 and failure.what in ("function", "arguments"):
            raise NotLoaded(failure.what)
        name, message, what = self.call.pickler.name, failure.message, failure.what
        if what == "pickler":
            subject = f"the pickler {name!r} itself (its class must be importable in the workers)"
        elif what == "function":
            names = [n for n in failure.label.split(", ") if not n.startswith("picklepool.workers.")]
            noun = _callables_noun(batch.items, names or [failure.label])
            subject = f"the {noun} {', '.join(names) or failure.label} of {batch.tasks()}"
        elif what == "arguments" and (culprit := self._unloadable(batch)) is not None:
            subject = f"the arguments of {batch.describe(culprit)}"
        else:
            subject = f"the {what} of {batch.tasks()}"
        text = f"a worker could not rebuild {subject}, sent with pickler {name!r}: {message}."
        cluster = clusteradvice.is_dask(self.call.backend)
        text += _import_advice(name, message, cluster, what == "pickler") or _rebuild_advice(
            what, "the worker", "", name, failure.traceback
        )
        err = UnpicklingError(text)
        err.__cause__ = RemoteTraceback(failure.traceback)
        return err

    def _unloadable(self, batch: Pending) -> int | None:
        """The task of *batch* whose arguments a worker cannot unpickle, asked task by task
        (``workers.runner.first_unloadable``); None when it cannot be told (a batch of
        one, its items gone, more than ``PROBE_BYTES`` to send, no answer in ``PROBE_WAIT``)."""
        call = self.call
        if batch.n < 2 or not batch.items or call.session is None or call.pickler is None:
            return None
        blobs, size = [], 0
        try:
            for _, args, kwargs in batch.items:
                blobs.append(call.pickler.dumps((args, kwargs)))
                size += len(blobs[-1])
                if size > PROBE_BYTES:
                    return None
            k = call.backend.submit(first_unloadable, call.header, blobs).result(timeout=PROBE_WAIT)
        except Exception:  # noqa: BLE001 - the batch is named instead
            return None
        return None if k is None else batch.first + k

    def _unloadable_result(self, batch: Pending, reply: Any) -> int | None:
        """The task of *batch* whose result does not unpickle here (``pickler.culprit``), or
        None when it cannot be told (a batch of one, results in shared memory, a reply of
        more than ``CULPRIT_BYTES`` or of another format than a pickled list)."""
        if batch.n < 2 or type(reply) is not bytes or len(reply) > CULPRIT_BYTES:
            return None
        k = first_failing_item(self.call.pickler.loads, reply)
        return None if k is None or k >= batch.n else batch.first + k

    def crash_error(self, batch: Pending, exc: BaseException) -> Exception:
        """``WorkerCrashedError`` (or ``TaskTimeoutError`` for a worker the watchdog killed);
        what its message says of where the crash happened: :func:`crash_site`."""
        site: list[Any] = []
        error = self._crash_error(batch, exc, site)
        if site and isinstance(error, WorkerCrashedError) and site[0][0] in str(error):
            where, detail, (dead, pid, other, running) = site[0]
            _sites[error] = CrashSite(where, dead, pid, other, detail, running)
        return error

    def _crash_error(self, batch: Pending, exc: BaseException, site: list[Any]) -> Exception:
        call = self.call
        overdue = call.watchdog.overdue if call.watchdog is not None else None
        if overdue is not None:
            index, pid, stage = overdue
            if stage == LOADING:
                what = (
                    f"{batch.tasks()}: loading the batch's functions and arguments in the worker "
                    f"took longer than timeout={call.timeout}s (an argument's __setstate__ or "
                    "__reduce__ that waits: on a lock, a server, a large read?)"
                )
            elif stage == DUMPING:
                what = (
                    f"{batch.tasks()}: pickling the results in the worker took longer than "
                    f"timeout={call.timeout}s (a result's __reduce__ or __getstate__ that waits?)"
                )
            else:
                what = (
                    f"{batch.describe(index)} ran longer than timeout={call.timeout}s and did not "
                    "respond to interruption (stuck in compiled code?)"
                )
            return TaskTimeoutError(
                f"{what}; its worker (pid {pid}) was killed, and the pool is replaced on the "
                f"next call. {TIMEOUT_ADVICE}"
            )
        culprit = ""
        dumping = False  # the dead worker was pickling its batch's results
        why = reaper.stopped_by(getattr(call.backend, "_executor", None))
        # the dead task (ours), its worker, another call's, the tasks workers were on
        found: tuple[int | None, int | None, bool, dict[int, Any]] = (None, None, False, {})
        if self._crash is not None and self._crash[0] is exc:
            culprit = self._crash[1]  # the same crash broke an earlier batch: the same culprit
            found = self._crash[2]
        elif call.session is not None:

            def in_flight(index: int) -> bool:  # a task of this batch, or of another in flight
                return batch.first <= index < batch.first + batch.n or call.batch_of(index) is not None

            with _culprits_lock:
                dead = _culprits.get(exc)
                if dead is None or dead[0] == call.call_id:  # none yet, or ours: as in flight now
                    dead = _crashed_worker(call.session, call.call_id, in_flight)
                    if dead is not None:
                        _culprits[exc] = dead
            running = _workers_on(call.session, call.call_id, in_flight)
            if dead is not None and dead[0] != call.call_id:  # another thread's call, same pool
                found = (None, dead[2], True, running)
                tasks = batch.tasks()
                culprit = (
                    f" while running a task of another call made in this process (worker pid "
                    f"{dead[2]}), on the pool where this call's {tasks} {_were(tasks)} queued or running"
                )
            elif dead is not None:
                _call, index, pid, stage = dead
                found = (index, pid, False, {**running, index: (pid, stage)})
                holds = batch.first <= index < batch.first + batch.n
                owner = batch if holds else call.batch_of(index)
                if owner is None:  # the dead worker's batch is not one of ours in flight
                    culprit = ""
                    found = (None, None, False, running)
                elif stage == LOADING:
                    culprit = f" while unpickling {owner.tasks()} (worker pid {pid})"
                elif stage == DUMPING:
                    culprit = f" while pickling the results of {owner.tasks()} (worker pid {pid})"
                    dumping = True
                else:
                    culprit = f" while running {owner.describe(index)} (worker pid {pid})"
            else:
                found = (None, None, False, running)
            self._crash = (exc, culprit, found)
        codes = re.search(r"exit codes of the workers are \{(.*?)\}", str(exc))
        recovery = " The pool is replaced on the next call."
        if codes:
            detail = exit_codes_named(codes.group(1))
        elif isinstance(exc, WorkerCrashedError):  # the backend said what happened (dask)
            detail, recovery = str(exc), ""
        else:
            detail = type(exc).__name__
        if not culprit:
            tasks = batch.tasks()
            culprit = f" while {tasks} {_were(tasks)} queued or running"
        site.append((culprit, detail, found))
        not_a_crash = getattr(exc, "not_a_crash", None)
        if not_a_crash:  # the backend went away under the call (dask: its client was closed)
            return WorkerCrashedError(f"{exc}{culprit}. {not_a_crash}")
        if why:  # not a crash: another thread (or the interpreter's exit) stopped the pool
            advice = (
                reaper.exit_advice(why)
                if reaper.stopped_at_exit(why)
                else "Stop the workers between calls, not during one"
                + (
                    # shutdown() waited for the calls of other threads, but not for a generator's
                    ": read a return_as='generator' call to its end (or close it) before "
                    "picklepool.shutdown(), which gives the tasks still running a few seconds, "
                    "then kills their workers"
                    if why.startswith("picklepool.shutdown() after")
                    else ""
                )
            )
            return WorkerCrashedError(
                f"the workers were killed by {why}{culprit}: {detail}. {advice}.{recovery}"
            )
        initializer = getattr(call.backend, "_init", (None, ()))[0]
        exited = codes is not None and {c.strip() for c in codes.group(1).split(",")} == {"EXIT(0)"}
        if exited and initializer is not None:
            # a loky worker whose initializer raised prints the traceback and exits with 0
            failed = initializer_failure(call.backend.session_path())
            if failed is not None:  # what it raised: the message, and its traceback as the cause
                error = WorkerCrashedError(
                    f"a worker process exited{culprit}: {detail}, because the initializer "
                    f"{label(initializer)} raised {failed['error']}: {failed['message']} in it "
                    f"(its traceback is this error's cause). Fix the initializer.{recovery}"
                )
                error.__cause__ = RemoteTraceback(failed["traceback"])
                return error
            return WorkerCrashedError(
                f"a worker process exited{culprit}: {detail}, as a worker does when the "
                f"initializer {label(initializer)} raises (the traceback above on stderr, after "
                f"'Exception in initializer'). Fix the initializer.{recovery}"
            )
        if detail.endswith(INITIALIZER_FIX):  # the backend found what ended it (executor.mpbackend)
            return WorkerCrashedError(f"a worker process died{culprit}: {detail}.{recovery}")
        advice = crash_advice(codes.group(1) if codes else detail)
        if dumping and codes:
            advice = pickling_fault(codes.group(1), sys.getrecursionlimit()) + advice
        return WorkerCrashedError(f"a worker process died{culprit}: {detail}. {advice}{recovery}")


def exit_codes_named(codes: str) -> str:
    """``exit code EXIT(4)`` for loky's list of the workers' exit codes (``EXIT(4), EXIT(4)``),
    each named once: two workers whose initializer ended them alike are not two causes, and
    the message names one worker."""
    seen = list(dict.fromkeys(c.strip() for c in codes.split(",")))
    return f"exit code{'s' if len(seen) > 1 else ''} {', '.join(seen)}"


def exit_error(error: BaseException, where: str, traceback: str | None) -> TaskExitError:
    """The error for a task that raised ``KeyboardInterrupt``, ``SystemExit`` or ``GeneratorExit``
    (or ``StopIteration``, in a ``Parallel`` call).

    A :class:`TaskExitError`: for ``KeyboardInterrupt`` also a ``KeyboardInterrupt``
    (:class:`TaskInterruptError`), as joblib re-raises it; for ``SystemExit`` a
    :class:`TaskSystemExitError` carrying the task's ``code`` (not a ``SystemExit``:
    a task cannot end the caller quietly). *where* names the task.
    """
    kind = type(error).__name__
    if isinstance(error, KeyboardInterrupt):
        exit_error: TaskExitError = TaskInterruptError(
            f"{where} raised {kind}{_args(error)}. It is re-raised here as a KeyboardInterrupt, "
            "as joblib does: catch it with `except KeyboardInterrupt` (or TaskExitError), or "
            "make the task return a value or raise an ordinary exception instead. If you "
            "pressed Ctrl-C, this is where it went: a terminal sends it to the workers too, "
            "as to every process of its process group, and nothing stopped this call in this "
            "process first (Python raises KeyboardInterrupt in the main thread only, and a SIGINT "
            "handler of the program's own, one that sets a flag, raises nothing): raise "
            "KeyboardInterrupt from that handler to stop the call, or catch this."
        )
    elif isinstance(error, SystemExit):
        if error.code is None and error.args:  # rebuilt without __init__ (wire.rebuild_exception)
            error.code = error.args[0] if len(error.args) == 1 else error.args  # type: ignore[assignment]
        exit_error = TaskSystemExitError(
            f"{where} raised {kind}{_args(error)}, which would have ended your program. A task "
            "cannot exit the caller: return a value or raise an exception instead (or catch "
            f"TaskSystemExitError and call sys.exit(err.code), here {error.code!r})."
        )
        exit_error.code = error.code  # type: ignore[attr-defined]
    elif isinstance(error, StopIteration):
        # Out of the generators a call's results come through, it was Python's bare
        # RuntimeError("generator raised StopIteration") (PEP 479), as in joblib, naming no task
        exit_error = TaskExitError(
            f"{where} raised {kind}{_args(error)}, which cannot come out of a Parallel call: "
            "the generators its results come through would end there, so Python turns it into "
            "RuntimeError('generator raised StopIteration'), as with joblib (PEP 479). "
            f"{STOP_ITERATION_FIX}"
        )
    else:
        exit_error = TaskExitError(
            f"{where} raised {kind}{_args(error)}, which only a generator's own machinery should "
            "raise. Make the task return a value or raise an ordinary exception instead."
        )
    exit_error.original = error
    exit_error.__cause__ = RemoteTraceback(traceback) if traceback else error
    return exit_error


def _attach_remote(error: BaseException, remote: RemoteTraceback) -> None:
    """The worker's traceback as the cause at the end of *error*'s own chain of causes.

    A task's ``raise X from Y`` keeps ``Y`` as ``X.__cause__``, and an exception raised
    while handling ``Y`` (no ``from``) keeps it as its ``__context__``; the worker's
    traceback (which shows the whole chain as it happened there) goes after the last link.
    """
    link, seen = error, {id(error)}
    # (to the end, or where a cycle closes: cut after 16 links, it replaced the 17th's cause)
    while True:
        following = link.__cause__
        if following is None and not link.__suppress_context__:
            following = link.__context__
        if following is None or id(following) in seen:
            break
        link = following
        seen.add(id(link))
    object.__setattr__(link, "__cause__", remote)  # (not a frozen dataclass's __setattr__)


def _were(tasks: str) -> str:
    """The verb for ``Pending.tasks()``: one task or several."""
    return "were" if tasks.startswith("tasks ") else "was"


def _their(tasks: str) -> str:
    """The possessive for ``Pending.tasks()``: one task or several."""
    return "their" if tasks.startswith("tasks ") else "its"


def _args(error: BaseException) -> str:
    return f"({', '.join(map(repr, error.args))})" if error.args else ""


def _dead_worker_task(
    session: Any, call_id: int, in_flight: Callable[[int], bool] = lambda i: True
) -> tuple[int, int, int] | None:
    """``(task, pid, stage)`` of a dead worker that was busy with *call_id* on a task
    still *in_flight*, if any (an ``Executor`` is one call across pools: its earlier
    crashes' workers stay in ``Session.ended``, with tasks that came back long ago).
    None too when the crash is another call's (:func:`_crashed_worker`).
    """
    found = _crashed_worker(session, call_id, in_flight)
    return None if found is None or found[0] != call_id else found[1:]


def _workers_on(session: Any, call_id: int, in_flight: Callable[[int], bool]) -> dict[int, tuple[int, int]]:
    """``{task: (pid, stage)}``: the tasks of *call_id* still *in_flight* that workers were
    on as their pool broke, the dead ones (``Session.ended``, after :func:`_crashed_worker`'s
    sweep) and those still alive (loky fails the futures before it kills them)."""
    statuses = dict(session.ended)
    for pid in session.worker_pids():
        status = session.worker_status(pid)
        if status is not None:
            statuses[pid] = status
    return {
        status[1]: (pid, status[3])
        for pid, status in statuses.items()
        if status[0] == call_id and status[1] >= 0 and in_flight(status[1])
    }


def _crashed_worker(
    session: Any, call_id: int, in_flight: Callable[[int], bool] = lambda i: True
) -> tuple[int, int, int, int] | None:
    """``(call, task, pid, stage)`` of the dead worker whose death broke the pool, if known.

    The candidates: the dead workers busy with *call_id* on a task still *in_flight*,
    and those busy with another call (of another thread, on the same pool) that this
    look finds dead (not those an earlier look kept: one of an older crash).

    What the dead workers left (their nested pools' folders and semaphores) goes too.
    Their last statuses come from the session (``Session.ended``): a worker swept
    before, as a broken pool was stopped during the call, is still found.

    When one worker dies, loky SIGKILLs the others of its pool, and by the time this
    looks they may be dead too, with a task of the same call or another: the one that
    died of its own (an exit code, another signal) is the culprit, before one whose end
    is not known yet, before those SIGKILLed (loky's kill; the culprit's too under the
    OOM killer, when they cannot be told apart); at equal rank, one of *call_id*'s.
    """
    found = leftovers.sweep(session)  # kept in session.ended too, with what earlier sweeps found
    statuses = {**session.ended, **{pid: status for pid, status in found.items() if status}}
    busy = {
        pid: (status[0], status[1], pid, status[3])
        for pid, status in statuses.items()
        if status[1] >= 0
        and (in_flight(status[1]) if status[0] == call_id else pid in found and status[0] >= 0)
    }
    if len(busy) < 2:
        return next(iter(busy.values()), None)
    codes = lokycompat.exit_codes(busy)

    def rank(pid: int) -> tuple[int, bool]:
        code = codes.get(pid)
        return (1 if code is None else 2 if code == -signal.SIGKILL else 0), busy[pid][0] != call_id

    return busy[min(busy, key=rank)]


# in the first bytes of a reply that is a task's exception (protocol 5: the class's name
# follows its module's): wire.TaskFailed, or wire.Raised as an Executor's call's only value
_TASK_FAILED = b"picklepool.wire\x94\x8c\nTaskFailed"
_RAISED = b"]\x94\x8c\x0fpicklepool.wire\x94\x8c\x06Raised"


def _rebuild_advice(
    what: str, where: str, message: str = "", pickler_name: str = "", failure: BaseException | str = ""
) -> str:
    """What to do when unpickling *what* raised in *where* for another reason than an import
    (a *message* of a failed import, with no advice of its own: the class must be importable).
    *failure*: the exception, or the worker's traceback, which tell a failure inside
    cloudpickle's own rebuilding of a class (with pickler *pickler_name*)."""
    if _IMPORT_FAILED.search(message):
        return f" A result's class must be importable {where}." if what == "results" else ""
    if what not in ("arguments", "function", "results", "exception"):
        return ""
    kind = {
        "arguments": "An argument's",
        "function": "The function's",
        "results": "A result's",
        "exception": "The exception's (or that of an object it holds)",
    }[what]
    cause = "the original error" if where == "this process" else "the worker's traceback"
    rebuilding = class_rebuilding(failure) if failure else None
    if rebuilding is not None:
        # not the user's method: "Fix that method" sent them looking for a __setstate__ or a
        # __reduce__ they never wrote (an enum's alias member, RW = R | W, under cloudpickle)
        return f" {kind} unpickling failed in {where} {_class_rebuild_fix(pickler_name, *rebuilding, cause)}"
    return (
        f" {kind} unpickling raised in {where}: its class's __setstate__, or the callable its "
        "__reduce__ returns (often __init__ run again with other arguments), failed. Fix that "
        "method; check that the object round-trips in the parent first, with "
        f"pickle.loads(pickle.dumps(obj)), where it is easier to debug ({cause} is this "
        "error's __cause__)."
    )


def _class_rebuild_fix(pickler_name: str, function: str, subject: str, name: str, cause: str) -> str:
    """The rest of :func:`_rebuild_advice`'s words for a failure inside cloudpickle's own
    *function* rebuilding *subject* (``the enum __main__.Perm``, named *name*)."""
    by_name = f"define {name} in a module the workers import, so that it goes by name"
    fix = (
        by_name
        if pickler_name == "hybrid"
        else "use pickler='hybrid' (the default), which rebuilds the classes and enums it sends "
        f"by value itself (an enum's alias members too), or {by_name}"
    )
    return (
        f"inside cloudpickle's own rebuilding of {subject}, sent by value (cloudpickle's "
        f"{function}): not in a method of yours, but in what cloudpickle cannot do for every "
        f"class. Fix: {fix} ({cause} is this error's __cause__)."
    )


_LOOKED_UP = re.compile(r"module '__main__' has no attribute '(\w+)'|name '(\w+)' is not defined")


def _main_lookup_advice(error: BaseException) -> str | None:
    """What to do when a task in a worker looked up by name a global of this process's
    ``__main__`` (``globals()["handler_" + kind]``, ``getattr(sys.modules["__main__"], name)``,
    ``eval``) that its function's code does not name, or None.

    A function of ``__main__`` travels by value with the globals its code names, and no
    others: the loop the call replaces found the name, the worker's copy does not.
    """
    main = sys.modules.get("__main__")
    name: Any = None
    if isinstance(error, KeyError) and len(error.args) == 1:
        name = error.args[0]  # globals()[name]: only a function's or class's name is taken for one
        value = getattr(main, name, None) if isinstance(name, str) and name.isidentifier() else None
        if getattr(value, "__module__", None) != "__main__" or not callable(value):
            return None
    elif isinstance(error, (AttributeError, NameError)):
        found = _LOOKED_UP.fullmatch(str(error))
        name = found and (found[1] or found[2])
    if not isinstance(name, str) or name not in getattr(main, "__dict__", {}):
        return None
    return (
        f"({name!r} is a global of __main__ that the task looked up by name (globals()[...], "
        "sys.modules['__main__'], eval): a function of __main__ travels to the workers with "
        "the globals its code names and no others, so the worker's copy does not have it. "
        "Fix: name what it looks up in the function's code (a global dict of them, "
        f"HANDLERS = {{{name!r}: {name}}}, that the function uses), or define them in a module "
        "the workers import.)"
    )


def _runtime_module_advice(error: BaseException, cluster: bool = False) -> str | None:
    """What to do when a task's ``import`` in a worker failed for a module this process made
    at run time (``sys.modules["config"] = types.ModuleType("config")``, a shim or a stub put
    there by hand: no file), or None. The loop imported it from ``sys.modules``; a worker,
    which never ran the code that made it, has no file to import it from."""
    name = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    if not isinstance(name, str):
        return None
    module = sys.modules.get(name)
    if module is None or getattr(module, "__file__", None) is not None or name in sys.builtin_module_names:
        return None
    spec = getattr(module, "__spec__", None)
    if spec is not None and (
        getattr(spec, "loader", None) is not None or spec.origin not in (None, "built-in", "frozen")
    ):
        return None  # (a loader made it: an import hook's, _import_hook_advice)
    return (
        f"(module {name!r} was made at run time in this process (it is in sys.modules, with no "
        "file), so a worker, which imports it by name, cannot find it. Fix: pass what the task "
        "needs from it as an argument, make it a file the workers can import, or "
        + (
            clusteradvice.on_workers(f"make it in the workers too (set sys.modules[{name!r}])")
            if cluster
            else "make it in the workers too with an initializer (Parallel(initializer=...) that sets "
            f"sys.modules[{name!r}])"
        )
        + ".)"
    )


def _import_hook_advice(error: BaseException, cluster: bool = False) -> str | None:
    """What to do when a task's ``import`` in a worker failed for a module this process finds
    through an import hook it installed (``sys.meta_path``: ``pyximport.install()``, a plugin
    system's finder) that could not be sent to the workers (``workers.finders``), or None
    (this process does not find it either, or finds it as a plain file)."""
    name = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    if not isinstance(name, str):
        return None
    module = sys.modules.get(name)
    try:
        spec = getattr(module, "__spec__", None) if module is not None else importlib.util.find_spec(name)
    except Exception:  # noqa: BLE001 - (its package fails to import here too)
        return None
    loader = getattr(spec, "loader", None)
    if loader is None or type(loader).__module__.startswith(("importlib", "_frozen_importlib")):
        return None  # (not found here either, or found as a plain file or a built-in)
    hook = f"{type(loader).__module__}.{type(loader).__qualname__}"
    return (
        f"(module {name!r} is found in this process by an import hook ({hook}) that the "
        "workers do not have: the finders a program puts in sys.meta_path are sent "
        + (
            "to local workers when they can be pickled (workers.finders), not to a dask cluster's. "
            f"Fix: {clusteradvice.on_workers('install the hook in the workers (run what installed it here)')}"
            if cluster
            else "when they can be pickled (workers.finders), and this one's was not. Fix: install the "
            "hook in the workers with an initializer (Parallel(initializer=...) or "
            "Executor(initializer=...) that runs what installed it here)"
        )
        + ", or pass what the task needs from the module as an argument.)"
    )


_NOT_DEFINED = re.compile(r"name '(\w+)' is not defined")


def _builtins_advice(error: BaseException, cluster: bool = False) -> str | None:
    """What to do when a task's ``NameError`` names a name this process added to ``builtins``
    that is not sent to the workers (``workers.builtinnames``: it cannot be pickled, or is too
    large, or is a value, not a callable), or None: the loop found it, a worker has no such name."""
    if type(error) is not NameError:
        return None
    found = _NOT_DEFINED.fullmatch(str(error))
    name = found[1] if found is not None else ""
    if cluster:
        return clusteradvice.builtin_name(name) if name else None
    reason = builtinnames.left_out.get(name) or builtinnames.not_callable(name)
    if reason is None:
        return None
    return (
        f"(builtins.{name} is set in this process, but it is not sent to the workers: {reason}. "
        "Fix: pass it to the tasks as an argument, or set it in the workers with an initializer "
        f"(Parallel(initializer=...) that does builtins.{name} = ...).)"
    )


def _stdin_advice(error: BaseException) -> str | None:
    """What to do when a task in a worker stopped at a ``breakpoint()`` (``pdb``) or asked
    for ``input()``, or None: a worker's standard input is not the terminal, so pdb quit at
    once (``bdb.BdbQuit``, with no word of why) and ``input()`` read nothing (``EOFError``)."""
    kind = type(error)
    if kind.__module__ == "bdb" and kind.__name__ == "BdbQuit":
        what, fix = "stopped at a breakpoint (breakpoint(), pdb.set_trace())", "the debugger then stops in it"
    elif kind is EOFError and str(error) == "EOF when reading a line":
        what, fix = "read its standard input (input())", "or pass what input() would read as an argument"
    else:
        return None
    return (
        f"(The task {what}, but a worker's standard input is not your terminal: there is "
        "nothing to read there. Run the task in this process (n_jobs=1 or backend='sequential' "
        f"for a Parallel call, the function itself for an Executor's): {fix}.)"
    )


_IMPORT_FAILED = re.compile(r"No module named|Can't get attribute|ImportError|ModuleNotFoundError")


def _parent_import_advice(message: str) -> str:
    """What to do when this process cannot import what a worker's reply names by reference:
    a module only the worker imports (a task put its folder on the worker's ``sys.path``, or
    it is installed only where a dask worker runs), or a name that the worker's copy of a
    module has and this process's does not. ``_import_advice`` is the other way round."""
    module = re.search(r"No module named '([^']+)'", message)
    if module is not None:
        return (
            f" The worker imported it, but this process (the parent) cannot import module "
            f"{module[1]!r}, and it rebuilds what a task returns or raises with its own imports "
            "(a task put the module's folder on its worker's sys.path, or the module is installed "
            "only where the worker runs). Fix: make the module importable here too (install it, "
            "or put its folder on sys.path before the call), or have the task return plain data "
            "(built-in types, numpy arrays) made from its objects."
        )
    missing = re.search(r"Can't get attribute '([^']+)' on <module '([^']+)'", message)
    if missing is not None:
        return (
            f" The worker's module {missing[2]!r} has {missing[1]!r}, but this process's does not "
            "(the task made it at run time, or the worker imported another version of the "
            "module), and this process rebuilds what a task returns or raises with its own "
            f"modules. Fix: define {missing[1]!r} in the module's file, so that both have it, or "
            "have the task return plain data (built-in types, numpy arrays) made from its objects."
        )
    return ""


def _import_advice(pickler_name: str, message: str, cluster: bool = False, imported: bool = False) -> str:
    """What to do when a worker cannot import what a by-reference pickler named (*cluster*:
    the worker is a dask worker, which does not mirror this process's ``sys.path``;
    *imported*: the worker imports it itself, the pickler's class: no pickler sends it)."""
    module = re.search(r"No module named '([^']+)'", message)
    missing = re.search(r"Can't get attribute '([^']+)'", message)
    if module is None and missing is None:
        return ""
    if module is not None and module[1] in sys.modules:
        where = getattr(sys.modules[module[1]], "__file__", None)
        if where is None:  # made at run time: no pickler sends its functions by value unasked
            return (
                f" Module {module[1]!r} was made at run time in this process (it has no file), so "
                "the worker, which imports it by name, does not have it. Fix: register it to "
                "travel by value, cloudpickle.register_pickle_by_value(module) (with pickler "
                "'hybrid' or 'cloudpickle'), or define what the tasks use in a module the workers "
                "can import."
            )
        # a folder on sys.path helps only when the file is named as the module is
        stem = os.path.basename(str(where)).partition(".")[0]
        named = stem == module[1].rpartition(".")[2] or stem == "__init__"
        if named and cluster:
            fix = clusteradvice.shared_path_fix(module[1], str(where), None if imported else pickler_name)
            return f" M{fix[1:]}."
        fix = (
            "use pickler='hybrid' (the default), which sends the functions and classes of such a "
            "module by value" + (", or put its folder on sys.path" if named else "")
            if pickler_name != "hybrid"
            else ("put its folder on sys.path before the call, or " if named else "")
            + "register it to travel by value: cloudpickle.register_pickle_by_value(module)"
        )
        why = (
            "its folder is not on sys.path (a module loaded from its file, by a plugin loader), "
            "which workers mirror at each call"
            if named
            else f"no file of that name exists (a module made by hand, or by runpy, from {where})"
        )
        return (
            f" Module {module[1]!r} is imported in this process (from {where}) but cannot be "
            f"imported by its name in the worker: {why}. Fix: {fix}."
        )
    text = ""
    if missing and hasattr(sys.modules.get("__main__"), missing[1].partition(".")[0]):
        text += f" {missing[1]!r} is defined in __main__ (your script), which workers do not import."
        if pickler_name in ("hybrid", "cloudpickle"):  # these send its functions and classes by value
            obj: Any = sys.modules["__main__"]
            for part in missing[1].split("."):
                obj = getattr(obj, part, None)
            kind = type(obj)
            if main_by_another_name(obj):  # cloudpickle's: hybrid sends these by value
                return text + (
                    f" This process runs your script as the module {obj.__module__!r} (a process "
                    "started by multiprocessing's spawn or forkserver), and pickler "
                    f"{pickler_name!r} sends by value only the functions and classes of a module "
                    "named '__main__': it sent this one by name. Fix: use pickler='hybrid' (the "
                    "default), which sends them by value, or define it in a module the workers "
                    "can import."
                )
            return text + (
                f" Pickler {pickler_name!r} sends the functions and classes of __main__ by value, "
                f"but this object is a {kind.__module__}.{kind.__qualname__}, whose own pickling "
                "sends it by name (module and name), so the worker looks for it in a __main__ "
                "that does not have it. Fix: define it in a module the workers can import, or "
                "make it inside the task"
                + (
                    "; or use pickler='hybrid' (the default), which sends functools.lru_cache "
                    "and functools.cache functions by value."
                    if pickler_name == "cloudpickle" and kind.__name__ == "_lru_cache_wrapper"
                    else "; or use pickler='hybrid' (the default), which sends typing's NewType, "
                    "ParamSpec and TypeVarTuple of __main__ by value."
                    if pickler_name == "cloudpickle"
                    and kind.__module__ == "typing"
                    and kind.__name__ in ("NewType", "ParamSpec", "TypeVarTuple")
                    else "."
                )
            )
    return text + (
        f" Pickler {pickler_name!r} sends functions and classes by reference (module and "
        "name), so the worker must be able to import them. Fix: use pickler='hybrid' "
        "(the default) or 'cloudpickle', which send them by value, move them into an "
        "importable module, or decorate them with picklepool.wrap_non_picklable_objects."
    )


def stand_in(failure: Failure) -> BaseException:
    """An exception named like the one that could not make the trip.

    Its class subclasses the nearest importable base of the original (so ``except
    ValueError`` still catches a ``ValueError`` subclass), and carries the
    original's text.
    """
    base: type[BaseException] = Exception
    for entry in failure.mro[1:]:
        module, _, qualname = entry.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except Exception:  # noqa: BLE001 - not importable here: try the next base
            continue
        if isinstance(obj, type) and issubclass(obj, BaseException):
            base = obj
            break
    name = failure.mro[0].rpartition(".")[2].rpartition(":")[2] if failure.mro else "RemoteError"
    names = {"__module__": "picklepool.remote", "__qualname__": name}
    try:
        return _made(type(name, (base,), names), failure)
    except Exception:  # noqa: BLE001 - a base that cannot be subclassed or made: the name is kept
        return _made(type(name, (Exception,), names), failure)


def _made(cls: type[BaseException], failure: Failure) -> BaseException:
    try:
        return cls(failure.message)
    except Exception:  # noqa: BLE001 - a base whose __init__ wants other arguments
        pass
    group = getattr(builtins, "BaseExceptionGroup", None)
    if group is not None and issubclass(cls, group):  # its sub-exceptions did not travel either
        sub = RuntimeError("the group's sub-exceptions could not be sent back: see the worker's traceback")
        return cls(re.sub(r" \(\d+ sub-exceptions?\)$", "", failure.message), [sub])
    exc: BaseException = BaseException.__new__(cls)
    exc.args = (failure.message,)
    return exc
