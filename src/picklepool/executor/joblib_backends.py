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
``initializer``, ``initargs``, ``maxtasksperchild``, ``context``). The other
keywords joblib's backends take (``prewarm``, ``forward_reducers``, ``nesting_level``,
...) are ignored with a ``UserWarning`` saying what to use (:func:`warn_ignored`):
nesting follows picklepool's own rules. Any other object deriving from joblib's
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
CARRIED = (
    "idle_worker_timeout",
    "temp_folder",
    "max_nbytes",
    "mmap_mode",
    "initializer",
    "initargs",
    "maxtasksperchild",
)

# The other keywords joblib's backends take (``Parallel(**backend_kwargs)``,
# ``parallel_config(**backend_params)``, ``LokyBackend(**kwargs)``): its memmapping pool's
# and executor's, its dask backend's. picklepool does not use them; what to do instead.
_REDUCERS = (
    "picklepool pickles with its own pickler: register the reducer with "
    "copyreg.pickle(cls, reducer), or pass pickler= a pickle.Pickler subclass (register_pickler)"
)
IGNORED = {
    "prewarm": "picklepool's shared memory is read in place, with nothing to prewarm",
    "forward_reducers": _REDUCERS,
    "backward_reducers": _REDUCERS,
    "context": "its multiprocessing context is the start method of backend='multiprocessing': "
    "pass the context itself as backend= (backend=multiprocessing.get_context('spawn'))",
    "nesting_level": "picklepool nests as joblib does by itself (threads at level 1, sequential below)",
    "scheduler_host": "pass scheduler_address= to parallel_config(backend='dask', ...)",
    "scatter": "picklepool's dask backend sends large arguments once per call by itself",
    "client": "pass scheduler_address= (the client's scheduler) to parallel_config(backend='dask', ...)",
    "wait_for_workers_timeout": "picklepool's dask backend waits for the cluster's workers by itself",
}

# What joblib's MultiprocessingBackend hands to its pool (joblib.pool.MemmappingPool, then
# multiprocessing.Pool), which raises TypeError for any other keyword
POOL_KEYWORDS = frozenset(
    {"prewarm", "forward_reducers", "backward_reducers", "context", "maxtasksperchild", "verbose"}
    | set(CARRIED)
)

# Backends whose joblib counterparts swallow any keyword in silence
_SWALLOWING = ("loky", "threading", "sequential")


def from_joblib(value: Any, source: str) -> tuple[Any, dict[str, Any]] | None:
    """``(backend, settings)`` for an instance of one of joblib's four backend classes.

    *backend* is picklepool's backend name (or, for a ``MultiprocessingBackend``
    made with ``context=``, that ``multiprocessing`` context); *settings* holds what
    the object carries (see the module docstring), to apply where the caller gave no
    value of its own. Returns None for anything that is not a joblib backend (a name,
    a ``multiprocessing`` context, or any other object, left to the usual checks).
    Raises ``ValueError`` naming the object and its *source* for any other joblib
    backend (a ``ParallelBackendBase`` subclass or class); warns of constructor keywords
    picklepool does not use.
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
    ignored = {k: v for k, v in kwargs.items() if k not in CARRIED}
    warn_ignored(ignored, name, f"backend={type(value).__name__}(...) (from {source})")
    settings.update((k, v) for k, v in kwargs.items() if v is not None and k in CARRIED)
    return backend, settings


def warn_ignored(keywords: dict[str, Any], backend: Any, where: str, strict: bool = False) -> None:
    """Say of each of joblib's backend *keywords* that picklepool ignores it (``UserWarning``).

    joblib hands them to its backend: its loky, threading and sequential backends
    swallow any keyword in silence, its multiprocessing pool raises ``TypeError`` for one
    it does not know. picklepool warns, naming the keyword, what to use instead, and for a
    keyword joblib does not know either the setting it most likely meant (a typo); with
    *strict* (a call that starts a ``backend="multiprocessing"`` pool) such a keyword is
    the ``TypeError`` joblib's pool raises. *where* names what was given them.
    """
    if not keywords:
        return
    import difflib
    import warnings

    from ..pickler.locks import callers_level
    from ..settings import CONFIG_KEYS

    name = backend if isinstance(backend, str) else "multiprocessing"
    for key, val in keywords.items():
        if key in IGNORED:
            why = f"; {IGNORED[key]}"
        else:
            close = difflib.get_close_matches(key, [*CONFIG_KEYS, *POOL_KEYWORDS], n=1, cutoff=0.6)
            why = f"; did you mean {close[0]}=?" if close else ""
            why += f" picklepool's settings are {', '.join(CONFIG_KEYS)}"
            if strict and name == "multiprocessing" and key not in POOL_KEYWORDS:
                raise TypeError(
                    f"{where} got an unexpected keyword argument {key!r} ({key}={val!r:.60}) for "
                    f"backend='multiprocessing', which joblib's multiprocessing pool refuses too{why}"
                )
        as_joblib = f", as joblib's {name} backend does" if name in _SWALLOWING else ""
        warnings.warn(
            f"{where}: {key}={val!r:.60} is not one of picklepool's settings for backend={name!r}, "
            f"so picklepool ignores it{as_joblib}{why}",
            UserWarning,
            stacklevel=callers_level(),
        )


def warn_maxtasksperchild(value: Any, backend: str, source: str, n_workers: int) -> None:
    """``maxtasksperchild`` given where no ``multiprocessing.Pool`` runs the call: say so."""
    if value is None or backend == "multiprocessing" or n_workers == 1:
        return
    import warnings

    from ..pickler.locks import callers_level

    silent = f" (joblib's {backend} backend ignores it too, without a word)" if backend in _SWALLOWING else ""
    warnings.warn(
        f"maxtasksperchild={value!r} (from {source}) is ignored on backend={backend!r}{silent}: "
        "only backend='multiprocessing' replaces a worker process after that many batches. For "
        "a fresh process per task use backend='multiprocessing' with batch_size=1; to replace "
        "the loky workers whose memory grew (a leaking C extension), max_worker_memory='2G'",
        UserWarning,
        stacklevel=callers_level(),
    )
