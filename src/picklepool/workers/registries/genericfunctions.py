"""``functools.singledispatch``: the cases the script registered on a module's generic function.

A project's module defines a generic function (``@functools.singledispatch def
render(obj)``) and the script adds cases for its own types, or others (``@render.register
def _(p: Point)``, ``render.register(Decimal, str)``). In the loop a task's ``render(point)``
found the script's case; a warm worker imports the module but never ran the script's lines,
so the same call fell to the default case (``TypeError``), or answered otherwise.

The parent finds the generic functions at the top of its imported modules, those that name
``functools.singledispatch`` or ``functools`` (a module making one imports it): each module is
looked at once, when ``sys.modules`` grew, and the signal is then the size of each one's
registry. Sent: every case of a generic function of the user's own modules
(``workers.reloads.library``: a module's own function registered by the script is as
likely as one its source registers, and a worker's import makes those again, the same), and
the cases of an installed library's whose type or implementation is ``__main__``'s. It travels as
``(module, its name there, type) -> implementation`` (with hybrid: the script's by value).
The generic functions of ``__main__`` travel with their registry, as any of its functions.
Not looked at: a generic function that is not a module's attribute (a class's, a
``singledispatchmethod``), or one of a module naming ``singledispatch`` otherwise.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types
from typing import Any

from ..reloads import users

_CODE = functools.singledispatch(lambda _obj: None).__code__  # type: ignore[attr-defined]  # (every wrapper's)
_MAIN = ("__main__", "__mp_main__")

# parent: the generic functions found (id -> (its module's name, its name there, itself));
# the modules looked at (name -> module); and len(sys.modules) then
_found: dict[int, tuple[str, str, Any]] = {}
_looked: dict[str, Any] = {}
_count = -1


def _look() -> None:
    """Find the generic functions of the modules imported since the last look."""
    global _count
    sd, ft = functools.singledispatch, functools
    for name, module in list(sys.modules.items()):
        if _looked.get(name) is module or name in _MAIN:
            continue
        _looked[name] = module
        namespace = getattr(module, "__dict__", None)
        if type(namespace) is not dict:
            continue
        if namespace.get("singledispatch") is not sd and namespace.get("functools") is not ft:
            continue
        for attr, value in list(namespace.items()):
            # (a plain function's attributes only: any other value's __getattr__ may raise)
            if type(value) is types.FunctionType and value.__code__ is _CODE and value.__module__ == name:
                _found[id(value)] = (name, attr, value)
    for key, (name, attr, value) in list(_found.items()):  # (a module deleted, or reloaded)
        if getattr(sys.modules.get(name), attr, None) is not value:
            del _found[key]
    _count = len(sys.modules)


def generic_signal(_functools: Any) -> Any:
    if len(sys.modules) != _count:
        _look()
    return tuple([len(f[2].registry) for f in _found.values()]) if _found else ()


def _mains(obj: Any) -> bool:
    return getattr(obj, "__module__", None) in _MAIN


def _users(name: str) -> bool:
    """Whether the module *name* is one of the user's (not an installed one)."""
    return users(sys.modules.get(name))


def generic_entries(_functools: Any) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    for name, attr, generic in list(_found.values()):
        users = None
        for cls, impl in list(generic.registry.items()):
            if cls is object:
                continue  # (the default case: the function itself)
            if not (_mains(cls) or _mains(impl)):
                if users is None:
                    users = _users(name)
                if not users:
                    continue
            out.append((("singledispatch", name, attr, cls), impl))
    return out


def generic_watch(key: Any, value: Any) -> Any:
    for name, attr, generic in _found.values():
        if (name, attr) == key[1:3]:
            return (generic.registry, key[3], value, None)
    return None


def _generic(key: Any) -> Any:
    obj = getattr(importlib.import_module(key[1]), key[2])
    if getattr(obj, "__code__", None) is not _CODE:
        raise TypeError(f"{key[1]}.{key[2]} is not a functools.singledispatch function here")
    return obj


def generic_get(key: Any, default: Any) -> Any:
    return _generic(key).registry.get(key[3], default)


def generic_set(key: Any, value: Any) -> None:
    _generic(key).register(key[3], value)


def generic_pop(key: Any) -> None:
    """Take the type's case out: functools has no call for it, so the dict behind
    ``registry`` is found among ``register``'s closure cells."""
    generic = _generic(key)
    registry = generic.registry
    for cell in generic.register.__closure__ or ():
        table = cell.cell_contents
        if type(table) is dict and table.keys() == registry.keys():
            table.pop(key[3], None)
            generic._clear_cache()
            return
