"""Tasks a batch may run before and after the user's own (``picklepool.Executor``).

An Executor batch can start with :func:`initialize` (its ``initializer``, once per
worker and executor) and, for the joblib backend, be framed by :func:`enter_config`
/ :func:`leave_config` (the nested ``joblib.parallel_config`` that joblib's own
``BatchedCalls`` sets around its tasks). They are plain importable functions, so
they travel by reference and cost a few bytes per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_initialized: set[str] = set()  # executor tokens whose initializer ran in this worker
_configs: list[Any] = []  # open joblib.parallel_config contexts, innermost last


def initialize(token: str, initializer: Callable[..., Any], initargs: tuple[Any, ...]) -> None:
    """Run ``initializer(*initargs)`` once in this worker for the executor *token*."""
    if token not in _initialized:
        initializer(*initargs)
        _initialized.add(token)


def enter_config(backend: Any, n_jobs: Any) -> None:
    """Enter ``joblib.parallel_config(backend=backend, n_jobs=n_jobs)`` for the batch's tasks."""
    import joblib

    config = joblib.parallel_config(backend=backend, n_jobs=n_jobs)
    config.__enter__()
    _configs.append(config)


def leave_config() -> None:
    """Leave the config :func:`enter_config` entered (the last task of the batch)."""
    if _configs:
        _configs.pop().__exit__(None, None, None)
