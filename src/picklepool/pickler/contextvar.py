"""``contextvars.ContextVar`` and ``Context`` across the trip (hybrid's reducers).

A variable has no name pickle can look up, so a task that reached one (a global of
its function, an argument) got a new variable at each trip: two pickles of one
batch (the function's, the arguments') brought two, and a value set on one was not
seen through the other. hybrid sends a variable as what stands for it:

- a global of an importable module (``request_id`` of ``myapp.context``, found once by
  looking through ``sys.modules``): by its module and name, so a worker's task and the
  parent's values (``workers.contextvalues``) meet the variable that module's code
  reads;
- any other (one of ``__main__``, a class's attribute): a token (``sentinels``) with
  its name and default. In a worker one variable stands for it, the same through every
  pickle and batch; sent back, it is the parent's own variable again.

A ``Context`` travels as a new context holding the same variables and values. Values
are per context: sending a variable does not send its value (``workers.contextvalues``
sends those of the calling context, for each batch).
"""

from __future__ import annotations

import contextvars
import importlib
import sys
from typing import Any

from . import sentinels
from .homes import module_not_found

Reduced = tuple[Any, ...]


class _NoDefault:
    """Stands for "this ContextVar has no default"."""

    def __reduce__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()

# variable -> (module, name) of the module global holding it, or None: not found there
# (looked for again once modules were imported since)
_homes: dict[contextvars.ContextVar[Any], tuple[str, str] | None] = {}
_modules_seen = 0  # len(sys.modules) when a variable was last not found


def _modules() -> list[tuple[str, dict[str, Any]]]:
    """``(name, globals)`` of the modules in ``sys.modules`` under their own name, not
    ``__main__`` (nor ``__main__`` under another: ``__mp_main__``, a runpy copy)."""
    out = []
    for n, m in list(sys.modules.items()):
        try:
            name, d = getattr(m, "__name__", None), getattr(m, "__dict__", None)
        except Exception:  # noqa: BLE001 - an object whose attributes raise when read
            continue
        if n != "__main__" and name == n and type(d) is dict:
            out.append((n, d))
    return out


def home(var: contextvars.ContextVar[Any], by_name_only: bool = False) -> tuple[str, str] | None:
    """``(module, name)`` of the global of an importable module (not ``__main__``)
    holding *var*, or None. The variable's own name is tried first in each module
    (``request_id = ContextVar("request_id")``, about 0.1 ms), then (unless
    *by_name_only*) every module's globals (about 20 ms with a thousand modules), once per
    variable: an answer is remembered, a miss until more modules are imported."""
    global _modules_seen
    found = _homes.get(var, False)
    if found is not False and (found is not None or len(sys.modules) == _modules_seen):
        return found  # type: ignore[return-value]
    spaces = _modules()
    name = var.name
    found = next(((n, name) for n, d in spaces if d.get(name) is var), None)
    if found is None and by_name_only:
        return None
    if found is None and getattr(sys.modules.get("__main__"), name, None) is var:
        _homes[var] = None  # (the script's own, under its name: no module's)
        return None
    if found is None:
        found = next(((n, k) for n, d in spaces for k, v in list(d.items()) if v is var), None)
    if found is not None and module_not_found(sys.modules.get(found[0])):
        found = None  # (a module loaded from a file that importing its name would not load)
    if found is None:
        _modules_seen = len(sys.modules)
    _homes[var] = found
    return found


def module_var(module: str, name: str) -> contextvars.ContextVar[Any]:
    """The variable global *name* of *module* holds (imported if it is not)."""
    return getattr(sys.modules.get(module) or importlib.import_module(module), name)  # type: ignore[no-any-return]


def rebuild_var(token: tuple[bytes, int], name: str, default: Any) -> contextvars.ContextVar[Any]:
    """The variable *token* stands for: this process's own, or the one made for it here."""

    def make() -> contextvars.ContextVar[Any]:
        if default is NO_DEFAULT:
            return contextvars.ContextVar(name)
        return contextvars.ContextVar(name, default=default)

    return sentinels.stand_in(token, make)  # type: ignore[return-value]


def reduce_var(var: contextvars.ContextVar[Any]) -> Reduced:
    """*var* by its module and name, else by token (see the module)."""
    where = home(var)
    if where is not None:
        return (module_var, where)
    try:
        default = contextvars.Context().run(var.get)  # an empty context: only the default is seen
    except LookupError:
        default = NO_DEFAULT
    return (rebuild_var, (sentinels.known_token(var) or sentinels.token_of(var), var.name, default))


def _set_all(items: list[tuple[contextvars.ContextVar[Any], Any]]) -> None:
    for var, value in items:
        var.set(value)


def rebuild_context(items: list[tuple[contextvars.ContextVar[Any], Any]]) -> contextvars.Context:
    ctx = contextvars.Context()
    ctx.run(_set_all, items)
    return ctx


def reduce_context(ctx: contextvars.Context) -> Reduced:
    """*ctx*'s variables and values; not a value that is a C pointer of this process (numpy's
    error handling holds a ``PyCapsule``, which no pickler sends)."""
    return (rebuild_context, ([(v, x) for v, x in ctx.items() if type(x).__name__ != "PyCapsule"],))
