"""The except clauses joblib, loky and concurrent.futures users wrote catch picklepool's errors.

A worker that dies: joblib and loky raise their ``TerminatedWorkerError``; an argument or a
result that does not unpickle: joblib, loky and ``ProcessPoolExecutor`` raise
``BrokenProcessPool``. picklepool's ``WorkerCrashedError`` and ``UnpicklingError`` are
those too (joblib's and loky's classes when those are imported), and stay picklepool's.
"""

from __future__ import annotations

import concurrent.futures.process as cf_process
import os
import pickle

import joblib.externals.loky.process_executor as joblib_loky
import loky.process_executor as loky_pe
import pytest

from picklepool import Executor, Parallel, WorkerCrashedError, delayed
from picklepool.errors import UnpicklingError, pickling_type

from ..conftest import run_python
from .crash_cases import FailsOnLoad, crash_task, identity_task, make_fails_in_parent


def _peer_kinds_of_a_crash() -> tuple[type, ...]:
    return (joblib_loky.TerminatedWorkerError, loky_pe.TerminatedWorkerError, cf_process.BrokenProcessPool)


def _peer_kinds_of_a_load() -> tuple[type, ...]:
    return (joblib_loky.BrokenProcessPool, loky_pe.BrokenProcessPool, cf_process.BrokenProcessPool)


def test_a_crashed_worker_is_joblibs_and_lokys_terminated_worker_error():
    with pytest.raises(joblib_loky.TerminatedWorkerError) as info:
        Parallel(n_jobs=2, batch_size=1)(
            delayed(crash_task)("os_exit" if i == 1 else "", i) for i in range(3)
        )
    error = info.value
    assert isinstance(error, WorkerCrashedError) and type(error).__name__ == "WorkerCrashedError"
    assert all(isinstance(error, kind) for kind in _peer_kinds_of_a_crash())
    assert "task 1: crash_task('os_exit', 1)" in str(error)
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


def test_an_executor_s_crashed_worker_is_lokys_terminated_worker_error():
    with Executor(max_workers=1) as ex:
        error = ex.submit(crash_task, "sigkill", 0).exception()
    assert isinstance(error, WorkerCrashedError)
    assert all(isinstance(error, kind) for kind in _peer_kinds_of_a_crash())


@pytest.mark.parametrize("where", ["arguments", "result"])
def test_what_does_not_unpickle_is_a_broken_process_pool_as_in_joblib(where):
    item = (
        delayed(identity_task)(FailsOnLoad("raise"))
        if where == "arguments"
        else delayed(make_fails_in_parent)("raise", os.getpid())
    )
    with pytest.raises(cf_process.BrokenProcessPool) as info:
        Parallel(n_jobs=2)([item])
    error = info.value
    assert isinstance(error, UnpicklingError) and isinstance(error, pickle.UnpicklingError)
    assert all(isinstance(error, kind) for kind in _peer_kinds_of_a_load())
    assert "task 0" in str(error)
    with Executor(max_workers=1) as ex:
        args = (
            (identity_task, FailsOnLoad("raise"))
            if where == "arguments"
            else (make_fails_in_parent, "raise", os.getpid())
        )
        error = ex.submit(*args).exception()
        assert isinstance(error, UnpicklingError)
        assert all(isinstance(error, kind) for kind in _peer_kinds_of_a_load())
        assert ex.submit(abs, -2).result() == 2  # the executor is not broken


def test_the_errors_pickle_back_to_the_same_class_with_their_attributes():
    crashed = WorkerCrashedError("a worker died")
    crashed.pid = 12
    again = pickle.loads(pickle.dumps(crashed))
    assert type(again) is type(crashed) and again.args == crashed.args and again.pid == 12
    load = pickling_type(UnpicklingError, TypeError)("no")
    again = pickle.loads(pickle.dumps(load))
    assert type(again) is type(load) and isinstance(again, TypeError) and again.args == ("no",)
    assert isinstance(again, joblib_loky.BrokenProcessPool)


def test_without_joblib_imported_the_errors_are_picklepools_own_and_joblib_stays_unimported():
    out = run_python(
        """
        import sys
        from picklepool import Parallel, WorkerCrashedError, delayed
        from picklepool.errors import UnpicklingError
        from concurrent.futures.process import BrokenProcessPool
        e = WorkerCrashedError("x")
        u = UnpicklingError("y")
        assert "joblib" not in sys.modules, "imported joblib"
        assert isinstance(u, BrokenProcessPool)
        print(type(e).__mro__[1].__module__, type(u).__mro__[1].__name__)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["concurrent.futures.process", "PicklingError"]
