"""A warning for a seeded random generator that a function sent by value holds.

A script's task function that draws from a generator it holds (``rng =
np.random.default_rng(0)`` as a global of ``__main__``, a closure's ``random.Random``, a
default ``r=np.random.RandomState(1)``) travels by value with it: each worker rebuilds a
copy at the state the parent's had, so the tasks draw the same numbers, where the loop they
replace drew each number once (under joblib, every batch draws the same). Nothing said so:
the results were silently correlated. A generator set on a module by the script is not sent,
with a warning (``workers.moduleglobals``); one a function carries is sent, as before (a
task may want the same draws), and :func:`warn_held` says what happens and what to do, once
per function and call (an ``Executor``: once per function).
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from ..pickler.codeglobals import sent_globals


def _held(func: types.FunctionType) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` of what *func*, sent by value, carries: its globals, closure, defaults."""
    g = func.__globals__
    for name in sent_globals(func.__code__):
        if name in g:
            yield f"its global {name!r}", g[name]
    code = func.__code__
    for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=False):
        try:
            yield f"its closure's {name!r}", cell.cell_contents
        except ValueError:  # an empty cell
            pass
    defaults = func.__defaults__ or ()
    positional = code.co_varnames[: code.co_argcount]
    for name, value in zip(positional[len(positional) - len(defaults) :], defaults, strict=False):
        yield f"its default {name!r}", value
    for name, value in (func.__kwdefaults__ or {}).items():
        yield f"its default {name!r}", value


def _reached(func: types.FunctionType, depth: int = 3) -> Iterator[tuple[str, Any]]:
    """What :func:`_held` gives, and, in those of *func*'s functions that travel with it (of
    its module: a helper of the script it calls), what they hold, *depth* levels down."""
    seen = {id(func)}
    todo = [(func, "", depth)]
    while todo:
        f, path, left = todo.pop()
        for place, value in _held(f):
            yield path + place, value
            if (
                left
                and type(value) is types.FunctionType
                and value.__globals__ is f.__globals__
                and id(value) not in seen
            ):
                seen.add(id(value))
                todo.append((value, f"{path}{place} (function {value.__qualname__}): ", left - 1))


def warn_held(func: Any, where: Callable[[], str], label: str) -> None:
    """Warn when *func* (a function sent by value) holds a seeded random generator; *where()*
    names the task (``task 0: draw(0)``), *label* the function."""
    if type(func) is not types.FunctionType:
        return
    from ..pickler.locks import callers_level
    from ..workers.moduleglobals import _generator

    for place, value in _reached(func):
        kind = _generator(value)
        if kind:
            warnings.warn(
                f"picklepool: {where()}: the function {label} holds a seeded random number "
                f"generator ({kind}) in {place}, which travels with it: each worker gets a copy "
                "at the same state, so the tasks draw the same numbers, where the loop drew each "
                "number once. Give each task its own seed (for instance "
                "numpy.random.SeedSequence(seed).spawn(n_tasks), passed as an argument) and make "
                "the generator in the task.",
                RuntimeWarning,
                stacklevel=callers_level(),
            )
            return
