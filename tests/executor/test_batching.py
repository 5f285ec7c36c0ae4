"""batch_size="auto": sizes start at one task and grow by at most the backend's factor."""

from __future__ import annotations

from picklepool.executor.backend import Backend
from picklepool.executor.batching import TARGET_SECONDS, AutoBatcher


def sizes(batcher: AutoBatcher, n: int, seconds_per_task: float) -> list[int]:
    out, done = [], 0
    for _ in range(n):
        size = batcher.next_size(done)
        out.append(size)
        batcher.record(size, size * seconds_per_task)
        done += size
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
