"""A call interrupted in the parent by a signal handler that raises (an alarm used as a
deadline, Ctrl-C) at a chosen step of a pool's start: the caller gets the handler's
exception, the next call works, and nothing is left or printed (``picklepool.signalhold``).

Each script sends the signal to its own main thread (``signal.pthread_kill``) from inside
the step, so the handler runs at the next instruction there: no timing is involved.
"""

from __future__ import annotations

import sys

import pytest

from picklepool.executor import reaper
from tests.conftest import run_python

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="named semaphores in /dev/shm, pthread_kill")

# {step}: where the alarm is sent (see the script); the script prints "ok" when every call
# after an interrupted one works and, once the pools are stopped, no semaphore of its own
# is in /dev/shm and no process of its own runs.
_SCRIPT = """
import gc, os, signal, threading, sys
import psutil
import picklepool
from picklepool import Parallel, delayed

class Alarm(Exception):
    pass

def on_alarm(*_):
    raise Alarm("alarm")

signal.signal(signal.SIGALRM, on_alarm)
MAIN = threading.main_thread().ident

def alarm():
    signal.pthread_kill(MAIN, signal.SIGALRM)  # its handler runs at the caller's next step

def f(x):
    return x

def call():
    return Parallel(n_jobs=2)(delayed(f)(i) for i in range(2))

step = {step!r}
armed = [0]  # the number of the matching event to send the alarm at (0: none)
fired = [0]

def hit():
    if armed[0]:
        armed[0] -= 1
        if not armed[0]:
            fired[0] += 1
            alarm()

def patch():  # once loky is imported for good (picklepool imports it at the first call)
    if step == "semlock":
        # loky's SemLock.__init__: the semaphore exists, its unlink not arranged yet
        from multiprocessing import util
        from loky.backend import synchronize
        register = util.register_after_fork
        def register_after_fork(obj, func):
            if isinstance(obj, synchronize.SemLock):
                hit()
            return register(obj, func)
        synchronize.util.register_after_fork = register_after_fork
    elif step in ("request", "reply"):
        from picklepool.executor import forkserver
        if step == "request":
            # between the forkserver request's header and its body
            class Sock:
                def __init__(self, sock):
                    self._sock = sock
                def sendmsg(self, *args):
                    sent = self._sock.sendmsg(*args)
                    hit()
                    return sent
                def __getattr__(self, name):
                    return getattr(self._sock, name)
            init = forkserver._Server.__init__
            def server_init(self):
                init(self)
                self.sock = Sock(self.sock)
            forkserver._Server.__init__ = server_init
        else:
            # while the parent waits for the forkserver's reply (let through: Ctrl-C must work)
            import multiprocessing.connection as connection
            wait = connection.wait
            def waiting(objects, timeout=None):
                if timeout is not None and timeout >= forkserver.REPLY_WAIT:
                    hit()
                return wait(objects, timeout)
            connection.wait = waiting

assert call() == [0, 1]
patch()
for k in range(1, {rounds} + 1):
    picklepool.shutdown()  # the next call starts a pool: the step comes
    armed[0] = k
    try:
        call()
    except Alarm:
        pass
    armed[0] = 0
    assert call() == [0, 1]
assert fired[0], "the step never came"
picklepool.shutdown()
gc.collect()
left = [n for n in os.listdir("/dev/shm") if n.startswith(f"sem.loky-{{os.getpid()}}-")]
assert not left, left
mine = [
    p for p in psutil.Process().children(recursive=True)
    if "tracker" not in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
]
assert not mine, mine
print("ok")
"""


def _run(step: str, rounds: int) -> None:
    proc = run_python(_SCRIPT.format(step=step, rounds=rounds), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok", proc.stdout
    # no worker's traceback (a semaphore gone, a request cut), no tracker's "leaked semlock"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "leaked" not in proc.stderr, proc.stderr
    assert "did not stop" not in proc.stderr, proc.stderr


@pytest.mark.timeout(180)
def test_alarm_in_a_semaphores_creation_leaves_no_semaphore() -> None:
    """Each of the first semaphores a pool's start makes, cut as it is made: none is left in
    /dev/shm (nor to the resource tracker, which warned of "leaked semlock objects")."""
    _run("semlock", 12)


@pytest.mark.timeout(120)
def test_alarm_between_a_forkserver_requests_header_and_body() -> None:
    """The request is sent whole: the forkserver read the next request's bytes as its body,
    died with a traceback, and the workers started as loky starts them."""
    _run("request", 2)


@pytest.mark.timeout(120)
def test_alarm_while_waiting_for_the_forkserver_reply() -> None:
    """Let through (a wait that may be long): the worker the forkserver forks ends at once,
    the pool started is stopped, nothing is printed."""
    _run("reply", 2)


def test_killing_a_pool_says_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``reaper.stop(kill=True)`` (Ctrl-C, a failed call's stop) kills the workers at once: one
    not dead yet a moment later is not one that "did not stop within 5 s of shutdown"."""
    from picklepool.executor import pool

    executor, shared = pool.acquire(2, 300, None)
    try:
        pids = sorted(reaper.lokycompat.worker_processes(executor))
        assert pids
        monkeypatch.setattr(reaper, "_running", lambda proc: True)  # killed, not dead yet
        notes = reaper.stop(executor, kill=True)
    finally:
        monkeypatch.undo()
        pool.release(executor, shared)
    assert notes == []
    assert "did not stop" not in capsys.readouterr().err


def test_stopping_a_pool_gives_its_workers_the_whole_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool stopped without a kill whose manager thread has ended already: its workers
    still get the deadline to exit (they were killed at once, and said to be late)."""
    from picklepool.executor import pool

    executor, shared = pool.acquire(2, 300, None)
    procs = list(reaper.lokycompat.worker_processes(executor).values())
    seen: list[float] = []

    def exited_by(found: list[object], until: float) -> set[int]:
        seen.append(until)
        return {p.pid for p in procs}  # type: ignore[attr-defined]

    monkeypatch.setattr(reaper, "_exited_by", exited_by)
    monkeypatch.setattr(reaper, "_running", lambda proc: True)
    try:
        notes = reaper.stop(executor)
    finally:
        monkeypatch.undo()
        pool.release(executor, shared)
    assert seen, "the workers were not waited for"
    assert notes == []
