"""A done-callback that waits for another future of its own Executor fails at once.

Callbacks run in the executor's manager thread, the thread that completes its futures
(as in the standard library's ``ProcessPoolExecutor``, which hangs there for ever): a
``result()`` (or ``exception()``, a ``map`` read to its end, ``concurrent.futures.wait``
or ``as_completed``) in a callback waited
for itself, for ever, and the ``with`` block's ``shutdown`` then hung too. Code moved
from a ``ThreadPoolExecutor`` (whose callbacks run in a worker thread, where such a
wait works) does this. Deterministic: events, no sleeps.
"""

from __future__ import annotations

import threading
from concurrent import futures

import pytest

from picklepool import Executor


def square(x):
    return x * x


def wait_in_callback(ex, wait):
    """Run ``wait(ex)`` in a done-callback of *ex*'s first future; return what it gave or raised."""
    outcome = {}
    done = threading.Event()

    def callback(_f):
        try:
            outcome["value"] = wait(ex)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc
        done.set()

    ex.submit(square, 2).add_done_callback(callback)
    assert done.wait(60), "the done-callback's wait never ended"
    return outcome


@pytest.mark.parametrize(
    "wait",
    [
        pytest.param(lambda ex: ex.submit(square, 3).result(), id="result"),
        pytest.param(lambda ex: ex.submit(square, 3).exception(), id="exception"),
        pytest.param(lambda ex: list(ex.map(square, [3, 4])), id="map"),
        pytest.param(lambda ex: list(ex.map(square, [3, 4], chunksize=2)), id="map-chunks"),
        # concurrent.futures' own waits (a waiter added to the future) hung there too
        pytest.param(lambda ex: futures.wait([ex.submit(square, 3)]), id="wait"),
        pytest.param(lambda ex: futures.wait([ex.submit(square, 3)], timeout=600), id="wait-timeout"),
        pytest.param(
            lambda ex: [f.result() for f in futures.as_completed([ex.submit(square, 3)])], id="as_completed"
        ),
    ],
)
def test_waiting_for_its_own_executor_in_a_callback_raises_naming_the_task(wait):
    with Executor(max_workers=2) as ex:
        outcome = wait_in_callback(ex, wait)
        error = outcome.get("error")
        assert isinstance(error, RuntimeError), outcome
        assert "task 1 (the 2nd call submitted to this Executor): " in str(error)
        assert "square(...)" in str(error)
        assert "done-callback" in str(error) and "wait for it in a thread of your own" in str(error)
        # the executor goes on: its next call, waited for in this thread, runs
        assert ex.submit(square, 5).result(timeout=60) == 25


@pytest.mark.parametrize(
    "wait",
    [
        pytest.param(lambda ex: ex.submit(square, 3).result(timeout=600), id="result"),
        pytest.param(lambda ex: list(ex.map(square, [3], timeout=600)), id="map"),
    ],
)
def test_a_wait_with_a_timeout_in_a_callback_times_out_at_once_saying_why(wait):
    # Its TimeoutError was certain (nothing completes the future meanwhile) and held every
    # other call of the executor for the whole timeout; now it comes at once, saying why.
    with Executor(max_workers=2) as ex:
        outcome = wait_in_callback(ex, wait)
        error = outcome.get("error")
        assert isinstance(error, TimeoutError), outcome
        assert "task 1 (the 2nd call submitted to this Executor): " in str(error)
        assert "timeout=600" in str(error) and "done-callback" in str(error)


def test_a_callback_may_wait_for_a_future_of_another_executor():
    with Executor(max_workers=1) as other, Executor(max_workers=1) as ex:
        outcome = wait_in_callback(ex, lambda _ex: other.submit(square, 3).result())
    assert outcome == {"value": 9}


def test_a_callback_may_read_a_done_future_and_chain_a_submission():
    with Executor(max_workers=2) as ex:
        chained = threading.Event()
        box = []

        def step(fut):
            box.append(fut.result())
            if len(box) < 3:
                ex.submit(square, fut.result()).add_done_callback(step)
            else:
                chained.set()

        ex.submit(square, 2).add_done_callback(step)
        assert chained.wait(60)
    assert box == [4, 16, 256]


def test_a_callback_may_wait_for_futures_already_done():
    # concurrent.futures.wait and as_completed on done futures of its own executor return
    with Executor(max_workers=2) as ex:
        first = ex.submit(square, 2)
        assert first.result(timeout=60) == 4
        outcome = wait_in_callback(
            ex,
            lambda _ex: (
                len(futures.wait([first]).done),
                [f.result() for f in futures.as_completed([first])],
            ),
        )
    assert outcome == {"value": (1, [4])}


def test_a_thread_holding_a_pending_future_does_not_hold_back_the_executors_other_calls():
    # future.result() holds the future's lock while it starts waiting: a finalizer the garbage
    # collector ran there, making a call of the same executor and waiting for it, waited for
    # ever (the manager thread waited for that lock to mark the future running or done, as
    # the standard library's executor does)
    with Executor(max_workers=2) as ex:
        fut = ex.submit(square, 3)
        with fut._condition:  # (what result() holds)
            assert ex.submit(square, 5).result(timeout=60) == 25
        assert fut.result(timeout=60) == 9
        done = ex.submit(square, 4)
        done.result(timeout=60)
        with done._condition:  # (held when the call is done: nothing waits for it)
            assert ex.submit(square, 6).result(timeout=60) == 36


def test_a_done_callback_runs_without_its_futures_lock():
    # (as the standard library runs them: another thread reading the future is not held back)
    read = []

    def from_another_thread(fut):
        reader = threading.Thread(target=lambda: read.append(fut.result()))
        reader.start()
        reader.join(timeout=60)

    with Executor(max_workers=1) as ex:
        fut = ex.submit(square, 4)
        fut.add_done_callback(from_another_thread)
        assert fut.result(timeout=60) == 16
    assert read == [16]
