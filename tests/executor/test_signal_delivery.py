"""A signal that comes while picklepool holds the handlers (``picklepool.signalhold``) reaches
the program as it would without the hold: once per delivery, and what its handler raises
comes out of the call, never lost in a fallback or an at-fork hook.

Each script sends the signal to its own main thread (``signal.pthread_kill``) from inside
the held step, then runs a Python call there, where the noting handler runs: no timing.
"""

from __future__ import annotations

import functools
import signal
import sys

import pytest

from picklepool import signalhold
from tests.conftest import run_python

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="pthread_kill, fork")

_HEAD = """
import asyncio, multiprocessing, os, signal, sys, threading
import picklepool
from picklepool import Parallel, delayed
from picklepool.executor import pool

MAIN = threading.main_thread().ident

class Alarm(Exception):
    pass

def on_alarm(*_):
    raise Alarm("alarm")

signal.signal(signal.SIGALRM, on_alarm)

def step():  # a Python call: the main thread's pending Python handlers run as it starts
    pass

def send(signum, times=1):
    for _ in range(times):
        signal.pthread_kill(MAIN, signum)
        step()

def in_acquire(signum, times=1):  # while the call takes its pool (held)
    acquire = pool.acquire
    def acquiring(*args, **kwargs):
        send(signum, times)
        return acquire(*args, **kwargs)
    pool.acquire = acquiring
"""


def _run(body: str) -> str:
    proc = run_python(_HEAD + body, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
    return proc.stdout.strip()


@pytest.mark.timeout(120)
def test_asyncio_signal_during_a_hold_runs_its_callback_once() -> None:
    """asyncio's handler is the wakeup fd, written as the signal came: raising the signal
    again at the hold's end wrote it a second time, and the callback ran twice."""
    out = _run(
        """
runs = []
async def main():
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: runs.append(1))
    in_acquire(signal.SIGUSR1)
    assert Parallel(n_jobs=2)(delayed(abs)(-x) for x in range(4)) == [0, 1, 2, 3]
    for _ in range(50):
        await asyncio.sleep(0)  # (the loop reads its wakeup fd)
asyncio.run(main())
print(len(runs))
"""
    )
    assert out == "1"


@pytest.mark.timeout(120)
def test_two_deliveries_during_a_hold_run_the_handler_twice() -> None:
    """Without the hold the handler runs once per delivery it could see: two deliveries with
    Python code between them ran it twice; held, they were noted once."""
    out = _run(
        """
runs = []
signal.signal(signal.SIGUSR1, lambda *_: runs.append(1))
send(signal.SIGUSR1, 2)
print(len(runs))
in_acquire(signal.SIGUSR1, 2)
Parallel(n_jobs=2)(delayed(abs)(-x) for x in range(4))
print(len(runs))
"""
    )
    assert out.split() == ["2", "4"]


@pytest.mark.timeout(120)
def test_an_alarm_in_a_multiprocessing_pools_fork_stops_the_call() -> None:
    """The handler ran in ``os.fork``'s at-fork hook (logging's), which printed "Exception
    ignored" and went on: the deadline did not stop the call. Held, the call raises it, and
    the pool it started is stopped (not left to the garbage collector)."""
    out = _run(
        """
fired = []
def after_fork():
    if not fired:
        fired.append(1)
        send(signal.SIGALRM)
os.register_at_fork(after_in_parent=after_fork)
try:
    Parallel(n_jobs=2, backend="multiprocessing")(delayed(abs)(-x) for x in range(4))
except Alarm:
    print("raised", multiprocessing.active_children())
assert Parallel(n_jobs=2, backend="multiprocessing")(delayed(abs)(-x) for x in range(4)) == [0, 1, 2, 3]
"""
    )
    assert out == "raised []"


@pytest.mark.timeout(120)
def test_an_alarm_in_a_fallback_is_not_taken_for_its_error() -> None:
    """``flush_streams`` (the parent flushes its streams as it sends a batch) passes over a
    stream's failure: the alarm's exception raised in its flush was passed over too."""
    out = _run(
        """
class Out:
    armed = False
    def write(self, text):
        return len(text)
    def flush(self):
        if Out.armed:
            Out.armed = False
            send(signal.SIGALRM)
assert Parallel(n_jobs=2, backend="threading")(delayed(abs)(-x) for x in range(4)) == [0, 1, 2, 3]
real, sys.stdout = sys.stdout, Out()
Out.armed = True
try:
    Parallel(n_jobs=2, backend="threading")(delayed(abs)(-x) for x in range(4))
    result = "not raised"
except Alarm:
    result = "raised"
sys.stdout = real
print(result)
"""
    )
    assert out == "raised"


class _Callable:
    def __call__(self, signum: int, frame: object) -> None:
        raise ValueError("from the handler")

    def method(self, signum: int, frame: object) -> None:
        raise ValueError("from the handler")


def _raising(handler: object) -> BaseException:
    try:
        handler(signal.SIGUSR2, None)  # type: ignore[operator]
    except BaseException as exc:  # noqa: BLE001
        return exc
    raise AssertionError("did not raise")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["object", "method", "partial"])
def test_from_handler_knows_each_kind_of_handler(kind: str) -> None:
    """A handler set as a callable object, a bound method or a partial is recognised (the
    code its exception passed through), and the same exception from elsewhere is not."""
    obj = _Callable()
    handler = {"object": obj, "method": obj.method, "partial": functools.partial(obj.method)}[kind]
    exc = _raising(handler)
    assert not signalhold.from_handler(exc)
    previous = signal.signal(signal.SIGUSR2, handler)  # type: ignore[arg-type]
    try:
        assert signalhold.from_handler(exc)
        assert not signalhold.from_handler(ValueError("elsewhere"))
    finally:
        signal.signal(signal.SIGUSR2, previous)
