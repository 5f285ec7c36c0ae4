"""The calling context's variables (``contextvars``), set in a worker for its batch.

A program keeps per-request or per-task values in context variables::

    request_id = contextvars.ContextVar("request_id", default=None)
    request_id.set("abc")            # or a web framework, structlog's bind_contextvars
    Parallel(n_jobs=2)(delayed(handle)(x) for x in xs)   # handle() reads request_id.get()

In the loop the call replaces, ``handle`` read ``"abc"``; a warm worker's context had
never been set, so it read ``None`` (under joblib a ``__main__`` function using a
variable did not pickle at all). :func:`pickled` reads, in the calling thread (an
``Executor``'s ``submit``, an asyncio task's ``run_in_executor``: that task's context),
the variables its context has a value for, and pickles each with hybrid: a variable
that is a global of an importable module goes by its module and name, any other (a
global of ``__main__``) by the token that stands for it in every pickle
(``pickler.contextvar``), so the task's function meets the very variable set. :func:`apply`
sets them in the worker before the batch, and puts back the worker's own value of those
the parent no longer sets (an ``initializer``'s: :func:`rebase`).

Not sent: picklepool's own variables; the decimal context and numpy's error handling
and print options, mirrored as numeric settings (``workers.mirror``); the variables of
installed libraries' modules (standard library, site-packages), which hold their state
(a web framework's request, a tracer's span: the worker's copy of the library keeps its
own); a value that does not pickle, or pickled larger than :data:`LIMIT` (left out, the
others sent; the task sees the variable's default, as in a new thread). On dask, whose
worker threads run other clients' tasks, they are set in a copy of the thread's context
for the batch (:func:`set_all`); the threading backend runs its tasks in a copy of the
caller's context already. A task that sets a variable the parent also set does
not change what the next batch sees.
"""

from __future__ import annotations

import contextvars
import pickle
import sys
from typing import Any

from .overlay import dumps_each, loads_each
from .reloads import library

WHAT = "a context variable"
LIMIT = 1 << 20  # a value pickled larger than this is not sent (it would travel with every batch)

# parent: variables never sent (picklepool's own; the decimal context, numpy's)
_skipped: set[contextvars.ContextVar[Any]] = set()
_checked: set[contextvars.ContextVar[Any]] = set()  # the variables sorted into sent or not
# parent: (the variables read last, how their values are compared, what they are
# compared with, the pickle sent): the pickle is made again only when a variable or
# value changed, set anew or (for a value the standard pickler writes) in place
_last: tuple[tuple[Any, ...], str, Any, bytes | None] = ((), "", None, None)
# parent: (the context read last, what was sent for it), while its values can only
# change by being set anew
_last_context: tuple[contextvars.Context, bytes | None] | None = None
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, complex})

# worker: variable -> (the value set for the parent, the token of its first set, whose
# reset gives the worker's own value back); the data applied last
_set: dict[contextvars.ContextVar[Any], tuple[Any, contextvars.Token[Any]]] = {}
_applied: bytes | None = None


def rebase() -> None:
    """After an initializer ran (``workers.mirror.rebase``): a variable it set over the
    parent's value has the worker's own from now on (back when the parent no longer sets
    it), and the parent's is set again, as for every later batch."""
    missing = object()
    for var, (value, _first) in list(_set.items()):
        if var.get(missing) is not value:
            _set[var] = (value, var.set(value))


def _skip(var: contextvars.ContextVar[Any], value: Any) -> bool:
    """Whether *var* is never sent: picklepool's own, decimal's (its value is the decimal
    context), one holding a C pointer (numpy's), and the variables of installed libraries'
    modules (standard library, site-packages: their state, which their copy in the worker
    keeps: a web framework's request, a tracer's span)."""
    if var.name.startswith("picklepool") or type(value).__name__ == "PyCapsule":
        return True
    decimal = sys.modules.get("decimal")
    if decimal is not None and type(value) is decimal.Context:  # (the C module's variable)
        return True
    pydecimal = sys.modules.get("_pydecimal")  # (its pure-Python twin's: 258 KB with each batch)
    if pydecimal is not None and type(value) is pydecimal.Context:
        return True
    from ..pickler.contextvar import home

    where = home(var)
    if where is None:  # (one of __main__, or not a module's global: sent)
        return False
    origin = getattr(getattr(sys.modules.get(where[0]), "__spec__", None), "origin", None)
    return not isinstance(origin, str) or library(origin)


def pickled() -> bytes | None:
    """The calling context's variables and values, pickled (None: none to send); see the
    module. A few look-ups while no variable of the program's own is set."""
    global _last, _last_context
    ctx = contextvars.copy_context()
    if not ctx:
        return None
    last = _last_context
    if last is not None:
        try:  # (a context equals another when their variables' values do: 0.1 us)
            if ctx == last[0]:
                return last[1]
        except Exception:  # noqa: BLE001 - a value's == raised (a numpy array's): look at each
            pass
    items = []
    for var, value in ctx.items():
        if var not in _checked:
            if _skip(var, value):
                _skipped.add(var)
            _checked.add(var)
        if var not in _skipped:
            items.append((var, value))
    if not items:
        _last_context = (ctx, None)
        return None
    variables = tuple(var for var, _ in items)
    values = [value for _, value in items]
    last_vars, last_how, last_mark, last_data = _last  # (one read: other threads call too)
    if variables == last_vars:
        same_types = last_how == "equal" and list(map(type, values)) == list(map(type, last_mark))
        if same_types and values == last_mark:
            return last_data  # (the commonest case: the same strings and numbers)
        if last_how == "objects" and all(a is b for a, b in zip(last_mark, values, strict=True)):
            return last_data
    mark: Any
    if all(type(v) in _IMMUTABLE for v in values):
        how, mark = "equal", values
    else:
        try:  # the values as the standard pickler writes them (about 1 us): changed in place?
            how, mark = "pickled", pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - one only hybrid pickles (a lambda), or none does
            how, mark = "objects", values  # the same objects: sent as they were first
        if how == last_how == "pickled" and variables == last_vars and mark == last_mark:
            return last_data
    data = dumps_each(items, WHAT, LIMIT)
    _last = (variables, how, mark, data)
    _last_context = (ctx, data) if how != "pickled" else None  # (one changed in place: not ==)
    return data


def set_all(data: bytes | None) -> None:
    """Set the variables pickled in *data* in the current context (a dask worker's copy of
    its thread's, made for one batch: ``workers.runner``)."""
    for var, value in loads_each(data, WHAT).items():
        var.set(value)


def apply(data: bytes | None) -> None:
    """Set the parent's variables pickled in *data* in this thread's context (None: the
    parent has none): each is set where its value is not the parent's (a task may have
    set it), and those the parent no longer sets get the worker's own value back."""
    global _applied
    if data is None and not _set:
        return
    wanted: dict[Any, Any] | None = None
    if data != _applied:
        wanted = loads_each(data, WHAT)
        for var in [v for v in _set if v not in wanted]:
            _, token = _set.pop(var)
            try:
                var.reset(token)  # (the value before the first set: the worker's own)
            except (RuntimeError, ValueError):  # (set in another context: a task's thread)
                pass
        _applied = data
    else:
        wanted = {var: value for var, (value, _) in _set.items()}
    missing = object()
    for var, value in wanted.items():
        if var.get(missing) is not value:
            token = var.set(value)
            first = _set.get(var)
            _set[var] = (value, token if first is None else first[1])
        elif var not in _set:
            _set[var] = (value, var.set(value))
