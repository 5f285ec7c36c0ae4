"""A library whose import registers entries (seaborn's colormaps: :mod:`.colormaps`):
the worker imports it, under its own warning filters (a family of :mod:`.table`)."""

from __future__ import annotations

import importlib
import sys
from typing import Any


def import_get(key: Any, default: Any) -> Any:
    return True if key[1] in sys.modules else default


def import_set(key: Any, value: Any) -> None:
    from .. import warnfilters

    with warnfilters.loading():  # (its import warns under the worker's filters, not the parent's)
        importlib.import_module(key[1])


def import_pop(key: Any) -> None:
    """A module imported stays imported (its registrations with it)."""
