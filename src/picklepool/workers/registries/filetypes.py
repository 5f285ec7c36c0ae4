"""mimetypes: the file types the script added (``mimetypes.add_type``), those that differ
from what a worker's ``mimetypes.init()`` reads, added in a worker (a family of
:mod:`.table`)."""

from __future__ import annotations

import importlib
from typing import Any

# parent: a database as a worker's mimetypes.init() makes it (the same files), made once
_mime_baseline: Any = None


def mimetypes_signal(mimetypes: Any) -> Any:
    db = getattr(mimetypes, "_db", None)
    maps = getattr(db, "types_map", None)
    if type(maps) is not tuple or len(maps) != 2:
        return None  # (not initialized yet: nothing added, as add_type initializes first)
    return db, len(maps[0]), len(maps[1])


def mimetypes_entries(mimetypes: Any) -> list[tuple[Any, Any]]:
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


def mimetypes_get(key: Any, default: Any) -> Any:
    return _mimetypes_map(key).get(key[2], default)


def mimetypes_set(key: Any, value: Any) -> None:
    importlib.import_module("mimetypes").add_type(value, key[2], key[1])


def mimetypes_pop(key: Any) -> None:
    _mimetypes_map(key).pop(key[2], None)
