"""The registries as one table: each family's module in the two maps below, the parent's
signals read every call (:func:`pickled`), and a worker's overlay of the parent's entries
(:func:`apply`, :func:`withdraw`, :func:`rebase`). A library more is its module (its
``<name>_signal``, ``_entries``, ``_get``, ``_set`` and ``_pop``), a line in each map and its
signal in :func:`pickled` and :func:`_signals` (unrolled: they run every call)."""

from __future__ import annotations

import abc
import functools
import logging
import sys
from typing import Any

from ... import signalhold
from ..overlay import Overlay, dumps_each
from .abcsubclasses import abc_entries, abc_get, abc_pop, abc_set, abc_signal
from .colormaps import matplotlib_entries, matplotlib_get, matplotlib_pop, matplotlib_set, matplotlib_signal
from .common import LIMIT, WHAT, same_entry, warn_left_out, watch
from .csvdialects import csv_entries, csv_get, csv_pop, csv_set, csv_signal
from .filetypes import mimetypes_entries, mimetypes_get, mimetypes_pop, mimetypes_set, mimetypes_signal
from .fonts import fonts_entries, fonts_get, fonts_pop, fonts_set, fonts_signal
from .genericfunctions import (
    generic_entries,
    generic_get,
    generic_pop,
    generic_set,
    generic_signal,
    generic_watch,
)
from .imageformats import pil_entries, pil_get, pil_pop, pil_set_entry, pil_signal
from .libraryimports import import_get, import_pop, import_set
from .pandasextensions import pandas_entries, pandas_get, pandas_pop, pandas_set, pandas_signal
from .plotextensions import plot_entries, plot_get, plot_pop, plot_set, plot_signal, plot_watch
from .sqliteadapters import sqlite_entries, sqlite_get, sqlite_pop, sqlite_set, sqlite_signal
from .xarrayaccessors import xarray_entries, xarray_get, xarray_pop, xarray_set, xarray_signal
from .xmlnamespaces import xml_entries, xml_get, xml_pop, xml_set, xml_signal
from .yamltags import yaml_entries, yaml_get, yaml_pop, yaml_set, yaml_signal, yaml_watch

log = logging.getLogger(__name__)

# module -> (signal, entries): the parent's side of each registry, read when the module is imported
_READERS = {
    "pandas": (pandas_signal, pandas_entries),
    "xarray": (xarray_signal, xarray_entries),
    "matplotlib": (matplotlib_signal, matplotlib_entries),
    "matplotlib.font_manager": (fonts_signal, fonts_entries),
    "PIL.Image": (pil_signal, pil_entries),
    "sqlite3": (sqlite_signal, sqlite_entries),
    "csv": (csv_signal, csv_entries),
    "mimetypes": (mimetypes_signal, mimetypes_entries),
    "xml.etree.ElementTree": (xml_signal, xml_entries),
    "abc": (abc_signal, abc_entries),
    "functools": (generic_signal, generic_entries),
    "yaml": (yaml_signal, yaml_entries),
    "matplotlib.projections": (plot_signal, plot_entries),
}
_MODULES = tuple(_READERS)

# family -> (get, set, pop) of its entries in this worker
_FAMILIES = {
    "pandas": (pandas_get, pandas_set, pandas_pop),
    "xarray": (xarray_get, xarray_set, xarray_pop),
    "matplotlib": (matplotlib_get, matplotlib_set, matplotlib_pop),
    "matplotlib.font": (fonts_get, fonts_set, fonts_pop),
    "import": (import_get, import_set, import_pop),
    "PIL": (pil_get, pil_set_entry, pil_pop),
    "sqlite3": (sqlite_get, sqlite_set, sqlite_pop),
    "mimetypes": (mimetypes_get, mimetypes_set, mimetypes_pop),
    "csv": (csv_get, csv_set, csv_pop),
    "xml": (xml_get, xml_set, xml_pop),
    "abc": (abc_get, abc_set, abc_pop),
    "singledispatch": (generic_get, generic_set, generic_pop),
    "yaml": (yaml_get, yaml_set, yaml_pop),
    "matplotlib.projection": (plot_get, plot_set, plot_pop),
    "matplotlib.scale": (plot_get, plot_set, plot_pop),
    "matplotlib.units": (plot_get, plot_set, plot_pop),
}
# family -> where the parent keeps an entry, for those of the families' own modules (else common.watch)
_WATCHES = {
    "singledispatch": generic_watch,
    "yaml": yaml_watch,
    "matplotlib.projection": plot_watch,
    "matplotlib.scale": plot_watch,
    "matplotlib.units": plot_watch,
}

# parent: ((the modules, then their signals) as read last, the pickle of the entries, where
# those that a signal misses are: watch)
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
    ym, pj = get("yaml"), get("matplotlib.projections")
    try:
        now = _signals(pd, xr, mpl, fm, pil, sq, cs, mt, et, ym, pj)
    except Exception as exc:  # noqa: BLE001 - a library of another shape (or half imported): as last read
        if signalhold.from_handler(exc):  # (an alarm's deadline: the call's, raised again)
            raise
        return _read[1]
    seen, data, watched = _read
    if now == seen and all([same_entry(*w) for w in watched]):  # (watched: usually none)
        return data
    return _read_entries(now)


def _signals(
    pd: Any, xr: Any, mpl: Any, fm: Any, pil: Any, sq: Any, cs: Any, mt: Any, et: Any, ym: Any, pj: Any
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
        functools,
        ym,
        pj,
        pd and pandas_signal(pd),
        xr and xarray_signal(xr),
        mpl and matplotlib_signal(mpl),
        fm and fonts_signal(fm),
        pil and pil_signal(pil),
        sq and sqlite_signal(sq),
        cs and csv_signal(cs),
        mt and mimetypes_signal(mt),
        et and xml_signal(et),
        abc.get_cache_token(),
        generic_signal(functools),
        ym and yaml_signal(ym),
        pj and plot_signal(pj),
    )


def _read_entries(now: tuple[Any, ...]) -> bytes | None:
    """The entries of the registries whose signals are *now*, pickled; kept in ``_read``."""
    global _read
    entries: list[tuple[Any, Any]] = []
    for name, module, signal in zip(_MODULES, now[: len(_MODULES)], now[len(_MODULES) :], strict=True):
        if signal is not None:
            try:
                entries.extend(_READERS[name][1](module))
            except Exception as exc:  # noqa: BLE001 - a library of another shape: its registry is left out
                if signalhold.from_handler(exc):
                    raise
                continue
    left_out: dict[Any, str] = {}
    data = dumps_each(entries, WHAT, LIMIT, None, left_out) if entries else None
    for key, why in left_out.items():
        warn_left_out(key, why)
    try:
        watched = [w for w in map(_watch, entries) if w is not None]
    except Exception as exc:  # noqa: BLE001 - (as the entries: a library of another shape)
        if signalhold.from_handler(exc):
            raise
        watched = []
    _read = (now, data, watched)
    return data


def _watch(entry: tuple[Any, Any]) -> Any:
    mine = _WATCHES.get(entry[0][0])
    return watch(entry) if mine is None else mine(*entry)


def family(key: Any) -> str:
    """The registry of an entry's key: its first item, but for a package's kinds of entry
    that have a module of their own (``pandas.accessor``, ``PIL``), the package."""
    kind = key[0]
    return kind if kind in _OWN_KINDS else kind.split(".")[0]


# the kinds of entry that are families of their own (else the package's: "pandas.accessor")
_OWN_KINDS = frozenset({"matplotlib.font", "matplotlib.projection", "matplotlib.scale", "matplotlib.units"})


class _Registries:
    """The registries, as the one table an :class:`~picklepool.workers.overlay.Overlay` lays the parent's
    entries over, keyed ``(registry, ...)``."""

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return _FAMILIES[family(key)][0](key, default)
        except Exception:  # noqa: BLE001 - (the library cannot be imported here: nothing of it)
            return default

    def __setitem__(self, key: Any, value: Any) -> None:
        try:
            _FAMILIES[family(key)][1](key, value)
        except Exception as exc:  # noqa: BLE001 - this worker's library refuses it: the others still go
            log.debug("picklepool: %s could not be made here (%r): %r", WHAT, key, exc)

    def pop(self, key: Any, default: Any = None) -> Any:
        try:
            _FAMILIES[family(key)][2](key)
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
