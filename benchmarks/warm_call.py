"""A warm one-task call, three ways: back to back, after a garbage collection, interleaved.

What it measures: the median wall time of a one-task call (``square(3)``) on warm
workers, for picklepool's ``Parallel``, ``multiprocessing.Pool.map`` and
``ProcessPoolExecutor.map``, each 2 workers, three ways:

- ``plain``: calls of one implementation back to back (its code stays in the CPU caches);
- ``gc``: ``gc.collect()`` before each call, as ``picklepool bench`` does before every
  timed call (a collection walks every object of the process and evicts the call's
  code and data from the caches);
- ``interleaved+gc``: the implementations in turn, a collection before each, as the
  bench's ``warm_latency`` row.

numpy and joblib are imported first, so the collections walk a process of about the
bench's size. Not run in CI: a measurement, not a test.

    python benchmarks/warm_call.py [--calls 300]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import Pool
from typing import Any

import picklepool
from picklepool.bench.tasks import square


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per implementation and way (300)")
    calls = parser.parse_args().calls
    try:  # a process of the bench's size
        import joblib  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        pass
    with Pool(2) as pool, ProcessPoolExecutor(2) as ppe:
        impls: dict[str, Callable[[], Any]] = {
            "picklepool": lambda: picklepool.Parallel(n_jobs=2)(picklepool.delayed(square)(x) for x in [3]),
            "mp.Pool": lambda: pool.map(square, [3]),
            "cf.PPE": lambda: list(ppe.map(square, [3])),
        }
        for call in impls.values():
            for _ in range(20):
                assert call() == [9]
        for way in ("plain", "gc", "interleaved+gc"):
            times: dict[str, list[float]] = {name: [] for name in impls}
            if way == "interleaved+gc":
                for _ in range(calls):
                    for name, call in impls.items():
                        gc.collect()
                        start = time.perf_counter()
                        call()
                        times[name].append(time.perf_counter() - start)
            else:
                for name, call in impls.items():
                    for _ in range(calls):
                        if way == "gc":
                            gc.collect()
                        start = time.perf_counter()
                        call()
                        times[name].append(time.perf_counter() - start)
            cells = "  ".join(f"{name} {statistics.median(t) * 1e3:.3f} ms" for name, t in times.items())
            print(f"{way:15} {cells}")


if __name__ == "__main__":
    main()
