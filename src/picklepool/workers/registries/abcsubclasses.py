"""The standard library's ABCs: the script's classes registered as their virtual
subclasses (``collections.abc.Mapping.register(Table)``), registered in a worker (a family
of :mod:`.table`). An ABC cannot forget a class: one the parent drops stays registered."""

from __future__ import annotations

import sys
from typing import Any

# the modules whose ABCs are looked at for the script's classes registered as their subclasses
ABC_MODULES = ("collections.abc", "numbers", "io", "os", "contextlib")


def abc_signal(_abc: Any) -> Any:
    return _abc.get_cache_token()  # one more with every ABC's register() anywhere


def _registered(abc_class: Any) -> list[Any]:
    try:
        from _abc import _get_dump

        refs = _get_dump(abc_class)[0]
    except (ImportError, TypeError):  # (the pure-Python abc: its registry is an attribute)
        refs = getattr(abc_class, "_abc_registry", ())
    return [c for c in (r() for r in list(refs)) if c is not None]


def abc_entries(_abc: Any) -> list[tuple[Any, Any]]:
    main = sys.modules.get("__main__")
    out: list[tuple[Any, Any]] = []
    seen: set[int] = set()
    for module_name in ABC_MODULES:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        for abc_class in list(vars(module).values()):
            if not isinstance(abc_class, _abc.ABCMeta) or id(abc_class) in seen:
                continue
            seen.add(id(abc_class))
            for sub in _registered(abc_class):
                if getattr(sub, "__module__", None) == "__main__" and main is not None:
                    out.append((("abc", abc_class, sub), True))
    return out


def abc_get(key: Any, default: Any) -> Any:
    return True if key[2] in _registered(key[1]) else default


def abc_set(key: Any, value: Any) -> None:
    key[1].register(key[2])


def abc_pop(key: Any) -> None:
    """An ABC cannot forget a class: the registration stays in this worker."""
