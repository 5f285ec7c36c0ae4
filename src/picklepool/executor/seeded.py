"""A warning for a seeded random generator that a function sent by value holds.

A script's task function that draws from a generator it holds (``rng =
np.random.default_rng(0)`` as a global of ``__main__``, a closure's ``random.Random``, a
default ``r=np.random.RandomState(1)``) travels by value with it: each worker rebuilds a
copy at the state the parent's had, so the tasks draw the same numbers, where the loop they
replace drew each number once (under joblib, every batch draws the same). Nothing said so:
the results were silently correlated. A generator set on a module by the script is not sent,
with a warning (``workers.moduleglobals``); one a function carries is sent, as before (a
task may want the same draws), and :func:`warn_held` says what happens and what to do, once
per function and call (an ``Executor``: once per function). The same generator given as an
argument to two tasks of a call draws the same numbers too: :class:`SeededArguments` warns
of that.
"""

from __future__ import annotations

import itertools
import sys
import types
import warnings
import weakref
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


class SeededArguments:
    """The seeded random generators the tasks of one call were given as arguments.

    ``delayed(simulate)(rng, i) for i in range(n)``: each task got a copy of ``rng`` at the
    same state, so the tasks drew the same numbers, where the loop they replace drew each
    number once (joblib does the same, in silence). :meth:`note` warns of it once per call,
    naming two tasks that got the same generator, and where. It holds the generators it saw
    (their identity is what it compares), for the call's life only: one ``Parallel`` call (not
    an ``Executor``'s submissions, nor the joblib backend's calls: ``dispatch.Channel``).
    """

    def __init__(self) -> None:
        self.seen: dict[int, tuple[Any, int, str, str]] = {}  # id -> (generator, task, place, name)
        self.warned = False

    def note(self, args: Any, kwargs: Any, single: bool, first: int, name: Callable[[int], str]) -> None:
        """Look at the arguments of a batch's tasks (*first*...; *single*: *args* holds each
        task's only argument) for a seeded generator an earlier task got too; *name(i)*
        names task *i* (``task 3: f(x)``). One pass in C over the batch's argument types
        when there is none."""
        if self.warned:
            return
        try:
            types_ = set(map(type, args if single else itertools.chain.from_iterable(args)))
            if kwargs is not None and any(kwargs):
                if set(map(type, kwargs)) <= _DICT_OR_NONE:
                    values = itertools.chain.from_iterable(map(dict.values, filter(None, kwargs)))
                    types_.update(map(type, values))
                else:  # (keywords of another type: the worker's check refuses them)
                    for kw in kwargs:
                        if type(kw) is dict:
                            types_.update(map(type, kw.values()))
        except Exception:  # noqa: BLE001 - not argument tuples, keywords of no truth: the worker's check names them
            return
        types_ -= _PLAIN
        if not types_ or _NOT_GENERATORS.issuperset(types_):
            return
        kinds = _generator_kinds()
        found = False
        for t in types_:
            if issubclass(t, kinds):
                found = True
            else:  # (a class that is none now never becomes one)
                _NOT_GENERATORS.add(t)
        if not found:
            return
        for offset, task_args in enumerate(args):
            places: list[tuple[str, Any]]
            if single:
                places = [("args[0]", task_args)]
            else:
                try:
                    places = [(f"args[{j}]", a) for j, a in enumerate(task_args)]
                except TypeError:
                    continue
            try:
                kw = kwargs[offset] if kwargs is not None else None
            except Exception:  # noqa: BLE001 - (as above)
                kw = None
            if type(kw) is dict:
                places += [(f"kwargs[{k!r}]", v) for k, v in kw.items()]
            for place, value in places:
                if not isinstance(value, kinds):
                    continue
                kind = _generator_name(value)
                if not kind:
                    continue
                index = first + offset
                earlier = self.seen.get(id(value))
                if earlier is None:
                    self.seen[id(value)] = (value, index, place, name(index))
                    continue
                if earlier[1] == index:
                    continue  # (one task given it twice: one object there too, as in the loop)
                self._warn(kind, name(index), place, earlier[3], earlier[2])
                return

    def _warn(self, kind: str, later: str, place: str, earlier: str, earlier_place: str) -> None:
        from ..pickler.locks import callers_level

        self.warned = True
        self.seen.clear()
        warnings.warn(
            f"picklepool: {later}: its {place} is the seeded random number generator ({kind}) "
            f"that {earlier} got too (its {earlier_place}): each task gets a copy of it at the "
            "same state, so the tasks draw the same numbers, where the loop drew each number "
            "once (and the generator here does not move on). Give each task its own generator: "
            "pass numpy.random.SeedSequence(seed).spawn(n_tasks)[i] (or rng.spawn(n_tasks)[i], "
            "or a seed of its own) as the argument, and make the generator in the task.",
            RuntimeWarning,
            stacklevel=callers_level(),
        )


# the argument types known not to be seeded generators: plain values, and the classes seen
# (held weakly: a class the program makes for a call must end with it; held, it stayed in
# an ABC's registry here, and its copies in the workers with it)
_PLAIN: set[type] = {int, float, str, bytes, bool, type(None), tuple, list, dict}
_NOT_GENERATORS: weakref.WeakSet[type] = weakref.WeakSet()
_DICT_OR_NONE = {dict, type(None)}


def _generator_kinds() -> tuple[type, ...]:
    """The classes of seeded random generators loaded here (numpy's if numpy.random is)."""
    import random

    numpy_random = sys.modules.get("numpy.random")
    kinds: list[type] = [random.Random]
    for n in ("Generator", "RandomState", "BitGenerator"):
        k = getattr(numpy_random, n, None)
        if isinstance(k, type):
            kinds.append(k)
    return tuple(kinds)


def _generator_name(value: Any) -> str:
    from ..workers.moduleglobals import _generator

    return _generator(value)
