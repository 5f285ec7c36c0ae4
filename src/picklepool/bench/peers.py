"""The implementations a workload runs on: picklepool, its peers, and the plain loop.

Each runs a list of calls in its own natural idiom, with ``n_jobs`` workers:

    picklepool  Parallel(n_jobs)(delayed(f)(x) for x in xs)           warm loky workers
    joblib      joblib.Parallel(n_jobs)(joblib.delayed(f)(x) ...)      loky backend (default)
    mp.Pool     multiprocessing.Pool(n_jobs).map(f, xs)                default chunksize
    cf.PPE      ProcessPoolExecutor(n_jobs).map(f, xs, chunksize=c)    c = ceil(len / (4 n_jobs)),
                                                                       Pool.map's own rule
    loop        [f(x) for x in xs]                                     the floor: no parallelism

and, on a dask cluster (``dask_peers``; the current ``distributed.Client``):

    picklepool  Parallel(n_jobs, backend="dask")(delayed(f)(x) ...)
    joblib      with joblib.parallel_config(backend="dask"):           joblib's own dask backend
                    joblib.Parallel(n_jobs)(joblib.delayed(f)(x) ...)

picklepool and joblib keep their warm reusable workers between calls, as a user's
program does; ``mp.Pool`` and ``cf.PPE`` are created when a workload opens them and
kept warm for its runs. Everything a task calls must be importable in the workers
(see ``picklepool.bench.tasks``) unless the workload is about ``__main__``.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .results import CF_PPE, JOBLIB, LOOP, MP_POOL, PICKLEPOOL


def chunksize(n_items: int, n_jobs: int) -> int:
    """``multiprocessing.Pool.map``'s default chunk size, used for cf.PPE too."""
    return max(1, math.ceil(n_items / (4 * n_jobs)))


def _loky_worker_pids(module: str) -> list[int]:
    """PIDs of the workers of the reusable executor of the loky copy in *module*.

    Standalone loky keeps one executor per thread (``_executor_storage``), joblib's
    copy one per process (``_executor``). (Not the command line: when both copies
    are imported, the one imported last starts the workers of both.)
    """
    mod = sys.modules.get(module + ".reusable_executor")
    storage = getattr(mod, "_executor_storage", None)
    executor = getattr(storage, "executor", None) or getattr(mod, "_executor", None)
    return sorted(getattr(executor, "_processes", None) or {})


class Peer:
    """One implementation: ``map``/``starmap`` a function over items, return the results."""

    name = "base"

    def __init__(self, n_jobs: int, **options: Any) -> None:
        self.n_jobs = n_jobs
        self.options = options

    @staticmethod
    def unavailable() -> str | None:
        """Why this implementation cannot run here, or None."""
        return None

    def open(self) -> Peer:
        return self

    def close(self) -> None:
        pass

    def __enter__(self) -> Peer:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def map(self, func: Callable[..., Any], xs: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def starmap(self, func: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        raise NotImplementedError

    def worker_pids(self) -> list[int]:
        return []


class PicklepoolPeer(Peer):
    name = PICKLEPOOL

    def map(self, func: Callable[..., Any], xs: Sequence[Any]) -> list[Any]:
        from picklepool import Parallel, delayed

        result: list[Any] = Parallel(n_jobs=self.n_jobs, **self.options)(delayed(func)(x) for x in xs)
        return result

    def starmap(self, func: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        from picklepool import Parallel, delayed

        result: list[Any] = Parallel(n_jobs=self.n_jobs, **self.options)(delayed(func)(*a) for a in args)
        return result

    def worker_pids(self) -> list[int]:
        return _loky_worker_pids("loky")


class JoblibPeer(Peer):
    name = JOBLIB

    @staticmethod
    def unavailable() -> str | None:
        try:
            import joblib  # noqa: F401
        except ImportError:
            return "joblib is not installed (pip install 'picklepool[bench]')"
        return None

    def map(self, func: Callable[..., Any], xs: Sequence[Any]) -> list[Any]:
        import joblib

        result: list[Any] = joblib.Parallel(n_jobs=self.n_jobs, **self.options)(
            joblib.delayed(func)(x) for x in xs
        )
        return result

    def starmap(self, func: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        import joblib

        result: list[Any] = joblib.Parallel(n_jobs=self.n_jobs, **self.options)(
            joblib.delayed(func)(*a) for a in args
        )
        return result

    def worker_pids(self) -> list[int]:
        return _loky_worker_pids("joblib.externals.loky")


class JoblibDaskPeer(JoblibPeer):
    """joblib on its own dask backend, with the current ``distributed.Client``.

    dask's "Sending large graph" warning is silenced: joblib scatters only
    weak-referenceable arguments (not a dict, list or tuple), so such an argument
    goes inline with every task, and dask warns on every call.
    """

    def map(self, func: Callable[..., Any], xs: Sequence[Any]) -> list[Any]:
        with self._dask():
            return super().map(func, xs)

    def starmap(self, func: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        with self._dask():
            return super().starmap(func, args)

    @staticmethod
    @contextlib.contextmanager
    def _dask() -> Iterator[None]:
        import joblib

        with warnings.catch_warnings(), joblib.parallel_config(backend="dask"):
            warnings.filterwarnings("ignore", message="Sending large graph")
            yield

    def worker_pids(self) -> list[int]:
        return []


class PoolPeer(Peer):
    name = MP_POOL

    def __init__(self, n_jobs: int, **options: Any) -> None:
        super().__init__(n_jobs, **options)
        self._pool: Any = None

    def open(self) -> PoolPeer:
        if self._pool is None:
            self._pool = multiprocessing.Pool(self.n_jobs)
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def map(self, func: Callable[..., Any], xs: Sequence[Any]) -> list[Any]:
        self.open()
        return self._pool.map(func, xs)  # type: ignore[no-any-return]

    def starmap(self, func: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.open()
        return self._pool.starmap(func, args)  # type: ignore[no-any-return]

    def worker_pids(self) -> list[int]:
        return [p.pid for p in getattr(self._pool, "_pool", [])]


class ExecutorPeer(Peer):
    name = CF_PPE

    def __init__(self, n_jobs: int, **options: Any) -> None:
        super().__init__(n_jobs, **options)
        self._ex: ProcessPoolExecutor | None = None

    def open(self) -> ExecutorPeer:
        if self._ex is None:
            self._ex = ProcessPoolExecutor(self.n_jobs)
        return self

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)
            self._ex = None

    def map(self, func: Callable[..., Any], xs: Sequence[Any]) -> list[Any]:
        self.open()
        assert self._ex is not None
        return list(self._ex.map(func, xs, chunksize=chunksize(len(xs), self.n_jobs)))

    def starmap(self, func: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        self.open()
        assert self._ex is not None
        return list(self._ex.map(func, *zip(*args, strict=True), chunksize=chunksize(len(args), self.n_jobs)))

    def worker_pids(self) -> list[int]:
        return list(getattr(self._ex, "_processes", None) or {})


class LoopPeer(Peer):
    name = LOOP

    def map(self, func: Callable[..., Any], xs: Sequence[Any]) -> list[Any]:
        return [func(x) for x in xs]

    def starmap(self, func: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> list[Any]:
        return [func(*a) for a in args]


PEER_CLASSES: dict[str, type[Peer]] = {
    PICKLEPOOL: PicklepoolPeer,
    JOBLIB: JoblibPeer,
    MP_POOL: PoolPeer,
    CF_PPE: ExecutorPeer,
    LOOP: LoopPeer,
}


def make_peers(
    n_jobs: int, options: dict[str, dict[str, Any]] | None = None
) -> tuple[dict[str, Peer], dict[str, str]]:
    """Every implementation that can run here, and why each other one cannot."""
    peers: dict[str, Peer] = {}
    missing: dict[str, str] = {}
    for name, cls in PEER_CLASSES.items():
        reason = cls.unavailable()
        if reason:
            missing[name] = reason
        else:
            peers[name] = cls(n_jobs, **(options or {}).get(name, {}))
    return peers, missing


def dask_peers(n_jobs: int) -> tuple[dict[str, Peer], dict[str, str]]:
    """picklepool and joblib on the current dask client; why the other columns are n/a."""
    peers: dict[str, Peer] = {PICKLEPOOL: PicklepoolPeer(n_jobs, backend="dask")}
    missing = {name: "not applicable: does not run on a dask cluster" for name in (MP_POOL, CF_PPE, LOOP)}
    if reason := JoblibDaskPeer.unavailable():
        missing[JOBLIB] = reason
    else:
        peers[JOBLIB] = JoblibDaskPeer(n_jobs)
    return peers, missing


def close_all(peers: dict[str, Peer]) -> None:
    for peer in peers.values():
        peer.close()


@contextlib.contextmanager
def opened_peers(
    n_jobs: int, options: dict[str, dict[str, Any]] | None = None
) -> Iterator[tuple[dict[str, Peer], dict[str, str]]]:
    """``make_peers`` for a block: every peer is closed when it ends, even on error."""
    peers, missing = make_peers(n_jobs, options)
    try:
        yield peers, missing
    finally:
        close_all(peers)
