"""What runs inside a worker: load a batch, run its tasks, send results as bytes.

A batch arrives as bytes made by the call's pickler, together with the pickler
itself (a small header) and the call's functions, each serialised once per call
and rebuilt once per worker (cached by content). The reply is one bytes object
made by the same pickler:

    ("ok", results, seconds)                  every task ran
    ("error", index, exc, traceback_text)     task *index* raised; the rest skipped
    ("cancelled",)                            the call was cancelled meanwhile
    ("load-error", what, label, message, tb)  the batch could not be unpickled here
    ("dump-error", index, message)            a result could not be pickled back
    ("bad-item", index, message)              task *index* is not a delayed call
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import TaskTimeoutError
from ..pickler import buffers
from .blobs import attached, blob_size, read_blob
from .cache import objects
from .control import WorkerView, worker_view
from .limits import WorkerLimits, before_batch
from .memory import after_batch, retire

# key (None: rebuild for every batch), bytes (inline) or a blob reference, label
FuncSpec = tuple[str | None, Any, str]


def _header(header: bytes) -> Any:
    return objects.get_or_build(("header", header), len(header), lambda: pickle.loads(header))


def _function(pickler: Any, spec: FuncSpec) -> Callable[..., Any]:
    key, data, _label = spec
    if isinstance(data, buffers.Frames):  # holds buffers in shared memory: mapped per batch
        return buffers.load(pickler, data)  # type: ignore[no-any-return]

    def build() -> Any:
        if isinstance(data, bytes):
            return pickler.loads(data)
        return pickler.loads(read_blob(data))  # a large function, sent once per call

    if key is None:  # an object with state of its own: a fresh copy per batch
        return build()  # type: ignore[no-any-return]
    size = len(data) if isinstance(data, bytes) else blob_size(data)
    return objects.get_or_build(("func", key), size, build)


class _Timeout(BaseException):
    """Raised by SIGALRM inside a task that ran past its time."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Timeout


_KWARGS_TYPES = {dict, type(None)}  # None: no keyword arguments, as in (f, args, None)


def _never(call_id: int) -> bool:
    return False


def bad_item_message(item: Any, index: int) -> str:
    return (
        f"item {index} of the iterable given to Parallel is not a delayed call: "
        f"{item!r:.200}. Write Parallel(...)(delayed(f)(x) for x in xs), or yield "
        "(function, args_tuple, kwargs_dict) tuples."
    )


def _bad_items(
    funcs: Sequence[Callable[..., Any]],
    fidx: int | Sequence[int],
    args: Sequence[Any],
    kwargs: Sequence[Any] | None,
    first: int,
) -> tuple[Any, ...] | None:
    """("bad-item", ...) for the first task whose args are not a tuple (or kwargs a dict).

    Checked here, one pass in C per column, rather than in the parent, whose time
    is the bottleneck of tiny tasks; nothing of the batch has run yet.
    """
    if set(map(type, args)) <= {tuple} and (kwargs is None or set(map(type, kwargs)) <= _KWARGS_TYPES):
        return None
    for k, a in enumerate(args):
        kw = None if kwargs is None else kwargs[k]
        if type(a) is not tuple or type(kw) not in _KWARGS_TYPES:
            f = funcs[fidx if isinstance(fidx, int) else fidx[k]]
            return ("bad-item", first + k, bad_item_message((f, a, kw), first + k))
    return None  # pragma: no cover - the column check above found one


def execute(
    funcs: Sequence[Callable[..., Any]],
    fidx: int | Sequence[int],
    args: Sequence[tuple[Any, ...]],
    kwargs: Sequence[dict[str, Any]] | None,
    first: int,
    view: WorkerView | None = None,
    call_id: int = 0,
    timeout: float | None = None,
) -> tuple[Any, ...]:
    """Run the tasks of one batch in order; stop at the first exception.

    Before each task its index goes into the worker's status (so the parent can
    name the task a crashed worker was running); the call's cancel flag is read
    before every task in batches of up to 64 tasks, else every 32 tasks.
    """
    bad = _bad_items(funcs, fidx, args, kwargs, first)
    if bad is not None:
        return bad
    results: list[Any] = []
    append = results.append
    status = view.status if view is not None else [0, -1, 0]
    cancelled = view.cancelled if view is not None else _never
    every = 0 if len(args) <= 64 else 31  # i & every == 0: read the cancel flag
    # SIGALRM only inside a worker process (a session view): in the calling process it
    # would clobber the user's own timers (run_local uses a watching thread there).
    use_alarm = timeout is not None and view is not None and _can_alarm()
    previous = signal.signal(signal.SIGALRM, _on_alarm) if use_alarm else None
    i = first
    start = time.perf_counter()
    try:
        status[0] = call_id
        if isinstance(fidx, int) and kwargs is None and not use_alarm:
            f = funcs[fidx]  # the common case, tiny tasks included: the leanest loop
            for i, a in enumerate(args, first):
                status[1] = i
                if not i & every and cancelled(call_id):
                    return ("cancelled",)
                append(f(*a))
        else:
            for i, a in enumerate(args, first):
                status[1] = i
                if not i & every and cancelled(call_id):
                    return ("cancelled",)
                k = i - first
                f = funcs[fidx if isinstance(fidx, int) else fidx[k]]
                if use_alarm:
                    status[2] = time.monotonic_ns()  # lets the parent kill a task stuck in C
                    signal.setitimer(signal.ITIMER_REAL, timeout)  # type: ignore[arg-type]
                kw = None if kwargs is None else kwargs[k]
                append(f(*a, **kw) if kw else f(*a))
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
    except _Timeout:
        exc = TaskTimeoutError(f"task {i} ran longer than timeout={timeout}s and was interrupted")
        return ("error", i, exc, "")
    except BaseException as exc:  # every task error goes to the parent
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return ("error", i, exc, tb)
    finally:
        status[1] = -1
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return ("ok", results, time.perf_counter() - start)


def run_local(
    funcs: Sequence[Callable[..., Any]],
    fidx: int | Sequence[int],
    args: Sequence[tuple[Any, ...]],
    kwargs: Sequence[dict[str, Any]] | None,
    first: int,
    timeout: float | None,
) -> tuple[Any, ...]:
    """Run a batch in the calling process (sequential backend): no pickling, no signals."""
    if timeout is None:
        return execute(funcs, fidx, args, kwargs, first)
    return _execute_watched(funcs, fidx, args, kwargs, first, None, 0, timeout)


def _can_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _execute_watched(
    funcs: Sequence[Callable[..., Any]],
    fidx: int | Sequence[int],
    args: Sequence[tuple[Any, ...]],
    kwargs: Sequence[dict[str, Any]] | None,
    first: int,
    view: WorkerView | None,
    call_id: int,
    timeout: float,
) -> tuple[Any, ...]:
    """``execute`` with a per-task deadline where SIGALRM cannot reach (a worker thread).

    The tasks run one by one in a helper thread while this thread waits for each
    with the deadline. When a task is late, this thread replies at once with
    ``TaskTimeoutError`` and the helper thread is interrupted by an asynchronous
    exception, which Python delivers as soon as the task runs Python code again;
    a task stuck inside compiled code keeps its (abandoned) thread until it
    returns from that code.
    """
    bad = _bad_items(funcs, fidx, args, kwargs, first)  # before any task of the batch runs
    if bad is not None:
        return bad
    outcomes: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        try:
            for i in range(len(args)):
                if stop.is_set():
                    return
                one = fidx if isinstance(fidx, int) else (fidx[i],)
                kw = None if kwargs is None else (kwargs[i],)
                outcomes.put(execute(funcs, one, (args[i],), kw, first + i, view, call_id))
        except _Timeout:
            pass

    start = time.perf_counter()
    helper = threading.Thread(target=work, name=f"picklepool-task-{first}", daemon=True)
    helper.start()
    results: list[Any] = []
    for i in range(len(args)):
        try:
            outcome = outcomes.get(timeout=timeout)
        except queue.Empty:
            stop.set()
            _interrupt(helper)
            exc = TaskTimeoutError(
                f"task {first + i} ran longer than timeout={timeout}s and was interrupted "
                "(in a worker thread: Python code stops at once, compiled code when it returns)"
            )
            return ("error", first + i, exc, "")
        if outcome[0] != "ok":
            stop.set()
            return outcome
        results.extend(outcome[1])
    return ("ok", results, time.perf_counter() - start)


def _interrupt(thread: threading.Thread) -> None:
    """Raise ``_Timeout`` in *thread* the next time it runs Python code."""
    import ctypes

    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(_Timeout))


def run_batch(
    session: str | None,
    call_id: int,
    header: bytes,
    funcs: tuple[FuncSpec, ...],
    tasks: bytes | buffers.Frames,
    first: int,
    timeout: float | None,
    limits: WorkerLimits | None = None,
    blobs: Mapping[str, bytes] | None = None,
) -> bytes | buffers.Frames:
    """Entry point called by the backend in a worker; takes and returns bytes.

    *blobs* are the call's once-sent data that travel with the batch (dask only;
    see ``workers.blobs``).
    """
    pickler = _header(header)
    view = worker_view(session) if session else None
    if view is not None and view.cancelled(call_id):
        return pickler.dumps(("cancelled",))  # type: ignore[no-any-return]
    with attached(blobs):
        try:
            fns = [_function(pickler, spec) for spec in funcs]
        except BaseException as exc:
            return _load_error(pickler, "function", ", ".join(s[2] for s in funcs), exc)
        try:
            fidx, args, kwargs = buffers.load(pickler, tasks)
        except BaseException as exc:
            return _load_error(pickler, "arguments", f"tasks {first}..", exc)
    if limits is not None:
        before_batch(limits)  # thread limits, once per setting
    if timeout is not None and (view is None or not _can_alarm()):
        outcome = _execute_watched(fns, fidx, args, kwargs, first, view, call_id, timeout)
    else:
        outcome = execute(fns, fidx, args, kwargs, first, view, call_id, timeout)
    del args, kwargs
    if outcome[0] == "error" and isinstance(outcome[2], TaskTimeoutError):
        retire()  # replaced by loky after this reply; the rest of the pool is untouched
    reply = _dump_outcome(pickler, outcome, first, tasks)
    if limits is not None:
        del outcome
        after_batch(limits, session)  # RSS check; may ask loky to recycle this worker
    return reply


def _load_error(pickler: Any, what: str, label: str, exc: BaseException) -> bytes:
    tb = traceback.format_exc()
    return pickle.dumps(("load-error", what, label, f"{type(exc).__name__}: {exc}", tb))


def _dump_outcome(
    pickler: Any, outcome: tuple[Any, ...], first: int, tasks: Any = None
) -> bytes | buffers.Frames:
    if outcome[0] == "error":
        try:
            data = pickler.dumps(outcome)
            pickler.loads(data)  # e.g. an exception whose __init__ needs other arguments
            return data  # type: ignore[no-any-return]
        except BaseException:  # it cannot make the trip: send it as text
            _, index, err, tb = outcome
            text = f"{type(err).__module__}.{type(err).__qualname__}: {err}"
            return pickle.dumps(("error", index, _UnpicklableError(text), tb))
    try:
        return buffers.dump_reply(pickler, outcome, tasks)  # large results via shared memory
    except BaseException as exc:
        whole_error = f"{type(exc).__name__}: {exc}"
    results = outcome[1]
    for i, value in enumerate(results):
        try:
            pickler.dumps(value)
        except BaseException as exc:
            return pickle.dumps(("dump-error", first + i, _explain(pickler, value, exc)))
    return pickle.dumps(("dump-error", first, whole_error))


def _explain(pickler: Any, value: Any, exc: BaseException) -> str:
    from ..pickler.diagnose import explain

    return explain(pickler, value, exc, root="result")


class _UnpicklableError(Exception):
    """Stands in for a task's exception that could not be pickled back."""


def worker_info() -> tuple[int, str]:
    """Used by tests and ``picklepool info``: who am I."""
    return os.getpid(), sys.executable
