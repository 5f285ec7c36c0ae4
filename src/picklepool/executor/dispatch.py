"""One call of ``Parallel``: batches out, replies in, results in order.

    items ──islice──▶ batch (funcs, args, kwargs) ──pickler.dumps──▶ bytes
      ──backend──▶ worker: workers.runner.run_batch ──▶ reply bytes
      ──pickler.loads──▶ results, in order (or as completed)

The parent serialises each distinct function once per call; batches carry only
its content key (plus the bytes, or a blob reference when large: a file in /dev/shm
for loky, data scattered once to a dask cluster), and workers keep the
rebuilt function in their cache. A task error, a pickling error or a crashed
worker cancels the call: queued batches are cancelled, batches already in a
worker skip their remaining tasks (a shared cancel flag), and the error is
raised at once.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import operator
import os
import queue
import re
import signal
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import cloudpickle

from ..errors import (
    PicklingError,
    RemoteTraceback,
    TaskTimeoutError,
    UnpicklingError,
    WorkerCrashedError,
)
from ..pickler.buffers import CallBuffers, Frames
from ..pickler.context import CallContext, active
from ..pickler.diagnose import explain
from ..workers.runner import bad_item_message, run_batch, run_local
from . import gil
from .backends import Backend, session

_SELF, _FUNC = operator.attrgetter("__self__"), operator.attrgetter("__func__")
HARD_TIMEOUT_GRACE = 2.0  # seconds past timeout before a stuck worker is killed
_KEEPABLE = (types.FunctionType, types.BuiltinFunctionType, type)
INLINE_LIMIT = 256 * 1024  # larger serialised functions go through a blob, once per call


class _Batch:
    __slots__ = ("seq", "first", "n", "future")

    def __init__(self, seq: int, first: int, n: int) -> None:
        self.seq, self.first, self.n = seq, first, n
        self.future: Future[Any] | None = None


def _label(func: Any) -> str:
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{getattr(func, '__module__', '?')}.{name}"


def _identity(func: Any) -> tuple[Any, Any]:
    """A key for "pickles to the same bytes", and the objects it refers to by id.

    The function object itself, except for plain functions made anew for each task
    (``delayed(lambda x: ...)`` inside a generator expression): those share their
    code object, and pickle the same when their globals, defaults and closure
    contents are the same objects. The caller keeps the referents alive.
    """
    if type(func) is types.MethodType:  # obj.method is a new object at every access
        return ("method", id(func.__self__), id(func.__func__)), func
    if type(func) is not types.FunctionType or func.__dict__:
        return id(func), func
    try:
        cells = tuple(c.cell_contents for c in func.__closure__ or ())
    except ValueError:  # an empty cell
        return id(func), func
    defaults = (func.__defaults__, tuple((func.__kwdefaults__ or {}).items()))
    referents = (func, func.__code__, func.__globals__, cells, defaults)
    ident = (
        id(func.__code__),
        id(func.__globals__),
        func.__qualname__,
        tuple(map(id, cells)),
        tuple(map(id, func.__defaults__ or ())),
        tuple((k, id(v)) for k, v in defaults[1]),
    )
    return ident, referents


def _group(fcol: tuple[Any, ...], by_content: bool) -> tuple[list[Any], Any]:
    """The distinct functions of a batch and each task's index.

    Bound methods of one object and function count once. When the batch is pickled
    (*by_content*), so do functions that pickle the same (:func:`_identity`); run in
    this process, two closures are two objects with state of their own.
    """
    by_id: dict[int, int] = {}
    by_ident: dict[Any, int] = {}
    funcs: list[Any] = []
    fidx: list[int] = []
    for f in fcol:
        k = by_id.get(id(f))
        if k is None:
            if by_content:
                ident = _identity(f)[0]
            elif type(f) is types.MethodType:
                ident = ("method", id(f.__self__), id(f.__func__))
            else:
                ident = id(f)
            k = by_ident.get(ident)
            if k is None:
                k = by_ident[ident] = len(funcs)
                funcs.append(f)
            by_id[id(f)] = k
        fidx.append(k)
    return funcs, (0 if len(funcs) == 1 else fidx)


def _bad_item(item: Any, index: int) -> TypeError:
    return TypeError(bad_item_message(item, index))


class Call:
    """The state of one ``Parallel.__call__``."""

    def __init__(
        self,
        backend: Backend,
        pickler: Any,
        batcher: Any,
        max_inflight: int,
        timeout: float | None,
        ordered: bool,
        on_progress: Callable[[int, int | None], None] | None = None,
        worker_limits: Any = None,
        max_nbytes: int | None = None,
    ) -> None:
        self.backend = backend
        self.pickler = pickler
        self.batcher = batcher
        self.max_inflight = max_inflight
        self.timeout = timeout
        self.ordered = ordered
        self.on_progress = on_progress
        self.worker_limits = worker_limits  # workers.limits.WorkerLimits, or None
        self.bytes_path = backend.moves_bytes
        self.session = session() if self.bytes_path and backend.session_path() else None
        self.call_id = self.session.begin_call() if self.session else 0
        self.header = cloudpickle.dumps(pickler) if self.bytes_path else b""
        self._specs: dict[Any, tuple[str | None, Any, str]] = {}
        self._keep: list[Any] = []  # what the _specs keys refer to, kept alive so ids stay unique
        self.context = CallContext(pickler, self.session, backend.blob_store())
        self.buffers = CallBuffers(self.context, self.call_id, max_nbytes)  # large ones via shm
        self._done: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        self.total: int | None = None
        self._overdue: tuple[int, int] | None = None  # (task, pid) killed by the backstop
        self._cancelled = False  # this call cancelled its own batches
        self.token = uuid.uuid4().hex[:12]  # scopes the workers' function cache to this call

    # -- parent side of the data path -------------------------------------------------

    def _function_spec(self, func: Any, index: int) -> tuple[str | None, Any, str]:
        ident, referents = _identity(func)
        spec = self._specs.get(ident)
        if spec is None:
            try:
                data, refs = self.buffers.dumps_function(self.pickler, func)
            except Exception as exc:
                msg = explain(self.pickler, func, exc, root=f"function {_label(func)}")
                raise PicklingError(f"task {index}: {msg}") from exc
            key = hashlib.blake2b(data + repr(refs).encode(), digest_size=16).hexdigest()
            payload: Any = data
            if len(data) > INLINE_LIMIT:
                ref = self.context.put_blob(key, data)
                if ref is not None:
                    payload = ref
            if refs:
                payload = Frames(payload, refs)
            # Workers keep plain functions and classes for the rest of this call (the
            # key is scoped to the call); objects with state of their own (callable
            # instances, bound methods, partials) are rebuilt for every batch, so no
            # task or later call sees another's changes.
            cache_key = f"{key}.{self.token}" if isinstance(func, _KEEPABLE) else None
            spec = self._specs[ident] = (cache_key, payload, _label(func))
            self._keep.append(referents)
        return spec

    def _split(self, items: list[Any], first: int) -> tuple[list[Any], Any, tuple[Any, ...], Any]:
        """Columns of a batch: distinct functions, their index per task, args, kwargs.

        The hot path of tiny tasks, so every check is one pass in C over a column.
        Like joblib, any ``(function, args, kwargs)`` triple is accepted (a tuple, as
        ``delayed`` makes, or a list); anything else is named by its index. That args
        are tuples and kwargs dicts is checked by the runner, before the batch runs.
        """
        try:
            fcol, acol, kcol = zip(*items, strict=True)
        except (TypeError, ValueError):
            raise self._bad_items(items, first) from None
        has_kwargs = any(kcol)
        f0 = fcol[0]
        funcs: list[Any]
        fidx: Any
        if all(map(operator.is_, fcol, itertools.repeat(f0))):  # one function for the batch
            funcs, fidx = [f0], 0
        elif (
            type(f0) is types.MethodType
            and set(map(type, fcol)) == {types.MethodType}
            and all(map(operator.is_, map(_SELF, fcol), itertools.repeat(f0.__self__)))
            and all(map(operator.is_, map(_FUNC, fcol), itertools.repeat(f0.__func__)))
        ):
            funcs, fidx = [f0], 0  # delayed(obj.method): a new method object for every task
        else:
            funcs, fidx = _group(fcol, by_content=self.bytes_path)
        if not all(map(callable, funcs)):
            raise self._bad_items(items, first)
        return funcs, fidx, acol, kcol if has_kwargs else None

    @staticmethod
    def _bad_items(items: list[Any], first: int) -> TypeError:
        """The error naming the first item that is not a ``(function, args, kwargs)`` call."""
        for i, item in enumerate(items):
            try:
                f, args, kwargs = item
            except (TypeError, ValueError):
                return _bad_item(item, first + i)
            if not callable(f) or type(args) is not tuple or (kwargs and type(kwargs) is not dict):
                return _bad_item(item, first + i)
        return TypeError(f"items {first}..{first + len(items) - 1} of the iterable are not delayed calls")

    def _submit(self, items: list[Any], seq: int, first: int) -> _Batch:
        funcs, fidx, args, kwargs = self._split(items, first)
        batch = _Batch(seq, first, len(items))
        if self.bytes_path:
            with active(self.context):
                specs = tuple(self._function_spec(f, first) for f in funcs)
                try:
                    payload = self.buffers.dumps_tasks(self.pickler, (fidx, args, kwargs))
                except Exception as exc:
                    raise self._dumps_error(items, first, exc) from exc
            fut = self.backend.submit(
                run_batch,
                self.session.path if self.session else None,
                self.call_id,
                self.header,
                specs,
                payload,
                first,
                self.timeout,
                self.worker_limits,
                self.context.attachment(),
            )
            self.buffers.sent(payload, fut)
        else:
            fut = self.backend.submit(run_local, funcs, fidx, args, kwargs, first, self.timeout)
        batch.future = fut
        fut.add_done_callback(lambda _f: self._done.put(batch))
        return batch

    def _dumps_error(self, items: list[Any], first: int, exc: BaseException) -> PicklingError:
        for i, (_f, args, kwargs) in enumerate(items):
            for root, value in (("args", args), ("kwargs", kwargs)):
                try:
                    self.pickler.dumps(value)
                except Exception as err:
                    msg = explain(self.pickler, value, err, root=root)
                    return PicklingError(f"task {first + i}: {msg}")
        return PicklingError(f"tasks {first}..{first + len(items) - 1}: {exc}")

    # -- replies ------------------------------------------------------------------------

    def _outcome(self, batch: _Batch) -> tuple[list[Any], float]:
        fut = batch.future
        assert fut is not None
        try:
            reply = fut.result()
        except CancelledError:
            if self._cancelled:
                return [], 0.0
            raise RuntimeError(
                f"tasks {batch.first}..{batch.first + batch.n - 1} were cancelled because their "
                f"{self.backend.name} pool was shut down while the call was still running "
                "(for example a return_as='generator' read after its `with Parallel(...)` "
                "block ended). Consume the generator inside the block."
            ) from None
        except BrokenProcessPool as exc:
            raise self._crash_error(batch, exc) from exc
        if self.bytes_path:
            try:
                reply = self.buffers.loads(self.pickler, reply)
            except Exception as exc:
                raise UnpicklingError(
                    f"the reply of tasks {batch.first}..{batch.first + batch.n - 1} could not "
                    f"be unpickled in the parent with pickler {self.pickler.name!r}: "
                    f"{type(exc).__name__}: {exc}. A result's class must be importable here."
                ) from exc
        kind = reply[0]
        if kind == "ok":
            return reply[1], reply[2]
        if kind == "error":
            _, index, error, tb = reply
            if tb:
                error.__cause__ = RemoteTraceback(tb)
            if hasattr(error, "add_note"):
                where = "in a worker" if self.bytes_path else "in this process"
                error.add_note(f"(raised by task {index} of this Parallel call, {where})")
            raise error
        if kind == "load-error":
            raise self._load_error(batch, *reply[1:])
        if kind == "bad-item":
            raise TypeError(reply[2])
        if kind == "dump-error":
            _, index, message = reply
            raise PicklingError(f"the result of task {index} could not be sent back: {message}")
        return [], 0.0  # "cancelled": only after this call was cancelled

    def _load_error(self, batch: _Batch, what: str, label: str, message: str, tb: str) -> UnpicklingError:
        name = self.pickler.name
        tasks = f"tasks {batch.first}..{batch.first + batch.n - 1}"
        subject = f"the function {label} of {tasks}" if what == "function" else f"the {what} of {tasks}"
        text = f"a worker could not rebuild {subject}, sent with pickler {name!r}: {message}."
        if "Can't get attribute" in message or "No module named" in message:
            missing = re.search(r"Can't get attribute '([^']+)'", message)
            if missing and hasattr(sys.modules.get("__main__"), missing[1].partition(".")[0]):
                text += f" {missing[1]!r} is defined in __main__ (your script), which workers do not import."
            text += (
                f" Pickler {name!r} sends functions and classes by reference (module and "
                "name), so the worker must be able to import them. Fix: use pickler='hybrid' "
                "(the default) or 'cloudpickle', which send them by value, move them into an "
                "importable module, or decorate them with picklepool.wrap_non_picklable_objects."
            )
        err = UnpicklingError(text)
        err.__cause__ = RemoteTraceback(tb)
        return err

    def _crash_error(self, batch: _Batch, exc: BaseException) -> Exception:
        import psutil

        if self._overdue is not None:
            index, pid = self._overdue
            return TaskTimeoutError(
                f"task {index} ran longer than timeout={self.timeout}s and did not respond "
                f"to interruption (stuck in compiled code?); its worker (pid {pid}) was "
                "killed, and the pool is replaced on the next call"
            )

        culprit = ""
        if self.session is not None:
            for pid in self.session.worker_pids():
                try:
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        continue
                except psutil.Error:
                    pass  # gone: this is a dead worker
                status = self.session.worker_status(pid)
                self.session.forget_worker(pid)
                if status and status[0] == self.call_id and status[1] >= 0:
                    culprit = f" while running task {status[1]} (worker pid {pid})"
        codes = re.search(r"exit codes of the workers are \{(.*?)\}", str(exc))
        recovery = " The pool is replaced on the next call."
        if codes:
            detail = f"exit code {codes.group(1)}"
        elif isinstance(exc, WorkerCrashedError):  # the backend said what happened (dask)
            detail, recovery = str(exc), ""
        else:
            detail = type(exc).__name__
        if not culprit:
            culprit = f" while tasks {batch.first}..{batch.first + batch.n - 1} were queued or running"
        return WorkerCrashedError(
            f"a worker process died{culprit}: {detail}. This is usually a segfault in "
            "compiled code, a call to os._exit(), or the OOM killer (check memory use)."
            f"{recovery}"
        )

    # -- the loop -------------------------------------------------------------------------

    def run(self, iterable: Iterable[Any]) -> Iterator[list[Any]]:
        """Yield lists of results: in task order, or as batches complete."""
        try:
            self.total = len(iterable)  # type: ignore[arg-type]
            if hasattr(self.batcher, "total"):
                self.batcher.total = self.total
        except TypeError:
            pass
        it = iter(iterable)
        inflight: dict[int, _Batch] = {}
        ready: dict[int, list[Any]] = {}
        seq = next_out = dispatched = completed = 0
        exhausted = False
        handoff = gil.Scope() if self.backend.parent_threads else None  # see executor/gil.py
        try:
            if handoff is not None:
                handoff.lower()
            while True:
                while not exhausted and len(inflight) < self.max_inflight:
                    size = self.batcher.next_size(dispatched)
                    # Pulling a batch allocates many small tuples that all stay alive
                    # until it is pickled: the cyclic GC would only rescan them, so it
                    # waits until the batch is sent (it runs between batches).
                    gc_was_on = gc.isenabled()
                    gc.disable()
                    try:
                        items = list(itertools.islice(it, size))
                        if len(items) < size:
                            exhausted = True
                        if not items:
                            break
                        inflight[seq] = self._submit(items, seq, dispatched)
                    finally:
                        if gc_was_on:
                            gc.enable()
                    seq += 1
                    dispatched += len(items)
                if not inflight:
                    break
                batch = self._next_done()
                results, seconds = self._outcome(batch)
                del inflight[batch.seq]
                self.batcher.record(batch.n, seconds)
                completed += batch.n
                if self.on_progress is not None:
                    # total: the known length, else the dispatched count once exhausted.
                    total = self.total if self.total is not None else dispatched if exhausted else None
                    self.on_progress(completed, total)
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
        except BaseException as exc:
            self._cancel(inflight, hard=isinstance(exc, KeyboardInterrupt))
            raise
        finally:
            if handoff is not None:
                handoff.restore()
            self.buffers.close()
            self.context.close()

    def _next_done(self) -> _Batch:
        if self.timeout is None or self.session is None:
            return self._done.get()
        poll = min(max(self.timeout / 4, 0.05), 1.0)
        while True:
            try:
                return self._done.get(timeout=poll)
            except queue.Empty:
                self._kill_overdue()

    def _kill_overdue(self) -> None:
        """Kill a worker whose task ignored the in-worker interruption (stuck in C code).

        Workers interrupt a task at ``timeout`` themselves (SIGALRM); this is the
        backstop, ``HARD_TIMEOUT_GRACE`` later. loky then reports the worker lost, and
        the call fails with ``TaskTimeoutError`` naming the task.
        """
        assert self.session is not None and self.timeout is not None
        limit = (self.timeout + HARD_TIMEOUT_GRACE) * 1e9
        now = time.monotonic_ns()
        for pid in self.session.worker_pids():
            status = self.session.worker_status(pid)
            if status is None or status[0] != self.call_id or status[1] < 0 or status[2] <= 0:
                continue
            if now - status[2] > limit:
                self._overdue = (status[1], pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _cancel(self, inflight: dict[int, _Batch], hard: bool) -> None:
        self._cancelled = True
        if self.session is not None:
            self.session.cancel(self.call_id)
        for batch in inflight.values():
            if batch.future is not None:
                batch.future.cancel()
        if hard:  # Ctrl-C: stop the workers too, leave no process behind
            try:
                self.backend.shutdown(kill=True)
            except Exception:  # pragma: no cover - best effort during interrupt
                print("picklepool: could not stop workers cleanly", file=sys.stderr)
