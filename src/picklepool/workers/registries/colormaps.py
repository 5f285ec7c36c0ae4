"""matplotlib: the colormaps the script registered (``matplotlib.colormaps.register``),
read in the parent and registered in a worker (a family of :mod:`.table`); those an
imported library's module holds travel as that module's name (:mod:`.libraryimports`)."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from ..reloads import file_of
from .common import quietly

# worker: name -> (the parent's colormap, the copy that matplotlib's registry keeps of it)
_colormaps_set: dict[str, tuple[Any, Any]] = {}


def _colormaps(mpl: Any) -> Any:
    registry = getattr(mpl, "colormaps", None)
    if type(getattr(registry, "_cmaps", None)) is dict and hasattr(registry, "_builtin_cmaps"):
        return registry
    return None


def matplotlib_signal(mpl: Any) -> Any:
    registry = _colormaps(mpl)
    if registry is None:
        return None
    cmaps, own = registry._cmaps, registry._builtin_cmaps
    if len(cmaps) == len(own):  # (the usual case: matplotlib's only)
        return len(cmaps)
    return tuple((name, id(cmap)) for name, cmap in cmaps.items() if name not in own)


def matplotlib_entries(mpl: Any) -> list[tuple[Any, Any]]:
    registry = _colormaps(mpl)
    own = registry._builtin_cmaps
    cmaps = {name: cmap for name, cmap in list(registry._cmaps.items()) if name not in own}
    homes = _library_homes(cmaps, getattr(mpl.colors, "Colormap", None)) if cmaps else {}
    out: list[tuple[Any, Any]] = [(("import", home), True) for home in dict.fromkeys(homes.values())]
    out += [(("matplotlib.colormap", name), cmap) for name, cmap in cmaps.items() if name not in homes]
    return out


def _library_homes(names: Any, kind: Any) -> dict[str, str]:
    """``{name: module}`` for the *names* that an imported module holds an object of *kind*
    of (a colormap) under, or named so (colorcet's ``fire`` is "cet_fire"): a module that
    registers its colormaps as it is imported (seaborn's 24 take 160 kB pickled, which every
    batch would carry; a project's, whose import in the worker found the name taken). The
    worker imports it instead. Not ``__main__``'s (a worker does not run the script), nor one
    its name does not import."""
    from ...pickler.homes import module_not_found

    if not isinstance(kind, type):
        return {}
    wanted = set(names)
    homes: dict[str, str] = {}
    for module_name, module in list(sys.modules.items()):
        if (
            module_name in ("__main__", "__mp_main__")
            or module_name.startswith("matplotlib")
            or not isinstance(file_of(module), str)
        ):
            continue
        for attr, value in list(getattr(module, "__dict__", {}).items()):
            if isinstance(value, kind):
                for name in (attr, getattr(value, "name", None)):
                    if isinstance(name, str) and name in wanted and name not in homes:
                        homes[name] = module_name
    return {name: home for name, home in homes.items() if not module_not_found(sys.modules.get(home))}


def matplotlib_get(key: Any, default: Any) -> Any:
    registry = _colormaps(importlib.import_module("matplotlib"))
    found = registry._cmaps.get(key[1], default)
    mine = _colormaps_set.get(key[1])
    return mine[0] if mine is not None and mine[1] is found else found


def matplotlib_set(key: Any, value: Any) -> None:
    registry = _colormaps(importlib.import_module("matplotlib"))
    quietly(registry.register, value, name=key[1], force=True)  # ("Overwriting the cmap")
    _colormaps_set[key[1]] = (value, registry._cmaps.get(key[1]))


def matplotlib_pop(key: Any) -> None:
    registry = _colormaps(importlib.import_module("matplotlib"))
    _colormaps_set.pop(key[1], None)
    if key[1] in registry._cmaps and key[1] not in registry._builtin_cmaps:
        registry.unregister(key[1])
