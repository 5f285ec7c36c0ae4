"""picklepool's own sockets under a program's ``socket.setdefaulttimeout`` (``workers/sockets.py``)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import run_python

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a POSIX forkserver and Unix sockets")


def test_a_default_socket_timeout_leaves_the_forkserver_lanes_and_streams_working():
    # socket.setdefaulttimeout(...) at a script's top made every socket of picklepool's
    # non-blocking underneath: the forkserver died at its first request (BlockingIOError,
    # a traceback on stderr; workers started the slow way), a lane failed its first read
    # while it waited for a batch, and a streamed batch whose parent paused in pickling
    # past the timeout failed in the worker (TimeoutError), where the loop ran
    proc = run_python(
        """
        import os, socket, sys, threading
        socket.setdefaulttimeout(0.05)
        from picklepool import Parallel, delayed
        from picklepool.executor import forkserver, lanes, pool

        def origin(x):
            return os.getppid()

        def in_lane(x):
            frame = sys._getframe()
            while frame is not None:
                if frame.f_globals["__name__"] == "picklepool.workers.lane":
                    return x, True
                frame = frame.f_back
            return x, False

        paused = threading.Event()

        class Pause:
            def __reduce__(self):  # the parent's pickling stops past the timeout mid-stream
                paused.wait(0.5)
                return Pause, ()

        parents = Parallel(n_jobs=2, batch_size=1)(delayed(origin)(i) for i in range(4))
        print(set(parents) == {forkserver._server.pid})
        Parallel(n_jobs=2)(delayed(in_lane)(0) for _ in range(1))  # a small call opens the lanes
        box = lanes._by_executor.get(pool._shared)
        with box._cond:  # (they never connected: the call fell back to loky's path, for ever)
            print(box._cond.wait_for(lambda: len(box._idle) == 2, timeout=20))
        paused.wait(0.2)  # the lanes wait for their next batch past the timeout
        print([Parallel(n_jobs=2)(delayed(in_lane)(i) for _ in range(1))[0] for i in range(3)])
        big = list(range(100_000)) + [Pause()]
        print(Parallel(n_jobs=2)(delayed(len)(big) for _ in range(1)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines() == ["True", "True", "[(0, True), (1, True), (2, True)]", "[100001]"]
