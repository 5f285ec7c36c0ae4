"""pickler.context.CallContext: kept blobs in a lasting call (an Executor's channel)."""

from __future__ import annotations

from concurrent.futures import Future

from picklepool.pickler.context import CallContext


class Store:
    """A blob store that records what is kept and dropped."""

    def __init__(self) -> None:
        self.held: set[str] = set()

    def put(self, key, data):
        self.held.add(key)
        return key

    def keep(self, key, family, owner, make):
        self.held.add(key)
        return key, 1

    def drop(self, key):
        self.held.discard(key)

    def attachment(self):
        return None


def batch(ctx, *keys, family="state-a", memoized=(), owner=None):
    """Pickle a batch that keeps *keys* and reads the *memoized* ones; return its future."""
    ctx.begin_batch()
    for key in keys:
        ctx.keep_blob(key, family, owner, lambda: [b""])
    for key in memoized:
        ctx.uses_kept(key)
    fut: Future[None] = Future()
    ctx.sent(fut)
    return fut


def test_a_superseded_version_goes_once_no_batch_in_flight_reads_it():
    store = Store()
    ctx = CallContext(None, None, store)
    ctx.per_batch = True
    a = batch(ctx, "v1")
    b = batch(ctx, memoized=["v1"])  # the same version, from the reducer's memo
    c = batch(ctx, "v2")  # a newer version: v1 is still read by a and b
    assert store.held == {"v1", "v2"}
    a.set_result(None)
    assert store.held == {"v1", "v2"}
    b.set_result(None)
    assert store.held == {"v2"}
    d = batch(ctx, "other", family="state-b")  # another state's: not v2's family
    batch(ctx, "v3").set_result(None)  # v2's last batch, c, still runs
    assert store.held == {"v2", "v3", "other"}
    c.set_result(None)
    d.set_result(None)
    assert store.held == {"v3", "other"}  # each family's newest stays, for later batches
    ctx.close()
    assert store.held == set()


def test_a_call_that_does_not_track_batches_keeps_every_version_to_its_end():
    # Parallel's calls: short, and a version may change under a batch not yet sent
    store = Store()
    ctx = CallContext(None, None, store)
    batch(ctx, "v1").set_result(None)
    batch(ctx, "v2").set_result(None)
    assert store.held == {"v1", "v2"}
    ctx.close()
    assert store.held == set()


class Owner:
    """Stands for a SharedState: the owner of a family of kept blobs."""


def test_a_family_s_last_version_goes_once_its_owner_is_gone_and_no_batch_reads_it():
    # The newest version of a state stayed to the Executor's shutdown, also once the state
    # was garbage-collected: one /dev/shm file per state it was ever given
    store = Store()
    ctx = CallContext(None, None, store)
    ctx.per_batch = True
    owner, other = Owner(), Owner()
    ctx.memo[("picklepool.SharedState", "state-a", 0)] = ctx.memo[("picklepool.SharedState", "state-a")] = 0
    ctx.memo[("picklepool.SharedState", "state-b")] = 0
    a = batch(ctx, "v1", owner=owner)
    batch(ctx, "w1", family="state-b", owner=other).set_result(None)
    del owner  # while batch a still reads v1
    assert store.held == {"v1", "w1"}
    a.set_result(None)
    assert store.held == {"w1"}  # the other state's stays: it lives
    # an owner collected while the lock is held (a collection inside its block, in any
    # thread): its family is taken in by the next use instead of waiting for the lock
    late = Owner()
    batch(ctx, "x1", family="state-c", owner=late).set_result(None)
    with ctx._kept._lock:
        del late
    assert "x1" in store.held
    batch(ctx, "w2", family="state-b", owner=other).set_result(None)
    assert store.held == {"w2"}
    # the gone states' memo entries go with them (an Executor's memo lasts as long as it)
    assert list(ctx.memo) == [("picklepool.SharedState", "state-b")]
