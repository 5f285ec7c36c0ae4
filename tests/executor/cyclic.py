"""Cyclic garbage made while items are pulled: for the tests of ``dispatch.YoungGarbage``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


class Cyclic:
    """An object only the cyclic GC frees; counts how many are alive at most (``peak``)."""

    alive = peak = 0

    def __init__(self) -> None:
        self.me = self
        Cyclic.alive += 1
        Cyclic.peak = max(Cyclic.peak, Cyclic.alive)

    def __del__(self) -> None:
        Cyclic.alive -= 1

    @classmethod
    def reset(cls) -> None:
        cls.alive = cls.peak = 0


def making_cyclic_garbage(n: int, item: Callable[[int], Any]) -> Iterator[Any]:
    """``item(i)`` for i below *n*, each after making one ``Cyclic`` (as parsing a record...)."""
    for i in range(n):
        Cyclic()
        yield item(i)
