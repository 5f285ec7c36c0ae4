"""Say *where* pickling failed: the path to the offending object inside a call.

When ``pickler.dumps(task)`` raises, :func:`explain` walks the object again, one
child at a time (container items, dict values, instance attributes, what an object's
own ``__getstate__``/``__reduce__`` sends, a class's attributes (one sent by value), a
function's closure cells, defaults and globals, a bound method's ``__self__``, a partial's
arguments), and reports the deepest child that still fails, as a path such as
``args[1]['model'].optimizer._lock``, with its type, the pickler in use and the
fix for that kind of object.
"""

from __future__ import annotations

import enum
import functools
import inspect
import io
import os
import pickle
import re
import socket
import sys
import sysconfig
import types
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import PicklingError, error_text
from .classes import ENUM_OWN
from .codeglobals import sent_globals
from .locks import is_sync_object
from .runtime import RefusedError, own_protocol, refusal

_MAX_DEPTH = 50


def _function_children(func: types.FunctionType) -> Iterator[tuple[str, Any]]:
    if func.__closure__:
        for name, cell in zip(func.__code__.co_freevars, func.__closure__, strict=False):
            try:
                yield f".<closure {name}>", cell.cell_contents
            except ValueError:  # an empty cell
                continue
    for i, default in enumerate(func.__defaults__ or ()):
        yield f".__defaults__[{i}]", default
    for key, default in (func.__kwdefaults__ or {}).items():
        yield f".__kwdefaults__[{key!r}]", default
    seen = set()
    for name in sent_globals(func.__code__):  # (not every co_names entry: os.path's "path")
        if name in func.__globals__ and name not in seen:
            seen.add(name)
            yield f".<global {name}>", func.__globals__[name]


def _items(obj: Any) -> tuple[list[Any], Callable[[int], str]] | None:
    """A container's children as a list, and how to name the i-th; None for others.

    A dict's values come first, then its keys (``{key 0}``): a key can fail too.
    """
    if isinstance(obj, dict):
        keys = list(obj)
        count = len(keys)

        def name(i: int) -> str:
            return f"[{keys[i]!r}]" if i < count else f"{{key {i - count}}}"

        return [*obj.values(), *keys], name
    if isinstance(obj, (list, tuple, deque)):
        return list(obj), lambda i: f"[{i}]"
    if isinstance(obj, (set, frozenset)):
        return list(obj), lambda i: f"{{item {i}}}"
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.ndarray) and obj.dtype == object and obj.size:
        # its items, by index (args[0][1, 2]), not through what its __reduce__ sends
        shape = obj.shape

        def at(i: int) -> str:
            index = tuple(int(k) for k in np.unravel_index(i, shape))
            return f"[{', '.join(map(str, index))}]"

        return list(obj.ravel(order="C")), at
    return None


def _first_failing(fails: Callable[[Any], BaseException | None], items: list[Any]) -> int | None:
    """The index of the first of *items* that fails alone, by halving: any length.

    A list of a million items costs one pickling of it, not a million probes: only
    the first half is probed at each step (the whole range failed: if the first half
    does not, the second is taken as failing), so the caller must check that the item
    found fails alone (it does not when the failure needs two items together, or is
    the container's own). None for no items.
    """
    lo, hi = 0, len(items)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(items[lo:mid]) is not None:
            hi = mid
        else:
            lo = mid
    return lo if hi > lo else None


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    """The children of what is not a plain container (see _items)."""
    if type(obj).__module__ == "picklepool.state" and type(obj).__name__ == "SharedState":
        yield ".value", obj._value  # its snapshot is its value's (named as the user reaches it)
        return
    if isinstance(obj, types.FunctionType):
        yield from _function_children(obj)
        return
    if isinstance(obj, types.MethodType):
        yield ".__self__", obj.__self__
        yield ".__func__", obj.__func__
        return
    if isinstance(obj, functools.partial):
        yield ".func", obj.func
        for i, arg in enumerate(obj.args):
            yield f".args[{i}]", arg
        for key, value in obj.keywords.items():
            yield f".keywords[{key!r}]", value
    if isinstance(obj, type):  # a class sent by value (one found by name is not walked)
        for k, v in list(vars(obj).items()):
            if k not in _CLASS_OWN and not isinstance(v, _SLOT_DESCRIPTORS):
                yield f".{k}", v
        return
    if own_protocol(type(obj)) and not type(obj).__module__.startswith("picklepool."):
        yield from _reduced_children(obj)  # what it sends: before its attributes, which it may leave out
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        items = list(state.items())
        if isinstance(obj, enum.Enum):  # its own attributes before its class (which holds them)
            items.sort(key=lambda kv: kv[0] in ENUM_OWN)
        for k, v in items:
            yield f".{k}", v
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                yield f".{name}", getattr(obj, name)
    if _class_by_value(type(obj)):  # its class travels with it, class attributes and all
        yield ".__class__", type(obj)


def _class_by_value(cls: type) -> bool:
    """Whether *cls* (a class statement's) is pickled by value: a class of __main__, or one
    that cannot be imported by name."""
    if isinstance(cls, enum.EnumMeta) or not _users_class(cls):
        return False
    import cloudpickle

    by_reference = getattr(cloudpickle.cloudpickle, "_should_pickle_by_reference", None)
    try:
        return by_reference is not None and not by_reference(cls)
    except Exception:  # noqa: BLE001 - (a class it cannot tell: not walked)
        return False


# a class's own entries that its pickling by value leaves out or makes anew
_CLASS_OWN = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "_abc_impl"})
_SLOT_DESCRIPTORS = (types.MemberDescriptorType, types.GetSetDescriptorType)


def _reduced_children(obj: Any) -> Iterator[tuple[str, Any]]:
    """The parts of what *obj*'s own pickling (``__getstate__``, ``__reduce__``) sends.

    Its attributes may not be what it sends (a ``__getstate__`` that leaves its
    connection out and puts another object in): the failing part was named as the
    object itself (``args[0] (type Model)``), with the generic fix.
    """
    try:
        rv = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    except BaseException:  # noqa: BLE001 - its own pickling raised (a sys.exit in it too, as
        return  # probe takes it): the object is the culprit
    if not isinstance(rv, tuple):
        return
    for i, arg in enumerate(rv[1] if len(rv) > 1 and isinstance(rv[1], tuple) else ()):
        if not isinstance(arg, type):
            yield f".__reduce__()[1][{i}]", arg
    if len(rv) > 2 and rv[2] is not None:
        own_state = "__getstate__" in _defined_methods(type(obj))
        yield (".__getstate__()" if own_state else ".__reduce__()[2]"), rv[2]
    for at in (3, 4):
        if len(rv) > at and rv[at] is not None:
            yield f".__reduce__()[{at}]", list(rv[at])


def _defined_methods(cls: type) -> set[str]:
    """The names defined by the classes of *cls*'s MRO below ``object``."""
    return {name for klass in cls.__mro__[:-1] for name in vars(klass)}


def _by_reference_failure(value: Any, err: BaseException) -> bool:
    """*value* itself could not be found by name: its contents are not the problem.

    Only for what is pickled by name (a function, a class): a container whose item
    failed that way reports the same message, and is walked into to find the item.
    """
    if not isinstance(value, _BY_NAME):
        return False
    text = str(err)
    return any(
        m in text
        for m in ("Can't pickle local object", "attribute lookup", "not the same object", _NO_IMPORT)
    )


_NO_IMPORT = "import of module"  # pickle's words when the module a name is sent by fails to import


_BY_NAME = (types.FunctionType, type, types.BuiltinFunctionType, types.MethodType)


def _leave_out(buffer: Any) -> bool:
    return False  # out of band, and dropped: the probe needs no copy of its bytes


def probe(pickler: Any, value: Any, ctrl_c: bool = False) -> BaseException | None:
    """What *pickler* raises when dumping *value*, or None: the bytes are thrown away.

    Large buffers (numpy arrays) are left out of band instead of copied, so that
    looking for the culprit among tasks that share a 200 MB array does not pickle
    200 MB per task. With *ctrl_c*, a ``KeyboardInterrupt`` is raised, not returned:
    a Ctrl-C during a search (it can take long), where the object failed otherwise.
    """
    try:
        pickler.dumps(value, buffer_callback=_leave_out)
    except KeyboardInterrupt as exc:
        if ctrl_c:
            raise
        return exc  # a reducer's own (the failure looked for)
    except BaseException as exc:  # any failure is what we look for
        return exc
    return None


def _failing_child(
    fails: Callable[[Any], BaseException | None], value: Any
) -> tuple[str, Any, BaseException] | None:
    """The first child of *value* that fails alone: its path suffix, itself, its error."""
    listed = _items(value)
    if listed is None:
        for suffix, child in _children(value):
            child_err = fails(child)
            if child_err is not None:
                if suffix == ".__class__" and _by_reference_failure(child, child_err):
                    return None  # (the pickler sends it by name: the instance's own failure)
                return suffix, child, child_err
        return None
    items, name = listed
    index = _first_failing(fails, items)
    child_err = None if index is None else fails(items[index])
    if index is None or child_err is None:
        return None
    return name(index), items[index], child_err


def find_culprit(
    pickler: Any,
    obj: Any,
    root: str = "",
    known: BaseException | None = None,
    chain: list[tuple[str, Any]] | None = None,
) -> tuple[str, Any, BaseException] | None:
    """The deepest ``(path, object, error)`` under *obj* that *pickler* cannot dump.

    *known*: how dumping *obj* failed already, if it did. A ``KeyboardInterrupt``
    while searching is Ctrl-C, raised, unless the object's own failure is one.
    *chain*, if given, receives the ``(path, object)`` of every failing object from
    *obj* down to the culprit, in that order.
    """
    seen: set[int] = set()
    ctrl_c = known is not None and not isinstance(known, KeyboardInterrupt)
    fails = functools.partial(probe, pickler, ctrl_c=ctrl_c)

    def walk(value: Any, path: str, err: BaseException, depth: int) -> tuple[str, Any, BaseException]:
        refused = isinstance(err, RefusedError) and err.obj is value  # refused itself, not a part
        by_name = _by_reference_failure(value, err)
        if chain is not None:
            chain.append((path, value))
        if depth < _MAX_DEPTH and id(value) not in seen and not refused and not by_name:
            seen.add(id(value))
            found = _failing_child(fails, value)
            if found is not None:
                suffix, child, child_err = found
                return walk(child, path + suffix, child_err, depth + 1)
        return path, value, err

    err = fails(obj)
    if err is None:
        return None
    fails = functools.partial(probe, pickler, ctrl_c=not isinstance(err, KeyboardInterrupt))
    return walk(obj, root, err, 0)


def explain(pickler: Any, obj: Any, exc: BaseException, root: str = "") -> str:
    """A message naming the path, type, pickler and fix for a failed dumps.

    *root* names *obj* in the call: ``args``, ``kwargs``, ``result`` or the
    function's name; paths below it are appended (``args[1]['model']._lock``).
    """
    name = getattr(pickler, "name", type(pickler).__name__)
    if isinstance(exc, PicklingError):
        # Raised by picklepool itself (a lock that could not be taken for a
        # snapshot): it already says what happened, and walking would wait again.
        return f"cannot pickle {root or 'the task'} with pickler {name!r}: {exc}"
    chain: list[tuple[str, Any]] = []
    found = find_culprit(pickler, obj, root, exc, chain)
    if found is None:
        path, culprit, err = root or "the task", obj, exc
    else:
        path, culprit, err = found
        path = path or root or "the task"
    if name != "hybrid":
        # A lock inside a thread (or a multiprocessing object, a file handler) fails
        # here too, but hybrid, which the fix for a lock would suggest, refuses the
        # object that holds it: name that object and hybrid's reason instead.
        for outer_path, outer in chain:
            refused = refusal(outer)
            if refused is not None:
                path, culprit, err = outer_path or root or "the task", outer, refused
                break
    if _too_deep(err) and chain:  # each level fails: name the outermost of its kind, not level 50
        outer, culprit = next((p, v) for p, v in chain if type(v) is type(culprit))
        path = outer or root or "the task"
    kind = f"{type(culprit).__module__}.{type(culprit).__qualname__}"
    returning = root.startswith("result")
    if isinstance(err, RefusedError):  # refused by hybrid: the message says why and the fix
        where_from = _global_fix(path, "Here it is")
        return f"cannot pickle {path} (type {kind}) with pickler {name!r}: {err}" + (
            f" {where_from}" if where_from else ""
        )
    remedy = (
        _DEPTH_FIX
        if _too_deep(err)
        else _class_attribute_fix(chain, path, culprit, name)
        or fix(name, culprit, returning, path, chain[-2] if chain and len(chain) > 1 else None, err)
    )
    return f"cannot pickle {path} (type {kind}) with pickler {name!r}: {error_text(err)}. {remedy}"


_DEPTH_FIX = (
    "Fix: the object nests deeper than the pickler can follow (each level of nesting is a "
    "level of recursion, up to sys.getrecursionlimit()); flatten it (a linked list or a deep "
    "tree as a flat list of nodes with the indices of their children), or raise "
    "sys.setrecursionlimit() in the parent, which the workers follow (a very deep object can "
    "still overflow the C stack)."
)


def _too_deep(err: BaseException) -> bool:
    """Whether pickling failed for the depth of the object (the C pickler's own message)."""
    return isinstance(err, RecursionError) or "deep recursion" in str(err)


def _class_attribute_fix(chain: list[tuple[str, Any]], path: str, culprit: Any, pickler_name: str) -> str:
    """The fix for an attribute of a class sent by value (``f.<global Cls>.conn``), or ""."""
    owner = next((p for p, v in reversed(chain) if isinstance(v, type) and path.startswith(p + ".")), None)
    if owner is None:
        return ""
    cls = next(v for p, v in chain if p == owner)
    attr = path[len(owner) + 1 :].split(".")[0].split("[")[0]
    if (
        type(culprit).__name__ == "CField"
        and type(culprit).__module__ == "_ctypes"
        and pickler_name != "hybrid"
    ):
        return (
            f"Fix: it is the field {attr!r} of the ctypes structure {cls.__qualname__}, which "
            f"pickler {pickler_name!r} cannot send by value; use pickler='hybrid' (the default), "
            "which makes the structure again from its _fields_, or define it in a module the "
            "workers import."
        )
    return (
        f"Fix: it is the attribute {attr!r} of the class {cls.__qualname__}, which travels by "
        "value with its class (a class of __main__, or one that cannot be imported by name): "
        "make it when a task first needs it (in a method, not in the class statement), or "
        "define the class in a module the workers import, so that it goes by name and each "
        "worker makes its own."
    )


def _global_fix(path: str, lead: str = "Fix: it is") -> str:
    """The fix for an object reached through a function's global (``f.<global conn>``), or "".

    Sending it in some other form is not the user's choice there: the function drags
    it along because it is sent by value.
    """
    at = path.rfind(".<global ")
    if at < 0:
        return ""
    name = path[at + len(".<global ") :].partition(">")[0]
    return (
        f"{lead} the global {name!r} of a function sent by value (a function of __main__, "
        "or one that cannot be imported by name, travels with the globals it uses): create it "
        "inside the function (or in a helper the function calls), or define the function in a "
        f"module the workers import, so that it goes by name and uses the worker's own {name!r}."
    )


def _users_class(cls: type) -> bool:
    """Whether *cls* is written in Python outside the standard library and installed
    packages (a class whose ``__reduce__`` the user can write)."""
    if cls.__flags__ & _HEAPTYPE == 0:
        return False
    name = getattr(cls, "__module__", "") or ""
    if name in ("__main__", "__mp_main__"):  # a script's, also run from stdin, -c or a notebook
        return True
    path = getattr(sys.modules.get(name), "__file__", None)
    if not path or not path.endswith(".py"):
        return False
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return not any(os.path.abspath(path).startswith(os.path.join(r, "")) for r in roots)


_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement, not in C


def _hybrid_takes(culprit: Any, failure: BaseException | None = None) -> bool:
    """Whether the hybrid pickler pickles *culprit* (so that advising it helps).

    Any failure means no: a reducer's own ``SystemExit`` or ``GeneratorExit`` too (it
    escaped a worker's explanation of a result, and the caller got it bare, naming no
    task). A ``KeyboardInterrupt`` is Ctrl-C, raised, unless *failure* (how the call's
    pickler failed on *culprit*) is one: then it is the culprit's own, as in
    :func:`find_culprit`.
    """
    from .hybrid import HybridPickler

    try:
        HybridPickler().dumps(culprit)
    except KeyboardInterrupt:
        if not isinstance(failure, KeyboardInterrupt):
            raise
        return False
    except BaseException:  # noqa: BLE001 - any failure: hybrid is no fix for it
        return False
    return True


def _by_name(pickler_name: str, culprit: Any) -> bool:
    """Whether *pickler_name* failed on *culprit* because it sends functions and classes by
    name, as 'pickle' does: 'pickle' itself, or a pickler of the user's own (registered, or
    "module:attr": most often a ``pickle.Pickler`` subclass) that the hybrid pickler takes it from."""
    if pickler_name == "pickle":
        return True
    return pickler_name not in ("hybrid", "cloudpickle") and _hybrid_takes(culprit)


# how a task's function is replaced, for each way of making calls (the result's error does
# not know which made it: "delayed(run)" alone misled an Executor's, or asyncio's, user)
_IN_ITS_PLACE = "delayed(run)(...), executor.submit(run, ...), loop.run_in_executor(executor, run, ...)"


def fix(
    pickler_name: str,
    culprit: Any,
    returning: bool = False,
    path: str = "",
    holder: tuple[str, Any] | None = None,
    failure: BaseException | None = None,
) -> str:
    """What to do about *culprit*, which *pickler_name* could not pickle (at *path* in the call;
    *holder*: the ``(path, object)`` that holds it, if any; *failure*: what pickling it raised)."""
    give = "return" if returning else "pass"
    where = "in the parent" if returning else "inside the task"
    hybrid = pickler_name == "hybrid"
    if is_sync_object(culprit) and not hybrid:
        return (
            "Fix: use pickler='hybrid' (the default), which sends locks, conditions, "
            "events, semaphores and queues as snapshots rebuilt with fresh locks, or "
            f"{give} only the data the lock guards."
        )
    unimportable = _unimportable_home(culprit, failure)
    if unimportable:
        return unimportable
    if isinstance(culprit, (types.FunctionType, type)) and _by_name(pickler_name, culprit):
        qualname = getattr(culprit, "__qualname__", "")
        if "<lambda>" in qualname or "<locals>" in qualname or "<genexpr>" in qualname:
            made = "a lambda" if culprit.__name__ == "<lambda>" else "defined inside a function"
            return (
                f"Fix: it is {made}, which pickler {pickler_name!r} cannot send (it sends "
                "functions and classes by reference: module and name, importable by the worker); "
                "use pickler='hybrid' (the default) or 'cloudpickle', which send it by value, "
                "define it at module level, or decorate it with "
                "picklepool.wrap_non_picklable_objects."
            )
        return (
            f"Fix: pickler {pickler_name!r} sends functions and classes by reference, so they "
            "must be importable by the worker; use pickler='hybrid' (the default) or "
            "'cloudpickle', or decorate it with picklepool.wrap_non_picklable_objects."
        )
    if ".<global " in path:
        return _global_fix(path)
    cls_name = type(culprit).__qualname__
    if "<locals>" in cls_name and not isinstance(culprit, _BY_NAME) and _by_name(pickler_name, culprit):
        return (
            f"Fix: its class {cls_name} is defined inside a function, so pickler {pickler_name!r} "
            "cannot find it by name in the worker; define the class at module level, or use "
            "pickler='hybrid' (the default) or 'cloudpickle', which send it by value."
        )
    if isinstance(culprit, types.GeneratorType):
        made = getattr(culprit, "__qualname__", "f")
        fresh = inspect.getgeneratorstate(culprit) == inspect.GEN_CREATED
        if returning and path == "result" and fresh and "<" not in made:
            # the task returned a generator of a function of its module that nothing started:
            # the task's function itself has a `yield`, most likely
            return (
                f"Fix: {made} is a generator function (it uses yield): calling it only made "
                f"the generator {made}(), which nothing iterated; return list({made}(...)) "
                f"instead. If it is the task's function itself, use a plain function that runs "
                f"it: `def run(*args): return list({made}(*args))`, and call run in its place "
                f"({_IN_ITS_PLACE})."
            )
        return (
            f"Fix: a generator cannot be pickled; {give} list(generator) instead, or "
            f"{give} what creates it and build the generator {where}."
        )
    if isinstance(culprit, types.CoroutineType):
        made = getattr(culprit, "__qualname__", "f")
        if returning:
            return (
                f"Fix: the task's function is an `async def` function: calling it only made the "
                f"coroutine {made}(), which nothing awaited. Use a plain function that runs it: "
                f"`def run(*args): return asyncio.run({made}(*args))`, and call run in its place "
                f"({_IN_ITS_PLACE})."
            )
        return (
            f"Fix: a coroutine ({made}(), never awaited) cannot be pickled; {give} its arguments "
            f"and run it {where} with asyncio.run({made}(...))."
        )
    if isinstance(culprit, io.IOBase):
        return f"Fix: an open file cannot be pickled; {give} its path and open it {where}."
    if isinstance(culprit, socket.socket):
        return f"Fix: a socket cannot be pickled; {give} the address and connect {where}."
    ways = [
        f"{give} something picklable instead (for example the data this object holds, or "
        f"what it is made from, and build the object {where})"
    ]
    held = holder[0] if holder is not None else ""
    attribute = path[len(held) :] if holder is not None and path.startswith(held) else ""
    if attribute.startswith(".") and holder is not None and _users_class(type(holder[1])):
        cls = type(holder[1]).__qualname__
        held = attribute
        ways.append(
            f"give {cls} a __getstate__ that leaves {held[1:]} out (and a __setstate__ that "
            "makes it again where the object is loaded)"
        )
    elif _users_class(type(culprit)):
        ways.append("give its class a __reduce__ that leaves this part out")
    if not hybrid and _hybrid_takes(culprit, failure):
        ways.append("use pickler='hybrid' (the default), which pickles it")
    return "Fix: " + (", or ".join(ways) if len(ways) < 3 else f"{ways[0]}, {ways[1]}, or {ways[2]}") + "."


def _unimportable_home(culprit: Any, failure: BaseException | None) -> str:
    """The fix for a function or class (or an instance of one) whose module is in
    ``sys.modules`` under a name that importing fails on here (a module made at run time
    under a dotted name, ``dyn.mod``, with no ``dyn`` package): every pickler sends it by
    name, and pickle could not import that name to check it; or ""."""
    named = re.search(_NO_IMPORT + r" '([^']+)' failed", str(failure)) if failure is not None else None
    if named is None:
        return ""
    module = named[1]  # (the culprit's, or its class's: an instance of such a class)
    return (
        f"Fix: its module {module!r} is loaded here, but importing it by that name fails (it "
        "was made at run time, or loaded from a file under a package name that no import "
        "finds), so it cannot be sent by name, and a worker could not import it either; "
        f"have it travel by value, cloudpickle.register_pickle_by_value(sys.modules[{module!r}]) "
        "before the call (with pickler 'hybrid', the default, or 'cloudpickle'), or define "
        "what the tasks use in a module the workers can import."
    )


# cloudpickle's functions that rebuild a class sent by value (the last two: before cloudpickle 2)
_CLASS_REBUILDERS = frozenset(
    {
        "_make_skeleton_class",
        "_make_skeleton_enum",
        "_class_setstate",
        "_make_dynamic_class",
        "_rehydrate_skeleton_class",
    }
)
_FRAME = re.compile(r'^\s*File "(.+)", line \d+, in (\S+)\s*$', re.MULTILINE)


def class_rebuilding(failure: BaseException | str) -> tuple[str, str, str] | None:
    """``(cloudpickle's function, the class it rebuilt in words, its name)`` when an
    unpickling failed inside cloudpickle's own rebuilding of a class sent by value
    (``("_class_setstate", "the enum __main__.Perm", "Perm")``), else None. *failure*: the
    exception (its frames' arguments name the class), or a worker's formatted traceback
    (``("_class_setstate", "a class", "it")``).

    Told by the innermost frame outside the standard library (an enum's ``__setattr__``
    refusing to reassign a member is the standard library's, called by cloudpickle's
    ``_class_setstate``): a frame of the user's code there (a metaclass, an
    ``__init_subclass__``) is the user's failure, not cloudpickle's.
    """
    frames: list[tuple[str, str, Any]] = []
    if isinstance(failure, BaseException):
        tb = failure.__traceback__
        while tb is not None:
            frames.append((tb.tb_frame.f_code.co_filename, tb.tb_frame.f_code.co_name, tb.tb_frame))
            tb = tb.tb_next
    else:
        frames = [(path, function, None) for path, function in _FRAME.findall(failure)]
    for path, function, frame in reversed(frames):
        if _standard_library(path):
            continue
        if function not in _CLASS_REBUILDERS or os.path.basename(os.path.dirname(path)) != "cloudpickle":
            return None
        return (function, *_rebuilt_class(function, frame))
    return None


def _standard_library(path: str) -> bool:
    if path.startswith("<frozen "):
        return True
    paths = sysconfig.get_paths()
    where = os.path.abspath(path)
    inside = [os.path.join(paths[k], "") for k in ("stdlib", "platstdlib")]
    installed = [os.path.join(paths[k], "") for k in ("purelib", "platlib")]
    return any(where.startswith(p) for p in inside) and not any(where.startswith(p) for p in installed)


def _rebuilt_class(function: str, frame: Any) -> tuple[str, str]:
    """The class cloudpickle's *function* was rebuilding, from its *frame*'s arguments: in
    words and by name (``("the enum __main__.Perm", "Perm")``; ``("a class", "it")`` when
    not known)."""
    found: Any = None if frame is None else frame.f_locals
    if not found:
        return "a class", "it"
    cls = found.get("obj")
    if function == "_class_setstate" and isinstance(cls, type):
        kind = "enum" if isinstance(cls, enum.EnumMeta) else "class"
        return f"the {kind} {cls.__module__}.{cls.__qualname__}", cls.__qualname__
    name = found.get("qualname") or found.get("name")
    kind = "enum" if function == "_make_skeleton_enum" else "class"
    return (f"the {kind} {name}", name) if isinstance(name, str) else ("a class", "it")
