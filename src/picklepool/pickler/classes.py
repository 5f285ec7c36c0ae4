"""Classes sent by value, rebuilt without touching the class their process defined.

cloudpickle sends a class of ``__main__`` (or a closure's) by value with an id, and a
process that meets that id again reuses the class it has, then sets every attribute
of the pickled copy on it (``_class_setstate``). In a worker that keeps its copy up
to date. But a result coming back to the parent holds the worker's copy of the class,
and the parent's *own* class, defined by its ``class`` statement, got the worker's
rebuilt methods: their globals are a copy of the parent's as they were when the class
was sent, so after the call the parent's own ``C().method()`` no longer saw a global
of ``__main__`` rebound since (``CONFIG = 2`` read as 1), and every method stopped being
the one the script defined. joblib does the same (cloudpickle's behaviour).

hybrid sends such classes with :func:`make_skeleton_class` / :func:`make_skeleton_enum`
and :func:`class_setstate`, which set the attributes only on a class that a pickle
made in this process: the process that defined it keeps it as it is.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import cloudpickle

_cp: Any = cloudpickle.cloudpickle
_MAKE_CLASS = getattr(_cp, "_make_skeleton_class", None)
_MAKE_ENUM = getattr(_cp, "_make_skeleton_enum", None)
_SETSTATE = getattr(_cp, "_class_setstate", None)

_rebuilt: weakref.WeakSet[type] = weakref.WeakSet()  # classes a pickle made in this process
_lock = threading.Lock()


def _tracked(class_tracker_id: Any) -> Any:
    if class_tracker_id is None:
        return None
    tracker = getattr(_cp, "_DYNAMIC_CLASS_TRACKER_BY_ID", None)
    return None if tracker is None else tracker.get(class_tracker_id)


def _made(make: Any, class_tracker_id: Any, args: tuple[Any, ...]) -> Any:
    with _lock:  # (the look-up and the tracking, together)
        before = _tracked(class_tracker_id)
        cls = make(*args)
        if before is None:  # a new class: this process has no other
            _rebuilt.add(cls)
    return cls


def make_skeleton_class(
    type_constructor: Any, name: Any, bases: Any, type_kwargs: Any, class_tracker_id: Any, extra: Any
) -> Any:
    """cloudpickle's ``_make_skeleton_class``, remembering whether the class is new here."""
    return _made(
        _MAKE_CLASS, class_tracker_id, (type_constructor, name, bases, type_kwargs, class_tracker_id, extra)
    )


def make_skeleton_enum(
    bases: Any, name: Any, qualname: Any, members: Any, module: Any, class_tracker_id: Any, extra: Any
) -> Any:
    """cloudpickle's ``_make_skeleton_enum``, remembering whether the enum is new here."""
    return _made(
        _MAKE_ENUM, class_tracker_id, (bases, name, qualname, members, module, class_tracker_id, extra)
    )


def class_setstate(obj: Any, state: Any) -> Any:
    """cloudpickle's ``_class_setstate`` on a class a pickle made here; the defining process's
    own class is left as it is."""
    setstate = _SETSTATE
    if obj not in _rebuilt or setstate is None:  # (None: redirect() never names this function)
        return obj
    return setstate(obj, state)


def redirect(rv: Any) -> Any:
    """cloudpickle's reduction of a class by value *rv*, with these functions in its place."""
    if type(rv) is not tuple or len(rv) < 6 or rv[5] is not _SETSTATE or _SETSTATE is None:
        return rv
    if rv[0] is _MAKE_CLASS and _MAKE_CLASS is not None:
        return (make_skeleton_class, rv[1], rv[2], rv[3], rv[4], class_setstate, *rv[6:])
    if rv[0] is _MAKE_ENUM and _MAKE_ENUM is not None:
        return (make_skeleton_enum, rv[1], rv[2], rv[3], rv[4], class_setstate, *rv[6:])
    return rv
