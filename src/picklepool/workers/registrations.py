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
type or reducer a worker cannot load is left out there, not the others (``workers.overlay``).
"""

from __future__ import annotations

import copyreg
from typing import Any

from .overlay import Overlay, dumps_each

WHAT = "a copyreg reducer"

# parent: (a copy of copyreg's table as read last, the pickle of its script entries)
_read: tuple[dict[Any, Any] | None, bytes | None] = (None, None)

# worker: the parent's reducers registered here
_overlay = Overlay(WHAT)
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
    data = dumps_each(entries, WHAT) if entries else None
    _read = (now, data)
    return data


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    _overlay.rebase(copyreg.dispatch_table)  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Register the reducers pickled in *data* here (None: the parent has none), and take
    back those registered for an earlier batch that the parent no longer has."""
    _overlay.apply(copyreg.dispatch_table, data)  # type: ignore[arg-type]


def reducers() -> list[Any]:
    """The parent's reducers registered here now (for ``workers.mainnames``: the script's
    names they see, such as the function a reducer returns, are the tasks' too)."""
    added = _overlay.added
    return list(added.values()) if added else []
