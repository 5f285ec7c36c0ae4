"""loky's private API, used only through picklepool.lokycompat: pinned to the versions read."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import textwrap
import threading
import time

import loky
import loky.process_executor as pe
import pytest

from picklepool import lokycompat
from tests.conftest import run_python


def test_the_installed_loky_is_one_whose_private_api_was_checked():
    major_minor = ".".join(loky.__version__.split(".")[:2])
    assert major_minor in lokycompat.CHECKED, (
        f"loky {loky.__version__} is newer than the versions picklepool.lokycompat was checked "
        f"against {lokycompat.CHECKED}: read its uses of loky's private API again, then add it"
    )


def test_the_private_names_it_uses_exist():
    assert lokycompat.supports_recycling(pe)
    assert hasattr(pe, "_CURRENT_DEPTH")
    executor = loky.get_reusable_executor(max_workers=1, context=lokycompat.start_method())
    executor.submit(abs, -1).result()
    assert len(lokycompat.worker_processes(executor)) == 1
    assert lokycompat.depth() == 0
    assert lokycompat.recycle_after_batch() is False  # not a loky worker
    executor.shutdown(wait=True)


def test_resource_trackers_start_at_a_lower_cpu_priority():
    proc = run_python(
        """
        import os
        from multiprocessing import resource_tracker as mp_tracker
        from loky.backend import resource_tracker as loky_tracker
        from picklepool import Parallel, delayed

        assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        for module in (loky_tracker, mp_tracker):
            pid = module._resource_tracker._pid
            print(os.getpriority(os.PRIO_PROCESS, pid) - mine)
        """
    )
    assert proc.returncode == 0, proc.stderr
    step = lokycompat.TRACKER_NICENESS
    assert proc.stdout.split() == [str(step), str(step)]


def test_killing_an_executor_with_cancelled_jobs_leaks_nothing():
    # A dropped return_as="generator" cancels its queued jobs; killing that pool (the
    # next call finds it busy, Ctrl-C, picklepool.shutdown(kill=True)) made loky's
    # manager thread set an exception on the cancelled futures (InvalidStateError):
    # it died before it unlinked the executor's semaphores, "leaked" at exit.
    result = run_python(
        """
        import os, tempfile
        from picklepool import lokycompat
        from picklepool.executor import pool

        def wait(path):
            with open(path) as f:  # a FIFO nobody writes: runs until its worker is killed
                return f.read()

        if __name__ == "__main__":
            gate = os.path.join(tempfile.mkdtemp(), "gate")
            os.mkfifo(gate)
            executor, shared = pool.acquire(2, 300, None, None, ())
            jobs = [executor.submit(wait, gate) for _ in range(8)]  # none done: the gate is shut
            print(sum(job.cancel() for job in jobs) > 0)  # some not sent yet: cancelled
            thread = lokycompat.manager_thread(executor)
            lokycompat.shutdown(executor, kill=True)  # the manager thread sleeps until now
            thread.join(60)
            print(thread.is_alive())
            os.unlink(gate)
        """
    )
    assert result.stdout.split() == ["True", "False"], result.stderr
    assert "Exception in executor manager thread" not in result.stderr, result.stderr
    assert "leaked" not in result.stderr, result.stderr


def test_the_semaphore_unlink_patches_lokys_semlock_not_multiprocessings():
    # loky.backend binds `synchronize` to multiprocessing's module until loky's own is
    # imported: a pool made before that (tests that call pool.acquire first in their
    # process) patched multiprocessing's SemLock, and every later multiprocessing lock
    # (a backend="multiprocessing" pool's) failed: "unexpected keyword argument 'ctx'".
    result = run_python(
        """
        import sys
        import multiprocessing, multiprocessing.synchronize
        import loky.backend
        from picklepool import lokycompat

        assert "loky.backend.synchronize" not in sys.modules
        mp_init = multiprocessing.synchronize.SemLock.__init__
        lokycompat.unlink_failed_semaphores()
        multiprocessing.Lock()
        from loky.backend import synchronize
        print(multiprocessing.synchronize.SemLock.__init__ is mp_init)
        print(getattr(synchronize.SemLock.__init__, "_picklepool_unlinks", False))
        """
    )
    assert result.stdout.split() == ["True", "True"], result.stderr


def test_a_pool_shutting_down_keeps_its_lock_and_starts_no_worker():
    # loky's shutdown(wait=False) set the executor's process lock to None while its
    # manager thread could still be replacing a worker that left (max_worker_memory,
    # an idle timeout): "TypeError: 'NoneType' object does not support the context
    # manager protocol" in that thread, about one run in ten of a script whose calls
    # use max_worker_memory. What that thread does then, here after the shutdown:
    executor = lokycompat.new_executor(1, 300, None)
    assert executor.submit(abs, -1).result() == 1
    workers = set(lokycompat.worker_processes(executor))
    thread = lokycompat.manager_thread(executor)
    lokycompat.shutdown(executor, kill=False)
    with executor._processes_management_lock:  # loky's process_result_item
        executor._adjust_process_count()
    assert set(lokycompat.worker_processes(executor)) <= workers  # none started for a pool shutting down
    thread.join(60)
    assert not thread.is_alive()


def _fork_during_a_first_call(
    prelude: str, hold: str, child_check: str, stderr_has: tuple[str, ...] = ()
) -> None:
    """Fork while another thread's first call is held in the middle of a step, then call in the child.

    *prelude* defines the events ``held`` (set once the step is held) and ``go`` (which
    lets it go on), *hold* installs the hold, *child_check* prints why and exits 1 when
    the child inherited the step half done. The fork's first hook lets the step go on:
    picklepool's own hook must then wait for the step's end before the fork is made.
    *stderr_has*: the errors the run must print (their names, in order), and no other.
    """
    script = textwrap.dedent(prelude) + textwrap.dedent(
        f"""
        if __name__ == "__main__":
            {hold}
            call = lambda: print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)))  # noqa: E731
            first = threading.Thread(target=call)
            first.start()
            held.wait()
            os.register_at_fork(before=go.set)  # runs first among the fork's hooks: the step resumes
            pid = os.fork()
            if pid == 0:
                {child_check}
                print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)))
                sys.exit(0)
            first.join()
            print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["[0, 1, 2, 3]", "[0, 1, 2]", "child 0"], (
        result.stdout + result.stderr
    )
    assert "leaked" not in result.stderr, result.stderr
    assert "cannot release" not in result.stderr, result.stderr
    # the errors printed (each once): *stderr_has*, no other
    printed = [line.split(":")[0] for line in result.stderr.splitlines() if line.startswith(stderr_has)]
    assert printed == list(stderr_has), result.stderr


# The prelude's tail: a finder that holds the import of TARGET in the middle (the module
# in sys.modules, not executed) while the prelude's hold() runs.
_GATE = """
        class Gate(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name != TARGET:
                    return None
                sys.meta_path.remove(self)
                spec = importlib.util.find_spec(name)
                real = spec.loader

                class Held(importlib.abc.Loader):
                    def create_module(self, spec):
                        return real.create_module(spec)

                    def exec_module(self, module):
                        hold()
                        real.exec_module(module)

                spec.loader = Held()
                return spec
        """
# The child's check that TARGET is whole there
_HALF_IMPORTED = (
    "found = sys.modules.get(TARGET)\n"
    '                if found is None or getattr(found.__spec__, "_initializing", False):\n'
    '                    print("half imported in the child"); os._exit(1)'
)


@pytest.mark.parametrize("module", ["loky", "psutil", "picklepool.executor.dispatch"])
def test_a_fork_made_while_a_first_call_imports_waits_for_the_imports(module):
    # A first call imports loky (cloudpickle, psutil) and the dispatch as it starts: a
    # fork made then by another thread (here the user's os.fork()) gave the child that
    # module half imported, its import lock held for ever: the child's first call hung
    # on `import loky`. The import is held in the middle (module in sys.modules, not
    # executed) until the fork has begun.
    prelude = (
        f"""
        import importlib.abc, importlib.util, os, sys, threading
        from picklepool import Parallel, delayed

        TARGET = {module!r}
        held, go = threading.Event(), threading.Event()


        def hold():
            held.set()
            go.wait()
        """
        + _GATE
    )
    _fork_during_a_first_call(
        prelude,
        "assert TARGET not in sys.modules; sys.meta_path.insert(0, Gate())",
        _HALF_IMPORTED,
    )


def test_a_ctrl_c_as_a_fork_waits_for_a_first_calls_imports_does_not_skip_the_wait():
    # A Ctrl-C as the user's os.fork() waited in picklepool's at-fork hook for a first
    # call's imports ended the wait; Python prints an at-fork hook's exception and forks
    # all the same: the child got loky half imported (its first call hung), and the
    # parent's hook then failed to release the lock it did not hold. The signal comes
    # (from the importing thread, once the fork has begun) while the fork waits.
    prelude = (
        """
        import importlib.abc, importlib.util, os, signal, sys, threading
        from picklepool import Parallel, delayed

        TARGET, MAIN = "loky", threading.main_thread().ident
        held = threading.Event()
        gate = threading.Lock()
        gate.acquire()

        class Go:  # its set: a C function, which runs no Python code (the signal waits for ours)
            set = None

        go = Go()
        go.set = gate.release


        def hold():
            held.set()
            gate.acquire()  # the fork has begun: it waits for this import
            signal.pthread_kill(MAIN, signal.SIGINT)
        """
        + _GATE
    )
    _fork_during_a_first_call(
        prelude,
        "assert TARGET not in sys.modules; sys.meta_path.insert(0, Gate())",
        _HALF_IMPORTED,
        stderr_has=("KeyboardInterrupt",),
    )


class _ForkLock:
    """A stand-in for lokycompat's fork lock (``_loading``) whose first ``acquire`` raises
    KeyboardInterrupt, as a Ctrl-C's handler does: *taken* says whether the lock was taken
    first (the handler ran as the blocking acquire returned: Python runs it after the call)
    or not (it ran while the acquire waited, which it ended)."""

    def __init__(self, taken: bool) -> None:
        self.lock, self.taken, self.raised = threading.RLock(), taken, False

    def acquire(self) -> bool:
        if not self.raised:
            self.raised = True
            if self.taken:
                self.lock.acquire()
            raise KeyboardInterrupt
        return self.lock.acquire()

    def release(self) -> None:
        self.lock.release()

    def _is_owned(self) -> bool:
        return self.lock._is_owned()  # type: ignore[attr-defined]


def _free_for_another_thread(lock: threading.RLock) -> bool:
    got: list[bool] = []

    def take() -> None:
        got.append(lock.acquire(blocking=False))
        if got[0]:
            lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    return got == [True]


@pytest.mark.parametrize("taken", [True, False], ids=["as-the-wait-ends", "during-the-wait"])
def test_a_ctrl_c_as_a_fork_waits_leaves_the_lock_taken_once_and_let_go_after(monkeypatch, taken):
    # The fork's wait for a first call's imports (lokycompat._before_fork) took its lock again
    # when a Ctrl-C's handler raised just after the acquire had returned: held twice, let go
    # once after the fork, the parent kept it for ever, and the first call's thread hung at
    # its next step (start_trackers), about 1 run in 16 of the test above under load.
    lock = _ForkLock(taken)
    monkeypatch.setattr(lokycompat, "_loading", lock)
    with pytest.raises(KeyboardInterrupt):
        lokycompat._before_fork()
    assert not _free_for_another_thread(lock.lock)  # held across the fork
    lokycompat._after_fork_in_parent()
    assert _free_for_another_thread(lock.lock)
    assert not lock.lock._is_owned()  # type: ignore[attr-defined]


@pytest.mark.parametrize("runs", [(2, 2), (1, 2), (2, 1)], ids=["both", "before-cut", "after-cut"])
def test_each_fork_hook_runs_twice_and_takes_and_lets_go_once(monkeypatch, runs):
    # Each hook is registered twice: a handler's exception raised as a hook is entered
    # (before its first line, out of its reach) skips that run, and the other run makes it
    # up; a run that finds the work done does nothing.
    lock = threading.RLock()
    monkeypatch.setattr(lokycompat, "_loading", lock)
    befores, afters = runs
    for _ in range(befores):
        lokycompat._before_fork()
    assert not _free_for_another_thread(lock)
    for _ in range(afters):
        lokycompat._after_fork_in_parent()
    assert _free_for_another_thread(lock)
    assert not lock._is_owned()  # type: ignore[attr-defined]


def test_a_fork_made_inside_a_first_calls_imports_leaves_their_lock_to_them(monkeypatch):
    # A fork made by the thread that holds the lock (its own imports fork) has nothing to
    # wait for: the lock is theirs before and after it.
    lock = threading.RLock()
    monkeypatch.setattr(lokycompat, "_loading", lock)
    with lock:
        lokycompat._before_fork()
        lokycompat._after_fork_in_parent()
        assert not _free_for_another_thread(lock)
    assert _free_for_another_thread(lock)


def test_a_fork_made_while_a_first_call_starts_the_trackers_waits_for_them():
    # multiprocessing's resource tracker holds its lock while it starts (a first call
    # starts it, start_trackers); a fork made then by another thread gave the child that
    # lock held for ever (Python < 3.14.7 does not reset it): the child's first call hung.
    # The tracker's start is held in the middle until the fork has begun.
    prelude = """
        import os, sys, threading
        from multiprocessing import resource_tracker, util
        from picklepool import Parallel, delayed

        held, go = threading.Event(), threading.Event()
        real_spawn = util.spawnv_passfds

        def held_spawn(path, args, passfds):
            if "multiprocessing.resource_tracker" in " ".join(map(os.fsdecode, args)):
                held.set()
                go.wait()
            return real_spawn(path, args, passfds)
        """
    _fork_during_a_first_call(
        prelude,
        "util.spawnv_passfds = held_spawn",
        "if not resource_tracker._resource_tracker._lock.acquire(blocking=False):\n"
        '                    print("the tracker\'s lock is held in the child"); os._exit(1)\n'
        "                resource_tracker._resource_tracker._lock.release()",
    )


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_a_first_call_imports_nothing_after_the_imports_a_fork_waits_for(backend):
    # A fork waits for lokycompat.load's imports; a module the call imported after them
    # could be half imported in a child another thread forked meanwhile, and hang its
    # first call there (loky.backend.synchronize, which loky imports for its first
    # executor's locks, was one; multiprocessing.pool another).
    result = run_python(
        f"""
        import json, sys
        from picklepool import Parallel, delayed, lokycompat

        real_load, loaded = lokycompat.load, []

        def load(*more):
            real_load(*more)
            loaded.append(set(sys.modules))

        if __name__ == "__main__":
            lokycompat.load = load
            out = Parallel(n_jobs=2, backend={backend!r})(delayed(abs)(-i) for i in range(4))
            print(json.dumps([out, sorted(set(sys.modules) - loaded[0])]))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[0, 1, 2, 3], []]


def test_a_call_after_a_first_call_interrupted_in_its_imports_works():
    # A Ctrl-C as a first call imported loky (here in cloudpickle's import, which loky's
    # reduction module makes) left loky's _posix_reduction imported, its reducers
    # registered in the reduction module that failed: the next call's new one lacked
    # them, and its workers died reading their queue (EBADF), at every call after.
    result = run_python(
        """
        import importlib.abc, importlib.util, sys
        from picklepool import Parallel, delayed

        class Interrupt(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name != "cloudpickle":
                    return None
                sys.meta_path.remove(self)
                spec = importlib.util.find_spec(name)

                class Interrupted(importlib.abc.Loader):
                    def create_module(self, spec):
                        return None

                    def exec_module(self, module):
                        raise KeyboardInterrupt

                spec.loader = Interrupted()
                return spec

        if __name__ == "__main__":
            sys.meta_path.insert(0, Interrupt())
            try:
                Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3))
            except KeyboardInterrupt:
                print("interrupted")
            print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)))
        """
    )
    assert result.stdout.splitlines() == ["interrupted", "[0, 1, 2]"], result.stderr
    assert result.returncode == 0, result.stderr


def test_a_guarded_connection_is_closed_once_when_two_threads_close_it():
    # loky's manager thread (ending a broken pool) and the reaper (killing its workers)
    # both close a pool's result pipe writer; the second os.close() of the number failed
    # with EBADF and killed the manager thread (or closed a file that had just got it).
    reader, writer = multiprocessing.Pipe(duplex=False)
    lokycompat.guard_close(writer)
    in_close, finish = threading.Event(), threading.Event()
    closes: list[str] = []
    real_close = writer._close

    def slow_close(_close=os.close) -> None:  # the first caller stays inside, the fd not yet forgotten
        closes.append(threading.current_thread().name)
        if len(closes) == 1:
            in_close.set()
            finish.wait()
        real_close(_close)

    writer._close = slow_close
    first = threading.Thread(target=writer.close, name="first")
    first.start()
    in_close.wait()
    second = threading.Thread(target=writer.close, name="second")
    second.start()
    # wait until the second is inside the guarded close (at its lock), or has finished
    while second.is_alive() and not _inside(second, "locked_close"):
        time.sleep(0.001)
    finish.set()
    first.join()
    second.join()
    assert closes == ["first"]
    assert writer.closed
    reader.close()


def _inside(thread: threading.Thread, function: str) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def test_a_new_executors_result_writer_is_guarded():
    executor = lokycompat.new_executor(1, 10.0, None)
    try:
        assert "close" in vars(lokycompat.result_writer(executor))
    finally:
        executor.shutdown(wait=True)


def test_a_thread_asking_for_loky_while_another_imports_it_waits_for_the_import():
    # Threads making their first calls at once (scikit-learn fits in a thread pool, on the
    # joblib backend): one imported loky for its cpu_count, and another, finding loky in
    # sys.modules not yet executed, read it there and failed: "partially initialized module
    # 'loky' has no attribute 'cpu_count'". The import of loky is held in the middle until
    # the second thread has either failed or come to wait for it.
    script = (
        """
        import importlib.abc, importlib.util, sys, threading
        import picklepool
        from picklepool import lokycompat

        TARGET = "loky"
        held, go, second_waits = threading.Event(), threading.Event(), threading.Event()


        def hold():
            held.set()
            go.wait()
        """
        + _GATE
        + """

        class Watched:  # lokycompat's import lock, telling when the second thread waits for it
            def __init__(self, lock):
                self.lock = lock

            def acquire(self, *args):
                if threading.current_thread() is second:
                    second_waits.set()
                return self.lock.acquire(*args)

            def release(self):
                self.lock.release()

            def __enter__(self):
                self.acquire()

            def __exit__(self, *exc):
                self.release()


        lokycompat._loading = Watched(lokycompat._loading)
        assert TARGET not in sys.modules
        sys.meta_path.insert(0, Gate())
        counts = {}


        def count(name):
            try:
                counts[name] = picklepool.cpu_count()
            except Exception as exc:
                counts[name] = repr(exc)
            finally:
                second_waits.set()  # (it failed without waiting)


        first = threading.Thread(target=count, args=("first",))
        second = threading.Thread(target=count, args=("second",))
        first.start()
        held.wait()
        second.start()
        second_waits.wait()
        go.set()
        first.join()
        second.join()
        print(counts["first"] == counts["second"], counts)
        """
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True"), result.stdout + result.stderr


# joblib's own loky pools, started after picklepool's first call in the same process: both
# loky copies register a start method named "loky" (and "loky_init_main") as they are
# imported, the last one imported winning, and joblib's executors ask for it by name.
_JOBLIB_AFTER_PICKLEPOOL = """
    import multiprocessing.context as mpc, os, sys
    import numpy as np
    import joblib
    import joblib.externals.loky.backend.context as vendored
    import picklepool

    def loader(a):
        main = sys.modules["__main__"].__file__  # the worker's loader: .../backend/popen_loky_posix.py
        return os.path.join("joblib", "externals", "loky", "backend") in main, float(a[0])

    if __name__ == "__main__":
        {first}
        big = np.ones(300_000)  # above joblib's max_nbytes: its memmapping, resource tracker
        got = joblib.Parallel(n_jobs=2, backend="loky")(joblib.delayed(loader)(big) for _ in range(4))
        assert got == [(True, 1.0)] * 4, got  # joblib's loader, not standalone loky's
        assert mpc._concrete_contexts["loky"] is vendored.ctx_loky, mpc._concrete_contexts["loky"]
        assert type(mpc._concrete_contexts["loky_init_main"]).__module__ == vendored.__name__
        print("ok")
"""


@pytest.mark.parametrize(
    "first",
    [
        "picklepool.Parallel(n_jobs=2)(picklepool.delayed(abs)(-i) for i in range(4))",
        "picklepool.Executor(max_workers=1).submit(abs, -1).result()",
        "picklepool.cpu_count(); picklepool.effective_n_jobs(-1)",
        "picklepool.register_joblib_backend()\n"
        "        with joblib.parallel_config(backend='picklepool'):\n"
        "            joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(4))",
    ],
    ids=["Parallel", "Executor", "cpu_count", "joblib_backend"],
)
def test_joblibs_own_loky_pools_start_with_joblibs_loader_after_a_picklepool_call(first):
    # Once picklepool had imported loky, joblib's next loky pool (a scikit-learn n_jobs=
    # outside a picklepool config) started its workers with standalone loky's loader, whose
    # resource tracker it had not set up: each worker started a tracker of its own, which
    # printed a KeyError traceback per memmapped argument and "leaked file objects" at exit.
    proc = run_python(_JOBLIB_AFTER_PICKLEPOOL.replace("{first}", first), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok", proc.stdout
    assert "Traceback" not in proc.stderr and "leaked" not in proc.stderr, proc.stderr


def test_the_semaphore_unlink_patch_is_made_on_lokys_semlock_never_on_the_standard_librarys():
    # loky.backend's __init__ binds `synchronize` to multiprocessing.synchronize, so
    # `from loky.backend import synchronize` gave the standard library's module while loky's
    # own submodule was not imported yet: the patch replaced multiprocessing's
    # SemLock.__init__ with one that takes no ctx=, and every multiprocessing.Lock() of the
    # process failed after it (a dask LocalCluster's "Nanny failed to start" in the suite)
    result = run_python(
        """
        import multiprocessing, multiprocessing.synchronize as stdlib
        import sys
        import loky.backend
        from picklepool import lokycompat

        assert "loky.backend.synchronize" not in sys.modules
        before = stdlib.SemLock.__init__
        lokycompat.unlink_failed_semaphores()
        from loky.backend import synchronize
        print(stdlib.SemLock.__init__ is before, synchronize is not stdlib,
              getattr(synchronize.SemLock.__init__, "_picklepool_unlinks", False))
        multiprocessing.Lock()
        print("ok")
        """
    )
    assert result.stdout.split() == ["True", "True", "True", "ok"], result.stdout + result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_the_kept_process_id_is_the_childs_in_a_forked_child():
    """forklocks.getpid() keeps os.getpid() without its system call: a forked child's is its own."""
    from picklepool import forklocks

    assert forklocks.getpid() == os.getpid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(w, b"%d %d" % (forklocks.getpid(), os.getpid()))
        finally:
            os._exit(0)
    os.close(w)
    kept, real = map(int, os.read(r, 100).split())
    os.close(r)
    os.waitpid(pid, 0)
    assert kept == real == pid != os.getpid() == forklocks.getpid()
