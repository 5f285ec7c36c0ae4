"""``Parallel``: the joblib calling convention on warm workers and a chosen pickler."""

from __future__ import annotations

import dataclasses
import multiprocessing
import operator
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from .. import keptmodules, lokycompat
from ..pickler import buffers
from ..pickler.locks import callers_level
from ..pickler.registry import resolve_pickler
from ..settings import CONFIG_KEYS, NOT_SET, Settings, inflight, resolve_settings, sources_now
from ..workers import mirror
from . import descriptors, limits, memory, ongoing
from .backend import Backend
from .backends import BACKENDS, make_backend, prepare
from .batching import AutoBatcher, FixedBatcher
from .delayed import forget as forget_delayed
from .joblib_backends import from_joblib, warn_ignored, warn_maxtasksperchild
from .progress import VerboseLines, make_reporter
from .unapplied import warn_unapplied

if TYPE_CHECKING:
    from .dispatch import Call

# The dispatch (and, with it, the pickler, loky, cloudpickle and psutil) is imported by
# the first call, once its forkserver is started (Parallel._make_backend): the two then
# proceed together.

RETURN_AS = ("list", "generator", "generator_unordered")
_DISPATCH = f"{__package__}.dispatch"  # imported by the first call (Parallel._make_backend)

# Settings already resolved, by (arguments, parallel_config block, env vars, cores): the
# usual `Parallel(n_jobs=2)(...)` in a loop resolves its settings once.
_resolved: dict[Any, tuple[Any, Settings]] = {}


def _plain(s: Settings) -> bool:
    """*s* holds none of the program's objects (a progress callable, an initializer and its
    arguments, a pickler instance), which kept in ``_resolved`` stayed alive after the call
    (a bound method's object, a closure's data) until 64 other settings had pushed them out."""
    return (
        not callable(s.progress)
        and s.initializer is None
        and not s.initargs
        and (s.pickler is None or type(s.pickler) is str)
    )


def effective_n_jobs(n_jobs: Any = -1) -> int:
    """How many workers ``Parallel(n_jobs=n_jobs)`` would use here (joblib's helper).

    None means "not given": ``parallel_config``, ``PICKLEPOOL_N_JOBS``, then 1
    (joblib's default, also inside a worker); -1 is all usable cores, inside a worker
    that worker's share of them. Raises
    ``ValueError`` for 0 or a value that is not a number.
    """
    return _workers(_nested(resolve_settings({"n_jobs": n_jobs}, BACKENDS, *_where()), warn=False))


def _workers(s: Settings) -> int:
    """The workers a call with settings *s* would use now: on a cluster (dask), a negative
    ``n_jobs`` counts the cluster's threads, not this machine's cores (asked of it)."""
    if s.n_jobs < 0 and getattr(BACKENDS.get(s.backend), "counts_cluster", False):
        from .dask import effective_workers

        return effective_workers(s.n_jobs, s.scheduler_address)
    return s.n_workers


def _where() -> tuple[int | None, int]:
    """(cores, depth) of a call made here: ``workers.mirror.nesting`` in that order."""
    depth, cores = mirror.nesting()
    return cores, depth


def _daemon_kind() -> str:
    """What the daemonic process this code runs in is: a dask worker, or a multiprocessing one."""
    if mirror.in_dask_task():
        return "a dask worker's task (a daemonic process; backend='dask' runs a nested call on the cluster)"
    return "a daemonic multiprocessing worker (a multiprocessing.Pool's, or backend='multiprocessing')"


def _nested(s: Settings, warn: bool) -> Settings:
    """*s*, run with one worker where a pool of processes cannot (or should not) start.

    As joblib: a process backend below the threads of a threading pool, inside a
    daemonic ``multiprocessing`` worker, or ``backend="multiprocessing"`` inside a
    loky worker runs the call with ``n_jobs=1`` and warns (when *warn*) that it does.
    """
    cls = BACKENDS.get(s.backend)
    if s.n_workers == 1 or getattr(cls, "counts_cluster", False) or getattr(cls, "in_caller", False):
        return s
    kind = "Loky" if s.backend == "loky" else "Multiprocessing"
    if mirror.below_threads():
        where = "below threads (a task of backend='threading')"
    elif multiprocessing.current_process().daemon:
        where = f"inside {_daemon_kind()}, which cannot have children"
    elif s.backend == "multiprocessing" and lokycompat.depth() > 0:
        where = "below loky (inside a loky worker)"
    else:
        return s
    if warn:
        warnings.warn(
            f"{kind}-backed parallel loops cannot be nested {where}: setting n_jobs=1 for "
            f"this call (n_jobs={s.n_jobs} from {s.sources['n_jobs']}). Use backend='threading' "
            "for the inner call, or n_jobs=1 to silence this.",
            UserWarning,
            stacklevel=callers_level(),  # (the inner call's line, not picklepool's)
        )
    return dataclasses.replace(s, n_workers=1, max_inflight=inflight(s.pre_dispatch, 1))


_SETTABLE = ("n_jobs", "verbose", "timeout", "pre_dispatch", "batch_size")


def _setting(name: str) -> Any:
    """joblib's attribute *name* of ``Parallel``: the value in force now, settable.

    Read: the setting as the next call would see it (argument, ``parallel_config``,
    environment, default), as joblib resolves it at construction. Set (joblib's are
    plain attributes, read by its next call): the argument, checked at once; a bad
    value raises ``ValueError`` and leaves the setting as it was.
    """

    def get(self: Parallel) -> Any:
        return getattr(self._settings(), name)

    def set_(self: Parallel, value: Any) -> None:
        if "_args" not in self.__dict__:
            # a subclass's __init__ setting it before super().__init__(): that call sets
            # every one of them from its own arguments, as joblib's does
            return
        # a new dict, not changed in place: a copy.copy of the instance shares this one
        old, self._args = self._args, {**self._args, name: value}
        self._cached = None
        try:
            self._settings()
        except BaseException:
            self._args = old
            self._cached = None
            raise
        if name == "n_jobs" and self._backend is not None:
            self._renew_block = True  # a `with` block's next call runs on workers for it

    return property(get, set_, doc=f"joblib's ``Parallel.{name}``: the one in force now (settable).")


class Parallel:
    """Run ``delayed`` calls on a pool of warm workers.

    >>> from picklepool import Parallel, delayed
    >>> Parallel(n_jobs=2)(delayed(pow)(x, 2) for x in range(5))
    [0, 1, 4, 9, 16]

    Parameters (those marked * default to ``parallel_config`` and the environment;
    None means "not given" for each of them):

    n_jobs*: workers; -1 all usable cores, -n all but n-1, 1 (the default, as
        joblib's) runs in the calling process; floats and strings of digits are read as joblib's
        ``int(n_jobs)`` does. 0 (or 0.5) raises ``ValueError`` saying, as joblib,
        "n_jobs == 0 in Parallel has no meaning", and "2.3" or "abc" one saying "n_jobs
        could not be converted to int" (joblib raises these at its first call or
        ``_initialize_backend()``; picklepool at construction). Inside a worker,
        -1 means that worker's share of the cores.
        With backend="dask", -1 and -n count the cluster's threads instead of local
        cores.
    backend*: "loky" (default: warm reusable processes), "threading",
        "sequential", "dask", "multiprocessing" (a ``multiprocessing.Pool`` per call,
        see ``executor.mpbackend``) or a ``multiprocessing`` context object (that
        start method's pool). An instance of joblib's own ``LokyBackend``,
        ``ThreadingBackend``, ``SequentialBackend`` or ``MultiprocessingBackend`` means
        the backend of that name, with the ``inner_max_num_threads`` and settings it
        was made with unless given here (``executor.joblib_backends``); any other
        joblib backend object (``ParallelBackendBase`` subclass) raises ``ValueError``.
        An unknown name raises ``ValueError("Invalid backend: ...")``.
    prefer*: "threads" or "processes": a soft hint, used only when no backend is
        given (argument, ``parallel_config`` or ``PICKLEPOOL_BACKEND``), as in joblib.
    require*: "sharedmem": a hard constraint. Given here with ``backend=`` a process
        backend, it raises ``ValueError``; a process backend from ``parallel_config`` is
        replaced by "threading" (with n_jobs=1 unless given here), as in joblib. As in
        joblib, a ``require`` from ``parallel_config`` leaves a ``backend=`` given here alone.
    temp_folder*, mmap_mode*: where and how large arrays are shared (see
        ``pickler.buffers``).
    initializer*, initargs*: run ``initializer(*initargs)`` once in each new worker
        process (loky, multiprocessing); loky workers are reused by later calls with
        the same initializer and arguments, and restarted when they change. With one,
        ``n_jobs=1`` runs on one worker process; the threading, sequential and dask
        backends raise ``ValueError`` (no worker process to run it in).
    pickler*: "hybrid" (default), "pickle", "cloudpickle", a name given to
        ``register_pickler``, or "module:attr" naming a ``pickle.Pickler`` subclass.
        Precedence: argument > parallel_config > PICKLEPOOL_PICKLER > LOKY_PICKLER.
        Resolved only by calls that pickle (not n_jobs=1, not threading).
    batch_size*: "auto" (default; batches of about 20 ms of work, see
        ``executor.batching``) or a positive int k: joblib's rule, pulls of k per
        worker sent k a batch, the short last pull split finer over the workers.
    pre_dispatch*: how many batches may be in flight, e.g. "2*n_jobs" (default).
    return_as: "list" (default), "generator" (in order, lazily) or
        "generator_unordered" (as completed).
    timeout*: seconds one task may run (positive; ``math.inf`` or past 1e9: no limit,
        as None); past it the task fails
        with ``TaskTimeoutError`` (a ``TimeoutError`` and a
        ``multiprocessing.TimeoutError``) naming it, and the call's other tasks are
        cancelled. On the threading backend, as in joblib, the late task is not
        interrupted: its thread runs on until the task returns.
    progress*: True: a bar (tqdm if installed) on stderr when it is a terminal;
        "always": even when it is not; a callable: called with (done,
        total_or_None) after each batch. See ``executor.progress``.
    verbose*: joblib-style progress lines on stderr (stdout from 50, as joblib), more
        often for larger N, written by :meth:`print_progress` through :meth:`_print`
        (joblib's hooks: a subclass may override either).
    max_nbytes*: "1M" (default), a number of bytes, or None (off). Arrays and buffers
        larger than this go through shared memory, once per call, both ways
        (see ``pickler.buffers``).
    inner_max_num_threads*: BLAS/OpenMP threads in each worker (default
        cores // n_jobs); see ``executor.limits``.
    max_worker_memory*: e.g. "2G": a worker whose RSS passes it after a batch is
        recycled between batches; default off. See ``workers.memory``.
    idle_worker_timeout*: seconds an idle worker waits before it exits (300).
    maxtasksperchild*: with backend="multiprocessing", the batches (pool tasks, as in
        joblib: ``batch_size=1`` makes them tasks) a worker process runs before
        ``multiprocessing.Pool`` replaces it with a fresh one; on another backend it is
        ignored with a ``UserWarning`` saying what to use (``max_worker_memory``).
    **backend_kwargs: joblib's keywords for its backend. picklepool's other settings
        (``scheduler_address``) are taken; any other keyword is ignored with a
        ``UserWarning`` naming it (and the setting it most likely meant), as joblib's
        loky backend ignores it without one; with backend="multiprocessing" a keyword
        ``multiprocessing.Pool`` does not take is a ``TypeError``, as in joblib.

    Every setting is checked here, at construction: a bad value raises
    ``ValueError`` naming the setting, the value and where it came from.
    ``with Parallel(...) as p:`` keeps the backend between calls.

    A call dispatches its first batches at once, also with ``return_as="generator"``
    (tasks start at the call, not at the first ``next()``); closing the generator
    early cancels the rest. While a call of this instance is running (a generator
    not yet exhausted or closed), another call raises ``RuntimeError``, as in joblib.

    Nesting, as in joblib: a call made inside a worker (loky, multiprocessing, dask)
    or a thread of the threading backend that gives no backend there (argument, a
    ``parallel_config`` the task entered, ``PICKLEPOOL_BACKEND``) runs on threads of
    that worker at nesting level 1 and sequentially below; ``n_jobs`` not given there
    is 1 (joblib's ``n_jobs=None``). The caller's ``parallel_config`` does not reach a
    worker's calls for ``backend`` and ``n_jobs``. A backend given there is used, with
    ``n_jobs=-1`` meaning that worker's share of the cores; calls nested deeper than
    ``settings.MAX_DEPTH`` (1) run sequentially whatever their backend, so unbounded
    recursion ends in ``RecursionError``. A sequential call (``n_jobs=1``) changes
    nothing for its tasks' calls. ``with Parallel() as p``: ``p._backend`` is a
    ``LokyBackend``, ``ThreadingBackend``, ``SequentialBackend``, ... with joblib's
    ``nesting_level`` (0 in a parent, 1 in a worker, 2 below). joblib code a task
    runs (``joblib.Parallel``, scikit-learn's ``n_jobs``) nests as in a joblib worker
    (see ``workers.joblibnest``).
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
        initializer: Callable[..., Any] | None = NOT_SET,
        initargs: tuple[Any, ...] = NOT_SET,
        maxtasksperchild: int | None = NOT_SET,
        **backend_kwargs: Any,
    ) -> None:
        if return_as not in RETURN_AS:
            raise ValueError(  # joblib's words, then picklepool's
                f"return_as={return_as!r} is not valid: "
                'Expected `return_as` parameter to be a string equal to "list","generator" or '
                f'"generator_unordered", but got {return_as!r} instead; use one of {list(RETURN_AS)}'
            )
        self.return_as = return_as
        given = {
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
            "initializer": initializer,
            "initargs": initargs,
            "maxtasksperchild": maxtasksperchild,
        }
        # joblib's **backend_kwargs: picklepool's other settings (scheduler_address), else ignored
        ignored = {k: v for k, v in backend_kwargs.items() if k not in CONFIG_KEYS}
        given.update((k, v) for k, v in backend_kwargs.items() if k in CONFIG_KEYS)
        joblib_backend = from_joblib(backend, "argument")  # joblib's LokyBackend() etc.
        if joblib_backend is not None:
            given["backend"] = joblib_backend[0]
            for key, value in joblib_backend[1].items():  # what it carries, unless given here
                if given[key] is NOT_SET or given[key] is None:
                    given[key] = value
        self._args = given
        self._backend: Backend | None = None
        # joblib's counters, kept during a call for print_progress() (see there)
        self.n_completed_tasks = self.n_dispatched_tasks = self.n_dispatched_batches = 0
        self._verbose_state: tuple[VerboseLines | None, int | None] = (None, None)
        self._call_now: Call | None = None
        self._shown, self._verbose_now = "Parallel", 0  # for _print: set by each hooked call
        self._running = False
        self._left_open: Backend | None = None  # a `with` block's, left while its generator runs
        self._renew_block = False  # n_jobs was set inside the `with` block: its next call renews it
        self._block_token: int | None = None  # a `with` block entered as the exit began (__enter__)
        # re-entrant: a collection starting inside it may close this instance's last generator
        # (dropped in a reference cycle), whose end takes it (_done)
        self._lock = threading.RLock()
        self._cached: tuple[Any, Any, tuple[int | None, int], Settings] | None = None
        s = self._settings()  # validate explicit arguments now, not at the first call
        warn_ignored(ignored, s.backend, "Parallel()", strict=s.n_workers > 1)
        warn_maxtasksperchild(s.maxtasksperchild, s.backend, s.sources["maxtasksperchild"], s.n_workers)
        warn_unapplied(s)  # inner_max_num_threads, max_worker_memory... where no loky worker runs
        if pickler is not NOT_SET and pickler is not None:
            resolve_pickler(pickler, source="argument")  # a bad pickler= fails here too

    n_jobs = _setting("n_jobs")
    verbose = _setting("verbose")
    timeout = _setting("timeout")
    pre_dispatch = _setting("pre_dispatch")
    batch_size = _setting("batch_size")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # joblib's __init__ sets these on the instance, over a subclass's class attribute
        # (``verbose = 5``): such a plain value would hide the setting (read, and set).
        super().__init_subclass__(**kwargs)
        for name in _SETTABLE:
            if name in cls.__dict__ and not hasattr(cls.__dict__[name], "__get__"):
                setattr(cls, name, _setting(name))

    @property
    def return_generator(self) -> bool:
        """joblib's attribute: ``return_as`` is a generator."""
        return self.return_as != "list"

    @property
    def return_ordered(self) -> bool:
        """joblib's attribute: results come in the order of the tasks."""
        return self.return_as != "generator_unordered"

    def _effective_n_jobs(self) -> int:
        """How many workers a call of this instance would use now: joblib's ``Parallel._effective_n_jobs()``.

        Kept for code written against joblib (scikit-learn-era code calls it). The
        ``n_jobs`` in force (argument, ``parallel_config``, environment, default) as a
        count of workers: -1 is all usable cores (inside a worker, its share of them),
        1 wherever the call would run sequentially (a nested call too deep, a process
        backend below threads); inside ``with Parallel(...) as p:``, the workers of the
        block's backend (for dask, the cluster's threads when ``n_jobs`` is negative).
        Raises ``ValueError`` as the constructor does if the ``parallel_config`` block
        around it now holds a bad setting.
        """
        backend = self._backend
        if backend is not None and not self._renew_block:
            return backend.n_workers
        return _workers(self._settings())

    def _settings(self, warn: bool = False) -> Settings:
        """Every setting in force now, validated (``picklepool.settings``).

        Kept while the ``parallel_config`` block, the environment and the nesting
        budget stay the same (``settings.sources_now``): a warm call does not
        resolve them again. Calls that cannot start processes where they are made
        run with one worker (:func:`_nested`, which warns when *warn*).
        """
        block, env = sources_now()
        where = _where()
        cached = self._cached
        if cached is not None and cached[0] is block and cached[1] == env and cached[2] == where:
            return _nested(cached[3], warn)
        try:  # the same arguments in the same surroundings: another Parallel resolved them
            values = tuple(self._args.values())  # and their types: 1, 1.0 and True are equal
            key: Any = (values, tuple(map(type, values)), id(block), env, where)
            hit = _resolved.get(key)
        except TypeError:  # an argument that cannot be hashed: resolve
            key, hit = None, None
        if hit is not None and hit[0] is block:
            s = hit[1]
        else:
            s = resolve_settings(self._args, BACKENDS, *where)
            if key is not None and _plain(s):
                if len(_resolved) >= 64:
                    _resolved.clear()
                _resolved[key] = (block, s)
        self._cached = (block, env, where, s)
        return _nested(s, warn)

    def _make_backend(self, s: Settings) -> Backend:
        prepare(s.backend, s.n_workers)  # the forkserver starts, then what calls need is imported
        # In full, before any backend starts a process; a fork made by another thread
        # meanwhile (a multiprocessing worker, the user's os.fork()) waits for the imports
        # (lokycompat.load): it left the child those modules half imported (a worker's
        # dispatch and the session folder behind; a child's first call hung on `import loky`).
        lokycompat.load(_DISPATCH)

        backend = make_backend(
            s.backend,
            s.n_workers,
            n_jobs=s.n_jobs,
            idle_worker_timeout=s.idle_worker_timeout,
            scheduler_address=s.scheduler_address,
            worker_env=limits.worker_env(s.inner_max_num_threads, s.n_workers),
            context=s.context,
            initializer=s.initializer,
            initargs=s.initargs,
            maxtasksperchild=s.maxtasksperchild,
        )
        backend.renew_when_broken = False  # each call begins on a usable pool (refresh)
        return backend

    def __enter__(self) -> Parallel:
        keptmodules.check()
        # Entered by a non-daemon thread as the main thread ends (its pool starting), the block
        # is that thread's, as a call it runs (executor.ongoing): the exit waits for its end.
        token = ongoing.begin(shutdown=False, at_exit=True)
        try:
            with ongoing.admitting(token):
                self._backend = self._make_backend(self._settings(warn=True))
                kept = lokycompat.interpreter_exiting() and ongoing.admitted()
        except BaseException:
            ongoing.end(token)
            raise
        if kept:
            self._block_token = token
        else:
            ongoing.end(token)
        self._renew_block = False
        return self

    def __exit__(self, *exc_info: object) -> None:
        token, self._block_token = self._block_token, None
        try:
            self._leave_block()
        finally:
            if token is not None:
                ongoing.end(token)

    def _leave_block(self) -> None:
        """:meth:`__exit__`, but for the block's token."""
        with self._lock:
            backend, self._backend = self._backend, None
            if backend is not None and self._running:
                # A generator the block returned is still unread: it keeps the block's pool
                # and folder (arrays it sent) until it ends, then releases them (_done).
                self._left_open = backend
                return
        _release_block(backend)

    def __call__(self, iterable: Iterable[Any]) -> Any:
        """Run every ``delayed`` call of *iterable*; see the class docstring.

        Returns a list, or a generator for ``return_as="generator"`` /
        ``"generator_unordered"``. Raises the first task error (its own type, the
        worker's traceback attached), ``RuntimeError`` if this instance is already
        running a call.
        """
        keptmodules.check()  # (sys.modules restored since the first call: the same modules again)
        with self._lock:
            if self._running:
                raise RuntimeError(
                    "This Parallel instance is already running ! Before submitting new tasks, "
                    "you must wait for the completion of all the previous tasks, or clean all "
                    "references to the output generator (or close() it), or use another "
                    "Parallel object for concurrent calls."
                )
            self._running = True
        try:
            out = self._call(iterable)
        except BaseException as exc:
            self._done()
            n = self.n_jobs if isinstance(self.n_jobs, int) and self.n_jobs > 1 else None
            clear = descriptors.explained(exc, n)
            if clear is not None:
                raise clear from exc
            raise
        if self.return_as == "list":
            self._done()
        return out

    def _done(self) -> None:
        keptmodules.note()  # what the call imported, put back should sys.modules lose it
        forget_delayed()  # the items' function, held no longer than their call
        with self._lock:
            self._running = False
            self._call_now = None
            backend, self._left_open = self._left_open, None
        _release_block(backend, wait=False)

    def _call(self, iterable: Iterable[Any]) -> Any:
        s = self._settings(warn=self._backend is None)  # a `with` block warned as it began
        if s.timeout is not None:
            memory.prepare_parent()  # a timed-out worker is recycled: loky's leak warning would mislead
        listed = self.return_as == "list"
        # picklepool.shutdown() in another thread lets a list call end on these workers first,
        # not a generator (it may be left unread); the interpreter's exit lets a call that a
        # non-daemon thread runs or reads end first (executor.ongoing), from before its
        # backend is made: a program's first call starting its pool (imports, the forkserver)
        # as the main thread ended was refused. Not a contextlib block: its exit sets the
        # __traceback__ of a task's exception, which a frozen dataclass's refuses
        # (FrozenInstanceError instead)
        token = ongoing.begin(shutdown=False, at_exit=True)
        try:
            with ongoing.admitting(token):
                backend = self._backend
                owned = backend is None
                if backend is None:
                    backend = self._make_backend(s)
                elif self._renew_block:
                    # n_jobs set inside the block (no call of it runs now): the block goes on with
                    # workers for the new value, as joblib's next call uses it
                    backend = self._make_backend(s)
                    with self._lock:
                        old, self._backend, self._renew_block = self._backend, backend, False
                    _release_block(old)
                else:
                    backend.refresh()
                shutdown = listed and backend.shutdown_stops
                ongoing.settle(token, shutdown=shutdown, at_exit=not backend.caller_thread)
                result = self._run(s, backend, iterable, owned, token)
        except BaseException:
            ongoing.end(token)
            raise
        if listed:
            ongoing.end(token)  # (a generator's call ends with it: _flatten)
        return result

    def _run(self, s: Settings, backend: Backend, iterable: Iterable[Any], owned: bool, token: int) -> Any:
        """The call on *backend* (*owned*: made for it, released at its end): its results.

        *token*: the call's in ``executor.ongoing``, which a generator ends."""
        closes = backend if owned else None
        try:
            chunks, reporter, call = self._start(s, backend, iterable, owned)
        except BaseException:
            if closes is not None:
                # failed as it dispatched its first batches (Ctrl-C, a task's error, the
                # iterable's): raised now, not once the tasks already running have returned
                closes.release(wait=False)
            raise
        if self.return_as == "list":
            out: list[Any] = []
            failed = True
            try:
                for chunk in chunks:
                    out.extend(chunk)
                failed = False
            finally:
                if failed:  # the error's traceback holds this frame: not the results before it
                    out.clear()
                    chunk = []
                self._call_now = None
                if reporter is not None:
                    reporter.close()
                if closes is not None:
                    # failed: the error is raised now, not once the tasks still running
                    # in threads (a late one included) have returned
                    closes.release(wait=not failed)
            return out
        results = _flatten(chunks, closes, reporter, self._done, call, token)
        next(results)  # enter its try: closing or dropping it now cleans up too
        return results

    def _start(
        self, s: Settings, backend: Backend, iterable: Iterable[Any], owned: bool
    ) -> tuple[Iterator[list[Any]], Any, Call]:
        """Build the call on *backend* and dispatch its first batches (*owned*: not a ``with`` block's)."""
        max_inflight = s.max_inflight
        if backend.n_workers != s.n_workers:  # dask: n_jobs counts the cluster's threads
            max_inflight = inflight(s.pre_dispatch, backend.n_workers, s.sources["pre_dispatch"])
        pickler = resolve_pickler(s.pickler, source=s.sources["pickler"])[0] if backend.moves_bytes else None
        batcher: Any
        if s.batch_size == "auto":
            batcher = AutoBatcher(backend.n_workers, growth=backend.batch_growth)
        else:
            # (pre_dispatch="all": joblib splits the short last pull in n_jobs shares, not 10 * n_jobs)
            all_at_once = isinstance(s.pre_dispatch, str) and s.pre_dispatch.replace(" ", "") == "all"
            batcher = FixedBatcher(int(s.batch_size), backend.n_workers, all_at_once)
        worker_limits = None
        if backend.enforces_limits:
            worker_limits = limits.for_call(getattr(backend, "env", None), s.max_worker_memory)
        recycled = memory.recycled_total if worker_limits and worker_limits.max_memory else None
        if recycled is not None:
            recycled()  # takes in the records earlier calls' recycled workers left in /dev/shm
        hook = None
        if s.verbose or type(self).print_progress is not Parallel.print_progress:
            # joblib's hooks: print_progress() after each batch, verbose lines via _print().
            # Only then: a plain call pays nothing for them.
            self.n_completed_tasks = self.n_dispatched_tasks = self.n_dispatched_batches = 0
            self._shown = f"{type(self).__name__}(n_jobs={s.n_jobs})"  # joblib's repr(self): n_jobs as given
            self._verbose_now = s.verbose
            lines = None
            if s.verbose:
                if not backend.caller_thread:  # joblib's first line, which its n_jobs=1 path skips
                    self._print(
                        f"Using backend {type(backend).__name__} with {backend.n_workers} concurrent workers."
                    )
                lines = VerboseLines(s.verbose, backend.n_workers, sys.stderr, recycled, self._print)
                lines.width = len(str(n_tasks)) if (n_tasks := _length(iterable)) else 3
            self._verbose_state = (lines, None)
            hook = self._batch_done
        reporter = make_reporter(s.progress, s.verbose, backend.n_workers, recycled, hook=hook)
        from .dispatch import Call  # (imported by _make_backend)

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
        self._call_now = call if hook is not None else None
        try:
            return call.start(iterable), reporter, call  # the first batches are dispatched now
        except BaseException:
            if reporter is not None:
                reporter.close()
            raise

    # -- joblib's hooks for subclasses (the tqdm recipe): print_progress and _print ----------

    def _batch_done(self, done: int, total: int | None) -> None:
        """After each completed batch, in the thread consuming results: counts, then the hook."""
        call = self._call_now
        self.n_completed_tasks = done
        if call is not None:
            self.n_dispatched_tasks = call.n_dispatched_tasks
            self.n_dispatched_batches = call.n_dispatched_batches
        self._verbose_state = (self._verbose_state[0], total)
        self.print_progress()

    def print_progress(self) -> None:
        """Called after each completed batch of a call: joblib's hook, for subclasses.

        As in joblib, it runs in the thread that consumes the results (the caller's,
        or whoever iterates a ``return_as="generator"``), after every completed batch,
        with ``self.n_completed_tasks``, ``self.n_dispatched_tasks`` and
        ``self.n_dispatched_batches`` up to date (dispatched counts run ahead of
        completed ones by up to ``pre_dispatch`` batches). The widespread tqdm recipe
        works unchanged::

            class ProgressParallel(Parallel):
                def __call__(self, *args, **kwargs):
                    with tqdm() as self._pbar:
                        return Parallel.__call__(self, *args, **kwargs)

                def print_progress(self):
                    self._pbar.total = self.n_dispatched_tasks
                    self._pbar.n = self.n_completed_tasks
                    self._pbar.refresh()

        This default prints the ``verbose`` lines through :meth:`_print`. The counts are
        kept only for calls where this method is overridden or ``verbose`` is set, so
        other calls pay nothing; they are reset to 0 at the start of each such call.
        """
        lines, total = self._verbose_state
        if lines is not None:
            lines(self.n_completed_tasks, total)

    def _print(self, msg: str) -> None:
        """Write one progress line, ``[Parallel(n_jobs=N)]: msg``: joblib's hook, for subclasses.

        As joblib's: to stderr, or stdout when ``verbose`` is 50 or more; nothing when
        ``verbose`` is 0. Override it to send the ``verbose`` lines elsewhere (a logger).
        """
        verbose = self._verbose_now
        if not verbose:
            return
        stream = sys.stderr if verbose < 50 else sys.stdout
        stream.write(f"[{self._shown}]: {msg}\n")

    def __repr__(self) -> str:
        shown = {k: v for k, v in self._args.items() if v is not NOT_SET}
        if self.return_as != "list":
            shown["return_as"] = self.return_as
        return f"Parallel({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _release_block(backend: Backend | None, wait: bool = True) -> None:
    """The end of a ``with Parallel()`` block's *backend*: its temporary folder, then its pool."""
    buffers.release(backend)
    if backend is not None:
        backend.release(wait=wait)


def _length(iterable: Any) -> int | None:
    """``len(iterable)``, or None for an iterable without one (a generator)."""
    try:
        return len(iterable)
    except Exception:  # noqa: BLE001 - no length, or a broken __len__: the call finds out itself
        return None


def _flatten(
    chunks: Iterator[list[Any]],
    owned: Backend | None,
    reporter: Any,
    done: Callable[[], None],
    call: Any,
    token: int,
    *,
    _end: Callable[[int], None] = ongoing.end,
    _finalizing: Callable[[], bool] = sys.is_finalizing,
) -> Iterator[Any]:
    """The results of *chunks* one by one; closing it early cancels the call's remaining tasks.

    Yields None once first (consumed by ``Parallel.__call__``). Closed (or dropped)
    before its end, it warns as joblib's generator does (``Parallel._warn_exit_early``)
    when tasks had finished whose results were not read, or were cancelled: the same
    text, a ``UserWarning`` at the line that closed it; not at the interpreter's exit.
    The thread reading it is noted (the interpreter's exit waits for a non-daemon one:
    ``executor.ongoing``); the call's *token* there ends with it.
    """
    consumed = size = 0  # results read in the chunks before; the length of the one read now
    part: Iterator[Any] = iter(())
    try:
        yield None
        ongoing.reading(token)
        for chunk in chunks:
            part, size = iter(chunk), len(chunk)
            del chunk  # read: an error the next chunk raises, whose traceback holds this frame, not with it
            yield from part
            consumed, size = consumed + size, 0
            ongoing.reading(token)  # (before the next chunk is waited for)
    except GeneratorExit:
        if _finalizing():  # (dropped as the interpreter clears modules: below)
            raise
        chunks.close()  # type: ignore[attr-defined]
        if call.left_unused is not None:
            finished, cancelled = call.left_unused
            _warn_unused(finished, cancelled, read=consumed + size - operator.length_hint(part))
        raise
    finally:
        try:
            try:
                chunks.close()  # type: ignore[attr-defined]
            finally:
                _end(token)
                if reporter is not None:
                    reporter.close()
                if owned is not None:
                    owned.release(wait=False)  # closed early: do not wait for running threads
                done()
        except Exception:
            # Left in a module's container (a list, a dict of jobs) at the exit, it is
            # dropped as the interpreter clears the modules, whose globals are None by then
            # ("AttributeError: 'NoneType' object has no attribute 'end'", printed as
            # ignored): its pools are stopped already (the exit hooks), nothing is left to do
            if not _finalizing():
                raise


def _warn_unused(finished: int, cancelled: int, read: int) -> None:
    """joblib's warning for a ``return_as`` generator closed early (``Parallel._warn_exit_early``)."""
    unread = finished - read
    msg = f"{unread} tasks have been successfully executed  but not used." if unread > 0 else ""
    if cancelled > 0:
        msg += " Additionally, " if msg else ""
        msg += f"{cancelled} tasks which were still being processed by the workers have been cancelled."
    if msg:
        msg += (
            " You could benefit from adjusting the input task iterator to limit unnecessary computation time."
        )
        warnings.warn(msg, UserWarning, stacklevel=3)  # the line that closed or dropped it
