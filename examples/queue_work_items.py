"""A queue of work items, sent to the workers as it is.

The seed's second scenario fills a ``queue.Queue`` under an RLock, then empties
it into a list to pickle the list, and builds a new queue and a new lock on the
other side: plain ``pickle`` refuses both (``cannot pickle '_thread.lock'``).

With picklepool the queue and the lock are ordinary arguments. The default
``hybrid`` pickler copies the queue's items (in order, with its maxsize and
unfinished-task count) while holding the queue's own mutex, and each worker gets
a working Queue with fresh locks and conditions. The parent's queue is left as
it was: draining a copy in a worker does not touch it.

Run: ``python examples/queue_work_items.py``
"""

from __future__ import annotations

import queue
import threading

from picklepool import Parallel, delayed


def add_data(item: dict, work: queue.Queue, lock: threading.RLock) -> None:
    with lock:
        work.put(item)


def process_shard(
    work: queue.Queue, lock: threading.RLock, shard: int, n_shards: int
) -> tuple[int, list[int]]:
    """In a worker: drain this copy of the queue and handle the items of one shard."""
    done = []
    while True:
        with lock:
            try:
                item = work.get_nowait()
            except queue.Empty:
                break
        if item["id"] % n_shards == shard:
            done.append(item["id"] ** 2)
        work.task_done()
    return shard, done


def main() -> None:
    work: queue.Queue = queue.Queue(maxsize=100)
    lock = threading.RLock()
    for i in range(12):
        add_data({"id": i}, work, lock)

    results = Parallel(n_jobs=2)(delayed(process_shard)(work, lock, shard, 3) for shard in range(3))
    for shard, done in results:
        print(f"shard {shard}: {done}")
        assert done == sorted(done), "items arrived out of order"
    assert sorted(x for _, done in results for x in done) == [i * i for i in range(12)]
    print(f"parent's queue untouched: {work.qsize()} items, {work.unfinished_tasks} unfinished")
    assert work.qsize() == 12


if __name__ == "__main__":
    main()
