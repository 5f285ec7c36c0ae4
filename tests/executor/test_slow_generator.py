"""A caller's generator slower than its tasks (reading a queue, a sensor, a paginated API):
each result comes out while the generator is still giving items, not once a batch is full
or the generator has ended (executor.dispatch.pull_until, Call.run)."""

from __future__ import annotations

import threading

import pytest

from picklepool import Parallel, delayed
from picklepool.executor import dispatch
from picklepool.executor.batching import AutoBatcher

ITEM_SECONDS = 0.06  # the generator's pace: three times dispatch.SLOW_PULL


def identity(x):
    return x


def slow_source(n, pace, received):
    """Items 0..n-1, one every *pace* s after the first two; notes how many results the
    caller had received when each item was asked for."""
    asked = []
    wait = threading.Event()  # never set: its wait is the source's own pace

    def gen():
        for i in range(n):
            asked.append(len(received))
            if i >= 2:
                wait.wait(pace)
            yield delayed(identity)(i)

    return gen(), asked


def test_a_pull_past_its_budget_comes_back_cut_with_what_it_has():
    wait = threading.Event()

    def gen():
        yield 0
        yield 1
        wait.wait(0.05)  # slower than the budget below
        yield 2
        yield 3

    it = gen()
    items, cut = dispatch.pull_until(it, 100, budget=0.01)
    assert (items, cut) == ([0, 1, 2], True)  # chunks of 1, then 2: the clock read between
    assert dispatch.pull_until(it, 100, budget=0.01) == ([3], False)  # the end: not cut


def test_a_fast_pull_with_a_budget_is_the_whole_batch_as_columns():
    calls = [delayed(identity)(i) for i in range(1000)]
    got, cut = dispatch.pull_until(iter(calls), 700, by_content=True, budget=10.0)
    assert not cut
    assert list(got.args) == list(range(700))  # one function's calls: a column of its x
    assert dispatch.pull(iter(calls), 700, by_content=True).args == got.args


def test_a_batch_cut_short_grows_from_what_it_held():
    batcher = AutoBatcher(2)
    for _ in range(6):
        size = batcher.next_size()
        batcher.record(size, size * 1e-6)
    assert batcher.next_size() == 64
    batcher.took(1)  # the pull gave one item in its budget
    assert batcher.next_size() == 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
@pytest.mark.parametrize("batch_size", ["auto", 1])
def test_results_come_out_while_a_slow_generator_runs(return_as, batch_size):
    n = 10
    received: list[int] = []
    source, asked = slow_source(n, ITEM_SECONDS, received)
    Parallel(n_jobs=2)(delayed(identity)(i) for i in range(2))  # warm workers
    for r in Parallel(n_jobs=2, return_as=return_as, batch_size=batch_size)(source):
        received.append(r)
    assert sorted(received) == list(range(n))
    # When item i is asked for, the results of all items but the last two before it are
    # out (it is one in practice). Before: "auto" held them until its growing batch was
    # full (the first result at item 8 of 10); batch_size=1, until pre_dispatch was.
    lags = [i - got for i, got in enumerate(asked)]
    assert max(lags[3:]) <= 2, lags


@pytest.mark.timeout(60)
def test_a_fast_generator_still_fills_its_batches():
    sent = []
    with Parallel(n_jobs=2) as parallel:
        parallel([delayed(identity)(0)])
        out = parallel(delayed(identity)(i) for i in range(20_000))
        sent = parallel.n_dispatched_batches
    assert out == list(range(20_000))
    assert sent < 200  # growing batches, not one per item
