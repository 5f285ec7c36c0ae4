"""The ``hybrid`` pickler (the default): stdlib speed, cloudpickle's reach, locks as snapshots.

It is a subclass of ``cloudpickle.Pickler``, itself a subclass of the C
``pickle.Pickler``. The C pickler writes ints, floats, strings, bytes, lists,
tuples, dicts and sets without calling back into Python, so plain data goes at
the speed of ``pickle.dumps``. Every other object (one call per object, never
per element of a list) meets :meth:`Pickler.reducer_override`, which decides
once per type (and per ``dump``) what its instances need:

    1. classes and functions                           -> cloudpickle: by reference
                                                          when importable (their module
                                                          imported first, if need be:
                                                          ``import_home``), else by value
                                                          (and those of ``__main__`` run as
                                                          ``__mp_main__``, in a spawned process)
       (also ``functools.lru_cache``/``cache``            -> by value too: the function and
       wrappers, which pickle by name)                    the cache's settings, cache empty
    2. wrap_non_picklable_objects wrappers              -> by value, in this stream
    3. locks, conditions, events, semaphores, queues   -> snapshots (locks.py)
       struct.Struct, os.DirEntry, re.Match (pickle     -> what rebuilds them (values.py)
       refuses them)
       (and their subclasses); per-process objects:    -> rebuilt fresh or refused
       threading.local, contextvars, weakrefs, ...        (runtime.py)
       -- unless the user's own pickling applies: a copyreg reducer registered for
       the type, or pickling methods defined on a class of its MRO below the
       standard library (``runtime.own_protocol``): then that, as pickle would
    4. types with a reducer in ``dispatch_table``       -> that reducer (the table is a
       ChainMap of the lock reducers, cloudpickle's and ``copyreg.dispatch_table``)
    5. exceptions whose class has an ``__init__``       -> their parts, rebuilt without
       of its own (no pickling of its own)                ``__init__`` (exceptions.py)
       subclasses of OrderedDict, defaultdict, deque,   -> made by the base's constructor,
       set, date... with a constructor of their own        then their __dict__ (constructors.py)
    6. anything else                                    -> ``__reduce_ex__``, as the
       stdlib pickler does (a global's name it gives, for an object of ``__main__``:
       by value, ``named.py``); but an instance whose ``__dict__`` (or a slot) holds an RLock is
       snapshotted while holding it (below), unless its class defines its own
       ``__getstate__``/``__reduce__``: that state is what it chose to send, and its
       lock is not taken (take it in ``__getstate__`` if the snapshot needs it)

Deciding per type and calling ``__reduce_ex__`` directly skips the C pickler's
per-object lookup in the ChainMap (a Python-level miss), which makes ``hybrid``
faster than ``cloudpickle`` on lists of many small objects.

Objects that own an RLock
-------------------------
A user object with an ``RLock`` among its attributes (``self._lock =
threading.RLock()``) is snapshotted *while holding that lock*: the lock is
acquired before the object's ``__reduce_ex__`` runs and released only after its
whole state (every attribute, recursively) has been written. A method that
changes the object under ``with self._lock:`` is therefore never seen half
done. The rebuilt object holds a fresh, released RLock. Details of the choice:

- Only RLocks are taken. An RLock can be re-acquired by the thread that holds
  it, so pickling from inside ``with obj._lock:`` works; a plain ``Lock`` held
  by the pickling thread would deadlock, so plain-Lock owners are pickled
  without taking their lock (their lock is still rebuilt fresh).
- The first lock is waited for as long as it takes, as ``with obj._lock:``
  would. A nested object's lock (taken while another is held, in an order other
  threads may not use) is waited for at most ``locks.SNAPSHOT_TIMEOUT`` seconds,
  then pickling fails with a ``PicklingError`` instead of deadlocking.
- Every lock taken is released when ``dump`` ends, also when it fails.
- Objects whose type has a reducer in ``copyreg`` keep that reducer (no lock).
"""

from __future__ import annotations

import copyreg
import functools
import importlib
import operator
import queue
import struct
import sys
import threading
import types
import typing
from collections import ChainMap
from typing import Any

import cloudpickle

from . import classes, constructors, exceptions, locks, named, ownfunctions, runtime, sentinels, values
from .base import BasePickler
from .homes import module_not_found
from .mainalias import by_value_home, dynamic_class_reduce, reduce_by_value
from .plain import SAME_AS_STDLIB
from .wrap import ByValueFunction

_REDUCERS = locks.REDUCERS
_RLOCK_TYPES = locks.RLOCK_TYPES
_cloudpickle_override = cloudpickle.Pickler.reducer_override


def _hybrid_reducer(t: type) -> Any:
    """Hybrid's reducer for instances of *t* (locks, queues, per-process objects), or None."""
    reducer = _REDUCERS.get(t) or values.REDUCERS.get(t)
    if reducer is not None:
        return reducer
    if issubclass(t, queue.Queue):
        return locks.reduce_queue
    if issubclass(t, threading.Condition):
        return locks.reduce_condition_subclass
    if issubclass(t, struct.Struct):  # (a class of yours deriving from it: its own class)
        return values.reduce_struct_subclass
    return runtime.reducer_for(t)


def _importable(obj: Any) -> bool:
    """Whether *obj* can be found by name (module and qualified name) where it is unpickled."""
    module_name = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(module_name, str) or not isinstance(name, str) or module_name == "__main__":
        return False
    if by_value_home(obj):
        return False
    if module_name in cloudpickle.list_registry_pickle_by_value():
        return False
    found: Any = sys.modules.get(module_name)
    for part in name.split("."):
        found = getattr(found, part, None)
    return found is obj


def rebuild_lru_cache(func: Any, maxsize: int | None, typed: bool, token: Any = None) -> Any:
    """A ``functools.lru_cache`` wrapper of *func*, with an empty cache; or the wrapper
    *token* names when it is this process's own (``ownfunctions``)."""
    found = ownfunctions.own(token)
    if found is not None:
        return found
    return ownfunctions.note_copy(functools.lru_cache(maxsize=maxsize, typed=typed)(func), token)


def _reduce_lru_cache(pickler: Pickler, obj: Any) -> Any:
    """An ``lru_cache``/``cache`` wrapper: by name when importable (as pickle does), else by value.

    Its type pickles it by name only, so one defined in ``__main__`` (or made in a
    function) could not be found in a worker although the function it wraps can
    travel by value, as an undecorated one does.
    """
    wrapped = getattr(obj, "__wrapped__", None)
    import_home(obj)
    if not isinstance(wrapped, types.FunctionType) or _importable(obj):
        return obj.__reduce_ex__(pickler.proto)
    params = obj.cache_parameters()
    return rebuild_lru_cache, (wrapped, params["maxsize"], params["typed"], ownfunctions.token_of(obj))


# typing's named objects that pickle by name only (their module and name), as classes do:
# one made in __main__ (``UserId = NewType("UserId", int)``) could not be found in a
# worker, nor could a function of __main__ annotated with it be sent at all
_TYPING_NAMED: dict[type, tuple[str, ...]] = {
    kind: params
    for kind, params in (
        (getattr(typing, "NewType", None), ("__supertype__",)),
        (getattr(typing, "ParamSpec", None), ("__bound__", "__covariant__", "__contravariant__")),
        (getattr(typing, "TypeVarTuple", None), ()),
    )
    if isinstance(kind, type)
}


def rebuild_typing_named(
    kind: type, name: str, values: tuple[Any, ...], module: str, token: Any = None
) -> Any:
    """A ``typing.NewType``, ``ParamSpec`` or ``TypeVarTuple`` made anew, of *module*: one per
    *token* (``sentinels``), so this process's own one when it sent it, and one copy however
    many pickles bring it (the function's globals, an argument, a ``SharedState``)."""

    def make() -> Any:
        if kind is getattr(typing, "NewType", None):
            made = kind(name, *values)
        elif kind is getattr(typing, "ParamSpec", None):
            made = kind(name, bound=values[0], covariant=values[1], contravariant=values[2])
        else:
            made = kind(name)
        made.__module__ = module
        return made

    return make() if token is None else sentinels.stand_in(token, make)


def _reduce_typing_named(pickler: Pickler, obj: Any) -> Any:
    """By name when importable (as pickle sends it), else by value, as a class of ``__main__`` is."""
    import_home(obj)
    if _importable(obj):
        return obj.__reduce_ex__(pickler.proto)
    values = tuple(getattr(obj, attr, None) for attr in _TYPING_NAMED[type(obj)])
    return rebuild_typing_named, (type(obj), obj.__name__, values, obj.__module__, sentinels.token_of(obj))


_unimportable: set[str] = set()  # module names import_home could not import


def import_home(obj: Any) -> None:
    """Import the module a class or function names as its home, if its package is loaded but it is not.

    cloudpickle sends by value whatever names a module missing from ``sys.modules``,
    as if it had been made at run time. A public submodule a package loads lazily is
    missing until something imports it (``np.recarray.__module__`` is ``numpy.rec``):
    the class then went by value, and in the worker its methods, found by name, were
    the real class's, so ``super()`` in them failed on the copy's instances ("super(type,
    obj): obj must be an instance or subtype of type"). Importing the module first, as
    the stdlib pickler does, sends it by name. Only submodules of a package already
    loaded are imported; one that cannot be is tried once, and goes by value as before.
    """
    name = getattr(obj, "__module__", None)
    if not isinstance(name, str) or name in sys.modules or name in _unimportable:
        return
    package = name.rpartition(".")[0]
    if not package or package.partition(".")[0] not in sys.modules:
        return
    if name in cloudpickle.list_registry_pickle_by_value():
        return
    try:
        importlib.import_module(name)
    except (Exception, SystemExit):  # noqa: BLE001 - not a module after all (or a script that
        # exits at import: not the caller's exit, as the stdlib pickler's failed import): by value
        _unimportable.add(name)


def _reduce_function(pickler: Pickler, obj: Any) -> Any:
    """cloudpickle's reduction of a function, by name when its home module can be imported.

    By value when it is of ``__main__`` under another name (``mainalias``), or of a
    module loaded from a file that its name does not import (``homes``), as a function
    of ``__main__`` is.
    """
    if by_value_home(obj):
        rv = reduce_by_value(pickler, obj)
    else:
        import_home(obj)
        rv = _cloudpickle_override(pickler, obj)
    # by value: with its token, so that a copy sent back is this process's function again
    return ownfunctions.with_token(rv, obj)


def _reduce_module(pickler: Pickler, obj: Any) -> Any:
    """A module by value when it came from a file its name does not import (``homes``: a
    plugin's, named by a ``__main__`` function's globals), else as cloudpickle sends it.

    A module of a subclass of ``ModuleType`` (``mpmath`` makes itself one, for attributes
    computed when read) goes by name when it is ``sys.modules``' under its name: cloudpickle
    looks modules up by their exact type, and refused it ("cannot pickle '_MPMathModule'
    object"), so every ``__main__`` function using ``mpmath`` failed to pickle.
    """
    if not module_not_found(obj):
        name = getattr(obj, "__name__", None)
        if type(obj) is not types.ModuleType and isinstance(name, str) and sys.modules.get(name) is obj:
            return importlib.import_module, (name,)
        return NotImplemented  # cloudpickle's reducer (its dispatch table): by name, mostly
    state = obj.__dict__.copy()
    state.pop("__builtins__", None)  # as cloudpickle's own by-value modules
    return cloudpickle.cloudpickle.dynamic_subimport, (obj.__name__, state)


_DESCRIPTORS = (classmethod, staticmethod, property)


def _reduce_descriptor(pickler: Pickler, obj: Any) -> Any:
    """A subclass of ``classmethod``, ``staticmethod`` or ``property`` (a class's
    ``classproperty`` decorator of its own): made again from its functions, then its
    ``__dict__``. cloudpickle reduces those three by their exact type only (and
    ``abc``'s subclasses of them), and refused the others ("cannot pickle 'MyProp'
    object"): a class of ``__main__`` using one could not be sent."""
    if isinstance(obj, property):
        base: type = property
        args: tuple[Any, ...] = (obj.fget, obj.fset, obj.fdel, obj.__doc__)
    else:
        base = classmethod if isinstance(obj, classmethod) else staticmethod
        args = (obj.__func__,)
    state = getattr(obj, "__dict__", None)
    return rebuild_descriptor, (type(obj), base, args), dict(state) if state else None


def rebuild_descriptor(cls: type, base: type, args: tuple[Any, ...]) -> Any:
    """An instance of *cls*, a subclass of *base* (``property``...), made by *base*'s
    constructor from *args*: its own ``__init__`` may take other arguments (what it set is
    in the ``__dict__`` the pickle sets next)."""
    obj = base.__new__(cls)  # type: ignore[call-overload]
    base.__init__(obj, *args)  # type: ignore[misc]
    return obj


_LRU_CACHE_WRAPPER = type(functools.lru_cache(maxsize=None)(lambda: None))
_MAKE_SKELETON_CLASS = getattr(cloudpickle.cloudpickle, "_make_skeleton_class", None)
_MAKE_SKELETON_ENUM = getattr(cloudpickle.cloudpickle, "_make_skeleton_enum", None)


def _typed_dict_bases(cls: type, bases: Any) -> Any:
    """*bases* of the skeleton of by-value class *cls*; ``(TypedDict,)`` for a ``TypedDict``
    made by a call (``TD = TypedDict("TD", {"a": int})``), whose only base is ``dict`` and
    which has no ``__orig_bases__`` for cloudpickle to take: its metaclass refused ``dict``
    in the worker ("cannot inherit from both a TypedDict type and a non-TypedDict base
    class"), so no function of ``__main__`` naming it could be sent (under joblib neither)."""
    meta = type(cls)
    if meta.__name__ != "_TypedDictMeta" or bases != (dict,) or "__orig_bases__" in cls.__dict__:
        return bases
    typed_dict = getattr(sys.modules.get(meta.__module__), "TypedDict", None)
    return (typed_dict,) if typed_dict is not None else bases


def _reduce_class(pickler: Pickler, obj: Any) -> Any:
    """cloudpickle's reduction, with a by-value class's ``__slots__`` made where it is rebuilt.

    cloudpickle rebuilds a class sent by value (one of ``__main__``) from an empty
    skeleton and sets ``__slots__`` on it afterwards, which makes no slots: in the
    worker its instances get a ``__dict__``, so one sent back (a result) carries its
    attributes as a ``__dict__`` state that the parent's class, which has slots and no
    ``__dict__``, cannot take ("'C' object has no attribute '__dict__'"). Passing
    ``__slots__`` to the skeleton's namespace makes the slots, as the class statement did.
    Empty ``__slots__`` too: they say "no ``__dict__``" (``class P(namedtuple(...)):
    __slots__ = ()``, a subclass of a slotted class), which a worker's instances must keep
    (an attribute set by mistake raises there as in the parent, and a result cannot
    carry one). A ``typing.NamedTuple`` class, rebuilt by its own metaclass, which makes
    its empty ``__slots__`` and refuses them in its namespace, is left to cloudpickle.

    The class's ``__qualname__`` goes into that namespace too, as the class statement put
    it there: cloudpickle sends only ``__name__`` (a type keeps its qualified name outside
    its ``__dict__``), so a nested or local class (``Outer.Inner``, ``make.<locals>.Row``)
    was plain ``Inner`` in the worker, and what it computed from it differed from the
    parent's: a dataclass's ``repr`` (``Inner(v=1)``, not ``Outer.Inner(v=1)``),
    ``type(x).__qualname__``, messages and log lines naming it.

    An enum's members are its ``__members__``, aliases included: cloudpickle lists those
    its iteration gives, which leaves out aliases (``CRIMSON = 1`` after ``RED = 1``) and a
    flag's named combinations (``RW = R | W``), so in the worker ``Color.CRIMSON`` was an
    ``AttributeError`` and ``Color["CRIMSON"]`` a ``KeyError``.
    """
    if type(obj).__module__ == "_ctypes":
        derived = _reduce_ctypes_derived(obj)
        if derived is not None:  # c_int * 3, POINTER(Point): made again from what they derive from
            return derived
    elif obj.__module__ == "_ctypes":
        maker = _ctypes_maker(obj)
        if maker is not None:  # the metaclass of ctypes structures: not found by its name
            return _ctypes_metaclass, (maker,)
    if by_value_home(obj) and dynamic_class_reduce is not None:
        rv = dynamic_class_reduce(obj)  # by value, as a class of __main__
    else:
        import_home(obj)
        rv = _cloudpickle_override(pickler, obj)
    if type(rv) is tuple and rv and rv[0] is _MAKE_SKELETON_CLASS and isinstance(obj, type):
        newargs = rv[1]
        type_kwargs = dict(newargs[3])
        if "__slots__" in obj.__dict__ and typing.NamedTuple not in obj.__dict__.get("__orig_bases__", ()):
            type_kwargs["__slots__"] = obj.__dict__["__slots__"]
        qualname = getattr(obj, "__qualname__", None)
        if type(qualname) is str and qualname != obj.__name__:
            type_kwargs["__qualname__"] = "".join(qualname)  # (not interned: cloudpickle's rule)
        layout = _ctypes_layout(obj)
        if layout:
            if _points_anywhere(layout["_fields_"]):
                # POINTER(Node) in Node's own fields (set after the class statement, as ctypes
                # documents for linked lists): the class must exist before its fields are made
                layout = {k: v for k, v in layout.items() if k != "_fields_"}
                rv = _with_fields_set_once(rv)
            type_kwargs.update(layout)
            rv = _without_ctypes_fields(rv, layout)
        bases = _typed_dict_bases(obj, newargs[2])
        if type_kwargs != newargs[3] or bases is not newargs[2]:
            rv = (rv[0], (*newargs[:2], bases, type_kwargs, *newargs[4:]), *rv[2:])
    elif type(rv) is tuple and rv and rv[0] is _MAKE_SKELETON_ENUM and _MAKE_SKELETON_ENUM is not None:
        newargs = rv[1]  # (bases, name, qualname, members, module, class_tracker_id, extra)
        every = getattr(obj, "__members__", None)
        if every is not None and len(every) != len(newargs[3]) and len(rv) > 2 and type(rv[2]) is tuple:
            members = {"".join(name): member.value for name, member in every.items()}
            clsdict, slotstate = rv[2]  # (it held the aliases, as attributes to set: not now)
            clsdict = {k: v for k, v in clsdict.items() if k not in every}
            rv = (rv[0], (*newargs[:3], members, *newargs[4:]), (clsdict, slotstate), *rv[3:])
    return classes.redirect(rv, obj)  # rebuilt without touching the class where it was defined


_CTYPES_LAYOUT = ("_pack_", "_align_", "_anonymous_", "_fields_")  # in the order ctypes needs them


def _ctypes_layout(cls: type) -> dict[str, Any]:
    """A ctypes ``Structure``/``Union`` subclass's own layout attributes, or {} for other classes.

    cloudpickle sends a class's attributes to be set after the class is made: a ctypes
    structure's fields are descriptors (``_ctypes.CField``) that cannot be pickled, so a
    ``class Point(ctypes.Structure)`` of ``__main__`` could not be sent at all. Its
    ``_fields_`` (and ``_pack_``...) go into the namespace the class is made with instead,
    as the class statement put them, and ctypes makes the fields again.
    """
    if "_fields_" not in cls.__dict__ or not _is_ctypes_struct_type(type(cls)):
        return {}
    return {name: cls.__dict__[name] for name in _CTYPES_LAYOUT if name in cls.__dict__}


def _is_ctypes_struct_type(meta: type) -> bool:
    """Whether *meta* is the metaclass of ctypes structures or unions, or derives from one
    (``BigEndianStructure``'s, ``ctypes._endian``: its classes' fields are ``CField`` too)."""
    if meta.__module__ == "_ctypes":
        return True
    ctypes = sys.modules.get("ctypes")
    return ctypes is not None and issubclass(meta, (type(ctypes.Structure), type(ctypes.Union)))


def _reduce_ctypes_derived(cls: Any) -> Any:
    """An array (``c_int * 3``) or pointer (``POINTER(Point)``) type of ctypes as what makes it,
    or None for other classes. They name the module that made them, where no name holds them
    (``c_int_Array_3``): sent by value, their metaclass could not be found in the worker."""
    kind = type(cls).__name__
    if kind == "PyCArrayType" and hasattr(cls, "_length_") and hasattr(cls, "_type_"):
        return operator.mul, (cls._type_, cls._length_)
    if kind == "PyCPointerType" and getattr(cls, "_type_", None) is not None:
        return _ctypes_pointer, (cls._type_,)
    if kind == "PyCSimpleType":  # c_uint32.__ctype_be__ (a BigEndianStructure's fields): named
        named = getattr(sys.modules.get(cls.__module__), cls.__qualname__, None)  # as the native type
        for other in ("__ctype_be__", "__ctype_le__"):
            if named is not None and named is not cls and getattr(named, other, None) is cls:
                return getattr, (named, other)
    return None


def _ctypes_pointer(target: type) -> type:
    return importlib.import_module("ctypes").POINTER(target)  # type: ignore[no-any-return]


def _ctypes_maker(meta: type) -> str | None:
    """The ctypes base (``"Structure"``, ``"Union"``) whose metaclass *meta* is, or None."""
    ctypes = sys.modules.get("ctypes")
    for name in ("Structure", "Union"):
        if type(getattr(ctypes, name, None)) is meta:
            return name
    return None


def _ctypes_metaclass(base: str) -> type:
    """The metaclass of ``ctypes.<base>`` (``_ctypes`` does not name it: not found by name)."""
    return type(getattr(importlib.import_module("ctypes"), base))


def _points_anywhere(fields: Any) -> bool:
    """Whether a field of *fields* (a ctypes ``_fields_``) is a pointer, or an array of them."""
    try:
        for field in fields:
            kind = field[1]
            while type(kind).__name__ == "PyCArrayType":
                kind = kind._type_
            if type(kind).__name__ == "PyCPointerType":
                return True
    except (TypeError, IndexError, AttributeError):
        return False
    return False


def _with_fields_set_once(rv: Any) -> Any:
    """*rv* (a by-value class's reduction, its ``_fields_`` in its state) setting them once."""
    if len(rv) < 6 or not callable(rv[5]):
        return rv
    return (*rv[:5], functools.partial(_set_ctypes_state, rv[5]), *rv[6:])


def _set_ctypes_state(setstate: Any, cls: Any, state: Any) -> Any:
    """cloudpickle's *setstate* for the class *cls*, its ``_fields_`` set after the rest, and
    only if it has none yet (a class this process has already: ctypes refuses a second)."""
    clsdict, slotstate = state
    fields = clsdict.pop("_fields_", None)
    done = setstate(cls, (clsdict, slotstate))
    if fields is not None and "_fields_" not in cls.__dict__:
        cls._fields_ = fields
    return done


def _without_ctypes_fields(rv: Any, layout: dict[str, Any]) -> Any:
    """*rv* (a by-value class's reduction) without its fields' descriptors and *layout*,
    which the class is made with (``_fields_`` cannot be set twice)."""
    if len(rv) < 3 or type(rv[2]) is not tuple:
        return rv
    clsdict, slotstate = rv[2]
    clsdict = {
        k: v
        for k, v in clsdict.items()
        if k not in layout and not (type(v).__name__ == "CField" and type(v).__module__ == "_ctypes")
    }
    return (rv[0], rv[1], (clsdict, slotstate), *rv[3:])


class _Release:
    """Marker written after a guarded object's state: releases its lock."""

    __slots__ = ()


class _CallersHoldType:
    """Stands for an RLock held by the thread a snapshot is made for (not taken, not released)."""

    __slots__ = ()

    def release(self) -> None:
        pass


_CALLERS_HOLD = _CallersHoldType()


def _nothing() -> None:
    return None


def _release(pickler: Pickler, marker: _Release) -> tuple[Any, ...]:
    pickler._held.pop().release()
    locks.note_hold(-1)
    return (_nothing, ())


_cloudpickle_code_reduce = cloudpickle.Pickler.dispatch_table[types.CodeType]


def _reduce_code(obj: types.CodeType) -> Any:
    """cloudpickle's reduction of a function's code (sent by value), keeping its file name.

    cloudpickle writes ``<dynamic-code>`` instead (for bytes that do not depend on
    where the function was defined), so a task's traceback named no file and showed
    no source line (``File "<dynamic-code>", line 5, in f``), nor did its warnings and
    log records: with the real name they read as they would in the parent.
    """
    rebuild, args = _cloudpickle_code_reduce(obj)
    # (compared as str only: the arguments hold bytes, which python -bb makes == raise)
    for at, arg in enumerate(args):
        if type(arg) is str and arg == "<dynamic-code>":
            return rebuild, (*args[:at], obj.co_filename, *args[at + 1 :])
    return rebuild, args


_CODE = {types.CodeType: _reduce_code}

_BY_TABLE = object()  # a reducer in dispatch_table (cloudpickle's or copyreg's)
_PLAIN = object()  # no reducer in the table: __reduce_ex__
_MAY_OWN_LOCK = object()  # the same, but instances have a __dict__, which may hold an RLock


def _dict_rlock(obj: Any) -> tuple[str, Any] | None:
    """``(attribute, lock)`` of the first RLock in *obj*'s ``__dict__``, or None (the usual case)."""
    state = getattr(obj, "__dict__", None)
    if type(state) is dict and not _RLOCK_TYPES.isdisjoint(map(type, state.values())):
        return next((k, v) for k, v in state.items() if type(v) in _RLOCK_TYPES)
    return None


def _set_state(obj: Any, packed: tuple[Any, Any, Any]) -> None:
    """Apply a guarded object's state the way pickle's BUILD would."""
    state, setter, _released = packed
    if setter is not None:
        setter(obj, state)
        return
    # looked up on the class, as the object has no state yet: an instance's __getattr__
    # reading self.target called itself for ever (RecursionError) where pickle's BUILD asks
    setstate = getattr(type(obj), "__setstate__", None)
    if setstate is not None:
        setstate(obj, state)
        return
    slotstate = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slotstate = state
    if state:
        obj.__dict__.update(state)
    if slotstate:
        for key, value in slotstate.items():
            setattr(obj, key, value)


class Pickler(cloudpickle.Pickler):
    """cloudpickle's pickler plus snapshots of locks, queues and lock owners."""

    dispatch_table = ChainMap(_REDUCERS, _CODE, *cloudpickle.Pickler.dispatch_table.maps)

    def __init__(self, file: Any, protocol: int | None = None, buffer_callback: Any = None) -> None:
        super().__init__(file, protocol=protocol, buffer_callback=buffer_callback)
        self._held: list[Any] = []  # RLocks taken for snapshots still being written
        self._kinds: dict[type, Any] = {}  # per type: _BY_TABLE, _PLAIN, _MAY_OWN_LOCK or a reducer

    def dump(self, obj: Any) -> None:
        try:
            super().dump(obj)
        finally:
            while self._held:
                self._held.pop().release()
                locks.note_hold(-1)

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        kind = self._kinds.get(t)
        if kind is None:
            kind = self._kinds[t] = self._kind_of(t)
        if kind is _BY_TABLE:
            return NotImplemented
        if kind is _PLAIN:
            # What the C pickler would do next, minus its dispatch_table lookup (a
            # ChainMap: a Python-level miss per object), which _kind_of did once.
            rv = obj.__reduce_ex__(self.proto)
            # a global's name (pickle's singleton idiom): of __main__, by value (named.py)
            return rv if type(rv) is not str else named.reduce_named(obj, rv)
        if kind is _MAY_OWN_LOCK:
            held = _dict_rlock(obj)
            if held is not None:
                return self._reduce_guarded(obj, *held)
            return obj.__reduce_ex__(self.proto)
        return kind(self, obj)

    def _kind_of(self, t: type) -> Any:
        """How to reduce instances of *t*: decided once per type and dump."""
        if t is _Release:
            return _release
        if t is object:  # a sentinel, MISSING = object(): the same object there and back
            return lambda _self, obj: sentinels.reduce_object(obj)
        if issubclass(t, type):
            return _reduce_class
        if issubclass(t, types.FunctionType):
            return _reduce_function
        if t is ByValueFunction:
            return lambda _self, obj: obj.reduce_in_stream()
        if t is _LRU_CACHE_WRAPPER:
            return _reduce_lru_cache
        if issubclass(t, types.ModuleType):
            return _reduce_module
        if t not in self.dispatch_table and issubclass(t, _DESCRIPTORS):
            return _reduce_descriptor  # a subclass of classmethod, staticmethod or property
        if t in _TYPING_NAMED:
            return _reduce_typing_named
        reducer = _hybrid_reducer(t)
        if reducer is not None:
            # The user's own pickling wins over hybrid's defaults: a copyreg reducer
            # registered for the type, or pickling methods defined on the user's class.
            registered = copyreg.dispatch_table.get(t)
            if registered is not None:
                return lambda _self, obj: registered(obj)
            if runtime.own_protocol(t):
                return _PLAIN
            return lambda _self, obj: reducer(obj)
        if t in self.dispatch_table:
            return _BY_TABLE
        if runtime.own_protocol(t):
            return _PLAIN  # an object with its own __getstate__ (or __reduce__) is not locked
        if issubclass(t, BaseException) and exceptions.init_of_its_own(t):
            return exceptions.reduce_exception  # cls(*args) would call that __init__ wrongly
        base = constructors.stdlib_base(t)
        if base is not None:
            by_base = constructors.reducer(base)  # cls(base's arguments): the base's constructor
            return _dict_guarded(by_base) if getattr(t, "__dictoffset__", 0) else by_base
        slots = () if getattr(t, "__dictoffset__", 0) else tuple(copyreg._slotnames(t))  # type: ignore[attr-defined]
        if runtime.defined_below_stdlib(t, ("__getattr__",)):
            return _past_getattr(slots)
        if getattr(t, "__dictoffset__", 0):
            return _MAY_OWN_LOCK
        return _slots_reducer(slots) if slots else _PLAIN

    def _reduce_guarded(self, obj: Any, name: str, lock: Any, reduce: Any = None) -> Any:
        """Reduce *obj* holding its RLock (its attribute *name*) until its state has been written.

        *reduce(pickler, obj)*: hybrid's reducer of its type, else ``__reduce_ex__``.
        """
        # An enclosing snapshot's lock held: this one is waited for SNAPSHOT_TIMEOUT only
        # (a thread holding it and waiting for the enclosing one would wait for ever).
        wait = locks.snapshot_timeout() if locks.holds_for_snapshot() else -1  # (self._held counts)
        what = f"a {type(obj).__qualname__} (its lock .{name})"
        taken = locks.acquire_unless_caller(lock, wait, what)
        if taken is None:
            # Held by the thread that submitted this call (an Executor's manager thread
            # pickles it), which may be waiting for its result: snapshot under that
            # thread's hold, as Parallel does in the calling thread (locks.snapshots_for).
            # That hold counts as an enclosing one for the locks met in its state.
            lock = _CALLERS_HOLD
        elif not taken:
            raise locks.lock_order_error(
                what, wait, "Send the inner object separately, or send it while no thread holds its lock."
            )
        try:
            rv = obj.__reduce_ex__(self.proto) if reduce is None else reduce(self, obj)
        except BaseException:
            lock.release()
            raise
        if type(rv) is not tuple or len(rv) < 3 or rv[2] is None:
            lock.release()  # no state to write under the lock
            return rv
        self._held.append(lock)
        locks.note_hold(1)
        listitems = rv[3] if len(rv) > 3 else None
        dictitems = rv[4] if len(rv) > 4 else None
        setter = rv[5] if len(rv) > 5 else None
        return (rv[0], rv[1], (rv[2], setter, _Release()), listitems, dictitems, _set_state)


def _past_getattr(slots: tuple[str, ...]) -> Any:
    """The reducer of a class with a ``__getattr__`` of its own: its state is set by
    :func:`_set_state`, which asks the class for ``__setstate__``, not the instance.

    pickle's BUILD asks the instance, before it has any attribute: a delegating
    ``__getattr__`` (``return getattr(self._target, name)``) then called itself until
    ``RecursionError``, in the worker for an argument and in the parent for a result.
    """
    inner = _slots_reducer(slots) if slots else None

    def reduce(pickler: Pickler, obj: Any) -> Any:
        if inner is not None:
            rv = inner(pickler, obj)
        else:
            held = _dict_rlock(obj)
            if held is not None:
                return pickler._reduce_guarded(obj, *held)  # (its state set by _set_state)
            rv = obj.__reduce_ex__(pickler.proto)
        if type(rv) is not tuple or len(rv) < 3 or rv[2] is None or (len(rv) > 5 and rv[5] is not None):
            return rv  # no state, or a setter of its own (a guarded snapshot's: _set_state)
        listitems = rv[3] if len(rv) > 3 else None
        dictitems = rv[4] if len(rv) > 4 else None
        return (rv[0], rv[1], (rv[2], None, None), listitems, dictitems, _set_state)

    return reduce


def _dict_guarded(reduce: Any) -> Any:
    """*reduce*, for instances that may hold an RLock in their ``__dict__``: one that does is
    snapshotted while holding it, as any other class's instance is.

    A subclass of ``OrderedDict``, ``defaultdict``, ``deque``, ``Counter``, ``set``... with a
    constructor of its own (``constructors``) was reduced without its lock: a snapshot taken
    while another thread was inside ``with self._lock:`` sent its change half done.
    """

    def guarded(pickler: Pickler, obj: Any) -> Any:
        held = _dict_rlock(obj)
        if held is not None:
            return pickler._reduce_guarded(obj, *held, reduce)
        return reduce(pickler, obj)

    return guarded


def _slots_reducer(slots: tuple[str, ...]) -> Any:
    """The reducer of a class whose instances keep their attributes in *slots* (no ``__dict__``).

    Such an instance holding an RLock in a slot is snapshotted while holding it, as one
    holding it in its ``__dict__`` is.
    """

    def reduce(pickler: Pickler, obj: Any) -> Any:
        for name in slots:
            value = getattr(obj, name, None)
            if type(value) in _RLOCK_TYPES:
                return pickler._reduce_guarded(obj, name, value)
        return obj.__reduce_ex__(pickler.proto)

    return reduce


class HybridPickler(BasePickler):
    """Default pickler: stdlib speed on plain data, by value where needed, locks as snapshots."""

    name = "hybrid"
    pickler_class = Pickler


SAME_AS_STDLIB.add(HybridPickler)
