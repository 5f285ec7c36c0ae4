"""How many tasks go in one batch.

``batch_size="auto"`` aims for batches that take ``TARGET_SECONDS`` of worker time,
measured in the workers themselves (so pickling and transport do not skew it).
The first batch holds one task; sizes then at most double from batch to batch
(``GROWTH``), so a slow task is never swept into a huge batch on a guess, and
tiny tasks (a few microseconds) reach thousands per batch within a dozen
batches. A backend whose every batch costs a network round trip (dask: ~10 ms,
against ~0.2 ms for local workers) grows them faster (``Backend.batch_growth``),
since each doubling there costs a round trip in the call's critical path.

Once the end of the tasks is in sight (their number is known, or a generator's pull
came up short: ``executor.dispatch``, which holds each pull of a generator until the
next one, ``looks_ahead``, so that the one before the end is still in hand), no batch
takes more than a quarter of a worker's share of the tasks left (``SHARES``), as joblib
splits the last slice it pulls finer: a batch sized while tasks were cheap cannot then
sweep the last, costly ones onto one worker while the others idle. Nor is one cut below ``MIN_SECONDS`` of
estimated work (a twentieth of a full batch): cut down to one task, the last 3,600 of
100,000 tasks of a microsecond went out in about 50 batches, where a few balance them as
well, and the call took 38 ms instead of 29. A batch that took longer than the estimate
shrinks the next ones at once (``record``).

An explicit ``batch_size=k`` (``FixedBatcher``) is joblib's rule: pulls of k per worker,
sent k a batch while they come back full, the short pull at the end in smaller batches.
"""

from __future__ import annotations

import math

TARGET_SECONDS = 0.02
MAX_BATCH = 10_000
GROWTH = 2  # at most this many times the previous batch
SHARES = 4  # once the end is in sight: a batch holds at most 1/SHARES of a worker's share
MIN_SECONDS = TARGET_SECONDS / 20  # ... but no fewer tasks than this much work, as estimated


class AutoBatcher:
    """Sizes for ``batch_size="auto"``; *growth*: how many times the previous size a batch may be."""

    looks_ahead = True  # a generator's batch is sent once the next is pulled (executor.dispatch)
    exact = False  # a pull of a slow generator may be cut short (executor.dispatch.pull_until)
    splits = False  # a pull is one batch (the held ones shared out once the end is found)

    def __init__(self, n_workers: int, growth: int = GROWTH) -> None:
        self.n_workers = n_workers
        self.growth = growth
        self.per_task: float | None = None  # moving estimate of seconds per task
        self.last = 0

    def next_size(self, left: int | None = None) -> int:
        """The next batch's size; *left*: how many tasks remain to be sent, once known."""
        if self.per_task is None:
            size = 1
        else:
            per_task = max(self.per_task, 1e-9)
            size = int(max(1, min(TARGET_SECONDS / per_task, self.growth * self.last, MAX_BATCH)))
            if left is not None and self.n_workers > 1:  # (a lone worker runs them in order anyway)
                share = max(math.ceil(left / (SHARES * self.n_workers)), int(MIN_SECONDS / per_task))
                size = max(1, min(size, share))
        self.last = size
        return size

    def took(self, n_tasks: int) -> None:
        """The batch last sized holds only *n_tasks* (its pull was cut short): the next grows from that."""
        self.last = n_tasks

    def record(self, n_tasks: int, seconds: float) -> None:
        if n_tasks <= 0:
            return
        sample = seconds / n_tasks
        if self.per_task is None:
            self.per_task = sample
        else:  # weight recent batches more; a sudden slowdown shrinks batches fast
            self.per_task = max(sample, 0.5 * self.per_task + 0.5 * sample)


class FixedBatcher:
    """Sizes for an explicit ``batch_size=k``: joblib's rule (its ``Parallel.dispatch_one_batch``).

    Items are pulled k per worker at a time (:meth:`next_size`), and each pull goes out in
    batches of the size :meth:`split` gives: a full pull as one batch of k per worker; a pull
    that comes up short (the end of the tasks: a list's last slice, or all that a generator
    still gave) in batches of a tenth of a worker's share of it, at least one task each
    (with ``pre_dispatch="all"``, of a worker's share: joblib divides its pre-dispatched
    slice so). The last tasks are then spread over the workers, not left in one batch of up
    to k on one of them while the others idle. A lone worker takes each pull whole: it runs
    the tasks in order anyway. ``batch_size=1`` pulls one item at a time, as before: its
    batches cannot be split finer, and pulling ahead would only hold a slow generator's
    first task back until the next item came (joblib pulls ``n_jobs`` items at a time).
    """

    looks_ahead = False  # a pull goes out as soon as it is pulled: joblib's
    exact = True  # ... however long the caller's generator takes to give it (never cut short)
    splits = True  # executor.dispatch sends each pull in batches of split()'s size

    def __init__(self, size: int, n_workers: int = 1, all_at_once: bool = False) -> None:
        self.size = size
        # batch_size=1 pulls one item at a time: there is nothing to split (see above)
        self.n_workers = 1 if size == 1 else max(1, n_workers)
        # the shares a short pull is divided in: joblib's 10 * n_jobs at the end of the
        # caller's iterable, n_jobs where pre_dispatch="all" (a slice it pre-dispatched)
        self.short_shares = self.n_workers if all_at_once else 10 * self.n_workers

    def next_size(self, left: int | None = None) -> int:
        """How many items the next pull takes (*left*, the tasks still to send, has no say:
        joblib's pulls do not know it)."""
        return self.size * self.n_workers

    def split(self, pulled: int, short: bool) -> int:
        """The size of the batches a pull of *pulled* items goes out in (the last may hold
        fewer); *short*: it held fewer than :meth:`next_size`, the end of the tasks."""
        if self.n_workers == 1:
            return self.size
        return max(1, pulled // (self.short_shares if short else self.n_workers))

    def took(self, n_tasks: int) -> None:
        pass

    def record(self, n_tasks: int, seconds: float) -> None:
        pass
