"""Which pickler is in force: names, registration and the precedence rules.

Precedence: the ``pickler=`` argument > ``parallel_config(pickler=...)`` >
``PICKLEPOOL_PICKLER`` > ``LOKY_PICKLER`` > the default (``hybrid``).

A value is a built-in or registered name, ``"module:attr"`` naming a
``pickle.Pickler`` subclass, or, as loky reads ``LOKY_PICKLER``, the name of an
importable module whose ``Pickler`` attribute is a ``pickle.Pickler`` subclass.

Calls that pickle nothing (``n_jobs=1``, the threading backend) never resolve the
pickler (``executor.parallel``), so a bad value stops only calls that pickle.
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
generation = 0  # moves at each register_pickler / unregister_pickler (workers.picklernames)


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
    global generation
    _registered[name] = _instantiate(name, pickler_class, f"register_pickler({name!r}, ...)")
    generation += 1


def unregister_pickler(name: str) -> None:
    """Forget a pickler added with :func:`register_pickler`."""
    global generation
    if _registered.pop(name, None) is None:
        raise KeyError(f"no pickler registered under {name!r}; registered: {sorted(_registered)}")
    generation += 1


def registered_classes() -> dict[str, type]:
    """The registered names and the class each was registered with."""
    return {
        name: p.pickler_class if isinstance(p, ClassPickler) else type(p) for name, p in _registered.items()
    }


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


def _from_module(name: str, source: str) -> BasePickler | None:
    """loky's form: a module exposing a ``Pickler`` class; None when no such module exists."""
    if not all(part.isidentifier() for part in name.split(".")):
        return None
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == name or name.startswith(exc.name + ".")):
            return None  # the module itself does not exist: an unknown name
        raise ValueError(f"pickler module {name!r} (from {source}) could not be imported: {exc}") from exc
    except Exception as exc:
        raise ValueError(f"pickler module {name!r} (from {source}) could not be imported: {exc!r}") from exc
    cls = getattr(module, "Pickler", None)
    if not (isinstance(cls, type) and issubclass(cls, pickle.Pickler)):
        raise ValueError(
            f"pickler {name!r} (from {source}) is a module, but its Pickler attribute is {cls!r}, "
            "not a pickle.Pickler subclass; valid names are "
            f"{valid_names()}, 'module:attr' naming a pickle.Pickler subclass, or a module "
            "with a Pickler class (loky's LOKY_PICKLER form)"
        )
    return ClassPickler(name, cls)


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
        found = _from_module(name, source)
        if found is not None:
            return found, source
    raise ValueError(
        f"unknown pickler {name!r} (from {source}); valid names are "
        f"{valid_names()}, 'module:attr' naming a pickle.Pickler subclass, or an importable "
        "module with a Pickler class (loky's LOKY_PICKLER form)"
    )
