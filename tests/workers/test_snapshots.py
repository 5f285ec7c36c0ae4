"""The worker's cache of SharedState snapshots: once per version, bounded in bytes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from picklepool import Parallel, SharedState, delayed
from picklepool.executor.session import Session
from picklepool.pickler.base import CloudPickler
from picklepool.pickler.context import CallContext, active
from picklepool.workers import snapshots
from picklepool.workers.cache import DEFAULT_MAX_BYTES, ByteLRU, objects

MB = 1 << 20


@pytest.fixture
def worker_cache(monkeypatch):
    """Run the worker side in this process, with a fresh cache standing in for a worker's."""
    cache = ByteLRU()
    monkeypatch.setattr(snapshots, "objects", cache)
    monkeypatch.setattr(snapshots, "_newest", {})
    session = Session()
    yield cache, session
    session.close()


def send(session: Session, *states: SharedState) -> list[SharedState]:
    """What a worker rebuilds from one call's batch carrying *states*."""
    pickler = CloudPickler()
    with active(CallContext(pickler, session)):
        data = pickler.dumps(list(states))
    return pickler.loads(data)  # type: ignore[no-any-return]


def key(state: SharedState) -> tuple[str, str, int]:
    return ("state", state._uid, state.version)


def test_least_recently_used_states_go_first_past_the_bound(worker_cache, monkeypatch):
    cache, session = worker_cache
    monkeypatch.setenv("PICKLEPOOL_WORKER_CACHE_BYTES", "2.5M")
    s1, s2, s3, s4 = (SharedState({"x": np.zeros(MB // 8)}) for _ in range(4))  # 1 MiB each
    send(session, s1)
    send(session, s2)
    assert cache.max_bytes == int(2.5 * MB)
    assert key(s1) in cache and key(s2) in cache
    send(session, s1)  # s1 is now the most recently used
    send(session, s3)
    assert key(s2) not in cache and key(s1) in cache and key(s3) in cache
    send(session, s4)
    assert cache.keys()[-2:] == [key(s3), key(s4)] and key(s1) not in cache
    assert cache.nbytes <= cache.max_bytes
    assert cache.builds == 4  # the second s1 came from the cache


def test_a_newer_version_replaces_the_older_at_once(worker_cache):
    cache, session = worker_cache
    state = SharedState({"x": np.zeros(10)})
    (old,) = send(session, state)
    assert send(session, state)[0] is old  # same version: the same rebuilt copy
    old_key = key(state)
    with state as v:
        v["x"] += 1
    (new,) = send(session, state)
    assert new is not old and new.value["x"][0] == 1.0
    assert old_key not in cache and key(state) in cache


def test_a_state_larger_than_the_bound_is_still_rebuilt_once(worker_cache, monkeypatch):
    cache, session = worker_cache
    monkeypatch.setenv("PICKLEPOOL_WORKER_CACHE_BYTES", "100K")
    state = SharedState({"x": np.zeros(MB // 8)})
    first = send(session, state)[0]
    assert send(session, state)[0] is first and cache.builds == 1


def test_the_bound_goes_back_to_the_default_when_unset(worker_cache, monkeypatch):
    cache, session = worker_cache
    monkeypatch.setenv("PICKLEPOOL_WORKER_CACHE_BYTES", "1M")
    send(session, SharedState(1))
    assert cache.max_bytes == MB
    monkeypatch.delenv("PICKLEPOOL_WORKER_CACHE_BYTES")
    send(session, SharedState(2))
    assert cache.max_bytes == DEFAULT_MAX_BYTES


def test_a_bad_bound_is_reported_with_its_source(monkeypatch):
    monkeypatch.setenv("PICKLEPOOL_WORKER_CACHE_BYTES", "lots")
    pickler = CloudPickler()
    with active(CallContext(pickler, None)), pytest.raises(ValueError, match="PICKLEPOOL_WORKER_CACHE_BYTES"):
        pickler.dumps(SharedState(1))


def cache_report(uids: list[str]) -> tuple[int, int, int, list[str]]:
    held = [uid for uid in uids if any(k[:2] == ("state", uid) for k in objects.keys())]
    return os.getpid(), objects.max_bytes, objects.nbytes, held


def touch(state: SharedState) -> int:
    return state.version


def test_real_workers_stay_under_the_bound(monkeypatch):
    monkeypatch.setenv("PICKLEPOOL_WORKER_CACHE_BYTES", "3M")
    states = [SharedState({"x": np.full(150_000, i)}) for i in range(3)]  # 1.2 MB each
    with Parallel(n_jobs=2, batch_size=1) as parallel:
        for state in states:
            parallel(delayed(touch)(state) for _ in range(20))
        uids = [s._uid for s in states]
        reports = parallel(delayed(cache_report)(uids) for _ in range(20))
    for _pid, bound, nbytes, held in reports:
        assert bound == 3 * MB
        assert nbytes <= bound
        assert len(held) <= 2  # three would not fit


def test_a_blob_is_mapped_copy_on_write_and_its_stream_pages_released(tmp_path):
    from picklepool.pickler import frames

    pickler = CloudPickler()
    value = {"list": [float(i) for i in range(200_000)], "x": np.arange(300_000.0)}
    path = tmp_path / "blob"
    path.write_bytes(b"".join(frames.pack(pickler, value)))
    got = snapshots.load(pickler, str(path))
    assert got["list"] == value["list"]
    np.testing.assert_array_equal(got["x"], value["x"])
    got["x"][:] = -1.0  # writable, private: the blob file is unchanged
    assert (got["x"] == -1.0).all()
    again = snapshots.load(pickler, str(path))
    np.testing.assert_array_equal(again["x"], value["x"])


def test_forget_drops_the_copies_of_the_states_the_parent_let_go(worker_cache, monkeypatch):
    # wire.Batch.states_gone: (parent, how many states it let go, the last ones' uids)
    cache, _ = worker_cache
    monkeypatch.setattr(snapshots, "_forgotten", {})
    for uid in "abcd":
        snapshots.rebuild(uid, 1, MB, None, lambda: object())
    cache.get_or_build(("function", "a"), 10, lambda: object())  # not a state: stays
    snapshots.forget("p", 2, ("a", "b"))
    assert sorted(k[1] for k in cache.keys()) == ["a", "c", "d"]  # ("function", "a") and c, d
    assert sorted(snapshots._newest) == ["c", "d"]
    snapshots.forget("p", 2, ("a", "b"))  # heard already: nothing more
    snapshots.forget("q", 1, ("x",))  # another parent (a cluster's other client) counts apart
    snapshots.forget("p", 3, ("b", "c"))  # one more since: the last uid listed
    assert sorted(snapshots._newest) == ["d"]
    snapshots.rebuild("e", 1, MB, None, lambda: object())
    snapshots.forget("p", 9, ("x", "e"), only_these=True)  # a cluster's: the listed ones only
    assert sorted(snapshots._newest) == ["d"]
    snapshots.forget("p", 20, ("x", "y"))  # more went than listed: every copy goes
    assert snapshots._newest == {} and cache.keys() == [("function", "a")]
