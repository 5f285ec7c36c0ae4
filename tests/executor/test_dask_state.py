"""SharedState on the dask backend: scattered once per call, rebuilt once per worker."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from picklepool import Parallel, SharedState, delayed
from tests.test_state import Counted, _serialised, read_ab, where
from tests.test_state_isolation import change, look, pristine, same_batch_pairs, value

pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install 'picklepool[dask]')"
)


def test_state_on_dask_is_sent_once_and_rebuilt_once_per_worker(dask_client):
    _serialised.clear()
    state = SharedState({"a": 1, "b": 1, "x": np.ones(500_000), "c": Counted()})
    out = Parallel(backend="dask", batch_size=5)(delayed(where)(state) for _ in range(60))
    assert len(_serialised) == 1
    by_worker: dict[int, set[int]] = {}
    for pid, ident, version in out:
        by_worker.setdefault(pid, set()).add(ident)
        assert version == 0
    assert all(len(ids) == 1 for ids in by_worker.values())
    state.set({"a": 2, "b": 2})
    assert Parallel(backend="dask")(delayed(read_ab)(state) for _ in range(4)) == [(2, 2, 1)] * 4


def test_on_dask_a_change_never_reaches_the_next_task_of_the_batch(dask_client):
    """Bytes delivered with the batch: the worker keeps them in an in-memory file to undo changes."""
    state = SharedState(value())
    calls = [delayed(change if k % 2 == 0 else look)(state, "ndarray element", "with") for k in range(12)]
    out = Parallel(backend="dask", batch_size=6)(calls)
    assert same_batch_pairs(out) == 10
    assert all(seen for _, _, seen, _ in out) and all(own for _, _, _, own in out)
    assert pristine(state.value)


# -- kept on the cluster across calls (executor.kept) ---------------------------------


def read_x(state, i):
    return float(state.value["x"][i])


def read_all(state, n, **options):
    """x[0..n) of the state, read by n tasks on the cluster."""
    return Parallel(backend="dask", **options)(delayed(read_x)(state, i) for i in range(n))


def _flush(client):
    """Run what the client's loop has queued (a future's release is sent from there)."""

    async def nothing():
        return None

    client.sync(nothing)


def _scatters(client, monkeypatch):
    """Record the size of every FrameFile (a kept snapshot) the client scatters."""
    from picklepool.workers.framefile import FrameFile

    sent: list[int] = []
    real = client.scatter

    def scatter(data, **kwargs):
        sent.extend(item.nbytes for item in data if isinstance(item, FrameFile))
        return real(data, **kwargs)

    monkeypatch.setattr(client, "scatter", scatter)
    return sent


def _rebuilds():
    from picklepool.workers import snapshots

    return snapshots.rebuilds


def _forget_copies():
    """A worker that never saw the state: its cache of rebuilt objects is emptied."""
    from picklepool.workers import snapshots
    from picklepool.workers.cache import objects

    objects.clear()
    snapshots._newest.clear()


def test_an_unchanged_state_is_sent_once_for_all_calls(dask_client, monkeypatch):
    from picklepool.executor import kept

    sent = _scatters(dask_client, monkeypatch)
    _serialised.clear()
    state = SharedState({"x": np.arange(300_000.0), "c": Counted()})
    before = dask_client.run(_rebuilds)
    for _ in range(3):
        assert read_all(state, 40, batch_size=5) == [float(i) for i in range(40)]
    assert len(sent) == 1 and len(_serialised) == 1  # packed and scattered once, not per call
    after = dask_client.run(_rebuilds)
    assert all(after[w] - before.get(w, 0) <= 1 for w in after)  # rebuilt at most once per worker
    [key] = kept.kept_for(dask_client).keys()
    future = kept.kept_for(dask_client)._by_key[key].future

    state.set({"x": np.arange(300_000.0) + 1, "c": Counted()})  # a new version: sent, the old one released
    assert read_all(state, 4) == [1.0, 2.0, 3.0, 4.0]
    assert len(sent) == 2 and len(_serialised) == 2
    assert kept.kept_for(dask_client).keys() != [key]
    _flush(dask_client)
    assert future.key not in dask_client.refcount

    newest = kept.kept_for(dask_client)._by_key[kept.kept_for(dask_client).keys()[0]].future
    del state
    gc.collect()
    _flush(dask_client)  # the state is gone: so is its snapshot on the cluster
    assert kept.kept_for(dask_client).keys() == []
    assert newest.key not in dask_client.refcount


def test_a_change_in_a_task_never_reaches_a_later_call_on_dask(dask_client):
    state = SharedState(value())
    changed = Parallel(backend="dask", batch_size=3)(
        delayed(change)(state, how, "value") for how in ("ndarray element", "list append", "dict item") * 4
    )
    assert all(seen and own for _, _, seen, own in changed)
    out = Parallel(backend="dask", batch_size=2)(delayed(look)(state) for _ in range(12))
    assert all(seen for _, _, seen, _ in out)  # the copies kept by the workers were put back
    assert pristine(state.value) and state.version == 0


def test_a_worker_without_a_copy_gets_the_kept_snapshot_again(dask_client, monkeypatch):
    sent = _scatters(dask_client, monkeypatch)
    state = SharedState({"x": np.arange(300_000.0)})
    assert read_all(state, 8) == [float(i) for i in range(8)]
    dask_client.run(_forget_copies)  # as a restarted or new worker: nothing cached
    before = dask_client.run(_rebuilds)
    assert read_all(state, 8, batch_size=1) == [float(i) for i in range(8)]
    assert len(sent) == 1  # not scattered again: the batches that missed it were sent it
    after = dask_client.run(_rebuilds)
    assert sum(after[w] - before.get(w, 0) for w in after) >= 1


def test_a_kept_snapshot_lost_with_its_worker_is_scattered_again(dask_client, monkeypatch):
    from picklepool.executor import kept

    sent = _scatters(dask_client, monkeypatch)
    state = SharedState({"x": np.arange(300_000.0)})
    assert read_all(state, 4) == [0.0, 1.0, 2.0, 3.0]
    registry = kept.kept_for(dask_client)
    [key] = registry.keys()
    future = registry._by_key[key].future
    holders = dask_client.who_has([future])[future.key]
    dask_client.restart_workers(list(holders))  # every copy is gone; dask cannot recompute it
    dask_client.run(_forget_copies)  # a worker not restarted has to ask for it too
    assert read_all(state, 6, batch_size=1) == [float(i) for i in range(6)]
    assert len(sent) == 2  # packed again from the state, whose version has not moved
    dask_client.wait_for_workers(2, timeout=60)


def _copies_of(uids):
    from picklepool.workers.cache import objects

    states = {k[1] for k in objects.keys() if type(k) is tuple and len(k) == 3 and k[0] == "state"}
    return sorted(states & set(uids))


def test_a_dask_worker_drops_its_copy_of_a_state_the_parent_let_go(dask_client):
    # The cluster's scattered snapshot was released with the state, but each worker kept its
    # rebuilt copy (an in-memory file and the value) until its 1 GiB cache bound
    uids = []
    for i in range(3):
        state = SharedState({"x": np.full(300_000, float(i))})
        uids.append(state._uid)
        assert read_all(state, 4) == [float(i)] * 4
        del state
    gc.collect()
    # every batch tells the worker running it which states its parent let go, first
    got = Parallel(backend="dask", batch_size=1)(delayed(_copies_of)(uids) for _ in range(8))
    assert got == [[]] * 8


def test_picklepool_shutdown_releases_kept_snapshots(dask_client):
    import picklepool
    from picklepool.executor import kept

    state = SharedState({"x": np.arange(300_000.0)})
    assert read_all(state, 2) == [0.0, 1.0]
    future = kept.kept_for(dask_client)._by_key[kept.kept_for(dask_client).keys()[0]].future
    picklepool.shutdown()
    _flush(dask_client)
    assert kept.kept_for(dask_client).keys() == [] and future.key not in dask_client.refcount
    assert read_all(state, 2) == [0.0, 1.0]  # sent again


def tag_of(state, i):
    return state.value["tag"], i


def test_on_dask_a_state_kept_by_one_pickler_is_never_read_by_another(dask_client):
    from picklepool.pickler import register_pickler, unregister_pickler
    from tests.custom_picklers import Zlibbed

    register_pickler("zlibbed", Zlibbed)
    try:
        for first, then in (("hybrid", "zlibbed"), ("zlibbed", "hybrid")):
            state = SharedState({"tag": "t"})
            # one task: one worker unpacks the kept bytes; the other reads them in the next call
            assert Parallel(backend="dask", pickler=first)(delayed(tag_of)(state, 0) for _ in range(1)) == [
                ("t", 0)
            ]
            out = Parallel(backend="dask", pickler=then, batch_size=1)(
                delayed(tag_of)(state, i) for i in range(8)
            )
            assert out == [("t", i) for i in range(8)], (first, then)
    finally:
        unregister_pickler("zlibbed")


def test_a_script_that_ends_without_closing_its_client_logs_no_lost_data():
    """The snapshot picklepool keeps on the cluster (and the batches it released just before)
    are let go before dask's own exit handlers close the cluster: was an ERROR "Removing
    worker ... caused the cluster to lose scattered data" (and a WARNING naming a
    picklepool-batch) at the end of every such script, where joblib's dask backend is quiet."""
    from tests.conftest import run_python

    res = run_python(
        """
        import numpy as np
        from distributed import Client, LocalCluster
        from picklepool import Parallel, SharedState, delayed

        def read(state, i):
            with state as v:
                return v["step"] + i

        if __name__ == "__main__":
            client = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                         dashboard_address=None))
            state = SharedState({"step": 1, "w": np.zeros(300_000)})
            print(Parallel(backend="dask")(delayed(read)(state, i) for i in range(4)))
        """,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "[1, 2, 3, 4]" in res.stdout
    assert "lose scattered data" not in res.stderr, res.stderr
    assert "picklepool-batch" not in res.stderr, res.stderr


class _FakeFuture:
    status = "finished"

    def __init__(self, client, key):
        self.client, self.key = client, key

    def release(self):
        self.client.released.append(self.key)


class _FakeClient:
    def __init__(self):
        self.released = []

    def scatter(self, frames, hash=True):
        return [_FakeFuture(self, f"key-{len(self.released)}-{id(frames[0])}")]


class _Owner:
    """Stands for a SharedState."""


def test_a_state_collected_while_its_client_s_registry_is_locked_does_not_deadlock():
    # The finalizer of a kept snapshot's owner released it at once, taking the registry's
    # lock: a collection inside a block holding that lock (any allocation there) hung the
    # thread for ever. Now it is noted, and released by the next checkout or checkin.
    from picklepool.executor.kept import KeptBlobs

    client = _FakeClient()
    registry = KeptBlobs(client)
    owner, other = _Owner(), _Owner()
    kept = registry.checkout("state-a-0", "a", owner, lambda: [b"x"])
    registry.checkin(kept)
    with registry._lock:
        del owner  # its finalizer runs here, in the thread holding the lock
    assert registry.keys() == ["state-a-0"] and client.released == []
    registry.checkin(registry.checkout("state-b-0", "b", other, lambda: [b"y"]))
    assert registry.keys() == ["state-b-0"] and client.released == [kept.future.key]
    del other  # no lock held: released at once
    assert registry.keys() == [] and len(client.released) == 2


def test_a_release_from_a_collection_inside_the_registries_lock_does_not_deadlock():
    # An argument array's blob is released from a weakref callback (CallBuffers._owner_died),
    # which runs wherever a collection happens: inside a block holding this lock, it hung
    from picklepool.executor import kept

    client = _FakeClient()
    with kept._registries_lock:
        kept.release(_FakeFuture(client, "arg-1"))
    assert client.released == ["arg-1"]
