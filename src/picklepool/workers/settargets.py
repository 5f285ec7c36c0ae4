"""What a script's source sets on modules, read in its syntax tree (``workers.moduleglobals``).

:func:`read` gives the attribute chains the source assigns (``("config", "DEBUG")`` for
``config.DEBUG = True``) and the modules its ``import`` statements bind, anywhere in the file
(also inside a function: ``def main(): import config``). A chain starts from a name of the
script, or from :data:`MODULES` followed by a module's dotted name where the source names the
module by a string (``importlib.import_module("config").DEBUG = True``,
``mock.patch("config.DEBUG", True)``). Its last part is :data:`EVERY` where the names set
are not in the source (``setattr(config, name, value)``, ``vars(config).update(values)``,
``config.__dict__[name] = value``): every plain value of that module is then sent.

What counts as setting: ``M.X = ...`` (also in a tuple, and ``+=``, ``M.X: T = ...``),
``M.X[k] = ...``, ``M.X.append(...)`` (a method that changes a dict, list or set in place),
``setattr(M, "X", ...)`` and pytest's ``monkeypatch.setattr(M, "X", ...)`` (or
``("pkg.M.X", ...)``),
``unittest.mock``'s ``patch.object(M, "X", ...)``, ``patch("pkg.M.X", ...)`` and
``patch.dict(M.X, ...)``.
"""

from __future__ import annotations

import ast
from typing import NamedTuple

MODULES = "<sys.modules>"  # a chain's head: the module's dotted name follows
EVERY = "*"  # a chain's last part: every attribute of the module

# the methods that change a dict, list or set in place (config.PATHS.append(x))
CHANGES = frozenset(
    "append extend insert update setdefault pop popitem remove clear add discard sort reverse".split()
)
_IMPORTERS = frozenset({"import_module", "__import__"})


class Found(NamedTuple):
    """What :func:`read` found in a source."""

    chains: frozenset[tuple[str, ...]]  # the attribute chains it sets
    imports: dict[str, str]  # {name: module} for the names its imports bind
    changed: frozenset[tuple[str, ...]]  # those of the chains it (also) changes in place


NOTHING = Found(frozenset(), {}, frozenset())


class _Chains(set):  # type: ignore[type-arg]
    """The chains found, and (``changed``) those found changed in place."""

    def __init__(self) -> None:
        super().__init__()
        self.changed: set[tuple[str, ...]] = set()


def read(source: str, in_place: bool = True) -> Found:
    """The attribute chains *source* sets, ``{name: module}`` for the names its imports bind
    (``import a.b as c``: ``{"c": "a.b"}``; ``from a import b``: ``{"b": "a.b"}``, a submodule
    or not), and the chains whose value it changes in place (``M.X[k] = v``, ``M.X.append(v)``,
    ``patch.dict``), not only binds anew (``M.X = v``: what another module imported from M
    before keeps the old value, in the loop). Empty for a source that does not parse.
    *in_place* False: only what binds an attribute anew (a module's code filling another's
    cache is its own)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return NOTHING
    out = _Chains()
    imports: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    imports[alias.asname] = alias.name
                else:
                    head = alias.name.partition(".")[0]
                    imports[head] = head
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Assign):
            _stores(list(node.targets), out, in_place)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            _stores([node.target], out, in_place)
        elif isinstance(node, ast.Call):
            _call(node, out, in_place)
    return Found(frozenset(out), imports, frozenset(out.changed))


def targets(source: str) -> set[tuple[str, ...]]:
    """The attribute chains *source* sets (:func:`read`'s first part)."""
    return set(read(source)[0])


def _stores(stores: list[ast.AST], out: set[tuple[str, ...]], in_place: bool) -> None:
    for store in stores:
        changed = isinstance(store, ast.Subscript)  # (in place: OPTIONS["mode"] = ... too)
        if changed and not in_place:
            continue
        while isinstance(store, ast.Subscript):  # (config.OPTIONS["mode"] = ...)
            store = store.value
        if isinstance(store, ast.Tuple | ast.List):
            stores.extend(store.elts)
            continue
        _add(_chain(store), out, changed)


def _call(node: ast.Call, out: set[tuple[str, ...]], in_place: bool) -> None:
    func, args = node.func, node.args
    name = _chain(func) or ()
    if in_place and isinstance(func, ast.Attribute) and func.attr in CHANGES:  # (config.PATHS.append(x))
        _add(_chain(func.value), out, True)
    if name[-1:] == ("setattr",) and args and (text := _text(args[0])) is not None:
        _add((MODULES, *text.split(".")), out)  # (monkeypatch.setattr("config.X", v))
    elif name[-1:] == ("setattr",) or name[-2:] == ("patch", "object"):
        if len(args) >= 2:  # setattr(M, "X", v), monkeypatch.setattr(M, "X", v), patch.object
            target = _chain(args[0])
            if target is not None:
                key = _text(args[1])
                out.add((*target, key if key is not None else EVERY))
    elif name[-1:] == ("patch",) or (in_place and name[-2:] == ("patch", "dict")):
        if args:  # patch("pkg.config.DEBUG", True), patch.dict(config.OPTIONS, {...})
            text = _text(args[0])
            dict_patch = name[-1] == "dict"  # (patch.dict changes the dict in place)
            _add(_chain(args[0]) if text is None else (MODULES, *text.split(".")), out, dict_patch)


def _add(chain: tuple[str, ...] | None, out: set[tuple[str, ...]], changed: bool = False) -> None:
    """Add *chain*: a name alone only where what it holds is *changed* in place (``OPTIONS``
    of ``from config import OPTIONS``), not bound anew (the script's own global)."""
    if chain is None or len(chain) < (1 if changed else 2):
        return
    if chain[-1] == "__dict__":  # (config.__dict__.update(...), config.__dict__[k] = v)
        chain, changed = (*chain[:-1], EVERY), False
    elif chain[-1] == EVERY:  # (vars(config).update(...): its attributes bound anew)
        changed = False
    out.add(chain)
    if changed and isinstance(out, _Chains):
        out.changed.add(chain)


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _chain(node: ast.AST) -> tuple[str, ...] | None:
    """``("a", "b", "c")`` for the expression ``a.b.c``; ``(MODULES, "m", "c")`` for
    ``importlib.import_module("m").c``; ``("a", EVERY)`` for ``vars(a)``; None otherwise."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    if isinstance(node, ast.Call) and len(node.args) == 1:
        called = _chain(node.func) or ()
        if called[-1:] and called[-1] in _IMPORTERS and (text := _text(node.args[0])) is not None:
            names = text.split(".")  # (__import__("a.b") is the package a)
            return (MODULES, *(names if called[-1] == "import_module" else names[:1]), *reversed(parts))
        if called == ("vars",) and not parts and (inner := _chain(node.args[0])) is not None:
            return (*inner, EVERY)
    return None
