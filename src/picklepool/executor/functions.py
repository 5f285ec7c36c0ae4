"""The functions of a call: which tasks share one, and each one's spec, pickled once.

A batch carries, per distinct function, a ``wire.FuncSpec``: a content key (plus
the bytes, or a blob reference when large: a file in /dev/shm for loky, data
scattered once to a dask cluster), and workers keep the rebuilt function in
their cache. Plain functions are kept for the rest of the call, and for later
calls that send the same bytes as long as the state they carry in the worker
(the globals, defaults and closure a by-value function brings along) is unchanged
(``workers.changes``): a changed global in the parent makes new bytes, a global a
task changed in a worker makes a rebuild. Classes are kept for one call; callable
objects, bound methods and partials carry state of their own and are rebuilt for
every batch, so no task or later call sees another's changes.
"""

from __future__ import annotations

import collections
import contextvars
import copyreg
import functools
import itertools
import operator
import os
import reprlib
import sys
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import cloudpickle

from .. import forklocks
from ..errors import pickling_error
from ..pickler.base import CloudPickler
from ..pickler.buffers import Frames
from ..pickler.codeglobals import sent_globals
from ..pickler.diagnose import explain
from ..pickler.hybrid import HybridPickler
from ..pickler.mainalias import by_value_home
from ..state import SharedState
from ..wire import FuncSpec
from ..workers.reached import ThroughFunction
from ..workers.reloads import ByName, checkable, codes
from . import interrupts, reloaded, seeded, unchanged
from .digests import content_key

# True while a task of an n_jobs=1 call runs in the caller's thread (executor.sequential):
# a call made there is made inside a task, which its errors' notes say (replies._source)
in_caller_task: contextvars.ContextVar[bool] = contextvars.ContextVar("picklepool_caller_task", default=False)

_SELF, _FUNC = operator.attrgetter("__self__"), operator.attrgetter("__func__")
_KEEPABLE = (types.FunctionType, types.BuiltinFunctionType, type)
MAX_SPECS = 4096  # distinct functions a table remembers before it starts afresh
INLINE_LIMIT = 256 * 1024  # larger serialised functions go through a blob, once per call


class _Short(reprlib.Repr):
    """``reprlib``'s short reprs, also of what it would otherwise ``repr()`` whole before
    cutting (bytes, dict and list subclasses: 3 s and 1 GB to name a task of a 300 MB
    ``bytes`` argument), and without sorting large dicts and sets (as it does to show
    the first items in order)."""

    _SORTED_UP_TO = 1000

    def repr_bytes(self, x: Any, level: int) -> str:
        n = self.maxstring
        return repr(x) if len(x) <= n else f"{bytes(x[:n])!r}...<{len(x)} bytes>"

    def repr_bytearray(self, x: Any, level: int) -> str:
        return f"bytearray({self.repr_bytes(x, level)})"

    def repr_memoryview(self, x: Any, level: int) -> str:
        return f"<memoryview of {x.nbytes} bytes>"

    def repr_dict(self, x: Any, level: int) -> str:
        def one(k: Any) -> str:  # (dict's own item: not a subclass's __getitem__)
            return f"{self.repr1(k, level - 1)}: {self.repr1(dict.__getitem__(x, k), level - 1)}"

        return self._items(x, level, one, "{", "}")

    def repr_set(self, x: Any, level: int) -> str:
        return self._items(x, level, lambda k: self.repr1(k, level - 1), "{", "}") if x else "set()"

    def repr_frozenset(self, x: Any, level: int) -> str:
        return f"frozenset({self.repr_set(x, level)})" if x else "frozenset()"

    def _items(self, x: Any, level: int, one: Callable[[Any], str], head: str, tail: str) -> str:
        if not x:
            return head + tail
        if level <= 0:
            return head + "..." + tail
        keys: Any = x
        if len(x) <= self._SORTED_UP_TO:
            try:
                keys = sorted(x)
            except Exception:  # noqa: BLE001 - unorderable: as they come
                keys = x
        shown = [one(k) for k in itertools.islice(keys, self.maxdict)]
        more = ", ..." if len(x) > self.maxdict else ""
        return f"{head}{', '.join(shown)}{more}{tail}"

    def repr_instance(self, x: Any, level: int) -> str:
        # a subclass of a builtin container whose repr is the builtin's or the standard
        # library's (Counter, OrderedDict, defaultdict): shown as the base, named; a class
        # with a __repr__ of its own (one that hides a password, or says "Rows(n=100)") by it
        owner = next((k for k in type(x).__mro__ if "__repr__" in k.__dict__), object)
        base = _PLAIN_REPRS.get(owner)
        if base is not None:
            return f"{type(x).__name__}({getattr(self, f'repr_{base.__name__}')(x, level)})"
        try:
            text = repr(x)
        except Exception:  # noqa: BLE001 - as reprlib names an object whose repr fails
            return f"<{type(x).__name__} instance at {id(x):#x}>"
        if "\n" in text:
            # a table's repr (a pandas DataFrame or Series, a 2-D numpy array): cut in the
            # middle it put a line break and the header's padding into a one-line message
            # (`f(         a  b\n0   ...0 rows x 2 columns])`); its shape says more
            shape = getattr(x, "shape", None)
            if type(shape) is tuple and all(type(n) is int for n in shape):
                dtype = getattr(x, "dtype", None)
                kind = f" dtype={dtype}" if dtype is not None and not callable(dtype) else ""
                return f"<{type(x).__name__} shape={shape}{kind}>"
            text = " ".join(text.split())
        n = self.maxother
        if len(text) > n:
            i = max(0, (n - 3) // 2)
            text = text[:i] + "..." + text[len(text) - max(0, n - 3 - i) :]
        return text


# the classes whose __repr__ shows a container's items -> the builtin it is shown as
_PLAIN_REPRS: dict[type, type] = {
    **{t: t for t in (dict, list, tuple, set, frozenset, bytes, bytearray)},
    collections.Counter: dict,
    collections.OrderedDict: dict,
    collections.defaultdict: dict,
}
_short = _Short()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxtuple, _short.maxdict = 40, 40, 4, 4, 4


def label(func: Any) -> str:
    """``module.qualname`` of a function (or of a callable object's class).

    A ``functools.partial`` is named by the function it calls too
    (``functools.partial(__main__.f)``): "partial" alone says nothing of where to look.
    """
    if type(func) is functools.partial:
        return f"functools.partial({label(func.func)})"
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{getattr(func, '__module__', '?')}.{name}"


def call_name(func: Any, depth: int = 0) -> str:
    """The name a task's function goes by in messages, naming the function a wrapper calls.

    ``f``; ``C.method``; ``partial(f, 1, y=2)`` (a bare ``partial`` named nothing the
    user wrote); ``vectorize(f)`` (``numpy.vectorize``); a wrapper that
    ``functools.update_wrapper`` could not name (scikit-learn's ``_FuncWrapper``
    around a partial) by what its ``__wrapped__`` is; else its ``__name__`` (a numpy
    ufunc: ``sqrt``, ``f (vectorized)`` of ``frompyfunc``), or the callable's class.
    """
    if isinstance(func, functools.partial) and depth < 4:
        parts = [call_name(func.func, depth + 1)] + [_short.repr(a) for a in func.args]
        parts += [f"{k}={_short.repr(v)}" for k, v in func.keywords.items()]
        return f"partial({', '.join(parts)})"
    name = getattr(func, "__qualname__", None)
    if isinstance(name, str) and name:
        return name
    if depth < 4:
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is not None and wrapped is not func:
            return call_name(wrapped, depth + 1)
        pyfunc = getattr(func, "pyfunc", None)  # numpy.vectorize
        if pyfunc is not None and type(func).__name__ == "vectorize":
            return f"vectorize({call_name(pyfunc, depth + 1)})"
    name = getattr(func, "__name__", None)  # a numpy ufunc: np.sqrt, np.frompyfunc(f)
    if isinstance(name, str) and name and not isinstance(func, type):
        return name
    return type(func).__qualname__


_MAX_SHOWN = 8  # arguments a task's name shows


def describe_task(index: int, item: Any) -> str:
    """``task 3: crash_task(3)``: the index, the function's name and short arguments."""
    try:
        func, args, kwargs = item
        chunk = _map_chunk(func, args, kwargs)
        if chunk is not None:
            return f"task {index}: {chunk}"
        name = call_name(func)
        parts = [_short.repr(a) for a in itertools.islice(args, _MAX_SHOWN + 1)]
        if len(parts) <= _MAX_SHOWN:
            shown = itertools.islice((kwargs or {}).items(), _MAX_SHOWN + 1)
            parts += [f"{k}={_short.repr(v)}" for k, v in shown]
        n = len(args) + len(kwargs or ())
        if n > _MAX_SHOWN:  # (scikit-learn's _fit_and_score: 21 arguments, a 1000-character name)
            parts = [*parts[:_MAX_SHOWN], f"... {n - _MAX_SHOWN} more"]
        return f"task {index}: {name}({', '.join(parts)})"
    except Exception:  # noqa: BLE001 - a description must never fail
        return f"task {index}"


def _map_chunk(func: Any, args: Any, kwargs: Any) -> str | None:
    """``f(3)``, or ``f(3), f(4) (a chunk of map's calls)``, for a chunk of ``map``'s calls
    sent through a subclass's ``submit`` (``executor.submitmap``: the standard library's
    ``partial(_process_chunk, f)`` over a tuple of argument tuples); None for another call."""
    process = sys.modules.get("concurrent.futures.process")
    if (
        type(func) is not functools.partial
        or process is None
        or func.func is not getattr(process, "_process_chunk", None)
        or len(func.args) != 1
        or func.keywords
        or kwargs
        or len(args) != 1
        or type(args[0]) is not tuple
    ):
        return None
    name = call_name(func.args[0])
    calls = [f"{name}({', '.join(_short.repr(a) for a in one)})" for one in args[0][:3]]
    if len(args[0]) == 1:
        return calls[0]
    more = ", ..." if len(args[0]) > 3 else ""
    return f"{', '.join(calls)}{more} (a chunk of {len(args[0])} of map's calls)"


def identity(func: Any) -> tuple[Any, Any]:
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


def group(fcol: tuple[Any, ...], by_content: bool) -> tuple[list[Any], Any]:
    """The distinct functions of a batch and each task's index into them.

    Bound methods of one object and function count once. When the batch is pickled
    (*by_content*), so do functions that pickle the same (:func:`identity`); run in
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
                ident = identity(f)[0]
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


def split(items: Sequence[Any], first: int, by_content: bool, single: bool = True) -> Calls | Column:
    """Columns of a batch: distinct functions, their index per task, args, kwargs.

    The hot path of tiny tasks, so every check is one pass in C over a column.
    Like joblib, any ``(function, args, kwargs)`` triple is accepted (a tuple, as
    ``delayed`` makes, or a list); anything else is a ``TypeError`` naming its
    index. That args are tuples or lists and kwargs mappings is checked by the
    runner, before the batch runs.

    A batch to pickle (*by_content*) of one function called with one positional
    argument and no keywords, ``delayed(f)(x)`` over a sequence, comes back as a
    :class:`Column` of those arguments (:func:`one_argument`; ``dispatch.pull``
    makes it as it pulls them, and passes *single* False for the batches it did not).
    """
    if by_content and single and items:
        xs = one_argument(items)
        if xs is not None:
            return Column(items[0][0], xs, True)
    try:
        fcol, acol, kcol = zip(*items, strict=True)
    except (TypeError, ValueError):
        raise bad_items(items, first) from None
    # (all empty: no column; but keywords of another type than a dict, even empty ones, `[]`
    # or `0`, go to the worker's check, as joblib's f(*args, **kwargs) refuses them)
    has_kwargs = any(kcol) or not set(map(type, kcol)) <= _EMPTY_KWARGS
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
        funcs, fidx = group(fcol, by_content)
    if not all(map(callable, funcs)):
        raise bad_items(items, first)
    return Calls(funcs, fidx, acol, kcol if has_kwargs else None)


_EMPTY_KWARGS = {dict, type(None)}  # the types of keywords a batch without a column may have


def one_argument(items: Sequence[Any], f0: Any = None) -> list[Any] | None:
    """The ``x`` of ``delayed(f)(x)`` calls of one *f* (*f0* when given), else None.

    One pass over the items, where :func:`split` makes three columns: the pickle of
    a list of arguments is about a third of that of a list of 1-tuples, in the
    parent and in the worker (100k tiny tasks). Only exact 1-tuples and empty dicts
    qualify, told apart without running the user's code (no ``__eq__``); anything
    else (other functions, more arguments, keywords, a list or namedtuple of
    arguments, ``kwargs=None``, an item that is not a triple) gives None, and
    :func:`split` makes the columns, or names the bad item.
    """
    try:
        head, t0, k0 = items[0]
        if type(t0) is not tuple or len(t0) != 1 or type(k0) is not dict or k0:  # keywords: one look
            return None
        if f0 is None:
            f0 = head
            if not callable(f0):
                return None
        if items[-1][0] is not f0:  # a function per task: one look
            return None
        args = [
            a
            for f, t, k in items
            if f is f0 and type(t) is tuple and type(k) is dict and not k
            for (a,) in (t,)
        ]
    except Exception:  # noqa: BLE001 - not such a batch: split says what is wrong, if anything
        return None
    return args if len(args) == len(items) else None


class NotACall(TypeError):
    """An item of the iterable given to ``Parallel`` that is not a ``(function, args,
    kwargs)`` call: a ``TypeError``, as joblib's own (which fails calling it).

    *index*: the item's index in the user's iterable (None: not known); *wire*: its
    index among the calls sent (*index* when not given), which an executor renumbers
    (``futures._Numbering.user_index``).
    """

    def __init__(self, item: Any, index: int | None, wire: int | None = None) -> None:
        from ..workers.tasks import bad_item_message

        self.item, self.wire = item, index if wire is None else wire
        super().__init__(bad_item_message(item, index))

    def __reduce__(self) -> Any:  # a plain TypeError out of the process (the item may not pickle)
        state = {k: v for k, v in vars(self).items() if k not in ("item", "wire")}
        return (TypeError, self.args, state or None)


def bad_items(items: Sequence[Any], first: int) -> TypeError:
    """The error naming the first item that is not a ``(function, args, kwargs)`` call."""
    from ..workers.tasks import good_call_parts

    for i, item in enumerate(items):
        try:
            f, args, kwargs = item
        except (TypeError, ValueError):
            return NotACall(item, first + i)
        if not callable(f) or not good_call_parts(args, kwargs):
            return NotACall(item, first + i)
    return TypeError(f"items {first}..{first + len(items) - 1} of the iterable are not delayed calls")


_REFERENCE_PICKLERS = (HybridPickler, CloudPickler)
_should_pickle_by_reference = getattr(cloudpickle.cloudpickle, "_should_pickle_by_reference", None)
# (pickler class, id(function)) -> (function, its code objects, content key, bytes): functions
# pickled by reference (module and name), for the life of the process, while their code is the
# same (IPython's %autoreload sets the __code__ of a reloaded module's functions in place)
_references: dict[tuple[type, int], tuple[Any, tuple[Any, ...], str, bytes]] = {}
_references_epoch = [0]  # reloaded.epoch when they were pickled


def by_reference(pickler: Any, func: Any) -> tuple[str, bytes] | None:
    """``(content key, bytes)`` of *func* when *pickler* sends it by reference, else None.

    An importable function, class or builtin pickles to its module and name,
    whatever its globals: pickled once per process instead of once per call. Only
    for the built-in picklers that decide as cloudpickle does (``hybrid``,
    ``cloudpickle``), and only while no module is registered to go by value. A
    Python function of a module loaded from its source goes with the digests of its code
    (``workers.reloads.ByName``).
    """
    kind = type(pickler)
    if kind not in _REFERENCE_PICKLERS or type(func) not in _KEEPABLE or _should_pickle_by_reference is None:
        return None
    if reloaded.moved(_references_epoch):  # a function held from before a reload goes by value
        _references.clear()
    known = _references.get((kind, id(func)))
    code = codes(func) if type(func) is types.FunctionType else ()
    if (
        known is not None
        and known[0] is func
        and known[1] == code  # (code objects compare by identity first)
        and not cloudpickle.list_registry_pickle_by_value()
    ):
        return known[2], known[3]
    try:
        if cloudpickle.list_registry_pickle_by_value() or not _importable(func):
            return None
        # a Python function with its code's digests: a worker whose module is older than the
        # parent's (reloaded here) reloads it (workers.reloads)
        data = pickler.dumps(ByName(func) if type(func) is types.FunctionType and checkable(func) else func)
    except Exception as exc:  # noqa: BLE001 - the usual road says why
        if interrupts.from_signal_handler(exc):  # (an alarm's deadline, not the pickle's error)
            raise
        return None
    if len(_references) >= MAX_SPECS:
        _references.clear()
    key = content_key(data, b"()")  # as FunctionTable.spec's
    _references[(kind, id(func))] = (func, code, key, data)
    return key, data


def _importable(func: Any) -> bool:
    """*func* pickles as its module and name: cloudpickle's test, and module-level builtins."""
    if type(func) is types.BuiltinFunctionType:  # abs, math.sqrt; not [].append (bound)
        return isinstance(getattr(func, "__self__", None), types.ModuleType)
    if by_value_home(func):  # hybrid sends it by value (a spawned process's script, a plugin's file)
        return False
    return _should_pickle_by_reference is not None and bool(_should_pickle_by_reference(func))


class Calls(Sequence[Any]):
    """A batch's calls kept as columns (``split``): what a batch in flight keeps.

    As a sequence it is the ``(function, args, kwargs)`` triples, made on demand
    (for error messages). Keeping the columns instead of the caller's triples
    matters on tiny tasks: the triples die as soon as the batch is split, where
    each kept one would be rescanned by the cyclic GC at every collection until
    the batch's reply came back (about a fifth of the parent's time on 100k tasks).
    """

    __slots__ = ("funcs", "fidx", "args", "kwargs")

    def __init__(
        self, funcs: list[Any], fidx: Any, args: Sequence[Any], kwargs: Sequence[Any] | None
    ) -> None:
        self.funcs, self.fidx, self.args, self.kwargs = funcs, fidx, args, kwargs

    def __len__(self) -> int:
        return len(self.args)

    def __getitem__(self, k: int) -> tuple[Any, Any, Any]:  # type: ignore[override]
        f = self.funcs[self.fidx[k] if type(self.fidx) is list else self.fidx]
        return (f, self.args[k], {} if self.kwargs is None else self.kwargs[k])

    def __iter__(self) -> Iterator[tuple[Any, Any, Any]]:
        return map(self.__getitem__, range(len(self.args)))


class Column(Sequence[Any]):
    """Calls of one function kept as their arguments (``Executor.map``'s chunks).

    As a sequence it is the ``(function, args, None)`` triples, made on demand (for
    error messages); *single*: each entry of *args* is the one positional argument.
    """

    __slots__ = ("fn", "args", "single")

    def __init__(self, fn: Any, args: list[Any], single: bool) -> None:
        self.fn, self.args, self.single = fn, args, single

    def __len__(self) -> int:
        return len(self.args)

    def __getitem__(self, k: int) -> tuple[Any, tuple[Any, ...], None]:  # type: ignore[override]
        a = self.args[k]
        return (self.fn, (a,) if self.single else a, None)

    def __iter__(self) -> Iterator[tuple[Any, tuple[Any, ...], None]]:
        return map(self.__getitem__, range(len(self.args)))


# A process's tokens: a random prefix (a forked child draws its own at its first table)
# and a counter. Unique per table, without reading os.urandom at every call.
_TOKENS: tuple[str, Any, int] = ("", itertools.count(), -1)


def _token_source() -> tuple[str, Any, int]:
    global _TOKENS
    if _TOKENS[2] != forklocks.getpid():
        _TOKENS = (os.urandom(6).hex() + "-", itertools.count(), forklocks.getpid())
    return _TOKENS


class FunctionTable:
    """The specs of one call's functions, each pickled when the call first meets it."""

    def __init__(self, pickler: Any, buffers: Any, context: Any, keep_stateful: bool = True) -> None:
        self.pickler = pickler
        # Callable objects, bound methods and partials: kept (pickled once) for a call;
        # a long-lived table (Executor) pickles them at each batch, as they are then.
        self.keep_stateful = keep_stateful
        self.buffers = buffers  # pickler.buffers.CallBuffers: large arrays they hold via shm
        self.context = context  # pickler.context.CallContext: large specs via a blob
        prefix, counter, _pid = _token_source()
        self.token = f"{prefix}{next(counter)}"  # scopes the workers' function cache to this call
        self._specs: dict[Any, FuncSpec] = {}
        self._keep: list[Any] = []  # what the keys refer to, kept alive so ids stay unique
        self._epoch = [reloaded.epoch]  # a reload since: a function held from before goes by value
        self.blob_keys: set[str] = set()  # specs sent as blobs: a batch carries only its own
        # id(spec) -> (spec, reached(func), batch it was pickled for) of functions sent by value
        # holding objects an argument may be too (dispatch sends those as reached.ThroughFunction)
        self.reached: dict[int, tuple[FuncSpec, dict[int, tuple[str, Any, Any]], int]] = {}
        self.batch = 0  # batches begun (begin_batch)
        self._transient: list[int] = []  # reached entries of specs made for one batch alone
        # a long-lived table's functions sent by value holding SharedStates (their globals,
        # defaults, closure): ident -> (spec, ((state, version pickled), ...)); pickled anew
        # once a state's version moved on, so a task sees the parent's version, as an argument
        self._states: dict[Any, tuple[FuncSpec, tuple[tuple[Any, int], ...]]] = {}

    def begin_batch(self) -> None:
        """A batch's specs and arguments are made next (``dispatch.Channel.send``)."""
        self.batch += 1
        self.end_batch()

    def end_batch(self) -> None:
        """A batch's specs and arguments are made (or failed): the ``reached`` entries of
        functions pickled for that batch alone go, so that what they hold (a bound method's
        object, an ``Executor.submit(obj.method)``) is not kept alive by a long-lived table
        until its next batch."""
        for gone in self._transient:
            self.reached.pop(gone, None)
        self._transient.clear()

    def renew(self) -> None:
        """Start another call on this table: each function is pickled again when it is next
        met, as it is then, and the workers' copies are checked against what they were sent.

        For a long-lived table serving calls that must each see the parent's state of their
        own moment (a ``with joblib.Parallel()`` block on the joblib backend: joblib pickles
        every batch anew, so a global of ``__main__`` rebound between two calls is seen).
        """
        self._specs.clear()
        self._keep.clear()
        self.reached.clear()
        self._states.clear()
        prefix, counter, _pid = _token_source()
        self.token = f"{prefix}{next(counter)}"

    def carried(self, attachment: Any, specs: Sequence[FuncSpec]) -> Any:
        """*attachment* without the blobs of functions that *specs* (a batch's) do not use.

        On dask a batch's worker gets every blob the batch carries: a call over many
        large callable objects (a model per task) would copy every one of them to
        every worker.
        """
        if not attachment or not self.blob_keys:
            return attachment
        own = set()
        for spec in specs:
            payload = spec[1].data if isinstance(spec[1], Frames) else spec[1]
            if not isinstance(payload, bytes):
                own.add(getattr(payload, "key", payload))
        return {k: f for k, f in attachment.items() if k in own or k not in self.blob_keys}

    def spec(self, func: Any, where: Callable[[], str]) -> FuncSpec:
        """*func*'s spec, pickled now if this call has not met it; *where()* names the
        task for an error (``task 57: f(57)``)."""
        ident, referents = identity(func)
        if reloaded.moved(self._epoch):  # (a long-lived table: an Executor's)
            self._specs.clear()
            self._keep.clear()
        spec = self._specs.get(ident)
        if spec is not None and self._states and self._moved_on(ident, spec):
            self._specs.pop(ident, None)
            self.reached.pop(id(spec), None)
            spec = None
        if spec is None:
            reference = by_reference(self.pickler, func)
            if reference is not None:  # importable: the same few bytes at every call
                key, data = reference
                spec = (key, data, label(func), self.token)
                self._specs[ident] = spec
                self._keep.append(referents)
                return spec
            kind = type(self.pickler)
            by_value = kind in _REFERENCE_PICKLERS and type(func) is types.FunctionType
            known = unchanged.recall(kind, ident, func) if by_value else None
            if known is not None:  # sent by value at an earlier call, provably the same bytes
                spec = (known[0], known[1], label(func), self.token)
                self._hold(ident, spec, func, referents)
                # (what it holds is atoms, tuples of them, modules, functions, classes:
                # of those, reached() takes the functions sent by value only)
                if known[2]:  # (a helper of __main__ it names, passed as an argument too)
                    self._note_reached(spec, func)
                return spec
            # (a long-lived table keeps a function only while it lives: one it cannot watch so
            # is pickled for its batch alone, as a callable object)
            keepable = isinstance(func, _KEEPABLE) and (self.keep_stateful or _watchable(func))
            try:
                data, refs = self.buffers.dumps_function(self.pickler, func, keepable or self.keep_stateful)
            except Exception as exc:
                if interrupts.from_signal_handler(exc):
                    raise  # the program's signal handler's (a SIGALRM deadline), not the function's
                noun = "class" if isinstance(func, type) else "function"
                msg = explain(self.pickler, func, exc, root=f"{noun} {label(func)}")
                raise pickling_error(f"{where()}: {msg}", exc) from exc
            key = content_key(data, repr(refs).encode())
            if by_value:
                seeded.warn_held(func, where, label(func))
            if by_value and not refs and len(data) <= INLINE_LIMIT:
                unchanged.remember(kind, ident, func, key, data, _importable)
            payload: Any = data
            if len(data) > INLINE_LIMIT:
                ref = self.context.put_blob(key, data)
                if ref is not None:
                    payload = ref
                    self.blob_keys.add(key)
            if refs:
                payload = Frames(payload, refs, mode=self.buffers.mmap_mode)
            spec = (key if keepable else None, payload, label(func), self.token)
            if keepable or self.keep_stateful:
                if len(self._specs) >= MAX_SPECS:  # a long-lived table meeting ever new closures
                    self._specs.clear()
                    self._keep.clear()
                    self.reached.clear()
                    self._states.clear()
                self._hold(ident, spec, func, referents)
                if by_value or _holder(func):
                    self._note_reached(spec, func)
                    if not self.keep_stateful:
                        self._note_states(ident, spec)
            elif _holder(func):  # pickled for this batch alone (an Executor's submit)
                self._note_reached(spec, func)
                self._transient.append(id(spec))
        return spec

    def _hold(self, ident: Any, spec: FuncSpec, func: Any, referents: Any) -> None:
        """Keep *func*'s *spec* under *ident*: for the call, with what the key's ids refer to;
        in a long-lived table (an ``Executor``'s), as long as *func* lives, and no longer: a
        closure or a class submitted once must not keep what it holds (a model, a dataset)
        alive, through this table, for the executor's life (CPython's issue 16284)."""
        self._specs[ident] = spec
        if self.keep_stateful:
            self._keep.append(referents)
            return
        # what the key's ids refer to besides the function: held with it (it holds them too,
        # unless a cell or its defaults are rebound: then as here, their ids stay unique).
        # Not its globals: it holds them for its life (``__globals__`` cannot be rebound), and
        # held here (``weakref.finalize`` keeps its arguments until the function dies) they
        # held the function through its own name in them: a function of an ``exec``
        # namespace kept that namespace and its data alive for good, and ``__main__``'s
        # objects were never collected at the exit (their ``__del__`` never ran)
        rest = (referents[1], *referents[3:]) if type(referents) is tuple else None
        weakref.finalize(func, _forget, weakref.ref(self), ident, spec, rest).atexit = False

    def _note_states(self, ident: Any, spec: FuncSpec) -> None:
        """Note the SharedStates *spec*'s function holds, with the versions it was pickled with:
        itself, or as an item of a list, tuple or dict it holds (``STATES = {"model": state}``)."""
        entry = self.reached.get(id(spec))
        if entry is None:
            return
        held: list[Any] = []
        for _where, _key, obj in entry[1].values():
            held.append(obj)
            if type(obj) in (list, tuple):
                held.extend(obj)
            elif type(obj) is dict:
                held.extend(obj.values())
        states = tuple((obj, obj._version) for obj in held if isinstance(obj, SharedState))
        if states:
            self._states[ident] = (spec, states)

    def _moved_on(self, ident: Any, spec: FuncSpec) -> bool:
        """Whether a SharedState that *spec*'s function holds changed since it was pickled."""
        noted = self._states.get(ident)
        if noted is None or noted[0] is not spec:
            return False
        if not any(state._moved_on_from(version) for state, version in noted[1]):
            return False
        del self._states[ident]
        return True

    def _note_reached(self, spec: FuncSpec, func: Any) -> None:
        found = reached(func)
        if found:
            self.reached[id(spec)] = (spec, found, self.batch)

    def through_functions(
        self,
        funcs: Sequence[Any],
        specs: tuple[FuncSpec, ...],
        fidx: Any,
        args: Sequence[Any],
        kwargs: Any,
        single: bool,
        naming: Callable[[int], Callable[[], str]],
    ) -> tuple[tuple[FuncSpec, ...], Sequence[Any], Any]:
        """*specs*, *args* and *kwargs* (a batch's) with each argument that is an object a
        function of *specs* holds (:func:`reached`) as a ``reached.ThroughFunction``.

        Only the arguments themselves, not what they hold: ``delayed(f)(SENTINEL)``
        arrives as the function's own ``SENTINEL``, ``delayed(f)([SENTINEL])`` as a copy.
        A long-lived table (an ``Executor``'s: each ``submit`` is a call of its own) pickles
        such a function again for the batch, as it is now (*naming(k)* names the task for
        an error): the copy made at an earlier ``submit`` holds the object as it was then,
        and the argument must be as it is at this one.
        """
        for k, spec in enumerate(specs):
            entry = self.reached.get(id(spec))
            if entry is None or entry[0] is not spec:
                continue
            held = entry[1]
            if type(fidx) is list:
                mine: Sequence[int] = [i for i, j in enumerate(fidx) if j == k]
            elif fidx == k:
                mine = range(len(args))
            else:
                continue
            # (held keeps its objects alive: an id it has is that very object)
            contains = held.__contains__
            every = args if single else itertools.chain.from_iterable(args)
            if type(mine) is range and _none_of(held, every):
                rows = []  # (the usual case, looked at in C: no argument is one of them)
            elif single:
                rows = [i for i in mine if contains(id(args[i]))]
            else:
                rows = [i for i in mine if any(map(contains, map(id, args[i])))]
            named = []
            if kwargs is not None:
                named = [i for i in mine if kwargs[i] and any(map(contains, map(id, kwargs[i].values())))]
            if not rows and not named:
                continue
            if not self.keep_stateful and entry[2] != self.batch:
                spec = self._respec(funcs[k], spec, naming(k))
                specs = specs[:k] + (spec,) + specs[k + 1 :]
                entry = self.reached.get(id(spec))
                if entry is None or entry[0] is not spec:
                    continue
                held = entry[1]
            through = _Through(k, held)
            if rows:
                args = list(args)
                for i in rows:
                    args[i] = through(args[i]) if single else tuple(map(through, args[i]))
            if named:
                kwargs = list(kwargs)
                for i in named:
                    kwargs[i] = {n: through(v) for n, v in kwargs[i].items()}
        return specs, args, kwargs

    def _respec(self, func: Any, old: FuncSpec, where: Callable[[], str]) -> FuncSpec:
        """*func*'s spec pickled anew, as it is now (its old one forgotten)."""
        self._specs.pop(identity(func)[0], None)
        self.reached.pop(id(old), None)
        return self.spec(func, where)


def _watchable(func: Any) -> bool:
    """Whether *func* takes a weak reference (a function, a class: not a builtin's bound method)."""
    try:
        weakref.ref(func)
    except TypeError:
        return False
    return True


def _forget(table_ref: Any, ident: Any, spec: FuncSpec, _rest: Any) -> None:
    """A long-lived table's function died: its spec and what the table noted of it go
    (``FunctionTable._hold``); an entry made since for another function stays."""
    table = table_ref()
    if table is None:
        return
    if table._specs.get(ident) is spec:
        table._specs.pop(ident, None)
    entry = table.reached.get(id(spec))
    if entry is not None and entry[0] is spec:
        table.reached.pop(id(spec), None)
    states = table._states.get(ident)
    if states is not None and states[0] is spec:
        table._states.pop(ident, None)
    if isinstance(spec[1], Frames):  # its shared-memory files: once no batch uses them
        table.buffers.unpin(spec[1].refs)


def _by_name(func: Any) -> bool:
    """Whether *func* goes by name (one object anyway), True when that cannot be told."""
    try:
        return _importable(func)
    except Exception:  # noqa: BLE001 - a function cloudpickle cannot judge: left as it was
        return True


def _none_of(held: dict[int, tuple[str, Any, Any]], values: Iterable[Any]) -> bool:
    """Whether no value of *values* is an object of *held*, looked at in C: by type when *held*
    has only functions (a helper of ``__main__``; no id made per value), else by id."""
    if all(type(entry[2]) is types.FunctionType for entry in held.values()):
        return types.FunctionType not in map(type, values)
    return held.keys().isdisjoint(map(id, values))


class _Through:
    """An argument as itself, or as the ``ThroughFunction`` of function *k*'s *held* object:
    one per object, which a batch's pickle then writes once (the worker's unpickling looks
    it up once)."""

    def __init__(self, k: int, held: dict[int, tuple[str, Any, Any]]) -> None:
        self.k, self.held = k, held
        self.made: dict[int, ThroughFunction] = {}

    def __call__(self, value: Any) -> Any:
        where = self.held.get(id(value))
        if where is None or where[2] is not value:
            return value
        made = self.made.get(id(value))
        if made is None:
            made = self.made[id(value)] = ThroughFunction(self.k, where[0], where[1])
        return made


# What an object held by a function and passed as an argument can be: one whose identity
# a task may test or whose changes it may share (not an atom, nor a tuple of them, nor
# what goes by name or is made one object anyway: modules, classes, importable functions;
# a function sent by value is made again by each pickle, so it is one: `step is fast_step`)
_NOT_REACHED = frozenset(
    {int, float, complex, str, bytes, bool, type(None), tuple, frozenset, range}
    | {types.ModuleType, types.BuiltinFunctionType, types.MethodType}
)


_OBJECT_GETSTATE = getattr(object, "__getstate__", None)  # Python >= 3.11


def _plain_state(obj: Any) -> bool:
    """Whether *obj* pickles as its class and its ``__dict__`` as it is (no ``__getstate__``,
    ``__setstate__``, ``__reduce__`` or copyreg entry of its own): its copy has the same
    attributes."""
    kind = type(obj)
    return (
        type(getattr(obj, "__dict__", None)) is dict
        and kind.__reduce_ex__ is object.__reduce_ex__
        and kind.__reduce__ is object.__reduce__
        and getattr(kind, "__getstate__", _OBJECT_GETSTATE) is _OBJECT_GETSTATE
        and not hasattr(kind, "__setstate__")
        and kind not in copyreg.dispatch_table
    )


def _holder(func: Any) -> bool:
    """Whether *func* travels with what it holds, whatever the pickler: a
    ``functools.partial``, a bound method, a callable object with attributes."""
    kind = type(func)
    if kind is functools.partial or kind is types.MethodType:
        return True
    return kind not in _KEEPABLE and not isinstance(func, type) and _plain_state(func)


def reached(func: Any) -> dict[int, tuple[str, Any, Any]]:
    """``{id(obj): (where, key, obj)}``: the objects a function sent by value holds in its globals
    (the names its code reads), defaults, keyword defaults and closure, or a
    ``functools.partial`` in its arguments and keywords, a bound method in its object
    and that object's attributes, a callable object in its attributes
    (``delayed(model.fit)(model.X)``, ``delayed(partial(f, X))(X)``), by where the
    worker's copy of the function holds them (``workers.reached.through_function``)."""
    found: dict[int, tuple[str, Any, Any]] = {}

    def note(value: Any, where: str, key: Any) -> None:
        kind = type(value)
        if kind is types.FunctionType:
            if id(value) not in found and not _by_name(value):
                found[id(value)] = (where, key, value)
        elif kind not in _NOT_REACHED and not isinstance(value, type):
            found.setdefault(id(value), (where, key, value))

    if type(func) is functools.partial:
        for i, value in enumerate(func.args):
            note(value, "partial_arg", i)
        for name, value in func.keywords.items():
            note(value, "partial_kw", name)
        return found
    if type(func) is types.MethodType:
        owner = func.__self__
        note(owner, "self", None)
        if not isinstance(owner, (type, types.ModuleType)) and _plain_state(owner):
            for name, value in owner.__dict__.items():
                note(value, "attr", name)
        return found
    if type(func) is not types.FunctionType:
        if _holder(func):  # a callable object: its attributes
            for name, value in func.__dict__.items():
                note(value, "own_attr", name)
        return found

    g = func.__globals__
    for name in sent_globals(func.__code__):
        if name in g:
            note(g[name], "global", name)
    for i, value in enumerate(func.__defaults__ or ()):
        note(value, "default", i)
    for name, value in (func.__kwdefaults__ or {}).items():
        note(value, "kwdefault", name)
    for i, cell in enumerate(func.__closure__ or ()):
        try:
            note(cell.cell_contents, "cell", i)
        except ValueError:  # an empty cell
            pass
    return found
