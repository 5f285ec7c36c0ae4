"""``Parallel``: the joblib calling convention on warm workers and a chosen pickler."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from ..pickler import buffers
from ..pickler.registry import resolve_pickler
from ..settings import NOT_SET, Settings, inflight, resolve_settings, sources_now
from ..workers import mirror
from . import limits, memory
from .backend import Backend
from .backends import BACKENDS, make_backend
from .batching import AutoBatcher, FixedBatcher
from .dispatch import Call
from .progress import make_reporter

RETURN_AS = ("list", "generator", "generator_unordered")

# Settings already resolved, by (arguments, parallel_config block, env vars, cores): the
# usual `Parallel(n_jobs=2)(...)` in a loop resolves its settings once.
_resolved: dict[Any, tuple[Any, Settings]] = {}


def effective_n_jobs(n_jobs: Any = -1) -> int:
    """How many workers ``Parallel(n_jobs=n_jobs)`` would use here (joblib's helper).

    None means "not given": ``parallel_config``, ``PICKLEPOOL_N_JOBS``, then -1 (all
    usable cores; inside a worker, that worker's share of them). Raises
    ``ValueError`` for 0 or a value that is not a number.
    """
    return resolve_settings({"n_jobs": n_jobs}, BACKENDS, mirror.nesting()[1]).n_workers


class Parallel:
    """Run ``delayed`` calls on a pool of warm workers.

    >>> from picklepool import Parallel, delayed
    >>> Parallel(n_jobs=2)(delayed(pow)(x, 2) for x in range(5))
    [0, 1, 4, 9, 16]

    Parameters (those marked * default to ``parallel_config`` and the environment;
    None means "not given" for each of them):

    n_jobs*: workers; -1 (the default) all usable cores, -n all but n-1, 1 runs in
        the calling process; floats are truncated, as in joblib. Inside a worker,
        -1 means that worker's share of the cores. With backend="dask", -1 and -n
        count the cluster's threads instead of local cores.
    backend*: "loky" (default: warm reusable processes), "threading",
        "sequential" or "dask".
    pickler*: "hybrid" (default), "pickle", "cloudpickle", a name given to
        ``register_pickler``, or "module:attr" naming a ``pickle.Pickler`` subclass.
        Precedence: argument > parallel_config > PICKLEPOOL_PICKLER > LOKY_PICKLER.
        Resolved only by calls that pickle (not n_jobs=1, not threading).
    batch_size*: "auto" (default; batches of about 20 ms of work, see
        ``executor.batching``) or a positive int.
    pre_dispatch*: how many batches may be in flight, e.g. "2*n_jobs" (default).
    return_as: "list" (default), "generator" (in order, lazily) or
        "generator_unordered" (as completed).
    timeout*: seconds one task may run (positive, finite); past it the task fails
        with ``TaskTimeoutError`` (a ``TimeoutError`` and a
        ``multiprocessing.TimeoutError``) naming it.
    progress*: True: a bar (tqdm if installed) on stderr when it is a terminal;
        "always": even when it is not; a callable: called with (done,
        total_or_None) after each batch. See ``executor.progress``.
    verbose*: joblib-style progress lines on stderr (more often for larger N).
    max_nbytes*: "1M" (default), bytes as an int, or None (off). Arrays and buffers
        of at least this size go through shared memory, once per call, both ways
        (see ``pickler.buffers``).
    inner_max_num_threads*: BLAS/OpenMP threads in each worker (default
        cores // n_jobs); see ``executor.limits``.
    max_worker_memory*: e.g. "2G": a worker whose RSS passes it after a batch is
        recycled between batches; default off. See ``workers.memory``.
    idle_worker_timeout*: seconds an idle worker waits before it exits (300).

    Every setting is checked here, at construction: a bad value raises
    ``ValueError`` naming the setting, the value and where it came from.
    ``with Parallel(...) as p:`` keeps the backend between calls.
    """

    def __init__(
        self,
        n_jobs: int | None = NOT_SET,
        backend: str | None = NOT_SET,
        return_as: Literal["list", "generator", "generator_unordered"] = "list",
        verbose: int = NOT_SET,
        timeout: float | None = NOT_SET,
        pre_dispatch: int | str = NOT_SET,
        batch_size: int | Literal["auto"] = NOT_SET,
        temp_folder: str | None = NOT_SET,
        max_nbytes: int | str | None = NOT_SET,
        mmap_mode: str | None = NOT_SET,
        prefer: str | None = NOT_SET,
        require: str | None = NOT_SET,
        *,
        pickler: Any = NOT_SET,
        progress: bool | Callable[[int, int | None], None] = NOT_SET,
        inner_max_num_threads: int | None = NOT_SET,
        max_worker_memory: int | str | None = NOT_SET,
        idle_worker_timeout: float | None = NOT_SET,
    ) -> None:
        if return_as not in RETURN_AS:
            raise ValueError(f"return_as={return_as!r} is not valid; use one of {list(RETURN_AS)}")
        self.return_as = return_as
        self._args = {
            "n_jobs": n_jobs,
            "backend": backend,
            "verbose": verbose,
            "timeout": timeout,
            "pre_dispatch": pre_dispatch,
            "batch_size": batch_size,
            "temp_folder": temp_folder,
            "max_nbytes": max_nbytes,
            "mmap_mode": mmap_mode,
            "prefer": prefer,
            "require": require,
            "pickler": pickler,
            "progress": progress,
            "inner_max_num_threads": inner_max_num_threads,
            "max_worker_memory": max_worker_memory,
            "idle_worker_timeout": idle_worker_timeout,
        }
        self._backend: Backend | None = None
        self._cached: tuple[Any, Any, int | None, Settings] | None = None
        self._settings()  # validate explicit arguments now, not at the first call
        if pickler is not NOT_SET and pickler is not None:
            resolve_pickler(pickler, source="argument")  # a bad pickler= fails here too

    def _settings(self) -> Settings:
        """Every setting in force now, validated (``picklepool.settings``).

        Kept while the ``parallel_config`` block, the environment and the nesting
        budget stay the same (``settings.sources_now``): a warm call does not
        resolve them again.
        """
        block, env = sources_now()
        cores = mirror.nesting()[1]
        cached = self._cached
        if cached is not None and cached[0] is block and cached[1] == env and cached[2] == cores:
            return cached[3]
        try:  # the same arguments in the same surroundings: another Parallel resolved them
            key: Any = (tuple((type(v), v) for v in self._args.values()), id(block), env, cores)
            hit = _resolved.get(key)
        except TypeError:  # an argument that cannot be hashed: resolve
            key, hit = None, None
        if hit is not None and hit[0] is block:
            s = hit[1]
        else:
            s = resolve_settings(self._args, BACKENDS, cores)
            if key is not None:
                if len(_resolved) >= 64:
                    _resolved.clear()
                _resolved[key] = (block, s)
        self._cached = (block, env, cores, s)
        return s

    def _make_backend(self, s: Settings) -> Backend:
        backend = make_backend(
            s.backend,
            s.n_workers,
            n_jobs=s.n_jobs,
            idle_worker_timeout=s.idle_worker_timeout,
            scheduler_address=s.scheduler_address,
            worker_env=limits.worker_env(s.inner_max_num_threads, s.n_workers),
        )
        if s.timeout is not None and not backend.supports_timeout:
            backend.shutdown()
            raise ValueError(
                f"timeout={s.timeout} (from {s.sources['timeout']}) cannot be enforced by the "
                f"{backend.name} backend: Python threads cannot be interrupted. Use "
                "backend='loky' (processes), or drop the timeout."
            )
        return backend

    def __enter__(self) -> Parallel:
        self._backend = self._make_backend(self._settings())
        return self

    def __exit__(self, *exc_info: object) -> None:
        backend, self._backend = self._backend, None
        buffers.release(backend)  # the block's temporary folder
        if backend is not None and backend.per_parallel:
            backend.shutdown()

    def __call__(self, iterable: Iterable[Any]) -> Any:
        s = self._settings()
        if s.timeout is not None:
            memory.prepare_parent()  # a timed-out worker is recycled: loky's leak warning would mislead
        backend = self._backend
        owned = backend is None
        if backend is None:
            backend = self._make_backend(s)
        else:
            backend.refresh()
        max_inflight = s.max_inflight
        if backend.n_workers != s.n_workers:  # dask: n_jobs counts the cluster's threads
            max_inflight = inflight(s.pre_dispatch, backend.n_workers, s.sources["pre_dispatch"])
        pickler = resolve_pickler(s.pickler, source=s.sources["pickler"])[0] if backend.moves_bytes else None
        batcher: Any
        if s.batch_size == "auto":
            batcher = AutoBatcher(backend.n_workers)
        else:
            batcher = FixedBatcher(int(s.batch_size))
        worker_limits = None
        if backend.enforces_limits:
            worker_limits = limits.for_call(getattr(backend, "env", None), s.max_worker_memory)
        recycled = memory.recycled_total if worker_limits and worker_limits.max_memory else None
        if recycled is not None:
            recycled()  # takes in the records earlier calls' recycled workers left in /dev/shm
        reporter = make_reporter(s.progress, s.verbose, backend.n_workers, recycled)
        closes = backend if owned and backend.per_parallel else None
        call = Call(
            backend,
            pickler,
            batcher,
            max_inflight,
            s.timeout,
            ordered=self.return_as != "generator_unordered",
            on_progress=reporter,
            worker_limits=worker_limits,
            max_nbytes=s.max_nbytes,
            mmap_mode=s.mmap_mode,
            temp_folder=s.temp_folder,
            owner=None if owned else backend,  # a `with` block: its calls share a temp folder
        )
        chunks = call.run(iterable)
        if self.return_as == "list":
            out: list[Any] = []
            try:
                for chunk in chunks:
                    out.extend(chunk)
            finally:
                if reporter is not None:
                    reporter.close()
                if closes is not None:
                    closes.shutdown()
            return out
        return _flatten(chunks, closes, reporter)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._args.items() if v is not NOT_SET}
        if self.return_as != "list":
            shown["return_as"] = self.return_as
        return f"Parallel({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _flatten(chunks: Iterator[list[Any]], owned: Backend | None, reporter: Any = None) -> Iterator[Any]:
    try:
        for chunk in chunks:
            yield from chunk
    finally:
        chunks.close()  # type: ignore[attr-defined]
        if reporter is not None:
            reporter.close()
        if owned is not None:
            owned.shutdown()
