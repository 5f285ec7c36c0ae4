"""pandas' options the parent set (``pd.set_option``, ``pd.options.x = ...``), set in a worker too.

A script sets pandas' options once, at its top: ``pd.set_option("display.max_columns",
None)``, ``display.precision``, ``display.float_format``, ``mode.copy_on_write`` (pandas
2), ``future.infer_string``. In the loop the call replaces, its tasks run under them: a
task's ``df.to_string()`` or log line shows every column, its numbers with the script's
precision, and its assignments copy or not as the script chose. A warm worker never ran
the script's ``set_option``, so the same task printed a truncated frame, or computed with
another copy rule, in the pool (under joblib too).

:func:`pickled` reads, in the parent, the options that differ from their registered
defaults: only when pandas is imported, and again only when pandas' options changed (one
comparison of its option tree with a copy, ~2 us). Each is pickled apart (with hybrid: a
``float_format`` function of the script by value), so one that cannot be pickled is left
out, not the others. :func:`apply` sets them in the worker before each batch (pandas is
imported there for them), through ``pd.set_option``, with the warnings of deprecated
options silenced (the parent showed them where they were set), and puts back the worker's
own value of those the parent no longer sets. They are process-wide: not sent to a dask
cluster's shared workers.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from typing import Any

from .overlay import Overlay, dumps_each

log = logging.getLogger(__name__)

_MODULE = "pandas._config.config"
WHAT = "a pandas option"

# parent: (a copy of pandas' option tree as read last, the pickle of its changed options)
_read: tuple[dict[str, Any] | None, bytes | None] = (None, None)

# worker: the parent's options set here
_overlay = Overlay(WHAT)


def _tree_copy(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _tree_copy(v) if type(v) is dict else v for k, v in tree.items()}


def _value(tree: dict[str, Any], key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = node[part]
    return node


def _changed(module: Any, tree: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(key, value)`` of the options of *tree* that differ from their defaults."""
    out = []
    for key, option in list(module._registered_options.items()):
        try:
            value = _value(tree, key)
            if bool(value != option.defval):
                out.append((key, value))
        except Exception:  # noqa: BLE001 - not in the tree, or not comparable: not sent
            continue
    return out


def pickled() -> bytes | None:
    """The pandas options the program set, pickled (None: pandas is not imported, or they
    are its defaults). Kept while pandas' option tree is equal to the copy read last."""
    global _read
    module = sys.modules.get(_MODULE)
    if module is None:
        return None
    tree = getattr(module, "_global_config", None)
    if type(tree) is not dict or type(getattr(module, "_registered_options", None)) is not dict:
        return None  # (a pandas that keeps them otherwise: not mirrored)
    seen, data = _read
    if seen is not None and seen == tree:
        return data
    entries = _changed(module, tree)
    data = dumps_each(entries, WHAT) if entries else None
    _read = (_tree_copy(tree), data)
    return data


class _Options:
    """pandas' options as the table an :class:`~.overlay.Overlay` lays the parent's over."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return _value(self.module._global_config, key)
        except (KeyError, TypeError):
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (a deprecated option: the parent warned)
            try:
                self.module.set_option(key, value)
            except Exception as exc:  # noqa: BLE001 - one this pandas refuses: the others are set
                log.debug("picklepool: pandas option %s=%r of the parent not set here: %r", key, value, exc)

    def pop(self, key: str, default: Any = None) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.module.reset_option(key)
            except Exception as exc:  # noqa: BLE001
                log.debug("picklepool: pandas option %s not reset here: %r", key, exc)
        return default


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    module = sys.modules.get(_MODULE)
    if _overlay.added and module is not None:
        _overlay.rebase(_Options(module))  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Set the options pickled in *data* in this worker's pandas (None: the parent set
    none), and put back the worker's own value of those set for an earlier batch that the
    parent no longer sets. pandas is imported for options only."""
    if data is None and not _overlay.added:  # (the usual case)
        return
    module = sys.modules.get(_MODULE)
    if module is None:
        try:
            importlib.import_module("pandas")  # (it registers the options)
        except ImportError:  # (a worker without it: a task using it fails there anyway)
            return
        module = sys.modules.get(_MODULE)
    if module is None or type(getattr(module, "_global_config", None)) is not dict:
        return
    _overlay.apply(_Options(module), data)  # type: ignore[arg-type]
