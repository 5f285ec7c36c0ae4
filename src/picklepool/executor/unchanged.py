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
  doc (immutable too), defaults, keyword defaults, annotations, closure contents) are compared by
  identity, and ``__dict__`` must be empty.
- The number of modules imported must not have changed when a module is named
  (cloudpickle lists the submodules of those imported at pickling time), nor
  cloudpickle's list of modules registered to go by value.
- Nothing is kept alive for it: functions sent by value are held weakly (the entry
  goes with them) unless their globals are those of a module in ``sys.modules``,
  so a function of an ``exec`` namespace does not keep the namespace's data.
"""

from __future__ import annotations

import sys
import types
import weakref
from typing import Any

import cloudpickle

from ..pickler import ownfunctions
from . import reloaded

MAX_KEPT = 1024  # functions remembered before the table starts afresh
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})
_NAMED = frozenset({types.ModuleType, types.FunctionType, types.BuiltinFunctionType})  # maybe by name
_MISSING = object()
_BASE_GLOBALS = ("__package__", "__name__", "__path__", "__file__")  # cloudpickle sends these too
_MAX_DEPTH = 4  # nested functions sent by value, followed this deep

# (pickler class, identity key) -> (evidence, content key, bytes, anchor): the anchor keeps
# the functions alive when their globals are modules' (alive anyway); else they are held
# weakly, and the entry goes with them (``_Evidence``).
_kept: dict[tuple[type, Any], tuple[_Evidence, str, bytes, Any]] = {}
_kept_epoch = [0]  # reloaded.epoch when they were kept


class _Evidence:
    """What a function's bytes were made from, without keeping its globals alive.

    Functions sent by value (the one pickled and those it names) and their globals
    dicts are recorded by ``id`` and held by weak references: a function holds its
    globals, so while every one of them lives the ids are theirs. Everything else
    (code, atoms, what goes by reference) is held in *strong*, so its id is its own.
    An ``exec`` namespace of a large dataset is not kept alive by a function of it
    remembered here (as it was until 1024 other functions came).
    """

    __slots__ = ("tree", "strong", "weak", "__weakref__")

    def __init__(self, tree: tuple[Any, ...], strong: list[Any], weak: list[Any]) -> None:
        self.tree, self.strong, self.weak = tree, strong, weak

    def functions(self) -> list[Any] | None:
        """The functions sent by value it was made from, or None when one has died."""
        found = [r() for r in self.weak]
        return None if None in found else found


def recall(kind: type, ident: Any, func: Any) -> tuple[str, bytes, bool] | None:
    """``(content key, bytes, whether it names functions sent by value)`` remembered for *func*
    under *ident*, if still provably true."""
    _since_reload()
    known = _kept.get((kind, ident))
    if known is None or cloudpickle.list_registry_pickle_by_value():
        return None
    funcs = known[0].functions()
    if funcs is None or not _holds(func, known[0].tree, funcs):
        return None
    # (another object of the same code and globals: it takes the token those bytes carry)
    ownfunctions.pass_on(funcs[0], func)
    return (known[1], known[2], len(funcs) > 1)


def _since_reload() -> None:
    """Forget what was kept before the last reload (``reloaded.epoch``): what went by name
    then may not now. Before each look and each new entry (one kept after the reload was
    dropped at the next look)."""
    if reloaded.moved(_kept_epoch):
        _kept.clear()


def remember(kind: type, ident: Any, func: Any, key: str, data: bytes, by_reference: Any) -> None:
    """Keep *func*'s bytes for later calls, when :mod:`unchanged` can prove them unchanged.

    *by_reference(obj)*: True when the pickler sends *obj* (a function or class) as
    its module and name.
    """
    if cloudpickle.list_registry_pickle_by_value():
        return
    _since_reload()
    strong: list[Any] = []
    funcs: list[Any] = []
    tree = _evidence(func, by_reference, 0, set(), strong, funcs)
    if tree is None:
        return
    evidence = _Evidence(tree, strong, [])
    entry_key = (kind, ident)

    # a function died: forget it (the table bound now: at exit, module globals may be None)
    def gone(_ref: Any, evidence: Any = weakref.ref(evidence), kept: dict[Any, Any] = _kept) -> None:
        known = kept.get(entry_key)
        if known is not None and known[0] is evidence():
            kept.pop(entry_key, None)

    evidence.weak = [weakref.ref(f, gone) for f in funcs]
    # a module's globals live as long as the module: keeping its functions costs nothing, and
    # lambdas made anew at each call (same code, same globals) still find this entry
    anchor = tuple(funcs) if all(_module_dict(f.__globals__) for f in funcs) else None
    if len(_kept) >= MAX_KEPT:
        _kept.clear()
    _kept[entry_key] = (evidence, key, data, anchor)


def forget() -> None:
    """Drop every remembered function (tests; a process that changes what pickling means)."""
    _kept.clear()


def _module_dict(g: dict[str, Any]) -> bool:
    """*g* is the namespace of a module in ``sys.modules`` (``__main__``'s, a module's)."""
    module = sys.modules.get(g.get("__name__"))  # type: ignore[arg-type]
    return module is not None and getattr(module, "__dict__", None) is g


def code_names(code: types.CodeType) -> tuple[str, ...]:
    """Every name *code* and the code nested in it may look up (a superset of its globals)."""
    names = dict.fromkeys(code.co_names)
    for const in code.co_consts:
        if type(const) is types.CodeType:
            names.update(dict.fromkeys(code_names(const)))
    return tuple(names)


def _evidence(
    func: Any, by_reference: Any, depth: int, seen: set[int], strong: list[Any], funcs: list[Any]
) -> tuple[Any, ...] | None:
    """What *func*'s bytes were made from (as ids), or None when some of it may change in place.

    Appends to *strong* the objects whose ids it records (kept alive by the entry), and to
    *funcs* the functions sent by value (held weakly: each holds its globals).
    """
    if type(func) is not types.FunctionType or func.__dict__ or depth > _MAX_DEPTH:
        return None
    seen.add(id(func))
    funcs.append(func)
    g = func.__globals__
    names = code_names(func.__code__) + _BASE_GLOBALS
    values = tuple(g.get(n, _MISSING) for n in names)
    try:
        cells = tuple(c.cell_contents for c in func.__closure__ or ())
    except ValueError:  # an empty cell (a variable of the enclosing function not set yet)
        return None
    kwdefaults = tuple((func.__kwdefaults__ or {}).items())
    annotations = tuple(func.__annotations__.items())
    nested: list[tuple[int, tuple[Any, ...]]] = []  # (index in funcs, its evidence)
    modules = False
    keyed = (v for _, v in (*kwdefaults, *annotations))
    own = _own(func)
    # the name, module and doc travel by value too: a doc that is a list could change in place
    for v in (*values, *cells, *(func.__defaults__ or ()), *keyed, *own[2:]):
        kind = _kind(v, by_reference)
        if kind is None:
            return None
        if kind == "module":
            modules = True
        if kind != "by value":
            strong.append(v)
        elif id(v) not in seen:
            index = len(funcs)
            inner = _evidence(v, by_reference, depth + 1, seen, strong, funcs)
            if inner is None:
                return None
            nested.append((index, inner))  # funcs[index] is v
    strong.append(own[0])  # the code; the globals are the function's (held weakly)
    imported = len(sys.modules) if modules else -1
    return (
        _ids(own),
        names,
        _ids(values),
        _ids(cells),
        tuple((k, id(v)) for k, v in kwdefaults),
        tuple((k, id(v)) for k, v in annotations),
        tuple(nested),
        imported,
    )


def _ids(objs: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(map(id, objs))


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


def _holds(func: Any, evidence: tuple[Any, ...], funcs: list[Any]) -> bool:
    """*func* still is what *evidence* says: each object the same, by identity (*funcs*: those
    sent by value it was made from, alive: the ids of theirs and of their globals are theirs)."""
    if type(func) is not types.FunctionType or func.__dict__:
        return False
    own, names, values, cells, kwdefaults, annotations, nested, modules = evidence
    if _ids(_own(func)) != own:
        return False
    g = func.__globals__
    if tuple(id(g.get(n, _MISSING)) for n in names) != values:
        return False
    try:
        if _ids(tuple(c.cell_contents for c in func.__closure__ or ())) != cells:
            return False
    except ValueError:  # a cell emptied since
        return False
    if not _same_items(func.__kwdefaults__ or {}, kwdefaults):
        return False
    if not _same_items(func.__annotations__, annotations):
        return False
    if modules >= 0 and len(sys.modules) != modules:
        return False
    # each nested one is named by func (its id among the values checked above): the same object
    return all(_holds(funcs[k], e, funcs) for k, e in nested)


def _same_items(d: dict[str, Any], items: tuple[tuple[str, int], ...]) -> bool:
    return len(d) == len(items) and all(id(d.get(k, _MISSING)) == v for k, v in items)
