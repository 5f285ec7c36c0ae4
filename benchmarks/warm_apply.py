"""A warm one-task call against ``multiprocessing.Pool(2).apply``, in one process, in turn.

What it measures: per round, the mean wall time of *block* one-task calls
(``Parallel(n_jobs=2)([delayed(f)(1)])``, ``f`` a function of this script) and of as many
``pool.apply(f, (1,))``, back to back; then the calling thread's CPU time per picklepool
call with the lane's spin off (``executor.lanes.SPIN = 0``: the parent's own work, which
a loaded host stretches, without the wait). Prints the medians over the rounds as JSON.
Run it in turn on two checkouts to compare them. Not run in CI: a measurement, not a test.

    PYTHONPATH=src python benchmarks/warm_apply.py [ROUNDS [BLOCK]]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from multiprocessing import Pool

import picklepool.executor.lanes as lanes
from picklepool import Parallel, delayed


def f(x: int) -> int:
    return x


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    block = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    with Pool(2) as pool:
        for _ in range(300):
            Parallel(n_jobs=2)([delayed(f)(1)])
            pool.apply(f, (1,))
        ours: list[float] = []
        theirs: list[float] = []
        cpu: list[float] = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(block):
                Parallel(n_jobs=2)([delayed(f)(1)])
            ours.append((time.perf_counter() - start) / block * 1e6)
            start = time.perf_counter()
            for _ in range(block):
                pool.apply(f, (1,))
            theirs.append((time.perf_counter() - start) / block * 1e6)
            spin, lanes.SPIN = lanes.SPIN, 0.0
            start = time.thread_time()
            for _ in range(block):
                Parallel(n_jobs=2)([delayed(f)(1)])
            cpu.append((time.thread_time() - start) / block * 1e6)
            lanes.SPIN = spin
    print(
        json.dumps(
            {
                "picklepool_us": round(statistics.median(ours)),
                "mp_pool_us": round(statistics.median(theirs)),
                "ratio": round(statistics.median(a / b for a, b in zip(ours, theirs, strict=True)), 2),
                "parent_cpu_us": round(statistics.median(cpu)),
            }
        )
    )


if __name__ == "__main__":
    main()
