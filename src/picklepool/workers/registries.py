"""What the parent's program registered in libraries' registries, registered in a worker too.

A script extends the libraries it uses by registering things in them, once, at its top:
a pandas accessor (``@pd.api.extensions.register_dataframe_accessor("geo")``) or extension
dtype, an xarray accessor (``@xr.register_dataset_accessor("geo")``), a matplotlib colormap
(``matplotlib.colormaps.register(cmap)``) or font file (``fontManager.addfont(path)``, a
CJK font for the labels), an image format of a Pillow plugin
(pillow-heif's ``register_heif_opener()``), a sqlite3 adapter or converter
(``sqlite3.register_adapter(Decimal, str)``), a csv dialect (``csv.register_dialect``), a
file type (``mimetypes.add_type``), an XML
namespace prefix (``xml.etree.ElementTree.register_namespace("svg", ...)``), a class of its
own as a virtual subclass of an ABC of the standard library
(``collections.abc.Mapping.register(Table)``). In the loop the call replaces, a task's
``df.geo.center()``, ``plt.imshow(a, cmap="mine")``, a label in the added font,
``Image.open("x.heic")``, ``INSERT``
of a ``Decimal`` or ``mimetypes.guess_type("x.geojson")`` worked, ``ET.tostring`` wrote
``svg:`` elements and ``isinstance(Table(), Mapping)`` was true; a warm worker never ran
those lines, so the same task raised ``AttributeError``, ``KeyError``,
``UnidentifiedImageError``, ``ProgrammingError``, or answered None, ``ns0:`` or False
(under joblib too).

:func:`pickled` reads, in the parent, the entries of those registries that are not the
library's own, for the libraries it has imported: again only when a registry changed (a few
``len`` and one ``abc.get_cache_token()`` a call while none does: 1.3 us, 2.3 with pandas
imported, 6 with the nine modules), or an entry was registered again under its name.
mimetypes' entries are those that differ from what a worker's ``mimetypes.init()`` reads
(the same files, read once in the parent); ElementTree's, those its source does not set. A
colormap that an imported module of an installed library holds (seaborn registers its own
as it is imported) is sent as that module's name, which the worker imports.
Each entry is pickled apart (with hybrid: a class of the script by
value), so one that cannot be pickled, or takes more than :data:`LIMIT` pickled (it travels
with every batch), is left out, not the others, with a ``RuntimeWarning`` naming it (once).
:func:`apply` registers them in the worker before each batch's tasks run (importing the
library), once the batch's functions are loaded (a module that registers a colormap as it is
imported, without ``force``, found its name taken), again if a task changed one, and takes
back those the parent no longer has (the worker's own, if it had one, returns); an
initializer runs with them taken back (:func:`withdraw`: it may register them itself), and
the parent's are set again after it.

Left out: an ABC registration of a class that is not the script's (``Sequence.register(
numpy.ndarray)``: sending it would import its module in every worker) or to an ABC outside
:data:`ABC_MODULES`, and an ABC registration once the parent drops it (an ABC cannot forget a
class); ``functools.singledispatch`` registrations (their functions are not listed anywhere);
codecs (``codecs.register``: the interpreter does not list its search functions); PyYAML's
constructors and representers.
Process-wide: not sent to a dask cluster's shared workers.
"""

from __future__ import annotations

import abc
import importlib
import logging
import os
import sys
import warnings
from typing import Any

from .overlay import Overlay, dumps_each

log = logging.getLogger(__name__)

WHAT = "a registration in a library's registry"

# the modules whose ABCs are looked at for the script's classes registered as their subclasses
ABC_MODULES = ("collections.abc", "numbers", "io", "os", "contextlib")

_PANDAS_CLASSES = ("DataFrame", "Series", "Index")
_PANDAS_REGISTER = {
    "DataFrame": "register_dataframe_accessor",
    "Series": "register_series_accessor",
    "Index": "register_index_accessor",
}
_XARRAY_REGISTER = {
    "Dataset": "register_dataset_accessor",
    "DataArray": "register_dataarray_accessor",
    "DataTree": "register_datatree_accessor",
}
_SQLITE_OWN = "sqlite3"  # the module of sqlite3's own adapters and converters (sqlite3.dbapi2)


def _library(obj: Any, *prefixes: str) -> bool:
    """True when *obj* (a class, a function) comes from a module under one of *prefixes*."""
    module = getattr(obj, "__module__", None) or ""
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _quietly(call: Any, *args: Any, **kwargs: Any) -> None:
    """``call(*args, **kwargs)`` without the warning that a name is taken already (the
    worker's own accessor or colormap, or the last batch's, which the parent's replaces)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call(*args, **kwargs)


# -- pandas: accessors and extension dtypes -----------------------------------------------


# pandas -> (its DataFrame, Series and Index accessor names, its extension dtypes), found once
_pandas_tables: tuple[Any, Any] = (None, None)


def _pandas_signal(pd: Any) -> Any:
    global _pandas_tables
    held, tables = _pandas_tables
    if held is not pd:
        try:
            from pandas.core.dtypes.base import _registry

            tables = (*(getattr(pd, c)._accessors for c in _PANDAS_CLASSES), _registry.dtypes)
        except (AttributeError, ImportError):
            tables = None
        _pandas_tables = (pd, tables)
    return None if tables is None else tuple(map(len, tables))


def _pandas_entries(pd: Any) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    for owner in _PANDAS_CLASSES:
        cls = getattr(pd, owner)
        for name in sorted(getattr(cls, "_accessors", ())):
            accessor = getattr(vars(cls).get(name), "_accessor", None)
            if accessor is not None and not _library(accessor, "pandas"):
                out.append((("pandas.accessor", owner, name), accessor))
    from pandas.core.dtypes.base import _registry

    seen = set()
    for dtype in list(_registry.dtypes):
        name = (dtype.__module__, dtype.__qualname__)
        if not _library(dtype, "pandas") and name not in seen:  # (the first: pandas finds that one)
            seen.add(name)
            out.append((("pandas.dtype", *name), dtype))
    return out


def _pandas_get(key: Any, default: Any) -> Any:
    pd = importlib.import_module("pandas")
    if key[0] == "pandas.accessor":
        found = getattr(vars(getattr(pd, key[1])).get(key[2]), "_accessor", None)
        return default if found is None else found
    from pandas.core.dtypes.base import _registry

    for dtype in _registry.dtypes:
        if (dtype.__module__, dtype.__qualname__) == key[1:]:
            return dtype
    return default


def _pandas_set(key: Any, value: Any) -> None:
    pd = importlib.import_module("pandas")
    if key[0] == "pandas.accessor":
        _quietly(getattr(pd.api.extensions, _PANDAS_REGISTER[key[1]])(key[2]), value)
        return
    from pandas.core.dtypes.base import _registry

    _pandas_pop(key)
    _registry.register(value)


def _pandas_pop(key: Any) -> None:
    pd = importlib.import_module("pandas")
    if key[0] == "pandas.accessor":
        cls = getattr(pd, key[1])
        if key[2] in vars(cls):
            delattr(cls, key[2])
        cls._accessors.discard(key[2])
        return
    from pandas.core.dtypes.base import _registry

    _registry.dtypes[:] = [d for d in _registry.dtypes if (d.__module__, d.__qualname__) != key[1:]]


# -- xarray: accessors --------------------------------------------------------------------


def _xarray_classes(xr: Any) -> list[tuple[str, Any]]:
    return [
        (name, getattr(xr, name)) for name in _XARRAY_REGISTER if isinstance(getattr(xr, name, None), type)
    ]


# xarray -> the namespaces of the classes accessors are registered on, found once
_xarray_held: tuple[Any, tuple[Any, ...]] = (None, ())


def _xarray_signal(xr: Any) -> Any:
    global _xarray_held
    held, classes = _xarray_held
    if held is not xr:
        classes = tuple(vars(cls) for _, cls in _xarray_classes(xr))  # (live views)
        _xarray_held = (xr, classes)
    return tuple(map(len, classes))  # an accessor is a new attribute


def _xarray_entries(xr: Any) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    for owner, cls in _xarray_classes(xr):
        for name, attr in list(vars(cls).items()):
            if type(attr).__name__ != "_CachedAccessor":
                continue
            accessor = getattr(attr, "_accessor", None)
            if accessor is not None and not _library(accessor, "xarray"):
                out.append((("xarray.accessor", owner, name), accessor))
    return out


def _xarray_get(key: Any, default: Any) -> Any:
    cls = getattr(importlib.import_module("xarray"), key[1])
    found = getattr(vars(cls).get(key[2]), "_accessor", None)
    return default if found is None else found


def _xarray_set(key: Any, value: Any) -> None:
    xr = importlib.import_module("xarray")
    _quietly(getattr(xr, _XARRAY_REGISTER[key[1]])(key[2]), value)


def _xarray_pop(key: Any) -> None:
    cls = getattr(importlib.import_module("xarray"), key[1])
    if key[2] in vars(cls):
        delattr(cls, key[2])


# -- matplotlib: colormaps ----------------------------------------------------------------

# worker: name -> (the parent's colormap, the copy that matplotlib's registry keeps of it)
_colormaps_set: dict[str, tuple[Any, Any]] = {}


def _colormaps(mpl: Any) -> Any:
    registry = getattr(mpl, "colormaps", None)
    if type(getattr(registry, "_cmaps", None)) is dict and hasattr(registry, "_builtin_cmaps"):
        return registry
    return None


def _matplotlib_signal(mpl: Any) -> Any:
    registry = _colormaps(mpl)
    if registry is None:
        return None
    cmaps, own = registry._cmaps, registry._builtin_cmaps
    if len(cmaps) == len(own):  # (the usual case: matplotlib's only)
        return len(cmaps)
    return tuple((name, id(cmap)) for name, cmap in cmaps.items() if name not in own)


def _matplotlib_entries(mpl: Any) -> list[tuple[Any, Any]]:
    registry = _colormaps(mpl)
    own = registry._builtin_cmaps
    cmaps = {name: cmap for name, cmap in list(registry._cmaps.items()) if name not in own}
    homes = _library_homes(cmaps, getattr(mpl.colors, "Colormap", None)) if cmaps else {}
    out: list[tuple[Any, Any]] = [(("import", home), True) for home in dict.fromkeys(homes.values())]
    out += [(("matplotlib.colormap", name), cmap) for name, cmap in cmaps.items() if name not in homes]
    return out


def _library_homes(names: Any, kind: Any) -> dict[str, str]:
    """``{name: module}`` for the *names* that an imported module holds an object of *kind*
    of (a colormap) under, or named so (colorcet's ``fire`` is "cet_fire"): a module that
    registers its colormaps as it is imported (seaborn's 24 take 160 kB pickled, which every
    batch would carry; a project's, whose import in the worker found the name taken). The
    worker imports it instead. Not ``__main__``'s (a worker does not run the script), nor one
    its name does not import."""
    from ..pickler.homes import module_not_found

    if not isinstance(kind, type):
        return {}
    wanted = set(names)
    homes: dict[str, str] = {}
    for module_name, module in list(sys.modules.items()):
        if (
            module_name in ("__main__", "__mp_main__")
            or module_name.startswith("matplotlib")
            or not isinstance(getattr(module, "__file__", None), str)
        ):
            continue
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if isinstance(value, kind):
                for name in (attr, getattr(value, "name", None)):
                    if isinstance(name, str) and name in wanted and name not in homes:
                        homes[name] = module_name
    return {name: home for name, home in homes.items() if not module_not_found(sys.modules.get(home))}


def _matplotlib_get(key: Any, default: Any) -> Any:
    registry = _colormaps(importlib.import_module("matplotlib"))
    found = registry._cmaps.get(key[1], default)
    mine = _colormaps_set.get(key[1])
    return mine[0] if mine is not None and mine[1] is found else found


def _matplotlib_set(key: Any, value: Any) -> None:
    registry = _colormaps(importlib.import_module("matplotlib"))
    _quietly(registry.register, value, name=key[1], force=True)  # ("Overwriting the cmap")
    _colormaps_set[key[1]] = (value, registry._cmaps.get(key[1]))


def _matplotlib_pop(key: Any) -> None:
    registry = _colormaps(importlib.import_module("matplotlib"))
    _colormaps_set.pop(key[1], None)
    if key[1] in registry._cmaps and key[1] not in registry._builtin_cmaps:
        registry.unregister(key[1])


# -- a library whose import registers entries (seaborn's colormaps) ---------------------------


def _import_get(key: Any, default: Any) -> Any:
    return True if key[1] in sys.modules else default


def _import_set(key: Any, value: Any) -> None:
    from . import warnfilters

    with warnfilters.loading():  # (its import warns under the worker's filters, not the parent's)
        importlib.import_module(key[1])


def _import_pop(key: Any) -> None:
    """A module imported stays imported (its registrations with it)."""


# -- matplotlib: the font files the script added (fontManager.addfont) ----------------------

# parent: the font files of the font cache a worker loads (read once)
_fonts_own: frozenset[str] | None = None


def _fonts_signal(fm: Any) -> Any:
    manager = getattr(fm, "fontManager", None)
    lists = getattr(manager, "ttflist", None), getattr(manager, "afmlist", None)
    if type(lists[0]) is not list or type(lists[1]) is not list:
        return None
    return manager, len(lists[0]), len(lists[1])


def _fonts_entries(fm: Any) -> list[tuple[Any, Any]]:
    global _fonts_own
    if _fonts_own is None:
        _fonts_own = _fonts_cached(fm)
    manager = fm.fontManager
    paths = dict.fromkeys(f.fname for f in [*manager.ttflist, *manager.afmlist])
    return [(("matplotlib.font", path), path) for path in paths if path not in _fonts_own]


def _fonts_cached(fm: Any) -> frozenset[str]:
    """The font files of matplotlib's font cache, which a worker's ``fontManager`` is
    loaded from; without one (it could not be written), those the parent has (none sent)."""
    import matplotlib

    manager = fm.fontManager
    try:
        cache = os.path.join(matplotlib.get_cachedir(), f"fontlist-v{fm.FontManager.__version__}.json")
        manager = fm.json_load(cache)
    except Exception:  # noqa: BLE001 - (no cache: the worker made its fontManager as the parent did)
        pass
    return frozenset(f.fname for f in [*manager.ttflist, *manager.afmlist])


def _fonts_get(key: Any, default: Any) -> Any:
    manager = importlib.import_module("matplotlib.font_manager").fontManager
    found = any(f.fname == key[1] for f in reversed([*manager.ttflist, *manager.afmlist]))
    return key[1] if found else default


def _fonts_set(key: Any, value: Any) -> None:
    importlib.import_module("matplotlib.font_manager").fontManager.addfont(value)


def _fonts_pop(key: Any) -> None:
    manager = importlib.import_module("matplotlib.font_manager").fontManager
    manager.ttflist[:] = [f for f in manager.ttflist if f.fname != key[1]]
    manager.afmlist[:] = [f for f in manager.afmlist if f.fname != key[1]]
    manager._findfont_cached.cache_clear()


# -- Pillow: image formats of plugins that are not Pillow's (pillow-heif's HEIC...) --------

# Pillow's tables of formats: (attribute of PIL.Image, its register function's name)
_PIL_TABLES = {
    "OPEN": "register_open",
    "SAVE": "register_save",
    "SAVE_ALL": "register_save_all",
    "EXTENSION": "register_extension",
    "MIME": "register_mime",
}
# worker: key -> (the parent's value, the object Pillow's table holds for it, made anew by
# register_open)
_pil_set: dict[Any, tuple[Any, Any]] = {}


def _pil_own(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "PIL" or module.startswith("PIL.")


# parent: PIL.Image -> its five tables, found once (module globals, never bound anew)
_pil_tables: tuple[Any, Any] = (None, None)


def _pil_signal(image: Any) -> Any:
    global _pil_tables
    held, tables = _pil_tables
    if held is not image:
        tables = tuple(getattr(image, table, None) for table in _PIL_TABLES)
        if not all(type(t) is dict for t in tables):
            tables = None
        _pil_tables = (image, tables)
    return None if tables is None else tuple(map(len, tables))


def _pil_entries(image: Any) -> list[tuple[Any, Any]]:
    opened = {f: v for f, v in list(image.OPEN.items()) if not _pil_own(v[0])}
    saved = {f: v for f, v in list(image.SAVE.items()) if not _pil_own(v)}
    saved_all = {f: v for f, v in list(image.SAVE_ALL.items()) if not _pil_own(v)}
    formats = {*opened, *saved, *saved_all}
    if not formats:
        return []
    extensions = {e: f for e, f in list(image.EXTENSION.items()) if f in formats}
    mimes = {f: m for f, m in list(image.MIME.items()) if f in formats}
    return [
        (("PIL", table, name), value)
        for table, found in (
            ("OPEN", opened),
            ("SAVE", saved),
            ("SAVE_ALL", saved_all),
            ("EXTENSION", extensions),
            ("MIME", mimes),
        )
        for name, value in found.items()
    ]


def _pil_get(key: Any, default: Any) -> Any:
    found = getattr(importlib.import_module("PIL.Image"), key[1]).get(key[2], default)
    mine = _pil_set.get(key)
    return mine[0] if mine is not None and mine[1] is found else found


def _pil_set_entry(key: Any, value: Any) -> None:
    image = importlib.import_module("PIL.Image")
    register = getattr(image, _PIL_TABLES[key[1]])
    if key[1] == "OPEN":
        register(key[2], *value)
    elif key[1] == "EXTENSION":
        register(value, key[2])  # (extension -> format: register_extension(format, extension))
    else:
        register(key[2], value)
    _pil_set[key] = (value, getattr(image, key[1]).get(key[2]))


def _pil_pop(key: Any) -> None:
    image = importlib.import_module("PIL.Image")
    _pil_set.pop(key, None)
    getattr(image, key[1]).pop(key[2], None)
    if key[1] == "OPEN" and key[2] in image.ID:
        image.ID.remove(key[2])


# -- sqlite3: adapters and converters -----------------------------------------------------


# parent: copies of sqlite3's adapters and converters as read last, and how many times they changed
_sqlite_seen: tuple[Any, Any, int] = (None, None, 0)


def _sqlite_signal(sqlite3: Any) -> Any:
    global _sqlite_seen
    adapters, converters = getattr(sqlite3, "adapters", None), getattr(sqlite3, "converters", None)
    if type(adapters) is not dict or type(converters) is not dict:
        return None
    seen_adapters, seen_converters, changes = _sqlite_seen
    if adapters == seen_adapters and converters == seen_converters:  # (a handful, by identity)
        return changes
    _sqlite_seen = (dict(adapters), dict(converters), changes + 1)
    return changes + 1


def _sqlite_entries(sqlite3: Any) -> list[tuple[Any, Any]]:
    return [
        ((f"sqlite3.{kind}", key), fn)
        for kind, table in (("adapter", sqlite3.adapters), ("converter", sqlite3.converters))
        for key, fn in list(table.items())
        if not _library(fn, _SQLITE_OWN)
    ]


def _sqlite_table(key: Any) -> dict[Any, Any]:
    sqlite3 = importlib.import_module("sqlite3")
    return sqlite3.adapters if key[0] == "sqlite3.adapter" else sqlite3.converters  # type: ignore[no-any-return]


def _sqlite_get(key: Any, default: Any) -> Any:
    return _sqlite_table(key).get(key[1], default)


def _sqlite_set(key: Any, value: Any) -> None:
    _sqlite_table(key)[key[1]] = value


def _sqlite_pop(key: Any) -> None:
    _sqlite_table(key).pop(key[1], None)


# -- csv: the dialects the script registered ------------------------------------------------

_CSV_OWN = ("excel", "excel-tab", "unix")
_CSV_ATTRS = (
    "delimiter",
    "quotechar",
    "escapechar",
    "doublequote",
    "skipinitialspace",
    "lineterminator",
    "quoting",
    "strict",
)
# worker: name -> (the parent's dialect's attributes, the dialect registered for them)
_csv_made: dict[str, tuple[Any, Any]] = {}


def _csv_signal(csv: Any) -> Any:
    names = csv.list_dialects()
    if len(names) == len(_CSV_OWN):  # (the usual case: csv's own)
        return len(names)
    return tuple((name, csv.get_dialect(name)) for name in names)  # (a dialect again: another object)


def _csv_entries(csv: Any) -> list[tuple[Any, Any]]:
    return [
        (("csv", name), tuple(getattr(csv.get_dialect(name), attr) for attr in _CSV_ATTRS))
        for name in csv.list_dialects()
        if name not in _CSV_OWN
    ]


def _csv_get(key: Any, default: Any) -> Any:
    csv = importlib.import_module("csv")
    if key[1] not in csv.list_dialects():
        return default
    found = csv.get_dialect(key[1])
    made = _csv_made.get(key[1])
    if made is not None and made[1] is found:
        return made[0]
    return tuple(getattr(found, attr) for attr in _CSV_ATTRS)


def _csv_set(key: Any, value: Any) -> None:
    csv = importlib.import_module("csv")
    csv.register_dialect(key[1], **dict(zip(_CSV_ATTRS, value, strict=True)))
    _csv_made[key[1]] = (value, csv.get_dialect(key[1]))


def _csv_pop(key: Any) -> None:
    csv = importlib.import_module("csv")
    _csv_made.pop(key[1], None)
    if key[1] in csv.list_dialects():
        csv.unregister_dialect(key[1])


# -- mimetypes: the types the script added -------------------------------------------------

# parent: a database as a worker's mimetypes.init() makes it (the same files), made once
_mime_baseline: Any = None


def _mimetypes_signal(mimetypes: Any) -> Any:
    db = getattr(mimetypes, "_db", None)
    maps = getattr(db, "types_map", None)
    if type(maps) is not tuple or len(maps) != 2:
        return None  # (not initialized yet: nothing added, as add_type initializes first)
    return db, len(maps[0]), len(maps[1])


def _mimetypes_entries(mimetypes: Any) -> list[tuple[Any, Any]]:
    global _mime_baseline
    if _mime_baseline is None:
        baseline = mimetypes.MimeTypes()
        for name in mimetypes.knownfiles:
            try:
                baseline.read(name)
            except OSError:  # (a file this machine lacks: init() skips it too)
                pass
        _mime_baseline = baseline
    maps, own = mimetypes._db.types_map, _mime_baseline.types_map
    return [
        (("mimetypes", strict, ext), kind)
        for index, strict in ((0, False), (1, True))
        for ext, kind in list(maps[index].items())
        if own[index].get(ext) != kind
    ]


def _mimetypes_map(key: Any) -> dict[str, str]:
    mimetypes = importlib.import_module("mimetypes")
    if mimetypes._db is None:
        mimetypes.init()
    return mimetypes._db.types_map[1 if key[1] else 0]  # type: ignore[no-any-return]


def _mimetypes_get(key: Any, default: Any) -> Any:
    return _mimetypes_map(key).get(key[2], default)


def _mimetypes_set(key: Any, value: Any) -> None:
    importlib.import_module("mimetypes").add_type(value, key[2], key[1])


def _mimetypes_pop(key: Any) -> None:
    _mimetypes_map(key).pop(key[2], None)


# -- xml.etree.ElementTree: the namespace prefixes the script registered -------------------

# parent: ElementTree's own prefixes, as its source sets them (read once)
_xml_own: dict[str, str] | None = None


def _xml_signal(et: Any) -> Any:
    namespaces = getattr(et, "_namespace_map", None)
    return len(namespaces) if type(namespaces) is dict else None


def _xml_entries(et: Any) -> list[tuple[Any, Any]]:
    global _xml_own
    if _xml_own is None:
        _xml_own = _xml_defaults(et)
    return [
        (("xml.namespace", uri), prefix)
        for uri, prefix in list(et._namespace_map.items())
        if _xml_own.get(uri) != prefix
    ]


def _xml_defaults(et: Any) -> dict[str, str]:
    """``_namespace_map`` as ElementTree's source sets it (the parent's has the script's
    entries in it already: register_namespace does not keep the defaults apart)."""
    import ast

    try:
        with open(et.__file__, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_namespace_map" for t in node.targets
            ):
                found = ast.literal_eval(node.value)
                return found if isinstance(found, dict) else {}
    except (OSError, ValueError, SyntaxError, TypeError):  # (no source: every entry is sent)
        pass
    return {}


def _xml_map() -> dict[str, str]:
    return importlib.import_module("xml.etree.ElementTree")._namespace_map  # type: ignore[no-any-return]


def _xml_get(key: Any, default: Any) -> Any:
    return _xml_map().get(key[1], default)


def _xml_set(key: Any, value: Any) -> None:
    importlib.import_module("xml.etree.ElementTree").register_namespace(value, key[1])


def _xml_pop(key: Any) -> None:
    _xml_map().pop(key[1], None)


# -- the standard library's ABCs: the script's classes registered as virtual subclasses ------


def _abc_signal(_abc: Any) -> Any:
    return _abc.get_cache_token()  # one more with every ABC's register() anywhere


def _registered(abc_class: Any) -> list[Any]:
    try:
        from _abc import _get_dump

        refs = _get_dump(abc_class)[0]
    except (ImportError, TypeError):  # (the pure-Python abc: its registry is an attribute)
        refs = getattr(abc_class, "_abc_registry", ())
    return [c for c in (r() for r in list(refs)) if c is not None]


def _abc_entries(_abc: Any) -> list[tuple[Any, Any]]:
    main = sys.modules.get("__main__")
    out: list[tuple[Any, Any]] = []
    seen: set[int] = set()
    for module_name in ABC_MODULES:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for abc_class in list(vars(module).values()):
            if not isinstance(abc_class, _abc.ABCMeta) or id(abc_class) in seen:
                continue
            seen.add(id(abc_class))
            for sub in _registered(abc_class):
                if getattr(sub, "__module__", None) == "__main__" and main is not None:
                    out.append((("abc", abc_class, sub), True))
    return out


def _abc_get(key: Any, default: Any) -> Any:
    return True if key[2] in _registered(key[1]) else default


def _abc_set(key: Any, value: Any) -> None:
    key[1].register(key[2])


def _abc_pop(key: Any) -> None:
    """An ABC cannot forget a class: the registration stays in this worker."""


# -- one table over them all ----------------------------------------------------------------

# module -> (signal, entries): the parent's side of each registry, read when the module is imported
_READERS = {
    "pandas": (_pandas_signal, _pandas_entries),
    "xarray": (_xarray_signal, _xarray_entries),
    "matplotlib": (_matplotlib_signal, _matplotlib_entries),
    "matplotlib.font_manager": (_fonts_signal, _fonts_entries),
    "PIL.Image": (_pil_signal, _pil_entries),
    "sqlite3": (_sqlite_signal, _sqlite_entries),
    "csv": (_csv_signal, _csv_entries),
    "mimetypes": (_mimetypes_signal, _mimetypes_entries),
    "xml.etree.ElementTree": (_xml_signal, _xml_entries),
    "abc": (_abc_signal, _abc_entries),
}
_MODULES = tuple(_READERS)

# parent: ((the modules, then their signals) as read last, the pickle of the entries, where
# those that a signal misses are: _watch)
_read: tuple[tuple[Any, ...] | None, bytes | None, list[Any]] = (None, None, [])


def pickled() -> bytes | None:
    """The program's entries of the registries of the libraries it imported, pickled each
    apart (None: it registered nothing)."""
    get = sys.modules.get
    pd, xr, mpl, sq, mt = get("pandas"), get("xarray"), get("matplotlib"), get("sqlite3"), get("mimetypes")
    et, pil, fm, cs = (
        get("xml.etree.ElementTree"),
        get("PIL.Image"),
        get("matplotlib.font_manager"),
        get("csv"),
    )
    try:
        now = _signals(pd, xr, mpl, fm, pil, sq, cs, mt, et)
    except Exception:  # noqa: BLE001 - a library of another shape (or half imported): as last read
        return _read[1]
    seen, data, watched = _read
    if now == seen and all([_same_entry(*w) for w in watched]):  # (watched: usually none)
        return data
    return _read_entries(now)


def _signals(
    pd: Any, xr: Any, mpl: Any, fm: Any, pil: Any, sq: Any, cs: Any, mt: Any, et: Any
) -> tuple[Any, ...]:
    return (  # (the modules in _MODULES' order, then their signals: unrolled, as it runs every call)
        pd,
        xr,
        mpl,
        fm,
        pil,
        sq,
        cs,
        mt,
        et,
        abc,
        pd and _pandas_signal(pd),
        xr and _xarray_signal(xr),
        mpl and _matplotlib_signal(mpl),
        fm and _fonts_signal(fm),
        pil and _pil_signal(pil),
        sq and _sqlite_signal(sq),
        cs and _csv_signal(cs),
        mt and _mimetypes_signal(mt),
        et and _xml_signal(et),
        abc.get_cache_token(),
    )


def _read_entries(now: tuple[Any, ...]) -> bytes | None:
    """The entries of the registries whose signals are *now*, pickled; kept in ``_read``."""
    global _read
    entries: list[tuple[Any, Any]] = []
    for name, module, signal in zip(_MODULES, now[: len(_MODULES)], now[len(_MODULES) :], strict=True):
        if signal is not None:
            try:
                entries.extend(_READERS[name][1](module))
            except Exception:  # noqa: BLE001 - a library of another shape: its registry is left out
                continue
    left_out: dict[Any, str] = {}
    data = dumps_each(entries, WHAT, LIMIT, None, left_out) if entries else None
    for key, why in left_out.items():
        _warn_left_out(key, why)
    try:
        watched = [w for w in map(_watch, entries) if w is not None]
    except Exception:  # noqa: BLE001 - (as the entries: a library of another shape)
        watched = []
    _read = (now, data, watched)
    return data


LIMIT = 1 << 20  # bytes an entry may take pickled (it travels with every batch)
_warned: set[Any] = set()  # parent: the entries left out that a warning named already


def _warn_left_out(key: Any, why: str) -> None:
    """Say, once per entry, that *key* is not sent to the workers, and why (*why*)."""
    if key in _warned:
        return
    _warned.add(key)
    from ..pickler.locks import callers_level

    if why.startswith("pickled,"):
        why += ", which would travel with every batch"
    warnings.warn(
        f"picklepool: {_describe(key)} is not sent to the workers: {why}. A task that uses it "
        "there fails, or answers otherwise, where the loop's did not. Keep what it holds "
        "(a connection, a large table) out of the class, or register it in the tasks' own "
        "module or an initializer (Parallel(initializer=...)).",
        RuntimeWarning,
        stacklevel=callers_level(),  # (the call's line)
    )


def _describe(key: Any) -> str:
    """An entry's key in words: ``the pandas accessor Series.codes``."""
    kind = key[0]
    if kind in ("pandas.accessor", "xarray.accessor"):
        return f"the {kind.split('.')[0]} accessor {key[1]}.{key[2]}"
    if kind == "pandas.dtype":
        return f"the pandas extension dtype {key[1]}.{key[2]}"
    if kind == "matplotlib.colormap":
        return f"the matplotlib colormap {key[1]!r}"
    if kind == "abc":
        return f"the registration of {getattr(key[2], '__qualname__', key[2])} as a {key[1].__qualname__}"
    return f"{WHAT} ({key!r})"


def _watch(entry: tuple[Any, Any]) -> tuple[Any, Any, Any, str | None] | None:
    """Where the parent keeps *entry*, when registering another value under its name changes
    no signal (an accessor of a notebook's cell run again, a type given to an extension
    again): ``(mapping, name, value, attribute)``, compared by :func:`_same_entry`."""
    key, value = entry
    family = key[0]
    if family in ("pandas.accessor", "xarray.accessor"):
        module = sys.modules.get(family.split(".")[0])
        return (vars(getattr(module, key[1])), key[2], value, "_accessor") if module else None
    if family == "PIL" and key[1] in ("OPEN", "SAVE", "SAVE_ALL"):
        image = sys.modules.get("PIL.Image")
        return (getattr(image, key[1]), key[2], value, None) if image is not None else None
    if family == "xml.namespace":
        et = sys.modules.get("xml.etree.ElementTree")
        return (et._namespace_map, key[1], value, None) if et is not None else None
    if family == "mimetypes":
        db = getattr(sys.modules.get("mimetypes"), "_db", None)
        return (db.types_map[1 if key[1] else 0], key[2], value, None) if db is not None else None
    return None


def _same_entry(mapping: Any, name: Any, value: Any, attribute: str | None) -> bool:
    found = mapping.get(name)
    return (found if attribute is None else getattr(found, attribute, None)) is value


def _family(key: Any) -> str:
    """The registry of an entry's key: its first item, but for a package's kinds of entry
    that have a module of their own (``pandas.accessor``, ``PIL``), the package."""
    kind = key[0]
    return kind if kind == "matplotlib.font" else kind.split(".")[0]


class _Registries:
    """The registries, as the one table an :class:`~.overlay.Overlay` lays the parent's
    entries over, keyed ``(registry, ...)``."""

    # family -> (get, set, pop) of its entries in this worker
    _FAMILIES = {
        "pandas": (_pandas_get, _pandas_set, _pandas_pop),
        "xarray": (_xarray_get, _xarray_set, _xarray_pop),
        "matplotlib": (_matplotlib_get, _matplotlib_set, _matplotlib_pop),
        "matplotlib.font": (_fonts_get, _fonts_set, _fonts_pop),
        "import": (_import_get, _import_set, _import_pop),
        "PIL": (_pil_get, _pil_set_entry, _pil_pop),
        "sqlite3": (_sqlite_get, _sqlite_set, _sqlite_pop),
        "mimetypes": (_mimetypes_get, _mimetypes_set, _mimetypes_pop),
        "csv": (_csv_get, _csv_set, _csv_pop),
        "xml": (_xml_get, _xml_set, _xml_pop),
        "abc": (_abc_get, _abc_set, _abc_pop),
    }

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self._FAMILIES[_family(key)][0](key, default)
        except Exception:  # noqa: BLE001 - (the library cannot be imported here: nothing of it)
            return default

    def __setitem__(self, key: Any, value: Any) -> None:
        try:
            self._FAMILIES[_family(key)][1](key, value)
        except Exception as exc:  # noqa: BLE001 - this worker's library refuses it: the others still go
            log.debug("picklepool: %s could not be made here (%r): %r", WHAT, key, exc)

    def pop(self, key: Any, default: Any = None) -> Any:
        try:
            self._FAMILIES[_family(key)][2](key)
        except Exception as exc:  # noqa: BLE001 - as above
            log.debug("picklepool: %s could not be taken back here (%r): %r", WHAT, key, exc)
        return default


# worker: the parent's entries registered here
_overlay = Overlay(WHAT)


def withdraw() -> None:
    """Before an initializer runs: see ``Overlay.withdraw``."""
    if _overlay.added:
        _overlay.withdraw(_Registries())  # type: ignore[arg-type]


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    if _overlay.added:
        _overlay.rebase(_Registries())  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Register in this worker's libraries the entries pickled in *data* (None: the parent
    registered none), and take back those registered for an earlier batch that the parent no
    longer has."""
    if data is None and not _overlay.added:  # (the usual case)
        return
    _overlay.apply(_Registries(), data)  # type: ignore[arg-type]
