"""A process forked after picklepool calls (``os.fork``, multiprocessing's fork start).

The parent's pool, lanes and session folder stay the parent's: the child's calls
start a pool and a session of their own, and its exit removes nothing of the
parent's. Before, the child's call used the parent's executor, whose manager
thread does not exist in the child, and failed with "a worker process died".
A process ``multiprocessing`` starts (any start method) removes its own session
folder when it ends, though it leaves without running ``atexit``'s handlers.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import run_python

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here")

SCRIPT = """
import os, sys
from picklepool import Parallel, delayed
from picklepool.executor.session import current_session

def ident(x):
    return x, os.getpid()

def one(x):
    return Parallel(n_jobs=2)(delayed(ident)(x) for _ in range(1))[0][0]

if __name__ == "__main__":
    assert one(1) == 1 and one(2) == 2  # the parent's lanes are open now (executor.lanes)
    folder = current_session().path
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            got = [one(10), Parallel(n_jobs=2)(delayed(ident)(i) for i in range(4))[3][0], one(11)]
            mine = current_session().path != folder
        except BaseException as exc:
            os.write(w, repr(exc).encode())
            os._exit(1)
        os.write(w, f"child {got} own-session={mine}".encode())
        sys.exit(0)  # atexit runs: the parent's session folder must stay
    os.close(w)
    results = [one(100 + i) for i in range(30)]  # while the child makes its calls
    msg = b""
    while chunk := os.read(r, 1000):
        msg += chunk
    _, status = os.waitpid(pid, 0)
    print(msg.decode())
    print(os.waitstatus_to_exitcode(status), results == list(range(100, 130)), os.path.isdir(folder), one(7))
"""


def test_a_forked_child_gets_its_own_pool_and_session_and_leaves_the_parents_alone():
    out = run_python(SCRIPT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["child [10, 3, 11] own-session=True", "0 True True 7"], out.stderr
    assert "picklepool" not in out.stderr, out.stderr
    # the child's exit joins its own workers, not the parent's (multiprocessing's list)
    assert "can only join a child process" not in out.stderr, out.stderr


PROCESS_SCRIPT = """
import multiprocessing, os, sys
from picklepool import Parallel, delayed

def job(queue):
    from picklepool.executor.session import current_session
    out = Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3))
    queue.put((out, current_session().path))

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    queue = ctx.Queue()
    child = ctx.Process(target=job, args=(queue,))
    child.start()
    out, folder = queue.get()
    child.join()
    print(out, child.exitcode, os.path.exists(folder))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_process_multiprocessing_started_removes_its_session_folder_at_its_exit(tmp_path, method):
    # Such a process leaves with os._exit, without atexit's handlers: its session
    # folder stayed until loky's resource tracker removed it at the parent's exit,
    # warning "There appear to be 1 leaked folder objects".
    script = tmp_path / "process_child.py"
    script.write_text(PROCESS_SCRIPT)
    out = subprocess.run([sys.executable, str(script), method], capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[0, 1, 2] 0 False"], out.stderr
    assert "leaked" not in out.stderr, out.stderr


KEPT_SCRIPT = """
import os, sys
from picklepool import Executor, Parallel, delayed, lokycompat
from picklepool.executor import pool

def ident(x):
    return x, os.getpid()

def workers():
    return set(lokycompat.worker_processes(pool._shared))

if __name__ == "__main__":
    ex = Executor(max_workers=2)
    assert ex.submit(ident, 1).result()[0] == 1
    with Parallel(n_jobs=2) as p:
        p(delayed(ident)(i) for i in range(4))
        before = workers()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            out = []
            try:
                ex.submit(ident, 2)
                out.append("submitted")
            except RuntimeError as exc:
                out.append("refused" if "forked" in str(exc) else repr(exc))
            try:
                got = p(delayed(ident)(i) for i in range(4))
                mine = {q for _, q in got}
                out.append(f"{[x for x, _ in got]} {'parent' if mine & before else 'own'}")
            except BaseException as exc:
                out.append(repr(exc))
            os.write(w, "; ".join(out).encode())
            sys.exit(0)  # atexit runs: the parent's workers must stay
        os.close(w)
        msg = b""
        while chunk := os.read(r, 1000):
            msg += chunk
        _, status = os.waitpid(pid, 0)
        print(msg.decode())
        print(os.waitstatus_to_exitcode(status), workers() == before)
        print([x for x, _ in p(delayed(ident)(i) for i in range(4))], ex.submit(ident, 3).result()[0])
    ex.shutdown()
"""


def test_a_forked_child_does_not_use_nor_stop_the_parents_executor_or_with_block():
    # An Executor made before the fork: its submit in the child queued for a manager
    # thread that does not exist there, and the future waited for ever. A with-block
    # kept across the fork ran its call on the parent's pool: it failed ("loky's manager
    # thread ended"), and stopping that pool killed the parent's workers.
    out = run_python(KEPT_SCRIPT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["refused; [0, 1, 2, 3] own", "0 True", "[0, 1, 2, 3] 3"], (
        out.stdout + out.stderr
    )


BLOCK_SCRIPT = """
import os, signal, sys
from picklepool import Parallel, delayed

def square(x):
    return x * x

if __name__ == "__main__":
    with Parallel(n_jobs=2, backend=sys.argv[1]) as p:
        first = p(delayed(square)(i) for i in range(4))
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # a hang ends the child (status -14), not left behind
            print("child", p(delayed(square)(i) for i in range(4)), flush=True)
            sys.exit(0)  # the block's end, then atexit, in the child
        _, status = os.waitpid(pid, 0)
        print("parent", first, os.waitstatus_to_exitcode(status), p(delayed(square)(i) for i in range(4)))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["threading", "multiprocessing"])
def test_a_with_block_kept_across_a_fork_runs_the_childs_calls(backend):
    # The block's thread pool (or multiprocessing.Pool) has no threads in the child:
    # the child's call waited for ever.
    out = subprocess.run(
        [sys.executable, "-c", BLOCK_SCRIPT, backend], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["child [0, 1, 4, 9]", "parent [0, 1, 4, 9] 0 [0, 1, 4, 9]"], (
        out.stdout + out.stderr
    )


HELD_SCRIPT = """
import os, signal, threading
from picklepool import Parallel, delayed, keptmodules
from picklepool.executor import dask, gil, kept, lanes, pool, reaper, replies
from picklepool.pickler import buffers, classes
from picklepool.workers import writewatch

def square(x):
    return x * x

if __name__ == "__main__":
    print(Parallel(n_jobs=2)(delayed(square)(i) for i in range(3)))
    # another thread inside the pool's bookkeeping at the fork (a call that stops a
    # broken pool at its release, or a pool of other settings at its start, under
    # the lock): the child's copy of the lock was held for ever
    held, done = threading.Event(), threading.Event()
    locks = lambda: (  # noqa: E731 - each module's lock as it is now (the child's are new)
        pool._lock, reaper._lock, lanes._lock, gil._lock, buffers._owners_lock,
        keptmodules._lock, classes._lock, replies._culprits_lock, kept._registries_lock,
        dask._clients_lock, writewatch._lock,
    )
    def hold():
        taken = locks()
        for lock in taken:
            lock.acquire()
        held.set()
        done.wait()
        for lock in taken:
            lock.release()
    threading.Thread(target=hold).start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        signal.alarm(30)  # a hang ends the child (status -14), not left behind
        import xml.dom.minidom  # (modules the call's end notes: keptmodules' lock)
        held_here = [lock for lock in locks() if not lock.acquire(blocking=False)]
        for lock in set(locks()) - set(held_here):
            lock.release()
        print("child", Parallel(n_jobs=2)(delayed(square)(i) for i in range(3)), len(held_here), flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    done.set()
    again = Parallel(n_jobs=2)(delayed(square)(i) for i in range(3))
    print("parent", os.waitstatus_to_exitcode(status), again)
"""


@pytest.mark.timeout(120)
def test_a_fork_while_another_thread_holds_the_pools_lock_leaves_the_child_usable():
    out = run_python(HELD_SCRIPT, timeout=100)
    # every lock of picklepool's modules another thread held at the fork is free in the
    # child (keptmodules' was not: the child's call hung at its end, noting its imports)
    assert out.stdout.splitlines() == ["[0, 1, 4]", "child [0, 1, 4] 0", "parent 0 [0, 1, 4]"], (
        out.stdout + out.stderr
    )


GENERATOR_SCRIPT = """
import os, sys
import numpy as np
from picklepool import Parallel, delayed

def f(i, a):
    return i + int(a[0])

if __name__ == "__main__":
    backend, how = sys.argv[1], sys.argv[2]
    a = np.ones(300_000)  # through the call's shared-memory folder
    g = Parallel(n_jobs=2, backend=backend, return_as="generator", max_nbytes="1M", pre_dispatch=4)(
        delayed(f)(i, a) for i in range(40)
    )
    assert next(g) == 1
    pid = os.fork()
    if pid == 0:
        if how == "read":
            try:
                list(g)  # (results already in this process before the fork may come first)
            except RuntimeError as exc:
                print(f"child: {exc}", flush=True)
            os._exit(0)
        if how == "close":
            g.close()
        else:
            del g
        sys.exit(0)  # atexit runs too
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), list(g) == list(range(2, 41)))
"""


@pytest.mark.parametrize("how", ["close", "del"])
def test_a_forked_child_closing_the_parents_generator_does_not_end_it_in_the_parent(how):
    # The child's close cancelled the call through the parent's shared cancel flag:
    # the parent's generator then ended after 1 or 2 more results, silently.
    out = run_python(GENERATOR_SCRIPT.replace("sys.argv[1], sys.argv[2]", f"'loky', {how!r}"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["0 True"], out.stderr


@pytest.mark.parametrize("backend", ["loky", "threading", "multiprocessing"])
def test_reading_the_parents_generator_in_a_forked_child_says_so(backend):
    # loky: a WorkerCrashedError blaming a segfault or the OOM killer; threading and
    # multiprocessing: the child waited for ever
    out = run_python(
        GENERATOR_SCRIPT.replace("sys.argv[1], sys.argv[2]", f"{backend!r}, 'read'"), timeout=120
    )
    assert out.returncode == 0, out.stderr
    child, parent = out.stdout.splitlines()
    assert "forked from process" in child and "make the call again in this process" in child, child
    assert parent == "0 True", out.stderr


def test_a_pending_executor_future_waited_for_in_a_forked_child_says_so(tmp_path):
    # Its call runs in the parent, whose manager thread completes the parent's copy: the
    # child's result() or exception() waited for ever (as the standard library's does).
    gate = str(tmp_path / "gate")
    out = run_python(
        f"""
        import os, signal, threading
        from picklepool import Executor

        def wait_for(path):
            while not os.path.exists(path):
                threading.Event().wait(0.01)
            return 6

        if __name__ == "__main__":
            ex = Executor(2)
            pending, done = ex.submit(wait_for, {gate!r}), ex.submit(abs, -4)
            assert done.result() == 4
            pid = os.fork()
            if pid == 0:
                signal.alarm(60)  # (waiting for ever, it would outlive the test)
                print("child", done.result(), flush=True)  # done before the fork: its result
                for method in (pending.result, pending.exception):
                    try:
                        method()
                    except RuntimeError as exc:
                        print(exc, flush=True)
                os._exit(0)
            os.waitpid(pid, 0)
            open({gate!r}, "w").close()
            print("parent", pending.result())
            ex.shutdown()
        """,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    child, result, exception, parent = out.stdout.splitlines()
    assert child == "child 4" and parent == "parent 6", out.stdout
    for line in (result, exception):
        assert line.startswith(
            "task 0 (the 1st call submitted to this Executor): __main__.wait_for(...) was "
        )
        assert "forked from while it was pending" in line and "new picklepool.Executor" in line


BLOCK_ARRAYS_SCRIPT = """
import os, signal, sys
import numpy as np
from picklepool import Parallel, delayed

def at(a, i):
    return float(a[i])

if __name__ == "__main__":
    a = np.arange(100_000, dtype=float)  # through the block's shared argument folder
    with Parallel(n_jobs=2, max_nbytes="1K") as p:
        first = p(delayed(at)(a, i) for i in range(3))
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # a hang ends the child (status -14), not left behind
            print("child", p(delayed(at)(a, i) for i in range(3)), flush=True)
            sys.exit(0)  # the block's end, then atexit, in the child
        _, status = os.waitpid(pid, 0)
        print("parent", first, os.waitstatus_to_exitcode(status), p(delayed(at)(a * 2, i) for i in range(3)))
"""


@pytest.mark.timeout(120)
def test_a_with_blocks_end_in_a_forked_child_leaves_the_parents_argument_folder():
    # The child's end of the block removed the block's argument folder, the parent's:
    # the parent's next call with a large array in the block failed with "PicklingError:
    # tasks 0..0: [Errno 2] No such file or directory: '/dev/shm/picklepool-...-args-...'"
    out = run_python(BLOCK_ARRAYS_SCRIPT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["child [0.0, 1.0, 2.0]", "parent [0.0, 1.0, 2.0] 0 [0.0, 2.0, 4.0]"], (
        out.stdout + out.stderr
    )
