"""How objects become bytes: the picklers, their registry, and lock reducers."""

from .base import BasePickler, CloudPickler, StdlibPickler
from .registry import (
    get_pickler,
    register_pickler,
    resolve_pickler,
    unregister_pickler,
)
from .wrap import wrap_non_picklable_objects

__all__ = [
    "BasePickler",
    "CloudPickler",
    "StdlibPickler",
    "get_pickler",
    "register_pickler",
    "resolve_pickler",
    "unregister_pickler",
    "wrap_non_picklable_objects",
]
