"""The worker's entry point: a ``wire.Batch`` in, reply bytes out.

    Batch ──load the pickler (cached), the functions (cached by content), the tasks
      ──mirror the parent's state (workers.mirror), apply limits (workers.limits)
      ──run the tasks (workers.tasks) ──reply bytes (workers.replies)

Everything that reaches the parent is made by the call's pickler, except a
failure of that pickler itself, framed without it (``wire.Failure``). This module
imports nothing of ``picklepool.executor``: a worker never loads the front end.
"""

from __future__ import annotations

import contextvars
import functools
import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

from .. import keptmodules, lokycompat, signalhold
from ..errors import TaskTimeoutError, error_text
from ..pickler.base import BasePickler
from ..pickler.buffers import Frames
from ..pickler.classes import loads_keeping
from ..wire import (
    Batch,
    Cancelled,
    Captured,
    Failure,
    FreedAfterSending,
    FuncSpec,
    NumericState,
    ParentState,
    Raised,
    Results,
    TaskFailed,
)
from . import (
    buffers,
    changes,
    contextvalues,
    control,
    joblibnest,
    journal,
    logback,
    mainnames,
    mirror,
    moduleglobals,
    output,
    prologue,
    registrations,
    registries,
    replies,
    warmheap,
    warnback,
    warnfilters,
)
from .blobs import MissingBlobs, attach, blob_size, collecting_missing, detach, read_blob
from .cache import objects
from .limits import before_batch
from .memory import after_batch, retire
from .reached import loading
from .snapshots import forget as forget_states
from .tasks import can_alarm, execute, execute_isolated, execute_watched

# Batches pickled in at least this many bytes (or through files or a stream), or whose reply
# is, free their arguments and results after the reply is sent (wire.FreedAfterSending: ~8 us
# more per reply; freeing a 1M-item list takes ~10 ms).
FREE_AFTER_SENDING = 64 << 10


def _pickler(header: bytes) -> Any:
    return _pickler_and_loads(header)[1]


def _pickler_and_loads(header: bytes) -> tuple[bytes, Any, Callable[..., Any]]:
    """``(header, the pickler, its loads)``: the call's pickler, built once per header."""
    global _last_pickler
    last = _last_pickler
    if last is not None and last[0] == header:  # the call's pickler, as for the batch before
        return last
    pickler = objects.get_or_build(("header", header), len(header), lambda: pickle.loads(header))
    _last_pickler = last = (header, pickler, _loads_of(pickler))
    return last


def _loads_of(pickler: Any) -> Callable[..., Any]:
    """*pickler*'s ``loads``: ``pickle.loads`` itself when that is what it runs (``BasePickler``'s)."""
    own = getattr(pickler, "__dict__", None) or {}
    if getattr(type(pickler), "loads", None) is BasePickler.loads and "loads" not in own:
        return pickle.loads
    return pickler.loads  # type: ignore[no-any-return]


# (header, pickler, loads) of the last batch
_last_pickler: tuple[bytes, Any, Callable[..., Any]] | None = None


class _Kept:
    """A rebuilt function in the cache: what it carried when built, and its last call.

    *fixed*: its baseline watches nothing (a function of an importable module carries no
    state of its own): it is as sent for every call, without asking the baseline.
    """

    __slots__ = ("func", "baseline", "call", "fixed", "classes")

    def __init__(self, func: Any, call: str, classes: list[Any] | None = None) -> None:
        self.func, self.call, self.classes = func, call, classes  # (classes: held as long, _build)
        self.baseline = changes.watch_function(func)
        self.fixed = self.baseline is not None and self.baseline.empty()


def _build(pickler: Any, spec: FuncSpec) -> Any:
    """A new copy of a function sent as bytes or a blob, given its initializer's globals."""
    return _build_keeping(pickler, spec)[0]


def _build_keeping(pickler: Any, spec: FuncSpec) -> tuple[Any, list[Any]]:
    """:func:`_build`, and the classes cloudpickle's own functions rebuilt for the copy (pickler
    "cloudpickle"), to hold as long as it: a class registered in an ABC the function holds
    died after the first batch, else (``pickler.classes.loads_keeping``)."""
    _key, data, _label, call = spec
    raw = data if isinstance(data, bytes) else read_blob(data)  # a blob: a large one
    classes: list[Any] = []
    if _loads_of(pickler) is pickle.loads:
        func, classes = loads_keeping(raw)
    else:
        func = pickler.loads(raw)
    prologue.adopt(call, func)  # a partial's, a bound method's function too (workers.prologue)
    return func, classes


def _function(pickler: Any, spec: FuncSpec) -> Callable[..., Any]:
    key, data, _label, call = spec
    if isinstance(data, Frames):  # holds buffers in shared memory: mapped per batch
        return buffers.load(pickler, data)  # type: ignore[no-any-return]
    if key is not None:  # kept from an earlier batch (the usual case): no closures made
        found: _Kept | None = objects.get(("func", key))
        if found is not None and (
            found.fixed or found.call == call or (found.baseline is not None and not found.baseline.changed())
        ):
            found.call = call
            return found.func  # type: ignore[no-any-return]

    if key is None:  # an object with state of its own: a fresh copy per batch
        return _build(pickler, spec)
    size = len(data) if isinstance(data, bytes) else blob_size(data)
    made: list[_Kept] = []

    def keep() -> _Kept:
        func, classes = _build_keeping(pickler, spec)  # with its initializer's globals, then watched
        made.append(_Kept(func, call, classes))
        return made[-1]

    kept: _Kept = objects.get_or_build(("func", key), size, keep)
    if not made and kept.call != call:  # built for an earlier call: still as sent?
        if kept.baseline is None or kept.baseline.changed():
            objects.discard(("func", key))
            kept = objects.get_or_build(("func", key), size, keep)
        kept.call = call
    if made:
        _supersede(_label, key, call)
    return kept.func  # type: ignore[no-any-return]


# a function's label -> the keys of its copies kept here (workers.cache's objects)
_versions: dict[str, list[Any]] = {}


def _supersede(label: str, key: Any, call: str) -> None:
    """A new copy of the function *label* is kept for *call*: the copies earlier calls kept
    go (the parent's function changed, or the globals its copy carries: a script rebinding
    a large global before each call). Kept, each held its globals until the cache's bound
    of 1 GiB of their pickles, many times that in memory (14 MB a call for a 100,000-item
    dict, where a loop and loky keep one)."""
    keys = _versions.setdefault(label, [])
    still = [key]
    for old in keys:
        if old == key:
            continue
        found: _Kept | None = objects.get(("func", old))
        if found is None:
            continue
        if found.call != call:
            objects.discard(("func", old))
        else:  # this call's own (two functions of one label in one call: a lambda of each kind)
            still.append(old)
    _versions[label] = still
    if len(_versions) > _LABELS:
        _versions.pop(next(iter(_versions)))


_LABELS = 4096  # (the cache keeps no more entries than that)


def _as_sent(pickler: Any, specs: Sequence[FuncSpec], fns: list[Any], fresh: set[int], k: int) -> Any:
    """The batch's function *k* as the parent sent it, for an argument that is an object it
    holds (``workers.reached``): a copy of its own for this batch, as joblib unpickles one per
    batch. The copy kept across the call's batches may have been changed by a task (the
    argument's change then reached the next batch), or be running another batch now (a dask
    worker's threads: two batches would share the argument)."""
    if k not in fresh:
        fresh.add(k)
        key, data = specs[k][0], specs[k][1]
        if key is not None and not isinstance(data, Frames):  # (else made for this batch alone)
            fns[k] = _build(pickler, specs[k])
    return fns[k]


def _load_failure(what: str, first: int, label: str, exc: BaseException, status: Any = None) -> bytes:
    if status is not None:
        status[1], status[3] = -1, control.RUNNING
    message = error_text(exc)
    return Failure("load", first, what, message, traceback.format_exc(), label=label).encode()


def _run_in_context(batch: Batch) -> Any:
    parent = batch.parent
    contextvalues.set_all(parent.context)  # type: ignore[union-attr]
    return run_batch(batch._replace(parent=parent._replace(context=None)))  # type: ignore[union-attr]


def run_batch(batch: Batch) -> Any:
    """Run one batch in this worker; return its reply (bytes, or ``Frames`` of bytes)."""
    # a task's block that restored sys.modules dropped what this worker imported in it
    keptmodules.check()
    keptmodules.note()
    parent = batch.parent
    if type(parent) is NumericState and parent.context is not None:
        # a cluster's: the caller's context variables, in a copy of this thread's context
        # (not left to the other tasks this thread runs)
        return contextvars.copy_context().run(_run_in_context, batch)
    first = batch.first
    last = _last_pickler
    if last is not None and last[0] == batch.pickler:  # the call's pickler, as for the batch before
        _header, pickler, loads = last
    else:
        try:
            _header, pickler, loads = _pickler_and_loads(batch.pickler)
        except BaseException as exc:  # noqa: BLE001 - the pickler's class is not importable here
            return _load_failure("pickler", first, "", exc)
    view = control.watched_view(batch.session) if batch.session else None
    if view is not None and not batch.isolate and view.cancelled(batch.call_id):
        return pickler.dumps(Cancelled(batch.call_id))
    if batch.states_gone is not None:  # the parent's SharedStates gone: this worker's copies go
        cluster = batch.parent is None or type(batch.parent) is NumericState  # (workers not ours alone)
        forget_states(*batch.states_gone, only_these=cluster)
    numeric = None  # a cluster's: applied around the tasks only
    capture = (False, False)
    record = False  # the tasks' warnings go back to the parent (workers.warnback)
    log_parent = None  # the parent's logging, where the tasks' log records go back (workers.logback)
    parent = batch.parent
    if isinstance(parent, NumericState):
        numeric = parent.numeric
    elif parent is not None:
        mirror.apply(parent)
        capture, record = parent.capture, parent.warnings_back
        log_parent = logback.follow(parent.logging_levels)  # (and the loggers' levels set as there)
    registered, changed = (
        (parent.registries, parent.module_globals) if type(parent) is ParentState else (None, None)
    )
    status = view.status if view is not None else [0, -1, 0, 0, -1]
    # a call's timeout covers loading the batch and pickling its results too: the parent kills
    # a worker stuck there (an argument's __setstate__ that waits for a server) past it
    since = time.monotonic_ns() if batch.timeout is not None else 0
    status[0], status[1], status[2], status[3], status[4] = batch.call_id, first, since, control.LOADING, -1
    tasks = batch.tasks
    # the worker's warnings filters while it imports what the parent had imported (not the tasks')
    swapped = warnfilters.swap_in()
    try:
        token = attach(batch.attachment)
        try:
            specs = batch.functions
            try:
                fns = (
                    [_function(pickler, specs[0])]
                    if len(specs) == 1
                    else [_function(pickler, s) for s in specs]
                )
            except BaseException as exc:  # noqa: BLE001
                return _load_failure("function", first, ", ".join(s[2] for s in specs), exc, status)
            # arguments that are objects the functions hold: theirs (workers.reached)
            loading.as_sent = functools.partial(_as_sent, pickler, specs, fns, set())
            try:
                if type(tasks) is Frames and not tasks.refs and type(tasks.data) is bytes:
                    fidx, args, kwargs = loads(tasks.data, buffers=[])  # buffers.load's, with no file to map
                else:
                    fidx, args, kwargs = buffers.load(pickler, tasks)
            except BaseException as exc:  # noqa: BLE001
                return _load_failure("arguments", first, "", exc, status)
        finally:
            loading.as_sent = None
            detach(token)
    finally:
        warnfilters.swap_out(swapped)
    # after the functions' modules were imported (one registering its colormap as it is
    # imported, without force, found the name taken) and an Executor's initializer ran
    moduleglobals.apply(changed)
    registries.apply(registered)
    status[1], status[2], status[3] = -1, 0, control.RUNNING
    limits, timeout = batch.limits, batch.timeout
    if limits is not None:
        before_batch(limits)  # thread limits, once per setting
    nest = joblibnest.enter()  # joblib code in the tasks nests as in a joblib worker
    me, outcome = os.getpid(), None
    # their script's names in this worker's __main__ (workers.mainnames), and those the script's
    # copyreg reducers see (a task's pickle.dumps of such an object names the function they return)
    reducers = registrations.reducers()
    put = mainnames.enter(fns + reducers if reducers else fns)
    printed: list[str] = []
    order: list[list[int]] = []  # (the order of what the tasks printed, warned, logged)
    warned: list[Any] = []
    logged: list[Any] = []
    try:
        if numeric is not None:
            with mirror.numeric_applied(numeric):
                outcome = _execute(batch, fns, fidx, args, kwargs, view, timeout)
        elif log_parent is not None and not (capture[0] or capture[1] or record):  # (the log records only)
            with logback.collected(log_parent, batch.session) as logged:
                outcome = _execute(batch, fns, fidx, args, kwargs, view, timeout)
        elif capture[0] or capture[1] or record or log_parent is not None:
            with (
                journal.ordered() as order,
                output.captured(capture, batch.session) as printed,
                warnback.recorded(record, batch.session) as warned,
                logback.collected(log_parent, batch.session) as logged,
            ):
                outcome = _execute(batch, fns, fidx, args, kwargs, view, timeout)
        elif timeout is None and not batch.isolate:  # (_execute's commonest case, without its call)
            outcome = execute(
                fns, fidx, args, kwargs, first, view, batch.call_id, None, single_arg=batch.single_arg
            )
        else:
            outcome = _execute(batch, fns, fidx, args, kwargs, view, timeout)
    finally:
        if os.getpid() != me:
            _forked_child_returned(batch, outcome)
        joblibnest.leave(nest)
        if put is not None:
            mainnames.leave(put)
        flush_streams()  # (the tasks' prints reach a log file now, not as the worker exits)
    if type(outcome) is TaskFailed and isinstance(outcome.error, TaskTimeoutError) and lokycompat.depth():
        retire()  # replaced by loky after this reply; the rest of the pool is untouched
    since = time.monotonic_ns() if timeout is not None else 0
    status[1], status[2], status[3] = first, since, control.DUMPING
    try:
        if type(outcome) is Results and not batch.isolate:  # (replies.dump's commonest case)
            reply = replies.dump_results(pickler, outcome, first, tasks)
        else:
            reply = replies.dump(pickler, outcome, first, tasks, batch.isolate)
    except BaseException as exc:  # noqa: BLE001 - the tasks' code, run again, raised past Exception
        reply = replies.unsent(outcome, first, exc)
    if printed and (printed[0] or printed[1]) or warned or logged:
        # written to the parent's streams; the warnings shown there (workers.warnback), the
        # log records handed to its loggers (workers.logback)
        out, err = printed or ("", "")
        reply = Captured(
            reply,
            out,
            err,
            warnback.dumps(pickler, warned),
            logback.dumps(pickler, logged),
            order if len(order) > 1 else None,
        )
    status[1], status[3] = -1, control.RUNNING
    if limits is not None and limits.max_memory is not None:
        del args, kwargs, outcome
        after_batch(limits, batch.session)  # RSS check; may ask loky to recycle this worker
        return reply
    if _large(tasks) or type(reply) is not bytes or len(reply) >= FREE_AFTER_SENDING:
        # Large arguments (and results) are freed once the reply is on its way, not before;
        # the memory they took stays with the worker for the next batch (workers.warmheap).
        then = warmheap.keep_warm
        if batch.single_arg:  # the args column holds the arguments themselves
            then = functools.partial(then, single_arg=True)
        return FreedAfterSending(reply, (args, kwargs, outcome), then)
    return reply


def _forked_child_returned(batch: Batch, outcome: Any) -> None:
    """A task forked (``os.fork()``) and its child came back from the task into this
    worker's code: the child ends here.

    It went on as a worker of its own: it sent its copy of the batch's reply on the
    worker's pipe (the call got the child's results for some tasks, the worker's were
    lost), then took other calls' batches, unknown to the pool; one that called
    ``sys.exit(n)`` never exited (the task's ``waitpid`` waited for ever). A child's
    ``sys.exit(n)`` ends it with status *n*, as it would the script; one that raised
    another exception prints its traceback and ends with status 1, as the script's
    child would; one that returned ends with status 0, saying so on stderr. It runs no
    other task of the batch (``control.forked_child``).
    """
    code: Any = 0
    failed = [(outcome.error, outcome.traceback)] if type(outcome) is TaskFailed else []
    if type(outcome) is Results:  # an isolated batch's: each task's own
        failed = [(v.error, v.traceback) for v in outcome.values if type(v) is Raised]
    exits = [e for e, _ in failed if isinstance(e, SystemExit)]
    try:
        if exits:
            code = exits[0].code
            code = 0 if code is None else code if isinstance(code, int) else 1
        elif failed:
            error, text = failed[0]
            sys.stderr.write(text or "".join(traceback.format_exception(error)))
            sys.stderr.flush()
            code = 1
        else:
            sys.stderr.write(
                f"picklepool: a task (task {batch.first} or a later one of its batch) forked a "
                "child process (os.fork()) that came back from the task into the worker; the "
                "child exits here, and the worker's own results are the call's. End a forked "
                "child with os._exit() or sys.exit() (or use multiprocessing).\n"
            )
            sys.stderr.flush()
    finally:
        os._exit(code)


def flush_streams() -> None:
    """Write out what this process printed so far: to a file (``> log``, a batch system's
    log), Python buffers it by blocks, and a worker's stayed there until it exited, minutes
    after the call, after the script's own last line. The parent does the same as it sends a
    batch, so that the file has the lines in the loop's order."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception as exc:  # noqa: BLE001 - (None under pythonw, a closed or broken stream)
            if signalhold.from_handler(exc):  # (an alarm's deadline, in the parent)
                raise


def first_unloadable(header: bytes, blobs: Sequence[bytes]) -> int | None:
    """The index of the first of *blobs* that does not unpickle here, or None.

    A batch's arguments failed to unpickle in a worker, as one pickle: the parent then
    sends each task's ``(args, kwargs)`` pickled apart (``executor.replies``) to find
    the task to name. Nothing runs; what unpickles is dropped.
    """
    pickler = _pickler(header)
    for k, blob in enumerate(blobs):
        try:
            pickler.loads(blob)
        except BaseException:  # noqa: BLE001 - this one is the culprit, whatever it raised
            return k
    return None


def _execute(batch: Batch, fns: list[Any], fidx: Any, args: Any, kwargs: Any, view: Any, timeout: Any) -> Any:
    first = batch.first
    if batch.isolate:  # picklepool.Executor: no timeout, every task runs
        return execute_isolated(
            fns, fidx, args, kwargs, first, view, batch.call_id, batch.single_arg, batch.splittable
        )
    if timeout is not None and (view is None or not can_alarm()):
        if batch.single_arg:
            args = [(a,) for a in args]
        return execute_watched(fns, fidx, args, kwargs, first, view, batch.call_id, timeout)
    return execute(fns, fidx, args, kwargs, first, view, batch.call_id, timeout, single_arg=batch.single_arg)


def _large(tasks: Any) -> bool:
    """Whether a batch's arguments came in at least ``FREE_AFTER_SENDING`` bytes, or through
    files or a stream (``Frames`` of only a small pickle, which carry the results' folder
    on one machine, are small)."""
    if type(tasks) is Frames:
        data = tasks.data
        return bool(tasks.refs) or type(data) is not bytes or len(data) >= FREE_AFTER_SENDING
    return isinstance(tasks, Frames) or len(tasks) >= FREE_AFTER_SENDING


# What a task on a dask worker runs its own calls with when it does not say: the cluster
# (joblib's dask backend nests on the cluster too); a dask worker's task cannot start
# processes, so a loky call there would run sequentially.
NESTED_ON_CLUSTER = MappingProxyType({"backend": "dask"})


def run_attached(fn: Callable[[Batch], Any], batch: Batch, attachment: Any) -> Any:
    """``fn(batch)`` for dask, which delivers the batch's blobs as a separate argument.

    A ``Parallel`` call a task makes without a backend of its own runs on the same
    cluster (:data:`NESTED_ON_CLUSTER`, as a ``parallel_config`` block around the batch).

    A batch that needed data kept on the cluster which this worker has not rebuilt
    yet, and which the batch did not carry (``executor.kept``), ran none of its
    tasks: the answer is then a ``blobs.MissingBlobs`` naming the data and this
    worker, for the parent to send the batch again with it. dask keeps a task's
    result until the client has it: the bare reply is returned, so the batch's
    arguments are freed here rather than held that long (and their memory is not
    kept: dask watches its workers' memory itself).
    """
    from ..settings import pop_config, push_config  # dask only: a loky worker does not load settings

    missing: list[str] = []
    token = push_config(NESTED_ON_CLUSTER)
    try:
        with collecting_missing(missing):
            reply = fn(batch._replace(attachment=attachment))
    finally:
        pop_config(token)
    if type(reply) is FreedAfterSending:
        reply.then = None
        reply = reply.reply
    if missing:
        return MissingBlobs(tuple(dict.fromkeys(missing)), _worker_address())
    return reply


def _worker_address() -> str | None:
    """The address of the dask worker running this thread's task, or None outside one."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None
