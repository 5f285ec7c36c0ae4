"""picklepool.Executor under asyncio: Ctrl-C while calls run, and cancellations that are not one."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import psutil
import pytest

from picklepool import Executor
from tests.conftest import run_python

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and FIFOs")


def started_and_wait(started, gate):
    with open(started, "w") as f:  # tells the test the task runs, and in which process
        f.write(str(os.getpid()))
    with open(gate) as f:  # blocks until the test opens the gate (a FIFO)
        return f.read()


# A script whose task runs until its worker is stopped (nobody opens the gate); a thread
# presses Ctrl-C once it runs and prints the worker's pid
_SCRIPT = """
import asyncio, os, signal, sys, threading
from picklepool import Executor

STARTED, GATE = {started!r}, {gate!r}

def started_and_wait(started, gate):
    with open(started, "w") as f:
        f.write(str(os.getpid()))
    with open(gate) as f:
        return f.read()

def ctrl_c_when_started():
    with open(STARTED) as f:
        print(f.read(), flush=True)
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # os.kill may pick this thread

{body}
"""


def _fifos(tmp_path):
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    os.mkfifo(started)
    os.mkfifo(gate)
    return started, gate


def _assert_stopped(pid_line):
    pid = int(pid_line)
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    proc.wait(30)  # killed: gone (or a zombie its parent reaps) at once; a running task never ends


_RUN_MAIN = """threading.Thread(target=ctrl_c_when_started, daemon=True).start()
try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def _interrupted(tmp_path, main, printed=("interrupted",)):
    """Run *main* (script lines defining ``main()``) under ``asyncio.run`` in :data:`_SCRIPT`,
    Ctrl-C pressed once its task runs: it printed *printed* after the worker's pid, ended
    with status 0, and the worker is stopped."""
    started, gate = _fifos(tmp_path)
    body = main + _RUN_MAIN
    result = run_python(_SCRIPT.format(started=started, gate=gate, body=body), timeout=30)
    lines = result.stdout.split()
    assert lines[1:] == list(printed), result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
    _assert_stopped(lines[0])


def test_ctrl_c_under_asyncio_run_stops_the_calls_of_a_with_executor_block_in_the_coroutine(tmp_path):
    # asyncio.run's SIGINT handler cancels the main task: the block was left with
    # CancelledError, not KeyboardInterrupt, and its exit waited for the running call (for
    # ever here, as ProcessPoolExecutor's does), where Ctrl-C in a `with Executor()` block
    # outside a coroutine stops at once
    main = """
async def main():
    loop = asyncio.get_running_loop()
    with Executor(1) as ex:
        await loop.run_in_executor(ex, started_and_wait, STARTED, GATE)

"""
    _interrupted(tmp_path, main)


def test_a_program_that_ctrl_c_ends_does_not_wait_for_its_executors_calls_at_exit(tmp_path):
    # An executor without a `with` block (made at module level, as a loop's executor often
    # is): the uncaught KeyboardInterrupt of asyncio.run ended the program, whose exit then
    # waited for every call sent (for ever here; ProcessPoolExecutor's exit waits too)
    started, gate = _fifos(tmp_path)
    body = """
ex = Executor(1)

async def main():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(ex, started_and_wait, STARTED, GATE)

threading.Thread(target=ctrl_c_when_started, daemon=True).start()
asyncio.run(main())
"""
    result = run_python(_SCRIPT.format(started=started, gate=gate, body=body), timeout=30)
    assert result.returncode in (-2, 130), result.stdout + result.stderr  # ended by SIGINT
    assert "KeyboardInterrupt" in result.stderr
    _assert_stopped(result.stdout.split()[0])


def test_a_plain_ctrl_c_ending_the_program_does_not_wait_either(tmp_path):
    # The same without asyncio: the main thread's KeyboardInterrupt ends the program
    started, gate = _fifos(tmp_path)
    body = """
ex = Executor(1)
threading.Thread(target=ctrl_c_when_started, daemon=True).start()
ex.submit(started_and_wait, STARTED, GATE).result()
"""
    result = run_python(_SCRIPT.format(started=started, gate=gate, body=body), timeout=30)
    assert result.returncode in (-2, 130), result.stdout + result.stderr
    _assert_stopped(result.stdout.split()[0])


def test_ctrl_c_while_a_with_executor_block_waits_at_its_end_stops_its_calls(tmp_path):
    # The block's end waits for the calls (shutdown(wait=True)): Ctrl-C there, the usual
    # moment, left them running on the shared warm pool, and the next Parallel call waited
    # behind them (60 s in /tmp/s38/life/t14.py withexit); Ctrl-C inside the block stopped them
    started, gate = _fifos(tmp_path)
    body = """
threading.Thread(target=ctrl_c_when_started, daemon=True).start()
try:
    with Executor(1) as ex:
        fut = ex.submit(started_and_wait, STARTED, GATE)
except KeyboardInterrupt:
    print("interrupted", flush=True)
print(fut.done(), type(fut.exception()).__name__ if fut.done() else "-", flush=True)
if not fut.done():  # (the test fails; the exit would wait for the call)
    with open(GATE, "w") as f:
        f.write("ran")
"""
    result = run_python(_SCRIPT.format(started=started, gate=gate, body=body), timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[1:] == ["interrupted", "True", "WorkerCrashedError"], result.stdout + result.stderr
    _assert_stopped(lines[0])


def test_a_caught_ctrl_c_still_runs_the_calls_at_exit(tmp_path):
    # A program that catches its Ctrl-C and ends normally: its executor's calls still run
    # before the exit, as the standard library's (here, the task's gate is opened meanwhile)
    started, gate = _fifos(tmp_path)
    body = """
ex = Executor(1)
fut = ex.submit(started_and_wait, STARTED, GATE)
try:
    ctrl_c_when_started()
    threading.Event().wait(60)  # Ctrl-C lands here
except KeyboardInterrupt:
    print("interrupted", flush=True)
def open_gate():
    with open(GATE, "w") as f:
        f.write("ran")
threading.Thread(target=open_gate, daemon=True).start()
fut.add_done_callback(lambda f: print(f.result(), flush=True))
"""
    result = run_python(_SCRIPT.format(started=started, gate=gate, body=body), timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:] == ["interrupted", "ran"], result.stdout + result.stderr


def test_a_cancelled_coroutine_that_is_not_ctrl_c_still_waits_for_its_calls(tmp_path):
    # A task cancelled by the program (not by asyncio.run's Ctrl-C): the block's exit
    # waits for the call sent, as ProcessPoolExecutor's, which then ends normally
    started, gate = _fifos(tmp_path)
    sent = []

    async def body():
        with Executor(1) as ex:
            sent.append(ex.submit(started_and_wait, started, gate))
            await asyncio.wrap_future(sent[0])

    def read_started():
        with open(started) as f:
            return f.read()

    def open_gate():
        with open(gate, "w") as f:
            f.write("ran")

    async def main():
        task = asyncio.create_task(body())
        await asyncio.to_thread(read_started)
        task.cancel()
        threading.Thread(target=open_gate, daemon=True).start()  # the exit waits for it
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sent[0].result() == "ran"


# asyncio.run's SIGINT handler, read by main() (for _LATE_WAIT)
_RUNNER = """
_runner = [None]
"""

# The call's thread reaches its first wait only once asyncio.run has taken the Ctrl-C: it
# must still stop (the count of Ctrl-Cs is read before the first batch is sent, not at the
# first wait, where it had already counted this one; a slow parent failed CI so)
_LATE_WAIT = """
from picklepool.executor import dispatch

_next_done = dispatch.Call._next_done

def _counted():
    handler = _runner[0]
    return getattr(handler.func.__self__, "_interrupt_count", 0) > 0

def late_first_wait(self):
    while not _counted():  # the Ctrl-C reached asyncio.run's handler
        threading.Event().wait(0.01)
    return _next_done(self)

dispatch.Call._next_done = late_first_wait
"""

_WAITS = pytest.mark.parametrize("late", [False, True], ids=["waits-at-once", "waits-after-the-ctrl-c"])


@_WAITS
def test_ctrl_c_under_asyncio_run_stops_a_parallel_call_running_in_to_thread(tmp_path, late):
    # asyncio.run's Ctrl-C cancels the coroutine awaiting the thread, then waits for the
    # thread: its Parallel call ran to its end (for ever here; joblib's too). It is
    # cancelled now, its workers stopped, and the thread's call raises KeyboardInterrupt
    main = """
from picklepool import Parallel, delayed

def call():
    try:
        return Parallel(n_jobs=2)([delayed(started_and_wait)(STARTED, GATE)])
    except KeyboardInterrupt:
        print("call-interrupted", flush=True)
        raise

async def main():
    _runner[0] = signal.getsignal(signal.SIGINT)
    await asyncio.to_thread(call)

"""
    _interrupted(tmp_path, _RUNNER + (_LATE_WAIT if late else "") + main, ["call-interrupted", "interrupted"])


@_WAITS
def test_ctrl_c_under_asyncio_run_stops_a_parallel_call_made_in_the_coroutine(tmp_path, late):
    # A call blocking the loop: asyncio.run's Ctrl-C only cancels the main task, which the
    # coroutine sees once the call has run to its end (for ever here; joblib's too)
    main = """
from picklepool import Parallel, delayed

async def main():
    _runner[0] = signal.getsignal(signal.SIGINT)
    return Parallel(n_jobs=2)([delayed(started_and_wait)(STARTED, GATE)])

"""
    _interrupted(tmp_path, _RUNNER + (_LATE_WAIT if late else "") + main)


# A terminal's Ctrl-C reaches the whole process group: the workers get SIGINT too, and
# their task raises KeyboardInterrupt. asyncio.run's handler only counts the parent's, so
# the worker's reply came back first, as the task's own KeyboardInterrupt: a
# TaskInterruptError "task 0 ... raised KeyboardInterrupt ... make the task return a value"
_CTRL_C_TO_THE_GROUP = """
def ctrl_c_when_started():
    with open(STARTED) as f:
        worker = int(f.read())
    print(worker, flush=True)
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # the parent's, first
    os.kill(worker, signal.SIGINT)  # then the worker's, as a terminal's Ctrl-C sends both

from picklepool import Parallel, delayed
from picklepool.errors import TaskExitError

async def main():
    try:
        return Parallel(n_jobs=2)([delayed(started_and_wait)(STARTED, GATE)])
    except TaskExitError as exc:
        print("task-error", type(exc).__name__, flush=True)
        raise

"""


def test_ctrl_c_under_asyncio_run_that_reaches_the_workers_too_is_the_users_not_the_tasks(tmp_path):
    _interrupted(tmp_path, _CTRL_C_TO_THE_GROUP)
