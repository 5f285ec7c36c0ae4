"""Nothing waits without bound for a worker (issue 14, items 1 and 8).

Each hang is reproduced where it was found; a hang shows as the subprocess (or the
test, through pytest-timeout) running out of its deadline, never as a timed assert.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import Future
from typing import Any

import psutil
import pytest

import picklepool
from picklepool import Parallel, WorkerCrashedError, delayed
from picklepool.executor import reaper
from picklepool.executor.backend import Backend
from picklepool.executor.batching import FixedBatcher
from picklepool.executor.dispatch import Call
from tests.conftest import run_python
from tests.executor.crash_cases import half_a_result_then_die


@pytest.mark.timeout(150)
def test_a_retired_worker_that_ran_a_nested_call_does_not_stall_the_pool():
    # The snippet: a worker that ran a nested Parallel (so owns an inner loky
    # pool) is retired, by memory recycling (every worker that runs two batches) and by
    # a timeout; it used to wait for its idle inner workers (300 s), and the parent's
    # loky manager thread with it, so every later call and the exit hung.
    result = run_python(
        """
        import time
        from picklepool import Parallel, delayed

        def inner(x):
            return x + 1

        def nested_then_sleep(d):
            s = sum(Parallel(n_jobs=2, backend="loky")(delayed(inner)(j) for j in range(4)))
            time.sleep(d)
            return s

        if __name__ == "__main__":
            p = Parallel(n_jobs=2, batch_size=1, max_worker_memory="1")
            assert p(delayed(nested_then_sleep)(0) for i in range(6)) == [10] * 6
            try:
                Parallel(n_jobs=2, timeout=5, batch_size=1)(
                    delayed(nested_then_sleep)(d) for d in [0, 60, 0, 0])
            except TimeoutError:
                pass
            else:
                raise AssertionError("no timeout")
            print(Parallel(n_jobs=2)(delayed(inner)(i) for i in range(8)))
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[1, 2, 3, 4, 5, 6, 7, 8]"
    # the workers' own exits did it: the parent's backstop (below) had nothing to kill
    assert result.stderr == ""


def hold_the_exit(i):
    atexit.register(threading.Event().wait)  # the worker's exit never ends
    return i


@pytest.mark.timeout(60)
def test_a_retired_worker_that_cannot_exit_is_killed_and_reported(monkeypatch):
    # A retired worker whose exit never ends (an atexit function of a task's that waits for
    # ever): loky's manager thread joins it without a deadline.
    monkeypatch.setattr(reaper, "EXIT_DEADLINE", 0.5)
    with pytest.warns(RuntimeWarning, match=r"worker pid \d+ had not exited .* it was killed"):
        out = Parallel(n_jobs=2, batch_size=1, max_worker_memory="1")(
            delayed(hold_the_exit)(i) for i in range(6)
        )
        assert out == list(range(6))
        assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


@pytest.mark.timeout(60)
def test_shutdown_has_a_deadline_then_kills(monkeypatch, capsys):
    monkeypatch.setattr(reaper, "EXIT_DEADLINE", 0.5)
    assert Parallel(n_jobs=2, batch_size=1)(delayed(hold_the_exit)(i) for i in range(4)) == [
        0,
        1,
        2,
        3,
    ]
    picklepool.shutdown(wait=True)
    err = capsys.readouterr().err
    assert "did not stop within 0.5 s of shutdown and was killed" in err, err


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["retired", "shutdown"])
@pytest.mark.parametrize("left", ["thread", "thread pool"])
def test_a_worker_leaving_its_pool_does_not_wait_for_the_threads_its_tasks_left(how, left):
    # Python joins a process's non-daemon threads at exit: a worker holding one never
    # exited, and loky's manager thread, joining it, held the next call's replies until
    # the parent killed it (EXIT_DEADLINE, 5 s). It now exits without them, saying so. A
    # ThreadPoolExecutor left open is one too (the standard library's exit hook joins its
    # threads without a deadline: it runs after ours now); one left idle ends at once.
    result = run_python(
        f"""
        import os, threading
        from concurrent.futures import ThreadPoolExecutor
        import picklepool
        from picklepool import Parallel, delayed

        def leave_a_thread_behind(i):
            if {left!r} == "thread":
                threading.Thread(target=threading.Event().wait, name="left-behind").start()
            else:
                ThreadPoolExecutor(2, thread_name_prefix="left-behind").submit(threading.Event().wait)
                ThreadPoolExecutor(2).submit(abs, -i)  # (an idle one: not waited for, not named)
            return os.getpid()

        if __name__ == "__main__":
            memory = "1" if {how!r} == "retired" else None  # (each worker retired after its batch)
            pids = Parallel(n_jobs=2, batch_size=1, max_worker_memory=memory)(
                delayed(leave_a_thread_behind)(i) for i in range(4)
            )
            print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)))
            picklepool.shutdown(wait=True)
            print(sorted(set(pids)))
        """,
        timeout=100,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[0, 1, 2, 3]", result.stdout
    for pid in json.loads(lines[1]):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "left its pool with threads its tasks started still running ('left-behind" in result.stderr
    assert "ThreadPoolExecutor-" not in result.stderr  # (the idle pools' threads ended at once)
    assert "Join such a thread in the task that starts it" in result.stderr
    assert "killed" not in result.stderr, result.stderr  # (not the parent's backstop)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["retired", "shutdown"])
def test_a_worker_leaving_its_pool_stops_the_processes_its_tasks_left(how):
    # multiprocessing's exit joins a process's non-daemon children, before the threads' hook:
    # a worker whose task started one and left it running never exited, until the parent
    # killed it and its child EXIT_DEADLINE (5 s) later with a line blaming "a non-daemon
    # thread"; the child's work was lost without a word. It now waits GRACE for them as for
    # threads, then names them on stderr and stops them: none outlives the worker.
    result = run_python(
        f"""
        import json, multiprocessing, os, threading
        import picklepool
        from picklepool import Parallel, delayed

        def leave_a_process_behind(i):
            child = multiprocessing.get_context("fork").Process(
                target=threading.Event().wait, name=f"left-behind-{{i}}"
            )
            child.start()
            return os.getpid(), child.pid

        if __name__ == "__main__":
            memory = "1" if {how!r} == "retired" else None  # (each worker retired after its batch)
            pids = Parallel(n_jobs=2, batch_size=1, max_worker_memory=memory)(
                delayed(leave_a_process_behind)(i) for i in range(4)
            )
            print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)))
            picklepool.shutdown(wait=True)
            print(json.dumps(pids))
        """,
        timeout=100,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[0, 1, 2, 3]", result.stdout
    for pid in [pid for pair in json.loads(lines[1]) for pid in pair]:  # workers and children
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert "with child processes its tasks started still running ('left-behind-" in result.stderr
    assert "Join such a process in the task that starts it" in result.stderr
    assert "killed" not in result.stderr, result.stderr  # (not the parent's backstop)


@pytest.mark.timeout(60)
def test_the_interpreter_exit_has_a_deadline_too():
    result = run_python(
        """
        import threading
        from picklepool import Parallel, delayed
        from picklepool.executor import reaper

        def leave(i):
            threading.Thread(target=threading.Event().wait).start()
            return i

        if __name__ == "__main__":
            reaper.EXIT_DEADLINE = 0.5
            print(Parallel(n_jobs=2, batch_size=1)(delayed(leave)(i) for i in range(4)))
        """,
        timeout=50,
    )
    assert result.returncode == 0, result.stderr
    assert "did not stop within 0.5 s of shutdown and was killed" in result.stderr


class _Stalled(Backend):
    """A pool that accepted the batches and will never answer (its manager is gone)."""

    name = "stalled"
    moves_bytes = False

    def submit(self, fn, *args):
        return Future()

    def check(self):
        return [], "the worker pool stopped delivering results"

    def shutdown(self, kill=False):
        self.stopped = kill


@pytest.mark.timeout(30)
def test_a_call_whose_pool_stops_delivering_fails_instead_of_hanging():
    backend = _Stalled(2)
    call = Call(backend, None, FixedBatcher(1), 2, None, True)
    with pytest.raises(WorkerCrashedError, match=r"task 0: abs\(-1\).*stopped delivering results"):
        list(call.run([(abs, (-1,), {}), (abs, (-2,), {})]))
    assert backend.stopped


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_a_generator_left_in_a_global_at_exit_prints_nothing(return_as):
    result = run_python(
        f"""
        import numpy as np
        from picklepool import Parallel, delayed

        def total(a, i):
            return float(a.sum()) + i

        big = np.ones(1_000_000)  # through shared memory
        G = Parallel(n_jobs=2, batch_size=1, return_as={return_as!r})(
            delayed(total)(big, i) for i in range(50))
        print(next(G) >= 1e6)
        """
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "True\n", "")


@pytest.mark.parametrize("read", [0, 1])
@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_a_generator_left_in_a_globals_container_at_exit_prints_nothing(return_as, read):
    # in a list or dict of jobs, it is dropped as the interpreter clears the modules, whose
    # globals are None by then: its clean-up printed "Exception ignored in: <generator object
    # _flatten ...> AttributeError: 'NoneType' object has no attribute 'end'"
    result = run_python(
        f"""
        import time
        from picklepool import Parallel, delayed

        JOBS = {{"pending": []}}

        if __name__ == "__main__":
            # (no function of __main__: the generator outlives the script's module)
            g = Parallel(n_jobs=2, return_as={return_as!r})(  # (every task sent)
                delayed(time.sleep)(0 if i < 1 else 60) for i in range(3)
            )
            print([next(g) for _ in range({read})])
            JOBS["pending"].append(g)
        """
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{[None] * read}\n", "")


@pytest.mark.timeout(30)
def test_an_executor_whose_pool_stops_delivering_fails_its_futures_instead_of_hanging():
    from picklepool import Executor

    ex = Executor(max_workers=2)
    backend = _Stalled(2)
    backend.moves_bytes = True
    ex._channel.backend = backend
    ex._channel.send = lambda items, first, column=None, **kw: Future()  # accepted, never answered
    fut = ex.submit(abs, -1)
    with pytest.raises(WorkerCrashedError, match="stopped delivering results"):
        fut.result(timeout=20)
    assert backend.stopped


def test_a_killed_pool_leaves_no_status_file_of_its_workers():
    from picklepool.executor.session import session

    pids = set(Parallel(n_jobs=2, batch_size=1)(delayed(os.getpid)() for _ in range(8)))
    picklepool.shutdown(kill=True)  # killed workers cannot remove their own
    left = {int(e[1:]) for e in os.listdir(session().path) if e[:1] == "w" and e[1:].isdigit()}
    assert not (left & pids)


_NESTED_AND_MADE_BY = """
import json, os, re, signal, time
import psutil
from picklepool import Parallel, WorkerCrashedError, delayed, shutdown

def nested(i):
    Parallel(n_jobs=2, backend="loky")(delayed(abs)(j) for j in range(4))
    return os.getpid()

def made_by(pids):
    names = os.listdir("/dev/shm")
    return sorted(n for n in names
                  if (m := re.match(r"(?:sem\\.loky|picklepool)-(\\d+)-", n)) and int(m[1]) in pids)

def crash_or_wait(i, gate):
    if i == 0:
        os._exit(3)
    with open(gate) as f:  # never opened for writing: runs until loky kills this worker
        return f.read()
"""


def _nothing_left_after(main: str) -> dict[str, Any]:
    """Run ``_NESTED_AND_MADE_BY`` + *main*, whose last line is JSON with what its workers'
    nested calls made ``before`` and what is left ``after``: that nothing is; the JSON."""
    result = run_python(_NESTED_AND_MADE_BY + main, timeout=60)
    assert result.returncode == 0, result.stderr
    # the script's own line (a worker's output shares its stdout)
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"before"')]
    assert lines, (result.stdout, result.stderr)
    out: dict[str, Any] = json.loads(lines[-1])
    assert out["before"], "the nested pools made nothing to clean: the test proves nothing"
    assert out["after"] == []
    assert "leaked" not in result.stderr, result.stderr
    return out


def test_killed_workers_leave_no_folder_or_semaphore_behind():
    # A worker that ran a nested loky call holds that pool's semaphores and its own
    # session folder; killed (Ctrl-C, shutdown(kill=True)), it cannot remove them, and
    # loky's tracker would only do so at the parent's exit, warning of "leaked" objects.
    _nothing_left_after(
        """
if __name__ == "__main__":
    pids = set(Parallel(n_jobs=2, batch_size=1)(delayed(nested)(i) for i in range(4)))
    before = made_by(pids)
    shutdown(kill=True)
    print(json.dumps({"before": before, "after": made_by(pids)}))
"""
    )


def test_a_crashed_call_leaves_nothing_of_the_workers_loky_killed(tmp_path):
    # One worker dies in a task (os._exit here; a segfault, the OOM killer): loky kills
    # the pool's other workers itself. Those ran a nested loky call, whose folder and
    # semaphores stayed until the parent's exit (loky's tracker: "leaked"), in a long
    # session one set per crash. Gone once the failed call has raised.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    out = _nothing_left_after(
        f"""
if __name__ == "__main__":
    pids = set(Parallel(n_jobs=2, batch_size=1)(delayed(nested)(i) for i in range(4)))
    before = made_by(pids)
    try:
        Parallel(n_jobs=2, batch_size=1)(delayed(crash_or_wait)(i, {str(gate)!r}) for i in range(2))
    except WorkerCrashedError as e:
        error = str(e)
    print(json.dumps({{"before": before, "after": made_by(pids), "error": error}}))
"""
    )
    assert "task 0: crash_or_wait(0" in out["error"]


def test_workers_dead_before_shutdown_leave_nothing():
    # A worker killed from outside while idle (the OOM killer): loky kills and reaps its
    # pool's other worker on its own. shutdown() found neither among the pool's workers,
    # and what their nested calls made stayed (this failed CI once, as a race: the first
    # worker killed by shutdown broke the pool, and loky reaped the second first).
    _nothing_left_after(
        """
if __name__ == "__main__":
    pids = set(Parallel(n_jobs=2, batch_size=1)(delayed(nested)(i) for i in range(4)))
    before = made_by(pids)
    os.kill(min(pids), signal.SIGKILL)
    while any(psutil.pid_exists(p) for p in pids):  # loky reaps both (bounded by the test's timeout)
        time.sleep(0.01)
    shutdown(kill=True)
    print(json.dumps({"before": before, "after": made_by(pids)}))
"""
    )


def test_killing_a_tree_that_is_gone_still_removes_what_it_left(monkeypatch, tmp_path):
    import subprocess
    import tempfile

    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: psutil.Process(pid) raises NoSuchProcess
    left = tmp_path / f"picklepool-{gone.pid}-0000"
    left.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    reaper.kill_tree(gone.pid)
    assert not left.exists()


def test_a_workers_exit_waits_for_the_threads_of_the_pools_it_killed(tmp_path):
    # A worker leaves with os._exit. The manager thread of a nested pool it killed, ending
    # that pool, runs the finalizers of the pool's semaphores (unlink, then off loky's
    # tracker), and so does its call queue's feeder thread: one cut short left the
    # semaphore, or left it tracked, and loky's tracker warned of a "leaked" semaphore at
    # the parent's exit (the retired-worker test above failed so about once in 40 runs
    # under load). The last thing each worker's exit runs records which still run.
    log = tmp_path / "log"
    result = run_python(
        f"""
        import threading
        from multiprocessing.util import Finalize
        from picklepool import Parallel, delayed

        def at_the_very_end(log):
            def record():
                alive = [t.name for t in threading.enumerate() if t.is_alive() and (
                         type(t).__name__ == "_ExecutorManagerThread" or t.name == "QueueFeederThread")]
                with open(log, "a") as f:
                    f.write(f"{{alive}}\\n")
            Finalize(None, record, exitpriority=-100)

        def nested(i):
            return sum(Parallel(n_jobs=2, backend="loky")(delayed(abs)(j) for j in range(4)))

        if __name__ == "__main__":
            p = Parallel(n_jobs=2, batch_size=1, max_worker_memory="1",
                         initializer=at_the_very_end, initargs=({str(log)!r},))
            print(p(delayed(nested)(i) for i in range(4)))
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[6, 6, 6, 6]"
    exits = log.read_text().splitlines()
    assert len(exits) >= 4  # each worker ran one batch, then left (recycled)
    assert set(exits) == {"[]"}, exits  # none left running (joined, or ended before)


def test_a_reused_pid_is_not_taken_for_a_worker():
    # A worker reaped meanwhile leaves its pid free: a process that is not this
    # process's child must never count as a running worker (the reaper would kill it).
    class Gone:
        pid = os.getppid()  # alive, and not our child

    class Ours:
        pid = None

    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        Ours.pid = child.pid
        assert reaper._running(Ours)
        assert not reaper._running(Gone)
    finally:
        child.stdin.close()
        child.wait()
    assert not reaper._running(Ours)


def test_killing_a_tree_whose_pid_was_reused_removes_nothing_of_the_live_process(monkeypatch, tmp_path):
    # psutil raises NoSuchProcess for a process that is gone and also for one whose pid
    # a new process holds now: that process's folders are its own, not leftovers.
    import subprocess
    import tempfile

    import psutil

    live = subprocess.Popen(["sleep", "60"])
    try:
        mine = tmp_path / f"picklepool-{live.pid}-0000"
        mine.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

        class Reused:
            pid = live.pid

            def __init__(self, pid: int) -> None:
                pass

            def ppid(self) -> int:
                return os.getpid()  # the worker it stands for was ours

            def children(self, recursive: bool = False) -> list:
                return []

            def kill(self) -> None:
                raise psutil.NoSuchProcess(self.pid)

        monkeypatch.setattr(psutil, "Process", Reused)
        reaper.kill_tree(live.pid)
        assert mine.is_dir()
        assert live.poll() is None
    finally:
        live.kill()
        live.wait()


def test_killing_a_tree_leaves_a_process_that_is_not_this_ones_child():
    # A forked child stopping a pool it inherited (its workers are the parent's
    # children) killed the parent's workers: kill_tree kills only this process's own.
    import subprocess
    import sys

    import psutil

    code = (
        "import subprocess, sys; p = subprocess.Popen(['sleep', '60']); "
        "print(p.pid, flush=True); sys.stdin.read()"
    )
    middle = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        grandchild = int(middle.stdout.readline())
        reaper.kill_tree(grandchild)
        assert psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE  # not killed
    finally:
        os.kill(grandchild, 9)
        middle.stdin.close()
        middle.wait()


def tell_then_wait(started, gate):
    with open(started, "w"):  # tells the test the task runs
        pass
    with open(gate) as f:  # blocks until the test opens the gate (a FIFO); it never does here
        return f.read()


def running_call(tmp_path):
    """A ``return_as="generator"`` call of one task that runs until its worker is killed, running."""
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    os.mkfifo(started)
    os.mkfifo(gate)
    results = Parallel(n_jobs=2, return_as="generator", batch_size=1)(
        delayed(tell_then_wait)(started, gate) for _ in range(1)
    )
    with open(started) as f:  # the task runs now
        f.read()
    return results


def test_a_call_whose_pool_is_killed_by_shutdown_says_so_not_segfault(tmp_path):
    results = running_call(tmp_path)
    picklepool.shutdown(kill=True)  # as another thread of the program might
    with pytest.raises(WorkerCrashedError) as info:
        next(results)
    message = str(info.value)
    assert "killed by picklepool.shutdown(kill=True) while running task 0: tell_then_wait(" in message
    assert "segfault" not in message
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]  # a new pool


@pytest.mark.timeout(60)
def test_shutdown_leaves_alone_a_pool_another_thread_starts_meanwhile(monkeypatch):
    # picklepool.shutdown(kill=True) in one thread, a new call in another: the new
    # pool's workers start while stop() waits for the old pool, before the new one is
    # tracked (pool.acquire tracks it once started). They are not "late" workers.
    from picklepool import lokycompat

    old = lokycompat.new_executor(2, 300.0, None)
    reaper.track(old)
    real_thread, new = lokycompat.manager_thread(old), []

    class Joined:  # stop() waits for the old pool's manager thread: a new pool starts then
        def join(self, timeout=None):
            if not new:
                new.append(lokycompat.new_executor(2, 300.0, None))  # not tracked yet
            real_thread.join(timeout)

        def is_alive(self):
            return real_thread.is_alive()

    monkeypatch.setattr(lokycompat, "manager_thread", lambda executor: Joined())
    try:
        notes = reaper.stop(old, wait=True, kill=True, deadline=5.0)
        assert notes == []
        assert new[0].submit(abs, -3).result(timeout=30) == 3  # its workers were not killed
    finally:
        monkeypatch.undo()
        for executor in new:
            reaper.stop(executor, kill=True)


@pytest.mark.timeout(60)
def test_stopping_a_pool_leaves_alone_the_workers_another_pool_is_retiring(monkeypatch, capsys):
    # Two threads' calls each end on a pool of their own (the shared one was busy):
    # each stop() killed the other pool's exiting workers, which loky no longer lists,
    # and said "did not stop within 5 s of shutdown" at once (6 such lines in a 6 s run).
    from picklepool import lokycompat

    ours, other = lokycompat.new_executor(1, 300.0, None), lokycompat.new_executor(1, 300.0, None)
    reaper.track(ours)
    reaper.track(other)
    try:
        assert other.submit(abs, -3).result(timeout=30) == 3  # its worker is up
        listed = lokycompat.worker_processes
        # loky has taken the other pool's worker off its list: it is leaving that pool
        monkeypatch.setattr(lokycompat, "worker_processes", lambda e: {} if e is other else listed(e))
        notes = reaper.stop(ours, wait=True)
        monkeypatch.undo()
        assert notes == []
        assert "did not stop" not in capsys.readouterr().err
        assert other.submit(abs, -4).result(timeout=30) == 4  # its worker was not killed
    finally:
        monkeypatch.undo()
        reaper.stop(other, kill=True)


def test_a_call_whose_jobs_loky_fails_at_the_kill_says_so_too(tmp_path, monkeypatch):
    # loky's manager thread may see the shutdown before the workers' deaths: it then fails
    # every job it holds, the running one too, with its ShutdownExecutorError (a race,
    # ~1 run in 6 above). Leaving the kill to loky makes it happen every time.
    monkeypatch.setattr(reaper, "kill_tree", lambda pid: None)
    results = running_call(tmp_path)
    picklepool.shutdown(kill=True)
    with pytest.raises(WorkerCrashedError) as info:
        next(results)
    message = str(info.value)
    expected = "killed by picklepool.shutdown(kill=True) while running task 0: tell_then_wait("
    assert expected in message, message
    monkeypatch.undo()
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]  # a new pool


@pytest.mark.timeout(120)
@pytest.mark.parametrize("warm", [False, True])
def test_a_call_at_interpreter_exit_says_why_it_cannot_run(warm):
    # from an atexit handler loky takes no jobs and starts no workers: the call raised
    # loky's bare RuntimeError (or, with no pool yet, "can't register atexit after
    # shutdown" and the new workers' tracebacks) and left its session folder behind
    result = run_python(
        f"""
        import atexit
        from picklepool import Executor, Parallel, delayed

        def at_exit():
            for backend in ("loky", "threading"):
                try:
                    Parallel(n_jobs=2, backend=backend)(delayed(abs)(-i) for i in range(4))
                except RuntimeError as exc:
                    print(exc)
            try:
                Executor(2).submit(abs, -1)
            except RuntimeError as exc:
                print(exc)
            print(Parallel(n_jobs=1)(delayed(abs)(-i) for i in range(3)))

        if __name__ == "__main__":
            atexit.register(at_exit)
            if {warm!r}:
                print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)))
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()[1 if warm else 0 :]
    assert len(lines) == 4, result.stdout + result.stderr
    for line, backend in zip(lines[:2], ("loky", "threading"), strict=True):
        assert line.startswith(f"a Parallel call with n_jobs=2 on the {backend} backend was made while the ")
        assert "interpreter is exiting" in line and "pass n_jobs=1" in line
    assert lines[2].startswith("cannot schedule new futures after interpreter shutdown: ")
    assert lines[3] == "[0, 1, 2]"
    assert result.stderr == "", result.stderr  # no worker's traceback, no leaked folder


@pytest.mark.timeout(120)
def test_a_call_from_a_thread_once_the_main_thread_ended_says_why_it_cannot_run():
    # A daemon thread calling in a loop when the main thread ends: its call, made as the
    # exit hooks stopped the pools and before loky's said "exiting", started a new pool
    # that loky then tore down under its booting workers ("LokyProcess-3 failed with
    # traceback: ... FileNotFoundError", loky's "cannot create weak reference to
    # 'NoneType' object"). The threading module's exit begins the refusal: the hook
    # below runs first among its exit hooks, and lets the thread call there.
    result = run_python(
        """
        import threading
        from picklepool import Executor, Parallel, delayed

        go, done = threading.Event(), threading.Event()

        def late_caller():
            go.wait()
            try:
                Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4))
                print("ran")
            except RuntimeError as exc:
                print(exc)
            try:
                Executor(2).submit(abs, -1).result()
                print("ran")
            except RuntimeError as exc:
                print(exc)
            done.set()

        def main_thread_ended():  # registered after picklepool's and loky's: runs before them
            go.set()
            done.wait()

        if __name__ == "__main__":
            print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)))
            threading.Thread(target=late_caller, daemon=True).start()
            threading._register_atexit(main_thread_ended)
        """
    )
    assert result.returncode == 0, result.stderr
    first, parallel, executor = result.stdout.splitlines()
    assert first == "[0, 1, 2]"
    assert parallel.startswith("a Parallel call with n_jobs=2 on the loky backend was made while the ")
    assert "a thread still running after the main thread ended" in parallel and "join()" in parallel
    assert executor.startswith("cannot schedule new futures after interpreter shutdown: ")
    assert "a thread still running after the main thread ended" in executor
    assert result.stderr == "", result.stderr


# A call in a daemon thread whose tasks 2 and 3 run until their workers are killed; the
# main thread ends once task 2 runs (a FIFO tells it). A non-daemon thread keeps the
# interpreter alive until the caller has printed what it got (Python's exit does not wait
# for a daemon thread; it lets a non-daemon thread's call end: test_thread_exit.py)
_CALL_IN_A_THREAD = """
        import os, threading
        from picklepool import Parallel, delayed

        printed = threading.Event()

        def step(i, fifo):
            if i == 2:
                with open(fifo, "w") as f:
                    f.write("x")
            threading.Event().wait(60 if i >= 2 else 0)  # killed at exit
            return i

        def caller(fifo):
            try:
                Parallel(n_jobs=2, batch_size=1)(delayed(step)(i, fifo) for i in range(40))
                print("ran")
            except Exception as exc:
                print(type(exc).__name__, exc)
            finally:
                printed.set()

        if __name__ == "__main__":
            import tempfile
            fifo = os.path.join(tempfile.mkdtemp(), "started")
            os.mkfifo(fifo)
            threading.Thread(target=caller, args=(fifo,), daemon=True).start()
            threading.Thread(target=printed.wait).start()  # (not a daemon thread)
            with open(fifo) as f:  # task 2 runs now
                f.read()
            os.unlink(fifo)
            os.rmdir(os.path.dirname(fifo))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_a_call_running_in_a_daemon_thread_when_the_main_thread_ends_says_so_and_names_its_task(backend):
    # A call made before the main thread ended, still running in a daemon thread, which
    # Python's exit does not wait for: its hooks stop the pools under it. It was told "the
    # interpreter's exit (a call running in a daemon thread) ... Stop the workers between
    # calls" (loky), or "a return_as='generator' read after its `with Parallel(...)` block
    # ended" (threading), with no task named on the threading backend.
    result = run_python(
        f"""
        import threading
        from concurrent.futures import thread as pool_threads
        from picklepool import Parallel, delayed

        started, printed = threading.Event(), threading.Event()

        def step(i):
            started.set()
            while i >= 2 and not pool_threads._shutdown:  # until Python's exit stops the pools
                threading.Event().wait(0.01)
            return i

        def caller():
            try:
                Parallel(n_jobs=2, backend={backend!r}, batch_size=1)(delayed(step)(i) for i in range(40))
                print("ran")
            except Exception as exc:
                print(type(exc).__name__, exc)
            finally:
                printed.set()

        if __name__ == "__main__":
            Parallel(n_jobs=2, backend={backend!r})(delayed(abs)(-i) for i in range(3))  # warm
            threading.Thread(target=caller, daemon=True).start()
            threading.Thread(target=printed.wait).start()  # (not a daemon thread: until it printed)
            started.wait()
        """
        if backend == "threading"
        else _CALL_IN_A_THREAD
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert "the main thread ended while this call ran in a daemon thread" in line, line
    assert "join() the threads that make calls before the main thread ends" in line, line
    assert "or make them non-daemon threads" in line, line
    assert "task " in line and "step(" in line, line
    assert "with Parallel" not in line, line


@pytest.mark.timeout(120)
def test_a_call_in_a_thread_that_sends_a_batch_once_the_exit_stopped_its_pool_does_not_start_another():
    # The race behind a rare CI failure (about 1 run in 30 on a loaded host): the exit's hook
    # stopped the pool while the call's thread was sending its next batch; loky refused it
    # (shut down), and the call took a fresh pool, which nothing stopped: the exit waited for
    # it (60 s here), and the error named no cause. The batch now fails as the pool it was
    # meant for did. Here the batch is held until the hook has stopped the pool.
    result = run_python(
        """
        import threading
        from picklepool.executor import lanes, reaper

        stopped = threading.Event()
        _stop, _submit = reaper.stop, lanes.loky_submit
        sent = []

        def stop(executor, *args, **kwargs):
            try:
                return _stop(executor, *args, **kwargs)
            finally:
                stopped.set()

        def loky_submit(executor, fn, *args):
            sent.append(fn)
            if len(sent) > 4:  # a batch sent once the exit's hook has stopped the pool
                stopped.wait()
            return _submit(executor, fn, *args)

        reaper.stop, lanes.loky_submit = stop, loky_submit
        """
        + _CALL_IN_A_THREAD
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("WorkerCrashedError the workers were killed by the interpreter's exit"), line
    assert "join() the threads that make calls before the main thread ends" in line, line
    assert re.search(r"while running task [23]: step\([23], ", line), line  # (the two running)


def two_running_then_large_jobs(tmp_path):
    """A generator call: two tasks that run until their workers are killed, then large jobs.

    The large jobs (a 200,000-item list each, about 1 MB pickled, more than a pipe
    holds) wait in loky's call queue behind the busy workers: its feeder thread is
    writing one of them to the workers' pipe when the pool is killed.
    """
    gate = str(tmp_path / "gate")
    os.mkfifo(gate)
    started = [str(tmp_path / f"started{i}") for i in range(2)]
    for path in started:
        os.mkfifo(path)
    big = list(range(200_000))
    calls = [delayed(tell_then_wait)(path, gate) for path in started]
    calls += [delayed(len)(big) for _ in range(4)]
    results = Parallel(n_jobs=2, return_as="generator", batch_size=1, pre_dispatch="all")(calls)
    for path in started:
        with open(path) as f:  # that task runs now
            f.read()
    return results


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["shutdown", "dropped"])
def test_a_killed_pool_with_jobs_still_queued_ends_its_feeder_thread(tmp_path, how):
    # loky's call queue writes each job to a pipe its workers read, and this process
    # holds the pipe's read end: once the workers were killed (Ctrl-C, shutdown(kill=True),
    # a dropped generator's leftovers at the next call) with large jobs still queued,
    # the queue's feeder thread blocked in write() for ever, holding the queue, its pipe
    # and those jobs' bytes: one thread, two fds and the batches more per killed pool.
    from picklepool import lokycompat
    from picklepool.executor import pool

    results = two_running_then_large_jobs(tmp_path)
    feeder = lokycompat.call_queue(pool._shared)._thread
    assert feeder.is_alive()
    if how == "shutdown":
        picklepool.shutdown(kill=True)
        with pytest.raises(WorkerCrashedError):
            next(results)
    else:
        results.close()  # cancels what it can; the two tasks run on (leftovers)
        assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]  # kills them
        for thread in threading.enumerate():
            if thread.name == "picklepool-end-queue":
                thread.join()
    assert not feeder.is_alive()
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["dropped", "shutdown"])
def test_a_worker_killed_as_it_writes_a_result_does_not_hang_the_exit(tmp_path, how):
    # loky's result pipe: this process keeps a copy of its writing end for the pool's
    # life, so a worker killed in the middle of writing a result (a large one, when a
    # dropped generator's leftovers are killed by the next call, or shutdown(kill=True),
    # or Ctrl-C) left half a message there, and loky's manager thread waited for the
    # rest for ever: the interpreter's exit, which joins it, hung (1 run in 4 of a
    # script dropping a generator of 2 MB results and then calling again).
    started = str(tmp_path / "started")
    os.mkfifo(started)
    result = run_python(
        f"""
        import gc, os, struct, time
        import picklepool
        from picklepool import Parallel, delayed

        def half_a_result(started):
            from loky.backend.queues import SimpleQueue
            results = next(o for o in gc.get_objects() if isinstance(o, SimpleQueue))
            # a 1 MB message's length, then its first bytes: the rest never comes
            os.write(results._writer.fileno(), struct.pack("!i", 1 << 20) + b"x" * 100)
            with open(started, "w"):
                pass
            time.sleep(600)

        if __name__ == "__main__":
            results = Parallel(n_jobs=2, return_as="generator")(
                delayed(half_a_result)({started!r}) for _ in range(1))
            with open({started!r}) as f:  # the half is written
                f.read()
            if {how!r} == "dropped":
                del results  # its task runs on: the next call kills its worker
                print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)))
            else:
                picklepool.shutdown(kill=True)
                print("stopped")
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("[0, 1, 2]" if how == "dropped" else "stopped")


@pytest.mark.timeout(60)
def test_a_worker_that_dies_as_it_writes_a_result_fails_the_call_instead_of_hanging(monkeypatch):
    # The same half message, left by a worker that died of its own (the OOM killer as it
    # sent a large result): loky's manager thread waited for the rest, never saw the
    # death, and the call waited for ever (so does joblib's). A worker dead for
    # UNNOTICED_DEATH seconds that its pool still lists now counts as a stalled pool.
    monkeypatch.setattr(reaper, "UNNOTICED_DEATH", 1.0, raising=False)
    with pytest.raises(
        WorkerCrashedError, match=r"task 0: half_a_result_then_die\(0\).*middle of sending a result"
    ):
        Parallel(n_jobs=2)(delayed(half_a_result_then_die)(i) for i in range(1))
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


@pytest.mark.timeout(120)
def test_an_executor_whose_manager_thread_fails_fails_its_futures_instead_of_hanging(monkeypatch):
    # A bug in the manager thread (as the TypeError a task's tuple __notes__ once raised
    # there) ended it, and every unfinished future waited for ever.
    from concurrent.futures.process import BrokenProcessPool

    from picklepool.executor.futures import Executor

    def broken(self, batch):
        raise ZeroDivisionError("a bug")

    seen: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    monkeypatch.setattr(Executor, "_deliver", broken)
    ex = Executor(max_workers=2)
    futures = [ex.submit(abs, -i) for i in range(20)]
    errors = [f.exception(timeout=60) for f in futures]  # (a hang: TimeoutError)
    assert all(type(e) is BrokenProcessPool for e in errors)
    assert "manager thread failed (ZeroDivisionError: a bug)" in str(errors[0])
    with pytest.raises(BrokenProcessPool, match="bug in picklepool"):
        ex.submit(abs, 1)
    ex.shutdown()
    assert [type(e) for e in seen] == [ZeroDivisionError]  # the thread still reports the bug
    monkeypatch.undo()
    with Executor(max_workers=2) as fresh:
        assert fresh.submit(abs, -1).result(timeout=60) == 1


@pytest.mark.parametrize("leave", ["break", "close", "global", "sys.exit"])
def test_a_script_that_leaves_a_generator_with_tasks_running_exits_at_once_and_quietly(leave):
    # Was: the exit waited 5 s for the tasks nobody would read, then killed the workers and
    # printed "worker pid N did not stop within 5 s of shutdown..." (a generator left in a
    # global also printed "Exception ignored in: <generator object _flatten ...>"); joblib
    # kills its workers at once there. Tasks 2 to 4 block for ever: only a kill ends them.
    ends = {
        "break": "for r in G:  # the other quick task's result\n    break",
        "close": "G.close()",
        "global": "",
        "sys.exit": "for r in G:\n    sys.exit(0)",
    }[leave]
    code = textwrap.dedent(
        """
        import sys, threading
        from picklepool import Parallel, delayed

        def task(i):
            if i >= 2:
                threading.Event().wait()  # for ever
            return i

        # (the first batches are of one task each: tasks 0 and 1 come back)
        G = Parallel(n_jobs=2, return_as="generator_unordered")(delayed(task)(i) for i in range(5))
        print(next(G) in (0, 1))
        """
    )
    result = run_python(code + ends + "\n")
    # closed by the script: joblib's warning of the tasks it cancelled (and of the other quick
    # task's result, if it came back unread), nothing else; the interpreter's exit: nothing
    warned = re.compile(
        r"<string>:13: UserWarning: (1 tasks have been successfully executed  but not used\. "
        r"Additionally, )?\d tasks which were still being processed by the workers have been "
        r"cancelled\. You could benefit [^\n]*\n"
    )
    if leave == "close":
        assert warned.fullmatch(result.stderr), result.stderr
    assert (result.returncode, result.stdout, result.stderr if leave != "close" else "") == (0, "True\n", "")


@pytest.mark.timeout(120)
def test_the_exit_waits_for_the_thread_ending_a_pool_stopped_without_waiting():
    # shutdown(wait=False) (and a worker's exit, for its nested pools) leaves the end of
    # the pool's call queue to a daemon thread, where the queue's semaphores are unlinked
    # and taken off loky's resource tracker. The exit did not wait for it: cut short
    # between the two, the tracker warned at exit of a "leaked" semaphore already gone
    # (test_a_retired_worker_that_ran_a_nested_call_does_not_stall_the_pool, now and then).
    read_fd, write_fd = os.pipe()
    script = f"""
        import atexit, os
        import picklepool
        from picklepool import Parallel, delayed
        from picklepool.executor import reaper

        original = reaper._end_queue

        def end_queue(*args):
            os.read({read_fd}, 1)  # the test's go, once the exit waits (below)
            original(*args)
            print("ender done", flush=True)

        join_enders = reaper._join_enders

        def exit_waits(until):
            print("the exit waits", flush=True)
            join_enders(until)

        if __name__ == "__main__":
            reaper._end_queue = end_queue
            reaper._join_enders = exit_waits
            reaper.ENDER_EXIT_JOIN = 60.0
            atexit.register(lambda: print("main exiting", flush=True))  # runs after the pools stop
            assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
            picklepool.shutdown(wait=False)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(read_fd,),
    )
    os.close(read_fd)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "the exit waits\n"
        os.write(write_fd, b"x")
        out, err = proc.communicate(timeout=100)
    finally:
        os.close(write_fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == "ender done\nmain exiting\n"  # the pool's end, then the exit went on
    assert err == ""


_COLLECTED_INSIDE = {
    # the weakrefs of the GIL switch's scopes (a call of two batches or more)
    "gil": """
        from picklepool.executor import gil

        class CollectingSet(type(gil._active)):
            def discard(self, item):
                super().discard(item)
                collect_if_armed()

        gil._active = CollectingSet()
        """,
    # the session's bookkeeping of a call's cancel flag
    "session": """
        from picklepool.executor.session import session

        class CollectingDict(dict):
            def __setitem__(self, key, value):
                super().__setitem__(key, value)
                collect_if_armed()

        session()._live = CollectingDict(session()._live)
        """,
    # the shared pool's, as a call takes it
    "pool": """
        from picklepool import lokycompat

        usable = lokycompat.usable

        def collecting_usable(executor):
            collect_if_armed()
            return usable(executor)

        lokycompat.usable = collecting_usable
        """,
}


@pytest.mark.timeout(150)
@pytest.mark.parametrize("where", sorted(_COLLECTED_INSIDE))
def test_a_call_made_by_a_finalizer_the_gc_runs_inside_a_call_does_not_hang(where):
    # A collection may start at any allocation, here while the calling thread held a lock
    # of picklepool's (an allocation there stands for it: gc.collect() in a patched
    # container); the finalizers it runs (a __del__ making a call, a generator dropped in
    # a reference cycle ending one) took the same lock: the thread waited for itself.
    result = run_python(
        textwrap.dedent(
            """
        import gc
        from picklepool import Parallel, delayed

        armed = False

        def collect_if_armed():
            global armed
            if armed:
                armed = False
                gc.collect()

        class Flusher:
            def __init__(self):
                self.me = self  # a reference cycle: only the cyclic GC frees it

            def __del__(self):
                flushed.append(Parallel(n_jobs=2, batch_size=1)(delayed(abs)(-i) for i in range(4)))

        class Holder:
            def __init__(self, g):
                self.g, self.me = g, self

        flushed = []
        """
        )
        + textwrap.dedent(_COLLECTED_INSIDE[where])
        + textwrap.dedent(
            """
        gc.disable()
        Flusher()
        half = Parallel(n_jobs=2, return_as="generator", batch_size=1)(delayed(abs)(-i) for i in range(8))
        next(half)
        Holder(half)  # dropped in a reference cycle: the collection closes it
        del half
        armed = True
        out = Parallel(n_jobs=2, batch_size=1)(delayed(abs)(-i) for i in range(6))
        print(out, flushed, armed)
        """
        ),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 1, 2, 3, 4, 5] [[0, 1, 2, 3]] False"


@pytest.mark.timeout(150)
def test_a_generator_dropped_in_a_cycle_and_collected_as_its_instance_is_called_again_does_not_hang():
    # The instance's next call checks, under its lock, that no call of it still runs; a
    # collection starting there (an allocation stands for it: the check's read collects)
    # closed the instance's half-read generator, whose end took the same lock.
    result = run_python(
        """
        import gc
        from picklepool import Parallel, delayed

        class Checked(Parallel):
            armed = False

            @property
            def _running(self):
                if Checked.armed:
                    Checked.armed = False
                    gc.collect()
                return self.__dict__["_running"]

            @_running.setter
            def _running(self, value):
                self.__dict__["_running"] = value

        class Holder:
            def __init__(self, g):
                self.g, self.me = g, self

        gc.disable()
        p = Checked(n_jobs=2, return_as="generator", batch_size=1)
        half = p(delayed(abs)(-i) for i in range(8))
        next(half)
        Holder(half)  # dropped in a reference cycle: the collection closes it
        del half
        Checked.armed = True
        print(list(p(delayed(abs)(-i) for i in range(4))))
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 1, 2, 3]"
