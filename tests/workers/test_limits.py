"""Thread limits in workers (env vars at start, threadpoolctl), and idle worker lifetime."""

from __future__ import annotations

import os
import sys

import psutil
import pytest

import picklepool
from picklepool import Parallel, cpu_count, delayed
from picklepool.executor import limits as parent_limits
from picklepool.executor.limits import THREAD_VARS
from picklepool.wire import WorkerLimits
from picklepool.workers import limits
from tests.conftest import run_python


def thread_report(_):
    import numpy  # noqa: F401 - loads OpenBLAS in the worker
    from threadpoolctl import threadpool_info

    env = {var: os.environ.get(var) for var in THREAD_VARS}
    return env, sorted({pool["num_threads"] for pool in threadpool_info()})


def pid_of(_):
    return os.getpid()


def test_workers_get_cores_over_n_jobs_threads_by_default(monkeypatch):
    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    expected = max(1, cpu_count() // 2)
    reports = Parallel(n_jobs=2, batch_size=1)(delayed(thread_report)(i) for i in range(4))
    for env, pools in reports:
        assert env == dict.fromkeys(THREAD_VARS, str(expected))
        assert pools == [expected]  # what threadpoolctl reports inside the worker


def test_explicit_inner_max_num_threads_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    reports = Parallel(n_jobs=2, inner_max_num_threads=2)(delayed(thread_report)(i) for i in range(2))
    for env, pools in reports:
        assert env == dict.fromkeys(THREAD_VARS, "2")
        assert pools == [min(2, os.cpu_count() or 1)]  # OpenBLAS caps at the machine's cores


def test_variables_the_user_set_are_kept_by_default(monkeypatch):
    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    (env, _pools), *_ = Parallel(n_jobs=2)(delayed(thread_report)(i) for i in range(2))
    assert env["OMP_NUM_THREADS"] == "3"
    assert env["OPENBLAS_NUM_THREADS"] == str(max(1, cpu_count() // 2))


def test_worker_env_touches_only_thread_counts():
    environ = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "1048576", "MKL_NUM_THREADS": "5"}
    env = parent_limits.worker_env(None, 2, environ)
    assert set(env) == set(THREAD_VARS)
    assert env["MKL_NUM_THREADS"] == "5"
    assert parent_limits.worker_env(4, 2, environ) == dict.fromkeys(THREAD_VARS, "4")


def test_for_call_follows_the_workers_environment():
    default = max(1, cpu_count() // 2)
    assert parent_limits.for_call(parent_limits.worker_env(None, 2, {}), None) == WorkerLimits(default, None)
    assert parent_limits.for_call(parent_limits.worker_env(3, 2, {}), None) == WorkerLimits(3, None)
    # the user manages some threads through the environment: threadpoolctl stays out of it
    mixed = parent_limits.worker_env(None, 2, {"OMP_NUM_THREADS": str(default + 1)})
    assert parent_limits.for_call(mixed, None) is None
    assert parent_limits.for_call(mixed, 1 << 30) == WorkerLimits(None, 1 << 30)
    assert parent_limits.for_call(None, None) is None
    assert parent_limits.default_threads(10 * cpu_count()) == 1


def test_core_count_follows_loky_max_cpu_count(monkeypatch):
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "1")
    assert parent_limits.default_threads(1) == 1
    monkeypatch.delenv("LOKY_MAX_CPU_COUNT")
    assert parent_limits.default_threads(1) == cpu_count()


def test_before_batch_applies_once_per_setting_and_import_wave(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", sys)  # a library with a thread pool is loaded
    calls = []
    monkeypatch.setattr(limits, "limit_threads", calls.append)
    monkeypatch.setattr(limits, "_applied", None)
    for _ in range(3):
        limits.before_batch(WorkerLimits(1, None))
    assert calls == [1]
    limits.before_batch(WorkerLimits(2, None))
    assert calls == [1, 2]
    monkeypatch.setitem(sys.modules, "picklepool_test_fresh_module", sys)  # a new import
    limits.before_batch(WorkerLimits(2, None))
    limits.before_batch(WorkerLimits(2, None))
    assert calls == [1, 2, 2]
    limits.before_batch(WorkerLimits(None, 1 << 30))
    assert calls == [1, 2, 2]


def test_before_batch_waits_for_a_library_with_a_thread_pool(monkeypatch):
    calls = []
    monkeypatch.setattr(limits, "limit_threads", calls.append)
    monkeypatch.setattr(limits, "_applied", None)
    for name in limits.NATIVE_POOLS:
        monkeypatch.delitem(sys.modules, name, raising=False)
    limits.before_batch(WorkerLimits(1, None))
    assert calls == []  # the thread variables set at the worker's start are the limit
    monkeypatch.setitem(sys.modules, "numpy", sys)  # a task imported numpy
    limits.before_batch(WorkerLimits(1, None))
    assert calls == [1]


def test_a_worker_imports_threadpoolctl_once_a_task_loads_numpy():
    pytest.importorskip("numpy")
    proc = run_python(
        """
        import os, sys
        from picklepool.executor.limits import THREAD_VARS

        for var in THREAD_VARS:  # the default limit: one threadpoolctl applies
            os.environ.pop(var, None)
        from picklepool import Executor

        def loaded(use_numpy):
            if use_numpy:
                import numpy
            return "threadpoolctl" in sys.modules

        with Executor(max_workers=1) as ex:  # one worker: each task sees the last
            print(ex.submit(loaded, False).result())
            ex.submit(loaded, True).result()
            print(ex.submit(loaded, False).result())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]


def test_limit_threads_uses_threadpoolctl():
    pytest.importorskip("numpy")
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=None):  # restores this process's pools on exit
        assert limits.limit_threads(1) is True
        assert {pool["num_threads"] for pool in threadpool_info()} == {1}


def test_threading_backend_leaves_the_parent_pools_alone():
    pytest.importorskip("numpy")
    from threadpoolctl import threadpool_info

    before = [pool["num_threads"] for pool in threadpool_info()]
    Parallel(n_jobs=2, backend="threading")(delayed(thread_report)(i) for i in range(4))
    assert [pool["num_threads"] for pool in threadpool_info()] == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "many", True])
def test_bad_inner_max_num_threads(bad):
    with pytest.raises(ValueError, match="inner_max_num_threads"):
        Parallel(inner_max_num_threads=bad)


@pytest.mark.parametrize("bad", [0, -2, "soon", False])
def test_bad_idle_worker_timeout(bad):
    with pytest.raises(ValueError, match="idle_worker_timeout"):
        Parallel(idle_worker_timeout=bad)


def test_idle_worker_timeout_from_the_environment(monkeypatch):
    monkeypatch.setenv("PICKLEPOOL_IDLE_WORKER_TIMEOUT", "2.5")
    assert Parallel()._settings().idle_worker_timeout == 2.5
    monkeypatch.setenv("PICKLEPOOL_IDLE_WORKER_TIMEOUT", "never")
    with pytest.raises(ValueError, match="PICKLEPOOL_IDLE_WORKER_TIMEOUT"):
        Parallel()


def _worker_processes(parallel):
    with parallel as p:
        p(delayed(pid_of)(i) for i in range(8))
        pids = p._backend.worker_pids()
    assert len(pids) == 2
    return [psutil.Process(pid) for pid in pids]


def test_idle_workers_exit_after_the_timeout():
    procs = _worker_processes(Parallel(n_jobs=2, idle_worker_timeout=1.0))
    _gone, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive
    # the next call starts fresh workers
    new = set(Parallel(n_jobs=2)(delayed(pid_of)(i) for i in range(8)))
    assert new and not new & {p.pid for p in procs}


def test_shutdown_stops_workers_on_demand():
    procs = _worker_processes(Parallel(n_jobs=2))
    picklepool.shutdown()
    _gone, alive = psutil.wait_procs(procs, timeout=10)
    assert not alive
    assert Parallel(n_jobs=2)(delayed(pid_of)(i) for i in range(4))


def test_without_threadpoolctl_only_the_env_vars_limit(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails as if not installed
    assert limits.limit_threads(1) is False
    assert parent_limits.info()["threadpoolctl"] is None
