"""batch_size="auto": sizes start at one task and grow by at most the backend's factor;
once the end of the tasks is in sight, no batch takes more than a quarter of a worker's
share of what is left, so costly last tasks are not swept onto one worker. An explicit
batch_size=k: k tasks a batch, the last pull shared out finer over the workers (joblib's)."""

from __future__ import annotations

import math
import os

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.executor import dispatch, parallel
from picklepool.executor.backend import Backend
from picklepool.executor.batching import MIN_SECONDS, SHARES, TARGET_SECONDS, AutoBatcher, FixedBatcher


def sizes(batcher: AutoBatcher, n: int, seconds_per_task: float) -> list[int]:
    out = []
    for _ in range(n):
        size = batcher.next_size()
        out.append(size)
        batcher.record(size, size * seconds_per_task)
    return out


def test_tiny_tasks_double_from_one():
    assert sizes(AutoBatcher(2), 6, 1e-6) == [1, 2, 4, 8, 16, 32]


def test_a_backend_with_costly_round_trips_grows_faster_up_to_the_target():
    assert sizes(AutoBatcher(2, growth=8), 4, 1e-6) == [1, 8, 64, 512]
    per_task = TARGET_SECONDS / 100  # 100 tasks fill a batch's target time
    assert sizes(AutoBatcher(2, growth=8), 4, per_task) == [1, 8, 64, 100]


def test_dask_declares_a_faster_growth_than_local_workers():
    from picklepool.executor.dask import DaskBackend

    assert Backend.batch_growth == 2
    assert DaskBackend.batch_growth == 8


def test_a_batch_that_ran_long_shrinks_the_next_at_once():
    batcher = AutoBatcher(2)
    sizes(batcher, 8, 1e-4)  # cheap tasks: 128 a batch
    batcher.record(128, 128 * 0.1)  # then a batch of costly ones
    assert batcher.next_size() == 1


def test_the_tasks_left_cap_a_batch_only_among_several_workers():
    batcher = AutoBatcher(2)
    sizes(batcher, 12, MIN_SECONDS)  # tasks of a millisecond: 20 a batch
    assert batcher.next_size(80) == math.ceil(80 / (SHARES * 2))
    assert batcher.next_size(3) == 1
    lone = AutoBatcher(1)
    sizes(lone, 12, MIN_SECONDS)
    assert lone.next_size(80) == 20  # one worker runs them in order anyway


def test_the_tasks_left_are_not_cut_below_a_millisecond_of_work():
    # the last 3,617 of 100,000 tasks of a microsecond: 4 batches, not 50 that each cost
    # more in its round trip than it balances
    batcher = AutoBatcher(2)
    sizes(batcher, 16, 1e-6)
    assert batcher.next_size(3617) == 1000


class Measured(AutoBatcher):
    """As after tasks of a millisecond (20 a batch; the tasks left are cut down to one),
    and never measured again: the sizes do not depend on timing."""

    def __init__(self, n_workers: int, growth: int = 2) -> None:
        super().__init__(n_workers, growth=growth)
        self.per_task = MIN_SECONDS

    def record(self, n_tasks: int, seconds: float) -> None:
        pass


@pytest.fixture
def sent(monkeypatch):
    """The sizes of the batches Parallel sends, in order, sized by :class:`Measured`."""
    out: list[int] = []
    submit = dispatch.Call._submit
    monkeypatch.setattr(parallel, "AutoBatcher", Measured)

    def counted(self, items, seq, first):
        out.append(len(items))
        return submit(self, items, seq, first)

    monkeypatch.setattr(dispatch.Call, "_submit", counted)
    return out


def square(x):
    return x * x


def over_a_fair_share(sizes: list[int], n_tasks: int, n_workers: int, unit: int = 1) -> list[tuple[int, int]]:
    """(size, tasks left) of the batches that hold more than a quarter of a worker's share
    of the tasks left when they were sent (or more than one *unit*, a chunk of a map)."""
    out, left = [], n_tasks
    for size in sizes:
        if size > max(unit, math.ceil(left / (SHARES * n_workers))):
            out.append((size, left))
        left -= size
    return out


@pytest.mark.parametrize("return_as", ["list", "generator", "generator_unordered"])
def test_the_last_items_of_a_generator_go_out_in_fair_shares(sent, return_as):
    # pulls of 1, 2, 4, 8, 16, 20, 20, 20 tasks (91), then one of 20 meets the end after
    # 19: those and the pull before, held until then, are what is left (39), and must not
    # go to one worker in one batch
    out = Parallel(n_jobs=2, return_as=return_as)(delayed(square)(x) for x in range(110))
    assert sorted(out) == [x * x for x in range(110)]
    assert sent[:7] == [1, 2, 4, 8, 16, 20, 20]
    assert sent[7:] == [5, 5, 4, 4, 2, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert over_a_fair_share(sent[7:], 39, 2) == []


@pytest.mark.parametrize("return_as", ["list", "generator", "generator_unordered"])
def test_the_last_items_of_a_list_go_out_in_fair_shares(sent, return_as):
    out = Parallel(n_jobs=2, return_as=return_as)([delayed(square)(x) for x in range(110)])
    assert sorted(out) == [x * x for x in range(110)]
    assert sum(sent) == 110
    assert over_a_fair_share(sent, 110, 2) == []


def test_a_generator_that_ends_with_a_full_pull_shares_it_out_too(sent):
    # pulls of 1, 2, 4, 8, 16, 20, 20, 20, 20 tasks (111): the end is found by the next
    # pull, empty; the last full pull was held until then
    assert Parallel(n_jobs=2)(delayed(square)(x) for x in range(111)) == [x * x for x in range(111)]
    assert sent[:8] == [1, 2, 4, 8, 16, 20, 20, 20]
    assert sent[8:] == [3, 3, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert over_a_fair_share(sent[8:], 20, 2) == []


def test_the_last_items_of_a_generator_that_raises_run_before_its_error(sent):
    def tasks():
        yield from (delayed(square)(x) for x in range(110))
        raise ValueError("the generator broke")

    with pytest.raises(ValueError, match="the generator broke"):
        Parallel(n_jobs=2)(tasks())
    assert sum(sent) == 110
    assert over_a_fair_share(sent[7:], 39, 2) == []


def test_executor_map_sends_the_last_of_its_chunks_in_fair_shares(tmp_path):
    from tests.executor.test_futures import busy

    with Executor(max_workers=2) as ex:
        ex._max_inflight = 1  # the busy batch fills the pool: the map's chunks queue behind it
        fut, gate = busy(ex, tmp_path)
        ex._batcher = Measured(2)
        ex._batcher.last = 20  # as after many batches: 20 calls a batch
        out: list[int] = []
        send = ex._channel.send
        ex._channel.send = lambda items, first, column=None, **kw: (
            out.append(len(items)) or send(items, first, column, **kw)
        )
        # chunks of two (chunksize=1: single calls, which a worker gives back when a
        # long one keeps them waiting, workers.handback)
        results = ex.map(square, range(40), chunksize=2)
        gate.open()
        assert fut.result() == "released"
        assert list(results) == [x * x for x in range(40)]
    assert sum(out) == 40
    assert out[0] == 4  # two chunks: a third would pass 40 / (4 * 2) calls
    assert over_a_fair_share(out, 40, 2, unit=2) == []


# -- an explicit batch_size=k: joblib's rule --------------------------------------------------
# Pulls of k per worker; a full pull goes out as a batch of k per worker, a short one (the end
# of the tasks) in batches of len // (10 * n_jobs) tasks, at least one (pre_dispatch="all":
# len // n_jobs). Each expected list below is also what joblib 1.6 sends (its BatchedCalls'
# sizes) for the same call, except where its first pre_dispatch slice of *tasks* is cut
# (pre_dispatch="2*n_jobs": its first batches hold 2 tasks); picklepool's pre_dispatch counts
# batches.


def test_a_fixed_batcher_pulls_k_per_worker_and_splits_a_short_pull_finer():
    batcher = FixedBatcher(16, 4)
    assert batcher.next_size() == batcher.next_size(20) == 64  # the tasks left have no say
    assert batcher.split(64, short=False) == 16
    assert batcher.split(20, short=True) == 1  # 20 // 40, at least one
    assert batcher.split(100, short=True) == 2  # 100 // 40
    assert FixedBatcher(16, 4, all_at_once=True).split(20, short=True) == 5  # 20 // 4
    lone = FixedBatcher(16, 1)  # one worker: the pull whole, k tasks a batch
    assert (lone.next_size(), lone.split(5, short=True)) == (16, 16)
    ones = FixedBatcher(1, 4)  # batch_size=1: an item a pull (nothing to split; joblib pulls 4)
    assert (ones.next_size(), ones.split(1, short=True)) == (1, 1)


@pytest.mark.parametrize("kind", ["list", "generator"])
@pytest.mark.parametrize(
    ("n_tasks", "n_jobs", "k", "pre_dispatch", "expected"),
    [
        (20, 4, 16, "2*n_jobs", [1] * 20),  # the README's case: it ran as 16 + 4 on two workers
        (40, 2, 16, "2*n_jobs", [16, 16] + [1] * 8),
        (100, 2, 40, "2*n_jobs", [40, 40] + [1] * 20),  # the last 20 went out whole before
        (60, 2, 10, "2*n_jobs", [10] * 6),  # a multiple of k * n_jobs: every batch k
        (150, 2, 100, "2*n_jobs", [7] * 21 + [3]),  # 150 // 20 = 7 a batch
        (100, 4, 16, "all", [16] * 4 + [9] * 4),  # joblib's, to the task
        (7, 2, 3, "all", [3, 3, 1]),  # joblib's, to the task
    ],
)
def test_a_fixed_batch_size_sends_k_a_batch_then_shares_the_last_pull_out(
    sent, kind, n_tasks, n_jobs, k, pre_dispatch, expected
):
    tasks = [delayed(square)(x) for x in range(n_tasks)]
    out = Parallel(n_jobs=n_jobs, batch_size=k, pre_dispatch=pre_dispatch)(
        tasks if kind == "list" else iter(tasks)
    )
    assert out == [x * x for x in range(n_tasks)]
    assert sent == expected


def pid_or_meet(fifo, x):
    """This worker's pid; tasks 10 and 11 first wait for each other (each open of the FIFO
    waits for the other side's): they cannot both return if one batch holds them both."""
    if x >= 10:
        with open(fifo, "r" if x == 10 else "w"):
            pass
    return os.getpid()


@pytest.mark.parametrize("kind", ["list", "generator"])
def test_the_last_tasks_of_a_fixed_batch_size_run_at_once_on_several_workers(tmp_path, kind):
    # 12 tasks, batch_size=8, two workers: the first pull (of 16) comes up short, so it goes
    # out a task a batch, and the last two tasks run at the same time on the two workers.
    # Before, batches of 8 and 4: tasks 8-11 in one batch, one after the other on one
    # worker (task 10 would wait for ever for task 11).
    fifo = str(tmp_path / "meet")
    os.mkfifo(fifo)
    tasks = [delayed(pid_or_meet)(fifo, x) for x in range(12)]
    pids = Parallel(n_jobs=2, batch_size=8)(tasks if kind == "list" else iter(tasks))
    assert pids[10] != pids[11]
