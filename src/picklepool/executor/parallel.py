"""``Parallel``: the joblib calling convention on warm workers and a chosen pickler."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from .. import config
from ..config import NOT_SET
from ..pickler.registry import resolve_pickler
from ..workers import limits, memory
from .backends import BACKENDS, Backend, cpu_count, make_backend
from .batching import AutoBatcher, FixedBatcher
from .dispatch import Call
from .progress import make_reporter, parse_progress, parse_verbose

RETURN_AS = ("list", "generator", "generator_unordered")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_bytes(value: Any, name: str) -> int | None:
    """``"1M"`` -> 1048576; None stays None; ints pass through."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("B")
        unit = text[-1:] if text[-1:] in _UNITS else ""
        try:
            number = float(text[: len(text) - len(unit)])
        except ValueError:
            number = -1.0
        if 0 <= number < float("inf"):
            return int(number * _UNITS[unit])
    raise ValueError(f"{name}={value!r} is not a size; use bytes as an int, or '500K', '1M', '2G', or None")


def effective_n_jobs(n_jobs: Any, source: str = "argument") -> int:
    """Turn ``n_jobs`` into a worker count: -1 all cores, -2 all but one, ..."""
    if isinstance(n_jobs, str) and n_jobs.lstrip("-").isdigit():
        n_jobs = int(n_jobs)
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ValueError(
            f"n_jobs={n_jobs!r} (from {source}) is not valid: use a positive number of "
            "workers, -1 for all usable cores, or -n for all cores but n-1"
        )
    if n_jobs < 0:
        return max(1, cpu_count() + 1 + n_jobs)
    return n_jobs


class Parallel:
    """Run ``delayed`` calls on a pool of warm workers.

    >>> from picklepool import Parallel, delayed
    >>> Parallel(n_jobs=2)(delayed(pow)(x, 2) for x in range(5))
    [0, 1, 4, 9, 16]

    Parameters (those marked * default to ``parallel_config`` and the environment):

    n_jobs*: workers; -1 (the default) all usable cores, -n all but n-1, 1 runs in
        the calling process. With backend="dask", -1 and -n count the cluster's
        threads instead of local cores.
    backend*: "loky" (default: warm reusable processes), "threading",
        "sequential" or "dask".
    pickler*: "hybrid" (default), "pickle", "cloudpickle", a name given to
        ``register_pickler``, or "module:attr" naming a ``pickle.Pickler`` subclass.
        Precedence: argument > parallel_config > PICKLEPOOL_PICKLER > LOKY_PICKLER.
    batch_size*: "auto" (default; batches of about 20 ms of work, see
        ``executor.batching``) or a positive int.
    pre_dispatch*: how many batches may be in flight, e.g. "2*n_jobs" (default).
    return_as: "list" (default), "generator" (in order, lazily) or
        "generator_unordered" (as completed).
    timeout*: seconds one task may run; past it the task fails with
        ``TaskTimeoutError`` (a ``TimeoutError``) naming it.
    progress*: True: a bar (tqdm if installed) on stderr when it is a terminal;
        "always": even when it is not; a callable: called with (done,
        total_or_None) after each batch. See ``executor.progress``.
    verbose*: joblib-style progress lines on stderr (more often for larger N).
    max_nbytes*: "1M" (default), bytes as an int, or None (off). Arrays and buffers
        of at least this size go through shared memory, once per call, both ways:
        workers map arguments read-only, the parent owns large results (see
        ``pickler.buffers``).
    inner_max_num_threads*: BLAS/OpenMP threads in each worker (default
        cores // n_jobs); see ``workers.limits``.
    max_worker_memory*: e.g. "2G": a worker whose RSS passes it after a batch is
        recycled between batches; default off. See ``workers.memory``.
    idle_worker_timeout*: seconds an idle worker waits before it exits (300).

    ``with Parallel(...) as p:`` keeps the backend between calls.
    """

    def __init__(
        self,
        n_jobs: int | None = NOT_SET,
        backend: str | None = NOT_SET,
        pickler: Any = NOT_SET,
        batch_size: int | Literal["auto"] = NOT_SET,
        pre_dispatch: int | str = NOT_SET,
        return_as: Literal["list", "generator", "generator_unordered"] = "list",
        timeout: float | None = NOT_SET,
        progress: bool | Callable[[int, int | None], None] = NOT_SET,
        verbose: int = NOT_SET,
        max_nbytes: int | str | None = NOT_SET,
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
            "pickler": pickler,
            "batch_size": batch_size,
            "pre_dispatch": pre_dispatch,
            "timeout": timeout,
            "progress": progress,
            "verbose": verbose,
            "max_nbytes": max_nbytes,
            "inner_max_num_threads": inner_max_num_threads,
            "max_worker_memory": max_worker_memory,
            "idle_worker_timeout": idle_worker_timeout,
        }
        self._backend: Backend | None = None
        self._settings()  # validate explicit arguments now, not at the first call

    _DEFAULTS: dict[str, Any] = {
        "n_jobs": -1,
        "backend": "loky",
        "batch_size": "auto",
        "pre_dispatch": "2*n_jobs",
        "timeout": None,
        "progress": False,
        "verbose": 0,
        "max_nbytes": "1M",
        "inner_max_num_threads": None,
        "max_worker_memory": None,
        "idle_worker_timeout": None,
        "scheduler_address": None,
    }

    def _settings(self) -> dict[str, Any]:
        """Every setting in force now, validated, with the pickler's source."""
        s: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, default in self._DEFAULTS.items():
            arg = self._args.get(key, NOT_SET)
            if arg is NOT_SET:
                value = config.config_value(key)
                if value is NOT_SET:
                    found = config.env_setting(key)
                    value, src = (found[0], f"env var {found[1]}") if found else (default, "default")
                else:
                    src = "parallel_config"
            else:
                value, src = arg, "argument"
            if value is None and key in ("n_jobs", "backend"):
                value, src = default, "default"
            s[key], sources[key] = value, src
        pickler_arg = self._args["pickler"]
        s["pickler"], sources["pickler"] = resolve_pickler(None if pickler_arg is NOT_SET else pickler_arg)
        if s["backend"] not in BACKENDS:
            raise ValueError(
                f"backend={s['backend']!r} (from {sources['backend']}) is not valid; "
                f"use one of {list(BACKENDS)}"
            )
        s["n_workers"] = effective_n_jobs(s["n_jobs"], sources["n_jobs"])
        bs = s["batch_size"]
        if bs != "auto" and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
            raise ValueError(f"batch_size={bs!r} is not valid; use 'auto' or a positive int")
        t = s["timeout"]
        if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or t <= 0):
            raise ValueError(f"timeout={t!r} is not valid; use a positive number of seconds or None")
        s["max_nbytes"] = parse_bytes(s["max_nbytes"], "max_nbytes")
        s["max_worker_memory"] = parse_bytes(s["max_worker_memory"], "max_worker_memory")
        s["progress"] = parse_progress(s["progress"], sources["progress"])
        s["verbose"] = parse_verbose(s["verbose"], sources["verbose"])
        s["inner_max_num_threads"] = limits.parse_threads(
            s["inner_max_num_threads"], sources["inner_max_num_threads"]
        )
        s["idle_worker_timeout"] = limits.parse_idle_timeout(
            s["idle_worker_timeout"], sources["idle_worker_timeout"]
        )
        s["max_inflight"] = self._inflight(s["pre_dispatch"], s["n_workers"])
        s["sources"] = sources
        return s

    @staticmethod
    def _inflight(pre_dispatch: Any, n_workers: int) -> int:
        if isinstance(pre_dispatch, int) and not isinstance(pre_dispatch, bool) and pre_dispatch > 0:
            return pre_dispatch
        if isinstance(pre_dispatch, str):
            text = pre_dispatch.replace(" ", "")
            if text == "n_jobs":
                return n_workers
            factor, _, rest = text.partition("*")
            if rest == "n_jobs" and factor.isdigit() and int(factor) > 0:
                return int(factor) * n_workers
            if factor == "n_jobs" and rest.isdigit() and int(rest) > 0:
                return int(rest) * n_workers
            if text == "all":
                return 1 << 30
            if text.isdigit() and int(text) > 0:
                return int(text)
        raise ValueError(
            f"pre_dispatch={pre_dispatch!r} is not valid; use e.g. '2*n_jobs', 'all' or a positive int"
        )

    def _make_backend(self, s: dict[str, Any]) -> Backend:
        name = s["backend"]
        if s["n_workers"] == 1 and name in ("loky", "threading"):
            name = "sequential"
        if name == "threading" and s["timeout"] is not None:
            raise ValueError(
                f"timeout={s['timeout']} (from {s['sources']['timeout']}) cannot be enforced by "
                "the threading backend: Python threads cannot be interrupted. Use "
                "backend='loky' (processes), or drop the timeout."
            )
        n_workers = s["n_workers"]
        if name == "dask" and int(s["n_jobs"]) < 0:
            n_workers = int(s["n_jobs"])  # counted from the cluster's threads, not local cores
        return make_backend(
            name,
            n_workers,
            idle_worker_timeout=s["idle_worker_timeout"],
            scheduler_address=s["scheduler_address"],
            worker_env=limits.worker_env(s["inner_max_num_threads"], s["n_workers"]),
        )

    def __enter__(self) -> Parallel:
        self._backend = self._make_backend(self._settings())
        return self

    def __exit__(self, *exc_info: object) -> None:
        backend, self._backend = self._backend, None
        if backend is not None and backend.name == "threading":
            backend.shutdown()

    def __call__(self, iterable: Iterable[Any]) -> Any:
        s = self._settings()
        if s["timeout"] is not None:
            memory.prepare_parent()  # a timed-out worker is recycled: loky's leak warning would mislead
        backend = self._backend
        owned = backend is None
        if backend is None:
            backend = self._make_backend(s)
        elif hasattr(backend, "refresh"):
            backend.refresh()
        if backend.n_workers != s["n_workers"]:  # dask: n_jobs counts the cluster's threads
            s["max_inflight"] = self._inflight(s["pre_dispatch"], backend.n_workers)
        batcher: Any
        if s["batch_size"] == "auto":
            batcher = AutoBatcher(backend.n_workers)
        else:
            batcher = FixedBatcher(s["batch_size"])
        worker_limits = None
        if backend.name == "loky":
            worker_limits = limits.for_call(getattr(backend, "env", None), s["max_worker_memory"])
        recycled = memory.recycled_total if worker_limits and worker_limits.max_memory else None
        reporter = make_reporter(s["progress"], s["verbose"], backend.n_workers, recycled)
        call = Call(
            backend,
            s["pickler"],
            batcher,
            s["max_inflight"],
            s["timeout"],
            ordered=self.return_as != "generator_unordered",
            on_progress=reporter,
            worker_limits=worker_limits,
            max_nbytes=s["max_nbytes"],
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
                if owned and backend.name == "threading":
                    backend.shutdown()
            return out
        return _flatten(chunks, backend if owned and backend.name == "threading" else None, reporter)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._args.items() if v is not NOT_SET}
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
