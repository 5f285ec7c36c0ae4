"""Pillow: the image formats of plugins that are not Pillow's (pillow-heif's
``register_heif_opener()``: HEIC), read in the parent and registered in a worker (a family
of :mod:`.table`)."""

from __future__ import annotations

import importlib
from typing import Any

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


def pil_signal(image: Any) -> Any:
    global _pil_tables
    held, tables = _pil_tables
    if held is not image:
        tables = tuple(getattr(image, table, None) for table in _PIL_TABLES)
        if not all(type(t) is dict for t in tables):
            tables = None
        _pil_tables = (image, tables)
    return None if tables is None else tuple(map(len, tables))


def pil_entries(image: Any) -> list[tuple[Any, Any]]:
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


def pil_get(key: Any, default: Any) -> Any:
    found = getattr(importlib.import_module("PIL.Image"), key[1]).get(key[2], default)
    mine = _pil_set.get(key)
    return mine[0] if mine is not None and mine[1] is found else found


def pil_set_entry(key: Any, value: Any) -> None:
    image = importlib.import_module("PIL.Image")
    register = getattr(image, _PIL_TABLES[key[1]])
    if key[1] == "OPEN":
        register(key[2], *value)
    elif key[1] == "EXTENSION":
        register(value, key[2])  # (extension -> format: register_extension(format, extension))
    else:
        register(key[2], value)
    _pil_set[key] = (value, getattr(image, key[1]).get(key[2]))


def pil_pop(key: Any) -> None:
    image = importlib.import_module("PIL.Image")
    _pil_set.pop(key, None)
    getattr(image, key[1]).pop(key[2], None)
    if key[1] == "OPEN" and key[2] in image.ID:
        image.ID.remove(key[2])
