"""``parallel_config`` (and joblib's older ``parallel_backend``): defaults for every
``Parallel`` call inside a ``with`` block.

Scoped with :mod:`contextvars`, so it nests, restores on exit, and is private to
each thread and asyncio task; the threading backend copies the caller's context
into its threads, so a task's own ``Parallel()`` sees it too. The precedence it
takes part in (argument > ``parallel_config`` > environment > default) is decided
in :mod:`picklepool.settings`.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Mapping
from typing import Any

from .errors import SettingTypeError, SettingValueError
from .pickler.registry import get_pickler
from .settings import (
    CONFIG_KEYS,
    NOT_SET,
    PARSERS,
    check_setting,
    config_value,
    forget_unentered,
    inflight,
    is_mp_context,
    nested_backend,
    note_unentered,
    parse_n_jobs,
    pop_config,
    push_config,
    resolve,
    warn_unentered,
)
from .workers import mirror

__all__ = ["CONFIG_KEYS", "NOT_SET", "config_value", "parallel_backend", "parallel_config"]


class parallel_config:
    """Set defaults for every ``Parallel`` call inside a ``with`` block.

    joblib's signature: ``parallel_config(backend=None, *, n_jobs=None, verbose=None,
    temp_folder=None, max_nbytes=None, mmap_mode=None, prefer=None, require=None,
    inner_max_num_threads=None, **backend_params)``. *backend* is a name ("loky",
    "threading", "sequential", "multiprocessing", "dask"), a ``multiprocessing``
    context, or an instance of joblib's own ``LokyBackend``, ``ThreadingBackend``,
    ``SequentialBackend`` or ``MultiprocessingBackend`` (the backend of that name,
    with the ``inner_max_num_threads`` and settings it was made with unless given
    here: see ``executor.joblib_backends``; another joblib backend object raises
    ``ValueError``). *backend_params* are picklepool's other settings (``pickler``,
    ``batch_size``, ``timeout``, ``idle_worker_timeout``, ``initializer``,
    ``initargs``, ``maxtasksperchild`` for multiprocessing, ``scheduler_address`` for
    dask, ...); with a *backend*, joblib's other backend keywords are taken too and
    ignored with a ``UserWarning`` naming each (joblib's loky backend ignores them
    without one). Values not passed (or None)
    are inherited from the enclosing block, then the environment, then the defaults.

    The block restores the previous configuration on exit, even on error; blocks
    nest. ``with parallel_config(...) as config`` gives joblib's value: a dict of
    the settings in force whose ``config["backend"]`` describes the backend chosen,
    with joblib's ``nesting_level`` (0 in a parent, 1 inside a worker or a thread of
    the threading backend); entering a block starts no process and takes no pool.

    Inside a worker, a block the task enters applies to that task's calls; the
    caller's block does not reach them for ``backend`` and ``n_jobs`` (joblib's
    nested default applies instead: threads at level 1, sequential below), and
    reaches the threading backend's threads for every other setting.

    Raises, at construction rather than at a later call: ``TypeError`` (also a
    ``ValueError``) for an unknown setting without a backend; ``ValueError`` for
    ``maxtasksperchild`` or ``inner_max_num_threads`` (not None) without a backend
    (keywords of the backend given with them: joblib's ``parallel_config()`` raises
    ``ValueError`` for them too; pass ``backend=`` in the same call, or the keyword to
    ``Parallel``), for a bad pickler or backend name, and for a bad value of any setting
    (the error a call in the block would raise, naming ``parallel_config``). picklepool's
    other settings (``n_jobs``, ``timeout``, ``idle_worker_timeout``, ``initializer``, ...)
    are taken without a backend, where joblib refuses any keyword but its named ones.

    >>> with parallel_config(pickler="pickle", n_jobs=2):
    ...     pass
    """

    def __init__(
        self,
        backend: Any = NOT_SET,
        *,
        n_jobs: Any = NOT_SET,
        verbose: Any = NOT_SET,
        temp_folder: Any = NOT_SET,
        max_nbytes: Any = NOT_SET,
        mmap_mode: Any = NOT_SET,
        prefer: Any = NOT_SET,
        require: Any = NOT_SET,
        inner_max_num_threads: Any = NOT_SET,
        **backend_params: Any,
    ) -> None:
        named = {
            "backend": backend,
            "n_jobs": n_jobs,
            "verbose": verbose,
            "temp_folder": temp_folder,
            "max_nbytes": max_nbytes,
            "mmap_mode": mmap_mode,
            "prefer": prefer,
            "require": require,
            "inner_max_num_threads": inner_max_num_threads,
        }
        settings = {k: v for k, v in named.items() if v is not NOT_SET}
        ignored = {k: v for k, v in backend_params.items() if k not in CONFIG_KEYS}
        if ignored and (backend is NOT_SET or backend is None):
            # (joblib: "constructor parameters backend_params are only supported when
            # backend is not None", a ValueError; this is a TypeError and a ValueError)
            raise SettingTypeError(
                f"parallel_config() got unknown setting(s) {sorted(ignored)}, and no backend= for "
                f"them: valid settings are {list(CONFIG_KEYS)}; joblib's own backend keywords are "
                "taken (and ignored, with a warning, where picklepool does not use them) only "
                "with a backend, as in joblib"
            )
        settings.update((k, v) for k, v in backend_params.items() if k in CONFIG_KEYS)
        _check(settings)
        if backend is NOT_SET or backend is None:
            _refuse_backend_keywords(settings, type(self).__name__)
        if settings.get("pickler") is not None:
            get_pickler(settings["pickler"], source="parallel_config")
        name = settings.get("backend")
        if name is not None and not isinstance(name, str) and not is_mp_context(name):
            from .executor.joblib_backends import from_joblib  # joblib's LokyBackend() etc.

            joblib_backend = from_joblib(name, "parallel_config")
            if joblib_backend is not None:
                name = settings["backend"] = joblib_backend[0]
                for key, value in joblib_backend[1].items():  # what it carries, unless given here
                    if settings.get(key) is None:
                        settings[key] = value
        if isinstance(name, str):
            from .executor.backends import BACKENDS  # the names only; the backends load lazily

            if name not in BACKENDS:
                raise ValueError(
                    f"Invalid backend: {name!r} (from parallel_config), expected one of {sorted(BACKENDS)} "
                    "or a multiprocessing context"
                )
        elif name is not None and not is_mp_context(name):
            raise ValueError(
                f"backend={name!r} (from parallel_config) is not valid; use a backend name or a "
                "multiprocessing context such as multiprocessing.get_context('spawn')"
            )
        if ignored:
            from .executor.joblib_backends import warn_ignored

            warn_ignored(ignored, name, "parallel_config()")
        self._settings = settings
        self._tokens: list[contextvars.Token[Mapping[str, Any]]] = []
        self._entered = False
        name = type(self).__name__
        depth = 1  # the caller's line, past parallel_backend's (a subclass's) __init__
        while sys._getframe(depth).f_code.co_filename == __file__:
            depth += 1
        note_unentered(
            id(self),
            f"{name}({_describe(settings)}) was made but never entered, so it changed nothing"
            "{missed}: picklepool applies it only inside a `with` block (joblib also applies "
            f"one at construction, until its .unregister()). Write `with {name}(...):` around "
            "the calls it is for.",
            depth,
        )

    def __enter__(self) -> dict[str, Any]:
        if not self._entered:
            self._entered = True
            forget_unentered(id(self))
        self._tokens.append(push_config(self._settings))
        return current_config()

    def __exit__(self, *exc_info: object) -> None:
        pop_config(self._tokens.pop())

    def unregister(self) -> None:
        """Leave the innermost block this object entered, as joblib's ``unregister()``
        (nothing if it is not in one: outside a block it applies nowhere)."""
        if self._tokens:
            pop_config(self._tokens.pop())
        elif not self._entered:  # joblib's `cfg = parallel_config(...)`, calls, `cfg.unregister()`
            warn_unentered(id(self))

    def __del__(self) -> None:
        # joblib applies its parallel_config (and parallel_backend) when it is made,
        # until .unregister(): a bare statement changes its defaults. Here only a
        # ``with`` block applies it, so say so, at the line that made it, when one was
        # made and never entered (if no call of its thread said so first:
        # ``settings.warn_unentered``, for one a variable keeps).
        if not getattr(self, "_entered", True):
            warn_unentered(id(self), dropped=True)


def _check(settings: Mapping[str, Any]) -> None:
    """Raise for a bad value where the block is written (``n_jobs="x"``, ``timeout=-1``), as a
    call in it would (the same error, naming ``parallel_config``), not at that later call."""
    source = "parallel_config"
    for key, value in settings.items():
        if value is None:
            continue
        if key == "n_jobs":
            parse_n_jobs(value, source)
        elif key == "pre_dispatch":  # (an expression of n_jobs: valid for some number of workers)
            errors = []
            for workers in (1, 8, 64):
                try:
                    inflight(value, workers, source)
                    break
                except ValueError as exc:
                    errors.append(exc)
            else:
                raise errors[0]
        elif key in PARSERS:
            check_setting(key, value, source)


# joblib's keywords for a backend's constructor that picklepool has settings for, and that
# joblib's parallel_config() refuses without a backend= ("inner_max_num_threads and other
# constructor parameters backend_params are only supported when backend is not None"):
# each is a keyword of the backend it is given with. -> the backend an example names.
NEEDS_BACKEND = {"maxtasksperchild": "multiprocessing", "inner_max_num_threads": "loky"}


def _refuse_backend_keywords(settings: Mapping[str, Any], what: str) -> None:
    """``ValueError`` for a keyword of :data:`NEEDS_BACKEND` given (not None) without a
    backend, as joblib's ``parallel_config()`` raises: naming it and what to write."""
    given = [key for key in NEEDS_BACKEND if settings.get(key) is not None]
    if not given:
        return
    written = ", ".join(f"{key}={settings[key]!r:.60}" for key in given)
    example = NEEDS_BACKEND[given[0]]
    them, keywords = ("them", "are keywords") if len(given) > 1 else ("it", "is a keyword")
    raise SettingValueError(
        f"{what}({written}) has no backend=: {' and '.join(given)} {keywords} of the backend "
        f"given with {them}, which joblib's parallel_config() refuses without one too "
        '("inner_max_num_threads and other constructor parameters backend_params are only '
        f'supported when backend is not None"). Name the backend in the same call, {what}('
        f"backend={example!r}, {written}), or pass {them} to the call itself, Parallel(..., {written})"
    )


def _describe(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value!r:.60}" for key, value in settings.items() if value is not None)


class parallel_backend(parallel_config):
    """joblib's older ``parallel_backend(backend, n_jobs=-1, inner_max_num_threads=None, **params)``.

    Deprecated in joblib in favour of :class:`parallel_config`, and here the same
    thing with joblib's defaults: *n_jobs* defaults to -1, and ``with`` gives
    ``(backend, n_jobs)``, the backend described as in :class:`parallel_config`
    (``backend.name``, ``backend.nesting_level``). Emits no warning (joblib 1.6 emits none either).
    Raises as :class:`parallel_config` does (``backend=None`` with ``maxtasksperchild`` or
    ``inner_max_num_threads``: ``ValueError``; joblib raises for it too).
    """

    def __init__(
        self, backend: Any, n_jobs: Any = -1, inner_max_num_threads: Any = None, **backend_params: Any
    ) -> None:
        super().__init__(
            backend, n_jobs=n_jobs, inner_max_num_threads=inner_max_num_threads, **backend_params
        )

    def __enter__(self) -> Any:  # type: ignore[override]
        config = super().__enter__()
        return config["backend"], config["n_jobs"]


def current_config() -> dict[str, Any]:
    """The configuration in force here, as joblib's ``parallel_config.__enter__`` gives it.

    A new dict of every setting of the innermost block (None where none is set),
    whose ``"backend"`` is a :class:`~picklepool.executor.backend.BackendChoice`: the
    backend a ``Parallel()`` made here would use (the block's, the environment's, the
    default, or inside a worker joblib's nested default) and the ``nesting_level`` of
    here (0 in a parent, 1 in a worker or pool thread, 2 below). Starts nothing.
    """
    from .executor.backend import BackendChoice

    values = {key: config_value(key) for key in CONFIG_KEYS}
    config = {key: None if value is NOT_SET else value for key, value in values.items()}
    depth = mirror.nesting()[0]
    backend, source = resolve("backend")
    if source == "default":
        backend = nested_backend(depth) or backend
    context = None
    if not isinstance(backend, str) and is_mp_context(backend):
        backend, context = "multiprocessing", backend
    config["backend"] = BackendChoice(str(backend), depth, context)
    return config
