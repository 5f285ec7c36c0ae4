"""Which pickler is in force: names, registration and the precedence rules.

Precedence: the ``pickler=`` argument > ``parallel_config(pickler=...)`` >
``PICKLEPOOL_PICKLER`` > ``LOKY_PICKLER`` > the default (``hybrid``).
"""

from __future__ import annotations

import importlib
import pickle
from typing import Any

from .. import settings
from .base import BasePickler, ClassPickler, CloudPickler, StdlibPickler

DEFAULT = "hybrid"

_BUILTIN: dict[str, type[BasePickler]] = {
    "pickle": StdlibPickler,
    "cloudpickle": CloudPickler,
}
_registered: dict[str, BasePickler] = {}


def _builtin_names() -> list[str]:
    return sorted(set(_BUILTIN) | {"hybrid"})


def valid_names() -> list[str]:
    """Every name ``pickler=`` accepts, besides "module:attr" paths."""
    return _builtin_names() + sorted(_registered)


def register_pickler(name: str, pickler_class: type) -> None:
    """Make *name* usable as ``Parallel(pickler=name)``.

    *pickler_class* is either a ``pickle.Pickler`` subclass (its ``dump`` writes
    the bytes; ``pickle.loads`` reads them) or a ``BasePickler`` subclass with
    its own ``dumps``/``loads``. Workers receive the class by reference, or by
    value when it cannot be imported there. Built-in names cannot be replaced.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"pickler name must be a non-empty string without ':', got {name!r}")
    if name in _builtin_names():
        raise ValueError(f"{name!r} is a built-in pickler and cannot be re-registered")
    _registered[name] = _instantiate(name, pickler_class, f"register_pickler({name!r}, ...)")


def unregister_pickler(name: str) -> None:
    """Forget a pickler added with :func:`register_pickler`."""
    if _registered.pop(name, None) is None:
        raise KeyError(f"no pickler registered under {name!r}; registered: {sorted(_registered)}")


def _instantiate(name: str, obj: Any, where: str) -> BasePickler:
    if isinstance(obj, type) and issubclass(obj, BasePickler):
        return obj()
    if isinstance(obj, type) and issubclass(obj, pickle.Pickler):
        return ClassPickler(name, obj)
    raise TypeError(
        f"{where}: expected a pickle.Pickler subclass or a picklepool BasePickler subclass, got {obj!r}"
    )


def _from_path(spec: str, source: str) -> BasePickler:
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"pickler {spec!r} (from {source}) could not be imported: {exc}. "
            "Use 'module:attr' naming a pickle.Pickler subclass importable here"
        ) from exc
    try:
        return _instantiate(spec, obj, f"pickler {spec!r} (from {source})")
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _by_name(name: str) -> BasePickler:
    if name == "hybrid":
        from .hybrid import HybridPickler

        return HybridPickler()
    return _registered.get(name) or _BUILTIN[name]()


def get_pickler(name: Any = None, *, source: str | None = None) -> BasePickler:
    """The pickler for *name*, or, for None, the one in force by precedence.

    *name* may be a registered name, "module:attr", a ``BasePickler`` instance or a
    ``pickle.Pickler`` subclass. A bad value raises ``ValueError`` naming the value,
    where it came from and the valid names.
    """
    return resolve_pickler(name, source=source)[0]


def resolve_pickler(name: Any = None, *, source: str | None = None) -> tuple[BasePickler, str]:
    """Like :func:`get_pickler`, also returning where the choice came from."""
    if source is None:
        name, source = settings.resolve("pickler", name, DEFAULT)
    if isinstance(name, BasePickler):
        return name, source
    if isinstance(name, type):
        try:
            return _instantiate(getattr(name, "__name__", "custom"), name, source), source
        except TypeError as exc:
            raise ValueError(str(exc)) from None
    if isinstance(name, str):
        name = name.strip()
        if name in _BUILTIN or name in _registered or name == "hybrid":
            return _by_name(name), source
        if ":" in name:
            return _from_path(name, source), source
    raise ValueError(
        f"unknown pickler {name!r} (from {source}); valid names are "
        f"{valid_names()}, or 'module:attr' naming a pickle.Pickler subclass"
    )
