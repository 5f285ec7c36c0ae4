"""PyYAML: the constructors and representers the script added.

A script teaches PyYAML its tags: ``yaml.add_constructor("!celsius", celsius,
Loader=yaml.SafeLoader)``, ``yaml.add_representer(Money, money)``, a ``yaml.YAMLObject``
subclass with a ``yaml_tag`` (its metaclass registers it). In the loop a task's
``yaml.safe_load("t: !celsius 20")`` used them; a warm worker's PyYAML has its own only, so
the same task raised ``ConstructorError`` ("could not determine a constructor for the tag")
or ``RepresenterError``.

The tables are the dicts ``yaml_constructors``, ``yaml_multi_constructors``,
``yaml_representers`` and ``yaml_multi_representers`` of PyYAML's loader and dumper classes
(``add_constructor`` gives a class its own copy as it first adds to it); the signal is their
sizes (two dozen ``len`` a call, once yaml is imported; with libyaml, its ``CLoader``,
``CSafeLoader``, ``CDumper`` and ``CSafeDumper`` too). Sent: the entries whose function is
not PyYAML's own (a method of a class that is not PyYAML's counts as that class's), keyed
``(class name, table, tag or type)``. A loader or dumper class of the script's travels with
its functions, by value, its tables in it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .common import library

_LOADERS = ("Loader", "FullLoader", "UnsafeLoader", "SafeLoader", "BaseLoader", "CLoader", "CSafeLoader")
_DUMPERS = ("Dumper", "SafeDumper", "BaseDumper", "CDumper", "CSafeDumper")  # (the C ones: libyaml's)
_ADD = {
    "yaml_constructors": "add_constructor",
    "yaml_multi_constructors": "add_multi_constructor",
    "yaml_representers": "add_representer",
    "yaml_multi_representers": "add_multi_representer",
}

# parent: (yaml, its classes, their tables' names: in pairs), found once
_pairs: tuple[Any, list[Any], list[str]] = (None, [], [])


def _tables(yaml: Any) -> tuple[list[Any], list[str]]:
    global _pairs
    if _pairs[0] is not yaml:
        classes, names = [], []
        for kinds, tables in (
            (_LOADERS, ("yaml_constructors", "yaml_multi_constructors")),
            (_DUMPERS, ("yaml_representers", "yaml_multi_representers")),
        ):
            for kind in kinds:
                cls = getattr(yaml, kind, None)
                for table in tables:
                    if isinstance(getattr(cls, table, None), dict):
                        classes.append(cls)
                        names.append(table)
        _pairs = (yaml, classes, names)
    return _pairs[1], _pairs[2]


def yaml_signal(yaml: Any) -> Any:
    classes, names = _tables(yaml)
    return tuple(map(len, map(getattr, classes, names)))  # (a class's own copy: one more)


def _own(function: Any) -> bool:
    owner = getattr(function, "__self__", None)  # (a YAMLObject subclass's from_yaml)
    return library(function, "yaml") and (owner is None or library(owner, "yaml"))


def yaml_entries(yaml: Any) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    classes, names = _tables(yaml)
    for cls, table in zip(classes, names, strict=True):
        for key, function in list(getattr(cls, table).items()):
            if not _own(function):
                out.append((("yaml", cls.__name__, table, key), function))
    return out


def yaml_watch(key: Any, value: Any) -> Any:
    yaml = sys.modules.get("yaml")
    cls = getattr(yaml, key[1], None)
    return (getattr(cls, key[2]), key[3], value, None) if cls is not None else None


def _class(key: Any) -> Any:
    return getattr(importlib.import_module("yaml"), key[1])


def yaml_get(key: Any, default: Any) -> Any:
    return getattr(_class(key), key[2]).get(key[3], default)


def yaml_set(key: Any, value: Any) -> None:
    getattr(_class(key), _ADD[key[2]])(key[3], value)


def yaml_pop(key: Any) -> None:
    own = vars(_class(key)).get(key[2])
    if own is not None:
        own.pop(key[3], None)
