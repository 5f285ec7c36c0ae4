"""Subclasses of standard-library types whose pickling calls the class, as hybrid sends them.

``OrderedDict``, ``defaultdict``, ``deque``, ``Counter``, ``set``, ``date`` and their kin
pickle as ``cls(arguments for the base)``. A subclass with a constructor of its own
(``class Index(defaultdict): def __init__(self, name): super().__init__(list); self.name
= name``) then got the base's arguments: an ``OrderedDict`` or ``deque`` subclass failed
(``missing 1 required positional argument``), and worse, a ``defaultdict`` or
``Counter`` subclass came back with ``name`` set to ``list`` or to the counts (their
pickling drops the instance's ``__dict__``), a ``date`` subclass with ``name`` set to
bytes, silently. hybrid makes such an instance with the *base's* ``__new__`` and
``__init__`` and those arguments, then sets its ``__dict__``, which is the object the
parent had. A class that says how it pickles keeps its way.

Subclasses of ``int``, ``float``, ``complex``, ``str``, ``bytes`` and ``tuple`` pickle as
``cls.__new__(cls, value)`` (``copyreg.__newobj__``): one whose ``__new__`` takes other
arguments (``def __new__(cls, v, *, unit)``) failed in the worker. hybrid makes it with
the base's ``__new__`` and the base's value, likewise.
"""

from __future__ import annotations

import copyreg
from typing import Any

from .runtime import below_stdlib, defined_below_stdlib


def own_constructor(cls: type) -> type | None:
    """The first standard-library class of *cls*'s MRO, when a class below it defines
    ``__init__`` or ``__new__`` and none declares ``__slots__`` (state outside the
    ``__dict__``, which its own constructor must set); else None.

    Slots are no obstacle on a base made by ``copyreg.__newobj__`` (``float``, ``complex``:
    ``class Quantity(float): __slots__ = ("unit",)``): its state, set after the base's
    ``__new__``, carries them (``object.__getstate__``). Left to its own pickling, such a
    class's ``__new__`` was called with the value alone, and failed."""
    own, base = below_stdlib(cls)
    if base is None or (base not in _BY_NEWOBJ and any(map(slotted, own))):
        return None
    return base if defined_below_stdlib(cls, ("__init__", "__new__")) else None


def stdlib_base(cls: type) -> type | None:
    """The standard-library class under *cls* whose pickling calls the class, when *cls*
    has a constructor of its own (:func:`own_constructor`); else None."""
    base = own_constructor(cls)
    if base is None:
        return None
    if base in _BY_NEWOBJ:
        return base
    for klass in base.__mro__:
        if klass is object:
            return None
        if "__reduce__" in vars(klass) or "__reduce_ex__" in vars(klass):
            return base
    return None


# Built-in types whose subclasses pickle as cls.__new__(cls, *base.__getnewargs__(obj))
_BY_NEWOBJ = frozenset({int, float, complex, str, bytes, tuple})
_NEWOBJ = getattr(copyreg, "__newobj__")  # noqa: B009 - (not in typeshed)


def slotted(klass: type) -> bool:
    """Whether *klass* declares ``__slots__`` other than ``__dict__`` and ``__weakref__``."""
    slots = vars(klass).get("__slots__", ())
    names = {slots} if isinstance(slots, str) else set(slots)
    return bool(names - {"__dict__", "__weakref__"})


def construct(cls: type, base: Any, args: tuple[Any, ...]) -> Any:
    """An instance of *cls* made by *base*'s ``__new__`` and ``__init__`` from *args*."""
    obj = base.__new__(cls, *args)
    if base.__init__ is not object.__init__:
        base.__init__(obj, *args)
    return obj


def set_state_and_dict(obj: Any, state: tuple[Any, dict[str, Any]]) -> None:
    """The base's ``__setstate__`` with its own state, then the instance's ``__dict__``."""
    own, attrs = state
    obj.__setstate__(own)
    obj.__dict__.update(attrs)


def reducer(base: type) -> Any:
    """The reducer of instances of a subclass of *base* (:func:`stdlib_base`)."""

    def reduce(pickler: Any, obj: Any) -> Any:
        rv = obj.__reduce_ex__(pickler.proto)
        if base in _BY_NEWOBJ:
            if type(rv) is not tuple or len(rv) < 2 or rv[0] is not _NEWOBJ:
                return rv
            return (construct, (type(obj), base, base.__getnewargs__(obj)), *rv[2:])  # type: ignore[attr-defined]
        if type(rv) is not tuple or len(rv) < 2 or rv[0] is not type(obj):
            return rv  # (copyreg.__newobj__ and the like call no __init__)
        state = rv[2] if len(rv) > 2 else None
        attrs = getattr(obj, "__dict__", None)
        if state is None:  # defaultdict's, Counter's, date's pickling drop the __dict__
            state = dict(attrs) if attrs else None
        elif attrs and type(state) is not dict and len(rv) < 6 and hasattr(obj, "__setstate__"):
            # a state of the base's own (random.Random's generator state) without the
            # __dict__: set both, or the subclass's attributes were silently lost
            rest = (*rv[3:], None, None)[:2]
            return (construct, (rv[0], base, rv[1]), (state, dict(attrs)), *rest, set_state_and_dict)
        return (construct, (rv[0], base, rv[1]), state, *rv[3:])

    return reduce
