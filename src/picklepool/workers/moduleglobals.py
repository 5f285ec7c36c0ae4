"""The globals of its own modules that the script sets, set in a worker too.

A script imports a module of its project and sets what that module reads: ``config.DEBUG =
True`` or ``settings.SCALE = args.scale`` (from its command line), ``config.OPTIONS["mode"]
= "fast"``, ``config.PATHS.append(extra)``, an attribute of one of its classes
(``config.Settings.RETRIES = 5``), a function replaced by one of its own (``client.fetch =
fake_fetch``). In the loop the call replaces, the tasks ran with those values; a warm worker
imported the module afresh, so the same task read ``DEBUG = False`` and computed otherwise,
silently (under joblib too).

What is sent: the attributes the script's own code assigns on a module of the user's, read
in its source (``__main__``'s file, its zip application's, or the cells IPython keeps in
``In``), at its top or in its functions (``workers.settargets`` lists the forms: ``M.X =
...``, ``M.X[k] = ...``, ``M.X.append(...)``, ``setattr``, ``unittest.mock.patch``, ...),
where ``M`` is a name the script binds to the module, at its top or by an ``import`` in a
function, or the module's dotted name in a string; a name it imports from the module and
changes in place (``from config import OPTIONS``, then ``OPTIONS["mode"] = "fast"``) counts
too. The code of the user's other modules is read too (each once, as it is imported, and
only where a line may set an attribute of a module of the user's it imports): what it binds
on another module of the user's (the program's command-line module's ``config.DEBUG =
args.debug``, behind an installed command's two-line script) is sent as well, not what it
changes in place (a cache it fills in another module stays each process's own), and one of
its values that does not pickle is left out without a warning (a connection it made). Such
a value is set in a worker when the parent's changes (:data:`ONCE`), not again at each batch:
a task of that module setting it there (a client made lazily) keeps its own, as in a loop.
Where the names set are not in the source (``setattr(config, name, value)``,
``vars(config).update(values)``), every public attribute of the module that holds plain data
(numbers, strings, and builtin containers of those only: a dict of the module's clients is
its own) is sent; ``setattr(config.cfg, name, value)``: those of ``cfg``, each alone. What
the script sets on an object the module holds (``config.cfg.batch = 64``,
``config.Settings.default.retries = 3``, ``mock.patch.object(config.client, "retries", 3)``,
``config.cfg.layers.append(x)``) is set on the worker's own object, attribute by attribute
(``setattr(<the worker's config.cfg>, "batch", <the parent's value>)``; the last changed in
place), never by replacing the object: the module made its own at import, in each process (a
client with a background thread reading its queue, a ``threading.local`` holding a
connection, an instance holding its pid, lock and cache), and the loop's tasks, as joblib's,
use the process's own. The attribute is read from the parent's object's own ``__dict__`` or
slots (or a property of its class); while the object has none (before the script's line ran,
or when it never runs) nothing is sent. An object the script binds on the module itself
(``config.client = Client(...)``) is sent whole. Where a value the parent changed in place
holds live objects (``config.CLIENTS["b"] = c`` on the module's dict of clients, an instance
changed through its own method, ``config.client.update(...)``), the worker keeps its own
item or attribute at the same key, index or name where it is of the same type and does not
pickle (it holds a lock, a thread, a queue, a connection): the parent's would arrive as a
dead copy. A module of the user's is one of a ``.py`` file outside the standard library,
site-packages and picklepool (``workers.reloads.library``). Those attributes' values are
sent as they are at each call (pickled apart, with hybrid: the script's functions by value),
when they changed, and set in a worker before each batch's tasks run, once the batch's
functions are loaded (importing the module if need be: the script imported it). What the
parent changes in place (a dict, list or set, an instance whose state is its ``__dict__``
and slots) is changed in place there, so that another module's ``from config import
OPTIONS`` sees it too; what it binds anew is bound anew, and what another module imported
before keeps the old value, as in the parent (a numpy array changed in place is copied into
the worker's, of the same shape and dtype). An attribute the script deletes (``del
config.X``, ``delattr``) is sent as :data:`DELETED` and deleted in a worker too. The
worker's own value returns once the script's is gone (also when a patch is undone: the
module's own function is not sent, as by reference it would load as the patched one; an
object's attribute the parent's object no longer has, a ``patch.object(config.client, ...)``
undone, is deleted from the worker's, or its own set back). The module's own code is never
looked at: what it sets itself (a lazily made connection, a cache, a counter, a per-process
value) is each process's own, as before.

Not sent: a seeded random number generator (``random.Random``, numpy's ``Generator`` or
``RandomState``): a copy in each worker would draw the same numbers where the loop drew each
once; a ``RuntimeWarning`` says so. Not seen: an attribute set through a function of the
module itself (``config.configure(debug=True)``, through its ``global DEBUG``: set the
attribute itself, or in an initializer), or through a name bound otherwise (a module passed
as a function's argument, or kept on an object). An attribute of plain data an object keeps
for itself (its pid) is sent with the others where the script changes the object through its
own method (``config.client.update(...)``) or sets names the source does not spell. A value
that does not pickle, or takes more than :data:`LIMIT` pickled, is left out with a
``RuntimeWarning`` naming it, once; one that does not load in a worker (a ``unittest.mock``
object that was called) with a ``RuntimeWarning`` there. Cost: the script is read once
(IPython's new cells as they come); per call, a look at the version of each targeted
module's namespace, of each object an attribute is set on, of each dict set and of each
dict and instance within (CPython's
``ma_version_tag``, or its values' identities), at the items of each list, set and deque
(held, compared by identity; a list longer than :data:`_ITEMS`: its length only): about 0.1
us per attribute the script sets; and the pickle of any other object within that may change
in place (a numpy array, a ``bytearray``: :func:`_contents`), unless its value was left out.
Process-wide: not sent to a dask cluster's shared workers.
"""

from __future__ import annotations

import array
import collections
import copy
import ctypes
import functools
import importlib
import logging
import operator
import os
import pickle
import re
import sys
import threading
import tokenize
import warnings
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType, SimpleNamespace
from typing import Any

from .. import signalhold
from .overlay import Overlay, dumps_each
from .reloads import file_of, library, users
from .settargets import EVERY, MODULES, NOTHING, Found, read

log = logging.getLogger(__name__)

WHAT = "a global of a module of the program"

IN_PLACE = "in place"  # a key's flag: the value is set in place (changed so in the parent)
ONCE = "once"  # a key's flag: set as the parent's value changes, not again at each batch


class _Deleted:
    """The value sent for an attribute the script deleted (``del config.X``): deleted in a
    worker too. Pickled by reference: one object in every process."""

    __slots__ = ()

    def __reduce__(self) -> str:
        return "DELETED"

    def __repr__(self) -> str:
        return "DELETED"


DELETED = _Deleted()
MAX_SOURCE = 1 << 21  # bytes of the script read at most
LIMIT = 1 << 20  # bytes a value may take pickled (it travels with every batch)
_MAIN = ("__main__", "__mp_main__")


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
    """In place of a version where there is none: a dict's keys and values, held and
    compared by identity (:class:`_Items`)."""

    __slots__ = ("d",)

    def __init__(self, d: dict[Any, Any]) -> None:
        self.d = d

    @property
    def value(self) -> Any:
        return _Items((*self.d, *self.d.values()))


_versions = _version_view()
_VALUE = operator.attrgetter("value")


def _watch(d: dict[Any, Any]) -> Any:
    return _versions(d) if _versions is not None else _Identities(d)


# -- the parent's side ------------------------------------------------------------------------


def _users(module: Any) -> bool:
    """Whether *module* is one of the user's (``workers.reloads.users``), not the script.
    False for an object whose attributes raise (``users`` tells first)."""
    try:
        return users(module) and getattr(module, "__name__", None) not in _MAIN
    except Exception as exc:  # noqa: BLE001 - whatever the object's own __getattr__ raises
        if signalhold.from_handler(exc):  # (an alarm's deadline, in the parent)
            raise
        return False


def _resolve(
    namespace: dict[str, Any], imports: dict[str, str], chain: tuple[str, ...]
) -> tuple[Any, list[Any], tuple[str, ...]] | None:
    """``(module, through, path)`` where *chain* (``workers.settargets``), read from the
    script's *namespace* or else through its *imports*, sets the attribute ``path[-1]`` of
    an object of a module of the user's: ``path`` is the attribute names from the module
    (``("cfg", "batch")`` for ``config.cfg.batch = 64``), *through* the objects its first
    names reach in the parent (``[config.cfg]``), each a class defined in the module or an
    instance (:func:`_instance`); the attribute's owner is ``through[-1]``, or the module.
    None for another."""
    head = chain[0]
    obj = namespace.get(head) if head != MODULES else None
    if not isinstance(obj, ModuleType) and head != MODULES:
        imported = imports.get(head)  # (import config in a function; from config import OPTIONS)
        if imported is None:
            return None
        chain = (MODULES, *imported.split("."), *chain[1:])
    i = 1
    if chain[0] == MODULES:  # the longest dotted name that is a module imported
        for i in range(len(chain) - 1, 1, -1):
            obj = sys.modules.get(".".join(chain[1:i]))
            if isinstance(obj, ModuleType):
                break
        else:
            return None
    while i < len(chain) - 1 and isinstance(obj, ModuleType):
        nxt = getattr(obj, chain[i], None)
        if not isinstance(nxt, ModuleType):
            break
        obj, i = nxt, i + 1
    if not isinstance(obj, ModuleType) or not _users(obj):
        return None
    module, rest = obj, chain[i:]
    if not rest:  # (helpers.add(x): a method of the module itself, not an attribute set)
        return None
    through: list[Any] = []
    owner: Any = module
    for name in rest[:-1]:  # (config.cfg.batch = 64: set on the worker's own cfg, not cfg sent)
        held = _attribute(owner, name)
        if isinstance(held, type):
            if getattr(held, "__module__", None) != module.__name__:
                return None
        elif not _instance(held):
            return None
        through.append(held)
        owner = held
    return module, through, tuple(rest)


def _attribute(owner: Any, name: str, default: Any = None) -> Any:
    """*owner*'s own attribute *name*: a module's or class's, in its namespace; an
    instance's, in its ``__dict__`` or slots, or through a property of its class (not a
    method or other attribute of its class); *default* where it has none."""
    if isinstance(owner, ModuleType | type):
        return vars(owner).get(name, default)
    own = getattr(owner, "__dict__", None)
    if isinstance(own, dict) and name in own:
        return own[name]
    if name in _slots(type(owner)) or _settable(type(owner), name):
        return getattr(owner, name, default)
    return default


def _settable(kind: type, name: str) -> bool:
    """Whether *kind* has a property (or another descriptor with a setter) *name*."""
    for cls in kind.__mro__:
        found = cls.__dict__.get(name, _MISSING)
        if found is not _MISSING:
            return hasattr(type(found), "__set__")
    return False


def _instance(value: Any) -> bool:
    """Whether *value* is an object whose attributes the script may set (``cfg.batch = 64``):
    one with a ``__dict__`` or ``__slots__``, not a module, class, function or method."""
    if isinstance(value, _NOT_INSTANCES) or type(value) in _PLAIN:
        return False
    return isinstance(getattr(value, "__dict__", None), dict) or bool(_slots(type(value)))


_slot_names: dict[type, tuple[str, ...]] = {}


def _slots(kind: type) -> tuple[str, ...]:
    """The attribute names *kind*'s ``__slots__`` (and its bases') declare, as stored."""
    names = _slot_names.get(kind)
    if names is None:
        found: list[str] = []
        for cls in kind.__mro__:
            declared = cls.__dict__.get("__slots__", ())
            for name in (declared,) if isinstance(declared, str) else declared:
                if name in ("__dict__", "__weakref__"):
                    continue
                if name.startswith("__") and not name.endswith("__"):
                    name = f"_{cls.__name__.lstrip('_')}{name}"  # (as Python mangles it)
                found.append(name)
        names = _slot_names[kind] = tuple(found)
    return names


_MISSING = object()


def _state(obj: Any) -> dict[str, Any]:
    """*obj*'s attributes: its ``__dict__``'s and its slots' (those set)."""
    out = dict(getattr(obj, "__dict__", None) or {})
    for name in _slots(type(obj)):
        value = getattr(obj, name, _MISSING)
        if value is not _MISSING:
            out[name] = value
    return out


def _slot_values(obj: Any) -> Any:
    """What is watched of an instance with slots: their values, held (:class:`_Items`)."""
    return _Items(getattr(obj, name, _MISSING) for name in _slots(type(obj)))


_NOT_INSTANCES = (
    type,
    ModuleType,
    FunctionType,
    BuiltinFunctionType,
    MethodType,
    functools.partial,
)


def _script_key(namespace: dict[str, Any]) -> Any:
    """What the script's source is known by: ``("cells", n)`` for IPython's *n* cells, else
    its file's path (read once: the code running is what the file held at the start)."""
    cells = namespace.get("In")
    if type(cells) is list:
        return ("cells", len(cells))
    path = namespace.get("__file__")
    return path if isinstance(path, str) else None


# parent: the script's key and what its source sets (workers.settargets.read); the IPython
# cells read so far
_script: tuple[Any, Found] = (None, NOTHING)
_cells_read = 0


def _chains(namespace: dict[str, Any]) -> frozenset[tuple[str, ...]]:
    """The attribute chains the script (whose namespace is *namespace*) sets: read once from
    its file (or its loader: a zip application's), or from IPython's cells as new ones come."""
    global _script, _cells_read
    key = _script_key(namespace)
    if key == _script[0]:
        return _script[1].chains
    found = NOTHING
    if type(key) is tuple:
        cells = namespace["In"]
        if _cells_read <= len(cells) and _script[0] is not None and type(_script[0]) is tuple:
            found = _script[1]
        else:
            _cells_read = 0
        for cell in cells[_cells_read:]:
            if isinstance(cell, str):
                found = _joined(found, read(cell))
        _cells_read = len(cells)
    elif key is not None:
        found = read(_source(namespace, key))
    _script = (key, found)
    return found.chains


def _joined(a: Found, b: Found) -> Found:
    """What two sources (two cells) set, together."""
    imports = {**a.imports, **b.imports}
    return Found(a.chains | b.chains, imports, a.changed | b.changed, a.deleted | b.deleted)


def _source(namespace: dict[str, Any], path: str) -> str:
    """The script's source: its file's, else its loader's (a script in a zip application,
    ``python app.pyz``); empty where neither gives it."""
    try:
        if os.path.getsize(path) <= MAX_SOURCE:
            with tokenize.open(path) as f:  # (its declared encoding, as Python reads it)
                return f.read()
        return ""
    except (OSError, SyntaxError, UnicodeDecodeError):
        pass
    try:
        spec = namespace.get("__spec__")
        source = namespace["__loader__"].get_source(getattr(spec, "name", None) or "__main__")
    except Exception:  # noqa: BLE001 - no loader, or one that cannot give it
        return ""
    return source if isinstance(source, str) and len(source) <= MAX_SOURCE else ""


class _Items(tuple):  # type: ignore[type-arg]
    """A list's or set's items as read last, held (no item's address is taken by another
    while held), equal to another read only where each item is the same object."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is _Items and len(self) == len(other) and all(map(operator.is_, self, other))

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]


# parent: the user's modules read (id -> the module, the chains its code sets on other
# modules, the modules its imports bind), and how many modules sys.modules held then
_Read = tuple[Any, Found]
_modules_read: dict[int, _Read] = {}  # (a module, and what settargets.read found in it)
_modules_seen = 0
_IMPORTS = re.compile(r"^[ \t]*(?:from[ \t]+([\w.]+)[ \t]+)?import[ \t]+(\([^)]*\)|[^\n#;]+)", re.M)
_HEADS = re.compile(  # the name a line sets an attribute of: name.X = ..., setattr(name, ...)
    r"^[ \t]*([A-Za-z_]\w*)\.[\w.]+[ \t]*(?::[^=\n]*)?[-+*/%&|^@]?=(?!=)"
    r"|setattr\([ \t]*([A-Za-z_]\w*)|patch(?:\.object)?\([ \t]*(['\"]|[A-Za-z_]\w*)"
    r"|(import_module|__import__)\("
    r"|^[ \t]*del[ \t]+([A-Za-z_]\w*)\.|delattr\([ \t]*(['\"]|[A-Za-z_]\w*)",
    re.M,
)


def _sets_on_users(module: Any, source: str) -> bool:
    """Whether *module*'s *source* may set an attribute of a module of the user's it imports
    (a line ``config.X = ...``, ``setattr(config, ...)``, ``patch(...``): worth parsing.
    :func:`workers.settargets.read` takes about 20 us a line; this look, about 1 us."""
    heads = {name for found in _HEADS.findall(source) for name in found if name}
    if not heads:
        return False
    if heads & {"'", '"', "import_module", "__import__"}:
        return True  # (a module named by a string)
    imported: dict[str, str] = {}
    for home, names in _IMPORTS.findall(source):
        for part in names.strip("()").replace("\\", " ").split(","):
            words = part.split()
            if not words:
                continue
            name = words[2] if len(words) == 3 and words[1] == "as" else words[0].split(".")[0]
            full = f"{home}.{words[0]}" if home else (words[0] if len(words) == 3 else name)
            imported[name] = full
    namespace = vars(module)
    for head in heads & imported.keys():
        bound = namespace.get(head)
        if isinstance(bound, ModuleType) and _users(bound):
            return True
        full = imported[head]  # (imported in a function; or an object imported from a module)
        for home in (full, full.rpartition(".")[0]):
            if _users(sys.modules.get(home)):
                return True
    return False


def _modules() -> list[_Read]:
    """The user's modules whose code sets attributes of other modules (``config.DEBUG =
    args.debug`` in the program's command-line module), each read once, as it is imported."""
    global _modules_seen, _modules_read
    if len(sys.modules) != _modules_seen:
        before = _modules_read
        _modules_read = {}
        for module in list(sys.modules.values()):
            found = before.get(id(module))
            if found is None:
                try:
                    found = (module, _module_chains(module))
                except Exception as exc:  # noqa: BLE001 - (an object in sys.modules that raises)
                    if signalhold.from_handler(exc):
                        _modules_read.update(before)  # (read again next time)
                        raise
                    log.debug("picklepool: %s: %r not read: %r", WHAT, module, exc)
                    found = (module, NOTHING)
            _modules_read[id(module)] = found
        _modules_seen = len(sys.modules)
    return [entry for entry in _modules_read.values() if entry[1].chains]


def _held_elsewhere(module: Any, name: str) -> bool:
    """Whether another module of the user's imported *name* from *module* (``from config
    import OPTIONS``, in its source) and holds another object than *module* holds now: the
    one it imported before the script bound a new one (``config.OPTIONS = load(path)``, then
    ``config.OPTIONS["mode"] = mode``). The value is then bound anew in a worker, not changed
    in place, so that module's keeps what it imported, as in the parent."""
    value = vars(module).get(name)
    if value is None:
        return False
    for other in list(sys.modules.values()):
        if other is module or not isinstance(other, ModuleType):
            continue
        held = vars(other).get(name)
        if held is None or held is value or type(held) is not type(value) or not _users(other):
            continue
        if _imports_from(other, module.__name__, name):
            return True
    return False


_imported_names: dict[int, tuple[Any, set[tuple[str, str]]]] = {}  # id -> (module, {(home, name)})


def _imports_from(module: Any, home: str, name: str) -> bool:
    """Whether *module*'s source has ``from <home> import <name>`` (read once a module)."""
    known = _imported_names.get(id(module))
    if known is None or known[0] is not module:
        found: set[tuple[str, str]] = set()
        try:
            with tokenize.open(file_of(module)) as f:
                source = f.read(MAX_SOURCE)
        except (OSError, SyntaxError, UnicodeDecodeError, TypeError):
            source = ""
        for where, names in _IMPORTS.findall(source):
            for part in names.strip("()").replace("\\", " ").split(","):
                words = part.split()
                if where and words:
                    found.add((where, words[2] if len(words) == 3 and words[1] == "as" else words[0]))
        known = _imported_names[id(module)] = (module, found)
    return (home, name) in known[1]


def _module_chains(module: Any) -> Found:
    """What *module*'s code sets on other modules, binding attributes anew (not what it
    changes in place: a module filling another's cache keeps it each process's own)."""
    if not _users(module):
        return NOTHING
    try:
        path = file_of(module)
        if os.path.getsize(path) > MAX_SOURCE:
            return NOTHING
        with tokenize.open(path) as f:
            source = f.read()
    except (OSError, SyntaxError, UnicodeDecodeError, TypeError):
        return NOTHING
    return read(source, in_place=False) if _sets_on_users(module, source) else NOTHING


# parent: what is watched for a change, and the pickle of the values as read last
_views: list[Any] = []  # versions of the namespaces and classes set, of the dicts set and within
_held: list[Any] = []  # the lists and sets set, and those within (their items are watched)
_long: list[Any] = []  # those longer than _ITEMS (only their lengths are watched)
_slotted: list[Any] = []  # the instances with slots set, or within (their slots are watched)
_opaque: list[Any] = []  # what else is within (an array): its pickle is compared
_too_large: dict[Any, Any] = {}  # key -> its value, left out for its size (the same one: not again)
_TAKES = "pickled, it takes"  # (overlay.dumps_each's reason for one too large)
_spaces: list[dict[str, Any]] = []  # the namespaces the chains start from (the script's, ...)
_heads: list[str] = []  # and the names there (bound anew: another module)
_mods: tuple[str, ...] = ()  # the modules named through imports (imported later: looked at)
_read: tuple[Any, bytes | None] = (None, None)
_ITEMS = 10_000  # items of a list or set watched one by one, at most
_WITHIN = 256  # containers within a value watched, at most


def _signal(sources: Any) -> Any:
    """What is read again each call (C loops only): the names the chains start from (bound
    anew: another module), the modules named through imports, the versions of the dicts, the
    items of the lists and sets (the lengths of long ones), the slots of instances, and the
    pickle of whatever else is within (:func:`_contents`: an array changed in place)."""
    return (
        sources,
        list(map(id, map(dict.get, _spaces, _heads))),
        list(map(id, map(sys.modules.get, _mods))),
        list(map(_VALUE, _views)),
        list(map(_Items, _held)),
        list(map(len, _long)),
        list(map(_slot_values, _slotted)),
        list(map(_contents, _opaque)),
    )


_sources: tuple[Any, Any] = (None, ())
_ran: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (__main__'s namespace, the script's) found


def script_namespace() -> dict[str, Any] | None:
    """The namespace the script runs in: ``__main__``'s, or, where ``__main__`` is a tool of
    an installed library that runs the script in a namespace of its own (``python -m
    cProfile script.py``, ``profile``, ``trace``), that one (None: neither is a dict).

    Under those tools the script's settings of its modules (``config.SCALE = 5``) were not
    read, and the workers computed with the module's own values: a script's results changed
    when it was profiled. The script's namespace is that of the outermost module-level frame
    of ``__main__`` code of the main thread that is not the tool's (kept once found).
    """
    main = getattr(sys.modules.get("__main__"), "__dict__", None)
    if type(main) is not dict:
        return None
    if _ran and _ran[0][0] is main:
        return _ran[0][1]
    tool = main.get("__file__")
    if not isinstance(tool, str) or not library(os.path.abspath(tool)):
        return main
    found = _script_frame_namespace(main)
    if found is None:
        return main
    _ran[:] = [(main, found)]
    return found


def _script_frame_namespace(main: dict[str, Any]) -> dict[str, Any] | None:
    """The globals of the outermost ``<module>`` frame of the main thread run as ``__main__``
    in another namespace than *main* (a file's), or None."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    found = None
    while frame is not None:
        space = frame.f_globals
        if (
            frame.f_code.co_name == "<module>"
            and space is not main
            and space.get("__name__") == "__main__"
            and isinstance(space.get("__file__"), str)
        ):
            found = space  # (the outermost wins: the script, not what it runs)
        frame = frame.f_back
    return found


def forget() -> None:
    """Drop what the parent holds of the program (the interpreter's exit, once no call
    runs): the script's namespace, the user's modules and the values watched in them.
    Held on, they outlived the modules' removal from ``sys.modules`` and the collection that
    follows, and the cycles through ``__main__``'s namespace (its objects, their ``__del__``:
    a file flushed, a temporary folder removed) were never collected."""
    global _script, _cells_read, _modules_read, _modules_seen, _mods, _read, _sources
    _script, _cells_read = (None, NOTHING), 0
    _modules_read, _modules_seen = {}, 0
    _imported_names.clear()
    for kept in (_views, _held, _long, _slotted, _opaque, _spaces, _heads, _ran):
        kept.clear()
    _too_large.clear()
    _mods, _read, _sources = (), (None, None), (None, ())


def pickled() -> bytes | None:
    """``{(module, name): value}`` of the attributes the script (and the code of the user's
    modules) sets on the user's modules (name: ``"Class.attribute"`` for a class's), pickled
    each apart (None: none is set)."""
    global _read, _mods, _sources
    namespace = script_namespace()
    if namespace is None:
        return None
    cells = namespace.get("In")  # (the script's key, as _script_key: inline, as it runs every call)
    key = ("cells", len(cells)) if type(cells) is list else namespace.get("__file__")
    chains = _script[1].chains if key == _script[0] else _chains(namespace)
    if len(sys.modules) != _modules_seen or _sources[0] is not chains:
        modules = _modules()
        main = ((None, namespace, _script[1]),) if chains else ()
        _sources = (chains, main + tuple((m, vars(m), found) for m, found in modules))
    sources = _sources[1]
    if not sources:
        return None
    seen, data = _read
    if seen is not None and seen[0] is sources and _signal(sources) == seen:
        return data
    _spaces[:], _heads[:] = [], []
    mods: set[str] = set()
    entries: list[tuple[Any, Any]] = []
    views: list[Any] = []  # the dicts whose versions are watched
    held: list[Any] = []
    slotted: list[Any] = []
    opaque: dict[Any, list[Any]] = {}  # key -> the objects within its value read whole
    still_large: dict[Any, Any] = {}
    scripted: set[Any] = set()  # (what the script sets: one left out is warned of)
    named_already: set[tuple[str, ...]] = set()
    for source, space, (chains, imports, changed, deleted) in sources:
        heads = {chain[0] for chain in chains if chain[0] != MODULES}
        _spaces.extend([space] * len(heads))
        _heads.extend(heads)
        mods.update(_prefixes(chains, imports))
        for chain in sorted(sorted(chains), key=_named_last):  # (an attribute named: its own key)
            try:
                found = _resolve(space, imports, chain)
                if found is None or found[0] is source:  # (a module's own: each process's own)
                    continue
                module, through, path = found
                owner, name = through[-1] if through else module, path[-1]
                in_place = chain in changed  # (else bound anew: replaced, as in the loop)
                if in_place and owner is module and _held_elsewhere(module, name):
                    in_place = False  # (bound anew too: what another module imported stays)
                views.append(vars(module))
                for holder in through:  # (config.cfg rebound, or its batch: looked at again)
                    if isinstance(holder, type):
                        views.extend(_class_dicts(holder))
                        continue
                    if isinstance(getattr(holder, "__dict__", None), dict):
                        views.append(vars(holder))
                    if _slots(type(holder)):
                        slotted.append(holder)
                if name == EVERY:  # (setattr(config, name, value)): its plain data
                    space_of = vars(owner) if isinstance(owner, ModuleType | type) else _state(owner)
                    named = [(n, v) for n, v in space_of.items() if n[:1] != "_" and _data(v)]
                elif (value := _attribute(owner, name, _MISSING)) is not _MISSING:
                    named = [(name, value)]  # (absent in the parent: not sent, the worker's stays)
                elif chain in deleted:  # (del config.X: gone here, so gone there)
                    named = [(name, DELETED)]
                else:
                    continue
            except Exception as exc:  # noqa: BLE001 - (a module whose attributes raise): the others go
                if signalhold.from_handler(exc):
                    raise
                log.debug("picklepool: %s: %r left out: %r", WHAT, chain, exc)
                continue
            for name, value in named:
                if _defined_there(owner, name, value):
                    continue  # (the module's own def, back after a patch: the worker's own returns)
                sets: tuple[str, ...] = (module.__name__, ".".join((*path[:-1], name)))
                if in_place:
                    sets += (IN_PLACE,)
                if source is not None:  # (another module's code: a task of it may set it too)
                    sets += (ONCE,)
                if sets[:2] in named_already:
                    continue  # (the script's, read first, is the one sent)
                named_already.add(sets[:2])
                if _too_large.get(sets) is value:
                    still_large[sets] = value
                    continue  # (left out for its size at an earlier call: not pickled again)
                generator = _generator(value) or _within(
                    value, views, held, slotted, opaque.setdefault(sets, [])
                )
                if generator:
                    _warn_left_out(sets, _RANDOM.format(generator))
                    continue
                entries.append((sets, value))
                if source is None:
                    scripted.add(sets)
    _mods = tuple(mods)
    left_out: dict[Any, str] = {}
    data = dumps_each(dict(entries).items(), WHAT, LIMIT, None, left_out) if entries else None
    values = dict(entries)
    _too_large.clear()
    _too_large.update(still_large)
    _too_large.update((key, values[key]) for key, why in left_out.items() if why.startswith(_TAKES))
    for key, why in left_out.items():
        if key in scripted:  # (a module's own code setting another's connection: not warned of)
            _warn_left_out(key, why)
        else:
            log.debug("picklepool: %s: %r left out: %s", WHAT, key, why)
    _views[:] = [_watch(d) for d in {id(d): d for d in views}.values()]  # (each dict once)
    unique = list({id(c): c for c in held}.values())
    _held[:] = [c for c in unique if len(c) <= _ITEMS]
    _long[:] = [c for c in unique if len(c) > _ITEMS]
    _slotted[:] = list({id(o): o for o in slotted}.values())
    # (not those of a value left out: a large array would be pickled at every call for nothing)
    _opaque[:] = list({id(o): o for k, objs in opaque.items() if k not in left_out for o in objs}.values())
    _read = (_signal(sources), data)
    return data


def _named_last(chain: tuple[str, ...]) -> bool:
    """Sorts the chains setting names the source does not spell (``setattr(config, name,
    v)``) after the others: an attribute also set by name (``config.PATHS.append(p)``) keeps
    that chain's key (changed in place)."""
    return chain[-1] == EVERY


def _defined_there(owner: Any, name: str, value: Any) -> bool:
    """Whether *value* is the function or class *owner*'s own code defined as *name* (a patch
    undone): not sent, as it would travel by reference and load as the worker's patched one."""
    if not isinstance(value, FunctionType | type) or not isinstance(owner, ModuleType | type):
        return False
    qualname = name if isinstance(owner, ModuleType) else f"{owner.__qualname__}.{name}"
    home = owner.__name__ if isinstance(owner, ModuleType) else owner.__module__
    return getattr(value, "__module__", None) == home and getattr(value, "__qualname__", None) == qualname


_PLAIN = frozenset({type(None), bool, int, float, complex, str, bytes, tuple, frozenset, list, dict, set})


def _data(value: Any) -> bool:
    """Whether *value* is plain data: a number, string or bytes, or a builtin container of
    plain data (what ``setattr(config, name, value)`` sends of the module's values: a dict
    holding the module's client is its own). The first :data:`_ITEMS` items are looked at."""
    todo, budget = [value], _ITEMS
    while todo and budget > 0:
        item = todo.pop()
        kind = type(item)
        budget -= 1
        if kind in _SCALARS:
            continue
        if kind not in _PLAIN:
            return False
        todo.extend(item.values() if kind is dict else item)
        if kind is dict:
            todo.extend(item)
    return True


_RANDOM = (
    "it is a random number generator ({}): each worker would draw the same numbers from its "
    "copy, where the loop drew each number once. Give each task its own seed (for instance "
    "numpy.random.SeedSequence(seed).spawn(n_tasks), passed as an argument)"
)


def _generator(value: Any) -> str:
    """The type's name of *value* where it is a seeded random number generator (the
    stdlib's ``random.Random``, numpy's ``Generator``, ``RandomState`` or a bit generator):
    a copy in each worker would repeat the same draws. Empty for any other value."""
    import random

    kind = type(value)
    if isinstance(value, random.Random) and not isinstance(value, random.SystemRandom):
        return f"{kind.__module__}.{kind.__qualname__}"
    numpy_random = sys.modules.get("numpy.random")
    kinds = tuple(
        k
        for k in (getattr(numpy_random, n, None) for n in ("Generator", "RandomState", "BitGenerator"))
        if isinstance(k, type)
    )
    if not kinds or not isinstance(value, kinds):
        return ""
    home = "numpy.random" if kind.__module__.startswith("numpy.random") else kind.__module__
    return f"{home}.{kind.__qualname__}"


def _within(value: Any, views: list[Any], held: list[Any], slotted: list[Any], opaque: list[Any]) -> str:
    """Add to *views* the dicts and to *held* the lists, sets and deques in *value* (itself,
    and those it holds: ``config.TABLE["a"]["b"] = 2`` changes a dict within), at most
    :data:`_WITHIN` of them; an instance's attributes too (its ``__dict__`` watched, or its
    slots: the instance added to *slotted*); to *opaque* any other object that may change
    in place (a numpy array, a ``bytearray``, an ``array.array``, an object with a pickling
    of its own, as a pandas ``DataFrame``): its pickle is compared. A value too large to watch
    so (more than :data:`_WITHIN` containers, a list longer than :data:`_ITEMS`) is added to
    *opaque* whole. Returns the type's name of a seeded random generator found within
    (:func:`_generator`: the value is not sent), else ``""``."""
    todo, count, steps = [value], 0, 0
    while todo and count < _WITHIN and steps < 100 * _ITEMS:
        item = todo.pop()
        kind = type(item)
        steps += 1
        if kind is dict or (kind not in _PLAIN and isinstance(item, dict)):  # (defaultdict, ...)
            views.append(item)
            todo.extend(item.values())
        elif kind is list or kind is set or (kind not in _PLAIN and isinstance(item, _HELD)):
            held.append(item)
            if len(item) > _ITEMS:
                break  # (its length only would be watched: the whole value is compared)
            todo.extend(item)
        elif kind is tuple or kind is frozenset:
            todo.extend(item)
        elif kind in _PLAIN or isinstance(item, _immutable()):
            continue
        elif (generator := _generator(item)) and item is not value:
            return generator
        elif not _instance(item) or not _in_place(item):
            opaque.append(item)
        else:
            if isinstance(getattr(item, "__dict__", None), dict):
                views.append(vars(item))
            if _slots(kind):
                slotted.append(item)
            todo.extend(_state(item).values())
        count += 1
    else:
        if not todo:
            return ""
    opaque.append(value)  # (not watched to its end)
    return ""


_HELD = (list, set, collections.deque)


def _contents(obj: Any) -> Any:
    """What is compared of an object :func:`_within` cannot watch otherwise: its pickle
    (the standard library's; an array's data in it), or its identity where it does not pickle."""
    try:
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - (a lock, a connection): its identity only
        return id(obj)


@functools.cache
def _immutable() -> tuple[type, ...]:
    """The types of values that never change in place: not compared (:func:`_within`)."""
    import datetime
    import enum
    import numbers

    return (
        numbers.Number,  # (numpy's scalars, Decimal, Fraction)
        enum.Enum,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        datetime.tzinfo,
        re.Pattern,
        range,
        slice,
        _Deleted,
        *_NOT_INSTANCES,
    )


def _prefixes(chains: frozenset[tuple[str, ...]], imports: dict[str, str]) -> tuple[str, ...]:
    """Every dotted prefix of the modules the chains name through imports or by a string (one
    imported only after a call is looked up again at the next)."""
    out: set[str] = set()
    for chain in chains:
        if chain[0] == MODULES:
            parts = list(chain[1:-1])
        elif chain[0] in imports:
            parts = imports[chain[0]].split(".")
        else:
            continue
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return tuple(out)


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
    ``(module, "Class.name")``, ``(module, "cfg.batch")`` (this worker's own ``config.cfg``,
    a class's instance too: ``"Settings.default.retries"``), with :data:`IN_PLACE` third
    where the parent changed the value in place (``config.OPTIONS["mode"] = "fast"``,
    ``config.cfg.layers.append(x)``): a dict,
    list or set, or an instance whose state is its ``__dict__`` and slots, is then read as a
    copy and set in place (another module's ``from config import OPTIONS``, or ``cfg``,
    holds the same one, as in the parent). Where the parent bound the name anew
    (``config.OPTIONS = {...}``), the worker's module gets a copy of the parent's value and
    what another module imported before keeps the old one, as in the parent."""

    def get(self, key: tuple[str, ...], default: Any = None) -> Any:
        owner, name = _owner(key)
        if owner is None:
            value = default
        elif isinstance(owner, ModuleType | type):
            value = getattr(owner, name, default)
        else:  # (an instance's own: not its class's method, that a patch undone leaves)
            value = _attribute(owner, name, default)
        if IN_PLACE not in key[2:]:
            return value
        if isinstance(value, _REFILLED) or _same_array(value, value):  # (the worker's own, as it is now)
            return _deep(value)
        return _Attributes(value) if _in_place(value) else value

    def __setitem__(self, key: tuple[str, ...], value: Any) -> None:
        owner, name = _owner(key)
        if owner is None:
            return  # (a module this worker cannot import)
        if ONCE in key[2:]:  # (set again only when the parent's value changes: a task's stays)
            if _once.get(key) is value:
                return
            _once[key] = value
        if value is DELETED:  # (del config.X in the parent)
            if _attribute(owner, name, _MISSING) is not _MISSING:
                delattr(owner, name)
            return
        current: Any = getattr(owner, name, None)
        if current is value or _same(current, value):
            return
        try:
            if type(value) is _Attributes:  # (the worker's own instance, as it was, back)
                if current is not value.obj:
                    setattr(owner, name, value.obj)
                _set_attributes(value.obj, value.attributes)
            elif IN_PLACE not in key[2:] or not _refill(current, value):  # (bound anew in the parent)
                setattr(owner, name, _copy(value))
        except Exception as exc:  # noqa: BLE001 - (a module refusing it): the others still go
            log.debug("picklepool: %s could not be set here (%r): %r", WHAT, key, exc)

    def pop(self, key: tuple[str, ...], default: Any = None) -> Any:
        owner, name = _owner(key)
        try:
            if owner is not None and _attribute(owner, name, _MISSING) is not _MISSING:
                delattr(owner, name)  # (a name the script added, then deleted)
        except Exception as exc:  # noqa: BLE001 - (an object refusing it)
            log.debug("picklepool: %s could not be deleted here (%r): %r", WHAT, key, exc)
        return default


def _refill(current: Any, value: Any) -> bool:
    """Make *current* (the worker's) hold a copy of what *value* (the parent's) holds, in
    place, where both are of one type that can be: a dict (a ``defaultdict``, ``Counter``,
    ``OrderedDict`` too), list, set, ``deque``, ``bytearray``, ``array.array``, numpy array
    of one shape and dtype, or an instance whose state is its ``__dict__`` and slots. False
    for another (it is bound anew: another module's ``from config import X`` keeps the old)."""
    kind = type(value)
    if kind is not type(current):
        return False
    if isinstance(value, dict | list | set | collections.deque):
        if isinstance(value, collections.deque) and current.maxlen != value.maxlen:
            return False
        copied = _deep(value)  # (before the worker's is emptied: a copy that fails leaves it be)
        if isinstance(value, dict):  # (the worker's own client at a key stays: _keeps)
            kept: dict[Any, Any] = {k: v for k, v in current.items() if k in copied and _keeps(v, copied[k])}
        elif not isinstance(value, set):
            kept = {i: mine for i, mine in enumerate(list(current)[: len(copied)]) if _keeps(mine, copied[i])}
        current.clear()
        if isinstance(value, dict):
            current.update(copied)
            current.update(kept)
            if isinstance(value, collections.defaultdict):
                current.default_factory = value.default_factory
        elif isinstance(value, set):
            current.update(copied)
        else:
            current.extend(copied)
            for i, mine in kept.items():
                current[i] = mine
    elif isinstance(value, bytearray) or (
        isinstance(value, array.array) and current.typecode == value.typecode
    ):
        current[:] = value
    elif _same_array(current, value):  # (config.W[0] = 1: the worker's array, changed)
        current[...] = value
    elif _in_place(value):
        _set_attributes(current, _state(value))
    else:
        return False
    return True


def _copy(value: Any) -> Any:
    """*value* to set, copied where a task could change it in place (anything but a value
    that never changes in place: its change is its batch's only, the parent's is set again)."""
    if type(value) in _SCALARS or isinstance(value, _immutable()):
        return value
    return _deep(value)


def _deep(value: Any) -> Any:
    """A deep copy of *value*; a shallow one where an item does not copy (a module, a lock
    in a dict of settings: shared, the rest still the worker's own); *value* itself where
    neither can be made."""
    try:
        return copy.deepcopy(value)
    except Exception:  # noqa: BLE001 - (an item that does not copy)
        try:
            return copy.copy(value)
        except Exception:  # noqa: BLE001 - (nor the value itself)
            return value


_REFILLED = (dict, list, set, collections.deque, bytearray, array.array)  # (_refill: read as copies)
_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
_COMPARED = _SCALARS | {dict, list, set, tuple, frozenset}  # (_same)
_once: dict[tuple[str, ...], Any] = {}  # worker: a ONCE key -> the parent's value set last


class _Attributes:
    """A worker's own instance and its attributes, as read before the parent's were set."""

    __slots__ = ("obj", "attributes")

    def __init__(self, obj: Any) -> None:
        self.obj, self.attributes = obj, _state(obj)


def _in_place(value: Any) -> bool:
    """Whether *value* is an instance whose whole state is its ``__dict__`` and slots (pickled
    by ``object``'s default, or a ``SimpleNamespace``): its attributes can be set in place."""
    if not _instance(value):
        return False
    kind = type(value)
    if kind is SimpleNamespace:
        return True
    return (
        kind.__reduce_ex__ is object.__reduce_ex__
        and kind.__reduce__ is object.__reduce__
        and getattr(kind, "__setstate__", None) is None
        and getattr(kind, "__getstate__", None) is getattr(object, "__getstate__", None)
    )


def _set_attributes(obj: Any, attributes: dict[str, Any]) -> None:
    """Make *obj*'s attributes copies of *attributes*, but for the live objects it holds
    itself (:func:`_keeps`: its lock, queue, thread-local, connection)."""
    mine = _state(obj)
    kept = {k: v for k, v in mine.items() if k in attributes and _keeps(v, attributes[k])}
    try:
        attributes = copy.deepcopy(attributes)  # (a task's change in place is its batch's only)
    except Exception:  # noqa: BLE001 - (an attribute that does not copy): as they are
        attributes = dict(attributes)
    attributes.update(kept)
    slots = _slots(type(obj))
    own = getattr(obj, "__dict__", None)
    if isinstance(own, dict):
        own.clear()
        own.update((k, v) for k, v in attributes.items() if k not in slots)
    for name in slots:
        if name in attributes:
            setattr(obj, name, attributes[name])
        elif hasattr(obj, name):
            delattr(obj, name)


def _keeps(mine: Any, theirs: Any) -> bool:
    """Whether the worker keeps *mine*, its own item or attribute, where the parent's value
    holds *theirs* (a copy of the parent's, of the same type): where *mine* is a live object
    (it does not pickle: it holds a lock, a thread, a queue, a connection, a
    ``threading.local``), the module's own, made in this process as the parent's was there.
    The script changing the value around it (``config.CLIENTS["b"] = c``) does not make the
    parent's copy replace it."""
    kind = type(mine)
    if kind is not type(theirs) or kind in _SCALARS or kind in _PLAIN or mine is theirs:
        return False
    try:
        pickle.dumps(mine, pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - (a lock, a thread, a connection): live
        return True
    return False


def _same_array(current: Any, value: Any) -> bool:
    """Whether *current* and *value* are numpy arrays of one type, shape and dtype, and
    *current* can be written: *value* is then copied into it, in place."""
    numpy = sys.modules.get("numpy")
    return (
        numpy is not None
        and type(current) is type(value) is numpy.ndarray
        and current.shape == value.shape
        and current.dtype == value.dtype
        and current.flags.writeable
    )


def _same(a: Any, b: Any) -> bool:
    """Whether *a* and *b* are equal numbers, strings, bytes or builtin containers (a dict,
    list, set or tuple: a large dict of settings is not copied again at each batch); not
    other values, whose ``==`` of their own may leave fields out (a dataclass's
    ``field(compare=False)``)."""
    if type(a) is not type(b) or type(a) not in _COMPARED:
        return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - (an item whose == does not answer a bool: an array)
        return False


def _owner(key: tuple[str, ...]) -> tuple[Any, str]:
    """The module, or the object of it (a class, an instance: this worker's own), that
    *key*'s name is an attribute of, and that name (``"cfg.batch"``: ``config.cfg``, ``batch``)."""
    owner = _module(key[0])
    path, _, name = key[1].rpartition(".")
    if owner is None or not path:
        return owner, name
    for part in path.split("."):
        is_space = isinstance(owner, ModuleType | type)
        owner = getattr(owner, part, None) if is_space else _attribute(owner, part)
        if owner is None:
            break
    return owner, name


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
    failed: dict[Any, str] = {}
    _overlay.apply(_Globals(), data, failed)  # type: ignore[arg-type]
    for key, why in failed.items():  # (pickled in the parent, it does not load here)
        name = f"{key[0]}.{key[1]}" if type(key) is tuple and len(key) >= 2 else "an attribute"
        warnings.warn(
            f"picklepool: {name}, which the script sets, could not be loaded in worker "
            f"{os.getpid()} ({why}): tasks there read the module's own value, where the "
            "loop's read the script's. Set it in the task, or in an initializer "
            "(Parallel(initializer=...)).",
            RuntimeWarning,
            stacklevel=2,
        )
