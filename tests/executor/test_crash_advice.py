"""A dead worker's error says what its exit status means and what to do, by status."""

from __future__ import annotations

import signal
import threading

import pytest

from picklepool import Parallel, WorkerCrashedError, delayed
from picklepool.executor.exitcodes import GENERIC, crash_advice, status_name

from .crash_cases import crash_task


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ("EXIT(7)", "os._exit(7)"),
        ("SIGSEGV(-11)", "crash in compiled code"),
        ("SIGKILL(-9), SIGKILL(-9)", "OOM killer"),
        ("SIGKILL(-9), SIGALRM(-14)", "signal.alarm"),  # the one that died of its own
        ("EXIT(1)", "closed the worker's file descriptors"),
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
