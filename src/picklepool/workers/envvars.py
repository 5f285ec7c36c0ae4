"""The parent's environment variables set or removed since its first call, mirrored in a worker.

A script that sets ``os.environ["DATA_DIR"] = args.data`` (or removes a variable) between
two calls: in the loop the call replaces, a task's ``os.environ.get("DATA_DIR")``, and a
program it runs (``subprocess.run``, which passes the environment on), see the new value.
A warm worker kept the environment it started with, so they saw the old one (under
joblib too). What a library read when it was imported is the same on both sides: the
parent's copy read it then too.

:func:`pickled` reads, in the parent, the variables that differ from the environment of
its first call (the one its first workers started with), and goes on sending every
variable that ever differed, also once it is back to its first value: a worker started
in between got the other one. One comparison of ``os.environ`` with a copy per call while
nothing changes (~0.4 us). :func:`apply` sets them in the worker before each batch (again
if a task changed one: a task's own setting is its batch's), and puts back the worker's own
value of one the parent no longer sends. Not mirrored: ``TZ`` (``wire.ParentState.tz``,
applied with ``time.tzset``) and the thread-limit variables of the pool
(``wire.THREAD_VARS``, the worker's own). Not on dask (a cluster's workers are
shared).
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from ..wire import THREAD_VARS

# set by the pool for each worker, or mirrored otherwise (TZ: with time.tzset)
_NOT_MIRRORED = frozenset({"TZ", *THREAD_VARS})

# parent: os.environ at the first read; a copy of its data as read last; the names that ever
# differed from the first read; the pickle of their values as read last
_first: dict[str, str] | None = None
_seen: Any = None
_touched: set[str] = set()
_data: bytes | None = None


def _raw() -> Any:
    """``os.environ``'s own mapping (encoded names and values on POSIX): compared, not decoded."""
    return getattr(os.environ, "_data", None)


def pickled() -> bytes | None:
    """``{name: value, or None where removed}`` of the variables that differ, or differed,
    from this process's environment at its first read, pickled (None: none ever did)."""
    global _first, _seen, _data
    raw = _raw()
    if raw is not None and _seen is not None and raw == _seen:
        return _data
    now = dict(os.environ)
    if raw is None and _seen == now:
        return _data
    if _first is None:
        _first = now
    else:
        first = _first
        for name in now.keys() | first.keys():
            if now.get(name) != first.get(name) and name not in _NOT_MIRRORED:
                _touched.add(name)
        _data = pickle.dumps({name: now.get(name) for name in sorted(_touched)}) if _touched else None
    _seen = dict(raw) if raw is not None else now
    return _data


# worker: the pickle applied last; {name: the parent's value (None: removed)};
# {name: the worker's own value (None: it had none)}
_applied: bytes | None = None
_wanted: dict[str, str | None] = {}
_own: dict[str, str | None] = {}


def _set(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def rebase() -> None:
    """After an initializer ran (``workers.mirror.rebase``): a variable it set over the
    parent's value is the worker's own from now on, and the parent's is set again."""
    for name, value in _wanted.items():
        current = os.environ.get(name)
        if current != value:
            _own[name] = current
            _set(name, value)


def differs(data: bytes | None) -> bool:
    """Whether :func:`apply` of *data* may change this worker's variables."""
    return data != _applied or (data is not None and any(os.environ.get(k) != v for k, v in _wanted.items()))


def apply(data: bytes | None) -> None:
    """Make this worker's variables those pickled in *data* (None: the parent changed none),
    and put back the worker's own value of one set for an earlier batch that is not in it."""
    global _applied, _wanted
    if data is None and not _wanted:  # (the usual case: the parent's environment is unchanged)
        return
    if data != _applied:
        wanted: dict[str, str | None] = pickle.loads(data) if data is not None else {}
        for name in [n for n in _own if n not in wanted]:
            _set(name, _own.pop(name))
        for name in wanted:
            if name not in _own:
                _own[name] = os.environ.get(name)
        _wanted, _applied = wanted, data
    environ = os.environ
    for name, value in _wanted.items():
        if environ.get(name) != value:
            _set(name, value)
