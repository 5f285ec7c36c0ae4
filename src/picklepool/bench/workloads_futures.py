"""Workloads for the submit-level API and the joblib backend (issue 16).

sklearn_grid     GridSearchCV, 16 fits of ~30 ms (4 values of C x 4 folds) on a small dataset:
                 joblib's loky backend (joblib column) vs parallel_config(backend="picklepool")
                 (picklepool column). Target: picklepool <= 1.0x joblib's time.
executor_submit  10,000 submit()s of x*x, then result() on each: picklepool.Executor vs
                 concurrent.futures.ProcessPoolExecutor (cf.PPE column) vs loky's
                 get_reusable_executor (joblib column: joblib's engine). Target <= 1.0x cf.PPE.
executor_map     Executor.map(f, range(100_000), chunksize=1000) vs multiprocessing.Pool.map with
                 the same chunksize (mp.Pool column). Target <= 1.2x mp.Pool.

Each timed call checks its result outside the timing; a picklepool cell that fails
(wrong result, raised) makes the workload an error. Quick mode uses smaller sizes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .common import Context, expect
from .measure import interleave
from .results import CF_PPE, JOBLIB, MP_POOL, PICKLEPOOL, Cell, Row, Table, WorkloadResult
from .tasks import square


def _row(ctx: Context, label: str, impls: dict[str, Callable[[], float]]) -> Row:
    samples = interleave(impls, reps=ctx.reps, warmup=ctx.warmup, on_step=ctx.step, budget=ctx.budget)
    row = Row(label)
    for name, s in samples.items():
        row.cells[name] = Cell.from_samples(s)
    return row


def _timed(call: Callable[[], Any], check: Callable[[Any], None]) -> Callable[[], float]:
    import time

    def run() -> float:
        start = time.perf_counter()
        out = call()
        elapsed = time.perf_counter() - start
        check(out)
        return elapsed

    return run


def _ratio_table(res: WorkloadResult, row: Row, peer: str, peer_name: str, target: float) -> None:
    s = row.speedup(peer)
    if s is None:
        return
    ratio = 1 / s.median
    res.data[f"ratio_vs_{peer}"] = round(ratio, 3)
    res.tables.append(
        Table(
            f"{row.label}: picklepool time / {peer_name} time (median of rounds; target <= {target}x)",
            ["vs", "ratio", "target met"],
            [[peer_name, f"{ratio:.2f}x", "yes" if ratio <= target else "no"]],
        )
    )


def sklearn_grid(ctx: Context) -> WorkloadResult:
    res = WorkloadResult("sklearn_grid", "GridSearchCV, 4 C values x 4 folds, n_jobs=2: loky vs picklepool")
    try:
        import joblib
        from sklearn.datasets import make_classification
        from sklearn.model_selection import GridSearchCV
        from sklearn.svm import SVC
    except ImportError as exc:
        res.skipped = f"{exc.name} is not installed (pip install scikit-learn joblib)"
        return res
    import picklepool

    picklepool.register_joblib_backend()
    n = ctx.size(300, 800)
    X, y = make_classification(n_samples=n, n_features=20, random_state=0)
    grid = {"C": [0.1, 1.0, 10.0, 100.0]}
    res.params = {"n_samples": n, "fits": 16}

    def fit(backend: str) -> Any:
        with joblib.parallel_config(backend=backend, n_jobs=ctx.n_jobs):
            gs = GridSearchCV(SVC(), grid, cv=4).fit(X, y)
        return list(gs.cv_results_["mean_test_score"])

    expected = fit("sequential")
    impls = {
        PICKLEPOOL: _timed(lambda: fit("picklepool"), expect(expected)),
        JOBLIB: _timed(lambda: fit("loky"), expect(expected)),
    }
    row = _row(ctx, "sklearn_grid", impls)
    res.rows.append(row)
    _ratio_table(res, row, JOBLIB, "joblib (loky)", 1.0)
    return res


def executor_submit(ctx: Context) -> WorkloadResult:
    n = ctx.size(2_000, 10_000)
    res = WorkloadResult(
        "executor_submit",
        f"{n:,} submit(x*x) then result() each: Executor vs cf.PPE vs loky (joblib column)",
        {"n_tasks": n},
    )
    import loky

    from picklepool import Executor

    expected = [x * x for x in range(n)]

    def run(ex: Any) -> list[Any]:
        futures = [ex.submit(square, x) for x in range(n)]
        return [f.result() for f in futures]

    with Executor(ctx.n_jobs) as mine, ProcessPoolExecutor(ctx.n_jobs) as ppe:
        reusable = loky.get_reusable_executor(ctx.n_jobs)
        impls = {
            PICKLEPOOL: _timed(lambda: run(mine), expect(expected)),
            CF_PPE: _timed(lambda: run(ppe), expect(expected)),
            JOBLIB: _timed(lambda: run(reusable), expect(expected)),
        }
        row = _row(ctx, "executor_submit", impls)
    res.rows.append(row)
    _ratio_table(res, row, CF_PPE, "ProcessPoolExecutor", 1.0)
    _ratio_table(res, row, JOBLIB, "loky get_reusable_executor", 1.0)
    return res


def executor_map(ctx: Context) -> WorkloadResult:
    n = ctx.size(20_000, 100_000)
    chunk = 1000
    res = WorkloadResult(
        "executor_map",
        f"map(x*x, range({n:,}), chunksize={chunk}): Executor vs multiprocessing.Pool",
        {"n_tasks": n, "chunksize": chunk},
    )
    from picklepool import Executor

    expected = [x * x for x in range(n)]
    with Executor(ctx.n_jobs) as mine, multiprocessing.Pool(ctx.n_jobs) as pool:
        impls = {
            PICKLEPOOL: _timed(lambda: list(mine.map(square, range(n), chunksize=chunk)), expect(expected)),
            MP_POOL: _timed(lambda: pool.map(square, range(n), chunksize=chunk), expect(expected)),
        }
        row = _row(ctx, "executor_map", impls)
    res.rows.append(row)
    _ratio_table(res, row, MP_POOL, "multiprocessing.Pool.map", 1.2)
    return res
