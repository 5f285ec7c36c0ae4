"""Workloads on a dask cluster: picklepool's ``backend="dask"`` against joblib's dask backend.

Both run on one ``distributed.LocalCluster(n_workers=2, threads_per_worker=1,
processes=True)`` through the same ``distributed.Client``, in interleaved rounds
like every other row, with ``n_jobs=-1`` (all the cluster's threads):

dask_tiny    2,000 calls of ``x * x`` (--quick: 500): the cost of a call and its
             batches on the cluster
dask_state   200 tasks each reading one element of a 48 MB float64 array (--quick:
             20 tasks, 2 MB): picklepool gets it in a ``SharedState``, joblib the
             array as an argument, which its dask backend scatters to the cluster
             once per call (it does so for arguments it can weak-reference, as
             arrays are; a dict would go inline with every task). picklepool sends
             the state once per version and keeps it on the cluster: its first
             timed round pays that (the row's max), later rounds do not. Both are
             warmed up on a 1 KB value (code paths, imports), not on the big one.

mp.Pool, cf.PPE and the loop do not run on a cluster: n/a. Without
dask.distributed the workload is skipped, and without numpy its dask_state row.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

from . import features
from .common import Context, expect, measure_row
from .peers import Peer, dask_peers
from .results import COLUMNS, PICKLEPOOL, Cell, Row, WorkloadResult
from .tasks import read_element, read_state_element, square

MB = 1 << 20
N_WORKERS = 2


@contextlib.contextmanager
def local_cluster() -> Iterator[Any]:
    """A LocalCluster of 2 single-threaded worker processes; its client is the current one."""
    import distributed

    with warnings.catch_warnings():
        # The scheduler's HTTP server takes another port when 8787 is in use, and warns.
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        cluster = distributed.LocalCluster(
            n_workers=N_WORKERS,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    try:
        with distributed.Client(cluster) as client:
            yield client
    finally:
        # dask 2026.8 can re-raise a KeyError at the very end of close(), after the
        # workers and the scheduler are closed, when a worker was restarted.
        with contextlib.suppress(KeyError):
            cluster.close()


def dask_cluster(ctx: Context) -> WorkloadResult:
    n_tiny = ctx.size(500, 2_000)
    nbytes, n_state = ctx.size(2 * MB, 48 * MB), ctx.size(20, 200)
    res = WorkloadResult(
        "dask_cluster",
        f"on a LocalCluster ({N_WORKERS} worker processes, 1 thread each): {n_tiny:,} calls of x*x; "
        f"{n_state} tasks each reading a ~{nbytes // MB} MB value (a SharedState for picklepool, "
        "the plain value for joblib); picklepool backend='dask' vs joblib's dask backend",
        {"workers": N_WORKERS, "tiny_tasks": n_tiny, "state_tasks": n_state, "value_mb": nbytes // MB},
    )
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        res.skipped = f"dask.distributed is not installed ({exc}; pip install 'picklepool[dask]')"
        return res
    ctx.step("starting the LocalCluster")
    with local_cluster():
        peers, missing = dask_peers(n_jobs=-1)
        res.rows.append(_tiny(ctx, peers, missing, n_tiny))
        res.rows.append(_state(ctx, peers, missing, nbytes, n_state))
    res.notes.append(
        "dask_state: joblib's dask backend scatters the array to the cluster once per call "
        "(it does so for arguments it can weak-reference); picklepool scatters the SharedState "
        "snapshot once per version and keeps it there across calls (its first timed round pays it)."
    )
    return res


def _tiny(ctx: Context, peers: dict[str, Peer], missing: dict[str, str], n: int) -> Row:
    xs = range(n)
    return measure_row(
        ctx,
        "dask_tiny",
        peers,
        missing,
        lambda p: p.map(square, xs),
        expect([x * x for x in xs]),
        warm=lambda p: p.map(square, range(4 * N_WORKERS)),
    )


def _state(ctx: Context, peers: dict[str, Peer], missing: dict[str, str], nbytes: int, n: int) -> Row:
    if reason := features.numpy_missing():
        return Row("dask_state", {name: Cell.skipped(reason) for name in COLUMNS})
    import numpy as np

    from picklepool import SharedState

    value = np.random.default_rng(0).random(nbytes // 8)
    state = SharedState(value)
    state_args = [(state, i) for i in range(n)]
    plain_args = [(value, i) for i in range(n)]
    tiny = np.arange(128, dtype=np.float64)
    tiny_state = SharedState(tiny)

    def call(p: Peer) -> Any:
        if p.name == PICKLEPOOL:
            return p.starmap(read_state_element, state_args)
        return p.starmap(read_element, plain_args)

    def warm(p: Peer) -> Any:  # code paths and imports warm, without the big value
        if p.name == PICKLEPOOL:
            return p.starmap(read_state_element, [(tiny_state, i) for i in range(4)])
        return p.starmap(read_element, [(tiny, i) for i in range(4)])

    check = expect([read_element(value, i) for i in range(n)])
    return measure_row(ctx, "dask_state", peers, missing, call, check, warm=warm)
