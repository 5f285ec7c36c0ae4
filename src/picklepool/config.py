"""``parallel_config``: defaults for every ``Parallel`` call inside a ``with`` block.

Scoped with :mod:`contextvars`, so it nests, restores on exit, and is private to
each thread and asyncio task. The precedence it takes part in (argument >
``parallel_config`` > environment > default) is decided in :mod:`picklepool.settings`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any

from .pickler.registry import get_pickler
from .settings import CONFIG_KEYS, NOT_SET, config_value, pop_config, push_config

__all__ = ["CONFIG_KEYS", "NOT_SET", "config_value", "parallel_config"]


class parallel_config:
    """Set defaults for every ``Parallel`` call inside a ``with`` block.

    Accepts the same names as ``Parallel`` (``n_jobs``, ``backend``, ``pickler``,
    ``batch_size``, ``timeout``, ...) plus ``scheduler_address`` for the dask
    backend. Values not passed (or None) are inherited from the enclosing block.
    The block restores the previous configuration on exit, even on error; blocks
    nest. Raises ``TypeError`` for an unknown setting and ``ValueError`` for a bad
    pickler, at the ``with`` statement rather than at a later call.

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
        if settings.get("pickler") is not None:
            get_pickler(settings["pickler"], source="parallel_config")
        self._settings = settings
        self._tokens: list[contextvars.Token[Mapping[str, Any]]] = []

    def __enter__(self) -> parallel_config:
        self._tokens.append(push_config(self._settings))
        return self

    def __exit__(self, *exc_info: object) -> None:
        pop_config(self._tokens.pop())
