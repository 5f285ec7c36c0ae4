"""A thread that keeps changing a SharedState's ``a`` and ``b`` together, under its lock."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from picklepool import SharedState


@contextlib.contextmanager
def mutating(state: SharedState) -> Iterator[Callable[[], None]]:
    """Run the mutator for the block; yields ``wait()``: block until one more change lands."""
    stop = threading.Event()
    changed = threading.Condition()
    count = [0]

    def mutate() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            with state as v:
                v["a"] = i
                time.sleep(0)  # let other threads run mid-change (not synchronisation)
                v["b"] = i
            with changed:
                count[0] = i
                changed.notify_all()

    def wait() -> None:
        with changed:
            target = count[0] + 1
            changed.wait_for(lambda: count[0] >= target)

    thread = threading.Thread(target=mutate)
    thread.start()
    try:
        yield wait
    finally:
        stop.set()
        thread.join()
