"""Cheap proof that a function sent by value still pickles to the bytes of an earlier call.

A function of ``__main__`` (or of a notebook, or a closure) travels by value:
cloudpickle writes its code, name, defaults, closure, the globals its code names
and the submodules those use. Pickling that again at every call costs a warm
one-task call about 0.1 ms (a tenth of it). :func:`remember` keeps, with the
bytes, every object those bytes were made from; :func:`recall` gives the bytes
back only while each of them is the very same object, so nothing the worker
would rebuild can differ:

- The objects must not change in place: ``int``, ``float``, ``complex``, ``str``,
  ``bytes``, ``bool``, ``None``; tuples and frozensets of them; modules,
  functions and classes pickled by reference (their module and name); and
  functions sent by value that pass the same test (their own globals are looked
  at again). A function that names a list, a dict, an array, an instance or a
  class of ``__main__`` is pickled at every call, as before.
- The function's own attributes (code, globals dict, name, qualified name, module,
  doc, defaults, keyword defaults, annotations, closure contents) are compared by
  identity, and ``__dict__`` must be empty.
- The number of modules imported must not have changed when a module is named
  (cloudpickle lists the submodules of those imported at pickling time), nor
  cloudpickle's list of modules registered to go by value.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import cloudpickle

MAX_KEPT = 1024  # functions remembered before the table starts afresh
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})
_NAMED = frozenset({types.ModuleType, types.FunctionType, types.BuiltinFunctionType})  # maybe by name
_MISSING = object()
_BASE_GLOBALS = ("__package__", "__name__", "__path__", "__file__")  # cloudpickle sends these too
_MAX_DEPTH = 4  # nested functions sent by value, followed this deep

# (pickler class, identity key) -> (function, evidence, content key, bytes)
_kept: dict[tuple[type, Any], tuple[Any, tuple[Any, ...], str, bytes]] = {}


def recall(kind: type, ident: Any, func: Any) -> tuple[str, bytes] | None:
    """``(content key, bytes)`` remembered for *func* under *ident*, if still provably true."""
    known = _kept.get((kind, ident))
    if known is None or cloudpickle.list_registry_pickle_by_value():
        return None
    return (known[2], known[3]) if _holds(func, known[1]) else None


def remember(kind: type, ident: Any, func: Any, key: str, data: bytes, by_reference: Any) -> None:
    """Keep *func*'s bytes for later calls, when :mod:`unchanged` can prove them unchanged.

    *by_reference(obj)*: True when the pickler sends *obj* (a function or class) as
    its module and name.
    """
    if cloudpickle.list_registry_pickle_by_value():
        return
    evidence = _evidence(func, by_reference, 0, set())
    if evidence is None:
        return
    if len(_kept) >= MAX_KEPT:
        _kept.clear()
    _kept[(kind, ident)] = (func, evidence, key, data)


def forget() -> None:
    """Drop every remembered function (tests; a process that changes what pickling means)."""
    _kept.clear()


def _names(code: types.CodeType) -> tuple[str, ...]:
    """Every name *code* and the code nested in it may look up (a superset of its globals)."""
    names = dict.fromkeys(code.co_names)
    for const in code.co_consts:
        if type(const) is types.CodeType:
            names.update(dict.fromkeys(_names(const)))
    return tuple(names)


def _evidence(func: Any, by_reference: Any, depth: int, seen: set[int]) -> tuple[Any, ...] | None:
    """What *func*'s bytes were made from, or None when some of it may change in place."""
    if type(func) is not types.FunctionType or func.__dict__ or depth > _MAX_DEPTH:
        return None
    seen.add(id(func))
    g = func.__globals__
    names = _names(func.__code__) + _BASE_GLOBALS
    values = tuple(g.get(n, _MISSING) for n in names)
    try:
        cells = tuple(c.cell_contents for c in func.__closure__ or ())
    except ValueError:  # an empty cell (a variable of the enclosing function not set yet)
        return None
    kwdefaults = tuple((func.__kwdefaults__ or {}).items())
    annotations = tuple(func.__annotations__.items())
    nested: list[tuple[Any, tuple[Any, ...]]] = []
    modules = False
    keyed = (v for _, v in (*kwdefaults, *annotations))
    for v in (*values, *cells, *(func.__defaults__ or ()), *keyed):
        kind = _kind(v, by_reference)
        if kind is None:
            return None
        if kind == "module":
            modules = True
        elif kind == "by value" and id(v) not in seen:
            inner = _evidence(v, by_reference, depth + 1, seen)
            if inner is None:
                return None
            nested.append((v, inner))
    imported = len(sys.modules) if modules else -1
    return (_own(func), names, values, cells, kwdefaults, annotations, tuple(nested), imported)


def _own(func: Any) -> tuple[Any, ...]:
    return (
        func.__code__,
        func.__globals__,
        func.__name__,
        func.__qualname__,
        func.__module__,
        func.__doc__,
        func.__defaults__,
        getattr(func, "__type_params__", None),
    )


def _kind(v: Any, by_reference: Any, depth: int = 0) -> str | None:
    """How *v* pickles, if it cannot change in place: "fixed", "module" (by name, with the
    submodules imported then), "by value" (a function: look inside), else None."""
    t = type(v)
    if t in _ATOMS or v is _MISSING:
        return "fixed"
    if t is tuple or t is frozenset:
        if depth > _MAX_DEPTH or len(v) > 64:
            return None
        return "fixed" if all(_kind(x, by_reference, depth + 1) == "fixed" for x in v) else None
    if t in _NAMED or isinstance(v, type):
        try:
            named = by_reference(v)
        except Exception:  # noqa: BLE001 - cannot tell: not provable
            return None
        if named:
            return "module" if t is types.ModuleType else "fixed"
        return "by value" if t is types.FunctionType else None
    return None


def _holds(func: Any, evidence: tuple[Any, ...]) -> bool:
    """*func* still is what *evidence* says: each object the same, by identity."""
    if type(func) is not types.FunctionType or func.__dict__:
        return False
    own, names, values, cells, kwdefaults, annotations, nested, modules = evidence
    now = _own(func)
    if any(a is not b for a, b in zip(now, own, strict=True)):
        return False
    g = func.__globals__
    if any(g.get(n, _MISSING) is not v for n, v in zip(names, values, strict=True)):
        return False
    try:
        if any(c.cell_contents is not v for c, v in zip(func.__closure__ or (), cells, strict=True)):
            return False
    except ValueError:  # a cell emptied since
        return False
    if not _same_items(func.__kwdefaults__ or {}, kwdefaults):
        return False
    if not _same_items(func.__annotations__, annotations):
        return False
    if modules >= 0 and len(sys.modules) != modules:
        return False
    return all(_holds(f, e) for f, e in nested)


def _same_items(d: dict[str, Any], items: tuple[tuple[str, Any], ...]) -> bool:
    return len(d) == len(items) and all(d.get(k, _MISSING) is v for k, v in items)
