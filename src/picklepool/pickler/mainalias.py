"""A spawned process's script: ``__main__`` under the name ``__mp_main__``.

A process that ``multiprocessing`` starts with "spawn" or "forkserver" runs its
parent's script as the module ``__mp_main__`` (also ``sys.modules["__main__"]``): its
functions and classes name ``__mp_main__``, which a worker does not have.
cloudpickle sends by value only those of a module named ``__main__``, so these went
by name and the worker could not find them. picklepool's by-value picklers (hybrid,
``wrap_non_picklable_objects``) treat them as the functions and classes of
``__main__`` they are.
"""

from __future__ import annotations

import sys
from typing import Any

import cloudpickle

from .homes import not_found_by_name

# cloudpickle's by-value reduction of a class (its functions': Pickler._dynamic_function_reduce)
dynamic_class_reduce = getattr(cloudpickle.cloudpickle, "_dynamic_class_reduce", None)


def main_by_another_name(obj: Any) -> bool:
    """Whether *obj* (a function or class) is of this process's ``__main__`` under another name."""
    name = getattr(obj, "__module__", None)
    if not isinstance(name, str) or name == "__main__":
        return False
    module = sys.modules.get(name)
    return module is not None and module is sys.modules.get("__main__")


def by_value_home(obj: Any) -> bool:
    """Whether hybrid sends *obj* (a function or class) by value although its module is in
    ``sys.modules``: of ``__main__`` under another name, or of a module loaded from a file
    that importing its name would not load (``homes``)."""
    return main_by_another_name(obj) or not_found_by_name(obj)


def reduce_by_value(pickler: Any, obj: Any) -> Any:
    """cloudpickle's by-value reduction of *obj* (a function or a class), for *pickler*
    (a ``cloudpickle.Pickler``), or ``NotImplemented`` when that is not available."""
    if isinstance(obj, type):
        return NotImplemented if dynamic_class_reduce is None else dynamic_class_reduce(obj)
    reduce = getattr(pickler, "_dynamic_function_reduce", None)
    return NotImplemented if reduce is None else reduce(obj)
