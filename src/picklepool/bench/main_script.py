"""Benchmark scenarios that need a real ``__main__`` script; run by ``picklepool bench``.

    python main_script.py seed_table  [--reps R --warmup W --n-jobs N --size S]
    python main_script.py main_global [--reps R --warmup W --n-jobs N --size S --tasks T]
    python main_script.py cold_start  --impl NAME [--n-jobs N]

seed_table   joblib's serialisation example (seeds/003): one task receiving
             ``list(range(1_000_000))`` with a function defined in ``__main__``, under
             each picklepool pickler and joblib's loky / multiprocessing backends,
             ``LOKY_PICKLER=pickle`` and ``wrap_non_picklable_objects``, plus
             multiprocessing.Pool, ProcessPoolExecutor and a plain call.
main_global  200 tasks of a ``__main__`` function reading a global
             ``list(range(1_000_000))`` (issue 3; joblib issue 1733).
cold_start   one implementation's first call (10 tiny tasks) in this fresh process.

The timed scenarios print one JSON object on stdout: for each variant either
``{"times": [...], "error": null | "Type: message"}`` or a string saying why it
was skipped. Progress goes to stderr as ``step: ...`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any


def func_async(i: int, *args: Any) -> int:
    """The seed's function: defined in ``__main__``, so stdlib pickle cannot send it."""
    return 2 * i


LARGE: list[int] = []


def read_global(i: int) -> int:
    """A ``__main__`` function reading a large global: by value, it drags the global along."""
    return LARGE[i % len(LARGE)]


def step(text: str) -> None:
    print(f"step: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def loky_pickler(name: str) -> Iterator[None]:
    """joblib's process-global pickler switch, restored afterwards (as the seed does)."""
    from joblib.externals.loky import set_loky_pickler

    set_loky_pickler(name)
    try:
        yield
    finally:
        set_loky_pickler()


def _timed(fn: Callable[[], Any], check: Callable[[Any], bool] | None = None) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        if check is not None and not check(result):
            raise AssertionError(f"wrong result: {str(result)[:80]}")
        return elapsed

    return run


def _peers(n_jobs: int) -> tuple[Any, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return multiprocessing.Pool(n_jobs), ProcessPoolExecutor(n_jobs)


def seed_table(args: argparse.Namespace) -> dict[str, Any]:
    from picklepool import Parallel, delayed, wrap_non_picklable_objects

    large_list = list(range(args.size))
    n = args.n_jobs
    is42: Callable[[Any], bool] = lambda r: r == [42]  # noqa: E731
    impls: dict[str, Callable[[], float]] = {}
    skipped: dict[str, str] = {}

    # The combinations expected to fail come first: a failure can break a pool,
    # and the warm-up round of the variants after it starts a fresh one.
    impls["pp:pickle+__main__"] = _timed(
        lambda: Parallel(n_jobs=n, pickler="pickle")(delayed(func_async)(21, large_list) for _ in range(1))
    )
    try:
        import joblib
    except ImportError:
        joblib = None
    if joblib is not None:

        def jl_pickle_main() -> Any:
            with loky_pickler("pickle"):
                return joblib.Parallel(n_jobs=n)(joblib.delayed(func_async)(21, large_list) for _ in range(1))

        impls["jl:pickle+__main__"] = _timed(jl_pickle_main)

    impls["picklepool"] = _timed(
        lambda: Parallel(n_jobs=n)(delayed(func_async)(21, large_list) for _ in range(1)), is42
    )

    def with_pickler(name: str) -> Callable[[], Any]:
        return lambda: Parallel(n_jobs=n, pickler=name)(delayed(func_async)(21, large_list) for _ in range(1))

    for name in ("hybrid", "cloudpickle"):
        impls[f"pp:{name}"] = _timed(with_pickler(name), is42)
    impls["pp:pickle+id"] = _timed(
        lambda: Parallel(n_jobs=n, pickler="pickle")(delayed(id)(large_list) for _ in range(1))
    )
    wrapped = wrap_non_picklable_objects(func_async)
    impls["pp:wrap+pickle"] = _timed(
        lambda: Parallel(n_jobs=n, pickler="pickle")(delayed(wrapped)(21, large_list) for _ in range(1)),
        is42,
    )

    if joblib is not None:
        impls["joblib"] = _timed(
            lambda: joblib.Parallel(n_jobs=n)(joblib.delayed(func_async)(21, large_list) for _ in range(1)),
            is42,
        )
        import multiprocessing

        if multiprocessing.get_start_method() != "spawn":
            impls["jl:multiprocessing"] = _timed(
                lambda: joblib.Parallel(n_jobs=n, backend="multiprocessing")(
                    joblib.delayed(func_async)(21, large_list) for _ in range(1)
                ),
                is42,
            )
        else:
            skipped["jl:multiprocessing"] = (
                "the start method is spawn: __main__ functions cannot be sent by pickle"
            )

        def jl_pickle_id() -> Any:
            with loky_pickler("pickle"):
                return joblib.Parallel(n_jobs=n)(joblib.delayed(id)(large_list) for _ in range(1))

        jl_wrapped = joblib.wrap_non_picklable_objects(func_async)

        def jl_wrap() -> Any:
            with loky_pickler("pickle"):
                return joblib.Parallel(n_jobs=n)(joblib.delayed(jl_wrapped)(21, large_list) for _ in range(1))

        impls["jl:pickle+id"] = _timed(jl_pickle_id)
        impls["jl:wrap+pickle"] = _timed(jl_wrap, is42)
    else:
        for key in ("joblib", "jl:multiprocessing", "jl:pickle+id", "jl:wrap+pickle", "jl:pickle+__main__"):
            skipped[key] = "joblib is not installed"

    pool, executor = _peers(n)
    try:
        impls["mp.Pool"] = _timed(lambda: pool.starmap(func_async, [(21, large_list)]), is42)
        impls["cf.PPE"] = _timed(lambda: list(executor.map(func_async, [21], [large_list])), is42)
        impls["loop"] = _timed(lambda: [func_async(21, large_list)], is42)
        return _run(impls, skipped, args)
    finally:
        pool.terminate()
        executor.shutdown(wait=True)


def main_global(args: argparse.Namespace) -> dict[str, Any]:
    from picklepool import Parallel, delayed

    global LARGE
    LARGE = list(range(args.size))
    n, n_tasks = args.n_jobs, args.tasks
    expected = [LARGE[i] for i in range(n_tasks)]
    ok: Callable[[Any], bool] = lambda r: list(r) == expected  # noqa: E731
    impls: dict[str, Callable[[], float]] = {}
    skipped: dict[str, str] = {}
    impls["picklepool"] = _timed(
        lambda: Parallel(n_jobs=n)(delayed(read_global)(i) for i in range(n_tasks)), ok
    )
    try:
        import joblib
    except ImportError:
        skipped["joblib"] = "joblib is not installed"
    else:
        impls["joblib"] = _timed(
            lambda: joblib.Parallel(n_jobs=n)(joblib.delayed(read_global)(i) for i in range(n_tasks)), ok
        )
    # Created after LARGE is set: under fork the workers inherit it and never receive it.
    pool, executor = _peers(n)
    chunk = max(1, -(-n_tasks // (4 * n)))
    try:
        impls["mp.Pool"] = _timed(lambda: pool.map(read_global, range(n_tasks)), ok)
        impls["cf.PPE"] = _timed(lambda: list(executor.map(read_global, range(n_tasks), chunksize=chunk)), ok)
        impls["loop"] = _timed(lambda: [read_global(i) for i in range(n_tasks)], ok)
        return _run(impls, skipped, args)
    finally:
        pool.terminate()
        executor.shutdown(wait=True)


def _run(
    impls: dict[str, Callable[[], float]], skipped: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    from picklepool.bench.measure import interleave

    samples = interleave(impls, reps=args.reps, warmup=max(1, args.warmup), on_step=step, budget=args.budget)
    out: dict[str, Any] = {k: {"times": s.times, "error": s.error} for k, s in samples.items()}
    out.update(skipped)
    return out


def cold_start(args: argparse.Namespace) -> int:
    """Time one implementation's imports and first call; exit 3 if it is not installed."""
    n = args.n_jobs
    start = time.perf_counter()
    if args.impl == "picklepool":
        from picklepool import Parallel, delayed

        imported = time.perf_counter()
        Parallel(n_jobs=n)(delayed(abs)(x) for x in range(10))
    elif args.impl == "joblib":
        try:
            import joblib
        except ImportError:
            print("joblib is not installed")
            return 3
        imported = time.perf_counter()
        joblib.Parallel(n_jobs=n)(joblib.delayed(abs)(x) for x in range(10))
    elif args.impl == "mp.Pool":
        import multiprocessing

        imported = time.perf_counter()
        pool = multiprocessing.Pool(n)
        pool.map(abs, range(10))
    elif args.impl == "cf.PPE":
        from concurrent.futures import ProcessPoolExecutor

        imported = time.perf_counter()
        executor = ProcessPoolExecutor(n)
        list(executor.map(abs, range(10)))
    else:
        print(f"unknown implementation {args.impl!r}")
        return 2
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - start, "call_s": done - imported}), flush=True)
    if args.impl == "mp.Pool":
        pool.terminate()
    elif args.impl == "cf.PPE":
        executor.shutdown(wait=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["seed_table", "main_global", "cold_start"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=None, help="seconds of rounds at most")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--impl", default="picklepool")
    args = parser.parse_args(argv)
    if args.scenario == "cold_start":
        return cold_start(args)
    result = seed_table(args) if args.scenario == "seed_table" else main_global(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
