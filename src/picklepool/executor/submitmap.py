"""``Executor.map`` of a subclass that overrides ``submit``: every call goes through it.

The standard library's ``ProcessPoolExecutor.map`` submits each chunk of *chunksize*
calls (one call's for chunksize 1), as ``functools.partial(_process_chunk, fn)`` over a
tuple of argument tuples, with ``self.submit``, so a subclass that wraps ``submit`` (to
log, count, carry a context, wrap the function) sees ``map``'s calls too. picklepool's own ``map`` packs its
calls without ``submit``; when a subclass overrides it, :func:`map_through_submit` does
what the standard library does instead (its order, its chunks, its eager submission, or
*buffersize* ahead with Python 3.14's).
"""

from __future__ import annotations

import functools
import itertools
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures.process import _process_chunk
from typing import Any


def map_through_submit(
    executor: Executor,
    fn: Callable[..., Any],
    iterables: tuple[Iterable[Any], ...],
    end: float | None,
    chunksize: int,
    buffersize: int | None,
) -> Iterator[Any]:
    """The results of *fn* over the zipped *iterables*, each call sent by ``executor.submit``."""
    zipped = zip(*iterables)  # noqa: B905 - up to the shortest, as map
    chunk = functools.partial(_process_chunk, fn)  # also for chunksize 1, as there
    calls: Iterator[tuple[Any, ...]] = (
        (args,) for args in iter(lambda: tuple(itertools.islice(zipped, chunksize)), ())
    )
    if buffersize is None:
        fs = deque(executor.submit(chunk, *args) for args in calls)
        calls = iter(())
    else:
        fs = deque(executor.submit(chunk, *args) for args in itertools.islice(calls, buffersize))
    # weakly: an unread iterator does not keep the executor alive (as the standard library)
    return _results(fs, calls, weakref.ref(executor), chunk, end)


def _results(
    fs: deque[Future[Any]],
    calls: Iterator[tuple[Any, ...]],
    ref: weakref.ref[Executor],
    fn: Callable[..., Any],
    end: float | None,
) -> Iterator[Any]:
    try:
        while fs:
            executor = ref()
            if executor is not None:
                args = next(calls, None)
                if args is not None:
                    fs.append(executor.submit(fn, *args))
            del executor
            future = fs.popleft()
            result = future.result() if end is None else future.result(end - time.monotonic())
            del future
            yield from result
            del result
    finally:
        for future in fs:
            future.cancel()
