"""Fixtures for executor tests: a real dask cluster for the modules that ask for one."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from tests.conftest import long_lived_processes


@pytest.fixture(scope="module")
def dask_client():
    """A real LocalCluster (2 worker processes, 1 thread each) for one test module.

    Its client is the current one while the module runs, so ``backend="dask"``
    finds it. dask reruns a batch whose worker died up to ``allowed-failures``
    times; 1 here (dask's default is 3) keeps the crash tests short.
    """
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install 'picklepool[dask]')"
    )
    import dask

    # lost-worker-timeout: 15 s after a worker leaves the scheduler, the cluster closes its
    # nanny for good unless a worker of its name is back. The nanny restarts a killed worker
    # itself, but a test that kills one within 15 s of an earlier test's kill (a restart
    # still under way at that moment) lost the nanny and the cluster a worker, then both:
    # wait_for_workers(2) timed out, or the next call waited for a worker that never came.
    # The cluster reads the setting when a worker leaves, so it holds while the module runs;
    # a day is "never" for a module.
    settings = {
        "distributed.scheduler.allowed-failures": 1,
        "distributed.deploy.lost-worker-timeout": "1 day",
    }
    with long_lived_processes("the dask cluster fixture") as own, dask.config.set(settings):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        own(lambda: _cluster_pids(cluster))
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            # dask 2026.8: the cluster's worker-status watcher trips over a worker the
            # nanny restarted, and close() re-raises that KeyError at its very end, after
            # the workers and the scheduler are closed.
            with contextlib.suppress(KeyError):
                cluster.close()


def _cluster_pids(cluster: Any) -> set[int]:
    pids = set()
    for nanny in list(cluster.workers.values()):
        pid = getattr(getattr(getattr(nanny, "process", None), "process", None), "pid", None)
        if pid is not None:
            pids.add(pid)
    return pids
