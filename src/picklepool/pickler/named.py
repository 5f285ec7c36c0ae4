"""Objects of ``__main__`` that pickle by name (``__reduce__`` returning a string) travel by value.

pickle's documented singleton idiom gives a class a ``__reduce__`` that returns the name
of the module global holding its one instance::

    class _Missing:
        def __reduce__(self):
            return "MISSING"

    MISSING = _Missing()

Pickled, ``MISSING`` is then written as ``__main__.MISSING``, which a worker does not
have (it never runs the script): every task whose function used the sentinel, or that
was passed it, failed with "Can't get attribute 'MISSING' on <module '__main__'>", under
``pickle``, ``cloudpickle`` and joblib alike, where the loop ran. hybrid sends such an
object as its class (by value, as a class of ``__main__``), its state, and a token
(``sentinels``): in a worker one copy stands for it, however many pickles bring it (the
function's globals, the arguments), and returned in a result it is the parent's own
object again, so ``r is MISSING`` holds there as in the loop. An object of an
importable module still goes by its name, as pickle sends it.
"""

from __future__ import annotations

import copyreg
import sys
from typing import Any

from . import sentinels
from .mainalias import by_value_home


def reduce_named(obj: Any, name: str) -> Any:
    """What hybrid writes for *obj*, whose ``__reduce_ex__`` gave the global *name*.

    *name* itself (pickle's by-name reference) unless *obj* is a copy made here of
    another process's object, or the object that global of ``__main__`` (or of a
    module sent by value) holds: then its token, class and state.
    """
    cls = type(obj)
    token = sentinels.known_token(obj)
    if token is None:
        module_name = getattr(obj, "__module__", None)
        if module_name != "__main__" and not by_value_home(cls):
            return name
        found: Any = sys.modules.get(module_name)  # type: ignore[arg-type]
        for part in name.split("."):
            found = getattr(found, part, None)
        if found is not obj:
            return name  # pickle's own error says which global it is not
        token = sentinels.token_of(obj)
    try:
        state = _state(obj)
        base = next(k for k in cls.__mro__ if not k.__flags__ & _HEAPTYPE)
        value = None if base is object else base(obj)  # (a str subclass's text, an int's number)
    except Exception:  # noqa: BLE001 - its state cannot be read: by name, as pickle sends it
        return name
    return rebuild_named, (token, cls, state, getattr(obj, "__module__", None), name, base, value)


_slotnames: Any = copyreg._slotnames  # type: ignore[attr-defined]  # (its slots' names, mangled)
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement (not a C type)
_BY_VALUE = (str, bytes, int, float, complex, tuple, frozenset)  # made by __new__ from a value


def _state(obj: Any) -> Any:
    """*obj*'s state as ``object.__getstate__`` gives it (Python >= 3.11), or its parts."""
    getstate = getattr(obj, "__getstate__", None)
    if getstate is not None:
        return getstate()
    slots = {slot: getattr(obj, slot) for slot in _slotnames(type(obj)) if hasattr(obj, slot)}
    attrs = getattr(obj, "__dict__", None) or None
    return (attrs, slots) if slots else attrs


def rebuild_named(
    token: tuple[bytes, int],
    cls: type,
    state: Any,
    module: str | None = None,
    name: str | None = None,
    base: Any = object,
    value: Any = None,
) -> Any:
    """The object *token* names: this process's own, or the one standing for it here: the
    global *name* of *module* where this process has one of that class (a checkpoint
    loaded by a new run of the script: its own singleton, as pickle's by-name reference
    gives), else a copy made from *cls* and *state*."""

    def find() -> Any:
        found: Any = sys.modules.get(module) if module else None
        for part in (name or "").split("."):
            found = getattr(found, part, None)
        kind = type(found)
        if found is not None and (kind.__module__, kind.__qualname__) == (cls.__module__, cls.__qualname__):
            return found
        return None

    def make() -> Any:
        found = find()
        return found if found is not None else _made(cls, state, base, value)

    def refresh(copy: Any) -> None:
        # a worker's copy, met again (the next call's function or arguments): the state the
        # parent's object has now, not the one it had when the copy was made, nor a task's
        if copy is not find():
            _set_state(copy, cls, state)
            _refill(copy, base, value)

    return sentinels.stand_in(token, make, refresh)


def _made(cls: Any, state: Any, base: Any = object, value: Any = None) -> Any:
    """A new *cls* with *state*, as pickle's BUILD makes one (without calling ``__init__``);
    its built-in *base* made from *value* (a ``str`` subclass's text, a ``list``'s items)."""
    if base is object or value is None:
        obj = base.__new__(cls)
    elif issubclass(base, _BY_VALUE):
        obj = base.__new__(cls, value)
    else:
        obj = base.__new__(cls)
        base.__init__(obj, value)
    _set_state(obj, cls, state)
    return obj


def _set_state(obj: Any, cls: Any, state: Any) -> None:
    """Give *obj* *state*, as pickle's BUILD does (its ``__setstate__``, else its
    ``__dict__`` and slots), dropping attributes the state does not have."""
    setstate = getattr(cls, "__setstate__", None)
    if setstate is not None:
        setstate(obj, state)
        return
    slotstate = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slotstate = state
    attrs = getattr(obj, "__dict__", None)
    if attrs is not None and not _same(attrs, state or {}):  # (as it is: left alone, so that
        attrs.clear()  # a SharedState holding it does not take it for changed by a task)
        attrs.update(state or ())
    for slot, item in (slotstate or {}).items():
        setattr(obj, slot, item)
    for slot in _slotnames(type(obj)):  # (mangled, as __getstate__ names them)
        if not (slotstate and slot in slotstate) and hasattr(obj, slot):
            delattr(obj, slot)


def _refill(obj: Any, base: Any, value: Any) -> None:
    """Give *obj*, a copy whose built-in *base* holds items (a ``dict``, ``list``, ``set``
    subclass's), the parent's *value* as its content: a registry the parent filled since, or
    a task's additions, were kept by a worker's copy (its ``__dict__`` alone was refreshed).
    Left alone when it already holds it (a ``SharedState`` holding it sees no change)."""
    if base is object or value is None or issubclass(base, _BY_VALUE):
        return  # (no content, or one that cannot change)
    try:
        same = bool(base(obj) == value)
    except Exception:  # noqa: BLE001 - items that cannot be compared (arrays): refilled
        same = False
    if same:
        return
    try:
        clear = getattr(base, "clear", None)
        if clear is not None:
            clear(obj)
        base.__init__(obj, value)
    except Exception:  # noqa: BLE001 - a base that cannot be refilled: its copy's content stays
        pass


def _same(attrs: dict[str, Any], state: Any) -> bool:
    """Whether *attrs* holds what *state* does (False where they cannot be compared)."""
    try:
        return bool(attrs == state)
    except Exception:  # noqa: BLE001 - an array's ambiguous truth: set them anew
        return False
