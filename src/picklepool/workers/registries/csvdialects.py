"""csv: the dialects the script registered (``csv.register_dialect``), sent as their
attributes and registered in a worker (a family of :mod:`.table`)."""

from __future__ import annotations

import importlib
from typing import Any

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


def csv_signal(csv: Any) -> Any:
    names = csv.list_dialects()
    if len(names) == len(_CSV_OWN):  # (the usual case: csv's own)
        return len(names)
    return tuple((name, csv.get_dialect(name)) for name in names)  # (a dialect again: another object)


def csv_entries(csv: Any) -> list[tuple[Any, Any]]:
    return [
        (("csv", name), tuple(getattr(csv.get_dialect(name), attr) for attr in _CSV_ATTRS))
        for name in csv.list_dialects()
        if name not in _CSV_OWN
    ]


def csv_get(key: Any, default: Any) -> Any:
    csv = importlib.import_module("csv")
    if key[1] not in csv.list_dialects():
        return default
    found = csv.get_dialect(key[1])
    made = _csv_made.get(key[1])
    if made is not None and made[1] is found:
        return made[0]
    return tuple(getattr(found, attr) for attr in _CSV_ATTRS)


def csv_set(key: Any, value: Any) -> None:
    csv = importlib.import_module("csv")
    csv.register_dialect(key[1], **dict(zip(_CSV_ATTRS, value, strict=True)))
    _csv_made[key[1]] = (value, csv.get_dialect(key[1]))


def csv_pop(key: Any) -> None:
    csv = importlib.import_module("csv")
    _csv_made.pop(key[1], None)
    if key[1] in csv.list_dialects():
        csv.unregister_dialect(key[1])
