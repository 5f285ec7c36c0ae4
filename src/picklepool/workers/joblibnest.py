"""joblib code inside a task nests as it would inside a joblib worker.

A task that calls ``joblib.Parallel`` (directly, or through scikit-learn's
``n_jobs=-1``) inside a picklepool worker or a thread of the threading backend gets
what joblib's own ``BatchedCalls`` gives its tasks: ``joblib.parallel_config(backend=
ThreadingBackend(nesting_level=1), n_jobs=None)`` at level 1, a ``SequentialBackend``
below, instead of a new joblib loky pool of every core in each worker.

Free when the task never uses joblib: :func:`enter` looks joblib up in
``sys.modules`` and imports nothing. When joblib is not loaded yet, a finder on
``sys.meta_path`` waits for ``joblib.parallel``: a task that imports joblib in its
own body gets the nested config in its thread as soon as the import finishes.

A task may still start a joblib loky pool in the worker (``parallel_config(backend=
"loky")``): once joblib is loaded in a worker, its exit kills that pool's workers
(:func:`watch_exit`), as picklepool's own nested pools (``executor.reaper``), where
it used to wait for them for ever (joblib's own worker tells its pool at its exit).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from typing import Any

from .. import lokycompat
from . import mirror


class _Waiting(threading.local):
    # this thread's batch, waiting for joblib to load (None: none); a class default, so that
    # reading it when there is none raises no AttributeError (getattr's default costs one)
    token: Any = None


_waiting = _Waiting()
_exit_watched = False  # this worker stops joblib's loky pool at its exit (watch_exit)
NESTED_EXIT_JOIN = 1.0  # seconds a worker's exit waits for the killed pool's manager thread


class _Token:
    """What :func:`enter` returns while joblib is not loaded: the config entered later."""

    __slots__ = ("depth", "config", "outer")

    def __init__(self, depth: int, outer: Any) -> None:
        self.depth = depth
        self.config: Any = None
        self.outer = outer  # the token of a batch this one runs inside (a nested call), or None


def _enter_config(module: Any, depth: int) -> Any:
    from ..settings import nested_backend  # here: a worker's plain batch does not import the settings

    _register_as_parent(module)

    backends = sys.modules["joblib._parallel_backends"]
    cls = backends.ThreadingBackend if nested_backend(depth) == "threading" else backends.SequentialBackend
    config = module.parallel_config(backend=cls(nesting_level=depth), n_jobs=None)
    config.__enter__()
    return config


def _register_as_parent(module: Any) -> None:
    """Register picklepool's joblib backend here under the names the parent registered it
    (``mirror.joblib_backends``): a task's ``joblib.Parallel(backend="picklepool")`` raised
    joblib's "Invalid backend: picklepool" in a worker that no joblib-backend call had
    reached yet, where the same code in the parent (a loop) ran. Brought in by name, as a
    pickled reference to it would be (workers do not import the front end otherwise)."""
    names = mirror.joblib_backends()
    if not names:
        return
    registry = module.BACKENDS
    missing = [name for name in names if name not in registry]
    if missing:
        backend = importlib.import_module("picklepool.joblib").PicklepoolBackend
        for name in missing:
            module.register_parallel_backend(name, backend)


class _Loader:
    """joblib.parallel's own loader, then the nested config for the waiting thread."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def create_module(self, spec: Any) -> Any:
        return self.real.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.real.exec_module(module)
        token = _waiting.token
        if token is not None and token.config is None:
            try:
                token.config = _enter_config(module, token.depth)
            except Exception:  # noqa: BLE001 - a joblib without these names: leave it be
                token.config = None


class _Finder:
    """On ``sys.meta_path`` while joblib is not loaded: wraps ``joblib.parallel``'s loader."""

    def __init__(self) -> None:
        self.busy = threading.local()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "joblib.parallel" or getattr(self.busy, "on", False) or _waiting.token is None:
            return None
        self.busy.on = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy.on = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _Loader(spec.loader)  # type: ignore[assignment]
        return spec


_finder = _Finder()


def enter() -> Any:
    """Enter joblib's nested config for this batch's tasks; the token for :func:`leave`, or None.

    None (nothing to do) in a parent. When joblib is not loaded, a token that enters
    the config if a task of this batch loads it (see the module's docstring).
    """
    depth = mirror.nesting()[0]
    if depth <= 0:  # a parent: settings.nested_backend(depth) is None
        return None
    module = sys.modules.get("joblib.parallel")
    if module is None:
        meta_path = sys.meta_path
        if not (meta_path and meta_path[0] is _finder) and _finder not in meta_path:
            meta_path.insert(0, _finder)
        token = _waiting.token = _Token(depth, _waiting.token)
        return token
    try:
        return _enter_config(module, depth)
    except (KeyError, AttributeError):  # joblib half-imported, or without these names
        return None


def leave(config: Any) -> None:
    """Leave what :func:`enter` entered (restores joblib's config of this thread).

    In a worker where joblib is loaded, its exit will stop joblib's loky pool (:func:`watch_exit`).
    """
    if not _exit_watched and "joblib.externals.loky.reusable_executor" in sys.modules:
        watch_exit()
    if isinstance(config, _Token):
        token: _Token = config
        if _waiting.token is token:
            _waiting.token = token.outer
        config = token.config
    if config is not None:
        config.__exit__(None, None, None)


def watch_exit() -> None:
    """In a loky worker: at its exit, kill the workers of joblib's loky pool a task started here.

    Before ``multiprocessing``'s exit joins this process's children (which waited for
    ever for that pool's, never told to stop), as picklepool's own nested pools are
    killed at once (``executor.reaper``): a worker's exit does not depend on its children.
    """
    global _exit_watched
    _exit_watched = True
    if lokycompat.depth() >= 1:
        lokycompat.before_loky_exit(_stop_joblib_pool)


def _stop_joblib_pool() -> None:
    lokycompat.stop_joblib_pool(NESTED_EXIT_JOIN)


def _forget_in_child() -> None:
    """A forked child registers its own exit hook if it needs one."""
    global _exit_watched
    _exit_watched = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
