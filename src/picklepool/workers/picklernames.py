"""The picklers the parent registered (``register_pickler``), registered in a worker too.

A task that makes its own call (``Parallel(pickler="mine")`` in a worker, nested) found
no pickler by that name there: the worker never ran the parent's
``register_pickler("mine", MyPickler)``, and the task failed with "unknown pickler
'mine'", where the loop ran. :func:`pickled` reads the registered names and their
classes in the parent, pickled with hybrid (a class of ``__main__`` by value), again
only when a registration changed (``pickler.registry.generation``); :func:`apply`
registers them in the worker before each batch and takes back those the parent no
longer has. A class that cannot be pickled is left out (that name stays unknown there).
"""

from __future__ import annotations

from typing import Any

from ..pickler import registry
from .overlay import dumps_each, loads_each

WHAT = "a registered pickler"

_read: tuple[int, bytes | None] = (0, None)  # parent: (registry.generation, the pickle) read last

# worker: the pickle applied last; {name: the class registered for the parent}
_applied: bytes | None = None
_names: dict[str, Any] = {}


def pickled() -> bytes | None:
    """The parent's registered picklers, pickled (None: none); one comparison while the
    registrations do not change."""
    global _read
    if registry.generation == _read[0]:
        return _read[1]
    classes = registry.registered_classes()
    data = dumps_each(sorted(classes.items()), WHAT) if classes else None
    _read = (registry.generation, data)
    return data


def apply(data: bytes | None) -> None:
    """Register the picklers pickled in *data* here (None: the parent has none), and take
    back those registered for an earlier batch that the parent no longer has."""
    global _applied
    if data == _applied:
        return
    wanted = loads_each(data, WHAT)
    for name in [n for n in _names if n not in wanted]:
        del _names[name]
        if name in registry.registered_classes():
            registry.unregister_pickler(name)
    for name, cls in wanted.items():
        if _names.get(name) is not cls:
            try:
                registry.register_pickler(name, cls)
            except (TypeError, ValueError):  # (not a pickler here: a task naming it says so)
                continue
            _names[name] = cls
    _applied = data
