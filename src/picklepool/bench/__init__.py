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

Modules: ``measure`` (timing, interleaving, ratios, memory), ``peers`` (the
implementations), ``tasks`` (what workers run), ``features`` (is a picklepool
feature there yet?), ``workloads_*``, ``main_script`` (the ``__main__``
scenarios, run in a subprocess), ``report`` (table, JSON, plot), ``suite``.
"""

from .suite import WORKLOADS, run_suite

__all__ = ["WORKLOADS", "run_suite"]
