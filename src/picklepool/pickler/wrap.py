"""``wrap_non_picklable_objects``: send one function or class by value, under any pickler.

joblib-compatible: works on a function or a class, called or as a decorator::

    @wrap_non_picklable_objects
    def work(x): ...                       # defined in __main__, a notebook, a closure

    Parallel(pickler="pickle")(delayed(work)(x) for x in xs)   # works

Functions (and other callables) are wrapped in a :class:`ByValueFunction`: it
calls the function, carries its metadata (``__name__``, ``__doc__``,
``__wrapped__``, ... as ``functools.wraps`` does), binds as a method, and pickles
the function *by value* with cloudpickle whatever the pickler (a copy of the
function is pickled, so even an importable function travels by value; the
worker never imports it).

Classes are wrapped in a thin subclass whose metaclass is registered with
``copyreg`` (pickling support for picklepool's own metaclass), so that the class
itself, and therefore its instances, pickle with cloudpickle under any pickler:
by value, except a class decorated in an importable module, which goes by
reference (the worker's import applies the decorator again). Unlike joblib's
wrapper, ``isinstance`` and ``issubclass`` keep working both ways: instances of
the wrapper are instances of the original class, and the wrapper answers for the
original's instances and subclasses (``type(obj)`` is the wrapper, though).
Classes whose metaclass is ``type`` or ``abc.ABCMeta`` are supported; for others
pass them unwrapped under ``pickler="hybrid"`` (the default), which sends
classes by value anyway. Functions reached through a wrapped class
(``Point.norm``) are not wrapped themselves.

With ``keep_wrapper=False`` the worker receives the plain function, as in joblib.
The ``hybrid`` pickler needs none of this for ``__main__`` functions, lambdas or
closures; the wrapper is for ``pickler="pickle"`` and for code shared with joblib.
"""

from __future__ import annotations

import abc
import copyreg
import functools
import io
import pickle
import sys
import threading
import types
from typing import Any, TypeVar

import cloudpickle

from .base import PROTOCOL
from .mainalias import by_value_home, reduce_by_value

T = TypeVar("T")


# -- functions ---------------------------------------------------------------------------


def _by_value_copy(obj: Any) -> Any:
    """A copy of a Python function that cloudpickle cannot find by name: sent by value."""
    if not isinstance(obj, types.FunctionType):
        return obj
    copy = types.FunctionType(obj.__code__, obj.__globals__, obj.__name__, obj.__defaults__, obj.__closure__)
    copy.__kwdefaults__ = obj.__kwdefaults__
    copy.__qualname__ = obj.__qualname__
    copy.__module__ = obj.__module__
    copy.__doc__ = obj.__doc__
    copy.__annotations__ = obj.__annotations__
    copy.__dict__.update(obj.__dict__)
    return copy


def _new_wrapper() -> ByValueFunction:
    return ByValueFunction.__new__(ByValueFunction)


def _unwrap(func: Any) -> Any:
    return func


def _loads(data: bytes) -> Any:
    return pickle.loads(data)


class _InnerPickler(cloudpickle.Pickler):
    """Writes a wrapper and what it references in one cloudpickle stream.

    Functions and classes of ``__main__`` under another name (``mainalias``: a spawned
    process's script) by value, as those of ``__main__``: by name, a wrapped class came
    back to the copyreg reducer that called this, for ever, and its methods were not found.
    """

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is ByValueFunction:
            return obj.reduce_in_stream()
        if isinstance(obj, (type, types.FunctionType)) and by_value_home(obj):
            return reduce_by_value(self, obj)
        return super().reducer_override(obj)


def _dumps_by_value(obj: Any) -> bytes:
    f = io.BytesIO()
    _InnerPickler(f, protocol=PROTOCOL).dump(obj)
    return f.getvalue()


class ByValueFunction:
    """A callable that pickles the function it wraps by value, under any pickler."""

    def __init__(self, func: Any, keep_wrapper: bool = True) -> None:
        if not callable(func):
            raise TypeError(f"wrap_non_picklable_objects expects a function or a class, got {func!r:.200}")
        functools.update_wrapper(self, func)
        self._keep_wrapper = keep_wrapper

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return self if instance is None else types.MethodType(self, instance)

    def __getattr__(self, name: str) -> Any:
        wrapped = self.__dict__.get("__wrapped__")
        if wrapped is None:  # while being rebuilt
            raise AttributeError(name)
        return getattr(wrapped, name)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"wrap_non_picklable_objects({self.__dict__.get('__wrapped__')!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Under a pickler that is not cloudpickle-based (stdlib pickle), nest a
        # cloudpickle stream; cloudpickle-based picklers call reduce_in_stream().
        return (_loads, (_dumps_by_value(self),))

    def reduce_in_stream(self) -> tuple[Any, ...]:
        """The reduction for a cloudpickle-based pickler: no nested stream.

        The wrapper is memoised before its state, so a recursive function (whose
        globals hold this very wrapper) pickles without infinite recursion.
        """
        target = _by_value_copy(self.__dict__["__wrapped__"])
        if not self._keep_wrapper:
            return (_unwrap, (target,))
        state = dict(self.__dict__)
        state["__wrapped__"] = target
        return (_new_wrapper, (), state)


# -- classes -----------------------------------------------------------------------------


_checking = threading.local()  # (wrapper, subclass) checks in progress, per thread


class _ByValueMeta(type):
    """Metaclass of wrapped classes: pickled with cloudpickle; isinstance both ways."""

    def __instancecheck__(cls, obj: Any) -> bool:
        target = cls.__dict__.get("__wrapped__")
        if target is None:  # a subclass of a wrapped class: ordinary rules
            return super().__instancecheck__(obj)
        return isinstance(obj, target)

    def __subclasscheck__(cls, sub: type) -> bool:
        target = cls.__dict__.get("__wrapped__")
        active = getattr(_checking, "active", None)
        if active is None:
            active = _checking.active = set()
        key = (id(cls), id(sub))
        if target is None or key in active:
            # A subclass of a wrapped class, or the original (an ABC) asking its
            # subclasses, this wrapper among them, while answering for it: plain rules.
            return super().__subclasscheck__(sub)
        active.add(key)
        try:
            return issubclass(sub, target)
        finally:
            active.discard(key)


class _ByValueABCMeta(_ByValueMeta, abc.ABCMeta):
    """The same for abstract base classes."""


def _loads_class(data: bytes) -> type:
    cls: type = pickle.loads(data)
    return cls


def _importable(cls: type) -> bool:
    """True when *cls* is found under its own module and name (never for __main__, nor for
    ``__mp_main__``, the script as a spawned process runs it: ``mainalias``)."""
    module = sys.modules.get(cls.__module__)
    if module is None or cls.__module__ == "__main__" or by_value_home(cls):
        return False
    obj: Any = module
    for part in cls.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is cls


def _reduce_class(cls: type) -> Any:
    if "__wrapped__" not in cls.__dict__ or _importable(cls):
        # A user subclass of a wrapped class, or a class decorated in an importable
        # module (the worker's import applies the decorator again): by reference.
        return cls.__qualname__
    return (_loads_class, (_dumps_by_value(cls),))


# Pickling support for picklepool's own metaclasses, the way copyreg is meant to be used.
copyreg.pickle(_ByValueMeta, _reduce_class)
copyreg.pickle(_ByValueABCMeta, _reduce_class)

_METACLASSES: dict[type, type] = {
    type: _ByValueMeta,
    abc.ABCMeta: _ByValueABCMeta,
    _ByValueMeta: _ByValueMeta,
    _ByValueABCMeta: _ByValueABCMeta,
}


def _wrap_class(cls: type) -> type:
    if isinstance(cls, _ByValueMeta) and "__wrapped__" in cls.__dict__:
        return cls  # already wrapped
    meta = _METACLASSES.get(type(cls))
    if meta is None:
        raise TypeError(
            f"wrap_non_picklable_objects cannot wrap class {cls.__qualname__}: its metaclass "
            f"{type(cls).__qualname__} is not type or abc.ABCMeta. Pass it unwrapped with "
            "pickler='hybrid' (the default) or 'cloudpickle', which send classes by value."
        )
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__wrapped__": cls,
        "__slots__": (),
    }
    wrapped: type = meta(cls.__name__, (cls,), namespace)
    return wrapped


def wrap_non_picklable_objects(obj: T, keep_wrapper: bool = True) -> T:
    """Make *obj* (a function or a class) picklable by value under any pickler.

    Use it as a decorator or call it. See the module docstring for how functions
    and classes are wrapped. ``keep_wrapper=False`` makes a wrapped function
    arrive in the worker as the plain function (ignored for classes).
    """
    if isinstance(obj, type):
        return _wrap_class(obj)  # type: ignore[return-value]
    if isinstance(obj, ByValueFunction):
        return obj
    return ByValueFunction(obj, keep_wrapper)  # type: ignore[return-value]
