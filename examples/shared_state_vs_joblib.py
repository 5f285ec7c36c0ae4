"""One large value shared by many tasks: picklepool's SharedState against joblib.

What it measures: wall time of ``--tasks`` tasks (default 1,000) that each receive
the same ~``--mb`` MB value (default 50: a dict holding a float64 numpy array and
a Python list of floats) and return a scalar, with n_jobs=2, and the peak RSS of
each worker process while the call runs (psutil, sampled every few ms).

Against what: joblib (loky backend, its defaults: auto batching, arrays over 1 MB
memory-mapped) passing the plain value, in the same run, on warm workers. The
implementations are interleaved (joblib, picklepool, joblib, ...) and the median
of ``--repeat`` runs is reported, with the ratio of each pair.

    python examples/shared_state_vs_joblib.py                 # the full measurement
    python examples/shared_state_vs_joblib.py --touch         # all pages resident
    python examples/shared_state_vs_joblib.py --tasks 20 --mb 5 --repeat 1   # quick
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import threading
import time

import numpy as np
import psutil

from picklepool import Parallel, SharedState, delayed, shutdown


def make_value(mb: float) -> dict:
    """About *mb* MB pickled: 80% a float64 array, 20% a list of Python floats."""
    n_array = int(mb * 0.8e6 / 8)
    n_list = int(mb * 0.2e6 / 9)  # a pickled float takes 9 bytes
    rng = np.random.default_rng(0)
    return {"array": rng.random(n_array), "list": [float(i) for i in range(n_list)]}


def score(value: dict, i: int, touch_every: int) -> float:
    x = float(value["array"][i]) + value["list"][i]
    if touch_every and i % touch_every == 0:
        x += float(value["array"].sum())
    return x


def from_plain(value: dict, i: int, touch_every: int = 0) -> float:
    return score(value, i, touch_every)


def from_state(state: SharedState, i: int, touch_every: int = 0) -> float:
    return score(state.value, i, touch_every)


def worker_pids(exclude: set[int]) -> set[int]:
    pids = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(proc.cmdline()):
                pids.add(proc.pid)
        except psutil.Error:
            continue
    return pids - exclude


class PeakRSS:
    """Samples the RSS of some processes in a thread; keeps each one's peak."""

    def __init__(self, pids: set[int]) -> None:
        self.procs = [psutil.Process(p) for p in pids]
        self.idle = {p.pid: p.memory_info().rss for p in self.procs}
        self.peak = dict(self.idle)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            for proc in self.procs:
                try:
                    rss = proc.memory_info().rss
                except psutil.Error:
                    continue
                if rss > self.peak[proc.pid]:
                    self.peak[proc.pid] = rss

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_joblib(value: dict, tasks: int, touch: int) -> list[float]:
    import joblib

    return joblib.Parallel(n_jobs=2)(joblib.delayed(from_plain)(value, i, touch) for i in range(tasks))


def run_picklepool(state: SharedState, tasks: int, touch: int) -> list[float]:
    return Parallel(n_jobs=2)(delayed(from_state)(state, i, touch) for i in range(tasks))  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--touch",
        action="store_true",
        help="every 50th task also sums the whole array, so all of it is resident in the workers",
    )
    args = parser.parse_args(argv)
    touch = 50 if args.touch else 0

    value = make_value(args.mb)
    state = SharedState(value)
    pickled = len(pickle.dumps(value, protocol=5))
    in_memory = value["array"].nbytes + sys.getsizeof(value["list"]) + 24 * len(value["list"])
    expected = [from_plain(value, i, touch) for i in range(args.tasks)]

    import joblib

    ignore = worker_pids(set())
    joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(i) for i in range(4))  # warm workers
    joblib_pids = worker_pids(ignore)
    Parallel(n_jobs=2)(delayed(abs)(i) for i in range(4))
    pool_pids = worker_pids(ignore | joblib_pids)

    times: dict[str, list[float]] = {"joblib": [], "picklepool": []}
    peaks: dict[str, list[int]] = {"joblib": [], "picklepool": []}
    growth: dict[str, list[int]] = {"joblib": [], "picklepool": []}
    for _ in range(args.repeat):
        for name, pids, run, arg in (
            ("joblib", joblib_pids, run_joblib, value),
            ("picklepool", pool_pids, run_picklepool, state),
        ):
            with PeakRSS(pids) as mem:
                start = time.perf_counter()
                out = run(arg, args.tasks, touch)
                times[name].append(time.perf_counter() - start)
            assert out == expected, f"{name} returned wrong results"
            peaks[name].append(max(mem.peak.values()))
            growth[name].append(max(mem.peak[p] - mem.idle[p] for p in mem.peak))
        with state:  # a new version for the next round: nothing carried over between rounds
            pass
    shutdown()

    mib = 1 << 20
    print(
        f"{args.tasks} tasks, n_jobs=2, one value: {pickled / mib:.1f} MiB pickled "
        f"(~{in_memory / mib:.0f} MiB in memory), {args.repeat} rounds"
        + (", every 50th task sums the whole array" if touch else "")
    )
    for name in times:
        t = times[name]
        print(
            f"{name:>10}: median {statistics.median(t):7.3f} s (min {min(t):.3f}, max {max(t):.3f}); "
            f"peak worker RSS {max(peaks[name]) / mib:6.0f} MiB, growth over idle "
            f"{max(growth[name]) / mib:5.0f} MiB ({max(growth[name]) / pickled:.2f}x the value)"
        )
    ratios = [j / p for j, p in zip(times["joblib"], times["picklepool"], strict=True)]
    print(f"joblib / picklepool, pair by pair: {', '.join(f'{r:.1f}x' for r in ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
