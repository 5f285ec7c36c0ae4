"""The list of workloads and the loop that runs them: ``picklepool bench``'s engine."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import (
    environment,
    workloads_calls,
    workloads_cluster,
    workloads_data,
    workloads_futures,
    workloads_main,
)
from .common import Context
from .measure import Progress
from .results import WorkloadResult

Workload = Callable[[Context], WorkloadResult]

# In the order they run and are shown.
WORKLOADS: dict[str, Workload] = {
    "seed_table": workloads_main.seed_table,
    "tiny_tasks": workloads_calls.tiny_tasks,
    "warm_latency": workloads_calls.warm_latency,
    "cold_start": workloads_main.cold_start,
    "cpu_bound": workloads_calls.cpu_bound,
    "big_array_in": workloads_data.big_array_in,
    "big_array_out": workloads_data.big_array_out,
    "shared_state": workloads_data.shared_state,
    "lock_object": workloads_data.lock_object,
    "pickler_micro": workloads_data.pickler_micro,
    "main_global": workloads_main.main_global,
    "dask_cluster": workloads_cluster.dask_cluster,
    "sklearn_grid": workloads_futures.sklearn_grid,
    "executor_submit": workloads_futures.executor_submit,
    "executor_map": workloads_futures.executor_map,
}

QUICK_REPS, FULL_REPS = 3, 7
QUICK_WARMUP, FULL_WARMUP = 1, 2
QUICK_BUDGET, FULL_BUDGET = 8.0, 60.0  # seconds per row; see measure.interleave


def run_suite(
    quick: bool = False,
    only: Sequence[str] | None = None,
    n_jobs: int = 2,
    reps: int | None = None,
    progress: bool = True,
    stream: TextIO | None = None,
) -> tuple[list[WorkloadResult], dict[str, Any], dict[str, Any]]:
    """Run the chosen workloads; return their results, the environment and the settings.

    A workload that raises is recorded with the error (and its traceback on
    *stream*) and the suite goes on with the next one.
    """
    names = list(only) if only else list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload(s) {unknown}; valid names are {list(WORKLOADS)}")
    stream = stream or sys.stderr
    bar = Progress(len(names), stream, enabled=progress)
    settings: dict[str, Any] = {
        "quick": quick,
        "only": names,
        "n_jobs": n_jobs,
        "reps": reps or (QUICK_REPS if quick else FULL_REPS),
        "warmup": QUICK_WARMUP if quick else FULL_WARMUP,
        "budget_s": QUICK_BUDGET if quick else FULL_BUDGET,
        "argv": sys.argv,
    }
    ctx = Context(quick, n_jobs, settings["reps"], settings["warmup"], bar.step, settings["budget_s"])
    env = environment.collect()
    results = []
    start = time.perf_counter()
    try:
        for name in names:
            bar.begin(name)
            t0 = time.perf_counter()
            try:
                res = WORKLOADS[name](ctx)
            except Exception as exc:  # noqa: BLE001 - one broken workload must not hide the others
                res = WorkloadResult(name, "", error=f"{type(exc).__name__}: {exc}")
                traceback.print_exc(file=stream)
            res.elapsed = time.perf_counter() - t0
            bar.end(res.status if res.status != "ok" else "done")
            results.append(res)
    finally:
        _shutdown_pools()
    settings["total_s"] = round(time.perf_counter() - start, 2)
    return results, env, settings


def broken(results: list[WorkloadResult]) -> list[str]:
    """What fails a run, one line each: ``workload: why`` for every workload in error.

    A workload is in error when it raised (a broken feature check included), when
    a picklepool cell failed (it raised or gave a wrong result), or when it found
    another picklepool failure. Peers that cannot run a workload, variants
    expected to fail (stdlib pickle with a ``__main__`` function) and workloads
    skipped for a missing optional dependency do not fail a run.
    """
    return [f"{res.name}: {problem}" for res in results for problem in res.problems()]


def _shutdown_pools() -> None:
    import picklepool

    picklepool.shutdown(wait=True)
    joblib_loky = sys.modules.get("joblib.externals.loky")
    if joblib_loky is not None:
        executor = getattr(sys.modules.get("joblib.externals.loky.reusable_executor"), "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True)
