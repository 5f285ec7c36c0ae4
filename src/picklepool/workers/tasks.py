"""Running the tasks of one batch, in order, with the call's timeout.

Used inside a worker (``workers.runner``) and, on the objects themselves, by the
in-process backends (:func:`run_local`). A batch stops at its first exception;
the outcome is a ``wire.Results``, ``wire.TaskFailed``, ``wire.Cancelled`` or,
for an item that is not a delayed call, a ``wire.Failure`` of kind "bad-item".

Timeouts: in a worker's main thread, SIGALRM interrupts a late task, and so in the
calling process's main thread when the program uses no SIGALRM of its own (an
``n_jobs=1`` call: :func:`run_local`); elsewhere (a dask worker thread, another
thread of the calling process) the tasks run in a helper thread watched with a
deadline (:func:`execute_watched`). Once the deadline fired, the
task's outcome is ``TaskTimeoutError`` whatever it does next: a task that catches
the interruption and returns does not make the call succeed past its timeout. On
the threading backend a late task is not interrupted at all, as in joblib: its
thread runs on until the task returns, and the call fails at the deadline.

In-process calls (:func:`run_local`) share a stop flag (a ``threading.Event``, set
when the call fails or is cancelled): no task starts once it is set.
"""

from __future__ import annotations

import contextvars
import ctypes
import itertools
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import TaskTimeoutError
from ..wire import Cancelled, Failure, Raised, Results, TaskFailed, format_error
from . import control, handback, joblibnest

Funcs = Sequence[Callable[..., Any]]
_KWARGS_TYPES = {dict, type(None)}  # None: no keyword arguments, as in (f, args, None)


# The batch each thread is running: a serial number and its status (index 1: the running
# task, -1 between tasks). ``current_task`` names the running task from these, so the
# tight loops below mark nothing per task (a ``SharedState`` copy reads it, workers.snapshots).
# Only a worker's own batches mark; a call a task makes in its own process (n_jobs=1,
# threading: ``run_local``) runs inside that task, and threads the task starts, which
# have no batch of their own, belong to the batch this process began last.
class _Running(threading.local):
    batch: tuple[int, Any] | None = None  # (serial, status) of this thread's batch; None: none


_running = _Running()
_serials = itertools.count(1)
_last: list[Any] = [(0, [0, -1])]  # [(serial, status)] of the batch begun last in this process


def _begin(status: Any) -> None:
    # one pair, set in one store per place (a batch's fixed cost: two thread-local stores were twice this)
    _running.batch = _last[0] = (next(_serials), status)


def current_task() -> tuple[int, int]:
    """``(batch serial, task index)`` of the task this thread runs now (index -1 between tasks).

    Two different tasks never give the same pair in one process, so a worker can
    tell "the same task again" from "a later task" without counting tasks. A thread
    that runs no batch of its own (one a task started, or a pool thread of a nested
    threading call) counts as the task the process runs now.
    """
    serial, status = _running.batch or _last[0]  # (none: this thread runs no batch of its own)
    return serial, int(status[1])


class _Timeout(BaseException):
    """Raised by SIGALRM (or an asynchronous exception) inside a task past its time."""


_fired = [False]  # set by the alarm handler: the running task's deadline passed
# Whether a task runs under the alarm now (``execute``): the handler interrupts only
# that. An alarm that comes once the task ended (one that raised just at its deadline)
# is noted, not raised in ``execute``'s own code, where it escaped as this module's
# private ``_Timeout`` instead of the task's outcome.
_armed = [False]
_late = [False]  # an alarm came after the task had ended
_deadline = [0]  # time.monotonic_ns() at which the running task's timeout passes


def _on_alarm(signum: int, frame: Any) -> None:
    if not _armed[0]:
        _late[0] = True
        return
    if time.monotonic_ns() < _deadline[0]:
        # Not the call's timer, which never fires early: the task set one of its own
        # (signal.alarm, signal.setitimer), which replaced it, with no handler of its own.
        # SIGALRM then ends the process, as it does without timeout= (in a worker, a
        # WorkerCrashedError that says so), rather than pass for a timeout it is not.
        _armed[0] = False
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGALRM)
        return
    _armed[0] = False
    _fired[0] = True
    raise _Timeout


def _never(call_id: int) -> bool:
    return False


def bad_item_message(item: Any, index: int | None) -> str:
    """Why *item* (at *index* of the user's iterable; None: not known) is not a call."""
    where = "an item" if index is None else f"item {index}"
    wrapped = getattr(item, "__wrapped__", None) if callable(item) else None
    if wrapped is not None and not callable(wrapped):  # joblib's delayed(f(x)), not called
        return (
            f"{where} of the iterable given to Parallel is delayed({wrapped!r:.100}) (type "
            f"{type(wrapped).__qualname__}), which is not callable: a delayed call needs the "
            "function itself, then the task's arguments: write delayed(f)(x), not delayed(f(x)), "
            "which calls f in the parent and delays its result."
        )
    if callable(item):  # delayed(f) never called with the task's arguments
        name = getattr(item, "__qualname__", None) or type(item).__name__
        return (
            f"{where} of the iterable given to Parallel is the function {name} itself "
            f"({item!r:.200}), not a delayed call of it: call what delayed() returns with the "
            f"task's arguments, Parallel(...)(delayed({name})(x) for x in xs)."
        )
    parts = item if type(item) is tuple and len(item) == 3 else None
    if parts is not None and not callable(parts[0]):  # delayed(f(x))(...): f already called
        f = parts[0]
        return (
            f"{where} of the iterable given to Parallel calls {f!r:.200} (type "
            f"{type(f).__qualname__}), which is not callable: {item!r:.200}. A delayed call "
            "needs the function itself: write delayed(f)(x), not delayed(f(x))(), which "
            "calls f in the parent and delays its result."
        )
    if parts is not None:  # a callable with arguments that are not a tuple, or keywords not a mapping
        return (
            f"{where} of the iterable given to Parallel is not a delayed call: {item!r:.200}; "
            f"its arguments must be a tuple or list (here {type(parts[1]).__qualname__}) and "
            f"its keywords a dict or None (here {type(parts[2]).__qualname__}). Write "
            "Parallel(...)(delayed(f)(x) for x in xs), or yield (function, args_tuple, kwargs_dict) tuples."
        )
    return (
        f"{where} of the iterable given to Parallel is not a delayed call: "
        f"{item!r:.200}. Write Parallel(...)(delayed(f)(x) for x in xs), or yield "
        "(function, args_tuple, kwargs_dict) tuples."
    )


def good_call_parts(args: Any, kwargs: Any) -> bool:
    """Whether ``f(*args, **kwargs)`` is a call as joblib takes it: a tuple or list of
    arguments (namedtuples too), and a mapping of keywords (or None: none)."""
    return isinstance(args, (tuple, list)) and (kwargs is None or isinstance(kwargs, Mapping))


def _bad_items(funcs: Funcs, fidx: Any, args: Sequence[Any], kwargs: Sequence[Any] | None, first: int) -> Any:
    """A "bad-item" ``Failure`` for the first task whose args are not a tuple or list (or
    kwargs a mapping).

    Checked here, one pass in C per column, rather than in the parent, whose time
    is the bottleneck of tiny tasks; nothing of the batch has run yet.
    """
    if set(map(type, args)) <= {tuple} and (kwargs is None or set(map(type, kwargs)) <= _KWARGS_TYPES):
        return None
    for k, a in enumerate(args):
        kw = None if kwargs is None else kwargs[k]
        if not good_call_parts(a, kw):
            f = funcs[fidx if isinstance(fidx, int) else fidx[k]]
            shown = {} if kwargs is None else kw  # no column: the batch's kwargs were all empty
            return Failure("bad-item", first + k, "item", bad_item_message((f, a, shown), first + k))
    return None


TIMEOUT_ADVICE = "Raise the timeout, or make the task faster."

# What became of a late task, by where it ran (the message of its TaskTimeoutError).
INTERRUPTED = "and was interrupted"
INTERRUPTED_THREAD = (
    "and was interrupted (it ran in a thread: its Python code stops at once, compiled code when it returns)"
)
LEFT_RUNNING = (
    "and was not interrupted: its thread keeps running until the task returns, as a Python "
    "thread cannot be stopped (the threading backend, as in joblib). The call's tasks not "
    "started yet were cancelled"
)

HELD_GIL = (
    "and could not be interrupted: it ran compiled code that held the GIL past the deadline "
    "(so no thread could act before it returned); its outcome was dropped"
)


LATE = "and returned as its deadline passed; its outcome was dropped"
TIMER_TAKEN = (
    "and could not be interrupted: its SIGALRM timer was cancelled or taken over by the "
    "task's own code (signal.alarm, signal.setitimer or a SIGALRM handler of its own, as "
    "timeout libraries use); its outcome was dropped"
)


def _timed_out(index: int, timeout: float | None, fate: str = INTERRUPTED) -> TaskFailed:
    exc = TaskTimeoutError(f"task {index} ran longer than timeout={timeout}s {fate}. {TIMEOUT_ADVICE}")
    return TaskFailed(index, exc, "")


def _flag(stop: threading.Event) -> Callable[[int], bool]:
    """``cancelled(call_id)`` for an in-process call: whether its stop flag is set."""
    return lambda call_id: stop.is_set()


def execute_isolated(
    funcs: Funcs,
    fidx: Any,
    args: Sequence[tuple[Any, ...]],
    kwargs: Sequence[dict[str, Any]] | None,
    first: int,
    view: Any = None,
    call_id: int = 0,
    single_arg: bool = False,
    splittable: bool = False,
) -> Any:
    """Run every task of a batch; a task's exception becomes a ``wire.Raised`` value.

    For ``picklepool.Executor``, whose tasks are independent futures coalesced into
    one batch: one failing task must neither skip nor lose the others. The
    cancel flag is not read (a running future cannot be cancelled).
    *single_arg*: each entry of *args* is the one positional argument of its task
    (``Executor.map`` over one iterable: one function, no kwargs).
    *splittable*: tasks a long one keeps waiting are given back (``workers.handback``):
    the results then stop before them.
    """
    results: list[Any] = []
    append = results.append
    forked = control.forked_child
    status = view.status if view is not None else [0, -1, 0, 0, -1]
    status[0] = call_id
    _begin(status)
    start = time.perf_counter()
    gated = splittable and view is not None and len(args) > 1  # the parent reads the status
    if single_arg and not gated:
        f = funcs[0]
        for i, a in enumerate(args, first):
            status[1] = i
            try:
                append(f(a))
            except BaseException as exc:  # noqa: BLE001 - delivered through the task's future
                append(Raised(exc, format_error(exc)))
            if forked[0]:  # a child the task forked: no other task (the runner ends it)
                break
        status[1] = -1
        return Results(results, time.perf_counter() - start)
    bad = None if single_arg else _bad_items(funcs, fidx, args, kwargs, first)
    if bad is not None:
        return bad
    one = isinstance(fidx, int)
    gate = handback.watch(status, first + len(args)) if gated else None
    try:
        for i, a in enumerate(args, first):
            if gate is None:
                status[1] = i
            elif not gate.enter(i):  # given back: the parent sends it again
                break
            k = i - first
            try:
                f = funcs[fidx if one else fidx[k]]
                if single_arg:
                    append(f(a))
                    continue
                kw = None if kwargs is None else kwargs[k]
                append(f(*a, **kw) if kw else f(*a))
            except BaseException as exc:  # noqa: BLE001 - delivered through the task's future
                append(Raised(exc, format_error(exc)))
            if forked[0]:  # as above
                break
    finally:
        if gate is not None:
            handback.done(gate)
    status[1] = -1
    return Results(results, time.perf_counter() - start)


def execute(
    funcs: Funcs,
    fidx: Any,
    args: Sequence[tuple[Any, ...]],
    kwargs: Sequence[dict[str, Any]] | None,
    first: int,
    view: Any = None,
    call_id: int = 0,
    timeout: float | None = None,
    format_tb: bool = True,
    mark: bool = True,
    stop: threading.Event | None = None,
    alarm: bool = False,
    single_arg: bool = False,
) -> Any:
    """Run the tasks of one batch in order; stop at the first exception.

    *single_arg*: each entry of *args* is the one positional argument of its task
    (one function, no kwargs: ``functions.one_argument``, checked in the parent).

    *mark*: this batch names the running task for ``current_task`` (a worker's
    batch); False for ``run_local``, whose tasks run inside the caller's task.

    *format_tb*: send the exception's traceback as text (a worker process); in the
    calling process (``run_local``) the exception object keeps its own traceback, and
    formatting it at every level of a deep recursion of nested calls would cost the
    square of its depth.

    Before each task its index goes into the worker's status (*view*, a
    ``workers.control.WorkerView``) so that the parent can name the task a crashed
    worker was running; the call's cancel flag (the view's, else *stop*, an
    in-process call's) is read before every task in batches of up to 64 tasks,
    else every 32 tasks.
    """
    bad = None if single_arg else _bad_items(funcs, fidx, args, kwargs, first)
    if bad is not None:
        return bad
    results: list[Any] = []
    append = results.append
    status = view.status if view is not None else [0, -1, 0, 0]
    cancelled = view.cancelled if view is not None else _never if stop is None else _flag(stop)
    every = 0 if len(args) <= 64 else 31  # i & every == 0: read the cancel flag
    # SIGALRM only inside a worker process (a session view): in the calling process it
    # would clobber the user's own timers (run_local uses a watching thread there).
    use_alarm = timeout is not None and (view is not None or alarm) and can_alarm()
    previous = signal.signal(signal.SIGALRM, _on_alarm) if use_alarm else None
    if mark:  # (_begin, without its call)
        _running.batch = _last[0] = (next(_serials), status)
    i = first
    start = time.perf_counter()
    try:
        status[0] = call_id
        if single_arg and not use_alarm:
            f = funcs[0]  # the commonest case, tiny tasks included: the leanest loop
            for i, a in enumerate(args, first):
                status[1] = i
                if not i & every and cancelled(call_id):
                    return Cancelled(call_id)
                append(f(a))
        elif isinstance(fidx, int) and kwargs is None and not use_alarm:
            f = funcs[fidx]
            for i, a in enumerate(args, first):
                status[1] = i
                if not i & every and cancelled(call_id):
                    return Cancelled(call_id)
                append(f(*a))
        else:
            for i, a in enumerate(args, first):
                if single_arg:
                    a = (a,)
                status[1] = i
                if not i & every and cancelled(call_id):
                    return Cancelled(call_id)
                k = i - first
                f = funcs[fidx if isinstance(fidx, int) else fidx[k]]
                if use_alarm:
                    _fired[0] = _late[0] = False
                    status[2] = began = time.monotonic_ns()  # lets the parent kill a task stuck in C
                    _deadline[0] = began + int(timeout * 1e9) - 1_000_000  # type: ignore[operator]
                    signal.setitimer(signal.ITIMER_REAL, timeout)  # type: ignore[arg-type]
                    _armed[0] = True
                kw = None if kwargs is None else kwargs[k]
                append(f(*a, **kw) if kw else f(*a))
                if use_alarm:
                    _armed[0] = False  # first: no interruption from here on
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    if _fired[0]:  # the task caught the interruption and returned anyway
                        return _timed_out(i, timeout)
                    if time.monotonic_ns() - began > timeout * 1e9:  # type: ignore[operator]
                        # the alarm came as it returned, or never: the task cancelled the
                        # timer (signal.alarm(0)) or put a SIGALRM handler of its own in
                        return _timed_out(i, timeout, LATE if _late[0] else TIMER_TAKEN)
    except _Timeout:
        _armed[0] = False
        return _timed_out(i, timeout)
    except BaseException as exc:  # every task error goes to the parent
        if use_alarm:
            _armed[0] = False  # first: the alarm does not raise in here
            signal.setitimer(signal.ITIMER_REAL, 0)
            if _fired[0]:  # the interruption was turned into another exception
                return _timed_out(i, timeout)
        tb = format_error(exc) if format_tb else ""
        # The exception's traceback holds this frame, and the task's frame its caller's
        # (run_local's, execute_watched's helper's): in the calling process, which keeps
        # the exception itself, the other tasks' arguments and the results before it
        # would live as long as the caller keeps the error
        del args, kwargs, funcs, results, append
        return TaskFailed(i, exc, tb)
    finally:
        status[1] = -1
        if use_alarm:
            _armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return Results(results, time.perf_counter() - start)


def run_local(
    funcs: Funcs,
    fidx: Any,
    args: Sequence[tuple[Any, ...]],
    kwargs: Sequence[dict[str, Any]] | None,
    first: int,
    timeout: float | None,
    stop: threading.Event | None = None,
    interrupt: bool = True,
) -> Any:
    """Run a batch in the calling process (in-process backends): no pickling, no signals.

    *stop*: the call's stop flag; no task starts once it is set. *interrupt*: what
    becomes of a task past *timeout* (see :func:`execute_watched`).
    """
    alarm = timeout is not None and interrupt and _alarm_is_free()
    if timeout is not None and not alarm:
        return execute_watched(
            funcs, fidx, args, kwargs, first, None, 0, timeout, False, stop, interrupt, format_tb=False
        )
    nest = joblibnest.enter()  # on a pool thread: joblib code nests as in a joblib worker
    try:
        return execute(
            funcs,
            fidx,
            args,
            kwargs,
            first,
            timeout=timeout,
            format_tb=False,
            mark=False,
            stop=stop,
            alarm=alarm,
        )
    finally:
        joblibnest.leave(nest)
        # a task's error holds this frame too (see execute); the outcome is no local of
        # it (a cycle through the error's traceback: gone only at the next GC)
        del funcs, args, kwargs


def _alarm_is_free() -> bool:
    """Whether a call in this thread may time its tasks with SIGALRM, as a worker does.

    Only in the main thread, and only while the program uses no SIGALRM of its own
    (Python's default disposition, no interval timer running): then the tasks of an
    ``n_jobs=1`` call run in the caller's own thread, so what is bound to it (an
    ``sqlite3`` connection, ``threading.local`` values, ``signal.signal``) works as
    without a timeout, and a task blocked in a sleep or a read is interrupted too.
    Elsewhere they run in a helper thread (:func:`execute_watched`).
    """
    if not can_alarm():
        return False
    try:
        return signal.getsignal(signal.SIGALRM) == signal.SIG_DFL and signal.getitimer(
            signal.ITIMER_REAL
        ) == (
            0.0,
            0.0,
        )
    except (ValueError, OSError):  # pragma: no cover - no such signal here
        return False


def can_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def execute_watched(
    funcs: Funcs,
    fidx: Any,
    args: Sequence[tuple[Any, ...]],
    kwargs: Sequence[dict[str, Any]] | None,
    first: int,
    view: Any,
    call_id: int,
    timeout: float,
    mark: bool = True,
    stop: threading.Event | None = None,
    interrupt: bool = True,
    format_tb: bool = True,
) -> Any:
    """``execute`` with a per-task deadline where SIGALRM cannot reach (a worker thread).

    The tasks run one by one in a helper thread while this thread waits for each
    with the deadline. When a task is late, this thread replies at once with
    ``TaskTimeoutError``, and the batch's later tasks do not start. With
    *interrupt*, the helper thread is interrupted by an asynchronous exception,
    which Python delivers as soon as the task runs Python code again; a task stuck
    inside compiled code keeps its (abandoned) thread until it returns from that
    code. Without (the threading backend, as in joblib, whose tasks share the
    caller's objects: one stopped halfway would leave them half changed), the task
    runs on until it returns. Either way the helper is a daemon thread: a late task
    never delays the interpreter's exit.

    The helper thread runs in this thread's context, and its tasks see joblib's
    nested config as this thread's would (``workers.joblibnest``). *stop*: an
    in-process call's stop flag, read before each task (see :func:`execute`).

    A task that held the GIL past its deadline (compiled code that does not release
    it: this thread could not wake before the task returned) is timed out all the
    same, by its own duration: its outcome is dropped, as joblib's threading backend
    raises then too.
    """
    bad = _bad_items(funcs, fidx, args, kwargs, first)  # before any task of the batch runs
    if bad is not None:
        return bad
    if stop is not None and stop.is_set():  # the call failed meanwhile: no thread to start
        return Cancelled(call_id)
    outcomes: queue.SimpleQueue[Any] = queue.SimpleQueue()
    halt = threading.Event()  # this batch's own: set at its deadline

    def work() -> None:
        nest = joblibnest.enter()
        try:
            for i in range(len(args)):
                if halt.is_set():
                    return
                one = fidx if isinstance(fidx, int) else (fidx[i],)
                kw = None if kwargs is None else (kwargs[i],)
                began = time.perf_counter()
                outcome = execute(
                    funcs, one, (args[i],), kw, first + i, view, call_id, None, format_tb, mark, stop
                )
                outcomes.put((outcome, time.perf_counter() - began))
                if type(outcome) is not Results:
                    return  # the batch stops at its first failure, as execute's loop does
        except _Timeout:
            pass
        finally:
            joblibnest.leave(nest)

    start = time.perf_counter()
    # The tasks run in this thread's context (contextvars: the decimal context, numpy's
    # error handling, parallel_config, the user's own variables), as they would here.
    context = contextvars.copy_context()
    helper = threading.Thread(target=context.run, args=(work,), name=f"picklepool-task-{first}", daemon=True)
    helper.start()
    results: list[Any] = []
    for i in range(len(args)):
        try:
            outcome, took = outcomes.get(timeout=timeout)
        except queue.Empty:
            halt.set()
            if not interrupt:
                return _timed_out(first + i, timeout, LEFT_RUNNING)
            _interrupt(helper)
            return _timed_out(first + i, timeout, INTERRUPTED_THREAD)
        if took > timeout:  # compiled code held the GIL past the deadline: this thread woke late
            halt.set()
            return _timed_out(first + i, timeout, HELD_GIL)
        if type(outcome) is not Results:
            halt.set()
            # the helper has stopped (its last task failed), and its frame, which a
            # task's error holds (see execute), reaches the batch through this cell
            del args
            return outcome
        results.extend(outcome.values)
    return Results(results, time.perf_counter() - start)


def _interrupt(thread: threading.Thread) -> None:
    """Raise ``_Timeout`` in *thread* the next time it runs Python code."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_Timeout))
