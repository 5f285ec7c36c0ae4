"""Configuration in one place: ``parallel_config`` and the environment.

Precedence for every setting: the ``Parallel`` argument, then the innermost
``parallel_config`` block, then the environment (read only by :func:`env_setting`),
then the built-in default. ``parallel_config`` is scoped with :mod:`contextvars`,
so it nests, restores on exit, and is private to each thread and asyncio task.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


class _Sentinel:
    """Marks "not passed", distinct from ``None`` (which can be a real value)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> str:
        return self.name


NOT_SET: Any = _Sentinel("NOT_SET")

# Every environment variable picklepool reads, in order of precedence per setting.
ENV_VARS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "pickler": ("PICKLEPOOL_PICKLER", "LOKY_PICKLER"),
        "state_key": ("PICKLEPOOL_STATE_KEY",),
        "n_jobs": ("PICKLEPOOL_N_JOBS",),
        "backend": ("PICKLEPOOL_BACKEND",),
        "progress": ("PICKLEPOOL_PROGRESS",),
        "max_worker_memory": ("PICKLEPOOL_MAX_WORKER_MEMORY",),
        "idle_worker_timeout": ("PICKLEPOOL_IDLE_WORKER_TIMEOUT",),
        "worker_cache_bytes": ("PICKLEPOOL_WORKER_CACHE_BYTES",),
    }
)

CONFIG_KEYS = (
    "n_jobs",
    "backend",
    "pickler",
    "batch_size",
    "pre_dispatch",
    "timeout",
    "verbose",
    "progress",
    "max_nbytes",
    "inner_max_num_threads",
    "max_worker_memory",
    "idle_worker_timeout",
    "scheduler_address",
)

_config: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "picklepool_config", default=MappingProxyType({})
)


def env_setting(setting: str) -> tuple[str, str] | None:
    """Return ``(value, variable_name)`` for *setting* from the environment, or None.

    This is the only function in picklepool that reads ``PICKLEPOOL_*`` (and
    ``LOKY_PICKLER``) variables. Empty values count as unset.
    """
    for var in ENV_VARS.get(setting, ()):
        value = os.environ.get(var)
        if value:
            return value, var
    return None


def config_value(setting: str) -> Any:
    """The value of *setting* in the innermost ``parallel_config``, or NOT_SET."""
    return _config.get().get(setting, NOT_SET)


def resolve(setting: str, argument: Any, default: Any) -> tuple[Any, str]:
    """Pick the value in force for *setting* and say where it came from.

    Returns ``(value, source)`` where source is ``"argument"``, ``"parallel_config"``,
    ``"env var NAME"`` or ``"default"``. ``None`` as an argument means "not given",
    as in joblib.
    """
    if argument is not None and argument is not NOT_SET:
        return argument, "argument"
    value = config_value(setting)
    if value is not NOT_SET and value is not None:
        return value, "parallel_config"
    found = env_setting(setting)
    if found is not None:
        return found[0], f"env var {found[1]}"
    return default, "default"


class parallel_config:
    """Set defaults for every ``Parallel`` call inside a ``with`` block.

    Accepts the same names as ``Parallel`` (``n_jobs``, ``backend``, ``pickler``,
    ``batch_size``, ``timeout``, ...) plus ``scheduler_address`` for the dask
    backend. Values not passed are inherited from the enclosing block. The block
    restores the previous configuration on exit, even on error; blocks nest.

    >>> with parallel_config(pickler="pickle", n_jobs=2):
    ...     pass
    """

    def __init__(self, backend: Any = NOT_SET, **settings: Any) -> None:
        if backend is not NOT_SET:
            settings["backend"] = backend
        unknown = sorted(set(settings) - set(CONFIG_KEYS))
        if unknown:
            raise TypeError(
                f"parallel_config() got unknown setting(s) {unknown}; valid settings are {list(CONFIG_KEYS)}"
            )
        if "pickler" in settings and settings["pickler"] is not None:
            # Validate now so the error points at the with-statement, not a later call.
            from .pickler.registry import get_pickler

            get_pickler(settings["pickler"], source="parallel_config")
        self._settings = settings
        self._tokens: list[contextvars.Token[Mapping[str, Any]]] = []

    def __enter__(self) -> parallel_config:
        merged = dict(_config.get())
        merged.update(self._settings)
        self._tokens.append(_config.set(MappingProxyType(merged)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _config.reset(self._tokens.pop())
