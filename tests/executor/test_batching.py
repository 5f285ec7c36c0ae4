"""batch_size="auto": sizes start at one task and grow by at most the backend's factor;
once the end of the tasks is in sight, no batch takes more than a quarter of a worker's
share of what is left, so costly last tasks are not swept onto one worker."""

from __future__ import annotations

import math

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.executor import dispatch, parallel
from picklepool.executor.backend import Backend
from picklepool.executor.batching import MIN_SECONDS, SHARES, TARGET_SECONDS, AutoBatcher


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


def test_the_last_items_of_a_generator_keep_a_fixed_batch_size(sent):
    # an explicit batch_size is the caller's choice: the last pull goes out whole, as before
    out = Parallel(n_jobs=2, batch_size=40)(delayed(square)(x) for x in range(100))
    assert out == [x * x for x in range(100)]
    assert sent == [40, 40, 20]


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
