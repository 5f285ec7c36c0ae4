"""pandas: the accessors (``register_dataframe_accessor``, ``_series_``, ``_index_``) and
extension dtypes (``register_extension_dtype``) the script registered, read in the parent
and registered in a worker (a family of :mod:`.table`)."""

from __future__ import annotations

import importlib
from typing import Any

from .common import library, quietly

_PANDAS_CLASSES = ("DataFrame", "Series", "Index")
_PANDAS_REGISTER = {
    "DataFrame": "register_dataframe_accessor",
    "Series": "register_series_accessor",
    "Index": "register_index_accessor",
}


# pandas -> (its DataFrame, Series and Index accessor names, its extension dtypes), found once
_pandas_tables: tuple[Any, Any] = (None, None)


def pandas_signal(pd: Any) -> Any:
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


def pandas_entries(pd: Any) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    for owner in _PANDAS_CLASSES:
        cls = getattr(pd, owner)
        for name in sorted(getattr(cls, "_accessors", ())):
            accessor = getattr(vars(cls).get(name), "_accessor", None)
            if accessor is not None and not library(accessor, "pandas"):
                out.append((("pandas.accessor", owner, name), accessor))
    from pandas.core.dtypes.base import _registry

    seen = set()
    for dtype in list(_registry.dtypes):
        name = (dtype.__module__, dtype.__qualname__)
        if not library(dtype, "pandas") and name not in seen:  # (the first: pandas finds that one)
            seen.add(name)
            out.append((("pandas.dtype", *name), dtype))
    return out


def pandas_get(key: Any, default: Any) -> Any:
    pd = importlib.import_module("pandas")
    if key[0] == "pandas.accessor":
        found = getattr(vars(getattr(pd, key[1])).get(key[2]), "_accessor", None)
        return default if found is None else found
    from pandas.core.dtypes.base import _registry

    for dtype in _registry.dtypes:
        if (dtype.__module__, dtype.__qualname__) == key[1:]:
            return dtype
    return default


def pandas_set(key: Any, value: Any) -> None:
    pd = importlib.import_module("pandas")
    if key[0] == "pandas.accessor":
        quietly(getattr(pd.api.extensions, _PANDAS_REGISTER[key[1]])(key[2]), value)
        return
    from pandas.core.dtypes.base import _registry

    pandas_pop(key)
    _registry.register(value)


def pandas_pop(key: Any) -> None:
    pd = importlib.import_module("pandas")
    if key[0] == "pandas.accessor":
        cls = getattr(pd, key[1])
        if key[2] in vars(cls):
            delattr(cls, key[2])
        cls._accessors.discard(key[2])
        return
    from pandas.core.dtypes.base import _registry

    _registry.dtypes[:] = [d for d in _registry.dtypes if (d.__module__, d.__qualname__) != key[1:]]
