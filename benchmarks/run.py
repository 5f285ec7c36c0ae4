"""Run picklepool's benchmark suite: the same as ``picklepool bench``.

What it measures, and against what: every workload (seed_table, tiny_tasks,
warm_latency, cold_start, cpu_bound, big_array_in, big_array_out, shared_state,
lock_object, pickler_micro, main_global) runs on picklepool and on each installed
peer — joblib (loky backend), ``multiprocessing.Pool.map``,
``concurrent.futures.ProcessPoolExecutor.map`` — plus a plain in-process loop as
the floor, with warm-up runs, interleaved rounds and pair-by-pair speedups;
dask_cluster runs picklepool's ``backend="dask"`` against joblib's dask backend on
a two-worker LocalCluster (skipped without dask.distributed). It exits 1 when a
workload is in error (it raised, a picklepool feature is broken, a wrong result).
The workloads live in ``src/picklepool/bench/`` so that an installed copy can
run them; see that package's docstring for what each one is.

    python benchmarks/run.py --quick                  # under a minute on 2 cores
    python benchmarks/run.py --json results.json --plot results.png
    python benchmarks/run.py --only tiny_tasks warm_latency
    python benchmarks/run.py --scaling --plot scaling.png  # time per task at 1x, 10x, 100x tasks
"""

from __future__ import annotations

import sys

from picklepool.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
