"""One warm loky pool per process, shared by calls from every thread."""

from __future__ import annotations

import os
import threading

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
