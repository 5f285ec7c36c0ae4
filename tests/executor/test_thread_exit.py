"""A call a non-daemon thread runs when the main thread ends runs to its end.

Python runs such a thread on after the main thread ends (``threading._shutdown`` joins
it, after the threading module's exit hooks): a background thread left to train while
the script ends is common. picklepool's exit hooks killed its workers (loky) or refused
its next batches (threading): its work was lost, where joblib's call (its jobs already
sent: loky's hook lets them finish) and the standard library's executors ran to their end.
A call made after the main thread ended is still refused, as joblib's and the standard
library's executors refuse work then; a daemon thread's call is still stopped
(``test_no_hang.py``).

The scripts are deterministic: the tasks wait on a file lock the main thread holds until
the interpreter's exit has begun (a ``threading`` exit hook registered after picklepool's,
so run before them, releases it), and the main thread ends once a task runs (a FIFO).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid

import psutil
import pytest

from tests.conftest import run_python

_SCRIPT = """
import fcntl, json, os, sys, threading
from picklepool import Parallel, delayed

KIND, LOCK, STARTED = sys.argv[1], sys.argv[2], sys.argv[3]
BACKEND = "threading" if KIND.startswith("threading") else "loky"
out = []

def step(i):
    if i == 0:
        with open(STARTED, "w") as f:  # the main thread ends now
            f.write("x")
    with open(LOCK) as f:
        fcntl.flock(f, fcntl.LOCK_SH)  # until the interpreter's exit has begun
    if KIND == "threading-nested":  # a call of its own, in the pool's thread
        Parallel(n_jobs=2)(delayed(abs)(-k) for k in range(2))
    return (i, os.getpid())

def caller():
    calls = lambda: Parallel(n_jobs=2, backend=BACKEND, batch_size=1, pre_dispatch=2, return_as=(
        "generator" if KIND == "generator" else "list"))(delayed(step)(i) for i in range(8))
    try:
        out.append(list(calls()))
    except Exception as exc:
        out.append(f"{type(exc).__name__}: {exc}")
    try:  # made once the main thread has ended: refused
        out.append(list(calls()))
    except Exception as exc:
        out.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"pid": os.getpid(), "out": out}), flush=True)

if __name__ == "__main__":
    lock = open(LOCK, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    # warm: picklepool's exit hooks are registered by now (threading's run last in, first out)
    Parallel(n_jobs=2, backend=BACKEND)(delayed(abs)(-i) for i in range(3))
    threading._register_atexit(lambda: fcntl.flock(lock, fcntl.LOCK_UN))
    threading.Thread(target=caller).start()  # (not a daemon thread)
    with open(STARTED) as f:  # task 0 runs
        f.read()
"""


def _left(mark: str, deadline: float = 10.0) -> list[str]:
    """The processes whose environment holds *mark* (the script and what it started), once
    they had *deadline* seconds to end (loky's resource tracker ends after its parent)."""
    until = time.monotonic() + deadline
    while True:
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.environ().get("THREAD_EXIT_MARK") == mark:
                    found.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])[:200]}")
            except psutil.Error:
                continue
        if not found or time.monotonic() > until:
            return found
        time.sleep(0.1)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["loky", "generator", "threading", "threading-nested"])
def test_a_call_a_non_daemon_thread_runs_when_the_main_thread_ends_runs_to_its_end(kind, tmp_path):
    lock, started = tmp_path / "lock", tmp_path / "started"
    os.mkfifo(started)
    mark = uuid.uuid4().hex
    result = run_python(
        f"import sys; sys.argv[1:] = {[kind, str(lock), str(started)]!r}\n" + _SCRIPT,
        env={"THREAD_EXIT_MARK": mark},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith('{"pid"')]
    report = json.loads(line)
    first, second = report["out"]
    # all of it, its tasks dispatched as the exit waited for it among them (pre_dispatch=2)
    assert isinstance(first, list), first
    assert [i for i, _pid in first] == list(range(8))
    backend = "threading" if kind.startswith("threading") else "loky"
    assert second.startswith(
        f"RuntimeError: a Parallel call with n_jobs=2 on the {backend} backend was made while the "
        "interpreter is exiting"
    ), second
    assert "a call a non-daemon thread was running then runs to its end" in second, second
    assert "join() the threads that make calls before the main thread ends" in second, second
    assert "killed" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "leaked" not in result.stderr, result.stderr
    # nothing outlives the script: no process, nothing in /dev/shm named after it or its workers
    assert _left(mark) == []
    pids = {report["pid"]} | {pid for _i, pid in first}
    named = re.compile(r"(?:loky|picklepool|joblib_memmapping_folder)[-_](\d+)[-_]")
    shm = [name for name in os.listdir("/dev/shm") if (m := named.search(name)) and int(m[1]) in pids]
    assert shm == []


_STOPPED_SCRIPT = """
import os, signal, threading, time
from picklepool import Parallel, delayed
from picklepool.executor import ongoing

STARTED = {started!r}

def step(i):
    if i == 0:
        with open(STARTED, "w") as f:
            f.write("x")
    threading.Event().wait(60)  # killed at exit
    return i

def caller():
    try:
        Parallel(n_jobs=2)(delayed(step)(i) for i in range(4))
    except Exception as exc:
        print(type(exc).__name__, exc, flush=True)

def interrupter():
    while not ongoing.exit_waiting():  # (the main thread ended) the exit waits for caller's call
        time.sleep(0.001)
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

if __name__ == "__main__":
    threading.Thread(target=caller).start()  # (not a daemon thread)
    with open(STARTED) as f:  # task 0 runs
        f.read()
    {ending}
"""


def _stopped_by_ctrl_c(tmp_path, ending: str) -> tuple[str, str]:
    """A non-daemon thread's call of 4 tasks, task 0 running when the main thread runs *ending*;
    the call's error line, and stderr."""
    started = tmp_path / "started"
    os.mkfifo(started)
    result = run_python(_STOPPED_SCRIPT.format(started=str(started), ending=ending), timeout=60)
    (line,) = result.stdout.splitlines()
    expected = "WorkerCrashedError the workers were killed by the interpreter's exit (Ctrl-C "
    assert line.startswith(expected), line
    return line, result.stderr


@pytest.mark.timeout(180)
def test_a_program_ctrl_c_ends_does_not_wait_for_a_non_daemon_threads_call(tmp_path):
    # Ctrl-C ended it: its calls are stopped (as an Executor's then), not waited for; the
    # error says so (it said "daemon or not")
    line, stderr = _stopped_by_ctrl_c(tmp_path, "raise KeyboardInterrupt")
    assert "KeyboardInterrupt" in stderr, stderr
    assert "join() such a thread in the main thread (catching KeyboardInterrupt there)" in line, line


@pytest.mark.timeout(180)
def test_a_with_block_call_after_the_exit_stopped_its_pool_is_refused_and_the_program_ends():
    # A non-daemon thread's `with Parallel()` block, called once the exit's hooks had stopped
    # its pool: the call started a new pool, which nothing stopped, and the program never
    # ended (Python's exit waited for loky's manager thread), leaving its semaphores
    result = run_python(
        """
        import threading
        from picklepool import Parallel, delayed

        first = threading.Event()

        def caller():
            with Parallel(n_jobs=2) as p:
                print(p(delayed(abs)(-i) for i in range(4)), flush=True)
                first.set()
                threading.main_thread().join()  # the exit's hooks have run
                try:
                    p(delayed(abs)(-i) for i in range(4))
                except RuntimeError as exc:
                    print(exc)

        if __name__ == "__main__":
            threading.Thread(target=caller).start()  # (not a daemon thread)
            first.wait()
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    first, refused = result.stdout.splitlines()
    assert first == "[0, 1, 2, 3]"
    assert refused.startswith("a Parallel call with n_jobs=2 on the loky backend was made while "), refused
    assert result.stderr == "", result.stderr


@pytest.mark.timeout(180)
def test_a_ctrl_c_during_the_exits_wait_says_ctrl_c_not_daemon_thread(tmp_path):
    # Ctrl-C while the exit waited for a non-daemon thread's call: the call was stopped, and
    # its error blamed "a daemon thread" and said to make it a non-daemon one
    line, _ = _stopped_by_ctrl_c(tmp_path, "threading.Thread(target=interrupter).start()")
    assert "daemon" not in line, line


@pytest.mark.timeout(120)
def test_an_executor_submit_after_the_main_thread_ended_says_the_interpreter_exits():
    # It said "cannot schedule new futures after shutdown of this picklepool.Executor": the
    # exit's drain had shut it down, which the user never did
    result = run_python(
        """
        import threading
        from picklepool import Executor

        ex = Executor(max_workers=2)

        def late():
            print(ex.submit(abs, -1).result(), flush=True)
            threading.main_thread().join()
            try:
                ex.submit(abs, -2)
            except RuntimeError as exc:
                print(exc, flush=True)

        if __name__ == "__main__":
            threading.Thread(target=late).start()  # (not a daemon thread)
        """,
        timeout=60,
    )
    first, refused = result.stdout.splitlines()
    assert first == "1"
    assert refused.startswith("cannot schedule new futures after interpreter shutdown: "), refused
    assert "join() the threads that submit" in refused, refused


_COLD_SCRIPT = """
import json, os, sys, threading
from picklepool import Executor, Parallel, delayed, lokycompat

KIND = sys.argv[1]
ready, exiting = threading.Event(), threading.Event()
load = lokycompat.load
held = []

def held_load(*args, **kwargs):
    # The first call's imports (half a second, more on a loaded machine) are held until the
    # interpreter's exit has begun: a threading exit hook registered now runs before
    # picklepool's (last in, first out), and tells this thread so.
    if not held and threading.current_thread() is not threading.main_thread():
        held.append(1)
        threading._register_atexit(exiting.set)
        ready.set()  # the main thread ends now
        exiting.wait()
    return load(*args, **kwargs)

lokycompat.load = held_load

def caller():
    out = []
    try:
        if KIND == "parallel":
            out.append(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(6)))
        elif KIND == "generator":
            out.append(list(Parallel(n_jobs=2, return_as="generator")(delayed(abs)(-i) for i in range(6))))
        elif KIND == "block":
            with Parallel(n_jobs=2) as p:
                out.append(p(delayed(abs)(-i) for i in range(3)))
                out.append(p(delayed(abs)(-i) for i in range(3, 6)))
        elif KIND == "executor":
            with Executor(max_workers=2) as ex:
                out.append(list(ex.map(abs, [-i for i in range(3)])))
                out.append(ex.submit(sum, [3, 4, 5]).result())
        elif KIND == "joblib":
            import joblib, picklepool
            with joblib.parallel_config(backend="picklepool", n_jobs=2):
                out.append(joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(6)))
    except Exception as exc:
        out.append(f"{type(exc).__name__}: {exc}")
    try:  # made once the main thread has ended: refused
        Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(2))
        out.append("not refused")
    except RuntimeError as exc:
        out.append(f"RuntimeError: {str(exc)[:60]}")
    print(json.dumps({"pid": os.getpid(), "out": out}), flush=True)

if __name__ == "__main__":
    if KIND == "joblib":  # (imported here: the thread holds only picklepool's first imports)
        import joblib, picklepool
        picklepool.register_joblib_backend()
    threading.Thread(target=caller).start()  # (not a daemon thread)
    ready.wait()
"""


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["parallel", "generator", "block", "executor", "joblib"])
def test_a_first_call_still_starting_when_the_main_thread_ends_runs_to_its_end(kind):
    # A script's last line starts a (non-daemon) thread whose first call imports and starts
    # what it needs, half a second: the main thread ended meanwhile, and the call was refused
    # as one made after it ("...made while the interpreter is exiting", "cannot schedule new
    # futures after interpreter shutdown"), where the standard library's executor runs it;
    # the Executor's refused submissions left loky's manager thread printing tracebacks.
    mark = uuid.uuid4().hex
    result = run_python(
        f"import sys; sys.argv[1:] = {[kind]!r}\n" + _COLD_SCRIPT, env={"THREAD_EXIT_MARK": mark}, timeout=120
    )
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith('{"pid"')]
    report = json.loads(line)
    *ran, refused = report["out"]
    if kind == "executor":
        assert ran == [[0, 1, 2], 12]
    elif kind == "block":
        assert ran == [[0, 1, 2], [3, 4, 5]]
    else:
        assert ran == [[0, 1, 2, 3, 4, 5]]
    assert refused == "RuntimeError: a Parallel call with n_jobs=2 on the loky backend was made w", refused
    assert "Traceback" not in result.stderr and "leaked" not in result.stderr, result.stderr
    assert _left(mark) == []
    named = re.compile(r"(?:loky|picklepool|joblib_memmapping_folder)[-_](\d+)[-_]")
    pid = report["pid"]
    assert [name for name in os.listdir("/dev/shm") if (m := named.search(name)) and int(m[1]) == pid] == []
