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

    with long_lived_processes("the dask cluster fixture") as own:
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
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
