"""backend="multiprocessing" and multiprocessing contexts, on picklepool's batch runner."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from picklepool import Parallel, WorkerCrashedError, delayed
from picklepool.executor.mpbackend import MultiprocessingBackend
from tests.conftest import run_python

SETTING = "imported"


def _read_setting(_i):
    return SETTING


def _fail(i):
    if i == 3:
        raise KeyError(f"bad {i}")
    return i


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_fork_keeps_globals_set_at_run_time():
    globals()["SETTING"] = "changed at run time"
    try:
        out = Parallel(n_jobs=2, backend=multiprocessing.get_context("fork"))(
            delayed(_read_setting)(i) for i in range(4)
        )
    finally:
        globals()["SETTING"] = "imported"
    assert out == ["changed at run time"] * 4


@pytest.mark.parametrize("backend", ["multiprocessing", multiprocessing.get_context("spawn")])
def test_results_errors_and_pids(backend):
    assert Parallel(n_jobs=2, backend=backend)(delayed(pow)(i, 2) for i in range(6)) == [0, 1, 4, 9, 16, 25]
    pids = Parallel(n_jobs=2, backend=backend)(delayed(os.getpid)() for _ in range(4))
    assert os.getpid() not in pids
    with pytest.raises(KeyError, match="bad 3"):
        Parallel(n_jobs=2, backend=backend)(delayed(_fail)(i) for i in range(6))


def test_with_block_keeps_one_pool():
    with Parallel(n_jobs=2, backend="multiprocessing") as p:
        assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
        assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def exit_at_two(x):
    if x == 2:
        os._exit(7)
    return x


@pytest.mark.timeout(60)
def test_a_worker_that_dies_fails_the_call_naming_its_task():
    with pytest.raises(
        WorkerCrashedError, match=r"task 2: exit_at_two\(2\).*exit code EXIT\(7\).*os\._exit\(7\)"
    ):
        Parallel(2, backend="multiprocessing", batch_size=1)(delayed(exit_at_two)(i) for i in range(6))
    assert Parallel(2, backend="multiprocessing")(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


def exit_0_at_two(x):
    if x == 2:
        os._exit(0)  # the status of a worker that ends cleanly (after maxtasksperchild)
    return x


@pytest.mark.timeout(60)
def test_a_worker_that_ends_with_status_0_in_a_task_fails_the_call_naming_its_task():
    # Status 0 was taken for a clean end (as after maxtasksperchild): the lost task was
    # waited for for ever
    with pytest.raises(
        WorkerCrashedError,
        match=r"task 2: exit_0_at_two\(2\).*exit code EXIT\(0\)\) in the middle of a batch.*os\._exit\(0\)",
    ):
        Parallel(2, backend="multiprocessing", batch_size=1)(delayed(exit_0_at_two)(i) for i in range(6))


def wait_for_word(fifo):
    """Hold the worker that runs it until the test writes to *fifo*."""
    with open(fifo) as f:
        return f.read()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
@pytest.mark.timeout(60)
def test_a_worker_that_starts_and_dies_between_two_looks_is_reported():
    # With maxtasksperchild=1 (Executor(max_tasks_per_child=1)) each task gets a new worker:
    # multiprocessing.Pool drops a dead one from its list of workers within 0.1 s and starts
    # the next. A worker that started and died between two looks at that list was never
    # seen: its task was lost without a word, and the executor's shutdown() waited for ever.
    # Here no look happens during the dying worker's life: the three tasks are sent while
    # the first worker, held by the first task, is the pool's only one; check() comes once
    # the third worker, which the pool starts as it drops the second, has answered.
    folder = tempfile.mkdtemp()
    fifo = os.path.join(folder, "go")
    os.mkfifo(fifo)
    backend = MultiprocessingBackend(1, multiprocessing.get_context("fork"), max_tasks_per_child=1, lazy=True)
    try:
        held = backend.submit(wait_for_word, fifo)
        lost = backend.submit(os._exit, 4)
        after = backend.submit(abs, -3)
        with open(fifo, "w") as f:
            f.write("go")
        assert held.result(timeout=30) == "go"
        assert after.result(timeout=30) == 3
        assert not lost.done()
        notes, stalled = backend.check()
        assert notes == []
        assert stalled is not None, "the dead worker was not seen"
        died = r"\(pid \d+\) died \(exit code EXIT\(4\)\); multiprocessing.Pool replaced it and lost its task"
        assert re.search(died, stalled), stalled
    finally:
        backend.shutdown(kill=True)
        shutil.rmtree(folder)
    with pytest.raises(WorkerCrashedError):  # what it ran fails: nothing waits for ever
        lost.result(timeout=0)


def test_first_calls_from_several_threads_leave_no_session_folder_behind():
    # Six threads make the process's first calls at once, forking multiprocessing
    # workers meanwhile: the session folder must go at exit (loky's tracker would
    # report it "leaked"). Seen in 4 of 6 runs when the first call imported the dispatch.
    result = run_python(
        """
        import threading
        from picklepool import Parallel, delayed

        def f(x):
            return x + 1

        res = {}

        def run(i):
            res[i] = Parallel(n_jobs=2, backend="multiprocessing")(delayed(f)(x) for x in range(20))

        if __name__ == "__main__":
            ts = [threading.Thread(target=run, args=(i,)) for i in range(6)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            print(all(v == list(range(1, 21)) for v in res.values()) and len(res) == 6)
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    assert "leaked" not in result.stderr, result.stderr


def die_holding_the_result_queue_lock(i):
    """A worker killed while it sends a result: it holds the pool's result queue lock."""
    import signal
    import sys

    frame = sys._getframe()
    while frame is not None and "outqueue" not in frame.f_locals:  # multiprocessing.pool.worker's
        frame = frame.f_back
    frame.f_locals["outqueue"]._wlock.acquire()
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.timeout(60)
def test_a_worker_killed_holding_a_queue_lock_does_not_hang_the_end_of_the_call():
    # multiprocessing.Pool.terminate() waited for ever for the lock the dead worker held
    # (its task thread puts its end marker on the result queue under it): the call that
    # failed never returned its error (as with joblib's multiprocessing backend)
    with pytest.raises(WorkerCrashedError, match="die_holding_the_result_queue_lock"):
        Parallel(n_jobs=2, backend="multiprocessing")(
            delayed(die_holding_the_result_queue_lock)(i) for i in range(1)
        )
    assert Parallel(n_jobs=2, backend="multiprocessing")(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def _executor_in_pool_worker(_i):
    from picklepool import Executor

    try:
        with Executor(max_workers=2) as ex:
            return ex.submit(abs, -1).result()
    except AssertionError as exc:
        return str(exc)


@pytest.mark.timeout(120)
def test_an_executor_in_a_daemonic_pool_worker_says_what_to_do():
    # A multiprocessing.Pool's workers are daemonic and cannot have children: an
    # Executor made there raised multiprocessing's bare assertion from deep in loky,
    # with no word of what to use instead. Same type (as the standard library's), said.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        (message,) = pool.map(_executor_in_pool_worker, [0])
    assert message.startswith("daemonic processes are not allowed to have children: "), message
    assert "picklepool.Executor was made in process" in message
    assert "ThreadPoolExecutor" in message and "not daemonic" in message


UNGUARDED = {
    "spawn": "ctx = multiprocessing.get_context('spawn')\n"
    "print(Parallel(n_jobs=2, backend=ctx)(delayed(double)(i) for i in range(3)))",
    "forkserver": "ctx = multiprocessing.get_context('forkserver')\n"
    "print(Parallel(n_jobs=2, backend=ctx)(delayed(double)(i) for i in range(3)))",
    # max_tasks_per_child: an Executor on a multiprocessing.Pool of its own, "spawn" when no context is given
    "executor": "print(list(Executor(2, max_tasks_per_child=2).map(double, range(3))))",
}


@pytest.mark.parametrize("kind", sorted(UNGUARDED))
def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path, kind):
    # Each spawned worker runs the script's top level again, whose call fails there
    # (multiprocessing's RuntimeError on stderr); the error said "exit status 1 is an
    # error in the worker's own code ... code that closed the worker's file descriptors"
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import multiprocessing\n"
        "from picklepool import Executor, Parallel, delayed\n"
        "def double(x):\n"
        "    return 2 * x\n"
        f"{UNGUARDED[kind]}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICKLEPOOL_")}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    # (the error's line; multiprocessing's resource tracker may warn after it)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("picklepool.errors.")]
    assert len(errors) == 1, proc.stderr
    last = errors[0]
    assert last.startswith("picklepool.errors.WorkerCrashedError: a worker process ")
    method = "forkserver" if kind == "forkserver" else "spawn"
    assert (
        f"With the {method!r} start method each new worker runs the top level of your script ({script})"
        in last
    )
    assert "put the script's calls under that guard" in last and 'if __name__ == "__main__":' in last


def test_the_pools_workers_leave_no_status_file_in_the_session_folder():
    # Each call's pool is terminated at its end: its workers ran no exit hooks, and the
    # status file each one keeps in the session folder stayed until the process exited,
    # one more per worker with every call of a long run (a file in /dev/shm each).
    from picklepool.executor.session import session

    pids = set()
    for _ in range(3):
        pids.update(Parallel(n_jobs=2, backend="multiprocessing")(delayed(os.getpid)() for _ in range(4)))
        with Parallel(n_jobs=2, backend="multiprocessing") as p:
            pids.update(p(delayed(os.getpid)() for _ in range(4)))
    left = sorted(pids & set(session().worker_pids()))
    assert left == [], f"status files of ended workers: {left}"


_INITIALIZED_GLOBALS = """
import multiprocessing as mp, os, sys
from picklepool import Parallel, delayed

import functools

G = 0
H = 0
STATE = {}
BIG = list(range(10))

def _helper(v):
    globals()["H"] = v + 1
    STATE["h"] = v + 2

def init(v):  # a connection per worker, as multiprocessing.Pool's initializer is used
    global G
    G = v
    STATE["v"] = v
    _helper(v)
    sys.setrecursionlimit(4321)

def get(_):
    return (G, STATE.get("v"), H, STATE.get("h"), sys.getrecursionlimit())

if __name__ == "__main__":
    how = sys.argv[1]
    sys.setrecursionlimit(3000)  # the script's, before the pool: the initializer's goes over it
    backend = {"name": "multiprocessing", "loky": "loky"}.get(how) or mp.get_context(how)
    p = Parallel(n_jobs=2, backend=backend, initializer=functools.partial(init, 5))
    print(p(delayed(get)(i) for i in range(3)))
"""


@pytest.mark.parametrize("how", ["name", "fork", "spawn", "loky"])
def test_what_the_initializer_sets_is_seen_by_the_tasks_as_in_multiprocessing_pool(tmp_path, how):
    # The tasks' functions (sent by value) kept the script's own globals, and the worker's
    # settings were the parent's again: [(0, None, 1000)] * 3 where multiprocessing.Pool,
    # and picklepool on loky, give what the initializer set.
    script = tmp_path / "initialized.py"
    script.write_text(_INITIALIZED_GLOBALS)
    out = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([(5, 5, 6, 7, 4321)] * 3)


_G = [0]


def _init_here(v):
    _G[0] = v


def _read_g(_):
    return _G[0]


def test_an_initializer_runs_in_a_worker_with_n_jobs_1_and_is_refused_where_none_runs():
    # n_jobs=1 ran the tasks in the calling process without the initializer, silently
    out = Parallel(n_jobs=1, initializer=_init_here, initargs=(5,))(delayed(_read_g)(i) for i in range(2))
    assert out == [5, 5] and _G[0] == 0  # in a worker, not here
    for backend in ("threading", "sequential"):
        with pytest.raises(ValueError, match=f"and the {backend} backend has none"):
            Parallel(n_jobs=2, backend=backend, initializer=_init_here, initargs=(5,))(
                delayed(_read_g)(i) for i in range(2)
            )
