"""How objects become bytes: the picklers, their registry, and lock reducers.

The names below are imported on first use, so that a worker, which imports the
submodules it needs (``pickler.buffers``, the call's pickler class), does not load
the registry and the settings with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the submodule that defines it
_WHERE = {
    "BasePickler": "base",
    "CloudPickler": "base",
    "StdlibPickler": "base",
    "get_pickler": "registry",
    "register_pickler": "registry",
    "resolve_pickler": "registry",
    "unregister_pickler": "registry",
    "wrap_non_picklable_objects": "wrap",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'picklepool.pickler' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups do not come here again
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .base import BasePickler as BasePickler
    from .base import CloudPickler as CloudPickler
    from .base import StdlibPickler as StdlibPickler
    from .registry import get_pickler as get_pickler
    from .registry import register_pickler as register_pickler
    from .registry import resolve_pickler as resolve_pickler
    from .registry import unregister_pickler as unregister_pickler
    from .wrap import wrap_non_picklable_objects as wrap_non_picklable_objects
