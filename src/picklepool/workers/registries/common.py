"""What the registries' modules share: the words for an entry (:data:`WHAT`,
:func:`describe`), the size an entry may take pickled (:data:`LIMIT`) and the warning
for one left out (:func:`warn_left_out`), the parent's watch on the entries that no
signal sees replaced (:func:`watch`), and the helpers of the families' modules
(:func:`library`, :func:`quietly`)."""

from __future__ import annotations

import sys
import warnings
from typing import Any

WHAT = "a registration in a library's registry"


def library(obj: Any, *prefixes: str) -> bool:
    """True when *obj* (a class, a function) comes from a module under one of *prefixes*."""
    module = getattr(obj, "__module__", None) or ""
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def quietly(call: Any, *args: Any, **kwargs: Any) -> None:
    """``call(*args, **kwargs)`` without the warning that a name is taken already (the
    worker's own accessor or colormap, or the last batch's, which the parent's replaces)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call(*args, **kwargs)


LIMIT = 1 << 20  # bytes an entry may take pickled (it travels with every batch)
_warned: set[Any] = set()  # parent: the entries left out that a warning named already


def warn_left_out(key: Any, why: str) -> None:
    """Say, once per entry, that *key* is not sent to the workers, and why (*why*)."""
    if key in _warned:
        return
    _warned.add(key)
    from ...pickler.locks import callers_level

    if why.startswith("pickled,"):
        why += ", which would travel with every batch"
    warnings.warn(
        f"picklepool: {describe(key)} is not sent to the workers: {why}. A task that uses it "
        "there fails, or answers otherwise, where the loop's did not. Keep what it holds "
        "(a connection, a large table) out of the class, or register it in the tasks' own "
        "module or an initializer (Parallel(initializer=...)).",
        RuntimeWarning,
        stacklevel=callers_level(),  # (the call's line)
    )


def describe(key: Any) -> str:
    """An entry's key in words: ``the pandas accessor Series.codes``."""
    kind = key[0]
    if kind in ("pandas.accessor", "xarray.accessor"):
        return f"the {kind.split('.')[0]} accessor {key[1]}.{key[2]}"
    if kind == "pandas.dtype":
        return f"the pandas extension dtype {key[1]}.{key[2]}"
    if kind == "matplotlib.colormap":
        return f"the matplotlib colormap {key[1]!r}"
    if kind == "abc":
        return f"the registration of {getattr(key[2], '__qualname__', key[2])} as a {key[1].__qualname__}"
    return f"{WHAT} ({key!r})"


def watch(entry: tuple[Any, Any]) -> tuple[Any, Any, Any, str | None] | None:
    """Where the parent keeps *entry*, when registering another value under its name changes
    no signal (an accessor of a notebook's cell run again, a type given to an extension
    again): ``(mapping, name, value, attribute)``, compared by :func:`same_entry`."""
    key, value = entry
    kind = key[0]
    if kind in ("pandas.accessor", "xarray.accessor"):
        module = sys.modules.get(kind.split(".")[0])
        return (vars(getattr(module, key[1])), key[2], value, "_accessor") if module else None
    if kind == "PIL" and key[1] in ("OPEN", "SAVE", "SAVE_ALL"):
        image = sys.modules.get("PIL.Image")
        return (getattr(image, key[1]), key[2], value, None) if image is not None else None
    if kind == "xml.namespace":
        et = sys.modules.get("xml.etree.ElementTree")
        return (et._namespace_map, key[1], value, None) if et is not None else None
    if kind == "mimetypes":
        db = getattr(sys.modules.get("mimetypes"), "_db", None)
        return (db.types_map[1 if key[1] else 0], key[2], value, None) if db is not None else None
    return None


def same_entry(mapping: Any, name: Any, value: Any, attribute: str | None) -> bool:
    found = mapping.get(name)
    return (found if attribute is None else getattr(found, attribute, None)) is value
