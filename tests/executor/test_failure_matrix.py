"""The failure matrix: stage x kind, each asserting the error type, the task and its function.

Stages: the parent pickles the task, the worker unpickles it, the task runs, the
worker pickles the result, the parent unpickles it. Kinds: an exception, an
exception that cannot be rebuilt by its ``__init__``, ``os._exit``, SIGKILL, a
segfault, ``sys.exit`` and ``KeyboardInterrupt`` (process killers only where a
worker does the work). After every case, the next call works.
"""

from __future__ import annotations

import os

import pytest

from picklepool import (
    Parallel,
    PicklingError,
    TaskExitError,
    WorkerCrashedError,
    delayed,
)
from picklepool.errors import UnpicklingError

from .crash_cases import (
    KINDS,
    PROCESS_KILLERS,
    FailsOnLoad,
    FailsToPickle,
    LedgerMismatch,
    crash_task,
    identity_task,
    make_fails_in_parent,
    make_fails_on_dump,
    pair,
)

BAD = 3  # the index of the failing task


def _text(exc: BaseException) -> str:
    return str(exc) + "\n" + "\n".join(getattr(exc, "__notes__", []))


def _run(items):
    return Parallel(n_jobs=2, batch_size=1)(items)


def _expect_next_call_works():
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(6)) == list(range(6))


def _expected_in_worker(kind: str, stage: str) -> type[BaseException]:
    if kind in PROCESS_KILLERS:
        return WorkerCrashedError
    if stage == "run":
        return {
            "raise": ValueError,
            "unrebuildable": LedgerMismatch,
            "sys_exit": TaskExitError,
            "interrupt": TaskExitError,
        }[kind]
    return UnpicklingError if stage == "load" else PicklingError


@pytest.mark.parametrize("kind", KINDS)
def test_task_runs(kind):
    with pytest.raises(BaseException) as info:
        _run(delayed(crash_task)(kind if i == BAD else "none", i) for i in range(6))
    assert isinstance(info.value, _expected_in_worker(kind, "run")), repr(info.value)
    text = _text(info.value)
    assert f"task {BAD}" in text and "crash_task" in text, text
    if kind == "unrebuildable":
        assert info.value.account == "acct-7" and str(info.value) == "acct-7: 10 != 12"
    _expect_next_call_works()


@pytest.mark.parametrize("kind", KINDS)
def test_worker_unpickles_the_task(kind):
    with pytest.raises(BaseException) as info:
        _run(delayed(identity_task)(FailsOnLoad(kind) if i == BAD else i) for i in range(6))
    assert isinstance(info.value, _expected_in_worker(kind, "load")), repr(info.value)
    text = _text(info.value)
    assert f"task {BAD}" in text and "identity_task" in text, text
    _expect_next_call_works()


@pytest.mark.parametrize("kind", KINDS)
def test_worker_pickles_the_result(kind):
    with pytest.raises(BaseException) as info:
        _run(delayed(make_fails_on_dump if i == BAD else identity_task)(kind) for i in range(6))
    assert isinstance(info.value, _expected_in_worker(kind, "dump")), repr(info.value)
    text = _text(info.value)
    assert f"task {BAD}" in text and "make_fails_on_dump" in text, text
    _expect_next_call_works()


def test_parent_pickles_the_task():
    with pytest.raises(PicklingError) as info:
        _run(delayed(identity_task)(FailsToPickle() if i == BAD else i) for i in range(6))
    text = _text(info.value)
    assert f"task {BAD}" in text and "identity_task" in text, text
    _expect_next_call_works()


def test_parent_unpickles_the_result():
    parent = os.getpid()
    with pytest.raises(UnpicklingError) as info:
        _run(delayed(make_fails_in_parent if i == BAD else pair)("raise", parent) for i in range(6))
    text = _text(info.value)
    assert f"task {BAD}" in text and "make_fails_in_parent" in text, text
    _expect_next_call_works()


@pytest.mark.parametrize("kind", ["sys_exit", "interrupt"])
def test_exit_in_a_thread_task_is_a_task_error(kind):
    with pytest.raises(TaskExitError) as info:
        Parallel(n_jobs=2, backend="threading", batch_size=1)(
            delayed(crash_task)(kind if i == BAD else "none", i) for i in range(6)
        )
    assert f"task {BAD}" in str(info.value)


class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def raise_needs_two(i):
    if i == 1:
        raise NeedsTwo(1, 2)
    return i


def test_an_exception_that_cannot_be_rebuilt_by_its_init_keeps_its_type():
    with pytest.raises(NeedsTwo, match="1/2") as info:
        Parallel(n_jobs=2, batch_size=1)(delayed(raise_needs_two)(i) for i in range(3))
    assert "task 1: raise_needs_two(1)" in "".join(info.value.__notes__)
