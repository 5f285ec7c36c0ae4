"""A killed parent leaves nothing behind (issue 14, item 6).

Its workers notice within about a second (``workers.control.watch_parent``) and
exit; loky's resource tracker, left alone once they have, removes the parent's
session folder (a 100 MB argument included) and its semaphores. A later
picklepool process removes the session folders of dead processes it finds.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

CHILD = """
import os, sys
import numpy as np
from picklepool import Parallel, delayed

def block(a, ready, gate):
    with open(ready, "w") as f:       # tell the test this task runs, with its array
        f.write(f"{os.getpid()} {a.nbytes}\\n")
    with open(gate) as f:             # a FIFO nobody writes to: blocks until killed
        f.read()

if __name__ == "__main__":
    big = np.ones(100 * 2**20 // 8)   # 100 MB, through shared memory
    Parallel(n_jobs=2, batch_size=1)(delayed(block)(big, sys.argv[1], sys.argv[2]) for _ in range(2))
"""


def _gone(pattern: str, deadline: float = 30.0) -> list[str]:
    """Paths still matching *pattern* after a bounded wait for them to go."""
    end = time.monotonic() + deadline
    while True:
        left = glob.glob(pattern)
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.1)


@pytest.mark.timeout(90)
def test_sigkill_of_a_parent_with_a_large_argument_in_flight_leaves_nothing(tmp_path):
    ready, gate = tmp_path / "ready", tmp_path / "gate"
    os.mkfifo(ready)
    os.mkfifo(gate)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICKLEPOOL_")}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(ready), str(gate)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        workers = set()
        while len(workers) < 2:  # each task opens the FIFO once; EOF between writers
            with open(ready) as f:
                for line in f:
                    pid, nbytes = map(int, line.split())
                    assert nbytes == 100 * 2**20
                    workers.add(pid)
        assert glob.glob(f"/dev/shm/picklepool-{child.pid}-*/call-*"), "the array is not in /dev/shm"
        sems_before = set(glob.glob(f"/dev/shm/sem.loky-{child.pid}-*"))
        assert sems_before, "loky made no semaphore?"
        child.send_signal(signal.SIGKILL)
        child.wait()
        procs = [psutil.Process(pid) for pid in workers]
        _, alive = psutil.wait_procs(procs, timeout=10)  # they poll their parent every 0.5 s
        assert not alive, f"workers {[p.pid for p in alive]} outlived their parent"
        assert _gone(f"/dev/shm/picklepool-{child.pid}-*") == []
        assert _gone(f"/dev/shm/sem.loky-{child.pid}-*") == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


STREAMING_CHILD = """
import os, signal, sys, tempfile, time
from picklepool import Parallel, delayed

class KillsThisProcess:
    def __reduce__(self):                 # pickled in the parent, mid-stream
        os.kill(os.getpid(), signal.SIGKILL)

def pid_once_both_run(folder):
    # Each worker runs a task (and so watches this process): a worker still booting
    # when the other has run every task would get none, wait for work until its idle
    # timeout, and keep the resource tracker (and the session folder) alive meanwhile.
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 30
    while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        pids = set(Parallel(n_jobs=2, batch_size=1)(delayed(pid_once_both_run)(folder) for _ in range(4)))
    print(" ".join(map(str, pids)), flush=True)
    values = [*range(1_000_000), KillsThisProcess(), *range(1_000_000)]
    Parallel(n_jobs=2)(delayed(len)(values) for _ in range(1))
"""


@pytest.mark.timeout(90)
def test_a_parent_killed_while_it_streams_a_batch_leaves_no_worker_waiting():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICKLEPOOL_")}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(STREAMING_CHILD)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        workers = [psutil.Process(int(pid)) for pid in child.stdout.readline().split()]
        assert workers, "the child printed no worker pids"
        assert child.wait() == -signal.SIGKILL
        # the worker reading the stream gets its end (EOF), the others notice the parent's death
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers {[p.pid for p in alive]} outlived their parent"
        assert _gone(f"/dev/shm/picklepool-{child.pid}-*") == []
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()


IDLE_CHILD = """
import os, sys
import psutil
from picklepool import Parallel, delayed

if __name__ == "__main__":
    Parallel(n_jobs=2)(delayed(abs)(-1) for _ in range(1))  # one task: one worker gets no batch
    from picklepool import lokycompat
    workers = [p.pid for p in lokycompat.started_workers()]
    with open(sys.argv[1], "w") as f:
        f.write(" ".join(map(str, workers)) + "\\n")
    with open(sys.argv[2]) as f:  # a FIFO nobody writes to: blocks until killed
        f.read()
"""


@pytest.mark.timeout(90)
def test_workers_that_never_ran_a_batch_do_not_outlive_a_killed_parent(tmp_path):
    ready, gate = tmp_path / "ready", tmp_path / "gate"
    os.mkfifo(ready)
    os.mkfifo(gate)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICKLEPOOL_")}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(IDLE_CHILD), str(ready), str(gate)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        with open(ready) as f:
            workers = [int(pid) for pid in f.read().split()]
        assert len(workers) == 2, workers
        child.send_signal(signal.SIGKILL)
        child.wait()
        procs = [psutil.Process(pid) for pid in workers]
        _, alive = psutil.wait_procs(procs, timeout=10)  # they poll their parent every 0.5 s
        assert not alive, f"workers {[p.pid for p in alive]} outlived their parent (idle timeout: 300 s)"
        assert _gone(f"/dev/shm/picklepool-{child.pid}-*") == []
    finally:
        if child.poll() is None:
            child.kill()
