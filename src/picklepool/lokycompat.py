"""Every use of loky beyond its documented API, in one module.

loky's public API is ``get_reusable_executor``, ``cpu_count`` and the executor's
``submit``/``shutdown``. picklepool also needs, and takes only from here:

- the worker processes of an executor (``executor._processes``), to name the
  task a dead worker was running and to kill a task stuck past its timeout;
- the nesting depth of the current process (``process_executor._CURRENT_DEPTH``);
- the worker's memory-leak check (``_USE_PSUTIL``, ``_MAX_MEMORY_LEAK_SIZE``,
  ``_MEMORY_LEAK_CHECK_DELAY``), which picklepool sets to have loky replace a
  worker after its current batch (memory recycling, a task that timed out); on a
  worker's first job, the locals of loky's worker loop (``_process_worker``'s
  ``call_queue`` and ``_process_reference_size``) and its ``_CallItem``, to have the
  check run after that job too (:func:`recycle_after_batch`);
- the class behind ``get_reusable_executor`` and its ``_resize``, ``_flags``,
  ``_ensure_executor_running`` (to start the workers at once, :func:`start_workers`),
  ``_max_workers`` and ``_pending_work_items``, to keep one executor per process
  instead of loky's one per thread (:func:`new_executor`, :func:`resize`,
  :func:`usable`, :func:`size`, :func:`busy`), and to tell whether a worker is idle
  (:func:`pending`), and to drop its cancelled jobs before a kill (:func:`shutdown`);
- the error loky sets on the jobs a kill fails (``ShutdownExecutorError``,
  :func:`dropped_by_kill`);
- the start methods loky registers by name in ``multiprocessing.context._concrete_contexts``
  as it is imported (``"loky"``, ``"loky_init_main"``), over joblib's vendored copy's: put
  back as they were after picklepool's import of loky (:func:`_give_back_start_methods`);
- an instance of standalone loky's start method (``backend.context.LokyContext``)
  and its resource tracker (``backend.resource_tracker``), whose ``_pid`` (and
  multiprocessing's) :func:`start_trackers` reads to lower their CPU priority;
- an executor's manager thread (``_executor_manager_thread``), and the processes
  ``multiprocessing`` still counts as children (``process._children``): those our
  start method made (tagged ``_picklepool``; the executor's ``_call_queue`` they were started
  for, the first of loky's arguments to a worker, is noted; that queue's ``_thread``
  and ``_reader``, to end a dead pool's feeder thread, :func:`end_call_queue`), retiring
  ones included, so that a pool can be stopped with a deadline
  (``executor.reaper``) without touching another pool's workers;
- loky's POSIX ``Popen`` (``popen_loky_posix.Popen``: its ``_launch``, ``_fds`` and
  ``poll``), ``spawn.get_preparation_data`` and ``spawn.prepare``, ``reduction.dump`` and
  the resource tracker's ``getfd``, and ``BaseProcess._Popen``/``_bootstrap``, to have
  the forkserver fork the workers loky starts (:func:`use_spawner`, :func:`run_worker`);
- the order of exit hooks: loky joins its manager threads from a
  ``threading._register_atexit`` hook (``process_executor._python_exit``), before
  ``atexit`` handlers run; :func:`before_loky_exit` registers a hook that runs
  before loky's, in the parent and in a worker (whose own exit joins its children
  from ``multiprocessing.util._exit_function`` first).

:data:`CHECKED` lists the loky versions this was checked against; a test pins it,
so a new loky release is read before it is trusted.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from . import signalhold
from .wire import import_path

CHECKED = ("3.4", "3.5", "3.6", "3.7")


# What a first call imports (:func:`load`): loky (and with it cloudpickle and psutil), the
# modules of loky that picklepool imports as it starts a pool's workers (_spawned_popen),
# the one loky imports as it makes its first executor (its locks: context.Lock), and those
# a backend="multiprocessing" call's pool imports (a fork start's Popen on POSIX)
_FIRST_CALL = (
    "loky",
    "cloudpickle",
    "psutil",
    "loky.backend.reduction",
    "loky.backend.resource_tracker",
    "loky.backend.spawn",
    "loky.backend.synchronize",
    "multiprocessing.pool",
    *(("loky.backend.popen_loky_posix", "multiprocessing.popen_fork") if sys.platform != "win32" else ()),
)
# held by load() as it imports, and start_trackers() as they start; a fork waits for it
_loading = threading.RLock()
_loaded: set[tuple[str, ...]] = set()  # the modules each load(*more) imported, in full
_fork_hooked = False
_fork_taker: int | None = None  # the thread whose fork took _loading (_before_fork), until its end


def load(*more: str) -> None:
    """Import loky in full now (and so cloudpickle and psutil), then the modules *more*.

    picklepool imports loky as first used, so that a first call starts its forkserver
    before loky's imports (``executor.backends.prepare``); a call imports it here
    before its backend starts a process. A process forked while another thread
    imports a module inherits that module half imported, and its lock held for ever
    (its first ``import`` of it waits for ever): a fork made by any thread
    (``os.fork()``, a ``multiprocessing`` worker) while these imports run waits
    until they have ended (``os.register_at_fork``).
    """
    if more in _loaded:
        return
    # held (``signalhold``): what a handler raised in them was caught by their own fallbacks
    # (psutil's, reading /proc) and lost; a first call's Ctrl-C waits for their end (~0.1 s)
    with _loading, signalhold.held(), _unusable_loky_pickler_hidden():
        _hook_fork()
        before = set(sys.modules)
        for name in (*_FIRST_CALL, *more):
            _import(name, before)
        _loaded.add(more)


def import_loky() -> Any:
    """loky itself, imported as :func:`load` imports it (for what needs loky alone: its
    ``cpu_count``): a bad ``LOKY_PICKLER`` is the error :func:`loky_pickler_error` says,
    not loky's missing module, and a failed import leaves nothing half imported."""
    module = _imported("loky")
    if module is None:
        with _loading, _unusable_loky_pickler_hidden():
            _hook_fork()
            module = _import("loky", set(sys.modules))
    return module


@contextlib.contextmanager
def _unusable_loky_pickler_hidden() -> Iterator[None]:
    """Inside, no ``LOKY_PICKLER`` in the environment if loky, not imported yet, could not use
    its value (:func:`loky_pickler_error`): loky's import failed on it, and with it every
    call, also those that start no loky worker (``n_jobs=1``, ``backend="threading"``, which
    import the dispatch code, loky with it), where ``import joblib`` fails on it. A call on
    loky's workers, which read it as they start, still raises the error (``backends.prepare``).
    """
    value = os.environ.get("LOKY_PICKLER")
    if value is None or "loky" in sys.modules or loky_pickler_error() is None:
        yield
        return
    del os.environ["LOKY_PICKLER"]
    try:
        yield
    finally:
        os.environ.setdefault("LOKY_PICKLER", value)


def _imported(name: str) -> Any:
    """The module *name* if it is imported in full, else None.

    ``sys.modules`` holds a module from the start of its import: while another thread
    imports it (a first call's :func:`load`), its names are not all set yet, and one
    read then failed ("partially initialized module 'loky' has no attribute
    'cpu_count'"). For None, import it: ``importlib.import_module`` waits for the
    import under way, as an ``import`` statement does.
    """
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module


def _import(name: str, before: set[str]) -> Any:
    kept = _start_methods()
    try:
        return importlib.import_module(name)
    except BaseException as exc:
        if name.partition(".")[0] in _ROLLED_BACK:  # (imported first: nothing else yet)
            _forget_imports(before)
        # (loky's own error for a module it cannot take a Pickler from: an AttributeError)
        bad = loky_pickler_error() if isinstance(exc, Exception) else None
        if bad is not None:
            raise bad from exc
        raise
    finally:
        _give_back_start_methods(kept)


# the start methods loky registers by name in multiprocessing as it is imported, as joblib's
# vendored copy of loky does: the copy imported last has them
_SHARED_START_METHODS = ("loky", "loky_init_main")


def _start_methods() -> dict[str, Any]:
    """The contexts ``multiprocessing`` has now under :data:`_SHARED_START_METHODS`."""
    from multiprocessing import context

    registered = context._concrete_contexts  # type: ignore[attr-defined]
    return {name: registered[name] for name in _SHARED_START_METHODS if name in registered}


def _give_back_start_methods(kept: dict[str, Any]) -> None:
    """Register again the start methods *kept* (:func:`_start_methods`) an import replaced.

    Importing loky registers its start methods under the names joblib's vendored copy
    registered as it was imported, and joblib's executors ask for them by name: once
    picklepool had imported loky, joblib's own next loky pool (a scikit-learn ``n_jobs=``
    outside a picklepool config) started its workers with standalone loky's loader, which
    had not set up joblib's resource tracker for them: each worker started one of its own,
    which printed a ``KeyError`` traceback for each memmapped argument and "leaked file
    objects" at the exit. picklepool's own pools use an instance of loky's start method
    (:func:`start_method`), not its name, so what was registered before stays.
    """
    from multiprocessing import context

    for name, ctx in kept.items():
        context._concrete_contexts[name] = ctx  # type: ignore[attr-defined]


def loky_pickler_error() -> Exception | None:
    """The error a call raises when ``LOKY_PICKLER`` names no module loky can use, else None.

    loky reads that variable as it is imported, in this process and in every worker,
    imports its value as a module and subclasses the module's ``Pickler``: picklepool's own
    names (``hybrid``, ``package.module:Class``) fail there, before picklepool reads the
    variable, with loky's error about a missing module (and a worker server's traceback on
    stderr); so did a module that exists but has no ``Pickler`` class (``os``: loky's
    ``AttributeError``) or whose import raises.
    """
    value = os.environ.get("LOKY_PICKLER")
    if not value or value in ("pickle", "cloudpickle"):
        return None
    module = sys.modules.get(value)  # (once imported, as at every call after the first)
    if module is None:
        try:
            found = importlib.util.find_spec(value) is not None
        except (ImportError, ValueError):  # a parent package missing, a name that is not a module's
            found = False
        if not found:
            return _loky_pickler_refused(value, "there is no such module")
    if module is None:  # (loky imports it anyway, as it is imported)
        try:
            module = importlib.import_module(value)
        except Exception as exc:  # noqa: BLE001 - the module's own failure, whatever it is
            return _loky_pickler_refused(value, f"importing it raised {type(exc).__name__}: {exc}")
    if not isinstance(getattr(module, "Pickler", None), type):
        return _loky_pickler_refused(value, "that module has no Pickler class for loky to use")
    return None


def _loky_pickler_refused(value: str, why: str) -> Exception:
    from .errors import SettingValueError

    return SettingValueError(
        f"LOKY_PICKLER={value!r}: loky imports this variable's value as a module when it is "
        f"imported (in this process and in every worker), and {why}. "
        "Name picklepool's picklers ('hybrid', 'package.module:Class') in PICKLEPOOL_PICKLER "
        "instead, and unset LOKY_PICKLER or set it to 'pickle' or 'cloudpickle'."
    )


# the packages whose modules a failed load() takes back out of sys.modules
_ROLLED_BACK = ("loky", "cloudpickle", "psutil")


def _forget_imports(before: set[str]) -> None:
    """After a failed import of loky, cloudpickle or psutil in :func:`load` (a Ctrl-C, an
    ImportError): drop the modules of those three it imported, so that the next call
    imports them all again. (Only then: a module of picklepool imported after them
    holds them, and must not see a second copy.)

    A module whose import failed is dropped by Python, but not the modules it had
    imported, whose own imports did side effects on it: loky's ``_posix_reduction``
    registers its reducers (a pipe's descriptors, passed to a worker) in the
    ``reduction`` module that then failed; a new ``reduction`` lacked them, and every
    worker of every later call died reading its queue (``EBADF``).
    """
    for name in set(sys.modules) - before:
        if name.partition(".")[0] in _ROLLED_BACK:
            sys.modules.pop(name, None)


def _hook_fork() -> None:
    """Have every fork of this process wait for :func:`load`'s imports (once per process)."""
    global _fork_hooked
    if _fork_hooked or not hasattr(os, "register_at_fork"):
        return
    _fork_hooked = True  # (inherited by a forked child, as the hooks are)
    # logging's own hook holds its lock across a fork, and loky's imports take it: its
    # hook must run after ours (hooks registered earlier run later), never hold it
    # while ours waits for imports that need it
    import logging  # noqa: F401

    # Twice: a signal handler's exception raised as a hook is entered, before its first line
    # (Python runs handlers there too), skips that run; the other run does its work, and
    # one that finds it done does nothing
    for _ in range(2):
        os.register_at_fork(
            before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
        )


def _before_fork() -> None:
    """Wait for :func:`load`'s imports, whatever a signal handler raises meanwhile.

    An exception of an at-fork hook does not stop the fork: Python prints it ("Exception
    ignored") and forks all the same. A Ctrl-C that ended the wait then forked without it
    (the child got the imports half done and hung; the parent's release failed too). The
    wait goes on; the exception (the first) is raised once the lock is held: Python prints
    it, as for any hook's, and forks.

    The lock is taken once, wherever the handler's exception comes: Python runs a handler
    after a call returns too, so a Ctrl-C handled just as the acquire had taken the lock
    (one that came as the wait ended, or while this thread waited for the interpreter)
    took it a second time; :func:`_after_fork_in_parent` let it go once, and the parent
    held it for ever: the first call's thread hung at its next step. Whether it is held
    is asked of the lock (``RLock._is_owned``, CPython's, as ``threading.Condition`` uses),
    not of a variable the handler may cut before it is set. A thread forking inside its
    own :func:`load` (holding the lock) has nothing to wait for and takes nothing. Each
    fork runs it twice (:func:`_hook_fork`): the second run finds the lock held (taken by
    the first) and does nothing, unless a handler cut the first before its first line.
    """
    global _fork_taker
    caught: BaseException | None = None
    held_before: bool | None = None
    while True:
        try:
            if held_before is None:  # (or taken by this fork's other run of this hook)
                held_before = _loading._is_owned()  # type: ignore[attr-defined]
            if held_before:
                break
            if not _loading._is_owned():  # type: ignore[attr-defined]
                _loading.acquire()
            _fork_taker = threading.get_ident()
            break
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt: raised once the lock is held
            caught = caught or exc
    if caught is not None:
        raise caught


def _after_fork_in_parent() -> None:
    global _fork_taker
    # (not taken: this thread held it before the fork, or the hooks were registered as
    # this fork ran them)
    if _fork_taker == threading.get_ident():
        _fork_taker = None
        _loading.release()


def _after_fork_in_child() -> None:
    global _loading, _fork_taker
    _fork_taker = None
    _loading = threading.RLock()  # the parent's is held (by this thread, as it forked)


def loky_version() -> str:
    return str(import_loky().__version__)


def worker_processes(executor: Any) -> dict[int, Any]:
    """pid -> process of a loky executor's live workers (empty when unknown)."""
    return dict(getattr(executor, "_processes", None) or {})


def depth() -> int:
    """How deep this process is in loky's nesting: 0 in a parent, 1 in its workers."""
    pe = sys.modules.get("loky.process_executor")
    return int(getattr(pe, "_CURRENT_DEPTH", 0) or 0)


def any_depth() -> int:
    """As :func:`depth`, counting joblib's vendored loky too: 1 in a joblib worker."""
    found = depth()
    if found:
        return found
    pe = sys.modules.get("joblib.externals.loky.process_executor")
    return int(getattr(pe, "_CURRENT_DEPTH", 0) or 0)


def _worker_module() -> Any:
    """loky's process_executor module if this process is one of its workers, else None."""
    pe = sys.modules.get("loky.process_executor")
    if pe is None or getattr(pe, "_CURRENT_DEPTH", 0) < 1:
        return None
    return pe


def supports_recycling(pe: Any = None) -> bool:
    """True when loky's memory-leak check has the knobs :func:`recycle_after_batch` sets."""
    if pe is None:
        pe = _imported("loky.process_executor") or _import("loky.process_executor", set(sys.modules))
    return bool(
        getattr(pe, "_USE_PSUTIL", False)
        and hasattr(pe, "_MAX_MEMORY_LEAK_SIZE")
        and hasattr(pe, "_MEMORY_LEAK_CHECK_DELAY")
    )


def leak_check() -> tuple[float, int]:
    """loky's memory-leak check in its workers: ``(seconds between checks, bytes of growth allowed)``.

    Read at each use: :func:`recycle_after_batch` changes them in a worker that must retire.
    """
    pe = _imported("loky.process_executor") or _import("loky.process_executor", set(sys.modules))
    return float(getattr(pe, "_MEMORY_LEAK_CHECK_DELAY", 1.0)), int(getattr(pe, "_MAX_MEMORY_LEAK_SIZE", 3e8))


_NEVER_ENOUGH = -(1 << 62)  # loky's allowed growth when this worker must retire


def recycle_after_batch() -> bool:
    """In a loky worker: have loky replace this process once its current job is answered.

    loky checks a worker's memory growth after each job and exits it cleanly (the
    executor starts a new one) when the growth passes ``_MAX_MEMORY_LEAK_SIZE``;
    setting the check to "always, and always too much" retires this worker.
    Returns False outside a loky worker, or when loky lacks the check.
    """
    pe = _worker_module()
    if pe is None or not supports_recycling(pe):
        return False
    pe._MEMORY_LEAK_CHECK_DELAY = -1.0
    pe._MAX_MEMORY_LEAK_SIZE = _NEVER_ENOUGH
    _check_after_first_job(pe)
    return True


_NO_JOB = -1  # the work id of the job below: none of the parent's (loky counts from 0)


def _check_after_first_job(pe: Any) -> None:
    """On a worker's first job, make loky's check run right after it anyway.

    loky's worker loop takes its reference size after a worker's first job and checks
    only from the second on, so a worker retiring in its first job would take another
    batch (a task that timed out, or a call past ``max_worker_memory``, on a fresh
    worker). In that case the loop's next ``call_queue.get`` returns a no-op job whose
    result goes to no future (the parent drops a result for a work id it does not
    have); loky's check after it then retires the worker, and the real jobs stay in the
    queue for the others.
    """
    loop = getattr(getattr(pe, "_process_worker", None), "__code__", None)
    frame: Any = sys._getframe(1)
    while frame is not None and frame.f_code is not loop:
        frame = frame.f_back
    if frame is None:  # not inside loky's worker loop (a lane, another loky)
        return
    state = frame.f_locals
    queue = state.get("call_queue")
    if state.get("_process_reference_size", 0) is not None or queue is None or "get" in vars(queue):
        return  # loky checks after this job, or this loop is not the one read

    def no_op_job(*args: Any, **kwargs: Any) -> Any:
        del queue.get
        return pe._CallItem(_NO_JOB, int, (), {})

    queue.get = no_op_job


_context: Any = None
# worker process -> a weak reference to the call queue of the executor it was started for
_queues: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def start_method() -> Any:
    """Our own instance of loky's start method.

    loky and joblib's vendored copy both register a start method named "loky", and
    the one imported last wins: asking for it by name could start picklepool's
    workers with joblib's loader. An instance of standalone loky's context does not
    depend on import order. The processes it starts carry a ``_picklepool`` tag
    (:func:`started_workers`).
    """
    global _context
    if _context is None:
        from loky.backend.context import LokyContext
        from loky.backend.process import LokyProcess

        def tagged(*args: Any, **kwargs: Any) -> Any:
            proc = LokyProcess(*args, **kwargs)
            proc._picklepool = True  # see started_workers()
            proc._Popen = _start_worker  # BaseProcess.start() calls self._Popen(self)
            worker_args = kwargs.get("args", ())  # loky passes them by keyword
            try:  # they start with its executor's call queue (see started_for); kept here,
                # not on the process, which loky pickles to start it
                _queues[proc] = weakref.ref(worker_args[0])
            except (IndexError, TypeError):
                pass
            return proc

        class Context(LokyContext):  # type: ignore[misc]
            Process = staticmethod(tagged)

        _context = Context()
    return _context


_spawner: Any = None  # executor.forkserver.spawn, or None: workers start as loky starts them
_popen: Any = None  # the Popen class of _start_worker


def use_spawner(spawner: Any) -> None:
    """Start this process's workers with *spawner* (None: as loky does).

    ``spawner(fds, env, pipe)`` starts a worker process that gets the descriptors
    *fds* at the same numbers and the environment *env*, and runs :func:`run_worker`
    on *pipe* (one of *fds*); it returns ``(pid, status)``, *status* a pipe that
    yields the process's exit code once it has ended (8 bytes, as
    ``os.waitstatus_to_exitcode``), or None, and loky starts the worker itself.
    """
    global _spawner
    _spawner = spawner


def _start_worker(process_obj: Any) -> Any:
    global _popen
    if _popen is None:
        _popen = _spawned_popen()
    return _popen(process_obj)


def _spawned_popen() -> Any:
    """loky's ``Popen`` for POSIX, starting the process with the :func:`use_spawner` spawner.

    Reuses ``popen_loky_posix.Popen``: its ``_launch`` (the preparation data, the
    descriptors it passes, ``set_spawning_popen``), with the ``fork_exec`` of a new
    interpreter replaced by the spawner, and its ``poll`` (``os.waitpid``, which only
    a process's parent may call) by a read of the status pipe. The sentinel is
    loky's: a pipe whose writing end the worker holds, ready when it is ending.
    """
    import struct
    from io import BytesIO
    from multiprocessing import util
    from multiprocessing.connection import wait
    from multiprocessing.context import set_spawning_popen

    from loky.backend import popen_loky_posix, reduction, resource_tracker, spawn

    code = struct.Struct("q")  # workers.forkserver.CODE (that module imports this one)

    class Popen(popen_loky_posix.Popen):  # type: ignore[misc]
        __module__ = popen_loky_posix.__name__  # loky's _launch runs ``python -m`` this class's module
        _status: int | None = None
        _fds: list[int]  # (loky's attributes)
        returncode: int | None

        def __init__(self, process_obj: Any) -> None:
            # loky's flushes sys.stdout and sys.stderr first (a forked child would write
            # their buffers again), which fails the call when the caller's stream is an
            # object with only a write (print needs no more): such a one is passed over
            for stream in (sys.stdout, sys.stderr):
                flush = getattr(stream, "flush", None)
                if flush is not None:
                    try:
                        flush()
                    except Exception:  # noqa: BLE001, S110 - the caller's stream object, whatever it does
                        pass
            self.returncode = None
            self._fds = []
            self._launch(process_obj)

        def _launch(self, process_obj: Any) -> None:
            spawner = _spawner
            if spawner is None or sys.platform == "win32":
                super()._launch(process_obj)
                return
            tracker_fd = resource_tracker._resource_tracker.getfd()
            fp = BytesIO()
            set_spawning_popen(self)
            try:
                prep_data = spawn.get_preparation_data(
                    process_obj._name, getattr(process_obj, "init_main_module", True)
                )
                if "sys_path" in prep_data:  # the entries imports use (wire.import_path)
                    prep_data["sys_path"] = list(import_path())
                reduction.dump(prep_data, fp)
                reduction.dump(process_obj, fp)
            finally:
                set_spawning_popen(None)
            parent_r, child_w = os.pipe()
            child_r, parent_w = os.pipe()
            try:
                fds = [*self._fds, child_r, child_w, tracker_fd, prep_data.get("mp_tracker_fd")]
                # each once, in loky's order (multiprocessing's tracker: loky >= 3.5 passes it)
                fds = [fd for fd in dict.fromkeys(fds) if fd is not None]
                started = spawner(fds, {**os.environ, **(process_obj.env or {})}, child_r)
            except BaseException:
                for fd in (parent_r, child_w, child_r, parent_w):
                    os.close(fd)
                raise
            os.close(child_r)
            os.close(child_w)
            if started is None:  # the spawner cannot start this one: loky does
                os.close(parent_r)
                os.close(parent_w)
                self._fds = []
                super()._launch(process_obj)
                return
            self.pid, self._status = started
            self.sentinel = parent_r
            util.Finalize(self, os.close, (parent_r,))
            util.Finalize(self, os.close, (self._status,))
            with os.fdopen(parent_w, "wb") as f:
                f.write(fp.getbuffer())

        def poll(self, flag: int = os.WNOHANG) -> int | None:
            if self._status is None:
                return super().poll(flag)  # type: ignore[no-any-return]
            if self.returncode is None:
                if flag == os.WNOHANG and not wait([self._status], 0):
                    return None
                try:
                    got = os.read(self._status, code.size)
                except OSError:
                    got = b""
                if len(got) == code.size:
                    self.returncode = code.unpack(got)[0]
                elif flag == os.WNOHANG and not wait([self.sentinel], 0):
                    return None  # the forkserver died before it: the worker still runs
                else:
                    wait([self.sentinel])  # ...until it ends; its exit code is lost
                    self.returncode = 255
            return self.returncode  # type: ignore[no-any-return]

    return Popen


def run_worker(pipe: int) -> int:
    """Become a loky worker, as ``python -m loky.backend.popen_loky_posix --pipe PIPE`` does.

    Reads the preparation data and the process object from *pipe* (loky's
    ``spawn.prepare``), then runs the worker; returns its exit code. In a process
    forked by ``workers.forkserver``.
    """
    import pickle
    from multiprocessing import process

    from loky.backend import spawn

    me: Any = process.current_process()
    with os.fdopen(pipe, "rb") as from_parent:
        me._inheriting = True
        try:
            prep_data = pickle.load(from_parent)
            spawn.prepare(prep_data)
            process_obj = pickle.load(from_parent)
        except FileNotFoundError as exc:
            if not _semaphore_gone(exc):
                raise
            return 0  # its pool was stopped as it started: nobody waits for it
        finally:
            del me._inheriting
    return int(process_obj._bootstrap())


def _semaphore_gone(exc: BaseException) -> bool:
    """Whether *exc* is a pool's semaphore (loky's ``SemLock``) that could not be opened
    as the process object was read: the pool was stopped (its semaphores unlinked) while
    this worker started, as a Ctrl-C or a failed call's stop does. Such a worker ends
    quietly, as loky's own does when its pool has gone once it runs."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    code = tb.tb_frame.f_code
    return (
        code.co_name == "__setstate__" and tb.tb_frame.f_globals.get("__name__") == "loky.backend.synchronize"
    )


def track_folder(path: str, register: bool = True) -> bool:
    """Have loky's resource tracker remove *path* should this process be killed.

    Held (``signalhold``): the first one starts the tracker, a process, and what a signal
    handler raised meanwhile was taken for the tracker's failure (an alarm's deadline lost,
    a tracker started and not recorded by loky).
    """
    try:
        from loky.backend import resource_tracker

        with signalhold.held():
            if register:
                resource_tracker.register(path, "folder")
            else:
                resource_tracker.unregister(path, "folder")
    except Exception as exc:  # noqa: BLE001 - tracker unavailable: the folder is removed at exit anyway
        if signalhold.from_handler(exc):  # (raised at the hold's end)
            raise
        return False
    return True


def new_executor(
    n_workers: int,
    idle_timeout: float,
    env: dict[str, str] | None,
    initializer: Any = None,
    initargs: tuple[Any, ...] = (),
    before_start: Any = None,
) -> Any:
    """A new loky executor with reusable-executor resizing, owned by the caller.

    *before_start* is called with the executor before its workers start.

    ``loky.get_reusable_executor`` keeps one executor *per thread* (loky 3.7): calls
    from several threads would each start their own pool. picklepool keeps one for
    the process (``executor.pool``) and builds it with the same class.
    """
    from loky.reusable_executor import _get_next_executor_id, _ReusablePoolExecutor

    unlink_failed_semaphores()
    start_trackers()
    # A fork made meanwhile by another thread waits (see load): loky's executor imports as
    # it is made (it tries `import viztracer` at each), and a fork made during an import
    # gave the child that module's import lock held: its first call hung in that import.
    with _loading:
        _hook_fork()
        executor = _ReusablePoolExecutor(
            max_workers=n_workers,
            context=start_method(),
            timeout=idle_timeout,
            executor_id=_get_next_executor_id(),
            initializer=initializer,
            initargs=initargs,
            env=env,
        )
    guard_close(result_writer(executor))
    hold_worker_starts(executor)
    if before_start is not None:
        before_start(executor)
    start_workers(executor)
    return executor


def unlink_failed_semaphores() -> None:
    """Have loky's ``SemLock.__init__`` unlink the named semaphore it made when it then fails.

    It makes the semaphore (``/dev/shm/sem.loky-<pid>-*``), then registers it with loky's
    resource tracker, which starts the tracker, and only then arranges its unlink when the
    object goes (``util.Finalize``): a program out of file descriptors (the tracker cannot
    start: ``EMFILE``) got its error, and the semaphore stayed in ``/dev/shm`` after its
    exit, with no process left to remove it. One made from a name it was given (another
    process's) is left as it is. Once per process; idempotent.

    Imported by its full name: ``loky.backend``'s ``__init__`` binds ``synchronize`` to
    ``multiprocessing.synchronize``, so ``from loky.backend import synchronize`` gave the
    standard library's module while loky's was not imported yet, and the patch broke every
    ``multiprocessing.Lock()`` of the process (its ``ctx=`` refused).
    """
    synchronize = importlib.import_module("loky.backend.synchronize")

    cls = synchronize.SemLock
    init = cls.__init__
    if getattr(init, "_picklepool_unlinks", False):
        return

    def __init__(self: Any, kind: Any, value: Any, maxvalue: Any, name: Any = None) -> None:
        try:
            init(self, kind, value, maxvalue, name)
        except BaseException:
            made = getattr(getattr(self, "_semlock", None), "name", None) if name is None else None
            if made is not None:
                with contextlib.suppress(Exception):
                    synchronize.sem_unlink(made)
                with contextlib.suppress(Exception):  # (registered before the failure)
                    synchronize.resource_tracker.unregister(made, "semlock")
            raise

    __init__._picklepool_unlinks = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


def hold_worker_starts(executor: Any) -> None:
    """Make *executor*'s worker starts whole: a signal handler's exception is raised after them.

    ``_adjust_process_count`` makes each worker's exit semaphore (``SemLock``, unlinked only
    by a finalizer its ``__init__`` sets up last), starts the process and lists it in the
    pool's ``_processes`` (and ``multiprocessing``'s children): cut in between by an alarm's
    exception or Ctrl-C in the main thread, a semaphore stayed in ``/dev/shm``, or a worker
    that nobody stopped booted into a pool gone. Held (``signalhold``), but for the wait for
    the forkserver's reply, which ``executor.forkserver.spawn`` lets through and undoes.
    An instance attribute, as :func:`shutdown`'s, reaching the executor weakly.
    """
    ref = weakref.ref(executor)
    adjust = type(executor)._adjust_process_count

    def held_adjust() -> None:
        this = ref()
        if this is not None:
            with signalhold.held():
                adjust(this)

    executor._adjust_process_count = held_adjust


def guard_close(conn: Any) -> None:
    """Make *conn*'s ``close()`` (a ``multiprocessing`` ``Connection``) safe from two threads.

    ``Connection.close`` reads its descriptor, closes it (without the GIL), then forgets
    it: two threads closing at once both closed the number, and the second failed with
    ``EBADF`` (or closed whatever file had just been given that number). Two do close a
    pool's result pipe writer: loky's manager thread as it ends the pool
    (``join_executor_internals``), and :func:`end_result_pipe`, run by the reaper as
    it kills the workers: the manager thread died of it ("Exception in executor manager
    thread ... Bad file descriptor"). This instance's ``close`` now holds a lock, so the
    second caller finds it closed.
    """
    if conn is None or "close" in vars(conn):
        return
    lock = threading.Lock()
    close = type(conn).close
    ref = weakref.ref(conn)  # (the instance holds this function: no cycle through it)

    def locked_close() -> None:
        with lock:
            this = ref()
            if this is not None:
                close(this)

    conn.close = locked_close


def start_workers(executor: Any) -> None:
    """Start *executor*'s worker processes now rather than at its first ``submit``.

    A worker takes ~100 ms of CPU to start (Python, then loky's imports): started
    here, it boots while the caller prepares and pickles its first batches, instead
    of after. Uses ``_ensure_executor_running`` (what loky's ``submit`` calls). A start
    that fails (a deleted working folder, no more processes) is left to that first
    ``submit``, which tries again and raises after the call's own checks, as before.
    """
    ensure = getattr(executor, "_ensure_executor_running", None)
    if ensure is not None:
        try:
            ensure()
        except OSError:
            pass


TRACKER_NICENESS = 10  # added to the resource trackers' CPU niceness (0: leave it)


def start_trackers() -> None:
    """Start loky's and multiprocessing's resource trackers now, at a lower CPU priority.

    loky starts both when it launches its first worker (it hands each worker their
    pipes). They are bookkeeping processes: they import loky (over 100 ms of CPU
    here) and then sleep until the parent exits, when they remove what was leaked.
    Started together with the workers, they take half the cores while the workers
    start; with a higher niceness the workers come up first and the trackers finish
    their imports in the cores' idle time. What they do and when is unchanged. A
    tracker already running (the user's multiprocessing one) is left as it is.
    Uses ``_resource_tracker`` and its ``_pid`` of both modules.
    """
    from multiprocessing import resource_tracker as mp_tracker

    from loky.backend import resource_tracker as loky_tracker

    # A fork made meanwhile by another thread waits (see load): multiprocessing's tracker
    # holds its lock as it starts, and a forked child's copy (not reset before Python
    # 3.14.7) stayed held: the child's first call hung in its ensure_running.
    with _loading:
        _hook_fork()
        for module in (loky_tracker, mp_tracker):
            tracker = getattr(module, "_resource_tracker", None)
            if tracker is None or getattr(tracker, "_pid", 0) is not None:
                continue  # running already, or a tracker of another shape
            try:
                tracker.ensure_running()
                pid = tracker._pid
                if TRACKER_NICENESS and pid and hasattr(os, "setpriority"):
                    niceness = os.getpriority(os.PRIO_PROCESS, pid) + TRACKER_NICENESS
                    os.setpriority(os.PRIO_PROCESS, pid, niceness)
            except OSError:  # the start itself: loky tries again at its first worker, and says why
                continue


def resize(executor: Any, n_workers: int) -> None:
    """Make *executor* run *n_workers* processes (waits for its running jobs first)."""
    executor._resize(n_workers)


def usable(executor: Any) -> bool:
    """False once *executor* is broken (a worker died) or shut down."""
    flags = getattr(executor, "_flags", None)
    return not (broken(executor) or flags is not None and flags.shutdown)


def flag_broken(executor: Any, error: BaseException) -> None:
    """Mark *executor* broken with *error*, as loky does when a worker dies (its
    ``submit`` raises then, :func:`usable` is False): for a death loky did not see."""
    flags = getattr(executor, "_flags", None)
    if flags is not None:
        flags.flag_as_broken(error)


def broken(executor: Any) -> bool:
    """True once a worker of *executor* died (loky then ends the pool)."""
    flags = getattr(executor, "_flags", None)
    return flags is not None and bool(flags.broken)


def size(executor: Any) -> int:
    """How many worker processes *executor* runs (its ``max_workers``)."""
    return int(executor._max_workers)


def busy(executor: Any) -> bool:
    """True while *executor* still has jobs submitted and not finished."""
    return bool(getattr(executor, "_pending_work_items", None))


def pending(executor: Any) -> int:
    """How many jobs *executor* holds, queued or running (0 when unknown)."""
    return len(getattr(executor, "_pending_work_items", None) or ())


def shutdown(executor: Any, kill: bool) -> None:
    """``executor.shutdown(wait=False, kill_workers=kill)``, safe with cancelled futures.

    With *kill*, loky's manager thread sets an exception on every job it still
    holds, and a job whose future was cancelled (a dropped ``return_as="generator"``
    cancels what it had sent) makes that raise ``InvalidStateError``: the thread
    dies before it joins the workers and unlinks the executor's semaphores, which
    leak until the interpreter exits. So each cancelled job gets a stand-in future
    that is cancelled too but takes that exception quietly (the job stays where
    loky looks it up).

    And loky's ``shutdown(wait=False)`` sets the executor's process lock to None while
    its manager thread may still be replacing a worker that left (recycled for memory,
    ``max_worker_memory``; idle): ``with executor._processes_management_lock`` then
    raised ``TypeError`` there ("Exception in executor manager thread", at a call's
    end or the interpreter's exit). The lock is given back, and a pool shutting down
    starts no worker (one started then had no queues to read).
    """
    if kill:
        jobs = getattr(executor, "_pending_work_items", None)
        if isinstance(jobs, dict):
            for job in list(jobs.values()):
                if job.future.cancelled():
                    job.future = _Dropped()
    lock = getattr(executor, "_processes_management_lock", None)
    executor._adjust_process_count = _no_new_workers  # an instance attribute: this executor only
    executor.shutdown(wait=False, kill_workers=kill)
    if lock is not None and getattr(executor, "_processes_management_lock", lock) is None:
        executor._processes_management_lock = lock


def stop_joblib_pool(deadline: float) -> None:
    """Kill the workers of the pool joblib's own (vendored) loky runs in this process, if any,
    and wait up to *deadline* seconds for its manager thread (which unlinks its semaphores).

    For a picklepool worker's exit: a task that ran ``joblib.Parallel`` on joblib's loky
    backend left that pool here, and nothing told it to stop (a joblib worker tells it at
    its exit: ``joblib.externals.loky.process_executor._python_exit``, which picklepool's
    loky does not know of), so the exit joined its workers for ever (until the parent
    killed this worker). Uses joblib's ``reusable_executor._executor`` (the one pool
    joblib's loky backend keeps per process) and the executor's ``shutdown``.
    """
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(module, "_executor", None)
    if executor is None:
        return
    thread = manager_thread(executor)
    try:
        executor.shutdown(wait=False, kill_workers=True)
    except Exception:  # noqa: BLE001 - at exit: this worker leaves anyway
        return
    if thread is not None and thread is not threading.current_thread():
        thread.join(deadline)


def _no_new_workers() -> None:
    """An executor shutting down starts no worker (``shutdown``)."""


def dropped_by_kill(exc: BaseException) -> bool:
    """True for loky's error on a job its executor's ``shutdown(kill_workers=True)`` failed.

    loky sets it on every job it still holds, running ones included, when its manager
    thread sees the shutdown before the workers' deaths (``ShutdownExecutorError``).
    """
    pe = sys.modules.get("loky.process_executor")
    cls = getattr(pe, "ShutdownExecutorError", None)
    return isinstance(cls, type) and isinstance(exc, cls)


class _Dropped(Future):  # type: ignore[type-arg]
    """A cancelled job's future, as loky's shutdown may still set an exception on it."""

    def __init__(self) -> None:
        super().__init__()
        self.cancel()

    def set_exception(self, exception: BaseException | None) -> None:
        pass


def manager_thread(executor: Any) -> Any:
    """The thread loky runs to feed and join an executor's workers (None before the first submit)."""
    return getattr(executor, "_executor_manager_thread", None)


def pool_threads(executor: Any) -> list[Any]:
    """The threads that end *executor*'s pool once it is shut down: its manager thread and
    its call queue's feeder thread (``multiprocessing.Queue._thread``), those started."""
    queue = getattr(executor, "_call_queue", None)
    found = [manager_thread(executor), getattr(queue, "_thread", None)]
    return [t for t in found if t is not None]


def started_workers() -> list[Any]:
    """Every worker process our start method started in this process and nobody joined yet.

    Working, idle or retiring (loky no longer lists a worker it retires while it
    waits for it to exit).
    """
    from multiprocessing import process

    children = getattr(process, "_children", ())
    return [p for p in list(children) if getattr(p, "_picklepool", False)]


def reap_workers(procs: list[Any], deadline: float) -> None:
    """Join those of *procs* (:func:`started_workers`) that end within *deadline* seconds.

    ``multiprocessing`` lists a started process until it is joined (or the next process
    starts): a worker killed under loky's manager thread stayed listed, and with it its
    exit lock, a named semaphore in ``/dev/shm``, until this process's exit. Only the
    ended ones are joined, each for as long as its exit status takes to arrive (the
    sentinel is ready a moment before it); one still running after *deadline* is left.
    """
    from multiprocessing.connection import wait

    until = time.monotonic() + deadline
    for proc in procs:
        try:
            sentinel = proc.sentinel
        except (ValueError, AttributeError):  # not started, or closed: nothing to join
            continue
        try:
            if not wait([sentinel], max(0.0, until - time.monotonic())):
                continue  # still running
            # its status: our Popen's pipe from the forkserver (_spawned_popen), else waitpid
            status = getattr(proc._popen, "_status", None)
            if status is not None and not wait([status], max(0.0, until - time.monotonic())):
                continue
            proc.join(max(0.0, until - time.monotonic()))  # (takes it off the list)
        except (OSError, ValueError, AssertionError):  # closed, or joined by loky meanwhile
            continue


def ending_workers() -> set[int]:
    """PIDs of the :func:`started_workers` whose process has ended or is ending.

    A process's sentinel (a pipe it holds) is ready once its file descriptors are
    closed, a moment before it has exited (a zombie): what loky watches, so a worker
    whose death loky reported is among these, though ``psutil`` may not see it exited yet.

    Not one already reaped (its exit code read, ``Process.exitcode``, ``is_alive``,
    though not joined yet): its pid is free then, and may be another process's already
    (what is named after it is that process's: see ``executor.leftovers.exited``).
    """
    from multiprocessing.connection import wait

    sentinels = {}
    for proc in started_workers():
        if getattr(getattr(proc, "_popen", None), "returncode", None) is not None:
            continue  # reaped: its pid may be reused
        try:
            sentinels[proc.sentinel] = proc.pid
        except ValueError:  # not started, or closed
            continue
    return {sentinels[s] for s in wait(list(sentinels), timeout=0)} if sentinels else set()


def exit_codes(pids: Iterable[int]) -> dict[int, int | None]:
    """The exit code of each of the :func:`started_workers` *pids* (None: not known yet).

    As ``Process.exitcode``: negative for a signal. Reading it reaps the process
    (its pid is free then). A worker loky joined already is no longer listed (None).
    """
    wanted = set(pids)
    return {proc.pid: proc.exitcode for proc in started_workers() if proc.pid in wanted}


def forget_parent_children() -> None:
    """In a process just forked: forget the parent's child processes.

    ``multiprocessing`` lists the processes it started in ``process._children``,
    and joins them when the process exits. A child made by ``os.fork`` inherits
    the parent's list; joining those fails ("can only join a child process",
    printed at its exit). ``multiprocessing``'s own fork start method starts its
    children with an empty list; this does the same after a raw ``os.fork``.
    """
    from multiprocessing import process

    children = getattr(process, "_children", None)
    if isinstance(children, set):
        me = os.getpid()
        children.difference_update([p for p in children if getattr(p, "_parent_pid", me) != me])


def interpreter_exiting() -> bool:
    """True once the interpreter has begun to exit (atexit handlers run after this).

    ``threading._shutdown`` has begun (the main thread has ended; the exit hooks of
    ``threading._register_atexit`` run next: picklepool's stop the pools, then loky's
    and the standard library's stop taking work), or loky's exit hook
    (``process_executor._global_shutdown``) or the standard library's thread pools'
    (``concurrent.futures.thread._shutdown``) has run. A call another thread starts
    then would start a pool that those hooks tear down as its workers boot.
    """
    if sys.is_finalizing() or getattr(sys.modules.get("threading"), "_SHUTTING_DOWN", False):
        return True  # (finalizing: a generator left in a global, closed as the modules go)
    pe = sys.modules.get("loky.process_executor")
    if pe is not None and getattr(pe, "_global_shutdown", False):
        return True
    threads = sys.modules.get("concurrent.futures.thread")
    return bool(getattr(threads, "_shutdown", False))


def result_writer(executor: Any) -> Any:
    """This process's copy of the writing end of *executor*'s result pipe (None once shut down)."""
    return getattr(getattr(executor, "_result_queue", None), "_writer", None)


def end_result_pipe(writer: Any) -> None:
    """Close this process's copy of a pool's result pipe writer (:func:`result_writer`).

    Only workers write results; loky keeps this copy open for the pool's life, so
    the pipe never ends. A worker killed while writing a result (a dropped
    generator's leftovers killed by the next call, Ctrl-C, ``shutdown(kill=True)``)
    left half a message in it, and loky's manager thread waited for the rest for
    ever, in ``recv``: the interpreter's exit, which joins that thread, then hung.
    Without this copy, once the killed workers are gone the pipe ends, the read
    fails, and the manager thread ends as for a broken pool. Results already
    written stay readable.
    """
    try:
        if writer is not None:
            writer.close()
    except OSError:
        pass


def call_queue(executor: Any) -> Any:
    """What names *executor*'s workers (:func:`started_for`); None once it is shut down."""
    return getattr(executor, "_call_queue", None)


def end_call_queue(queue: Any, deadline: float = 5.0) -> None:
    """The pool of *queue* (its :func:`call_queue`) has ended: end its feeder thread.

    The feeder thread writes each job to a pipe the workers read. A pool whose
    workers were killed (Ctrl-C, a crash, a dropped call's leftovers) with jobs
    still to write (large batches queued behind busy workers) left it blocked in
    ``write`` for ever, holding the queue, its two pipe ends and those jobs' bytes
    (as CPython's executor, gh-94777). Here the pipe is read (raw: a killed worker
    may have left half a message) until the feeder, given the queue's ``close``
    sentinel, has written what it held and returns. It reads a duplicate of the
    pipe's reading end: the feeder closes the queue's own when it ends, and that
    number may then be another pipe's. Call it only once the pool's manager thread
    has ended: no worker reads the pipe, and none will be started for it. Gives up
    after *deadline* seconds without a byte while the feeder still runs. Uses the
    queue's ``_thread`` and ``_reader``.
    """
    import select
    import time

    feeder = getattr(queue, "_thread", None)
    if feeder is None or not feeder.is_alive():
        return
    try:
        fd = os.dup(queue._reader.fileno())
    except (AttributeError, OSError, ValueError):  # closed: the feeder has ended
        return
    try:
        try:
            queue.close()  # the feeder's sentinel, after what it still holds
        except Exception:  # noqa: BLE001 - closed already (loky may have)
            pass
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        last = time.monotonic()
        while feeder.is_alive() and time.monotonic() - last < deadline:
            if poller.poll(100):
                if not os.read(fd, 1 << 20):
                    break  # every writing end is closed: the feeder has returned
                last = time.monotonic()
        feeder.join(deadline)
    finally:
        os.close(fd)


def started_for(proc: Any, queue: Any) -> bool:
    """True if *proc* (of :func:`started_workers`) was started for the executor whose
    :func:`call_queue` is *queue*, or for one that is gone (its queue freed), or if
    that cannot be told: a worker another live pool is retiring is not *queue*'s.
    """
    ref = _queues.get(proc)
    owner = ref() if ref is not None else None
    return owner is None or owner is queue


_hooks: list[tuple[int, Any]] = []  # (pid, hook) registered by before_loky_exit


def before_loky_exit(hook: Any) -> None:
    """Run *hook* at this process's exit before loky joins its executors' workers.

    In the main process: a ``threading._register_atexit`` hook registered after
    loky's own (such hooks run in reverse order). In a loky worker, which leaves
    through ``multiprocessing``'s bootstrap: also a ``multiprocessing.util.Finalize``
    of priority 100, which runs before that bootstrap joins the worker's children.
    Each registration is made once per process.
    """
    import os
    import threading
    from multiprocessing import util

    key = (os.getpid(), hook)
    if key in _hooks:
        return
    _hooks.append(key)
    once = _Once(hook)
    pe = _imported("loky.process_executor") or _import("loky.process_executor", set(sys.modules))
    _run_before(pe, once)
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        if getattr(pe, "process_pool_executor_at_exit", "absent") is None:
            # loky registers its hook lazily, at its first submit: register it now, so
            # that ours, registered after it, runs before it.
            try:
                register(pe._python_exit)
                done: Any = pe._python_exit
            except RuntimeError:  # exiting: a call the exit waits for starts its first pool
                done = _LATE  # (run_late_exit_hooks runs it; loky's submit must not register it)
            pe.process_pool_executor_at_exit = done  # type: ignore[attr-defined]  # "done"
        try:
            register(once)
        except RuntimeError:  # the interpreter is already shutting down
            pass
    util.Finalize(None, once, exitpriority=100)


_LATE = "registered too late: run by lokycompat.run_late_exit_hooks"


def run_late_exit_hooks() -> None:
    """At the interpreter's exit, once the calls it waits for have ended
    (``executor.ongoing``): run the hooks of :func:`before_loky_exit` that ``threading``
    could no longer take (a pool a call started after the main thread ended), then loky's
    own if it could not be registered either; those that ran already do not run again.
    """
    pe = sys.modules.get("loky.process_executor")
    if pe is None:
        return
    if getattr(pe, "process_pool_executor_at_exit", None) == _LATE:
        pe._python_exit()  # (ours first: _run_before)
        return
    for hook in reversed(_before_python_exit):
        try:
            hook()
        except Exception:  # noqa: BLE001 - at exit: the others all the same
            pass


class _Once:
    """*hook*, run at most once in this process (it is reached by several exit paths)."""

    def __init__(self, hook: Any) -> None:
        self.hook, self.pid = hook, os.getpid()

    def __call__(self) -> None:
        if self.pid != os.getpid():  # inherited by a fork: the child's exit is its own
            return
        self.pid = -1
        self.hook()


_before_python_exit: list[Any] = []  # _Once hooks of this process, run before loky's _python_exit


def _run_before(pe: Any, once: _Once) -> None:
    """Have loky's ``_python_exit`` run *once* first (the last registered first, as atexit's).

    A loky worker told to stop calls ``_python_exit()`` itself, before its interpreter
    exits, to end the pools it runs (its tasks' nested calls): that joined the manager
    thread of a picklepool pool a task had made, which waited for the lanes the pool's
    workers run (ending only after 10 idle seconds), and the parent killed the worker
    after 5 s ("did not stop within 5 s of shutdown"). Its hooks, run from the interpreter's
    exit, came too late.
    """
    _before_python_exit.append(once)
    original = pe._python_exit
    if getattr(original, "_picklepool_original", None) is not None:
        return

    def _python_exit() -> None:
        for hook in reversed(_before_python_exit):
            try:
                hook()
            except Exception:  # noqa: BLE001 - at exit: loky's own join still runs
                pass
        original()

    _python_exit._picklepool_original = original  # type: ignore[attr-defined]
    pe._python_exit = _python_exit


def forget_resources(resources: list[tuple[str, str]]) -> None:
    """Take each ``(name, rtype)`` off loky's resource tracker, whether it holds it or not.

    For what killed processes left behind, removed by the caller already
    (``executor.leftovers``): the tracker must not warn about it at exit. Its
    UNREGISTER fails (printing a traceback) on a name it does not hold, and drops a
    held one whatever its count, so each name is registered first. Nothing is sent
    when the tracker is not running. Uses ``_resource_tracker._pid``.
    """
    from loky.backend import resource_tracker

    tracker = getattr(resource_tracker, "_resource_tracker", None)
    if tracker is None or getattr(tracker, "_pid", None) is None:
        return
    for name, rtype in resources:
        try:
            resource_tracker.register(name, rtype)
            resource_tracker.unregister(name, rtype)
        except Exception:  # noqa: BLE001 - the tracker is gone: it removes nothing either
            return


def temp_root() -> str:
    """``tempfile.gettempdir()``, without leaving its answer in ``tempfile.tempdir``: the
    program's own temporary files go on following ``TMPDIR`` as it changes (a first call
    pinned the folder of the moment, and workers were then given it as the parent's)."""
    import tempfile

    was = tempfile.tempdir
    try:
        return tempfile.gettempdir()
    finally:
        if was is None:
            tempfile.tempdir = None
