"""Exceptions whose ``__init__`` takes other arguments than their ``args``, as hybrid sends them.

The standard library pickles an exception as ``(its class, its args, its __dict__)``
and rebuilds it by calling ``cls(*args)``. An exception class with an ``__init__`` of
its own (``def __init__(self, row, column): super().__init__(f"bad cell {row},{column}")``)
gets its message as its one argument there: ``TypeError: missing 1 required positional
argument``. A task's own *raised* exception was already sent as its parts
(``workers.replies``); one returned or held in a result (``except ValueError as e:
return i, e``, the usual way to collect failures) failed the whole reply, and one sent
as an argument the task. hybrid sends instances of such classes as their parts
(``wire.rebuild_exception``): class, ``args``, ``__dict__`` and notes, rebuilt without
calling ``__init__``, which is the object the parent had. A class that says how it
pickles (``__reduce__``, ``__getstate__``, ..., or a ``copyreg`` reducer) keeps its way.
"""

from __future__ import annotations

from typing import Any

from ..wire import native_parts, rebuild_exception
from .constructors import slotted
from .runtime import below_stdlib, defined_below_stdlib


def init_of_its_own(cls: type) -> bool:
    """Whether a class of *cls*'s MRO below the standard library defines ``__init__`` or ``__new__``,
    or declares ``__slots__`` (``BaseException``'s pickling sends only ``args`` and ``__dict__``:
    its parts carry the slots' values); or a standard-library class above the built-in one
    does, saying nothing of how it pickles (:func:`_stdlib_init`)."""
    own, base = below_stdlib(cls)
    if base is None:
        return False
    return any(map(slotted, own)) or defined_below_stdlib(cls, ("__init__", "__new__")) or _stdlib_init(cls)


_PICKLING = (
    "__reduce__",
    "__reduce_ex__",
    "__getstate__",
    "__setstate__",
    "__getnewargs__",
    "__getnewargs_ex__",
)


def _stdlib_init(cls: type) -> bool:
    """Whether a class of *cls*'s MRO above its built-in exception class defines ``__init__`` or
    ``__new__`` and none says how it pickles: ``urllib.error.HTTPError(url, code, msg, hdrs, fp)``
    keeps empty ``args``, so ``cls(*args)`` failed in the parent (a task returning the
    ``HTTPError`` it caught lost its whole reply, as under joblib); its parts rebuild it."""
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            return False
        names = vars(klass)
        if any(name in names for name in _PICKLING):
            return False
        if "__init__" in names or "__new__" in names:
            return True
    return False


def reduce_exception(_pickler: Any, exc: BaseException) -> tuple[Any, ...]:
    """*exc* as its parts: rebuilt by ``wire.rebuild_exception``, without ``__init__``."""
    attrs = vars(exc)
    state = {k: v for k, v in attrs.items() if k != "__notes__"}
    native = native_parts(exc)  # an OSError's filename, an ImportError's name...
    if native is None:
        return rebuild_exception, (type(exc), exc.args, state, attrs.get("__notes__"))
    return rebuild_exception, (type(exc), exc.args, state, attrs.get("__notes__"), None, native)
