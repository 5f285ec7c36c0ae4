"""The globals of its own modules that the script sets, set in a worker too.

A script imports a module of its project and sets what that module reads: ``config.DEBUG =
True`` or ``settings.SCALE = args.scale`` (from its command line), ``config.OPTIONS["mode"]
= "fast"``, ``config.PATHS.append(extra)``, an attribute of one of its classes
(``config.Settings.RETRIES = 5``), a function replaced by one of its own (``client.fetch =
fake_fetch``). In the loop the call replaces, the tasks ran with those values; a warm worker
imported the module afresh, so the same task read ``DEBUG = False`` and computed otherwise,
silently (under joblib too).

What is sent: the attributes the script's own code assigns on a module of the user's, read
in its source (``__main__``'s file, or the cells IPython keeps in ``In``), at its top or in
its functions: ``M.X = ...``, ``M.X += ...``, ``M.X[k] = ...``, ``M.X.append(...)`` (a
method that changes a dict, list or set in place), ``M.C.X = ...`` for a class ``C`` of the
module, ``setattr(M, "X", ...)``, where ``M`` is a name (or dotted names) the script binds
to the module. A module of the user's is one of a ``.py`` file outside the standard library,
site-packages and picklepool (``workers.reloads.library``). Those attributes' values are
sent as they are at each call (pickled apart, with hybrid: the script's functions by value),
when they changed, and set in a worker before each batch's tasks run, once the batch's
functions are loaded (importing the module if need be: the script imported it); a
dict or list is updated in place, so that another module's ``from config import OPTIONS``
sees it too; the worker's own value returns once the script's is gone. The module's own code
is never looked at: what it sets itself (a lazily made connection, a cache, a counter, a
per-process value) is each process's own, as before.

Not seen: an attribute set through a function of the module (``config.configure(debug=True)``:
set the attribute itself, or in an initializer), by another module of the program, or through
a name the script does not bind to the module itself. A value that does not pickle, or takes
more than :data:`LIMIT` pickled, is left out with a ``RuntimeWarning`` naming it, once.
Cost: the script is read once (IPython's new cells as they come); per call, a look at the
version of each targeted module's namespace and of each dict set (CPython's
``ma_version_tag``, or its values' identities), and each list's length (a list changed in
place keeping its length is not seen): about 0.1 us per attribute the script sets.
Process-wide: not sent to a dask cluster's shared workers.
"""

from __future__ import annotations

import ast
import copy
import ctypes
import importlib
import logging
import operator
import os
import sys
import tokenize
import warnings
from typing import Any

from .overlay import Overlay, dumps_each
from .reloads import users

log = logging.getLogger(__name__)

WHAT = "a global of a module of the program"

MAX_SOURCE = 1 << 21  # bytes of the script read at most
LIMIT = 1 << 20  # bytes a value may take pickled (it travels with every batch)
_MAIN = ("__main__", "__mp_main__")
# the methods that change a dict, list or set in place (config.PATHS.append(x))
_CHANGES = frozenset(
    "append extend insert update setdefault pop popitem remove clear add discard sort reverse".split()
)


# -- a dict's version: has it changed since it was last looked at? ---------------------------


def _version_view() -> Any:
    """A function returning an object whose ``value`` changes whenever the dict given to it
    does (CPython's ``ma_version_tag``, read in place), or None where there is no such tag."""
    try:
        offset = 3 * ctypes.sizeof(ctypes.c_ssize_t)  # ob_refcnt, ob_type, ma_used
        probe: dict[str, int] = {"a": 1}  # (held while read: ma_used is where it should be)
        if ctypes.c_ssize_t.from_address(id(probe) + 2 * ctypes.sizeof(ctypes.c_ssize_t)).value != 1:
            return None
        tag = ctypes.c_uint64.from_address(id(probe) + offset)
        before = tag.value
        probe["x"] = 1
        middle = tag.value
        probe["x"] = 2
        if not before != middle != tag.value:
            return None  # (Python 3.14 keeps no version)
    except (ValueError, TypeError, OSError):  # pragma: no cover - another interpreter
        return None
    return lambda d: ctypes.c_uint64.from_address(id(d) + offset)


class _Identities:
    """In place of a version where there is none: the identities of a dict's values."""

    __slots__ = ("d",)

    def __init__(self, d: dict[Any, Any]) -> None:
        self.d = d

    @property
    def value(self) -> Any:
        return (len(self.d), tuple(map(id, self.d.values())))


_versions = _version_view()
_VALUE = operator.attrgetter("value")


def _watch(d: dict[Any, Any]) -> Any:
    return _versions(d) if _versions is not None else _Identities(d)


# -- the parent's side ------------------------------------------------------------------------


def targets(source: str) -> set[tuple[str, ...]]:
    """The attributes *source* (a script) sets on names: ``("config", "DEBUG")`` for
    ``config.DEBUG = ...``, ``config.OPTIONS["k"] = ...``, ``config.OPTIONS.update(...)``;
    ``("config", "Settings", "RETRIES")`` for ``config.Settings.RETRIES = ...``."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    out: set[tuple[str, ...]] = set()
    for node in ast.walk(tree):
        stores: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            stores = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            stores = [node.target]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _CHANGES:  # (config.PATHS.append(x))
                chain = _chain(func.value)
                if chain is not None and len(chain) >= 2:
                    out.add(chain)
            elif (
                isinstance(func, ast.Name)
                and func.id == "setattr"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                chain = _chain(node.args[0])
                if chain is not None:
                    out.add((*chain, node.args[1].value))
        for store in stores:
            while isinstance(store, ast.Subscript):  # (config.OPTIONS["mode"] = ...)
                store = store.value
            if isinstance(store, ast.Tuple | ast.List):
                stores.extend(store.elts)
                continue
            chain = _chain(store)
            if chain is not None and len(chain) >= 2:
                out.add(chain)
    return out


def _chain(node: ast.AST) -> tuple[str, ...] | None:
    """``("a", "b", "c")`` for the expression ``a.b.c``; None for any other."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return tuple(reversed(parts))


def _users(module: Any) -> bool:
    """Whether *module* is one of the user's (``workers.reloads.users``), not the script."""
    return getattr(module, "__name__", None) not in _MAIN and users(module)


def _resolve(namespace: dict[str, Any], chain: tuple[str, ...]) -> tuple[Any, Any, str] | None:
    """``(module, owner, name)`` where *chain*, read from *namespace*, sets the attribute
    *name* of *owner*: a module of the user's, or a class defined in it. None for another."""
    obj = namespace.get(chain[0])
    module = None
    i = 1
    while i < len(chain) - 1 and isinstance(obj, type(sys)):
        nxt = getattr(obj, chain[i], None)
        if not isinstance(nxt, type(sys)):
            break
        obj, i = nxt, i + 1
    if not isinstance(obj, type(sys)) or not _users(obj):
        return None
    module = obj
    rest = chain[i:]
    if len(rest) == 1:
        return module, module, rest[0]
    if len(rest) == 2:
        cls = getattr(module, rest[0], None)
        if isinstance(cls, type) and getattr(cls, "__module__", None) == module.__name__:
            return module, cls, rest[1]
    return None


def _script_key(namespace: dict[str, Any]) -> Any:
    """What the script's source is known by: ``("cells", n)`` for IPython's *n* cells, else
    its file's path (read once: the code running is what the file held at the start)."""
    cells = namespace.get("In")
    if type(cells) is list:
        return ("cells", len(cells))
    path = namespace.get("__file__")
    return path if isinstance(path, str) else None


# parent: the script's key and the chains its source sets; the IPython cells read so far
_script: tuple[Any, frozenset[tuple[str, ...]]] = (None, frozenset())
_cells_read = 0


def _chains(namespace: dict[str, Any]) -> frozenset[tuple[str, ...]]:
    """The attribute chains the script (whose namespace is *namespace*) sets: read once from
    its file, or from IPython's cells as new ones come."""
    global _script, _cells_read
    key = _script_key(namespace)
    if key == _script[0]:
        return _script[1]
    found: set[tuple[str, ...]] = set()
    if type(key) is tuple:
        cells = namespace["In"]
        if _cells_read <= len(cells) and _script[0] is not None and type(_script[0]) is tuple:
            found = set(_script[1])
        else:
            found, _cells_read = set(), 0
        for cell in cells[_cells_read:]:
            if isinstance(cell, str):
                found |= targets(cell)
        _cells_read = len(cells)
    elif key is not None:
        try:
            if os.path.getsize(key) <= MAX_SOURCE:
                with tokenize.open(key) as f:  # (its declared encoding, as Python reads it)
                    found = targets(f.read())
        except (OSError, SyntaxError, UnicodeDecodeError):
            found = set()
    _script = (key, frozenset(found))
    return _script[1]


# parent: the versions of what is watched as read last, and the pickle of the values
_views: list[Any] = []  # versions of the namespaces and classes set, and of the dicts set
_lists: list[list[Any]] = []  # the lists set (held: their lengths are watched)
_heads: tuple[str, ...] = ()  # the script's names the chains start from
_read: tuple[Any, bytes | None] = (None, None)


def _signal(chains: frozenset[tuple[str, ...]], namespace: dict[str, Any]) -> Any:
    """What is read again each call (C loops only): the script's names the chains start
    from (bound anew: another module), the versions of the dicts, the lists' lengths."""
    return (
        chains,
        list(map(id, map(namespace.get, _heads))),
        list(map(_VALUE, _views)),
        list(map(len, _lists)),
    )


def pickled() -> bytes | None:
    """``{(module, name): value}`` of the attributes the script sets on its own modules (name:
    ``"Class.attribute"`` for a class's), pickled each apart (None: it sets none)."""
    global _read, _heads
    namespace = getattr(sys.modules.get("__main__"), "__dict__", None)
    if type(namespace) is not dict:
        return None
    cells = namespace.get("In")  # (the script's key, as _script_key: inline, as it runs every call)
    key = ("cells", len(cells)) if type(cells) is list else namespace.get("__file__")
    chains = _script[1] if key == _script[0] else _chains(namespace)
    if not chains:
        return None
    seen, data = _read
    if seen is not None and seen[0] is chains and _signal(chains, namespace) == seen:
        return data
    _heads = tuple({chain[0] for chain in chains})
    entries: list[tuple[Any, Any]] = []
    views: list[dict[Any, Any]] = []  # the dicts whose versions are watched
    lists: list[list[Any]] = []
    for chain in sorted(chains):
        try:
            found = _resolve(namespace, chain)
            if found is None:
                continue
            module, owner, name = found
            views.append(vars(module))
            if owner is not module:
                views.extend(_class_dicts(owner))
            if name not in vars(owner):
                continue
            value = vars(owner)[name]
        except Exception as exc:  # noqa: BLE001 - (a module whose attributes raise): the others go
            log.debug("picklepool: %s: %r left out: %r", WHAT, chain, exc)
            continue
        if type(value) is dict:
            views.append(value)
        elif type(value) is list:
            lists.append(value)
        key = module.__name__, name if owner is module else f"{owner.__name__}.{name}"
        entries.append((key, value))
    left_out: dict[Any, str] = {}
    data = dumps_each(entries, WHAT, LIMIT, None, left_out) if entries else None
    for key, why in left_out.items():
        _warn_left_out(key, why)
    _views[:] = [_watch(d) for d in {id(d): d for d in views}.values()]  # (each dict once)
    _lists[:] = lists
    _read = (_signal(chains, namespace), data)
    return data


def _class_dicts(cls: type) -> list[dict[str, Any]]:
    """The dict behind a class's ``__dict__`` (its version changes as an attribute is set)."""
    import gc

    return [d for d in gc.get_referents(vars(cls)) if type(d) is dict]


_warned: set[Any] = set()


def _warn_left_out(key: Any, why: str) -> None:
    if key in _warned:
        return
    _warned.add(key)
    from ..pickler.locks import callers_level

    warnings.warn(
        f"picklepool: {key[0]}.{key[1]}, which the script sets, is not sent to the workers: "
        f"{why}. A task that reads it there gets the module's own value, where the loop's got "
        "this one. Set it in the task, or in an initializer (Parallel(initializer=...)).",
        RuntimeWarning,
        stacklevel=callers_level(),  # (the call's line)
    )


# -- the worker's side ------------------------------------------------------------------------


class _Globals:
    """The user's modules' globals and their classes' attributes, as the one table an
    :class:`~.overlay.Overlay` lays the parent's over, keyed ``(module, name)`` or
    ``(module, "Class.name")``. A dict or list is read as a copy and set in place (another
    module's ``from config import OPTIONS`` holds the same one)."""

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        owner, name = _owner(key)
        value = default if owner is None else getattr(owner, name, default)
        return copy.deepcopy(value) if type(value) in (dict, list) else value

    def __setitem__(self, key: tuple[str, str], value: Any) -> None:
        owner, name = _owner(key)
        if owner is None:
            return  # (a module this worker cannot import)
        current = getattr(owner, name, None)
        if _same(current, value):
            return
        try:
            if type(value) is type(current) is dict:
                current.clear()
                current.update(copy.deepcopy(value))
            elif type(value) is type(current) is list:
                current[:] = copy.deepcopy(value)
            else:
                setattr(owner, name, copy.deepcopy(value) if type(value) in (dict, list) else value)
        except Exception as exc:  # noqa: BLE001 - (a module refusing it): the others still go
            log.debug("picklepool: %s could not be set here (%r): %r", WHAT, key, exc)

    def pop(self, key: tuple[str, str], default: Any = None) -> Any:
        owner, name = _owner(key)
        if owner is not None and name in vars(owner):
            delattr(owner, name)  # (a name the script added, then deleted)
        return default


def _same(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - (a value whose == does not answer a bool)
        return False


def _owner(key: tuple[str, str]) -> tuple[Any, str]:
    """The module, or class of it, that *key*'s name is an attribute of, and that name."""
    module = _module(key[0])
    cls, _, name = key[1].rpartition(".")
    if module is None or not cls:
        return module, name
    return getattr(module, cls, None), name


# worker: the parent's values set here; the modules it could not import (for the data applied)
_overlay = Overlay(WHAT)
_unimportable: set[str] = set()


def _module(name: str) -> Any:
    """The module *name*, imported here if need be (the script imported it, and a task may
    import it in its body); None where it cannot be (a module the parent made from a file
    under another name): not tried again until the parent's values change."""
    module = sys.modules.get(name)
    if module is not None or name in _unimportable:
        return module
    try:
        from . import warnfilters

        with warnfilters.loading():  # (its import warns under the worker's filters)
            return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - its globals are not set here; the others are
        log.debug("picklepool: %s: %s cannot be imported here: %r", WHAT, name, exc)
        _unimportable.add(name)
        return None


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    if _overlay.added:
        _overlay.rebase(_Globals())  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Set in this worker's modules the globals pickled in *data* (None: the script sets
    none), and set back this worker's own where the script no longer sets one."""
    if data is None and not _overlay.added:  # (the usual case)
        return
    if data != _overlay.applied:
        _unimportable.clear()
    _overlay.apply(_Globals(), data)  # type: ignore[arg-type]
