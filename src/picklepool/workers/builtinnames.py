"""Names the parent's program added to ``builtins``, added in a worker too.

A program can make a name visible to every module by setting it in ``builtins``:
``gettext.install("app")`` adds ``_`` (and ``ngettext``...) so that any module's
``_("Hello")`` translates, and a script or a tool adds helpers of its own
(``builtins.ic = icecream.ic``). In the loop the call replaces, a task's code finds
them; a warm worker never ran the program, so a task calling ``_("Hello")`` failed with
``NameError: name '_' is not defined`` (under joblib too).

:func:`pickled` reads, in the parent, the entries of ``builtins`` that the interpreter
did not put there: callables (functions, methods, classes, callable objects) but the
interpreter's own (its functions written in C, ``print`` or ``open``; its classes; site's
``exit``, ``help``), and not under a dunder name (``__import__`` and
``__build_class__`` hooks stay the worker's). A value that is not
callable (the interactive interpreter's ``_``, the last value shown) is left out.
Each is pickled apart (with hybrid: a function of ``__main__`` by value, gettext's
``_`` as its translations object), once, and again only when ``builtins`` gains or
loses a name or one of those names is bound anew; one that cannot be pickled is left
out, not the others, and so is one larger than :data:`LIMIT` pickled (it travels with
every batch), with a ``RuntimeWarning`` saying so; a task's ``NameError`` for one of them
says why and what to do (:data:`left_out`). IPython's own (``get_ipython``) are
left out. Replacing a standard builtin (``builtins.print = ...``) is not
sent. :func:`apply` sets them in the worker before each batch and takes back those the
parent no longer has (the worker's own value, if it had one, returns).
"""

from __future__ import annotations

import builtins
import warnings
from typing import Any

from .overlay import Overlay, dumps_each

_C_FUNCTION = type(len)
_SHELLS = ("IPython.", "ipykernel.")
# an added name pickled larger than this is not sent (it would travel with every batch)
LIMIT = 1 << 20
_NONE = object()
_INTERPRETERS = frozenset({"None", "True", "False", "Ellipsis", "NotImplemented"})  # values of its own

# parent: (len(vars(builtins)), {name: value} of the added names, as read last, their pickle)
_read: tuple[int, dict[str, Any], bytes | None] = (-1, {}, None)
# parent: {name: why it is not sent} of the added names left out when last read, for the
# NameError of a task that uses one (executor.replies says why and what to do)
left_out: dict[str, str] = {}

WHAT = "a name added to builtins"

# worker: the parent's names set here
_overlay = Overlay(WHAT)


def added(namespace: dict[str, Any]) -> dict[str, Any]:
    """The entries of *namespace* (``vars(builtins)``) the program added: see the module."""
    out = {}
    for name, value in namespace.items():
        if name[:2] == "__" or not callable(value):
            continue
        if type(value) is _C_FUNCTION or type(value).__module__ == "_sitebuiltins":
            continue  # (the interpreter's functions, open too; site's exit, help...)
        if isinstance(value, type) and value.__module__ == "builtins":
            continue
        if str(getattr(value, "__module__", None)).startswith(_SHELLS):
            continue  # IPython's get_ipython, display: the shell's own, with no use in a worker
        out[name] = value
    return out


def not_callable(name: str) -> str | None:
    """Why *name*, a name this process has in ``builtins``, is not sent when it is a value,
    not a callable (:func:`added` leaves those out); None when it is not one."""
    value = vars(builtins).get(name, _NONE)
    if value is _NONE or callable(value) or name[:2] == "__" or name in _INTERPRETERS:
        return None
    return (
        f"it is a value ({type(value).__name__}), and only callables added to builtins are sent "
        "(a value there is most often the interactive shell's _, the last result shown)"
    )


def pickled() -> bytes | None:
    """The names the program added to ``builtins``, pickled (None: there are none).

    Kept while ``builtins`` has as many names as when last read and those added are bound
    to the same objects (a length and, usually, nothing else).
    """
    global _read
    namespace = vars(builtins)
    size, seen, data = _read
    if size == len(namespace):
        if not seen:  # (the usual case: nothing added)
            return data
        for k, v in seen.items():
            if namespace.get(k, _NONE) is not v:
                break
        else:
            return data
    now = added(namespace)
    left_out.clear()
    data = dumps_each(now.items(), WHAT, LIMIT, _too_large, left_out) if now else None
    _read = (len(namespace), now, data)
    return data


def _too_large(name: str, size: int) -> None:
    from ..pickler.locks import callers_level

    warnings.warn(
        f"picklepool: builtins.{name} is not sent to the workers: pickled, it takes "
        f"{size / 2**20:.1f} MiB, which would travel with every batch, so a task using "
        f"it raises NameError there. Pass it to the tasks as an argument, or set it in "
        f"an initializer (Parallel(initializer=...)).",
        RuntimeWarning,
        stacklevel=callers_level(),  # (the call's line)
    )


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    _overlay.rebase(vars(builtins))


def apply(data: bytes | None) -> None:
    """Set the names pickled in *data* in this worker's ``builtins`` (None: the parent
    added none), and take back those set for an earlier batch that the parent no longer has."""
    _overlay.apply(vars(builtins), data)
