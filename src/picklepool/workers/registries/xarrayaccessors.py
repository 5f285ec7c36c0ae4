"""xarray: the accessors the script registered (``xr.register_dataset_accessor("geo")``,
``_dataarray_``, ``_datatree_``), read in the parent and registered in a worker (a family
of :mod:`.table`)."""

from __future__ import annotations

import importlib
from typing import Any

from .common import library, quietly

_XARRAY_REGISTER = {
    "Dataset": "register_dataset_accessor",
    "DataArray": "register_dataarray_accessor",
    "DataTree": "register_datatree_accessor",
}


def _xarray_classes(xr: Any) -> list[tuple[str, Any]]:
    return [
        (name, getattr(xr, name)) for name in _XARRAY_REGISTER if isinstance(getattr(xr, name, None), type)
    ]


# xarray -> the namespaces of the classes accessors are registered on, found once
_xarray_held: tuple[Any, tuple[Any, ...]] = (None, ())


def xarray_signal(xr: Any) -> Any:
    global _xarray_held
    held, classes = _xarray_held
    if held is not xr:
        classes = tuple(vars(cls) for _, cls in _xarray_classes(xr))  # (live views)
        _xarray_held = (xr, classes)
    return tuple(map(len, classes))  # an accessor is a new attribute


def xarray_entries(xr: Any) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    for owner, cls in _xarray_classes(xr):
        for name, attr in list(vars(cls).items()):
            if type(attr).__name__ != "_CachedAccessor":
                continue
            accessor = getattr(attr, "_accessor", None)
            if accessor is not None and not library(accessor, "xarray"):
                out.append((("xarray.accessor", owner, name), accessor))
    return out


def xarray_get(key: Any, default: Any) -> Any:
    cls = getattr(importlib.import_module("xarray"), key[1])
    found = getattr(vars(cls).get(key[2]), "_accessor", None)
    return default if found is None else found


def xarray_set(key: Any, value: Any) -> None:
    xr = importlib.import_module("xarray")
    quietly(getattr(xr, _XARRAY_REGISTER[key[1]])(key[2]), value)


def xarray_pop(key: Any) -> None:
    cls = getattr(importlib.import_module("xarray"), key[1])
    if key[2] in vars(cls):
        delattr(cls, key[2])
