"""Where a warm one-task call's time goes: the parent before and after, the worker between.

What it measures, per call of ``Parallel(n_jobs=2)([delayed(f)(1)])`` on warm workers
(medians over *calls* calls, microseconds):

- ``before_write``: the parent's work from the call to the write of the batch on the lane
  (settings, backend, the call's channel, the parent's state, the function's spec, the
  pickling);
- ``write``: that write (``workers.lane.send``);
- ``write_to_wait``: the parent's work between the write and the wait for the reply;
- ``wait``: the wait for the reply (the lane's spin, then ``poll``);
- ``after_reply``: the parent's work from the reply to the call's return (the reply
  read and unpickled, the pool given back, the channel closed);
- ``worker_batch``: the worker's own time for the batch, from the message read to the
  reply pickled (``workers.lane._answer``), measured in the workers;
- ``call``: the whole call.

The probes wrap module functions (a few tenths of a microsecond each). The worker's
figure is read back from the workers with a task. Not run in CI: a measurement, not a
test; run it in turn on two checkouts to compare them.

    PYTHONPATH=src python benchmarks/warm_phases.py [CALLS]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

import picklepool.executor.lanes as lanes
from picklepool import Parallel, delayed

_marks: dict[str, int] = {}


def f(x: int) -> int:
    return x


def _probe_worker() -> int:
    """In a worker: time each batch's ``_answer`` (kept in the module, read by _worker_times)."""
    import picklepool.workers.lane as lane

    if not hasattr(lane, "_bench_times"):
        times: list[int] = []
        answer = lane._answer

        def timed(data: bytes) -> Any:
            start = time.perf_counter_ns()
            try:
                return answer(data)
            finally:
                times.append(time.perf_counter_ns() - start)

        lane._bench_times = times  # type: ignore[attr-defined]
        lane._answer = timed
    return os.getpid()


def _worker_times() -> tuple[int, list[int]]:
    import picklepool.workers.lane as lane

    return os.getpid(), list(getattr(lane, "_bench_times", []))


def _probe_parent() -> None:
    send, spin, receive = lanes.send, lanes._spin, lanes.receive

    def timed_send(fd: int, data: bytes) -> None:
        _marks["write0"] = time.perf_counter_ns()
        send(fd, data)
        _marks["write1"] = time.perf_counter_ns()

    def timed_spin(*args: Any) -> Any:
        _marks["wait0"] = time.perf_counter_ns()
        return spin(*args)

    def timed_receive(fd: int) -> bytes:
        _marks["reply"] = time.perf_counter_ns()
        return receive(fd)

    lanes.send, lanes._spin, lanes.receive = timed_send, timed_spin, timed_receive


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    pids: set[int] = set()
    while len(pids) < 2:  # both workers probed (each takes some of the four tasks)
        pids |= set(Parallel(n_jobs=2)(delayed(_probe_worker)() for _ in range(4)))
    _probe_parent()
    for _ in range(300):
        Parallel(n_jobs=2)([delayed(f)(1)])
    skip = {pid: len(t) for pid, t in Parallel(n_jobs=2)(delayed(_worker_times)() for _ in range(4))}
    rows: list[tuple[int, ...]] = []
    for _ in range(calls):
        _marks.clear()
        start = time.perf_counter_ns()
        Parallel(n_jobs=2)([delayed(f)(1)])
        end = time.perf_counter_ns()
        m = _marks
        if len(m) == 4:  # (a call that went through the lane, read in the calling thread)
            rows.append(
                (
                    m["write0"] - start,
                    m["write1"] - m["write0"],
                    m["wait0"] - m["write1"],
                    m["reply"] - m["wait0"],
                    end - m["reply"],
                    end - start,
                )
            )
    after = dict(Parallel(n_jobs=2)(delayed(_worker_times)() for _ in range(4)))
    worker = [t for pid, times in after.items() for t in times[skip.get(pid, 0) :]]
    names = ("before_write", "write", "write_to_wait", "wait", "after_reply", "call")
    out = {name: round(statistics.median(r[k] for r in rows) / 1000, 1) for k, name in enumerate(names)}
    out["worker_batch"] = round(statistics.median(worker) / 1000, 1) if worker else None
    out["calls_measured"] = len(rows)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
