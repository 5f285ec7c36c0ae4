"""``picklepool.shutdown()`` while other threads run calls: they end on their workers first,
no pool starts while the workers are stopped, and nothing is left when it returns.

It used to stop the pools under those calls: their next batches started a new pool from
the forkserver not stopped yet, ``forkserver.stop`` waited 5 s for that server, and
``shutdown()`` returned with the new workers running.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import pytest

import picklepool
from picklepool import Executor, Parallel, delayed, lokycompat
from picklepool.executor import forkserver, pool
from tests.conftest import run_python, running

HELD = 2  # the first tasks of a call wait for the test's go (held)


def held(i, fifos):
    """Task *i*: the first ``HELD`` tell the test they run, then wait for its go; ``(i, pid)``."""
    if i < HELD:
        with open(os.path.join(fifos, f"started-{i}"), "w"):
            pass
        with open(os.path.join(fifos, f"go-{i}")) as f:
            f.read()
    return i, os.getpid()


@pytest.fixture
def fifos(tmp_path):
    """A folder of FIFOs: ``started-i`` (task *i* runs), ``go-i`` (task *i* may return)."""
    for i in range(HELD):
        os.mkfifo(tmp_path / f"started-{i}")
        os.mkfifo(tmp_path / f"go-{i}")
    return str(tmp_path)


def wait_started(fifos):
    """Until the held tasks run (each opens its FIFO when it starts)."""
    for i in range(HELD):
        with open(os.path.join(fifos, f"started-{i}")) as f:
            f.read()


def let_go(fifos):
    """The held tasks return."""
    for i in range(HELD):
        with open(os.path.join(fifos, f"go-{i}"), "w"):
            pass


class Watch:
    """What a ``picklepool.shutdown()`` does: ``began`` is set once it waits for the calls of
    other threads (its debug line) or has begun to stop a pool; ``new_pools`` are the pools
    started while it ran."""

    def __init__(self) -> None:
        self.began = threading.Event()
        self.new_pools: list[object] = []
        self.inside = False


class _Began(logging.Handler):
    def __init__(self, began: threading.Event) -> None:
        super().__init__(logging.DEBUG)
        self.began = began

    def emit(self, record: logging.LogRecord) -> None:
        self.began.set()


@pytest.fixture
def watch(monkeypatch, caplog):
    seen = Watch()
    stop_pool, new_pool, shutdown_all = lokycompat.shutdown, pool._new, pool.shutdown_all

    def stopping(executor, kill):
        stop_pool(executor, kill)
        seen.began.set()

    def new(*args, **kwargs):
        executor = new_pool(*args, **kwargs)
        if seen.inside:
            seen.new_pools.append(executor)
        return executor

    def shutting_down(*args, **kwargs):
        seen.inside = True
        try:
            shutdown_all(*args, **kwargs)
        finally:
            seen.inside = False

    monkeypatch.setattr(lokycompat, "shutdown", stopping)
    monkeypatch.setattr(pool, "_new", new)
    monkeypatch.setattr(pool, "shutdown_all", shutting_down)
    caplog.set_level(logging.DEBUG, logger="picklepool.executor.ongoing")
    handler = _Began(seen.began)
    logger = logging.getLogger("picklepool.executor.ongoing")
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


def shut_down_while(fifos, watch):
    """``picklepool.shutdown()`` in a thread of its own while the held tasks run: they are let
    go once it waits or stops; returns once it has returned, with the forkserver's pid."""
    wait_started(fifos)
    server = forkserver._server.pid if forkserver._server is not None else None
    stopper = threading.Thread(target=picklepool.shutdown, name="stopper")
    stopper.start()
    watch.began.wait()
    let_go(fifos)
    stopper.join()
    return server


def assert_ended_on_the_first_workers(results, n, watch, server):
    """Every task ran on the workers of the held ones, no pool started while the shutdown
    ran, and neither those workers nor the forkserver runs after it."""
    assert [i for i, _ in results] == list(range(n))
    first = {pid for i, pid in results if i < HELD}
    assert {pid for _, pid in results} == first  # (they used to end on 2 new workers)
    assert watch.new_pools == []
    assert [pid for pid in first | {server} if running(pid)] == []
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]  # a new pool


def shut_down_during(call, fifos, watch):
    """Run *call* (6 ``held`` tasks, returning their results) in another thread, shut down
    while its held tasks run, and check it ended on its first workers."""
    out = {}
    caller = threading.Thread(target=lambda: out.update(results=call()))
    caller.start()
    server = shut_down_while(fifos, watch)
    caller.join()
    assert_ended_on_the_first_workers(out["results"], 6, watch, server)


@pytest.mark.timeout(120)
def test_shutdown_lets_a_call_of_another_thread_end_on_its_workers(fifos, watch):
    def call():
        return Parallel(n_jobs=2, batch_size=1, pre_dispatch=2)(delayed(held)(i, fifos) for i in range(6))

    shut_down_during(call, fifos, watch)


@pytest.mark.timeout(120)
def test_shutdown_lets_what_an_executor_was_given_end_on_its_workers(fifos, watch):
    ex = Executor(2)
    futures = [ex.submit(held, i, fifos) for i in range(12)]
    server = shut_down_while(fifos, watch)
    assert all(f.done() for f in futures)
    results = [f.result() for f in futures]
    ex.shutdown()
    assert_ended_on_the_first_workers(results, 12, watch, server)


@pytest.mark.timeout(120)
def test_shutdown_lets_a_joblib_call_of_another_thread_end_on_its_workers(fifos, watch):
    joblib = pytest.importorskip("joblib")
    picklepool.register_joblib_backend()

    def call():
        with joblib.parallel_config(backend="picklepool", n_jobs=2):
            return joblib.Parallel(batch_size=1, pre_dispatch=2)(
                joblib.delayed(held)(i, fifos) for i in range(6)
            )

    shut_down_during(call, fifos, watch)


@pytest.mark.timeout(120)
def test_shutdown_does_not_wait_for_a_generator_another_thread_left_unread():
    # a generator may never be read again: its sent batches finish, the rest run on a new
    # pool once it is read (waiting for its reader would hang this shutdown for ever)
    read_one, finish = threading.Event(), threading.Event()
    out = {}

    def reader():
        gen = Parallel(n_jobs=2, return_as="generator", batch_size=1, pre_dispatch=2)(
            delayed(abs)(-i) for i in range(6)
        )
        first = next(gen)
        read_one.set()
        finish.wait()
        out["results"] = [first, *gen]

    thread = threading.Thread(target=reader)
    thread.start()
    read_one.wait()
    picklepool.shutdown()
    finish.set()
    thread.join()
    assert out["results"] == [0, 1, 2, 3, 4, 5]


def stuck(i, fifos):
    """Task *i*: the first ``HELD`` tell the test they run, then never return."""
    if i < HELD:
        with open(os.path.join(fifos, f"started-{i}"), "w"):
            pass
        threading.Event().wait()
    return i


@pytest.mark.timeout(120)
def test_a_generators_tasks_killed_by_shutdown_name_the_shutdown_not_the_oom_killer(fifos, monkeypatch):
    # shutdown() waits EXIT_DEADLINE for a running task of a generator another thread reads,
    # then kills its worker: the reader's error blamed "the OOM killer ... or a kill -9"
    from picklepool.executor import reaper

    monkeypatch.setattr(reaper, "EXIT_DEADLINE", 0.2)
    out = {}

    def reader():
        gen = Parallel(n_jobs=2, return_as="generator", batch_size=1, pre_dispatch=2)(
            delayed(stuck)(i, fifos) for i in range(6)
        )
        try:
            out["results"] = list(gen)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            out["error"] = exc

    thread = threading.Thread(target=reader)
    thread.start()
    wait_started(fifos)
    picklepool.shutdown()
    thread.join()
    error = out["error"]
    assert isinstance(error, picklepool.WorkerCrashedError), error
    message = str(error)
    assert "killed by picklepool.shutdown()" in message, message
    assert "task 0: stuck(0" in message or "task 1: stuck(1" in message, message
    assert "OOM" not in message, message
    assert "read a return_as='generator' call to its end" in message, message
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


@pytest.mark.timeout(120)
@pytest.mark.skipif(sys.platform != "linux", reason="named semaphores in /dev/shm")
@pytest.mark.parametrize("how", ["error", "generator", "kill"])
def test_shutdown_leaves_no_semaphore_of_the_workers_picklepool_killed(how, tmp_path):
    # each loky worker has a semaphore of its own (its exit lock): the workers a failed call
    # killed (or a closed generator, or shutdown(kill=True)) stayed in multiprocessing's
    # list of children, which held that semaphore in /dev/shm after picklepool.shutdown().
    # And the leftovers of a cancelled call are killed at once by shutdown(), as at the next
    # call and at exit: they had 5 s, then a note on stderr for each "did not stop" worker
    fifo = str(tmp_path / "started")
    os.mkfifo(fifo)
    proc = run_python(
        f"""
        import gc, os, threading
        import picklepool
        from picklepool import Parallel, delayed

        def task(i, fifo):
            if i == 0:
                with open(fifo) as f:
                    f.read()  # task 1 runs
                if {how!r} == "error":
                    raise ValueError(i)
                return i
            if i == 1:
                with open(fifo, "w"):
                    pass
            threading.Event().wait()  # never returns: its worker is killed

        calls = (delayed(task)(i, {fifo!r}) for i in range(4))
        if {how!r} == "error":
            try:
                Parallel(n_jobs=2, batch_size=1)(calls)
            except ValueError:
                pass
        elif {how!r} == "generator":
            gen = Parallel(n_jobs=2, batch_size=1, return_as="generator")(calls)
            assert next(gen) == 0
            gen.close()
        else:
            done = threading.Event()
            def reader():
                try:
                    Parallel(n_jobs=2, batch_size=1)(calls)
                except picklepool.WorkerCrashedError:
                    done.set()
            thread = threading.Thread(target=reader)
            thread.start()
            with open({fifo!r}, "w"):  # (task 0 reads it: both run)
                pass
            picklepool.shutdown(kill=True)
            thread.join()
            assert done.is_set()
        picklepool.shutdown()
        gc.collect()
        left = [n for n in os.listdir("/dev/shm") if n.startswith(f"sem.loky-{{os.getpid()}}-")]
        assert left == [], left
        print("ok")
        """,
        timeout=110,
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "ok"), proc.stderr
    assert "did not stop" not in proc.stderr


@pytest.mark.timeout(120)
def test_a_shutdown_from_a_progress_callback_does_not_wait_for_its_own_call():
    stopped = []

    def progress(done, total):
        if not stopped:
            stopped.append(done)
            picklepool.shutdown()  # this thread's own call: not waited for

    results = Parallel(n_jobs=2, batch_size=1, progress=progress)(delayed(abs)(-i) for i in range(6))
    assert results == list(range(6))
    assert stopped


@pytest.mark.timeout(120)
def test_a_shutdown_from_an_executors_done_callback_does_not_wait_for_that_executor():
    with Executor(2) as ex:
        futures = [ex.submit(abs, -i) for i in range(8)]
        futures[0].add_done_callback(lambda _f: picklepool.shutdown())  # in its manager thread
        assert [f.result() for f in futures] == list(range(8))


@pytest.mark.timeout(120)
def test_a_pool_needed_while_the_workers_are_stopped_starts_after_the_stop(monkeypatch):
    from picklepool.executor import ongoing

    class Told(threading.Condition):
        """Sets ``waiting`` when a thread waits on it (the call, for the stop's end)."""

        def __init__(self) -> None:
            super().__init__()
            self.waiting = threading.Event()

        def wait(self, timeout=None):
            self.waiting.set()
            return super().wait(timeout)

    told = Told()
    monkeypatch.setattr(ongoing, "_changed", told)
    made, new_pool = [], pool._new

    def new(*args, **kwargs):
        made.append(new_pool(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(pool, "_new", new)
    out = {}

    def call():
        out["results"] = Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3))

    caller = threading.Thread(target=call)
    with ongoing.stopping():  # as picklepool.shutdown() stops the pools
        caller.start()
        told.waiting.wait()  # the call waits for the stop's end
        assert made == []  # its pool would be the forkserver's, about to be stopped
    caller.join()
    assert out["results"] == [0, 1, 2]
    assert len(made) == 1


@pytest.mark.timeout(120)
def test_shutdown_in_an_atexit_handler_while_a_daemon_threads_call_runs_leaves_nothing():
    # Python's exit does not wait for daemon threads, and its hooks killed that call's
    # workers: the shutdown does not wait for it either, and leaves no process (the
    # forkserver the exit stopped without waiting is waited for)
    result = run_python(
        """
        import atexit, os, tempfile, threading
        import psutil
        import picklepool
        from picklepool import Parallel, delayed

        folder = tempfile.mkdtemp()
        started, never = os.path.join(folder, "started"), os.path.join(folder, "never")
        os.mkfifo(started)
        os.mkfifo(never)

        def blocked(path, gate):
            with open(path, "w"):
                pass
            with open(gate) as f:  # never opened for writing: runs until its worker is killed
                return f.read()

        def call():
            try:
                Parallel(n_jobs=2, batch_size=1)(delayed(blocked)(started, never) for _ in range(1))
            except Exception as exc:
                print(type(exc).__name__)

        def alive(proc):
            try:
                cmd = " ".join(proc.cmdline())
                return proc.status() != psutil.STATUS_ZOMBIE and "tracker" not in cmd
            except psutil.Error:
                return False

        def at_exit():
            picklepool.shutdown()
            print("left", [p.pid for p in psutil.Process().children(recursive=True) if alive(p)])

        if __name__ == "__main__":
            atexit.register(at_exit)
            threading.Thread(target=call, daemon=True).start()
            with open(started) as f:  # the call's task runs
                f.read()
        """,
        timeout=100,
    )
    assert result.returncode == 0, result.stderr
    assert "left []" in result.stdout.splitlines(), result.stdout
