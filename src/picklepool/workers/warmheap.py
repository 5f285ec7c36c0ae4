"""Keeping a worker's memory from one batch of large arguments to the next.

CPython's small-object allocator takes memory from the kernel in 1 MB arenas and gives
an arena back as soon as its last object is freed. A batch whose argument is a list of
a million ints fills about 32 arenas; freeing it gives them all back, and the next such
batch is rebuilt in fresh pages, each one a page fault: ~7,800 faults for 1M ints, about
a third of its unpickling time here (31 ms, 16-24 ms without the faults).

So when a large batch of a few tasks has its arguments freed (after its reply is sent,
see ``wire.FreedAfterSending``), :func:`keep_warm` first keeps a sparse sample of the
scalars of its large list, tuple and dict arguments: one item in :data:`STRIDE`, several
in every arena the container's items were built in. Those arenas stay mapped, and the
next batch's objects fill their free pages again. Each sample replaces the previous one,
so a worker keeps at most what its last large batch used, up to :data:`KEEP_MAX_BYTES`
(estimated from the items' sizes; loky recycles a worker that grows 300 MB).

Only exact ``int``, ``float``, ``complex``, ``str`` and ``bytes`` items are kept:
immutable, with no behaviour of their own (no file kept open, no ``__del__`` delayed),
and unreachable by any task. Nothing is kept with ``max_worker_memory`` (its check must
see the memory a batch leaves), nor for in-process backends (no copy is made there).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from typing import Any

from ..pickler.stream import MAX_TASKS, MIN_ITEMS, argument_values

STRIDE = 1024  # one item kept in this many: 32 KB apart for ints, ~32 per 1 MB arena
KEEP_MAX_BYTES = 128 << 20  # what the items of the containers sampled may take, estimated

_SCALARS = frozenset({int, float, complex, str, bytes})
SMALL_OBJECT = 512  # bytes: CPython's small-object allocator takes objects up to this size
_kept: list[Any] = []  # the sample of the last large batch


def _containers(values: Iterable[Any]) -> Iterable[Any]:
    """Large lists, tuples and dicts among *values* and one level down in small ones."""
    for value in values:
        kind = type(value)
        if kind in (list, tuple, dict):
            if len(value) >= MIN_ITEMS:
                yield value
            elif len(value) <= 16:
                inner = value.values() if kind is dict else value
                yield from (v for v in inner if type(v) in (list, tuple, dict) and len(v) >= MIN_ITEMS)


def _sample(container: Any) -> list[Any]:
    if type(container) is dict:
        items: Iterable[Any] = itertools.chain(
            itertools.islice(container.keys(), 0, None, STRIDE),
            itertools.islice(container.values(), 0, None, STRIDE),
        )
    else:
        items = container[::STRIDE]
    # Only objects of CPython's small-object allocator (512 bytes at most) live in its
    # arenas; a larger string has a block of its own and would only be memory held.
    return [v for v in items if type(v) in _SCALARS and sys.getsizeof(v) <= SMALL_OBJECT]


def keep_warm(keep: Any, single_arg: bool = False) -> None:
    """Keep a sample of the batch's large arguments' scalars (*keep*: ``(args, kwargs, ...)``,
    the columns ``workers.runner`` holds) in place of the last one. *single_arg*: each
    entry of *args* is its task's one argument (``wire.Batch.single_arg``).

    Batches of more than :data:`MAX_TASKS` tasks (tiny tasks by the thousand), and
    batches without a large container, are not sampled and leave the last sample as
    it is. The sample's estimated footprint (its containers' lengths times their
    sampled items' mean size) stays under :data:`KEEP_MAX_BYTES`.
    """
    args, kwargs = keep[0], keep[1]
    if len(args) > MAX_TASKS:
        return
    values = argument_values(args, kwargs, single_arg)
    sample: list[Any] = []
    budget = KEEP_MAX_BYTES
    for container in _containers(values):
        part = _sample(container)
        if not part:
            continue
        mean = sum(map(sys.getsizeof, part)) / len(part)
        budget -= int(len(container) * (mean + 8))  # the items' arenas, and their slots
        if budget < 0:
            break
        sample.extend(part)
    if sample:
        _kept[:] = sample  # (the previous sample goes now; a batch without one leaves it)


def kept() -> int:
    """How many objects the worker keeps now (for tests)."""
    return len(_kept)
