"""Per-process runtime objects: rebuilt fresh in the worker, or refused with the fix.

A task sent by value (a ``__main__`` function and the globals it uses, an
object's attributes) can reach objects that only mean something in the process,
thread or context that made them. Under the ``hybrid`` pickler each kind is
either *rebuilt fresh* in the worker, as locks are (``locks.py``), or *refused*
with a :class:`RefusedError` that says why and what to do instead:

    threading.local (and subclasses) -> rebuilt fresh and empty: ``cls()``, which runs
                                        ``__init__`` with no arguments, as every new
                                        thread's first access does. The values of any
                                        thread are not sent. A subclass whose
                                        ``__init__`` requires arguments is refused: the
                                        arguments it was made with cannot be read back.
    contextvars.ContextVar           -> a module's global: that module's variable; another:
                                        one variable standing for it, with the same name
                                        and default (contextvar.py); its value is per
                                        context: the calling context's values are sent
                                        apart (workers.contextvalues)
    contextvars.Context              -> a new context with the same variables and values
    contextvars.Token                -> refused: it resets a variable only in its own context
    threading.Barrier (and subclass) -> same parties, action and timeout, no thread
                                        waiting; a broken barrier stays broken
    weakref.ref, WeakMethod          -> a weak reference to the worker's copy of the referent,
                                        which lives only if the task also holds it
                                        (the rule ``WeakSet`` already follows); a dead
                                        reference arrives dead
    WeakValueDictionary,             -> the same entries, under the same rule
      WeakKeyDictionary
    threading.Thread (and Timer)     -> refused: a thread runs in the process that started it
    multiprocessing locks, queues,   -> refused: multiprocessing lets them reach only the
      events, pipes                     processes it starts itself
    logging.FileHandler (and subclasses) -> refused: its open file belongs to this process
    a pool of workers                -> refused: its processes or threads, and the queues and
      (ProcessPoolExecutor,             threads feeding them, are the process's that
      ThreadPoolExecutor,               started it (a copy failed on an inner part:
      multiprocessing.Pool and          "Pickling an AuthenticationString object is
      ThreadPool, loky's executors)     disallowed", or was another pool);
                                        ``picklepool.Executor`` says so itself
    subprocess.Popen (and subclasses) -> refused: a child process is waited for by its parent
                                        only (a copy's poll() said "exited, status 0" at
                                        once, while it ran)
    concurrent.futures.Future, pending -> refused: it completes in this process only (a
                                        copy's result() waited for ever); a done one
                                        travels with its result
    a text file open for writing     -> refused ("w", "a", and "r+"/"w+"/"a+", which
      (io.TextIOWrapper, not stdout,    cloudpickle sends as an io.StringIO copy of its
      stderr)                           contents, where the task's writes were lost
                                        silently); one open for reading only: that copy
    asyncio Lock, Event, Condition,  -> fresh, bound to no event loop: released, no waiting
      Semaphore, Queue, Barrier         task; an event keeps whether it is set, a semaphore
                                        its value, a queue its items (as for threading's)

``logging.Logger`` needs nothing here: it travels by name (``getLogger(name)``) under
every pickler, as the stdlib defines. Other handlers travel as objects owning an
RLock (snapshotted, fresh lock).

A class that defines its own pickling (``__reduce_ex__``, ``__reduce__``,
``__getstate__``, ``__getnewargs_ex__`` or ``__getnewargs__`` on a class of its MRO
that is not the standard library's), or whose type has a ``copyreg`` reducer, is
pickled its own way: see :func:`own_protocol`.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import copyreg
import inspect
import io
import logging
import pickle
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import cloudpickle

from . import contextvar
from .context import current

Reduced = tuple[Any, ...]

#: Methods by which a class says how it is pickled.
PROTOCOL_METHODS = ("__reduce_ex__", "__reduce__", "__getstate__", "__getnewargs_ex__", "__getnewargs__")


class RefusedError(pickle.PicklingError):
    """An object that cannot mean the same thing in a worker; the message says what to do.

    ``obj`` is the refused object (error messages stop their search for the culprit there).
    """

    def __init__(self, message: str, obj: Any = None) -> None:
        super().__init__(message)
        self.obj = obj


def is_stdlib_class(cls: type) -> bool:
    module = getattr(cls, "__module__", None) or ""
    return module.partition(".")[0] in sys.stdlib_module_names


def below_stdlib(cls: type) -> tuple[list[type], type | None]:
    """The classes of *cls*'s MRO before its first standard-library class, and that class
    (None when there is none)."""
    own: list[type] = []
    for klass in cls.__mro__:
        if is_stdlib_class(klass):
            return own, klass
        own.append(klass)
    return own, None


def defined_below_stdlib(cls: type, names: Iterable[str]) -> bool:
    """True when a class of *cls*'s MRO below the standard library defines one of *names*."""
    return any(name in vars(klass) for klass in below_stdlib(cls)[0] for name in names)


def own_protocol(cls: type) -> bool:
    """True when a class of *cls*'s MRO below the standard library defines how it pickles."""
    return defined_below_stdlib(cls, PROTOCOL_METHODS)


def _type_name(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


# -- threading.local ---------------------------------------------------------------------


def _rebuild_local(cls: Any) -> Any:
    return cls()


def _reduce_local(obj: Any) -> Reduced:
    cls = type(obj)
    init = cls.__init__
    if init is not object.__init__:
        try:
            inspect.signature(init).bind(obj)
        except TypeError:
            raise RefusedError(
                f"cannot send a {_type_name(obj)} (a threading.local subclass): it is rebuilt fresh "
                "in the worker by calling the class with no arguments, and its __init__ requires "
                "arguments, which cannot be read back from the object. Fix: give __init__'s "
                "parameters defaults, or define __reduce__ on the class to say how to rebuild it.",
                obj,
            ) from None
        except ValueError:  # no signature to check: let the worker try
            pass
    return (_rebuild_local, (cls,))


# -- contextvars (the variable and the context: contextvar.py) -----------------------------


def _refuse_token(token: Any) -> Reduced:
    raise RefusedError(
        f"cannot send a contextvars.Token (of variable {token.var.name!r}): a token can only reset "
        "its variable in the context that made it, which stays in this process. Fix: send the "
        "value (token.old_value, or var.get()) and set the variable inside the task.",
        token,
    )


# -- threading.Barrier -------------------------------------------------------------------

_BARRIER_BROKEN = -2


def _rebuild_empty(cls: Any) -> Any:
    return cls.__new__(cls)


def reduce_barrier(barrier: threading.Barrier) -> Reduced:
    """Same parties, action and timeout; no waiting thread; broken stays broken."""
    state = dict(vars(barrier))
    state["_count"] = 0
    state["_state"] = _BARRIER_BROKEN if barrier.broken else 0
    return (_rebuild_empty, (type(barrier),), state)


# -- weak references ---------------------------------------------------------------------


class _Gone:
    """A referent that dies at once, for a reference that arrives dead."""

    def method(self) -> None:
        pass


def _rebuild_dead_ref() -> weakref.ref[Any]:
    return weakref.ref(_Gone())


def _rebuild_dead_method(cls: Any) -> Any:
    return cls(_Gone().method)


def _reduce_ref(ref: weakref.ref[Any]) -> Reduced:
    referent = ref()
    if referent is None:
        return (_rebuild_dead_ref, ())
    if ref.__callback__ is not None:
        return (weakref.ref, (referent, ref.__callback__))
    return (weakref.ref, (referent,))


def _reduce_weak_method(ref: weakref.WeakMethod[Any]) -> Reduced:
    method = ref()
    if method is None:
        return (_rebuild_dead_method, (type(ref),))
    return (type(ref), (method,))


def _reduce_weak_dict(d: Any) -> Reduced:
    return (type(d), (), None, None, iter(list(d.items())))


# -- asyncio primitives: per event loop ---------------------------------------------------


def _reduce_asyncio(obj: Any) -> Reduced:
    """A fresh asyncio lock, event, condition, semaphore, queue or barrier, bound to no loop.

    As for their threading counterparts: released, no waiting task, an event keeps
    whether it is set, a semaphore its value, a queue its items.
    """
    from collections import deque

    state = dict(vars(obj))
    state["_loop"] = None
    for key in ("_waiters", "_getters", "_putters"):
        if isinstance(state.get(key), deque):
            state[key] = deque()
    if "_locked" in state:
        state["_locked"] = False
    if "_wakeup_scheduled" in state:
        state["_wakeup_scheduled"] = False
    barrier_type = getattr(sys.modules.get("asyncio"), "Barrier", None)
    if barrier_type is not None and isinstance(obj, barrier_type):
        states = type(state["_state"])
        state["_count"] = 0
        state["_state"] = states.BROKEN if obj.broken else states.FILLING
    return (_rebuild_empty, (type(obj),), state)


def _asyncio_reducer(t: type) -> Callable[[Any], Reduced] | None:
    aio = sys.modules.get("asyncio")
    if aio is None:  # not imported: no asyncio object can exist
        return None
    bases = (aio.Lock, aio.Event, aio.Condition, aio.Semaphore, aio.Queue, getattr(aio, "Barrier", aio.Lock))
    return _reduce_asyncio if issubclass(t, bases) else None


# -- refused: threads, multiprocessing objects, file handlers ------------------------------


def _refuse_thread(thread: threading.Thread) -> Reduced:
    raise RefusedError(
        f"cannot send a {_type_name(thread)} ({thread.name}): a thread runs only in the process "
        "that started it; a copy in the worker would be a thread that never ran. Fix: send its "
        "target and arguments and start a thread inside the task, or leave the thread out of "
        "what you send (define __getstate__ on the class that holds it).",
        thread,
    )


class InheritanceOnlyError(RefusedError, RuntimeError):
    """A multiprocessing object: a RuntimeError too, as multiprocessing's own refusal is."""


def _refuse_multiprocessing(obj: Any) -> Reduced:
    raise InheritanceOnlyError(
        f"cannot send a {_type_name(obj)}: multiprocessing's locks, queues, events, pipes and shared values "
        "should only be shared between processes through inheritance, so they reach only the "
        "processes multiprocessing starts itself, not the workers of a pool. Fix: use a "
        "multiprocessing.Manager() lock or queue (a proxy that can be sent), or a threading/queue "
        "object, which hybrid sends as a snapshot rebuilt in the worker.",
        obj,
    )


def _refuse_file_handler(handler: logging.FileHandler) -> Reduced:
    raise RefusedError(
        f"cannot send a {_type_name(handler)} (file {handler.baseFilename!r}): it writes through "
        "a file opened by this process. Fix: configure logging inside the task or in a worker "
        "initializer (send the file name), or log from the task through logging.getLogger(name), "
        "which travels by name.",
        handler,
    )


def _refuse_popen(proc: subprocess.Popen[Any]) -> Reduced:
    raise RefusedError(
        f"cannot send a {_type_name(proc)} (pid {proc.pid}): a child process can be waited for "
        "and polled only by the process that started it; in the worker a copy's poll() and "
        "wait() would report it ended with status 0 at once, while it runs, and its pipes are "
        "this process's. Fix: wait for it here and send its returncode or output, or send its "
        "pid (psutil.Process(pid) in the task can watch it).",
        proc,
    )


def refuse_pool(pool: Any) -> Reduced:
    """Refuse a pool of workers (see the module docstring); ``picklepool.Executor.__reduce__`` too."""
    raise RefusedError(
        f"cannot send a {_type_name(pool)}: a pool's workers (processes or threads), and the "
        "queues and threads that feed them, belong to the process that started it; a copy in "
        "the worker would have none of them. Fix: submit from here what the task would submit "
        "(return it from the task), or start the pool inside the task (a Parallel call made in "
        "a task runs there, nested), sending its settings instead of the pool.",
        pool,
    )


# the modules of pools of workers and their classes: looked up only once the module is loaded
_POOL_CLASSES = (
    ("concurrent.futures.process", "ProcessPoolExecutor"),
    # its threads once it has run a task (else hybrid sent a copy with a pool of its own)
    ("concurrent.futures.thread", "ThreadPoolExecutor"),
    ("multiprocessing.pool", "Pool"),  # and ThreadPool
    ("loky.process_executor", "ProcessPoolExecutor"),  # and its reusable executor
    ("joblib.externals.loky.process_executor", "ProcessPoolExecutor"),
)


def _pool_reducer(t: type) -> Callable[[Any], Reduced] | None:
    for module_name, name in _POOL_CLASSES:
        cls = getattr(sys.modules.get(module_name), name, None)
        if isinstance(cls, type) and issubclass(t, cls):
            return refuse_pool
    return None


def _reduce_future(future: concurrent.futures.Future[Any]) -> Reduced:
    if not future.done():
        raise RefusedError(
            f"cannot send a pending {_type_name(future)}: it completes in this process only, so "
            "its copy in the worker would never complete (result() would wait for ever, or "
            "until its timeout). Fix: send future.result() (wait for it here), or do the work "
            "that completes it inside the task.",
            future,
        )
    return future.__reduce_ex__(pickle.HIGHEST_PROTOCOL)  # type: ignore[return-value]  # done: its result or exception travels


def _reduce_text_file(f: io.TextIOWrapper) -> Reduced:
    """cloudpickle's rule for a text file (an ``io.StringIO`` of its contents, at its
    position), but a file open for writing is refused when tasks are sent (a picklepool
    call's, ``context.current()``): its copy took the task's writes (a log opened
    ``"a+"``, an output ``"w+"``, a ``NamedTemporaryFile``) and dropped them, silently,
    and a ``NamedTemporaryFile``'s copy deleted the parent's file when the worker let it
    go. The hybrid pickler used on its own pickles it as cloudpickle does (its test suite
    asks for the copy). ``sys.stdout``/``sys.stderr`` go by name, as cloudpickle does."""
    if f is not sys.stdout and f is not sys.stderr and not f.closed and current() is not None:
        try:
            writable = f.writable()
        except (ValueError, OSError):  # detached: cloudpickle's rule says why not
            writable = False
        if writable:
            raise RefusedError(
                f"cannot send a text file open for writing ({getattr(f, 'name', '?')!r}, mode "
                f"{getattr(f, 'mode', '?')!r}): where it arrives it would be a copy of its contents "
                "(an io.StringIO), and what is written to it there would be lost. Fix: send its path "
                "and open the file where it is written (mode 'a' adds to it; processes writing at "
                "once each need a file of their own), or send what to write and write it in one place.",
                f,
            )
    return cloudpickle.cloudpickle._file_reduce(f)  # type: ignore[no-any-return]


def inherited_only_types() -> tuple[type, ...]:
    """multiprocessing's objects that travel only to a process it starts (by inheritance).

    Its locks, conditions, events, barriers, queues, pipe ends and shared values
    (``Value``, ``Array``): pickling one elsewhere raises (:func:`_refuse_multiprocessing`
    says what to use instead); ``executor.contexts`` gives an ``Executor`` whose
    ``initargs`` hold one a pool whose workers inherit them.
    """
    try:
        import multiprocessing.connection as connection
        import multiprocessing.queues as queues
        import multiprocessing.sharedctypes as sharedctypes
        import multiprocessing.synchronize as synchronize
    except ImportError:  # no working sem_open on this platform
        return ()
    return (
        synchronize.SemLock,  # Lock, RLock, Semaphore, BoundedSemaphore
        synchronize.Condition,
        synchronize.Event,
        synchronize.Barrier,
        queues.Queue,  # and JoinableQueue
        queues.SimpleQueue,
        connection.Connection,
        sharedctypes.SynchronizedBase,  # Value, Array
    )


#: Exact types and their reducers.
REDUCERS: dict[type, Callable[[Any], Reduced]] = {
    threading.local: _reduce_local,
    contextvars.ContextVar: contextvar.reduce_var,
    contextvars.Context: contextvar.reduce_context,
    contextvars.Token: _refuse_token,
    threading.Barrier: reduce_barrier,
    weakref.ReferenceType: _reduce_ref,
    weakref.WeakMethod: _reduce_weak_method,
    weakref.WeakValueDictionary: _reduce_weak_dict,
    weakref.WeakKeyDictionary: _reduce_weak_dict,
}

#: Base classes whose subclasses are reduced alike (first match wins; more derived first).
SUBCLASS_REDUCERS: list[tuple[type, Callable[[Any], Reduced]]] = [
    (threading.local, _reduce_local),
    *((t, _refuse_multiprocessing) for t in inherited_only_types()),
    (threading.Barrier, reduce_barrier),
    (threading.Thread, _refuse_thread),
    (weakref.WeakMethod, _reduce_weak_method),
    (weakref.WeakValueDictionary, _reduce_weak_dict),
    (weakref.WeakKeyDictionary, _reduce_weak_dict),
    (logging.FileHandler, _refuse_file_handler),
    (io.TextIOWrapper, _reduce_text_file),
    (subprocess.Popen, _refuse_popen),
    (concurrent.futures.Future, _reduce_future),
]


def reducer_for(t: type) -> Callable[[Any], Reduced] | None:
    """The reducer of this module for instances of *t*, or None."""
    reducer = REDUCERS.get(t)
    if reducer is not None:
        return reducer
    for base, reducer in SUBCLASS_REDUCERS:
        if issubclass(t, base):
            return reducer
    return _asyncio_reducer(t) or _pool_reducer(t)


_REFUSALS = (
    _refuse_thread,
    _refuse_multiprocessing,
    _refuse_file_handler,
    _refuse_token,
    _refuse_popen,
    _reduce_future,
    refuse_pool,
)


def refusal(obj: Any) -> RefusedError | None:
    """Why ``hybrid`` refuses *obj* itself (a thread, a multiprocessing object...), or None.

    For error messages of the other picklers: the fix they suggest for a lock inside
    such an object (``pickler='hybrid'``) would meet this refusal instead.
    """
    t = type(obj)
    if t in copyreg.dispatch_table or own_protocol(t):
        return None  # the user's own pickling applies, as in hybrid
    reducer = reducer_for(t)
    if reducer not in _REFUSALS:
        return None
    try:
        reducer(obj)  # type: ignore[misc]
    except RefusedError as exc:
        return exc
    return None
