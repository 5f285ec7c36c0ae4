"""An explicit batch_size larger than the tasks per worker: how the last tasks are spread.

What it measures: the median wall time of a warm call of 20 tasks of 50 ms (``time.sleep``)
with ``n_jobs=4, batch_size=16``, for picklepool's ``Parallel`` (the one on ``PYTHONPATH``:
give two source trees to compare two versions) and joblib's, each in a process of its own,
one after the other. With batches of k to the end the 20 tasks ran as batches of 16 and 4
on two workers (0.8 s); joblib's rule spreads a short last pull over the workers. Not run
in CI: a measurement, not a test.

    python benchmarks/batch_tail.py [--calls 5] [--src OLD_SRC --src NEW_SRC]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

N_TASKS, N_JOBS, BATCH_SIZE, SECONDS = 20, 4, 16, 0.05


def measure(impl: str, calls: int) -> list[float]:
    """*calls* timed calls on warm workers (one untimed call first starts them)."""
    if impl == "joblib":
        from joblib import Parallel, delayed
    else:
        from picklepool import Parallel, delayed  # type: ignore[assignment]
    times = []
    with Parallel(n_jobs=N_JOBS, batch_size=BATCH_SIZE) as p:
        for i in range(calls + 1):
            began = time.perf_counter()
            p(delayed(time.sleep)(SECONDS) for _ in range(N_TASKS))
            if i:
                times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5, help="timed calls per implementation (5)")
    parser.add_argument("--src", action="append", default=[], help="a picklepool source tree (repeatable)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child: measure this implementation
    args = parser.parse_args()
    if args.one:
        print(" ".join(f"{t:.3f}" for t in measure(args.one, args.calls)))
        return
    runs = [(f"picklepool {src}", src) for src in args.src] or [("picklepool", None)]
    runs.append(("joblib", None))
    for name, src in runs:
        env = dict(os.environ)
        if src is not None:
            env["PYTHONPATH"] = src
        impl = "joblib" if name == "joblib" else "picklepool"
        cmd = [sys.executable, __file__, "--one", impl, "--calls", str(args.calls)]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.split()
        times = [float(t) for t in out]
        spread = f"{min(times):.3f}-{max(times):.3f}"
        print(f"{name}: median {statistics.median(times):.3f} s of {len(times)} ({spread})")


if __name__ == "__main__":
    main()
