"""Libraries' settings that are plain module attributes, as the parent set them, set in a worker too.

Some libraries are configured by assigning one of their module's attributes, once, at the
script's top, and their documentation or their error messages say so:
``PIL.Image.MAX_IMAGE_PIXELS = None`` (to open a large scan without
``DecompressionBombError``), ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` (a truncated
JPEG loads), ``PIL.PngImagePlugin.MAX_TEXT_CHUNK`` (a PNG with large text chunks loads),
``http.client._MAXHEADERS = 1000`` (a server sending many headers: "got more than 100
headers"), ``mpmath.mp.dps = 50`` (the precision of every mpmath number),
``gettext.textdomain("app")`` with ``bindtextdomain`` (the messages' translations),
``calendar.setfirstweekday(calendar.SUNDAY)``. In the loop the
call replaces, a task ran with them; a warm worker imported the library itself, with its
defaults, so the same task raised or computed with 15 digits (under joblib too). A module
attribute the parent changed is otherwise not mirrored (README): this module mirrors the
settings of :data:`SETTINGS`, the ones such scripts set.

:func:`pickled` reads, in the parent, those settings of the modules it imported that differ
from the library's default (a ``sys.modules`` look-up per module, and an attribute read
per setting of an imported one: 0.8 us a call, 4 with PIL, gettext and calendar imported).
:func:`apply` sets them in the worker before each batch (importing the module), again if a
task changed one, and sets back the worker's own value once the parent's is the default again.
Process-wide: not sent to a dask cluster's shared workers.
"""

from __future__ import annotations

import ast
import importlib
import logging
import operator
import re
import sys
import tokenize
import types
from typing import Any

from ..pickler.base import StdlibPickler
from .overlay import Overlay, dumps_each

log = logging.getLogger(__name__)

WHAT = "a library's setting"


class _InSource:
    """A default that is what the module's source binds the name to (a list that differs
    between Python versions), read once: :func:`_default`."""


IN_SOURCE = _InSource()

# (module, attribute, the library's default): settings scripts commonly assign. A library
# whose default changed sends its new default once (the worker's own, the same: nothing set).
SETTINGS: tuple[tuple[str, str, Any], ...] = (
    ("PIL.Image", "MAX_IMAGE_PIXELS", 1024 * 1024 * 1024 // 4 // 3),
    ("PIL.ImageFile", "LOAD_TRUNCATED_IMAGES", False),
    ("PIL.PngImagePlugin", "MAX_TEXT_CHUNK", 1024 * 1024),  # ("Decompressed data too large")
    ("PIL.PngImagePlugin", "MAX_TEXT_MEMORY", 64 * 1024 * 1024),
    ("http.client", "_MAXHEADERS", 100),
    ("http.client", "_MAXLINE", 65536),
    ("mpmath", "mp.prec", 53),  # (mp.dps sets it)
    ("mpmath", "mp.pretty", False),
    # gettext.textdomain("app") and bindtextdomain("app", "locale"): a task's gettext.gettext
    # ("Hello") translates as in the parent (the language: the environment, mirrored)
    ("gettext", "_current_domain", "messages"),
    ("gettext", "_localedirs", {}),
    # calendar.setfirstweekday(calendar.SUNDAY): a task's calendar.monthcalendar, month()
    ("calendar", "c.firstweekday", 0),
    # urllib.parse.uses_relative.append("s3"), uses_netloc: a task's urljoin("s3://b/data/",
    # "a.csv") answers "s3://b/data/a.csv" as in the parent, not "a.csv"
    ("urllib.parse", "uses_relative", IN_SOURCE),
    ("urllib.parse", "uses_netloc", IN_SOURCE),
    # tarfile.TarFile.extraction_filter = staticmethod(tarfile.data_filter), as Python's docs
    # advise: a task's extractall refuses a member outside the folder, as in the parent
    ("tarfile", "TarFile.extraction_filter", None),
    ("http.client", "HTTPConnection.debuglevel", 0),  # (a task's requests print their headers)
)
_MODULES = tuple(dict.fromkeys(module for module, _, _ in SETTINGS))
_READ = {(module, attr): operator.attrgetter(attr) for module, attr, _ in SETTINGS}
# per module of _MODULES: its settings' keys, and one getter of their values (a tuple)
_KEYS = tuple(tuple((m, attr) for m, attr, _ in SETTINGS if m == module) for module in _MODULES)
_DEFAULTS = {(module, attr): default for module, attr, default in SETTINGS}


def _getter(keys: tuple[tuple[str, str], ...]) -> Any:
    """One module's settings' values, then its name (a tuple); a dict among them copied:
    compared at the next call, one changed in place (``bindtextdomain``'s) must differ
    from what was read."""
    read = operator.attrgetter(*(attr for _, attr in keys), "__name__")
    if not any(type(_DEFAULTS[key]) is dict or _DEFAULTS[key] is IN_SOURCE for key in keys):
        return read
    return lambda module: tuple(type(v)(v) if type(v) in (dict, list) else v for v in read(module))


_GETTERS = tuple(map(_getter, _KEYS))
_NONE = (None,) * len(_MODULES)

# parent: ((the modules, those imported with their keys and getter, their settings' values) as
# read last, the pickle of those not default)
_read: tuple[Any, bytes | None] = (None, None)


def _values(getter: Any, module: Any) -> Any:
    if module is None:
        return None
    try:
        return getter(module)
    except AttributeError:  # (another version of the library, or a module of that name)
        return None


def pickled() -> bytes | None:
    """``{(module, attribute): value}`` of the settings the parent changed, pickled each
    apart (None: all are the libraries' defaults, or their modules are not imported)."""
    global _read
    modules = tuple(map(sys.modules.get, _MODULES))
    if modules == _NONE:  # (the usual case: none imported)
        return None
    seen, data = _read
    if seen is None or seen[0] != modules:
        present = [(k, g, m) for k, g, m in zip(_KEYS, _GETTERS, modules, strict=True) if m is not None]
    else:
        present = seen[1]
    # (a module's values, then its name)
    now = (modules, present, tuple([_values(getter, module) for _, getter, module in present]))
    if seen is not None and now[2] == seen[2] and modules == seen[0]:
        return data
    entries = [
        (key, value)
        for (keys, _, _), values in zip(present, now[2], strict=True)
        if values is not None
        for key, value in zip(keys, values, strict=False)  # (values end with the module's name)
        if not _same(value, _default(key))
    ]
    data = dumps_each(entries, WHAT, pickler=StdlibPickler()) if entries else None  # (numbers, strings)
    _read = (now, data)
    return data


def _same(value: Any, default: Any) -> bool:
    return type(value) is type(default) and value == default


def _default(key: tuple[str, str]) -> Any:
    """The default of the setting *key*; one :data:`IN_SOURCE` read from the module's file
    (its top-level ``name = [...]``, found by a pattern: parsing the whole file took 5 ms),
    once; the value now where it cannot be (taken as the default: nothing is sent)."""
    default = _DEFAULTS[key]
    if default is not IN_SOURCE:
        return default
    module = sys.modules[key[0]]
    try:
        with tokenize.open(module.__file__) as f:  # type: ignore[arg-type]
            found = re.search(rf"^{re.escape(key[1])}\s*=\s*(\[[^\]]*\])", f.read(), re.MULTILINE)
        default = ast.literal_eval(found.group(1))  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - (no source, another shape)
        default = _READ[key](module)
    _DEFAULTS[key] = default
    return default


class _Settings:
    """The settings, as the one table an :class:`~.overlay.Overlay` lays the parent's over,
    keyed ``(module, attribute)``."""

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        try:
            return _READ[key](importlib.import_module(key[0]))
        except Exception:  # noqa: BLE001 - (not importable here, or no such attribute)
            return default

    def __setitem__(self, key: tuple[str, str], value: Any) -> None:
        owner, _, name = key[1].rpartition(".")
        if type(value) is dict:
            value = dict(value)  # (a task's change to it stays in its batch: set anew at the next)
        try:
            target = importlib.import_module(key[0])
            holder = operator.attrgetter(owner)(target) if owner else target
            if isinstance(holder, type) and isinstance(value, types.FunctionType | types.BuiltinFunctionType):
                value = staticmethod(value)  # (as the parent's class holds it: a function, not a method)
            setattr(holder, name, value)
        except Exception as exc:  # noqa: BLE001 - this worker's library refuses it: the others still go
            log.debug("picklepool: %s could not be set here (%r): %r", WHAT, key, exc)

    def pop(self, key: tuple[str, str], default: Any = None) -> Any:
        return default  # (every setting has a value: the worker's own is set back instead)


# worker: the parent's settings set here
_overlay = Overlay(WHAT)


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    if _overlay.added:
        _overlay.rebase(_Settings())  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Set in this worker the settings pickled in *data* (None: the parent's are the
    defaults), and set back this worker's own where the parent's is the default again."""
    if data is None and not _overlay.added:  # (the usual case)
        return
    _overlay.apply(_Settings(), data)  # type: ignore[arg-type]
