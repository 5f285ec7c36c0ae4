"""Functions sent by value come back as the sending process's own objects.

A function of ``__main__`` (or a closure) travels by value: the worker runs a copy. A task
that returns it (the best of candidate models, a handler it picked) gave the parent that
copy, not its function: ``MODELS.index(best)`` raised ``ValueError``, a dict keyed by
functions missed, and calling the copy read the globals it carried, as they were when it
was sent (a global rebound since was not seen), where the loop returns the very function.
So did an ``lru_cache`` wrapper of ``__main__`` (with an empty cache of its own). joblib
does the same (cloudpickle's copies). (A ``typing.NewType``, ``ParamSpec`` or
``TypeVarTuple`` of ``__main__``, which cannot change, goes with a token of ``sentinels``:
one copy per token in a worker, however many pickles bring it.)

While a call is pickled (``pickler.context``), hybrid sends such an object with a token, as
``sentinels`` does ``object()``: this process's nonce and a serial given to the object,
which this process holds *weakly* (a closure over a large array is not kept alive by having
been sent). A copy made where the token is not the process's own remembers it (weakly too);
sent back, the copy carries that token, and the process it names gets its own object again,
whose state is left as it is (the copy's globals are not set on it). Where the token is the
process's own but the object is gone, or is another process's, a copy is made as before: a
worker makes a new copy of the parent's function at each call, so a global the parent
rebound is seen by the next call. Outside a call no token is added: cloudpickle's copy, the
same bytes in every process.
"""

from __future__ import annotations

import itertools
import os
import weakref
from typing import Any

import cloudpickle

from . import context, sentinels

_cp: Any = cloudpickle.cloudpickle
MAKE_FUNCTION = getattr(_cp, "_make_function", None)
_FUNCTION_SETSTATE = getattr(_cp, "_function_setstate", None)

_serials = itertools.count()
_own: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()  # serial -> object sent
_serial_of: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # object sent -> serial
_copies: weakref.WeakKeyDictionary[Any, tuple[bytes, int]] = weakref.WeakKeyDictionary()  # copy -> token
_made: weakref.WeakSet[Any] = weakref.WeakSet()  # functions a pickle made here (their state is set)


def token_of(obj: Any) -> tuple[bytes, int] | None:
    """*obj*'s token: the one it stands for (a copy made here), or one of this process while
    a call is pickled (``pickler.context``); else None.

    Outside a call (``hybrid.dumps`` of the user's own, a ``SharedState`` saved to a file) a
    function goes as cloudpickle sends it: a round trip in one process makes a copy with
    globals of its own, and its bytes are the same in every process (cloudpickle's
    deterministic pickles).
    """
    token = _copies.get(obj)
    if token is not None:
        return token
    if context.current() is None:
        return None
    serial = _serial_of.get(obj)
    if serial is None or _own.get(serial) is not obj:  # (none, or passed on: pass_on)
        serial = next(_serials)
        _own[serial] = obj
        _serial_of[obj] = serial
    return (sentinels.nonce(), serial)


def pass_on(sent: Any, now: Any) -> None:
    """*now* takes the token *sent* went with: the bytes pickled for *sent* are sent for
    *now* (``executor.unchanged``: a lambda made anew at each call, same code and globals),
    so a copy of them sent back is *now*, the function of the call that sent them."""
    if now is sent:
        return
    token = _copies.get(sent)
    if token is not None:
        note_copy(now, token)
        return
    serial = _serial_of.get(sent)
    if serial is not None and _own.get(serial) is sent:
        _own[serial] = now
        _serial_of[now] = serial


def own(token: Any) -> Any:
    """The object *token* names when it is this process's own and still alive, else None."""
    if type(token) is not tuple or len(token) != 2 or token[0] != sentinels.nonce():
        return None
    return _own.get(token[1])


def note_copy(obj: Any, token: Any) -> Any:
    """*obj*, a copy made here of the object *token* names, remembered as standing for it."""
    if type(token) is tuple:
        try:
            _copies[obj] = token
        except TypeError:  # (an object without weak references: it goes back as a copy)
            pass
    return obj


def with_token(rv: Any, obj: Any) -> Any:
    """cloudpickle's by-value reduction *rv* of the function *obj*, carrying *obj*'s token
    (unchanged when it is not that reduction)."""
    if type(rv) is not tuple or len(rv) != 6 or rv[0] is not MAKE_FUNCTION or MAKE_FUNCTION is None:
        return rv
    token = token_of(obj)
    if token is None:
        return rv
    return (make_function, (token, *rv[1]), rv[2], rv[3], rv[4], function_setstate)


def make_function(token: Any, *args: Any) -> Any:
    """The function *token* names when it is this process's own, else cloudpickle's new one."""
    found = own(token)
    if found is not None:
        return found
    func = MAKE_FUNCTION(*args)  # type: ignore[misc]
    _made.add(func)
    return note_copy(func, token)


def function_setstate(obj: Any, state: Any) -> Any:
    """cloudpickle's ``_function_setstate`` on a function a pickle made here; this process's
    own function is left as it is (its globals are the module's: the copy's would overwrite them)."""
    if obj not in _made or _FUNCTION_SETSTATE is None:
        return obj
    return _FUNCTION_SETSTATE(obj, state)


def _forget_in_child() -> None:
    """A forked child is another process (``sentinels`` gives it its own nonce)."""
    _own.clear()
    _serial_of.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
