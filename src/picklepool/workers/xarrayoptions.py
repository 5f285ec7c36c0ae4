"""xarray's options the parent set (``xr.set_options(keep_attrs=True)``), set in a worker too.

A script sets xarray's options once, at its top: ``xr.set_options(keep_attrs=True)`` (an
operation's result keeps its inputs' attributes: units, long names), ``arithmetic_join``,
``display_width``, ``use_bottleneck``. In the loop the call replaces, its tasks compute
under them; a warm worker never ran the script's ``set_options``, so the same task's
results lost their attributes, or aligned otherwise (under joblib too).

:func:`pickled` reads, in the parent, the options that differ from xarray's defaults
(those of a fresh copy of its options module, made once): only when xarray is imported,
and again only when its ``OPTIONS`` changed (one comparison with a copy, about 1 us).
Each is pickled apart. :func:`apply` sets them in the worker before each batch (xarray is
imported there for them) through ``xr.set_options``, which validates them, and puts back
the worker's own value of those the parent no longer sets. Not sent to a dask cluster's
shared workers.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import warnings
from typing import Any

from .overlay import Overlay, dumps_each

log = logging.getLogger(__name__)

_MODULE = "xarray.core.options"
WHAT = "an xarray option"
_NONE = object()

# parent: (a copy of OPTIONS as read last, the pickle of its changed options); xarray's
# defaults (None: not read yet; {}: unknown, every option is sent)
_read: tuple[dict[str, Any] | None, bytes | None] = (None, None)
_defaults: dict[str, Any] | None = None

# worker: the parent's options set here
_overlay = Overlay(WHAT)


def _fresh_defaults(module: Any) -> dict[str, Any]:
    """``OPTIONS`` as a fresh copy of *module* (xarray's options module) makes it."""
    try:
        spec = importlib.util.spec_from_file_location("_picklepool_xarray_options", module.__file__)
        fresh = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(fresh)  # type: ignore[union-attr]
        return dict(fresh.OPTIONS)
    except Exception as exc:  # noqa: BLE001 - a layout this does not know: every option is sent
        log.debug("picklepool: xarray's default options not read: %r", exc)
        return {}


def pickled() -> bytes | None:
    """The xarray options the program set, pickled (None: xarray is not imported, or they
    are its defaults). Kept while ``OPTIONS`` equals the copy read last."""
    global _read, _defaults
    module = sys.modules.get(_MODULE)
    options = getattr(module, "OPTIONS", None)
    if type(options) is not dict:
        return None
    seen, data = _read
    if seen is not None and seen == options:
        return data
    if _defaults is None:
        _defaults = _fresh_defaults(module)
    entries = []
    for key, value in list(options.items()):
        try:
            changed = bool(value != _defaults.get(key, _NONE))
        except Exception:  # noqa: BLE001 - not comparable: sent
            changed = True
        if changed:
            entries.append((key, value))
    data = dumps_each(entries, WHAT) if entries else None
    _read = (dict(options), data)
    return data


class _Options:
    """xarray's ``OPTIONS`` as the table an :class:`~.overlay.Overlay` lays the parent's over."""

    def __init__(self, module: Any, xarray: Any) -> None:
        self.options = module.OPTIONS
        self.set_options = xarray.set_options

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (a deprecated option: the parent warned)
            try:
                self.set_options(**{key: value})  # (not as a with block: it stays set)
            except Exception as exc:  # noqa: BLE001 - one this xarray refuses: the others are set
                log.debug("picklepool: xarray option %s=%r not set here: %r", key, value, exc)

    def pop(self, key: str, default: Any = None) -> Any:
        return default  # (every option has a value: the worker's own is set back instead)


def _table(importing: bool) -> _Options | None:
    if _MODULE not in sys.modules:
        if not importing:
            return None
        try:
            importlib.import_module("xarray")
        except ImportError:  # (a worker without it: a task using it fails there anyway)
            return None
    module, xarray = sys.modules.get(_MODULE), sys.modules.get("xarray")
    if type(getattr(module, "OPTIONS", None)) is not dict:
        return None
    if not callable(getattr(xarray, "set_options", None)):
        return None
    return _Options(module, xarray)


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    table = _table(importing=False) if _overlay.added else None
    if table is not None:
        _overlay.rebase(table)  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Set the options pickled in *data* in this worker's xarray (None: the parent set
    none), and put back the worker's own value of those set for an earlier batch that the
    parent no longer sets. xarray is imported for them only."""
    if data is None and not _overlay.added:  # (the usual case)
        return
    table = _table(importing=True)
    if table is not None:
        _overlay.apply(table, data)  # type: ignore[arg-type]
