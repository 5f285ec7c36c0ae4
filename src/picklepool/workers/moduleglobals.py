"""The globals the parent's program changed in its own modules, set in a worker too.

A script imports a module of its project and sets what that module reads: ``config.DEBUG =
True`` or ``settings.SCALE = args.scale`` (from its command line), ``config.OPTIONS["mode"]
= "fast"``, a name the module's own ``configure()`` rebinds (``global level``), a function
replaced by one of the script's (``client.fetch = fake_fetch``), an attribute of one of its
classes (``config.Settings.RETRIES = 5``). In the loop the call
replaces, the tasks ran with those values; a warm worker imported the module afresh, so the
same task read ``DEBUG = False`` and computed otherwise, silently (under joblib too).

Which modules: the user's (a ``.py`` file outside the standard library, site-packages and
picklepool: ``workers.reloads.library``), not ``__main__`` (whose globals travel with its
functions), at most :data:`MAX_MODULES` of them, in the order they were imported (test
modules last). A
module's value at import is what its source binds the name to at its top level: a literal
(``DEBUG = False``, ``OPTIONS = {"mode": "slow"}``: ``ast.literal_eval``), read once per module
from its file (:data:`MAX_SOURCE` bytes at most). Sent, by the parent:

- a global its source binds only to literals, whose value is now plain data
  (``pickler.plain``: numbers, strings, ``None``, tuples, lists, dicts of them) equal to none
  of them;
- a name its source binds nowhere (the program added it), plain data;
- a function or class it defines, or a name bound to a literal, that the program replaced by
  a function or class of ``__main__`` (with hybrid: by value);
- a public attribute of a class it defines, plain data, that differs from every literal the
  class's body binds it to (``RETRIES = 3``).

Not sent: a private global (a name starting with ``_``: the module's machinery, a cache, a
flag its own ``init()`` sets, which each worker keeps its own of), a global its source binds
to something else (a computed value, an object: what it was at import is not known here) or
changes as it is imported (``TABLE[key] = value``, ``NAMES.append(x)``, a function its top
level calls that rebinds it: ``PID = os.getpid()`` in ``_init()``), one its code counts with
(``global n; n += 1``) or a class attribute its code sets (``Node.made += 1``, ``cls.peak =
max(...)``: a counter, a statistic, each process's own), one
that does not pickle or takes more than :data:`LIMIT` pickled (a ``RuntimeWarning`` names
it, once). A worker sets the parent's before each batch's tasks run, once the batch's
functions are loaded (importing the module), again if a task changed one (a task's own
change is its batch's), and sets its own back once the parent's is the module's own again.
What a worker's initializer sets stays, but where the parent changed the same global: the
parent's goes over it, as for the other mirrors.

Cost: read again only when a watched module's namespace changed, or a dict or list of its
plain globals did (a look at each one's version, CPython's ``ma_version_tag``, or at the
identities of its values where there is none; and at the lists' lengths: a list changed in
place keeping its length is not seen): about 0.1 us per watched module a call.
Process-wide: not sent to a dask cluster's shared workers.
"""

from __future__ import annotations

import ast
import copy
import ctypes
import gc
import importlib
import logging
import operator
import os
import sys
import tokenize
import warnings
from typing import Any

from ..pickler.plain import is_plain
from .overlay import Overlay, dumps_each
from .reloads import library

log = logging.getLogger(__name__)

WHAT = "a global of a module of the program"

MAX_MODULES = 64  # modules watched at most (an editable install of a large package has thousands)
MAX_SOURCE = 1 << 20  # bytes of source read at most to find a module's values at import
LIMIT = 1 << 20  # bytes a value may take pickled (it travels with every batch)
_MAIN = ("__main__", "__mp_main__")


# -- a dict's version: has it changed since it was last looked at? ---------------------------


def _version_view() -> Any:
    """A function returning an object whose ``value`` changes whenever the dict given to it
    does (CPython's ``ma_version_tag``, read in place), or None where there is no such tag."""
    try:
        offset = 3 * ctypes.sizeof(ctypes.c_ssize_t)  # ob_refcnt, ob_type, ma_used
        if ctypes.c_ssize_t.from_address(id({1: 2}) + 2 * ctypes.sizeof(ctypes.c_ssize_t)).value != 1:
            return None
        probe: dict[str, int] = {}
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


class _Scope:
    """What the statements of one scope (a module's, a class's) bind: names to literals,
    names otherwise, the functions and classes it defines (a class with its own scope), and
    whether it imports ``*``."""

    __slots__ = ("literals", "other", "defined", "classes", "star")

    def __init__(self, body: list[ast.stmt]) -> None:
        self.literals: dict[str, list[Any]] = {}  # name -> the literals it is bound to
        self.other: set[str] = set()  # names bound otherwise than to a literal
        self.defined: set[str] = set()  # the functions and classes it defines
        self.classes: dict[str, _Scope] = {}  # class name -> its body's scope
        self.star = False  # an ``import *``: names come from elsewhere
        self._statements(body)

    def known(self) -> dict[str, list[Any]]:
        """name -> the literals of the names bound to literals only."""
        return {name: values for name, values in self.literals.items() if name not in self.other}

    def _statements(self, body: list[ast.stmt]) -> None:
        """Note what the statements in *body* bind (the bodies of its ``if``, ``try``,
        ``for``, ``with`` blocks too; not those of functions and classes)."""
        other = self.other
        for stmt in body:
            if isinstance(stmt, ast.Assign | ast.AnnAssign):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if stmt.value is None:
                    continue  # (an annotation only)
                if not all(isinstance(t, ast.Name) for t in targets):
                    other.update(_names(targets))
                    continue
                try:
                    value = ast.literal_eval(stmt.value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    other.update(_names(targets))
                else:
                    for name in _names(targets):
                        self.literals.setdefault(name, []).append(value)
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.defined.add(stmt.name)
                other.add(stmt.name)
                if isinstance(stmt, ast.ClassDef):
                    self.classes[stmt.name] = _Scope(stmt.body)
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                for alias in stmt.names:
                    if alias.name == "*":
                        self.star = True
                    else:
                        other.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(stmt, ast.AugAssign | ast.Delete | ast.For | ast.AsyncFor):
                other.update(_names(stmt.targets if isinstance(stmt, ast.Delete) else [stmt.target]))
            elif isinstance(stmt, ast.With | ast.AsyncWith):
                other.update(_names([i.optional_vars for i in stmt.items if i.optional_vars is not None]))
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                other.update(_mutated([stmt.value.func]))  # (TABLE.update(...), NAMES.append(x))
            if isinstance(stmt, ast.Assign | ast.AugAssign | ast.Delete):
                # (TABLE[key] = value, del TABLE[key]: filled as it is imported, no longer its literal)
                other.update(
                    _mutated(stmt.targets if isinstance(stmt, ast.Assign | ast.Delete) else [stmt.target])
                )
            if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                for name in ("body", "orelse", "finalbody"):
                    inner = getattr(stmt, name, None)
                    if inner:
                        self._statements(inner)
            for handler in getattr(stmt, "handlers", ()):
                if handler.name:
                    other.add(handler.name)
                self._statements(handler.body)


class _Module:
    """A watched module: its namespace, and what its source binds at its top level and in its
    classes' bodies (read from its file the first time one of its public globals, or of its
    classes' attributes, may have been changed)."""

    __slots__ = ("name", "namespace", "path", "spec", "scope", "bound", "classes")

    def __init__(self, name: str, namespace: dict[str, Any], path: str) -> None:
        self.name, self.namespace, self.path = name, namespace, path
        self.spec = namespace.get("__spec__")  # (found anew as the module is reloaded)
        self.scope: _Scope | None = None
        self.bound: set[str] = set()  # every name the source binds (and ``global`` names)
        self.classes: list[type] = []  # its classes with public plain attributes (watched)

    @property
    def literals(self) -> dict[str, list[Any]] | None:
        return None if self.scope is None else self.scope.known()

    def _read(self) -> bool:
        """Read the module's source (once, and again once it was reloaded); False where it
        cannot be."""
        spec = self.namespace.get("__spec__")
        if self.scope is not None and spec is self.spec:
            return True
        self.spec, self.scope = spec, None
        source = _source(self.path)
        if source is None:
            return False
        try:
            tree = ast.parse(source)
            self.scope = _Scope(tree.body)
        except (SyntaxError, ValueError, RecursionError, MemoryError):  # (not the file imported)
            return False
        self.bound = set(self.scope.literals) | self.scope.other
        declared, counted, attributes = _counters(tree, set(self.scope.classes))
        self.bound |= declared  # (a function's ``global x; x = ...``)
        self.scope.other |= counted & declared
        for cls, names in attributes.items():
            self.scope.classes[cls].other |= names
        if declared:
            self.scope.other |= _set_as_imported(tree)
        return True

    def changed(self) -> list[tuple[Any, Any]]:
        """``((module, name), value)`` of the globals, and ``((module, "Class.name"), value)``
        of the class attributes, the program changed, as the module docstring says."""
        candidates = [
            (name, value)
            for name, value in list(self.namespace.items())
            if name[0] != "_" and (is_plain(value) or _mains(value))
        ]
        classes = [
            (name, value, attrs)
            for name, value in list(self.namespace.items())
            if name[0] != "_" and isinstance(value, type) and _defined_here(value, self.name, name)
            for attrs in [_plain_attributes(value)]
            if attrs
        ]
        self.classes = [cls for _, cls, _ in classes]
        if not (candidates or classes) or not self._read():
            return []
        scope = self.scope
        assert scope is not None
        out: list[tuple[Any, Any]] = []
        literals = scope.known()
        for name, value in candidates:
            known = literals.get(name)
            if known is not None:
                if any(_same(value, literal) for literal in known):
                    continue
            elif name in scope.defined:
                if not _mains(value):
                    continue
            elif name in self.bound or scope.star or not is_plain(value):
                continue
            out.append(((self.name, name), value))
        for name, _, attrs in classes:
            body = scope.classes.get(name)
            if body is None:
                continue
            known_attrs = body.known()
            for attr, value in attrs:
                known = known_attrs.get(attr)
                if known is not None and not any(_same(value, literal) for literal in known):
                    out.append(((self.name, f"{name}.{attr}"), value))
        return out


def _counters(tree: ast.Module, classes: set[str]) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """The names functions declare ``global``; the names its code counts with (``global n;
    n += 1``); the attributes of the module's *classes* that its code sets (``Node.made += 1``,
    ``cls.peak = max(cls.peak, n)``, ``type(self).count = 0``): the module's machinery, each
    process's own."""
    declared: set[str] = set()
    counted: set[str] = set()
    attributes: dict[str, set[str]] = {}
    for stmt in tree.body:
        owner = stmt.name if isinstance(stmt, ast.ClassDef) else None
        for node in ast.walk(stmt):
            if isinstance(node, ast.Global):
                declared.update(node.names)
            elif isinstance(node, ast.AugAssign | ast.Assign):
                targets = [node.target] if isinstance(node, ast.AugAssign) else node.targets
                for target in targets:
                    if isinstance(target, ast.Name):
                        if isinstance(node, ast.AugAssign):
                            counted.add(target.id)
                    elif isinstance(target, ast.Attribute):
                        base = target.value
                        if isinstance(base, ast.Name) and base.id in classes:
                            attributes.setdefault(base.id, set()).add(target.attr)
                        elif owner is not None and _own_class(base):
                            attributes.setdefault(owner, set()).add(target.attr)
    return declared, counted, attributes


def _own_class(node: ast.AST) -> bool:
    """Whether *node* names the class of the method it is in: ``cls``, ``type(self)``,
    ``self.__class__``."""
    if isinstance(node, ast.Name):
        return node.id == "cls"
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Name) and node.func.id == "type" and len(node.args) == 1
    return isinstance(node, ast.Attribute) and node.attr == "__class__"


def _set_as_imported(tree: ast.Module) -> set[str]:
    """The globals that a function of the module, called by its top level, rebinds (``PID =
    None``, then ``def _init(): global PID; PID = os.getpid()`` and ``_init()``): computed as
    it is imported, each process's own."""
    rebinds: dict[str, set[str]] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            rebinds[stmt.name] = {
                n for node in ast.walk(stmt) if isinstance(node, ast.Global) for n in node.names
            }
    called: set[str] = set()
    todo: list[ast.AST] = [s for s in tree.body if not isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
        todo.extend(
            child
            for child in ast.iter_child_nodes(node)
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        )
    return {name for function in called & rebinds.keys() for name in rebinds[function]}


def _defined_here(cls: type, module: str, name: str) -> bool:
    return getattr(cls, "__module__", None) == module and getattr(cls, "__qualname__", None) == name


def _plain_attributes(cls: type) -> list[tuple[str, Any]]:
    """The public attributes of *cls* itself that are plain data."""
    return [(k, v) for k, v in list(vars(cls).items()) if k[0] != "_" and is_plain(v)]


def _mutated(targets: list[Any]) -> list[str]:
    """The names whose value *targets* change in place (``a[k]``, ``a.b``, ``a.b.c``)."""
    out = []
    for target in targets:
        if not isinstance(target, ast.Subscript | ast.Attribute):
            continue
        while isinstance(target, ast.Subscript | ast.Attribute):
            target = target.value
        if isinstance(target, ast.Name):
            out.append(target.id)
    return out


def _names(targets: list[Any]) -> list[str]:
    """The names assigned by *targets* (``a``, ``a, b``, ``*rest``; not ``x.a``, ``x[0]``)."""
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def _same(value: Any, literal: Any) -> bool:
    try:
        return type(value) is type(literal) and bool(value == literal)
    except Exception:  # noqa: BLE001 - (a value whose == does not answer a bool)
        return False


def _mains(value: Any) -> bool:
    """Whether *value* is a function or class of the script (``__main__``)."""
    return callable(value) and getattr(value, "__module__", None) in _MAIN


def _path(module: Any) -> str | None:
    """The source file of *module*, when it is one of the user's (see the module docstring)."""
    name = getattr(module, "__name__", None)
    if not isinstance(name, str) or name in _MAIN or name.split(".")[0] == "picklepool":
        return None
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or getattr(module, "__file__", None)
    if not isinstance(origin, str) or not origin.endswith(".py") or library(origin):
        return None
    return origin


def _source(path: str) -> str | None:
    try:
        if os.path.getsize(path) > MAX_SOURCE:
            return None
        with tokenize.open(path) as f:  # (its declared encoding, as the import system reads it)
            return f.read()
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


# parent: the watched modules by name; the modules looked at (name -> module); len(sys.modules)
# then; the versions of what is watched, as read last, and the pickle of the changed globals
_watched: dict[str, _Module] = {}
_looked: dict[str, Any] = {}
_count = -1
_views: list[Any] = []  # versions of the namespaces and of their plain dicts
_lists: list[list[Any]] = []  # their plain lists (held: their lengths are watched)
_read: tuple[Any, bytes | None] = (None, None)


def _look() -> None:
    """Watch the user's modules imported since the last look (and those replaced): at most
    :data:`MAX_MODULES`, a test module (``test_*.py``, ``conftest.py``) giving way to another."""
    global _count
    for name, module in list(sys.modules.items()):
        if _looked.get(name) is module:
            continue
        _looked[name] = module
        _watched.pop(name, None)
        try:
            path = _path(module)
            namespace = getattr(module, "__dict__", None)
        except Exception:  # noqa: BLE001 - (a lazy module whose __getattr__ raises ImportError)
            continue
        if path is None or type(namespace) is not dict:
            continue
        if len(_watched) >= MAX_MODULES:
            tests = [n for n in _watched if _test(n)]
            if not tests or _test(name):
                continue
            del _watched[tests[-1]]
        _watched[name] = _Module(name, namespace, path)
    for name in [n for n in _watched if n not in sys.modules]:  # (deleted: del sys.modules[name])
        del _watched[name]
        _looked.pop(name, None)
    _count = len(sys.modules)


def _test(name: str) -> bool:
    """Whether the module *name* is a test module (pytest's names for them)."""
    base = name.rpartition(".")[2]
    return base.startswith("test_") or base.endswith("_test") or base == "conftest"


def _signal() -> Any:
    return (_count, list(map(_VALUE, _views)), list(map(len, _lists)))


def pickled() -> bytes | None:
    """``{(module, name): value}`` of the globals the program changed in its modules, pickled
    each apart (None: it changed none)."""
    global _read
    if len(sys.modules) != _count:
        _look()
    if not _watched:  # (no module of the user's: a script alone, or a notebook)
        return None
    seen, data = _read
    if seen is not None and _signal() == seen:
        return data
    entries: list[tuple[Any, Any]] = []
    for module in list(_watched.values()):
        try:
            entries.extend(module.changed())
        except Exception as exc:  # noqa: BLE001 - (a value whose attributes raise): the others go
            log.debug("picklepool: %s: %s left out: %r", WHAT, module.name, exc)
    left_out: dict[Any, str] = {}
    data = dumps_each(entries, WHAT, LIMIT, None, left_out) if entries else None
    for key, why in left_out.items():
        _warn_left_out(key, why)
    _views[:] = [_watch(m.namespace) for m in _watched.values()]
    _lists[:] = []
    for m in _watched.values():
        for value in list(m.namespace.values()):
            if type(value) in (dict, list) and is_plain(value):
                _containers(value)
        for cls in m.classes:  # (Config.DEBUG = True changes the class's dict, not the module's)
            _views.extend(_watch(d) for d in gc.get_referents(vars(cls)) if type(d) is dict)
            for value in list(vars(cls).values()):
                if type(value) in (dict, list) and is_plain(value):
                    _containers(value)
    _read = (_signal(), data)
    return data


def _containers(value: Any) -> None:
    """Watch the dicts and lists in plain *value*."""
    todo = [value]
    while todo:
        v = todo.pop()
        if type(v) is dict:
            _views.append(_watch(v))
            todo.extend(v.values())
        elif type(v) is list:
            _lists.append(v)
            todo.extend(v)
        elif type(v) is tuple:
            todo.extend(v)


_warned: set[Any] = set()


def _warn_left_out(key: Any, why: str) -> None:
    if key in _warned:
        return
    _warned.add(key)
    from ..pickler.locks import callers_level

    warnings.warn(
        f"picklepool: {key[0]}.{key[1]}, which the program changed, is not sent to the workers: "
        f"{why}. A task that reads it there gets the module's own value, where the loop's got "
        "this one. Set it in the task, or in an initializer (Parallel(initializer=...)).",
        RuntimeWarning,
        stacklevel=callers_level(),  # (the call's line)
    )


# -- the worker's side ------------------------------------------------------------------------


class _Globals:
    """The user's modules' globals and their classes' attributes, as the one table an
    :class:`~.overlay.Overlay` lays the parent's over, keyed ``(module, name)`` or
    ``(module, "Class.name")``."""

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        owner, name = _owner(key)
        return default if owner is None else getattr(owner, name, default)

    def __setitem__(self, key: tuple[str, str], value: Any) -> None:
        owner, name = _owner(key)
        if owner is None:
            return
        if _same(getattr(owner, name, None), value):
            return  # (this worker's value is the parent's already: a table its import filled)
        if type(value) in (dict, list):
            value = copy.deepcopy(value)  # (a task's change to it stays in its batch: set anew)
        try:
            setattr(owner, name, value)
        except Exception as exc:  # noqa: BLE001 - (a module refusing it): the others still go
            log.debug("picklepool: %s could not be set here (%r): %r", WHAT, key, exc)

    def pop(self, key: tuple[str, str], default: Any = None) -> Any:
        owner, name = _owner(key)
        if owner is not None and name in vars(owner):
            delattr(owner, name)
        return default


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
    """The module *name*, imported here if need be; None where it cannot be (a module the
    parent made from a file under another name): not tried again until the parent's change."""
    module = sys.modules.get(name)
    if module is not None or name in _unimportable:
        return module
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - its globals are not set here; the others are
        log.debug("picklepool: %s: %s cannot be imported here: %r", WHAT, name, exc)
        _unimportable.add(name)
        return None


def withdraw() -> None:
    """Before an initializer runs: see ``Overlay.withdraw``."""
    if _overlay.added:
        _overlay.withdraw(_Globals())  # type: ignore[arg-type]


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    if _overlay.added:
        _overlay.rebase(_Globals())  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Set in this worker's modules the globals pickled in *data* (None: the parent changed
    none), and set back this worker's own where the parent's is the module's own again."""
    if data is None and not _overlay.added:  # (the usual case)
        return
    if data != _overlay.applied:
        _unimportable.clear()
    _overlay.apply(_Globals(), data)  # type: ignore[arg-type]
