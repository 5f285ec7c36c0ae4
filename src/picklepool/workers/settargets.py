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
``M.X[k] = ...``, ``M.X.append(...)`` (a method that changes a dict, list, set or array in
place), each also deeper in the value (``M.X["paths"].append(...)``, ``M.X[0].y = ...``,
``del M.X[k]``), ``numpy.copyto(M.X, ...)``, ``random.shuffle(M.X)``, ``heapq.heappush(M.X,
...)`` and the like, ``out=M.X``, ``M.X.fillna(0, inplace=True)``, ``for M.X in ...``,
``setattr(M, "X", ...)`` and pytest's
``monkeypatch.setattr(M, "X", ...)`` (or ``("pkg.M.X", ...)``),
``unittest.mock``'s ``patch.object(M, "X", ...)``, ``patch("pkg.M.X", ...)`` and
``patch.dict(M.X, ...)``. What counts as deleting: ``del M.X``, ``delattr(M, "X")``,
``monkeypatch.delattr(M, "X")`` (or ``("pkg.M.X")``).
"""

from __future__ import annotations

import ast
from typing import NamedTuple

MODULES = "<sys.modules>"  # a chain's head: the module's dotted name follows
EVERY = "*"  # a chain's last part: every attribute of the module

# the methods that change a dict, list, set, deque or array in place (config.PATHS.append(x))
CHANGES = frozenset(
    "append extend insert update setdefault pop popitem remove clear add discard sort reverse "
    "appendleft extendleft popleft rotate move_to_end difference_update intersection_update "
    "symmetric_difference_update fill put itemset resize setfield".split()
)
# functions that change their first argument in place (numpy.copyto(config.W, new),
# random.shuffle(config.ITEMS), heapq.heappush(config.QUEUE, item))
CHANGERS = frozenset(
    "copyto put place putmask fill_diagonal shuffle heappush heappop heapify heapreplace "
    "heappushpop insort insort_left insort_right".split()
)
_IMPORTERS = frozenset({"import_module", "__import__"})


class Found(NamedTuple):
    """What :func:`read` found in a source."""

    chains: frozenset[tuple[str, ...]]  # the attribute chains it sets (or deletes)
    imports: dict[str, str]  # {name: module} for the names its imports bind
    changed: frozenset[tuple[str, ...]]  # those of the chains it (also) changes in place
    deleted: frozenset[tuple[str, ...]] = frozenset()  # those it (also) deletes


NOTHING = Found(frozenset(), {}, frozenset())


class _Chains(set):  # type: ignore[type-arg]
    """The chains found, those found changed in place (``changed``) and deleted (``deleted``)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed: set[tuple[str, ...]] = set()
        self.deleted: set[tuple[str, ...]] = set()


def read(source: str, in_place: bool = True) -> Found:
    """The attribute chains *source* sets, ``{name: module}`` for the names its imports bind
    (``import a.b as c``: ``{"c": "a.b"}``; ``from a import b``: ``{"b": "a.b"}``, a submodule
    or not), the chains whose value it changes in place (``M.X[k] = v``, ``M.X.append(v)``,
    ``patch.dict``), not only binds anew (``M.X = v``: what another module imported from M
    before keeps the old value, in the loop), and those it deletes (``del M.X``). Empty for
    a source that does not parse.
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
        elif isinstance(node, ast.AnnAssign | ast.For | ast.AsyncFor):  # (for config.SCALE in ...)
            _stores([node.target], out, in_place)
        elif isinstance(node, ast.AugAssign):  # (config.W += 1: a list's or array's in place)
            _stores([node.target], out, in_place, augmented=True)
        elif isinstance(node, ast.Delete):
            _stores(list(node.targets), out, in_place, deleting=True)
        elif isinstance(node, ast.Call):
            _call(node, out, in_place)
    return Found(frozenset(out), imports, frozenset(out.changed), frozenset(out.deleted))


def targets(source: str) -> set[tuple[str, ...]]:
    """The attribute chains *source* sets (:func:`read`'s first part)."""
    return set(read(source)[0])


def _stores(
    stores: list[ast.AST],
    out: set[tuple[str, ...]],
    in_place: bool,
    augmented: bool = False,
    deleting: bool = False,
) -> None:
    for store in stores:
        if isinstance(store, ast.Tuple | ast.List | ast.Starred):
            stores.extend(store.elts if not isinstance(store, ast.Starred) else [store.value])
            continue
        chain, within = _base(store)  # (config.OPTIONS["mode"] = ..., config.OPTIONS["a"].b = ...)
        if within and not in_place:
            continue  # (in place, deep in the value: a module's own cache)
        if deleting and not within:  # (del config.X)
            _add(chain, out, deleted=True)
            continue
        _add(chain, out, within or (augmented and in_place and chain is not None and len(chain) > 1))


def _base(node: ast.AST) -> tuple[tuple[str, ...] | None, bool]:
    """The chain whose value *node* reaches, and whether through an item of it (changed in
    place then): ``config.OPTIONS["paths"]``, ``config.OPTIONS["a"].b`` and
    ``config.OPTIONS.get("paths")`` give ``(("config", "OPTIONS"), True)``, ``config.X``
    gives ``(("config", "X"), False)``."""
    base, within, here = node, False, node
    while isinstance(here, ast.Attribute | ast.Subscript | ast.Call):
        if isinstance(here, ast.Call):  # (a method's result: OPTIONS.get("paths"))
            if not isinstance(here.func, ast.Attribute) or _chain(here) is not None:
                break  # (a function's, or importlib.import_module("config"): a chain's head)
            here = here.func.value
            base, within = here, True
            continue
        if isinstance(here, ast.Subscript):
            base, within = here.value, True
        here = here.value
    return _chain(base), within


def _call(node: ast.Call, out: set[tuple[str, ...]], in_place: bool) -> None:
    func, args = node.func, node.args
    name = _chain(func) or ()
    if in_place:
        if isinstance(func, ast.Attribute) and func.attr in CHANGES:  # (config.PATHS.append(x))
            _add(_base(func.value)[0], out, True)
        if name[-1:] and name[-1] in CHANGERS and args:  # (numpy.copyto(config.W, new))
            _add(_base(args[0])[0], out, True)
        for keyword in node.keywords:  # (numpy.add(a, b, out=config.W))
            if keyword.arg == "out":
                _add(_base(keyword.value)[0], out, True)
            elif keyword.arg == "inplace" and isinstance(func, ast.Attribute):  # (pandas')
                _add(_base(func.value)[0], out, True)
    if name[-1:] == ("delattr",) and args:  # delattr(M, "X"), monkeypatch.delattr(M, "X" | "pkg.M.X")
        text = _text(args[0])
        if text is not None:
            _add((MODULES, *text.split(".")), out, deleted=True)
        elif len(args) >= 2 and (target := _chain(args[0])) is not None and (key := _text(args[1])):
            _add((*target, key), out, deleted=True)
    elif name[-1:] == ("setattr",) and args and (text := _text(args[0])) is not None:
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


def _add(
    chain: tuple[str, ...] | None, out: set[tuple[str, ...]], changed: bool = False, deleted: bool = False
) -> None:
    """Add *chain*: a name alone only where what it holds is *changed* in place (``OPTIONS``
    of ``from config import OPTIONS``), not bound anew (the script's own global); *deleted*:
    the script deletes it (``del config.X``)."""
    if chain is None or len(chain) < (1 if changed else 2):
        return
    if chain[-1] == "__dict__":  # (config.__dict__.update(...), config.__dict__[k] = v)
        chain, changed, deleted = (*chain[:-1], EVERY), False, False
    elif chain[-1] == EVERY:  # (vars(config).update(...): its attributes bound anew)
        changed = deleted = False
    out.add(chain)
    if isinstance(out, _Chains):
        if changed:
            out.changed.add(chain)
        if deleted:
            out.deleted.add(chain)


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
