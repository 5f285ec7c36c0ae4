"""backend="multiprocessing" and multiprocessing contexts, on picklepool's batch runner."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from picklepool import Parallel, WorkerCrashedError, delayed

SETTING = "imported"


def _read_setting(_i):
    return SETTING


def _fail(i):
    if i == 3:
        raise KeyError(f"bad {i}")
    return i


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_fork_keeps_globals_set_at_run_time():
    globals()["SETTING"] = "changed at run time"
    try:
        out = Parallel(n_jobs=2, backend=multiprocessing.get_context("fork"))(
            delayed(_read_setting)(i) for i in range(4)
        )
    finally:
        globals()["SETTING"] = "imported"
    assert out == ["changed at run time"] * 4


@pytest.mark.parametrize("backend", ["multiprocessing", multiprocessing.get_context("spawn")])
def test_results_errors_and_pids(backend):
    assert Parallel(n_jobs=2, backend=backend)(delayed(pow)(i, 2) for i in range(6)) == [0, 1, 4, 9, 16, 25]
    pids = Parallel(n_jobs=2, backend=backend)(delayed(os.getpid)() for _ in range(4))
    assert os.getpid() not in pids
    with pytest.raises(KeyError, match="bad 3"):
        Parallel(n_jobs=2, backend=backend)(delayed(_fail)(i) for i in range(6))


def test_with_block_keeps_one_pool():
    with Parallel(n_jobs=2, backend="multiprocessing") as p:
        assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
        assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def exit_at_two(x):
    if x == 2:
        os._exit(7)
    return x


@pytest.mark.timeout(60)
def test_a_worker_that_dies_fails_the_call_naming_its_task():
    with pytest.raises(WorkerCrashedError, match=r"task 2: exit_at_two\(2\).*exit code 7"):
        Parallel(2, backend="multiprocessing", batch_size=1)(delayed(exit_at_two)(i) for i in range(6))
    assert Parallel(2, backend="multiprocessing")(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
