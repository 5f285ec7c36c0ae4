"""matplotlib: the font files the script added (``fontManager.addfont(path)``, a CJK font
for the labels) that a worker's font cache lacks, added in a worker (a family of
:mod:`.table`)."""

from __future__ import annotations

import importlib
import os
from typing import Any

# parent: the font files of the font cache a worker loads (read once)
_fonts_own: frozenset[str] | None = None


def fonts_signal(fm: Any) -> Any:
    manager = getattr(fm, "fontManager", None)
    lists = getattr(manager, "ttflist", None), getattr(manager, "afmlist", None)
    if type(lists[0]) is not list or type(lists[1]) is not list:
        return None
    return manager, len(lists[0]), len(lists[1])


def fonts_entries(fm: Any) -> list[tuple[Any, Any]]:
    global _fonts_own
    if _fonts_own is None:
        _fonts_own = _fonts_cached(fm)
    manager = fm.fontManager
    paths = dict.fromkeys(f.fname for f in [*manager.ttflist, *manager.afmlist])
    return [(("matplotlib.font", path), path) for path in paths if path not in _fonts_own]


def _fonts_cached(fm: Any) -> frozenset[str]:
    """The font files of matplotlib's font cache, which a worker's ``fontManager`` is
    loaded from; without one (it could not be written), those the parent has (none sent)."""
    import matplotlib

    manager = fm.fontManager
    try:
        cache = os.path.join(matplotlib.get_cachedir(), f"fontlist-v{fm.FontManager.__version__}.json")
        manager = fm.json_load(cache)
    except Exception:  # noqa: BLE001 - (no cache: the worker made its fontManager as the parent did)
        pass
    return frozenset(f.fname for f in [*manager.ttflist, *manager.afmlist])


def fonts_get(key: Any, default: Any) -> Any:
    manager = importlib.import_module("matplotlib.font_manager").fontManager
    found = any(f.fname == key[1] for f in reversed([*manager.ttflist, *manager.afmlist]))
    return key[1] if found else default


def fonts_set(key: Any, value: Any) -> None:
    importlib.import_module("matplotlib.font_manager").fontManager.addfont(value)


def fonts_pop(key: Any) -> None:
    manager = importlib.import_module("matplotlib.font_manager").fontManager
    manager.ttflist[:] = [f for f in manager.ttflist if f.fname != key[1]]
    manager.afmlist[:] = [f for f in manager.afmlist if f.fname != key[1]]
    manager._findfont_cached.cache_clear()
