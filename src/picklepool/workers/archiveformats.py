"""The archive formats the parent registered in ``shutil``, registered in a worker too.

A script that handles ``.7z`` or ``.rar`` files registers them once, at its top, as py7zr's
documentation shows: ``shutil.register_unpack_format("7zip", [".7z"], unpack_7zarchive)``
(and ``register_archive_format`` for ``make_archive``). In the loop the call replaces, a
task's ``shutil.unpack_archive("data.7z", folder)`` extracts it; a warm worker never ran
those lines, so the same task raised ``ReadError: Unknown archive format`` (under joblib
too).

:func:`pickled` reads, in the parent, the formats of ``shutil._ARCHIVE_FORMATS`` and
``shutil._UNPACK_FORMATS`` whose function is not ``shutil``'s own: only when ``shutil`` is
imported, and again only when one of the two tables changed (two comparisons of a handful of
entries with a copy while nothing changes). Each is pickled apart, so one that cannot be
pickled is left out, not the others. :func:`apply` registers them in the worker before each
batch, again if a task changed one, and takes back those the parent no longer has (the
worker's own, if it had one, returns). Process-wide: not sent to a dask cluster's shared
workers.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .overlay import Overlay, dumps_each

WHAT = "an archive format registered in shutil"
_TABLES = {"archive": "_ARCHIVE_FORMATS", "unpack": "_UNPACK_FORMATS"}

# parent: (shutil, its two tables, copies of them as read last, the pickle of the program's
# formats)
_read: tuple[Any, Any, Any, Any, Any, bytes | None] = (None, None, None, None, None, None)


def _own_function(entry: Any) -> bool:
    """True when *entry* (a table's value: its function among its items) is ``shutil``'s."""
    if type(entry) is not tuple:
        return True  # (a shutil of another shape: left alone)
    return any(callable(item) and getattr(item, "__module__", None) == "shutil" for item in entry)


def pickled() -> bytes | None:
    """The archive formats the program registered in ``shutil``, pickled (None: ``shutil``
    is not imported, or it has only its own)."""
    global _read
    shutil = sys.modules.get("shutil")
    held, archive, unpack, seen_archive, seen_unpack, data = _read
    if shutil is held and archive == seen_archive and unpack == seen_unpack:
        return data  # (the live tables against their copies: no attribute looked up)
    if shutil is None:
        return None
    archive, unpack = getattr(shutil, "_ARCHIVE_FORMATS", None), getattr(shutil, "_UNPACK_FORMATS", None)
    if type(archive) is not dict or type(unpack) is not dict:
        return None
    entries = [
        ((kind, name), entry)
        for kind, table in (("archive", archive), ("unpack", unpack))
        for name, entry in list(table.items())
        if not _own_function(entry)
    ]
    data = dumps_each(entries, WHAT) if entries else None
    _read = (shutil, archive, unpack, dict(archive), dict(unpack), data)
    return data


class _Formats:
    """``shutil``'s two tables of formats as the one table an :class:`~.overlay.Overlay`
    lays the parent's over, keyed ``(kind, name)``."""

    def __init__(self, shutil: Any) -> None:
        self.tables = {kind: getattr(shutil, name) for kind, name in _TABLES.items()}

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        return self.tables[key[0]].get(key[1], default)

    def __setitem__(self, key: tuple[str, str], value: Any) -> None:
        self.tables[key[0]][key[1]] = value

    def pop(self, key: tuple[str, str], default: Any = None) -> Any:
        return self.tables[key[0]].pop(key[1], default)


# worker: the parent's formats registered here
_overlay = Overlay(WHAT)


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    shutil = sys.modules.get("shutil")
    if _overlay.added and shutil is not None:
        _overlay.rebase(_Formats(shutil))  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Make this worker's ``shutil`` have the formats pickled in *data* (None: the parent
    registered none), and take back those registered for an earlier batch that the parent no
    longer has."""
    if data is None and not _overlay.added:  # (the usual case)
        return
    shutil = sys.modules.get("shutil") or importlib.import_module("shutil")
    if not all(type(getattr(shutil, name, None)) is dict for name in _TABLES.values()):
        return
    _overlay.apply(_Formats(shutil), data)  # type: ignore[arg-type]
