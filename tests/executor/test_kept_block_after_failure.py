"""A ``with Parallel() as p`` block goes on after a call that failed and stopped its pool.

A worker's crash, a task killed past its timeout and Ctrl-C stop the block's pool
(its error says "the pool is replaced on the next call"); the block's next call must
get a working pool, on every backend. It did on loky; on multiprocessing and threading
every later call of the block failed, told that the pool was closed as for a
generator read after its block ended. That message is for that case only.
Deterministic: no sleeps, no timed assertions.
"""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from picklepool import Parallel, TaskTimeoutError, WorkerCrashedError, delayed
from picklepool.executor.backends import ThreadingBackend
from picklepool.executor.mpbackend import MultiprocessingBackend

GENERATOR_MESSAGE = "a return_as='generator' read after its `with Parallel(...)` block ended"


def exit_at_two(x, crash):
    if crash and x == 2:
        os._exit(3)
    return x


def stuck_at_two(x, stuck):
    if stuck and x == 2:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # the interruption never lands
        signal.sigwait({signal.SIGUSR2})  # nothing sends it: the watchdog kills this worker
    return x


def calls_stopping_at_three(stop):
    """The calls of a call: Ctrl-C as the fourth is taken (a real one, not a task's own)."""
    for i in range(6):
        if stop and i == 3:
            raise KeyboardInterrupt
        yield delayed(abs)(-i)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_the_call_after_a_worker_crash_in_a_block_runs(backend):
    with Parallel(n_jobs=2, backend=backend, batch_size=1) as p:
        assert p(delayed(exit_at_two)(i, False) for i in range(6)) == list(range(6))
        with pytest.raises(WorkerCrashedError, match=r"task 2: exit_at_two\(2, True\).*EXIT\(3\)"):
            p(delayed(exit_at_two)(i, True) for i in range(6))
        assert p(delayed(exit_at_two)(i, False) for i in range(6)) == list(range(6))
        assert p(delayed(exit_at_two)(i, False) for i in range(4)) == list(range(4))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_the_call_after_a_task_killed_past_its_timeout_in_a_block_runs(backend):
    killed = r"task 2: stuck_at_two\(2, True\).*its worker \(pid \d+\) was killed.*replaced on the next call"
    with Parallel(n_jobs=2, backend=backend, batch_size=1, timeout=0.5) as p:
        with pytest.raises(TaskTimeoutError, match=killed):
            p(delayed(stuck_at_two)(i, True) for i in range(6))
        assert p(delayed(stuck_at_two)(i, False) for i in range(6)) == list(range(6))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["loky", "multiprocessing", "threading"])
def test_the_call_after_a_ctrl_c_in_a_block_runs(backend):
    with Parallel(n_jobs=2, backend=backend, batch_size=1) as p:
        with pytest.raises(KeyboardInterrupt):
            p(calls_stopping_at_three(True))
        assert p(calls_stopping_at_three(False)) == list(range(6))
        assert p(calls_stopping_at_three(False)) == list(range(6))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_a_stopped_multiprocessing_pool_says_why_a_batch_is_refused():
    # Stopped by a failure of the call (shutdown): the call's later batches are refused,
    # saying so; the next call (refresh) starts a new pool. Only a released backend (its
    # call or block ended) speaks of a generator read after its block.
    backend = MultiprocessingBackend(2, multiprocessing.get_context("fork"))
    try:
        assert backend.submit(abs, -1).result(timeout=30) == 1
        backend.shutdown(kill=True)
        with pytest.raises(RuntimeError, match="stopped during the call") as stopped:
            backend.submit(abs, -2)
        assert GENERATOR_MESSAGE not in str(stopped.value)
        assert "the next call starts a new pool" in str(stopped.value)
        backend.refresh()
        assert backend.submit(abs, -3).result(timeout=30) == 3
    finally:
        backend.release()
    with pytest.raises(RuntimeError, match="closed while the call still had tasks to send") as closed:
        backend.submit(abs, -4)
    assert GENERATOR_MESSAGE in str(closed.value)
    backend.refresh()  # (a released backend stays closed)
    with pytest.raises(RuntimeError, match="Consume the generator inside the block"):
        backend.submit(abs, -5)


def test_a_stopped_threading_pool_says_why_a_batch_is_refused():
    backend = ThreadingBackend(2)
    try:
        backend.shutdown(kill=True)  # Ctrl-C
        with pytest.raises(RuntimeError, match=r"shut down during the call \(Ctrl-C\)") as stopped:
            backend.submit(abs, -2)
        assert GENERATOR_MESSAGE not in str(stopped.value)
        backend.refresh()
        assert backend.submit(abs, -3).result(timeout=30) == 3
    finally:
        backend.release()
    with pytest.raises(RuntimeError, match="Consume the generator inside the block") as closed:
        backend.submit(abs, -4)
    assert GENERATOR_MESSAGE in str(closed.value)
    backend.refresh()
    with pytest.raises(RuntimeError, match="Consume the generator inside the block"):
        backend.submit(abs, -5)


@pytest.mark.parametrize("backend", ["multiprocessing", "threading"])
def test_a_generator_read_after_its_block_ended_still_gets_its_results(backend):
    # (the block's pool stays open for the generator it returned, until that ends)
    with Parallel(n_jobs=2, backend=backend, return_as="generator", batch_size=1, pre_dispatch=2) as p:
        gen = p(delayed(abs)(-i) for i in range(8))
        assert next(gen) == 0
    assert list(gen) == list(range(1, 8))
