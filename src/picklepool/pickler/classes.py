"""Classes sent by value, rebuilt without touching the class their process defined.

cloudpickle sends a class of ``__main__`` (or a closure's) by value with an id, and a
process that meets that id again reuses the class it has, then sets every attribute
of the pickled copy on it (``_class_setstate``). In a worker that keeps its copy up
to date. But a result coming back to the parent holds the worker's copy of the class,
and the parent's *own* class, defined by its ``class`` statement, got the worker's
rebuilt methods: their globals are a copy of the parent's as they were when the class
was sent, so after the call the parent's own ``C().method()`` no longer saw a global
of ``__main__`` rebound since (``CONFIG = 2`` read as 1), and every method stopped being
the one the script defined. joblib does the same (cloudpickle's behaviour).

hybrid sends such classes with :func:`make_skeleton_class` / :func:`make_skeleton_enum`
and :func:`class_setstate`, which set the attributes only on a class that a pickle
made in this process: the process that defined it keeps it as it is.

A class this process already has (the parent's own, a worker's copy from an earlier
call) is returned as it is, without making the skeleton cloudpickle made and dropped:
that ran the bases' ``__init_subclass__`` again. A new copy's ``__main__`` bases'
hooks are passed over as it is made (:func:`_hooks_skipped`).

A class a pickle made here is made the pickled copy, not merged with it: cloudpickle
only sets attributes, so one the parent deleted since (``del C.extra``), or one a task
added (``C.seen = True``), stayed on a warm worker's copy for every later call.
:func:`class_setstate` also removes the attributes that are neither in the copy nor
made by the class's creation (its skeleton's own: slots, enum members, ``_abc_impl``).

A copy made here of a class that the sending process's module holds by name (a ``class``
statement at the top of a script) is held here under that name (:func:`held_name`), as that
module holds the class, until a copy of another class of that name arrives; an ABC's copy
holds with it the copies of the classes registered in it where it was pickled (one made in
a function, which no name holds). Nothing held an argument's copy after its batch, and what
the parent's class is to the objects that hold it weakly went with it: an ABC kept with the
call's function (``Shape``) held the copy of its registered class (``Shape.register(Square)``)
by a weak reference only, the next batch's copy of ``Square`` was a new class that no
registration named, and ``isinstance(Square(), Shape)`` turned False after the first batch;
so did ``type(x) in KNOWN`` for a ``weakref.WeakSet`` of classes, and ``Base.__subclasses__()``
lost its subclass between batches. Memory stays bounded: a name holds one copy, an ABC the
classes the sender's ABC has, and a class that no name holds (a loop's ``type(f"C{i}", ...)``)
is not held.

Pickler ``"cloudpickle"`` sends classes with cloudpickle's own functions, which hold
nothing: a worker loads its functions with :func:`loads_keeping`, and holds the classes they
bring with its copy of the function (``workers.runner``).
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import pickle
import sys
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import cloudpickle

from ..forklocks import renew_in_child

_cp: Any = cloudpickle.cloudpickle
_MAKE_CLASS = getattr(_cp, "_make_skeleton_class", None)
_MAKE_ENUM = getattr(_cp, "_make_skeleton_enum", None)
_SETSTATE = getattr(_cp, "_class_setstate", None)

# classes a pickle made in this process -> the names their creation put in their __dict__
_rebuilt: weakref.WeakKeyDictionary[type, frozenset[str]] = weakref.WeakKeyDictionary()
# made by Python as a class is used, never pickled (cloudpickle leaves them out)
_NOT_SENT = frozenset({"__dict__", "__weakref__", "__annotate_func__", "__annotations_cache__"})
_lock = threading.Lock()
renew_in_child(globals(), "_lock", threading.Lock)  # (held at a fork: held for ever in the child)
# copies made here of classes their sending process's module holds by name: (module, qualname)
# -> the copy and, for an ABC, the copies registered in it; held as that module holds the
# class (see the module's docstring)
_held: dict[tuple[str, str], tuple[type, tuple[Any, ...]]] = {}


def _tracked(class_tracker_id: Any) -> Any:
    if class_tracker_id is None:
        return None
    tracker = getattr(_cp, "_DYNAMIC_CLASS_TRACKER_BY_ID", None)
    return None if tracker is None else tracker.get(class_tracker_id)


def _made(make: Any, class_tracker_id: Any, bases: tuple[type, ...], args: tuple[Any, ...]) -> Any:
    with _lock:  # (the look-up and the tracking, together)
        before = _tracked(class_tracker_id)
        if before is not None:
            # a class this process has (a result's class in the parent, a worker's copy
            # of an earlier call): no skeleton. Making one, only to drop it, ran the bases'
            # __init_subclass__ again: a registry of the parent's (REG[cls.__name__] = cls)
            # then named an empty class, and a required class keyword failed.
            return before
        with _hooks_skipped(bases):
            cls = make(*args)
        _rebuilt[cls] = frozenset(cls.__dict__)  # a new class: this process has no other
    return cls


@contextlib.contextmanager
def _hooks_skipped(bases: tuple[type, ...]) -> Iterator[None]:
    """The ``__init_subclass__`` of *bases* that are copies made here passed over, inside.

    The class being made is a copy of one whose ``class`` statement ran where it was
    defined: what those hooks did there arrived with the pickle (the class's own
    attributes; a registry of ``__main__`` holding it), so running them again added it
    twice (``registry.append(cls)``), and one taking a class keyword (``class
    Sub(Base, tag="x")``) failed without it. The hooks of classes this process imported
    (a library's registry, not pickled) still run, without keywords.
    """
    skipped: list[tuple[Any, Any]] = []
    kind: Any
    try:
        for base in bases:
            for kind in getattr(base, "__mro__", ()):
                hook = kind.__dict__.get("__init_subclass__")
                if hook is not None and kind in _rebuilt and all(kind is not k for k, _ in skipped):
                    skipped.append((kind, hook))
                    kind.__init_subclass__ = _passing_over(kind)
        yield
    finally:
        for kind, hook in skipped:
            kind.__init_subclass__ = hook


def _passing_over(owner: Any) -> Any:
    def __init_subclass__(cls: Any, **_class_keywords: Any) -> None:
        super(owner, cls).__init_subclass__()

    return classmethod(__init_subclass__)


def make_skeleton_class(
    type_constructor: Any, name: Any, bases: Any, type_kwargs: Any, class_tracker_id: Any, extra: Any
) -> Any:
    """cloudpickle's ``_make_skeleton_class``, remembering whether the class is new here."""
    return _made(
        _MAKE_CLASS,
        class_tracker_id,
        bases,
        (type_constructor, name, bases, type_kwargs, class_tracker_id, extra),
    )


def make_skeleton_enum(
    bases: Any, name: Any, qualname: Any, members: Any, module: Any, class_tracker_id: Any, extra: Any
) -> Any:
    """cloudpickle's ``_make_skeleton_enum``, remembering whether the enum is new here."""
    return _made(
        _MAKE_ENUM, class_tracker_id, bases, (bases, name, qualname, members, module, class_tracker_id, extra)
    )


def class_setstate(obj: Any, state: Any) -> Any:
    """cloudpickle's ``_class_setstate`` on a class a pickle made here; the defining process's
    own class is left as it is.

    *state* may carry, third, the ``copyreg`` reducer the sending process has registered
    for the class (``copyreg.pickle(DB, reduce_db)`` in a script), or None: a copy made
    here gets it (or loses one it had), so its instances, a task's results, pickle as the
    sender's do, where the worker had no such registration and pickled them field by field
    (failing on what the reducer left out: "cannot pickle 'sqlite3.Connection' object").
    Fourth, the name its sending process's module holds it by (:func:`held_name`), or None:
    a copy made here is held under it, as that module holds the class.
    """
    reducer: Any = _NOT_GIVEN
    name = None
    if type(state) is tuple and len(state) == 4:
        state, reducer, name = state[:2], state[2], state[3]
    elif type(state) is tuple and len(state) == 3:
        state, reducer = state[:2], state[2]
    setstate = _SETSTATE
    made = _rebuilt.get(obj)
    if made is None or setstate is None:  # (None: redirect() never names this function)
        return obj
    _drop_stale(obj, state, made)
    out = setstate(obj, state)
    if reducer is None:
        copyreg.dispatch_table.pop(obj, None)
    elif reducer is not _NOT_GIVEN:
        copyreg.pickle(obj, reducer)
    if name is not None:
        # held, as the sender's module holds the class: else the copy an argument brought died
        # with its batch, and an ABC kept with the call's function lost its registration
        # (isinstance(Square(), Shape) False from the next batch on)
        _held[name] = (obj, _registered(state))
    return out


def _registered(state: Any) -> tuple[Any, ...]:
    """The copies of the classes registered in an ABC whose pickled *state* this is (its
    virtual subclasses, held with it: one made in a function, ``Shape.register(Local)``, is
    held by no name of its own), or ``()``."""
    attrs = state[0] if type(state) is tuple and state else None
    registry = attrs.get("_abc_impl") if type(attrs) is dict else None
    return tuple(registry) if type(registry) is list else ()


def held_name(cls: type) -> tuple[str, str] | None:
    """``(module, qualified name)`` when *cls*'s module holds it by that name (a ``class``
    statement at its top, or in a class there), else None (a class made in a function, or
    one its module's name no longer gives: the script defined another since).

    Each name is read in its namespace's ``__dict__``, not by ``getattr``: a module's
    ``__getattr__`` or a metaclass's property would run the user's code for a look-up.
    """
    module_name = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", None)
    if type(module_name) is not str or type(qualname) is not str:
        return None
    owner: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        namespace = getattr(owner, "__dict__", None)
        if not isinstance(namespace, Mapping):
            return None
        owner = namespace.get(part)
    return (module_name, qualname) if owner is cls else None


_NOT_GIVEN = object()


def _drop_stale(cls: type, state: Any, made: frozenset[str]) -> None:
    """Remove from *cls* the attributes its pickled copy *state* does not have, but those
    its creation made (*made*) and Python's own: what the parent deleted, what a task added."""
    try:
        attrs = state[0]
        stale = [k for k in cls.__dict__ if k not in attrs and k not in made and k not in _NOT_SENT]
    except Exception:  # noqa: BLE001 - a state of another shape: set it as cloudpickle does
        return
    for name in stale:
        if name.startswith("_abc_"):
            continue
        try:
            delattr(cls, name)
        except (AttributeError, TypeError):  # a metaclass that refuses it: left as it is
            pass


def enum_setstate(obj: Any, state: Any) -> Any:
    """:func:`class_setstate` for an enum whose members carry attributes of their own:
    *state* is cloudpickle's state and ``{member name: its attributes}``.

    cloudpickle makes an enum's members by the functional API, which runs no ``__init__``
    of the class: ``class Color(str, Enum): def __init__(self, code): self.label = ...``
    arrived with members without ``label`` (``AttributeError`` in the task). The parent's
    members' attributes are set on a copy made here; the defining process's enum is left
    as it is.
    """
    cloudpickle_state, members = state
    class_setstate(obj, cloudpickle_state)
    if obj in _rebuilt:
        by_name = obj.__dict__.get("_member_map_", {})
        for name, attrs in members.items():
            try:
                vars(by_name[name]).update(attrs)
            except (KeyError, TypeError):  # a member the copy has not, or one without a __dict__
                pass
    return obj


# what Enum itself keeps in a member's __dict__ (made again by the copy's creation)
ENUM_OWN = frozenset({"_value_", "_name_", "__objclass__", "_sort_order_", "__init__"})


def _member_attrs(enum_class: Any) -> dict[str, dict[str, Any]]:
    """``{name: attributes}`` of *enum_class*'s members that have attributes of their own."""
    out = {}
    for name, member in getattr(enum_class, "__members__", {}).items():
        attrs = {k: v for k, v in getattr(member, "__dict__", {}).items() if k not in ENUM_OWN}
        if attrs and member._name_ == name:  # (an alias names the same member)
            out[name] = attrs
    return out


def redirect(rv: Any, cls: Any = None) -> Any:
    """cloudpickle's reduction of a class by value *rv*, with these functions in its place
    (and, in its state, the ``copyreg`` reducer registered here for *cls*, or None, and the
    name this process's module holds *cls* by, or None)."""
    if type(rv) is not tuple or len(rv) < 6 or rv[5] is not _SETSTATE or _SETSTATE is None:
        return rv
    state = rv[2]
    if cls is not None and type(state) is tuple and len(state) == 2:
        state = (*state, copyreg.dispatch_table.get(cls), held_name(cls))
    if rv[0] is _MAKE_CLASS and _MAKE_CLASS is not None:
        return (make_skeleton_class, rv[1], state, rv[3], rv[4], class_setstate, *rv[6:])
    if rv[0] is _MAKE_ENUM and _MAKE_ENUM is not None:
        members = _member_attrs(cls)
        if members:
            return (make_skeleton_enum, rv[1], (state, members), rv[3], rv[4], enum_setstate, *rv[6:])
        return (make_skeleton_enum, rv[1], state, rv[3], rv[4], class_setstate, *rv[6:])
    return rv


class KeepingUnpickler(pickle.Unpickler):
    """pickle's unpickler that notes (:attr:`kept`) each class whose state cloudpickle's own
    ``_class_setstate`` sets, and the classes registered in it where it was pickled: those of
    a pickle of pickler ``"cloudpickle"``, which hybrid's functions never see."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.kept: list[Any] = []

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        if found is _SETSTATE and found is not None:
            kept = self.kept

            def setstate(obj: Any, state: Any) -> Any:
                out = _SETSTATE(obj, state)  # type: ignore[misc]
                kept.append((obj, _registered(state)))
                return out

            return setstate
        return found


def loads_keeping(data: bytes | memoryview) -> tuple[Any, list[Any]]:
    """The object pickled in *data*, and the classes cloudpickle's own functions rebuilt for
    it (:class:`KeepingUnpickler`), for the caller to hold as long as the object.

    A worker loads its functions so, and holds those classes with its copy of the function
    (``workers.runner``): what holds such a class weakly, where the function holds that, did
    not keep it. An ABC of the function's globals (``Shape``) has the copy of its registered
    class (``Shape.register(Square)``) in its registry by a weak reference only: the copy died
    after the first batch, and the next batch's, a new class, was not registered
    (``isinstance(Square(), Shape)`` False, where joblib, which sends the ABC with every
    batch, answers True). Held by their own names instead, a factory's ``type(f"Model{k}",
    ...)`` kept one class a call for good.
    """
    unpickler = KeepingUnpickler(io.BytesIO(data))
    return unpickler.load(), unpickler.kept
