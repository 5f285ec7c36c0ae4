"""One warm loky pool per process, shared by calls from every thread."""

from __future__ import annotations

import os
import threading

import pytest

from picklepool import Parallel, delayed
from picklepool.executor import pool


def test_calls_from_three_threads_share_one_pool_of_two():
    before = len(pool.started)
    barrier = threading.Barrier(3)
    pids: list[int] = []
    errors: list[BaseException] = []

    def call():
        try:
            barrier.wait(30)
            pids.extend(Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(20)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(pids) == 60
    assert len(set(pids)) <= 2
    assert len(pool.started) - before <= 1  # one executor for the process, not one per thread


def test_a_call_with_other_settings_while_the_pool_is_busy_gets_its_own():
    shared, is_shared = pool.acquire(2, 300.0, None)
    try:
        other, other_shared = pool.acquire(2, 300.0, {"OMP_NUM_THREADS": "7"})
        assert other is not shared and not other_shared
        pool.release(other, other_shared)
        again, again_shared = pool.acquire(2, 300.0, None)
        assert again is shared and again_shared
        pool.release(again, again_shared)
    finally:
        pool.release(shared, is_shared)


def _meet_then_fail_or_block(folder: str, i: int) -> int:
    meet, never = os.path.join(folder, "meet"), os.path.join(folder, "never")
    if i == 0:
        with open(meet):  # waits for task 1 to be running
            pass
        raise ValueError("task 0 fails while task 1 runs")
    with open(meet, "w"):
        pass
    with open(never):  # nobody ever writes: blocks until the worker is killed
        pass
    return i


def test_tasks_left_running_by_a_failed_call_do_not_block_the_next_call(tmp_path):
    os.mkfifo(tmp_path / "meet")
    os.mkfifo(tmp_path / "never")
    with pytest.raises(ValueError, match="task 0 fails"):
        Parallel(n_jobs=2, batch_size=1)(
            delayed(_meet_then_fail_or_block)(str(tmp_path), i) for i in range(2)
        )
    # task 1 still blocks in its worker; a call that resizes the pool must not wait for it
    assert Parallel(n_jobs=3)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
