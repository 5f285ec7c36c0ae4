"""How many tasks go in one batch.

``batch_size="auto"`` aims for batches that take ``TARGET_SECONDS`` of worker time,
measured in the workers themselves (so pickling and transport do not skew it).
The first batch holds one task; sizes then at most double from batch to batch
(``GROWTH``), so a slow task is never swept into a huge batch on a guess, and
tiny tasks (a few microseconds) reach thousands per batch within a dozen
batches. A backend whose every batch costs a network round trip (dask: ~10 ms,
against ~0.2 ms for local workers) grows them faster (``Backend.batch_growth``),
since each doubling there costs a round trip in the call's critical path. When the number
of tasks is known, no batch takes more than a quarter of a worker's share, so
the tail of the call stays balanced.
"""

from __future__ import annotations

import math

TARGET_SECONDS = 0.02
MAX_BATCH = 10_000
GROWTH = 2  # at most this many times the previous batch


class AutoBatcher:
    """Sizes for ``batch_size="auto"``; *growth*: how many times the previous size a batch may be."""

    def __init__(self, n_workers: int, total: int | None = None, growth: int = GROWTH) -> None:
        self.n_workers = n_workers
        self.total = total
        self.growth = growth
        self.per_task: float | None = None  # moving estimate of seconds per task
        self.last = 0

    def next_size(self, dispatched: int) -> int:
        if self.per_task is None:
            size = 1
        else:
            ideal = TARGET_SECONDS / max(self.per_task, 1e-9)
            size = int(max(1, min(ideal, self.growth * self.last, MAX_BATCH)))
        if self.total is not None:
            share = math.ceil((self.total - dispatched) / (4 * self.n_workers))
            size = max(1, min(size, share))
        self.last = size
        return size

    def record(self, n_tasks: int, seconds: float) -> None:
        if n_tasks <= 0:
            return
        sample = seconds / n_tasks
        if self.per_task is None:
            self.per_task = sample
        else:  # weight recent batches more; a sudden slowdown shrinks batches fast
            self.per_task = max(sample, 0.5 * self.per_task + 0.5 * sample)


class FixedBatcher:
    def __init__(self, size: int) -> None:
        self.size = size

    def next_size(self, dispatched: int) -> int:
        return self.size

    def record(self, n_tasks: int, seconds: float) -> None:
        pass
