"""What runs in a worker before and around the user's tasks: initializers and configs.

An Executor batch can start with :func:`initialize` (its ``initializer``, once per
worker and executor) and, for the joblib backend, be framed by :func:`enter_config`
/ :func:`leave_config` (the nested ``joblib.parallel_config`` that joblib's own
``BatchedCalls`` sets around its tasks). They are plain importable functions, so
they travel by reference and cost a few bytes per batch. A warm loky worker starts
with :func:`start_loky_worker`, which runs ``Parallel(initializer=...)``.

An initializer defined in ``__main__`` travels by value, and so do the tasks'
functions of ``__main__``: each copy has globals of its own. The globals the
initializer set are given to the functions of its module that its executor (or, for
``Parallel``'s, the pool) sends (:func:`adopt`), as the standard library's executors'
tasks share their initializer's module.
"""

from __future__ import annotations

import functools
import pickle
import sys
import types
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from . import warnfilters

_initialized: set[str] = set()  # executor tokens whose initializer ran in this worker
_configs: list[Any] = []  # open joblib.parallel_config contexts, innermost last
_registered: set[Callable[[], None]] = set()  # joblib backends registered here (enter_config)

POOL = ""  # the overlay key of the warm pool's own initializer: every call's functions get it
# Globals an initializer sent by value set, per executor token (or POOL): (its module, names -> values).
_overlays: dict[str, tuple[str, dict[str, Any]]] = {}
# Functions rebuilt by value for the last few tokens (weakly), for an initializer that
# runs after them: an executor's first batch in this worker rebuilds its functions, then
# runs its initializer. Every Parallel call has a token of its own: only the last are kept.
_adopted: dict[str, weakref.WeakSet[Any]] = {}
ADOPTED_TOKENS = 16


_MAINS = ("__main__", "__mp_main__")


def _names(code: types.CodeType) -> set[str]:
    """The global names *code* and the functions defined in it may use."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _reached(func: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The globals of *values* (its module's) that *func*'s code names, and that the
    functions of the same module it names (helpers, other initializers it calls) name."""
    seen: set[str] = set()
    todo = [func]
    while todo:
        f = todo.pop()
        for name in _names(f.__code__) - seen:
            seen.add(name)
            v = values.get(name)
            if type(v) is types.FunctionType and v.__globals__ is func.__globals__:
                todo.append(v)
    return {k: values[k] for k in seen if k in values}


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _by_value(func: Any) -> bool:
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    return type(func) is types.FunctionType and func.__globals__ is not getattr(module, "__dict__", None)


def start_loky_worker(
    initializer: Callable[..., Any] | None,
    initargs: tuple[Any, ...],
    parent: int | None = None,
    start_method: str | None = None,
    folder: str | None = None,
    created: dict[str, Any] | None = None,
) -> None:
    """loky's initializer of every warm worker: watch the parent, then the pool's own *initializer*.

    A worker watches its parent from its start (``workers.control.watch_parent``),
    not from its first batch: one that never got a batch (more workers than tasks)
    would otherwise outlive a killed parent up to its idle timeout (300 s), holding
    the parent's session folder. *parent*: the pid of the process that started the
    pool, so that a worker still booting when it was killed leaves too (it would
    otherwise watch the process that adopted it). *initializer*
    (``Parallel(initializer=...)``) runs after, as loky runs it, and a failure of it
    breaks the pool as in loky. *start_method*: the parent's ``multiprocessing`` start
    method (None: the platform's), set before it (loky's start made it "loky", which
    the standard library's spawned children cannot find; ``workers.mirror``). *folder*:
    the parent's session folder, where a failing initializer leaves its exception's
    type, text and traceback (:func:`initializer_failure` reads them), as loky only
    prints them on stderr. *created*: the parent's settings as it made the pool
    (``executor.poolstart``): what the initializer sets of them stays while the parent's
    are those (``workers.following``).
    """
    from ..pickler import copiedwait
    from . import leaving
    from .control import watch_parent
    from .mainnames import install
    from .mirror import start_method as set_start_method

    watch_parent(parent)
    copiedwait.in_worker = True  # (a task's wait on a copy of the parent's Event nothing can end raises)
    leaving.install()  # its exit does not wait for the threads its tasks leave (workers.leaving)
    install()  # the script's names in this worker's __main__, for the tasks (workers.mainnames)
    set_start_method(start_method)
    if initializer is not None:
        try:
            _run(POOL, initializer, initargs, created)
        except BaseException as exc:
            if folder is not None:
                _record_failure(folder, exc)
            raise  # loky prints it and ends the worker


FAILURE_PREFIX = "initializer-failed-"
INITIALIZER_FIX = "Fix the initializer"  # how a message naming what an initializer raised ends


def run_pool_initializer(
    initializer: Callable[..., Any],
    initargs: tuple[Any, ...],
    folder: str,
    created: dict[str, Any] | None = None,
) -> None:
    """A ``multiprocessing.Pool`` worker's initializer (``backend="multiprocessing"``): run
    *initializer*; when it raises, leave what it raised in *folder* (as
    :func:`start_loky_worker` does), then let the worker end as ``multiprocessing`` ends it.
    What it sets is kept as under loky: the globals of its module for the tasks' functions
    sent by value, and the process settings the parent leaves alone (``workers.mirror``)."""
    try:
        _run(POOL, initializer, initargs, created)
    except BaseException as exc:
        _record_failure(folder, exc)
        raise


def _record_failure(folder: str, exc: BaseException) -> None:
    import json
    import os
    import traceback

    cls = type(exc)
    record = {
        "error": f"{cls.__module__}.{cls.__qualname__}".removeprefix("builtins."),
        "message": _text(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    path = os.path.join(folder, f"{FAILURE_PREFIX}{os.getpid()}")
    try:
        with open(f"{path}.tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(f"{path}.tmp", path)
    except OSError:  # the folder is gone (the parent ended): loky's stderr still has it
        pass


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - the initializer's own class
        return "<str() of the exception raised>"


def initializer_failure(folder: str | None) -> dict[str, str] | None:
    """What a warm worker's failing initializer left in the session *folder* (its
    exception's ``error`` type, ``message`` and ``traceback``), or None. The records
    are removed: each crash reads those of the workers it ended."""
    import json
    import os

    if folder is None:
        return None
    found = None
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(FAILURE_PREFIX) and "." not in n)
    except OSError:
        return None
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            os.unlink(path)
        except (OSError, ValueError):
            continue
        if found is None and isinstance(record, dict):
            found = record
    return found


def start_pool_worker(env: dict[str, str] | None = None) -> None:
    """Start a worker of an Executor's own ``multiprocessing.Pool`` ("fork", ``max_tasks_per_child``).

    *env*: the thread variables (``OMP_NUM_THREADS``...) loky sets in the warm
    workers at start, set here too, before a task imports a numerical library.
    And let the worker start processes of its own: ``Pool`` makes its workers
    daemonic, and daemonic processes may not have children; the standard
    library's ``ProcessPoolExecutor`` workers are not daemonic, so a task may run
    its own pool (a nested ``Parallel``, an executor). A worker's children see
    their parent die and exit.
    """
    import multiprocessing
    import os

    from ..pickler import copiedwait

    copiedwait.in_worker = True
    if env:
        os.environ.update(env)
    multiprocessing.current_process()._config["daemon"] = False  # type: ignore[attr-defined]


def own_pool(key: str) -> None:
    """The start of a worker of an ``Executor`` with an initializer: nothing to do.

    Given to the pool as its workers' initializer, so that the pool's settings differ
    from every other call's (``executor.pool``): the executor's initializer (run by
    :func:`initialize` before its first task in each worker) changes what it changes
    in the process (environment, warnings filters, logging, module globals), and such
    a worker must not run other calls' tasks after it, as the standard library's
    executors share no process.
    """


def initialize(
    token: str,
    initializer: Callable[..., Any],
    initargs: tuple[Any, ...],
    created: dict[str, Any] | None = None,
) -> None:
    """Run ``initializer(*initargs)`` once in this worker for the executor *token*.

    An initializer defined in ``__main__`` (sent by value) that sets globals
    (``global conn; conn = connect()``, or ``STATE["conn"] = connect()``) sets them
    for the executor's tasks too, as with the standard library's executors, whose
    tasks share the initializer's module: the globals it changed are given to every
    function of that module the executor sends (:func:`adopt`). Other globals stay as
    the parent sent them.
    """
    if token in _initialized:
        return
    _run(token, initializer, initargs, created)
    _initialized.add(token)


def _run(
    key: str,
    initializer: Callable[..., Any],
    initargs: tuple[Any, ...],
    created: dict[str, Any] | None = None,
) -> None:
    """Run *initializer*; keep the globals it set (sent by value) as *key*'s overlay.

    Set means bound anew (``global conn; conn = connect()``) or changed in place
    (``STATE["conn"] = connect()``, as much code does instead): a global whose pickled
    form differs after the initializer ran, or that cannot be pickled, counts as set.
    """
    target: Any = initializer
    while isinstance(target, functools.partial):  # partial(init, url): init's globals
        target = target.func
    # by value (loky's, an Executor's), or the worker's own __main__ (a multiprocessing
    # Pool's: forked, or the script imported again as __mp_main__), whose globals the
    # tasks' functions sent by value do not share
    main = type(target) is types.FunctionType and getattr(target, "__module__", None) in _MAINS
    by_value = _by_value(target)
    before = dict(target.__globals__) if by_value or main else None
    # in place: only values its code (and its module's functions it calls) names, marked
    # (the module may hold much else, large: each mark is a pickle)
    named = before if by_value or before is None else _reached(target, before)
    marks = {k: _mark(v) for k, v in named.items() if not isinstance(v, _UNCHANGING)} if named else {}
    from . import registries

    registries.withdraw()  # (it may register what the parent did: matplotlib refuses a name taken)
    from .mirror import keep_own, note_own, rebase, take_settings

    if created is not None and key == POOL:  # a new worker of the pool: the parent's, first
        take_settings(created)
    filters = list(warnings.filters)  # (after: the parent's are not the initializer's own)
    own = note_own()
    initializer(*initargs)
    warnfilters.keep_own(filters)  # the warnings filters it set stay ahead of the parent's
    keep_own(own, created)  # its process settings: until the parent changes them (workers.mirror)
    rebase()  # what else it set is the worker's own, under the parent's (workers.mirror)
    if before is not None:
        now = target.__globals__
        changed = {k: v for k, v in now.items() if (k not in before or before[k] is not v) and not _dunder(k)}
        for k, mark in marks.items():
            if k not in changed and k in now and _mark(now[k]) != mark:
                changed[k] = now[k]
        if changed:
            module = target.__module__
            _overlays[key] = ("__main__" if module in _MAINS else module, changed)
            for func in list(_adopted.get(key, ())):
                _give(func, key)


# Values an initializer cannot change in place: not looked at by _mark.
_UNCHANGING = (
    int,
    float,
    complex,
    str,
    bytes,
    bool,
    type(None),
    frozenset,
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
)


_MARKED_UP_TO = 1 << 24  # bytes (an array's) or items: a larger value is looked at by identity


# the mark of a value too large to pickle twice at each worker's start (equal to itself
# only: a large array the initializer only reads, or fills in place, counts as unset)
_UNMARKED = object()


def _mark(value: Any) -> Any:
    """What *value* pickles to now; a new object (equal to nothing) when it cannot be pickled."""
    try:
        size = value.nbytes if hasattr(value, "nbytes") else len(value) if hasattr(value, "__len__") else 0
    except Exception:  # noqa: BLE001 - a size it cannot tell: pickled, as others
        size = 0
    if isinstance(size, int) and size > _MARKED_UP_TO:
        return _UNMARKED
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - a connection, a lock: taken as set by the initializer
        return object()


def adopt(token: str, func: Any) -> None:
    """A function rebuilt for *token* (a call's or an executor's): give it the globals its
    module's initializer set, the pool's and *token*'s, now or when that one runs.

    A ``functools.partial`` or a bound method gives them to the function it calls.
    """
    while isinstance(func, (functools.partial, types.MethodType)):
        func = func.func if isinstance(func, functools.partial) else func.__func__
    if not _by_value(func):
        return
    warnfilters.share_registry(func.__globals__)
    adopted = _adopted.get(token)
    if adopted is None:
        if len(_adopted) >= ADOPTED_TOKENS:
            del _adopted[next(iter(_adopted))]  # the oldest token's first batch is long over
        adopted = _adopted[token] = weakref.WeakSet()
    adopted.add(func)
    _give(func, POOL)
    _give(func, token)


def _give(func: Any, token: str) -> None:
    found = _overlays.get(token)
    if found is not None and func.__module__ == found[0]:
        func.__globals__.update(found[1])


def enter_config(backend: Any, n_jobs: Any, register: Callable[[], None] | None = None) -> None:
    """Enter ``joblib.parallel_config(backend=backend, n_jobs=n_jobs)`` for the batch's tasks.

    *register*: the parent's ``picklepool.joblib.register`` (travels by reference), run once
    here, so that a task's own ``parallel_config(backend="picklepool")`` works in the worker
    as in the parent that runs it on that backend (as ``backend="loky"`` does in a joblib
    worker; it raised joblib's "Invalid backend: picklepool").
    """
    import joblib

    if register is not None and register not in _registered:
        register()
        _registered.add(register)

    config = joblib.parallel_config(backend=backend, n_jobs=n_jobs)
    config.__enter__()
    _configs.append(config)


def leave_config() -> None:
    """Leave the config :func:`enter_config` entered (the last task of the batch)."""
    if _configs:
        _configs.pop().__exit__(None, None, None)
