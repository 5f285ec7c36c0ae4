"""matplotlib: the projections, scales and unit converters the script registered.

A script extends matplotlib with an axes class of its own (``register_projection(MyAxes)``,
then ``fig.add_subplot(projection="myaxes")``), a scale (``matplotlib.scale.register_scale``,
then ``ax.set_xscale("sq")``) or a unit converter (``matplotlib.units.registry[Meters] =
MetersConverter()``, then ``ax.plot([Meters(1), ...])``). In the loop a task's figure used
them; a warm worker's matplotlib has its own only, so the same task raised ``ValueError``
("Unknown projection", "is not a valid value for scale") or ``TypeError``, or plotted the raw
values.

The tables: ``matplotlib.projections.projection_registry``'s, ``matplotlib.scale``'s mapping
and ``matplotlib.units.registry``; the signal is their sizes (three ``len`` a call, once
``matplotlib.projections`` is imported, as pyplot does). Sent: the projections and scales
whose class is not matplotlib's (or mpl_toolkits'), and the converters whose type or class is
the script's (``__main__``; an installed library's, pandas', registers its own in a worker as
it does here), keyed ``("matplotlib.projection", name)``, ``("matplotlib.scale", name)``,
``("matplotlib.units", type)``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .common import library

_OWN = ("matplotlib", "mpl_toolkits")
_MAIN = ("__main__", "__mp_main__")


def _tables() -> tuple[Any, Any, Any]:
    """(the projections by name, the scales by name, the converters by type): matplotlib's
    own dicts, None for a module not imported."""
    projections = sys.modules.get("matplotlib.projections")
    scale = sys.modules.get("matplotlib.scale")
    units = sys.modules.get("matplotlib.units")
    return (
        getattr(getattr(projections, "projection_registry", None), "_all_projection_types", None),
        getattr(scale, "_scale_mapping", None),
        getattr(units, "registry", None),
    )


def plot_signal(_projections: Any) -> Any:
    return tuple(None if t is None else len(t) for t in _tables())


def plot_entries(_projections: Any) -> list[tuple[Any, Any]]:
    projections, scales, converters = _tables()
    out: list[tuple[Any, Any]] = []
    for kind, table in (("matplotlib.projection", projections), ("matplotlib.scale", scales)):
        for name, cls in list((table or {}).items()):
            if not library(cls, *_OWN):
                out.append(((kind, name), cls))
    for cls, converter in list((converters or {}).items()):
        if getattr(cls, "__module__", None) in _MAIN or type(converter).__module__ in _MAIN:
            out.append((("matplotlib.units", cls), converter))
    return out


def plot_watch(key: Any, value: Any) -> Any:
    table = _tables()[("matplotlib.projection", "matplotlib.scale", "matplotlib.units").index(key[0])]
    return (table, key[1], value, None) if table is not None else None


def _table(key: Any) -> dict[Any, Any]:
    if key[0] == "matplotlib.projection":
        return importlib.import_module("matplotlib.projections").projection_registry._all_projection_types  # type: ignore[no-any-return]
    if key[0] == "matplotlib.scale":
        return importlib.import_module("matplotlib.scale")._scale_mapping  # type: ignore[no-any-return]
    return importlib.import_module("matplotlib.units").registry  # type: ignore[no-any-return]


def plot_get(key: Any, default: Any) -> Any:
    return _table(key).get(key[1], default)


def plot_set(key: Any, value: Any) -> None:
    if key[0] == "matplotlib.scale":
        scale = importlib.import_module("matplotlib.scale")
        if getattr(value, "name", None) == key[1]:
            scale.register_scale(value)  # (its notes on the scale's constructor too)
            return
    _table(key)[key[1]] = value


def plot_pop(key: Any) -> None:
    _table(key).pop(key[1], None)
