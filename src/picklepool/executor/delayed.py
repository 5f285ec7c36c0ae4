"""``delayed``: capture a call as a plain ``(function, args, kwargs)`` tuple.

Kept as lean as possible: the user's generator of ``delayed(f)(x)`` items is the
floor of the whole calling convention, so ``delayed`` does no copying of
metadata per item (joblib's re-wraps the function every time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Task = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


def delayed(function: Callable[..., Any]) -> Callable[..., Task]:
    """Return a function that records a call of *function* instead of running it.

    ``delayed(f)(1, y=2)`` is ``(f, (1,), {"y": 2})``, the joblib convention, and
    works as a decorator too. No metadata is copied onto the returned function:
    it is made once per item, and copying would cost more than the call itself.
    For the same reason *function* is checked when the call is dispatched (a
    ``TypeError`` naming the item), not here.
    """

    def delayed_function(*args: Any, **kwargs: Any) -> Task:
        return function, args, kwargs

    return delayed_function
