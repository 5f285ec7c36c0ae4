"""sqlite3: the adapters and converters the script registered
(``sqlite3.register_adapter(Decimal, str)``), read in the parent and registered in a worker
(a family of :mod:`.table`)."""

from __future__ import annotations

import importlib
from typing import Any

from .common import library

_SQLITE_OWN = "sqlite3"  # the module of sqlite3's own adapters and converters (sqlite3.dbapi2)


# parent: copies of sqlite3's adapters and converters as read last, and how many times they changed
_sqlite_seen: tuple[Any, Any, int] = (None, None, 0)


def sqlite_signal(sqlite3: Any) -> Any:
    global _sqlite_seen
    adapters, converters = getattr(sqlite3, "adapters", None), getattr(sqlite3, "converters", None)
    if type(adapters) is not dict or type(converters) is not dict:
        return None
    seen_adapters, seen_converters, changes = _sqlite_seen
    if adapters == seen_adapters and converters == seen_converters:  # (a handful, by identity)
        return changes
    _sqlite_seen = (dict(adapters), dict(converters), changes + 1)
    return changes + 1


def sqlite_entries(sqlite3: Any) -> list[tuple[Any, Any]]:
    return [
        ((f"sqlite3.{kind}", key), fn)
        for kind, table in (("adapter", sqlite3.adapters), ("converter", sqlite3.converters))
        for key, fn in list(table.items())
        if not library(fn, _SQLITE_OWN)
    ]


def _sqlite_table(key: Any) -> dict[Any, Any]:
    sqlite3 = importlib.import_module("sqlite3")
    return sqlite3.adapters if key[0] == "sqlite3.adapter" else sqlite3.converters  # type: ignore[no-any-return]


def sqlite_get(key: Any, default: Any) -> Any:
    return _sqlite_table(key).get(key[1], default)


def sqlite_set(key: Any, value: Any) -> None:
    _sqlite_table(key)[key[1]] = value


def sqlite_pop(key: Any) -> None:
    _sqlite_table(key).pop(key[1], None)
