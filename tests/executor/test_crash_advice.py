"""A dead worker's error says what its exit status means and what to do, by status."""

from __future__ import annotations

import signal
import threading

import pytest

from picklepool import Parallel, WorkerCrashedError, delayed
from picklepool.executor.exitcodes import GENERIC, crash_advice, status_name

from ..conftest import run_python
from .crash_cases import crash_task


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ("EXIT(7)", "os._exit(7)"),
        ("SIGSEGV(-11)", "crash in compiled code"),
        ("SIGKILL(-9), SIGKILL(-9)", "OOM killer"),
        ("SIGKILL(-9), SIGALRM(-14)", "signal.alarm"),  # the one that died of its own
        ("EXIT(1)", "closed the worker's file descriptors"),
        # a C or Fortran library's exit(1) on a fatal error, in a task: the commonest status 1
        ("EXIT(1)", "or C's exit(1)"),
        ("SIGTERM(-15)", "sent to the worker by another process"),
        ("SIGPIPE(-13)", "BrokenPipeError"),
        ("nothing known", GENERIC),
    ],
)
def test_the_advice_follows_the_exit_status(statuses, expected):
    assert expected in crash_advice(statuses)


def test_a_status_is_named_as_loky_names_it():
    assert status_name(3) == "EXIT(3)" and status_name(-11) == "SIGSEGV(-11)"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("os_exit", "os._exit(3)"), ("sigkill", "OOM killer"), ("segfault", "crash in compiled code")],
)
def test_a_crash_names_the_task_and_what_its_status_means(kind, expected):
    with pytest.raises(WorkerCrashedError) as info:
        Parallel(n_jobs=2, batch_size=1)(delayed(crash_task)(kind if i == 3 else "none", i) for i in range(6))
    assert "task 3: crash_task" in str(info.value) and expected in str(info.value), str(info.value)


def test_the_multiprocessing_backend_gives_the_same_advice():
    with pytest.raises(WorkerCrashedError) as info:
        Parallel(n_jobs=2, backend="multiprocessing")(
            delayed(crash_task)("os_exit" if i == 3 else "none", i) for i in range(6)
        )
    assert "EXIT(3)" in str(info.value) and "os._exit(3)" in str(info.value), str(info.value)


def own_alarm(i: int) -> int:
    """Set a SIGALRM timer of the task's own, with no handler, and wait for it."""
    if i == 1:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        threading.Event().wait()
    return i


@pytest.mark.parametrize("timeout", [None, 60])
def test_a_tasks_own_alarm_ends_its_worker_and_is_not_taken_for_the_timeout(timeout):
    # with timeout=, the task's timer replaces the call's and fires long before the
    # deadline: as without timeout=, SIGALRM ends the worker, and the error says why
    with pytest.raises(WorkerCrashedError) as info:
        Parallel(n_jobs=2, batch_size=1, timeout=timeout)(delayed(own_alarm)(i) for i in range(3))
    text = str(info.value)
    assert "task 1: own_alarm(1)" in text and "SIGALRM(-14)" in text and "signal.alarm" in text, text
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


def test_a_deep_result_that_overflows_the_workers_stack_names_the_raised_recursion_limit():
    # With the recursion limit raised (which workers mirror), pickling a result nested
    # 20,000 objects deep overflows the worker's C stack before the limit stops it: the
    # worker dies of SIGSEGV, and the error blamed "compiled code (an extension module,
    # ctypes...)", which the task has none of. It now names the limit and the fix.
    proc = run_python(
        """
        import sys
        from picklepool import Parallel, WorkerCrashedError, delayed

        class Node:
            def __init__(self, nxt):
                self.nxt = nxt

        def chain(n):
            x = None
            for _ in range(n):
                x = Node(x)
            return x

        sys.setrecursionlimit(200_000)
        try:
            Parallel(n_jobs=2)(delayed(chain)(n) for n in (3, 200_000))
        except WorkerCrashedError as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "while pickling the results of task 1: chain(200000)" in out, out
    assert "recursion limit raised to 200000" in out and "Return such a result flattened" in out, out


def test_the_deep_result_advice_is_only_for_a_fault_with_the_limit_raised():
    from picklepool.executor.exitcodes import pickling_fault

    assert pickling_fault("SIGSEGV(-11)", 50_000)
    assert not pickling_fault("SIGSEGV(-11)", 1000)  # the default: a RecursionError names the task
    assert not pickling_fault("SIGKILL(-9)", 50_000) and not pickling_fault("EXIT(3)", 50_000)
