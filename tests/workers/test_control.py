"""The session folder: blobs shared between calls, cancel flags, cleanup."""

from __future__ import annotations

import os

from picklepool.executor.session import Session


def test_a_blob_shared_by_two_calls_lives_until_both_drop_it():
    s = Session()
    try:
        path = s.write_blob("k", b"data", owner=1)
        assert s.write_blob("k", b"data", owner=2) == path
        s.drop_blob("k", owner=1)
        assert open(path, "rb").read() == b"data"  # the second call still needs it
        s.drop_blob("k", owner=2)
        assert not os.path.exists(path)
        s.drop_blob("k", owner=2)  # dropping twice is harmless
    finally:
        s.close()
    assert not os.path.exists(s.path)


def test_cancel_flags_are_per_call():
    s = Session()
    try:
        a, b = s.begin_call(), s.begin_call()
        s.cancel(a)
        from picklepool.workers.control import WorkerView

        view = WorkerView(s.path)
        assert view.cancelled(a) and not view.cancelled(b)
    finally:
        s.close()


def test_workers_that_exit_normally_remove_their_status_files():
    import picklepool
    from picklepool import Parallel, delayed
    from picklepool.executor.session import session

    pids = set(Parallel(n_jobs=2, batch_size=1)(delayed(os.getpid)() for _ in range(20)))
    folder = session().path
    files = {f"w{pid}" for pid in pids}
    assert files <= set(os.listdir(folder))
    picklepool.shutdown()  # waits for the workers to exit (as recycling or idleness would)
    assert not files & set(os.listdir(folder))
