"""``picklepool bench``: picklepool side by side with joblib, multiprocessing and a loop.

Each workload runs the same tasks on every installed implementation —
picklepool, joblib (loky backend), ``multiprocessing.Pool.map``,
``concurrent.futures.ProcessPoolExecutor.map`` (Pool.map's chunk size) and a plain
in-process loop as the floor — with warm-up runs, several rounds interleaved
between implementations, medians with min and max, and speedups computed round
by round (``measure.py``). Workloads and the issues that set their targets:

    seed_table     joblib's serialisation example, per pickler    (issues 2, 3)
    tiny_tasks     100k calls of x*x                               (issue 2)
    warm_latency   one-task call on warm workers                   (issue 2)
    cold_start     first call in a fresh process                   (issue 2)
    cpu_bound      40 x ~25 ms pure-Python tasks, efficiency       (issue 6)
    big_array_in   large array argument, shared memory             (issue 4)
    big_array_out  large array results, shared memory              (issue 4)
    shared_state   a large value in a SharedState                  (issue 5)
    lock_object    a user object holding an RLock                  (issue 3)
    pickler_micro  dumps+loads per pickler                         (issue 3)
    main_global    __main__ function reading a large global        (issue 3)
    dask_cluster   tiny tasks and a 48 MB state on a LocalCluster:
                   backend="dask" vs joblib's dask backend

A workload that raises, whose picklepool feature is broken, or where picklepool
gives a wrong result is an *error*: shown in the report, and ``picklepool
bench`` exits 1 naming it. A peer that cannot run a workload is "n/a" there; a
workload whose optional dependency (numpy, dask.distributed) is missing is
skipped. Neither is an error. ``picklepool bench --scaling`` (``scaling``)
times picklepool per task at 1x, 10x and 100x the number of tasks.

Modules: ``measure`` (timing, interleaving, ratios, memory), ``peers`` (the
implementations), ``tasks`` (what workers run), ``features`` (checks that the
features measured work), ``workloads_*``, ``main_script`` (the ``__main__``
scenarios, run in a subprocess), ``report`` (table, JSON, plot), ``suite``,
``scaling``.
"""

from .suite import WORKLOADS, run_suite

__all__ = ["WORKLOADS", "run_suite"]
