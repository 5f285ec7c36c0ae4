"""Process-pool behaviour: warm workers, crashes, timeouts and Ctrl-C."""

from __future__ import annotations

import os
import sys
import threading
import types

import pytest

import picklepool
from picklepool import Parallel, TaskTimeoutError, WorkerCrashedError, delayed
from tests.conftest import run_python, running

from .crash_cases import act


def pid_of(_):
    return os.getpid()


def test_switching_pickler_keeps_the_same_workers():
    def pids(pickler):
        seen = set()
        for _ in range(5):
            seen |= set(
                Parallel(n_jobs=2, pickler=pickler, batch_size=1)(delayed(pid_of)(i) for i in range(20))
            )
        return seen

    first = pids("pickle")
    assert pids("cloudpickle") | pids("pickle") <= first | pids("cloudpickle")
    with Parallel(n_jobs=2) as p:
        before = p._backend.worker_pids()
        p(delayed(pid_of)(i) for i in range(10))
        Parallel(n_jobs=2, pickler="cloudpickle")(delayed(pid_of)(i) for i in range(10))
        Parallel(n_jobs=2, pickler="pickle")(delayed(pid_of)(i) for i in range(10))
        assert p._backend.worker_pids() == before
        assert set(p(delayed(pid_of)(i) for i in range(10))) <= set(before)


def exit_in_task(i, how):
    if i == 3:
        act({"exit": "os_exit", "kill": "sigkill", "segfault": "segfault"}[how])
    return i


@pytest.mark.parametrize("how", ["exit", "kill", "segfault"])
def test_worker_crash_names_the_task_and_the_pool_recovers(how):
    with pytest.raises(WorkerCrashedError) as info:
        Parallel(n_jobs=2, batch_size=1)(delayed(exit_in_task)(i, how) for i in range(8))
    msg = str(info.value)
    assert "task 3" in msg
    expected = {"exit": "EXIT(3)", "kill": "SIGKILL", "segfault": "SIGSEGV"}[how]
    assert expected in msg
    assert Parallel(n_jobs=2)(delayed(pid_of)(i) for i in range(4))


def test_the_crashed_task_is_named_though_its_worker_is_not_yet_seen_exited(monkeypatch):
    # loky reports a death once the worker's pipes close, a moment before the process is a
    # zombie; under load it was not seen exited yet, and the message named "task 1 ... queued
    # or running" instead of task 3 (a CI failure of the test above). The worker's sentinel,
    # what loky watches, tells it.
    from picklepool import lokycompat
    from picklepool.executor import leftovers, replies
    from picklepool.workers.control import RUNNING

    class Session:
        statuses = {4242: (7, 3, 0, RUNNING, -1)}  # call 7, task 3 runs
        ended: dict = {}

        def worker_pids(self):
            return list(self.statuses)

        def worker_status(self, pid):
            return self.statuses.get(pid)

        def forget_worker(self, pid, last=None):
            self.statuses.pop(pid, None)

    monkeypatch.setattr(leftovers, "exited", lambda pid: False)  # psutil: still running
    monkeypatch.setattr(lokycompat, "ending_workers", lambda: {4242})  # its sentinel: ready
    monkeypatch.setattr(leftovers, "remove", lambda pids: [])
    assert replies._dead_worker_task(Session(), 7) == (3, 4242, RUNNING)


@pytest.mark.parametrize("order", [(4242, 4243), (4243, 4242)])
def test_the_crashed_task_is_named_not_one_loky_killed_after_it(monkeypatch, order):
    # One worker dies (task 3, os._exit(3)); loky SIGKILLs the other, which ran task 5 of
    # the same call; by the time the error was built both were dead, and the message
    # named whichever came last ("while running task 5", once in about 8 crashes).
    from picklepool import lokycompat
    from picklepool.executor import leftovers, replies
    from picklepool.workers.control import RUNNING

    statuses = {4242: (7, 3, 0, RUNNING, -1), 4243: (7, 5, 0, RUNNING, -1)}
    monkeypatch.setattr(leftovers, "sweep", lambda session: {pid: statuses[pid] for pid in order})
    for codes in ({4242: 3, 4243: -9}, {4242: None, 4243: -9}, {4242: -11}):
        monkeypatch.setattr(lokycompat, "exit_codes", lambda pids, codes=codes: codes)
        assert replies._dead_worker_task(types.SimpleNamespace(ended={}), 7) == (3, 4242, RUNNING)


def test_the_crashed_task_is_named_though_an_earlier_sweep_took_its_status():
    # A later batch of the crashed call found the pool broken and released it: that stop
    # swept the dead worker's status file before the call's error was built, which then
    # named "task 1 ... queued or running" (about 1 crash in 200). The session keeps it.
    import subprocess

    from picklepool.executor import leftovers, replies
    from picklepool.executor.session import session
    from picklepool.workers.control import RUNNING, STATUS

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # an exited process's pid, as a crashed worker's
    current = session()
    with open(os.path.join(current.path, f"w{dead.pid}"), "wb") as f:
        f.write(STATUS.pack(987_654, 3, 0, RUNNING, -1))  # call 987654, task 3 runs
    try:
        assert dead.pid in leftovers.sweep(current, [dead.pid])  # the pool's stop: file gone
        assert not os.path.exists(os.path.join(current.path, f"w{dead.pid}"))
        assert replies._dead_worker_task(current, 987_654) == (3, dead.pid, RUNNING)
    finally:
        current.ended.pop(dead.pid, None)


def exit_once_told(running, told):
    with open(running, "w"):  # tells the test this task runs
        pass
    with open(told) as f:  # until another call's task opens it
        f.read()
    os._exit(1)


def tell_then_wait(told, gate):
    with open(told, "w"):
        pass
    with open(gate) as f:  # never opened: the crash ends this worker
        f.read()


def test_a_call_broken_by_another_threads_crash_says_so(tmp_path):
    # Thread A's task exits its worker; loky breaks the pool under thread B's call too,
    # whose error said "a worker process died while task 0: tell_then_wait(...) was queued
    # or running": B's own task, as if it were the cause. The first look sweeps the dead
    # worker's status: the other call finds it by loky's exception, which both share.
    running, told, gate = (str(tmp_path / name) for name in ("running", "told", "gate"))
    for path in (running, told, gate):
        os.mkfifo(path)
    errors = {}

    def call(name, items):
        try:
            Parallel(n_jobs=2)(items)
        except WorkerCrashedError as exc:
            errors[name] = str(exc)

    a = threading.Thread(target=call, args=("a", [delayed(exit_once_told)(running, told)]))
    a.start()
    with open(running) as f:  # A's task runs on one worker
        f.read()
    call("b", [delayed(tell_then_wait)(told, gate)])  # B's on the other; then A's exits
    a.join()
    assert "while running task 0: exit_once_told(" in errors["a"], errors["a"]
    assert "while running a task of another call made in this process (worker pid" in errors["b"], errors["b"]
    assert "this call's task 0: tell_then_wait(" in errors["b"], errors["b"]


def crash_first(i, path):
    if i == 0:
        with open(f"{path}.part", "w") as f:  # renamed once written: never read empty
            f.write(str(os.getpid()))
        os.rename(f"{path}.part", path)
        os._exit(3)
    with open(f"{path}-{i}", "w"):  # a task that ran
        pass
    return i


def test_a_crash_stops_the_call_its_later_tasks_do_not_start_on_a_new_pool(tmp_path, monkeypatch):
    # The call's batches after the crash found the pool broken and started a new one, where
    # they ran unless the call's cancellation came first (a race; tasks ran after the call
    # had failed), and stopping the broken pool swept the dead worker's status (see above).
    from picklepool import lokycompat
    from picklepool.executor import pool

    path = str(tmp_path / "crashed")
    made = []  # pools started since the crash
    new_pool = pool._new
    monkeypatch.setattr(pool, "_new", lambda *args: made.append(args) or new_pool(*args))

    def items():
        yield delayed(crash_first)(0, path)
        while not os.path.exists(path):  # the task wrote its pid, then exits
            threading.Event().wait(0.01)
        with open(path) as f:
            pid = int(f.read())
        while running(pid):
            threading.Event().wait(0.01)
        while pool._shared is not None and not lokycompat.broken(pool._shared):  # loky saw it
            threading.Event().wait(0.01)
        made.clear()
        yield from (delayed(crash_first)(i, path) for i in range(1, 4))

    with pytest.raises(WorkerCrashedError, match="task 0: crash_first"):
        Parallel(n_jobs=2, batch_size=1)(items())
    assert not [p for p in os.listdir(tmp_path) if p.startswith("crashed-")]  # none ran after
    assert made == []
    assert Parallel(n_jobs=2)(delayed(pid_of)(i) for i in range(4))  # the next call: a new pool


def crash_as(i, how):
    if how:
        act(how)
    return i


def test_an_executors_second_crash_names_its_own_task_not_the_first_crashs():
    # An Executor is one call (one call_id) across pools: the worker of its first crash
    # stays in Session.ended, and ranked before the second crash's SIGKILLed worker it
    # took the second crash's culprit (a task no longer in flight: "queued or running").
    with picklepool.Executor(max_workers=2) as ex:
        with pytest.raises(WorkerCrashedError, match=r"while running task 0 .*crash_as\(0"):
            ex.submit(crash_as, 0, "os_exit").result()
        with pytest.raises(WorkerCrashedError, match=r"while running task 1 .*crash_as\(1"):
            ex.submit(crash_as, 1, "sigkill").result()
        assert ex.submit(pid_of, 2).result()


def another_call_crashes_the_shared_pool_then(items):
    from picklepool import lokycompat
    from picklepool.executor import pool

    with pytest.raises(WorkerCrashedError, match="task 1: crash_as"):
        Parallel(n_jobs=2, batch_size=1)(delayed(crash_as)(i, "os_exit" if i == 1 else "") for i in range(4))
    assert pool._shared is not None and lokycompat.broken(pool._shared)  # not replaced yet
    yield from items


@pytest.mark.parametrize("kept", [False, True])
def test_a_call_that_sent_nothing_to_a_pool_another_call_broke_gets_a_new_pool(kept):
    # The call had taken the shared pool, sent nothing yet, and another call's crash broke
    # it (another thread's, in real life; here its items' generator): the call failed with
    # "task 0 ... was queued or running", though none of its tasks ever ran on that pool.
    items = another_call_crashes_the_shared_pool_then(delayed(pid_of)(i) for i in range(6))
    if kept:
        with Parallel(n_jobs=2, batch_size=1) as p:
            assert len(p(delayed(pid_of)(i) for i in range(2))) == 2  # sent to the pool before
            assert len(p(items)) == 6
    else:
        assert len(Parallel(n_jobs=2, batch_size=1)(items)) == 6


def test_ending_workers_are_told_by_their_sentinels():
    # In a fresh interpreter: no pool of an earlier test polls (reaps) the processes there.
    proc = run_python(
        """
        import multiprocessing
        from multiprocessing.connection import wait

        from picklepool import lokycompat

        ctx = multiprocessing.get_context("fork")
        gate_r, gate_w = ctx.Pipe(duplex=False)
        ending, running = ctx.Process(target=int), ctx.Process(target=gate_r.recv)
        # running first: a start() reaps the children that ended (multiprocessing's
        # _cleanup), so one started after `ending` could take it off the list first
        for proc in (running, ending):
            proc._picklepool = True  # as the processes picklepool's start method makes
            proc.start()
        wait([ending.sentinel])  # it ended; not joined (reaped) yet
        print(ending.pid in lokycompat.ending_workers(), running.pid in lokycompat.ending_workers())
        # reaped (its exit code read: loky reads it before it joins): the pid is free, and
        # may be a new process's (another picklepool program's, whose folders and
        # semaphores are named after it): the sweep must ask psutil, not the sentinel
        print(ending._popen.wait(), ending in lokycompat.started_workers())  # not joined yet
        print(ending.pid in lokycompat.ending_workers())
        gate_w.send(None)
        ending.join()
        running.join()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True False", "0 True", "False"]


def slow_or_fast(i):
    if i == 2:
        threading.Event().wait(60)  # hangs far past the timeout
    return i


def test_timeout_names_the_task_and_the_pool_stays_usable():
    with pytest.raises(TaskTimeoutError, match="task 2") as info:
        Parallel(n_jobs=2, batch_size=1, timeout=0.5)(delayed(slow_or_fast)(i) for i in range(4))
    assert isinstance(info.value, TimeoutError)
    assert Parallel(n_jobs=2, timeout=5)(delayed(slow_or_fast)(i) for i in range(2)) == [0, 1]


def hang_first(i, pid_file):
    if i == "hang":
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
        threading.Event().wait(60)
    threading.Event().wait(0.02)  # spreads the tasks over both workers (not a synchronisation)
    return os.getpid()


def test_a_worker_whose_first_batch_timed_out_takes_no_other_task(tmp_path):
    # loky checks whether to replace a worker from its second job on: a fresh worker
    # whose first batch timed out was not retired, and ran the next call's tasks
    picklepool.shutdown()
    pid_file = tmp_path / "hung"
    with pytest.raises(TaskTimeoutError):
        Parallel(n_jobs=2, timeout=0.5)(delayed(hang_first)(i, str(pid_file)) for i in ["hang"])
    hung = int(pid_file.read_text())
    ran = set()
    for _ in range(5):
        ran |= set(Parallel(n_jobs=2, batch_size=1)(delayed(hang_first)(i, "") for i in range(4)))
    assert hung not in ran


CTRL_C_SCRIPT = """
import os, signal, sys, threading
import psutil
from picklepool import Parallel, delayed

fifo = sys.argv[1] if len(sys.argv) > 1 else {fifo!r}

def task(i, fifo):
    if i == 0:
        with open(fifo, "w") as f:
            f.write("started")
    threading.Event().wait(60)
    return i

def interrupt_when_started():
    with open(fifo) as f:  # blocks until a task has started in a worker
        f.read()
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # os.kill may pick this thread

threading.Thread(target=interrupt_when_started, daemon=True).start()
try:
    Parallel(n_jobs=2, batch_size=1)(delayed(task)(i, fifo) for i in range(10))
except KeyboardInterrupt:
    print("interrupted")
from picklepool.executor import forkserver
server = forkserver._server.pid if forkserver._server else None  # kept until shutdown()
kids = [p for p in psutil.Process().children(recursive=True)
        if "resource_tracker" not in " ".join(p.cmdline()) and p.pid != server]
gone, alive = psutil.wait_procs(kids, timeout=10)
print("alive", len(alive))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and FIFOs")
def test_ctrl_c_cancels_and_leaves_no_worker(tmp_path):
    fifo = str(tmp_path / "started")
    os.mkfifo(fifo)
    res = run_python(CTRL_C_SCRIPT.format(fifo=fifo))
    assert "interrupted" in res.stdout, res.stderr
    assert "alive 0" in res.stdout, res.stdout + res.stderr


MAIN_SCRIPT = """
from picklepool import Parallel, delayed

def twice(x):
    return 2 * x

print(Parallel(n_jobs=2, pickler={pickler!r})(delayed(twice)(i) for i in range(4)))
"""


@pytest.mark.parametrize("pickler", ["cloudpickle", "hybrid"])
def test_main_function_by_value(pickler):
    res = run_python(MAIN_SCRIPT.format(pickler=pickler))
    assert res.returncode == 0, res.stderr
    assert "[0, 2, 4, 6]" in res.stdout


def test_main_function_under_pickle_explains_why():
    res = run_python(MAIN_SCRIPT.format(pickler="pickle"))
    assert res.returncode != 0
    err = res.stderr
    assert "picklepool.errors.UnpicklingError" in err
    assert "__main__.twice" in err
    assert "by reference" in err
    assert "hybrid" in err


def stuck_in_c(i):
    if i == 1:
        import signal as sig

        sig.pthread_sigmask(sig.SIG_BLOCK, [sig.SIGALRM])  # the in-worker interruption cannot land
        threading.Event().wait(60)
    return i


def test_timeout_backstop_kills_a_worker_that_ignores_interruption():
    with pytest.raises(TaskTimeoutError, match="task 1: stuck_in_c.* did not respond"):
        Parallel(n_jobs=2, batch_size=1, timeout=0.3)(delayed(stuck_in_c)(i) for i in range(3))
    assert Parallel(n_jobs=2)(delayed(pid_of)(i) for i in range(2))


def hang_and_report(i, folder):
    if i == 1:
        with open(os.path.join(folder, "pid"), "w") as f:
            f.write(str(os.getpid()))
        threading.Event().wait(60)
    return i


def test_a_timed_out_worker_is_replaced(tmp_path):
    import psutil

    from picklepool.executor.session import session

    with Parallel(n_jobs=2, batch_size=1) as p:
        # loky only recycles a worker after its first call: warm both workers up first.
        for _ in range(50):
            p(delayed(pid_of)(i) for i in range(10))
            if all(session().worker_status(pid) for pid in p._backend.worker_pids()):
                break
        with pytest.raises(TaskTimeoutError, match="task 1"):
            Parallel(n_jobs=2, batch_size=1, timeout=0.5)(
                delayed(hang_and_report)(i, str(tmp_path)) for i in range(3)
            )
        pid = int((tmp_path / "pid").read_text())
        psutil.Process(pid).wait(timeout=30)  # it retires once its reply is sent
        assert pid not in p(delayed(pid_of)(i) for i in range(10))


def test_workers_start_with_standalone_loky_even_after_joblib_is_imported():
    code = """
        import psutil
        from picklepool import Parallel, delayed
        import joblib.externals.loky  # registers joblib's "loky" start method, replacing loky's
        Parallel(n_jobs=2)(delayed(abs)(-1) for _ in range(2))
        print([" ".join(c.cmdline()) for c in psutil.Process().children()])
    """
    res = run_python(code)
    assert res.returncode == 0, res.stderr
    assert "joblib" not in res.stdout
    assert "loky" in res.stdout


def test_the_envelope_goes_packed_and_anything_else_as_loky_takes_it():
    from picklepool.executor.backends import LokyBackend, _packed

    assert _packed(abs, (-1,)) is not None
    assert _packed(lambda: 0, ()) is None  # the standard pickler refuses it
    backend = LokyBackend(2)
    try:
        assert backend.submit(abs, -3).result(timeout=60) == 3  # packed
        assert backend.submit(lambda x: x + 1, 1).result(timeout=60) == 2  # cloudpickle, by loky
    finally:
        backend.release()
