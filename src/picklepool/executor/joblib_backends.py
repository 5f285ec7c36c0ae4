"""joblib's own backend objects given as ``backend=``: read as picklepool's backends.

joblib accepts an instance of its backend classes wherever it takes a backend name
(``Parallel(backend=LokyBackend())``, ``parallel_config(backend=ThreadingBackend())``).
picklepool runs its own backends, so an instance of exactly one of joblib's four
built-in classes is read as the name of picklepool's backend of the same kind, with
the settings it carries::

    joblib._parallel_backends.LokyBackend            -> "loky"
    joblib._parallel_backends.ThreadingBackend       -> "threading"
    joblib._parallel_backends.SequentialBackend      -> "sequential"
    joblib._parallel_backends.MultiprocessingBackend -> "multiprocessing"
                          (its ``context=``, if any: that multiprocessing context)

Carried over: ``inner_max_num_threads`` and the constructor keywords picklepool has
settings for (``idle_worker_timeout``, ``temp_folder``, ``max_nbytes``, ``mmap_mode``,
``initializer``, ``initargs``, ``context``). ``nesting_level`` is not: nesting
follows picklepool's own rules. Any other object deriving from joblib's
``ParallelBackendBase`` (a custom backend, or a subclass of one of the four, whose
overrides would be silently ignored) is a ``ValueError``: picklepool cannot run it.

joblib is never imported here: an object can only be one of joblib's if joblib
itself is already imported (``sys.modules``).
"""

from __future__ import annotations

import sys
from typing import Any

from ..settings import NOT_SET, is_mp_context

MODULE = "joblib._parallel_backends"

# joblib's class name -> picklepool's backend name
NAMES = {
    "LokyBackend": "loky",
    "ThreadingBackend": "threading",
    "SequentialBackend": "sequential",
    "MultiprocessingBackend": "multiprocessing",
}

# joblib constructor keywords (``backend_kwargs``) that picklepool has settings for
CARRIED = ("idle_worker_timeout", "temp_folder", "max_nbytes", "mmap_mode", "initializer", "initargs")


def from_joblib(value: Any, source: str) -> tuple[Any, dict[str, Any]] | None:
    """``(backend, settings)`` for an instance of one of joblib's four backend classes.

    *backend* is picklepool's backend name (or, for a ``MultiprocessingBackend``
    made with ``context=``, that ``multiprocessing`` context); *settings* holds what
    the object carries (see the module docstring), to apply where the caller gave no
    value of its own. Returns None for anything that is not a joblib backend (a name,
    a ``multiprocessing`` context, or any other object, left to the usual checks).
    Raises ``ValueError`` naming the object and its *source* for any other joblib
    backend (a ``ParallelBackendBase`` subclass or class), and for constructor
    keywords picklepool cannot carry over.
    """
    if value is NOT_SET or value is None or isinstance(value, str) or is_mp_context(value):
        return None
    module = sys.modules.get(MODULE)
    if module is None:  # joblib's backends are not even imported: value cannot be one
        return None
    base = getattr(module, "ParallelBackendBase", None)
    cls = type(value)
    name = NAMES.get(cls.__name__)
    if name is not None and cls.__module__ == MODULE and getattr(module, cls.__name__, None) is cls:
        return _carried(value, name, source)
    if isinstance(base, type) and (
        isinstance(value, base) or (isinstance(value, type) and issubclass(value, base))
    ):
        what = f"the class {value.__module__}.{value.__qualname__}" if isinstance(value, type) else None
        what = what or f"an instance of {cls.__module__}.{cls.__qualname__}"
        raise ValueError(
            f"backend={value!r} (from {source}) is {what}, a joblib backend (ParallelBackendBase). "
            "picklepool cannot run joblib custom backends (nor subclasses of joblib's, whose "
            "overrides it would ignore): it reads only instances of joblib's own LokyBackend, "
            "ThreadingBackend, SequentialBackend and MultiprocessingBackend. Use a backend name "
            f"({', '.join(repr(n) for n in NAMES.values())}, 'dask') or a multiprocessing context, "
            "or run this backend with joblib.Parallel itself (joblib can in turn run on picklepool: "
            "picklepool.register_joblib_backend())."
        )
    return None


def _carried(value: Any, name: str, source: str) -> tuple[Any, dict[str, Any]]:
    settings: dict[str, Any] = {}
    threads = getattr(value, "inner_max_num_threads", None)
    if threads is not None:
        settings["inner_max_num_threads"] = threads
    kwargs = dict(getattr(value, "backend_kwargs", None) or {})
    backend: Any = name
    context = kwargs.pop("context", None)
    if context is not None and name == "multiprocessing" and is_mp_context(context):
        backend = context
    elif context is not None:
        kwargs["context"] = context  # reported below
    unknown = sorted(k for k in kwargs if k not in CARRIED)
    if unknown:
        raise ValueError(
            f"backend={value!r} (from {source}) was made with {unknown}, which picklepool cannot "
            f"carry over to its {name!r} backend (it carries {list(CARRIED)}"
            f"{', context' if name == 'multiprocessing' else ''} and inner_max_num_threads). "
            f"Use backend={name!r} and picklepool's own settings instead."
        )
    settings.update((k, v) for k, v in kwargs.items() if v is not None)
    return backend, settings
