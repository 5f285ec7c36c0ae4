"""What a forked child that could not clean up left in /dev/shm, removed by its parent.

A child forked from a process that made calls (``os.fork()``, a multiprocessing
"fork" Process) shares the parent's loky resource tracker. Its calls make a session
folder ``picklepool-<pid>-*`` and its pool's semaphores ``sem.loky-<pid>-*``; a child
that ends with ``os._exit()`` or is killed cannot remove them. They stayed while the
parent lived (a later call, ``picklepool.shutdown()`` removed nothing: 9 entries a
child, piling up in a pre-fork server), and at the parent's exit the tracker removed
them warning "There appear to be 8 leaked semlock objects" and "1 leaked folder
objects". The parent removes them now, off the tracker (``executor.session.sweep_children``).
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import run_python

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here"),
    pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm here"),
    pytest.mark.timeout(180),
]

SCRIPT = """
import multiprocessing, os, signal, sys
import picklepool
from picklepool import Parallel, delayed

how, point = sys.argv[1], sys.argv[2]

def sq(x):
    return x * x

def call():
    assert Parallel(n_jobs=2)(delayed(sq)(i) for i in range(4)) == [0, 1, 4, 9]

def slow(w):
    import time
    time.sleep(60)

def entries(pid):
    ours = (f"picklepool-{pid}-", f"sem.loky-{pid}-")
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(ours))

def child(w):
    call()  # its session folder and its pool's semaphores
    os.write(w, b"x")
    if how == "kill":  # killed by the parent while this call runs
        Parallel(n_jobs=2)(delayed(slow)(i) for i in range(2))
    os._exit(0)

def fork_child():
    # a child that makes a call and ends without cleaning up; its pid once it has ended
    r, w = os.pipe()
    if how == "mpfork":
        proc = multiprocessing.get_context("fork").Process(target=child, args=(w,))
        proc.start()
        pid = proc.pid
    else:
        pid = os.fork()
        if pid == 0:
            os.close(r)
            child(w)
    os.close(w)
    assert os.read(r, 1) == b"x"  # its call is over: its entries are there
    os.close(r)
    if how == "kill":
        os.kill(pid, signal.SIGKILL)
    if how == "mpfork":
        proc.join()
    else:
        os.waitpid(pid, 0)
    return pid

if __name__ == "__main__":
    call()
    for _ in range(1 if point == "exit" else 2):
        pid = fork_child()
        left = entries(pid)
        if point == "call":
            call()
        elif point == "shutdown":
            picklepool.shutdown()
        elif point == "fork":  # another child: the fork sweeps what the first left
            fork_child()
        print(pid, bool(left), entries(pid), flush=True)
"""


@pytest.mark.parametrize("how", ["exit", "kill", "mpfork"])
@pytest.mark.parametrize("point", ["call", "shutdown", "fork"])
def test_what_an_ended_forked_child_left_goes_at_the_parents_next_call_shutdown_or_fork(how, point):
    out = run_python(SCRIPT.replace("sys.argv[1], sys.argv[2]", f"{how!r}, {point!r}"), timeout=150)
    assert out.returncode == 0, out.stderr
    # "True": the child did leave entries (the sweep had something to do); "[]": gone after it
    assert [line.split(" ", 1)[1] for line in out.stdout.splitlines()] == ["True []"] * 2, out.stderr
    assert "leaked" not in out.stderr, out.stderr


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_what_an_ended_forked_child_left_goes_at_the_parents_exit_without_leak_warnings(how):
    # the parent's exit (its session's close) sweeps too: loky's tracker found them
    # at its own end, warning about each (40 semaphores, 5 folders for 5 children)
    out = run_python(SCRIPT.replace("sys.argv[1], sys.argv[2]", f"{how!r}, 'exit'"), timeout=150)
    assert out.returncode == 0, out.stderr
    pid, left, _ = out.stdout.split(" ", 2)
    assert left == "True", out.stdout  # still there after the child's end
    assert not [n for n in os.listdir("/dev/shm") if n.startswith((f"picklepool-{pid}-", f"sem.loky-{pid}-"))]
    assert "leaked" not in out.stderr, out.stderr


LIVE_SCRIPT = """
import os, subprocess, sys
from picklepool import Parallel, delayed
from picklepool.executor import session

if __name__ == "__main__":
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    folder = session.current_session().path
    # a child that named itself, whose pid another (live) process holds now: pid reuse
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    mine = [f"/dev/shm/picklepool-{other.pid}-0badf00d", f"/dev/shm/sem.loky-{other.pid}-0badf00d"]
    os.mkdir(mine[0])
    open(mine[1], "w").close()
    named = os.path.join(folder, f"c{other.pid}")
    open(named, "w").close()
    print(session.sweep_children(), [os.path.exists(p) for p in mine], os.path.exists(named))
    other.stdin.close()
    other.wait()  # ended now: its entries go at the next sweep
    swept = sorted(session.sweep_children()) == sorted(mine)
    print(swept, [os.path.exists(p) for p in mine], os.path.exists(named))
"""


def test_the_entries_of_a_live_process_with_a_named_childs_pid_are_left_alone():
    out = run_python(LIVE_SCRIPT, timeout=100)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[] [True, True] True", "True [False, False] False"], out.stderr


WARM_SCRIPT = """
import os
from picklepool import Parallel, delayed
from picklepool.executor import session

calls = []
sweep = session.sweep_children
session.sweep_children = lambda: calls.append(1) or sweep()

def call():
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]

if __name__ == "__main__":
    call(); call()
    warm = len(calls)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    call(); after_fork = len(calls)
    call(); call()
    print(warm, after_fork > warm, len(calls) - after_fork)
"""


def test_a_warm_call_sweeps_only_after_a_fork():
    out = run_python(WARM_SCRIPT, timeout=100)
    assert out.returncode == 0, out.stderr
    # (the fork's own hook sweeps too)
    assert out.stdout.split() == ["0", "True", "0"], out.stderr
