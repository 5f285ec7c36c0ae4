"""``copyreg`` reducers the parent's script registered, registered in a worker too.

A script (or a notebook: ``__main__``) that makes a type of a library picklable its own
way registers a reducer for it: ``copyreg.pickle(mylib.Conn, reduce_conn)``. In the loop
the call replaces, the registration is in force for everything the tasks do; a warm
worker never ran the script, so it had none: a task returning such an object failed to
send its result ("cannot pickle 'socket' object", where the parent's pickling would have
used the reducer), and a task's own ``pickle.dumps`` or ``copy.deepcopy`` of one raised
or copied it field by field, where the loop used the reducer (joblib's workers have none
either).

:func:`pickled` reads, in the parent, the entries of ``copyreg.dispatch_table`` whose
reducer is a function of ``__main__`` (the script's own registrations; a library's are
made by its module, which a worker imports to load its types): pickled once, each apart
(with hybrid: the reducer travels by value), and again only when the table changes.
:func:`apply` registers them in the worker before each batch and takes back those the
parent no longer has (the worker's own entry for that type, if any, returns). A type of
``__main__`` is left out: its reducer travels with the class (``pickler.classes``). A
type or reducer a worker cannot load is left out there, not the others.
"""

from __future__ import annotations

import copyreg
import logging
import pickle
from typing import Any

from . import warnfilters

log = logging.getLogger(__name__)

# parent: (a copy of copyreg's table as read last, the pickle of its script entries)
_read: tuple[dict[Any, Any] | None, bytes | None] = (None, None)

# worker: the pickle applied last
_applied: bytes | None = None
# worker: {type: the parent's reducer} registered here for the parent
_added: dict[Any, Any] = {}
# worker: {type: the worker's own reducer} for the types registered for the parent
_own: dict[Any, Any] = {}
_NONE = object()  # no reducer of the worker's own
# the script's module names: a program that multiprocessing's spawn or forkserver started
# runs its script as __mp_main__ (multiprocessing.Process(target=...) calling Parallel)
_SCRIPT = ("__main__", "__mp_main__")


def _from_script(kind: Any, reducer: Any) -> bool:
    """Whether *reducer*, registered for *kind*, is the script's, for a type of another module."""
    script = getattr(reducer, "__module__", None) in _SCRIPT
    return script and getattr(kind, "__module__", None) not in _SCRIPT


def pickled() -> bytes | None:
    """The script's ``copyreg`` registrations, pickled (None: there are none).

    Kept while ``copyreg.dispatch_table`` is unchanged (one comparison of a few entries).
    """
    global _read
    table = copyreg.dispatch_table
    seen, data = _read
    if seen is not None and table == seen:
        return data
    now = dict(table)
    entries = [(kind, reducer) for kind, reducer in now.items() if _from_script(kind, reducer)]
    data = None
    if entries:
        from ..pickler.hybrid import HybridPickler

        each = []
        pickler = HybridPickler()
        for entry in entries:
            try:
                each.append(pickler.dumps(entry))
            except Exception as exc:  # noqa: BLE001 - this one is not sent; the others are
                log.debug("picklepool: a copyreg reducer cannot be sent to workers (%r): %r", entry, exc)
        data = pickle.dumps(tuple(each)) if each else None
    _read = (now, data)
    return data


def _loaded(data: bytes | None) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    if data is None:
        return out
    for one in pickle.loads(data):
        try:
            with warnfilters.loading():  # (the imports the parent made: under the worker's filters)
                kind, reducer = pickle.loads(one)
        except Exception as exc:  # noqa: BLE001 - a type or reducer this worker cannot load
            log.debug("picklepool: a copyreg reducer of the parent cannot be read here (%r)", exc)
            continue
        out[kind] = reducer
    return out


def apply(data: bytes | None) -> None:
    """Register the reducers pickled in *data* here (None: the parent has none), and take
    back those registered for an earlier batch that the parent no longer has."""
    global _applied
    if data is None and not _added:  # (the usual case: no script registrations)
        return
    table = copyreg.dispatch_table
    if data != _applied:
        wanted = _loaded(data)
        for kind in [k for k in _added if k not in wanted]:
            own = _own.pop(kind, _NONE)
            del _added[kind]
            if own is _NONE:
                table.pop(kind, None)
            else:
                table[kind] = own
        for kind, reducer in wanted.items():
            if kind not in _added:
                _own[kind] = table.get(kind, _NONE)
            _added[kind] = reducer
        _applied = data
    # the parent's at each batch: a task's own registration for the type was its batch's
    for kind, reducer in _added.items():
        if table.get(kind) is not reducer:
            table[kind] = reducer


def reducers() -> list[Any]:
    """The parent's reducers registered here now (for ``workers.mainnames``: the script's
    names they see, such as the function a reducer returns, are the tasks' too)."""
    return list(_added.values()) if _added else []
