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


def batch(ctx, *keys, family="state-a", memoized=()):
    """Pickle a batch that keeps *keys* and reads the *memoized* ones; return its future."""
    ctx.begin_batch()
    for key in keys:
        ctx.keep_blob(key, family, None, lambda: [b""])
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
