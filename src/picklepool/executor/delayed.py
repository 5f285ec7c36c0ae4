"""``delayed``: capture a call as a plain ``(function, args, kwargs)`` tuple.

Kept lean: the user's generator of ``delayed(f)(x)`` items is the floor of the
whole calling convention. The returned function carries *function*'s metadata
(``__name__``, ``__qualname__``, ``__doc__``, ``__wrapped__``, as joblib's does
with ``functools.wraps``). The last one made is reused, so ``delayed(f)`` written
for every item of a loop costs an identity check, not a copy of the metadata
(about 40 ns instead of 1 µs an item). That one is forgotten when a ``Parallel`` call
ends (:func:`forget`): kept on, it held the program's function (a bound method's
object, a closure's values, a callable object, ``__main__``'s globals through a
function of its) alive after the call, up to the interpreter's exit, where those
objects' ``__del__`` then ran only after ``sys.stdout`` and the modules had gone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

Task = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]

# (function, its delayed version) made last; one pair, replaced as a whole (thread-safe).
# Empty: a sentinel no argument is (None there made delayed(None) return None, not raise)
_NOTHING: Any = object()
_last: tuple[Any, Any] = (_NOTHING, None)


def _make(function: Callable[..., Any]) -> Callable[..., Task]:
    def delayed_function(*args: Any, **kwargs: Any) -> Task:
        return function, args, kwargs

    try:
        return functools.wraps(function)(delayed_function)
    except AttributeError:  # callables without a writable __dict__ or the like: as joblib
        return delayed_function


def forget() -> None:
    """Drop the function :func:`delayed` made last (a ``Parallel`` call's end): the cache
    is for the items of one loop, not a reference to the program's objects for good."""
    global _last
    _last = (_NOTHING, None)


def delayed(function: Callable[..., Any]) -> Callable[..., Task]:
    """Return a function that records a call of *function* instead of running it.

    ``delayed(f)(1, y=2)`` is ``(f, (1,), {"y": 2})``, the joblib convention, and
    works as a decorator too. ``delayed(f).__name__`` is ``f.__name__`` and
    ``__wrapped__`` is ``f`` (``functools.wraps``, as in joblib). Any callable
    works: a function, a class, a method, a ``functools.partial``, an object with
    ``__call__``. Anything else raises ``TypeError`` here, where it is given
    (joblib's ``delayed`` takes it, and the call fails later, in a worker).
    """
    global _last
    last = _last
    if last[0] is function:
        return last[1]  # type: ignore[no-any-return]
    if not callable(function):
        raise TypeError(
            f"delayed() needs a callable, but {function!r:.200} (type "
            f"{type(function).__module__}.{type(function).__qualname__}) is not callable. "
            "Give it the function itself and the arguments to the call it makes: "
            "delayed(f)(x), not delayed(f(x))."
        )
    made = _make(function)
    _last = (function, made)
    return made
