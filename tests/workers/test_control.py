"""The session folder: blobs shared between calls, cancel flags, cleanup."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_folders_of_dead_processes_are_removed_by_a_new_session(tmp_path):
    import subprocess
    import sys

    from picklepool.executor.session import STALE_AFTER, remove_stale_folders

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    pid = int(dead.stdout)  # exited: its pid is free (and not reused this fast)
    old = tmp_path / f"picklepool-{pid}-abcd1234"
    recent = tmp_path / f"picklepool-{pid}-ef567890"
    alive = tmp_path / f"picklepool-{os.getpid()}-00000000"
    other = tmp_path / "picklepool-notapid"
    for folder in (old, recent, alive, other):
        folder.mkdir()
        (folder / "blob").write_bytes(b"x" * 100)
    long_ago = os.path.getmtime(old) - 2 * STALE_AFTER
    os.utime(old, (long_ago, long_ago))
    os.utime(alive, (long_ago, long_ago))
    assert remove_stale_folders((str(tmp_path),)) == [str(old)]
    assert not old.exists() and recent.exists() and alive.exists() and other.exists()


def test_a_worker_told_its_parent_leaves_when_that_parent_died_before_the_watch_began():
    # a worker still booting when its parent was killed was adopted before its watch
    # began: told the pool's pid (not this child's parent here), it leaves at once
    script = (
        "import sys; from picklepool.workers import control; "
        "control.watch_parent(parent=1); sys.stdin.read()"  # pid 1 is never this process's parent
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE)
    try:
        assert child.wait(timeout=30) == 70  # EX_SOFTWARE, as when the parent dies later
    finally:
        child.kill()
        child.wait()
