"""An object a task reaches both through its function and as an argument: one object, as in joblib.

joblib pickles a batch's function with its arguments, in one pickle: a ``__main__``
global passed as an argument too (``SENTINEL = object()``, ``delayed(f)(SENTINEL)``
with ``f`` testing ``x is SENTINEL``) arrives as one object. picklepool pickles a
function once per call and the arguments per batch, so it arrived as two copies:
``is`` was False, and a change to one was not seen through the other. The parent
(``executor.functions.reached``) sends such an argument as a :class:`ThroughFunction`
naming where the function holds it (a global, a default, a keyword default, a closure
cell; a ``functools.partial``'s argument or keyword; a bound method's object or one of its
attributes; a callable object's attribute); the worker takes that object from its copy of
the function while it unpickles the batch's arguments (``loading.functions``, set by ``workers.runner``).

That copy is the one the parent sent: ``loading.as_sent`` gives the batch a copy of the
function of its own, as joblib unpickles one per batch (the copy a worker keeps across a
call's batches may hold a task's change to the object, ``x.append(i)``, or be running
another batch in a dask worker's other thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any


class _Loading(threading.local):
    functions: Sequence[Any] = ()  # the batch's, while its arguments are unpickled
    # The batch's function *index*, as the parent sent it: a copy for this batch (workers.runner
    # sets only this; without it, ``functions``)
    as_sent: Callable[[int], Any] | None = None


loading = _Loading()  # per thread: a dask worker runs batches in threads


class ThroughFunction:
    """Stands for an argument that is the object function *index* of the batch holds at *where*."""

    __slots__ = ("index", "where", "key")

    def __init__(self, index: int, where: str, key: Any) -> None:
        self.index, self.where, self.key = index, where, key

    def __reduce__(self) -> Any:
        return through_function, (self.index, self.where, self.key)


def through_function(index: int, where: str, key: Any) -> Any:
    """The object the batch's function *index* holds at *where* (``global``, ``default``,
    ``kwdefault`` or ``cell``; a partial's ``partial_arg``/``partial_kw``; a bound method's
    ``self`` or its ``attr``; a callable object's ``own_attr``) under *key*."""
    as_sent = loading.as_sent
    fn = loading.functions[index] if as_sent is None else as_sent(index)
    if where == "partial_arg":
        return fn.args[key]
    if where == "partial_kw":
        return fn.keywords[key]
    if where == "self":
        return fn.__self__
    if where == "attr":
        return fn.__self__.__dict__[key]
    if where == "own_attr":
        return fn.__dict__[key]
    if where == "global":
        return fn.__globals__[key]
    if where == "default":
        return fn.__defaults__[key]
    if where == "kwdefault":
        return fn.__kwdefaults__[key]
    return fn.__closure__[key].cell_contents
