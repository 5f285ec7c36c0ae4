"""Direct lanes (``executor.lanes``): one-batch calls skip loky's queues, and nothing else waits.

A lane is a loky job that never ends on its own while batches keep coming
(``LANE_IDLE`` is raised to an hour here): anything that needed the workers back
and did not get them would hang until pytest-timeout, not pass slowly.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection

import psutil
import pytest

import picklepool
from picklepool import Parallel, delayed, lokycompat
from picklepool.errors import TaskExitError, WorkerCrashedError
from picklepool.executor import lanes, pool, reaper
from tests.executor.crash_cases import KINDS, PROCESS_KILLERS, act

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def _lanes_stay(monkeypatch):
    monkeypatch.setattr(lanes, "LANE_IDLE", 3600.0)
    picklepool.shutdown()
    yield
    picklepool.shutdown()


def in_lane(x: int) -> tuple[int, bool]:
    """*x*, and whether this task runs inside a lane's job (``workers.lane.serve``)."""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "serve" and frame.f_globals.get("__name__") == "picklepool.workers.lane":
            return x, True
        frame = frame.f_back
    return x, False


def crash_task(kind: str) -> int:
    act(kind)
    return 0


def _one(fn, *args, **kwargs):
    return Parallel(n_jobs=2, **kwargs)(delayed(fn)(*args) for _ in range(1))[0]


def _open_lanes() -> None:
    """A one-task call on an idle pool without lanes opens them; wait until both are."""
    lanes.settle()  # lanes given back before: their jobs have ended
    assert _one(in_lane, 0) == (0, False)
    box = lanes._by_executor[pool._shared]
    with box._cond:
        assert box._cond.wait_for(lambda: len(box._idle) == 2, timeout=60)


def test_one_task_calls_after_the_first_run_in_lanes_with_the_same_results():
    _open_lanes()
    assert [_one(in_lane, i) for i in range(20)] == [(i, True) for i in range(20)]


def test_a_call_of_many_batches_takes_the_workers_back_and_loses_nothing():
    _open_lanes()
    _one(in_lane, 1)
    out = Parallel(n_jobs=2, batch_size=1)(delayed(in_lane)(i) for i in range(50))
    assert [x for x, _ in out] == list(range(50))
    _open_lanes()  # a small call opens them again
    assert _one(in_lane, 3) == (3, True)


def test_a_batch_that_finds_every_lane_busy_goes_through_loky_once_they_are_released():
    _open_lanes()
    with multiprocessing.Manager() as manager:
        go = manager.Event()
        executor = pool._shared

        def release_when_given_back() -> None:  # the third batch released the lanes: let them finish
            while lanes.is_open(executor):
                threading.Event().wait(0.001)
            go.set()

        watcher = threading.Thread(target=release_when_given_back)
        watcher.start()
        calls = (delayed(wait_in_lane)(i, go if i < 2 else None) for i in range(3))
        out = Parallel(n_jobs=2, batch_size=1)(calls)
        watcher.join()
    assert out == [(0, True), (1, True), (2, False)]


def wait_in_lane(x: int, go) -> tuple[int, bool]:
    if go is not None:
        go.wait()
    return in_lane(x)


def test_calls_of_a_batch_per_worker_at_most_open_and_use_the_lanes():
    _open_lanes()
    two = Parallel(n_jobs=2, batch_size=1)
    for _ in range(5):
        assert two(delayed(in_lane)(i) for i in range(2)) == [(0, True), (1, True)]
    assert [x for x, _ in two(delayed(in_lane)(i) for i in range(3))] == [0, 1, 2]


def test_a_call_with_a_timeout_an_executor_and_a_resize_take_the_workers_back():
    _open_lanes()
    assert _one(in_lane, 1) == (1, True)
    assert _one(in_lane, 2, timeout=30) == (2, False)
    _open_lanes()
    with picklepool.Executor(max_workers=2) as ex:
        assert ex.submit(in_lane, 3).result() == (3, False)
    _open_lanes()
    assert Parallel(n_jobs=3)(delayed(in_lane)(i) for i in range(6))[5][0] == 5


def test_shutdown_with_open_lanes_stops_the_workers_without_killing_them(capfd):
    _open_lanes()
    assert _one(in_lane, 1) == (1, True)
    picklepool.shutdown(wait=True)
    assert "did not stop" not in capfd.readouterr().err


def test_calls_from_several_threads_share_the_lanes_and_fall_back_to_loky():
    _open_lanes()
    start = threading.Barrier(4)
    results: dict[int, list[tuple[int, bool]]] = {}

    def caller(k: int) -> None:
        start.wait()
        results[k] = [_one(in_lane, 100 * k + i) for i in range(25)]

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {k: [x for x, _ in v] for k, v in results.items()} == {
        k: [100 * k + i for i in range(25)] for k in range(4)
    }


@pytest.mark.parametrize("kind", KINDS)
def test_a_failure_in_a_lane_is_reported_as_on_loky_and_the_next_call_works(kind):
    _open_lanes()
    with pytest.raises(BaseException) as info:
        _one(crash_task, kind)
    error = info.value
    expected = {
        "raise": ValueError,
        "sys_exit": TaskExitError,
        "interrupt": TaskExitError,
    }.get(kind, WorkerCrashedError if kind in PROCESS_KILLERS else Exception)
    assert isinstance(error, expected), repr(error)
    text = f"{error} {getattr(error, '__notes__', '')}"
    assert "task 0" in text and "crash_task" in text, text
    assert _one(in_lane, 7)[0] == 7


def test_a_lane_batch_sees_the_parents_state_of_now(tmp_path, monkeypatch):
    _open_lanes()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path / "extra")])
    assert _one(_state) == (str(tmp_path), str(tmp_path / "extra"), (0, True))


def _state() -> tuple[str, str, tuple[int, bool]]:
    return os.getcwd(), sys.path[-1], in_lane(0)


# -- the lanes object on its own: jobs are threads here (a lane's job is any executor's) --


def _pow_batch() -> bytes:
    return pickle.dumps((pow, (2, 5)), protocol=pickle.HIGHEST_PROTOCOL)


@pytest.mark.parametrize("watch", ["epoll", "poll", "wait"])
def test_the_reader_thread_answers_every_lane_and_ends_with_them_whatever_its_watch(monkeypatch, watch):
    """The reader's watch (lanes._Poller): one epoll or poll object kept across waits, or,
    where neither exists, multiprocessing's wait; lanes that end leave it."""
    if watch != "epoll":
        monkeypatch.delattr(lanes.select, "epoll", raising=False)
    if watch == "wait":
        monkeypatch.delattr(lanes.select, "poll")
    before = set(os.listdir("/proc/self/fd"))
    with ThreadPoolExecutor(2) as workers:
        box = lanes.Lanes(workers, 2, "", 3600.0)
        assert [box._poller._epoll is not None, box._poller._poll is not None] == [
            watch == "epoll",
            watch == "poll",
        ]
        with box._cond:
            assert box._cond.wait_for(lambda: len(box._idle) == 2, timeout=30)
        held = [box.submit(pickle.dumps((pow, (2, 10)), protocol=pickle.HIGHEST_PROTOCOL))]
        for k in range(6):  # the other lane meanwhile, one batch at a time
            fut = box.submit(pickle.dumps((pow, (2, k)), protocol=pickle.HIGHEST_PROTOCOL))
            assert fut is not None and fut.result(timeout=30) == 2**k
        assert held[0] is not None and held[0].result(timeout=30) == 1024
        box.release()
        assert sum(job.result(timeout=30) for job in box._jobs) == 7  # batches served
        box._thread.join(30)
        assert not box._thread.is_alive()
        assert not [x for x in box._poller._objs.values() if isinstance(x, lanes._Lane)]
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_batch_sent_as_a_lane_reaches_its_idle_time_is_answered_or_goes_through_loky(monkeypatch):
    """The lane's idle end and a batch written to it at that moment: never a lost batch."""
    expired, sent = threading.Event(), threading.Event()
    box: list[lanes.Lanes] = []
    real_poll = Connection.poll

    def poll(self, timeout=0.0):  # the worker's end of a lane
        ready = real_poll(self, timeout)
        if not ready and timeout:  # its idle time is over in the worker: hold it there
            expired.set()
            with box[0]._cond:
                box[0]._cond.notify_all()
            sent.wait(30)
        return ready

    monkeypatch.setattr(Connection, "poll", poll)
    with ThreadPoolExecutor(1) as workers:
        box.append(lanes.Lanes(workers, 1, "", 0.01))
        with box[0]._cond:
            assert box[0]._cond.wait_for(lambda: box[0]._lanes, 30)
            assert box[0]._cond.wait_for(lambda: expired.is_set() or not box[0]._idle, 30)
        fut = box[0].submit(_pow_batch())
        sent.set()
        assert fut is None or fut.result(timeout=30) == 32
        box[0].release()
    box[0]._thread.join(30)


def test_a_lane_answers_while_another_lane_has_not_connected_yet(monkeypatch):
    monkeypatch.setattr(lanes, "CONNECT_DEADLINE", 3600.0)
    with ThreadPoolExecutor(1) as workers:  # the second lane's job waits for the first's end
        box = lanes.Lanes(workers, 2, "", 3600.0)
        fut = box.submit(_pow_batch())
        assert fut is not None
        try:
            assert fut.result(timeout=30) == 32
        finally:
            box.release()
    box._thread.join(30)


def test_lanes_that_cannot_submit_their_jobs_leave_no_socket_pipe_or_job_behind():
    class Refusing:  # shut down by another thread after the first job
        def __init__(self) -> None:
            self.pool = ThreadPoolExecutor(1)
            self.jobs: list[Future] = []

        def submit(self, fn, *args):
            if self.jobs:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self.jobs.append(self.pool.submit(fn, *args))
            return self.jobs[0]

    before = set(os.listdir("/proc/self/fd"))
    refusing = Refusing()
    with pytest.raises(RuntimeError):
        lanes.Lanes(refusing, 2, "", 3600.0)
    assert refusing.jobs[0].result(timeout=30) == 0  # its job found no one to serve
    refusing.pool.shutdown()
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_failure_of_the_reader_thread_fails_the_batches_in_lanes_and_ends_their_jobs(monkeypatch):
    def broken(self, lane):
        raise MemoryError

    monkeypatch.setattr(lanes.Lanes, "_read", broken)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    with ThreadPoolExecutor(1) as workers:
        box = lanes.Lanes(workers, 1, "", 3600.0)
        fut = box.submit(_pow_batch())
        assert fut is not None
        with pytest.raises(BrokenProcessPool):
            fut.result(timeout=30)
        assert box._jobs[0].result(timeout=30) == 1
    assert not box.busy()


_copies: list[int] = []


def copy_lane_socket() -> int:
    """What a process a task forks holds: a copy of its worker's lane socket."""
    frame = sys._getframe()
    while frame.f_code.co_name != "serve":
        frame = frame.f_back
    _copies.append(os.dup(frame.f_locals["conn"].fileno()))
    return len(_copies)


def test_a_lane_ends_for_the_parent_though_a_process_a_task_forked_holds_its_socket():
    with ThreadPoolExecutor(1) as workers:
        box = lanes.Lanes(workers, 1, "", 3600.0)
        fut = box.submit(pickle.dumps((copy_lane_socket, ())))
        assert fut is not None and fut.result(timeout=30) == 1
        box.release()
        assert box._jobs[0].result(timeout=30) == 1
        box._thread.join(30)
        try:
            assert not box._thread.is_alive()  # else a resize waits for it (release_and_wait)
        finally:
            os.close(_copies.pop())
    box._thread.join(30)


_HOARD: list[bytes] = []


def limit_leaks_here(i: int, fifos: tuple[str, str]) -> int:
    """In this worker: loky's leak check at every job, past 8 MB of growth. Returns once the
    other task (*i* 0 and 1) runs too: two FIFOs, opened in an order that meets."""
    import loky.process_executor as pe

    pe._MEMORY_LEAK_CHECK_DELAY, pe._MAX_MEMORY_LEAK_SIZE = 0.0, 8 << 20
    first, second = fifos
    with open(first, "w" if i == 0 else "r"), open(second, "r" if i == 0 else "w"):
        pass
    return os.getpid()


def leak(_: int) -> tuple[int, bool]:
    _HOARD.append(b"\1" * (32 << 20))  # kept: the worker grows by 32 MB a call
    return os.getpid(), in_lane(0)[1]


@pytest.mark.filterwarnings("ignore:A worker was restarted:UserWarning")  # loky's, expected here
def test_a_worker_leaking_memory_in_a_lane_is_replaced_as_by_lokys_own_check(tmp_path):
    # loky replaces a worker grown past LOKY_MAX_MEMORY_LEAK_SIZE between two jobs; a lane
    # is one job, so it checks between its batches and ends, and loky's check runs
    fifos = (str(tmp_path / "a"), str(tmp_path / "b"))
    for path in fifos:
        os.mkfifo(path)
    _open_lanes()
    pids = Parallel(n_jobs=2, batch_size=1)(delayed(limit_leaks_here)(i, fifos) for i in range(2))
    assert len(set(pids)) == 2  # both lanes, idle, took one each (each task waits for the other)
    pid, inside = _one(leak, 0)
    assert inside and pid in pids
    psutil.Process(pid).wait(timeout=60)  # replaced: it exits (it never did while in a lane)
    assert [x for x, _ in Parallel(n_jobs=2)(delayed(in_lane)(i) for i in range(4))] == [0, 1, 2, 3]


def leak_slowly(_: int) -> tuple[int, bool]:
    _HOARD.append(b"\1" * (32 << 20))
    threading.Event().wait(1.2)  # past loky's check delay (1 s) since the lane began
    return os.getpid(), in_lane(0)[1]


@pytest.mark.filterwarnings("ignore:A worker was restarted:UserWarning")  # loky's, expected here
def test_a_worker_leaking_memory_in_a_lane_that_is_its_first_job_is_replaced_too(monkeypatch):
    # loky checks from a worker's second job on: a worker whose lane was its first job
    # (it had run nothing before the lanes opened) left the lane and was never replaced
    monkeypatch.setenv("LOKY_MAX_MEMORY_LEAK_SIZE", str(16 << 20))  # read by the new workers
    _open_lanes()  # one call's task ran in one worker: the other's lane is its first job
    out = Parallel(n_jobs=2, batch_size=1)(delayed(leak_slowly)(i) for i in range(2))
    assert [inside for _, inside in out] == [True, True] and len({pid for pid, _ in out}) == 2
    for pid, _ in out:
        try:
            psutil.Process(pid).wait(timeout=30)
        except psutil.NoSuchProcess:  # gone already
            pass
        except psutil.TimeoutExpired:
            pytest.fail(f"worker {pid} grew past loky's leak limit in its lane and was not replaced")
    assert [x for x, _ in Parallel(n_jobs=2)(delayed(in_lane)(i) for i in range(4))] == [0, 1, 2, 3]


class Box(list):
    """A list whose freeing, in the worker, waits until the parent has the task's result."""

    def __init__(self, items, received) -> None:
        super().__init__(items)
        self.received = received

    def __reduce__(self):
        return Box, (list(self), self.received)

    def __del__(self) -> None:
        if os.getpid() != self.received.owner_pid:
            self.received.event.wait()  # never set before the answer arrives: a hang, so a failure


class _Received:
    def __init__(self, event) -> None:
        self.event, self.owner_pid = event, os.getpid()


def length(box: Box) -> int:
    return len(box)


def test_a_lane_frees_a_batchs_arguments_after_its_answer_is_sent():
    # as loky's worker loop (wire.FreedAfterSending): freeing a large argument takes time,
    # and the parent must not wait for it; freed first, this call would never return
    _open_lanes()
    with multiprocessing.Manager() as manager:
        received = _Received(manager.Event())
        box = Box(range(30_000), received)  # pickles past FREE_AFTER_SENDING: freed after the answer
        assert _one(length, box) == 30_000
        received.event.set()
        assert _one(in_lane, 1) == (1, True)  # the lane's worker went on
        del box


@pytest.mark.timeout(60)
def test_a_worker_that_dies_as_it_writes_a_result_fails_its_lanes_batch_and_the_pool_is_replaced(
    monkeypatch,
):
    # A worker that dies in the middle of a result it sends through loky's pipe leaves loky's
    # manager thread waiting for the rest: loky never reports the lane's job. The batch
    # failed with a bare TimeoutError (of the wait for that report), and the next call got
    # the stuck pool. Now the batch fails naming its task, and the pool is flagged broken.
    from tests.executor.crash_cases import half_a_result_then_die

    monkeypatch.setattr(lanes, "DEATH_REPORT_WAIT", 0.5)
    monkeypatch.setattr(reaper, "UNNOTICED_DEATH", 600.0)  # the lane sees it, not the reaper
    _open_lanes()
    stuck = pool._shared
    thread = lokycompat.manager_thread(stuck)
    with pytest.raises(
        WorkerCrashedError, match=r"while running task 0: half_a_result_then_die\(0\).*did not notice"
    ):
        _one(half_a_result_then_die, 0)
    assert _one(abs, -3) == 3
    assert pool._shared is not stuck
    thread.join(30)  # it ended (the interpreter's exit joins it: a stuck one hung the exit)
    assert not thread.is_alive()


# -- the calling thread reads its own reply (LaneFuture.read_here) ----------------------


def gate_then(path: str, x: int) -> tuple[int, bool]:
    """*x* (and whether in a lane) once the parent writes a byte to the FIFO at *path*."""
    with open(path, "rb") as fifo:
        assert fifo.read(1) == b"g"
    return in_lane(x)


def test_a_one_batch_call_reads_its_lanes_reply_in_the_calling_thread(monkeypatch, tmp_path):
    """No hand-over from the reader thread: the reply is taken where the call waits.

    Each task waits until its call has taken the lane from the reader thread (a FIFO
    written then), so that no reply can come before: the reader thread never has it.
    """
    _open_lanes()
    path = str(tmp_path / "gate")
    os.mkfifo(path)
    readers, gated = [], set()
    real_answered, real_detach = lanes.Lanes._answered, lanes._Poller.detach

    def answered(self, lane, data):
        readers.append(threading.current_thread())
        return real_answered(self, lane, data)

    def detach(self, fd):
        taken = real_detach(self, fd)
        call = len(readers)
        # once per call, by the calling thread (the reader thread detaches when it removes)
        if taken and call not in gated and threading.current_thread() is threading.main_thread():
            gated.add(call)
            with open(path, "wb") as fifo:  # waits for the task to open its end
                fifo.write(b"g")
        return taken

    monkeypatch.setattr(lanes.Lanes, "_answered", answered)
    monkeypatch.setattr(lanes._Poller, "detach", detach)
    assert [_one(gate_then, path, i) for i in range(5)] == [(i, True) for i in range(5)]
    assert readers == [threading.current_thread()] * 5


def _one_idle_lane(workers: ThreadPoolExecutor) -> lanes.Lanes:
    """Lanes over *workers* (threads) with their one lane connected and idle."""
    box = lanes.Lanes(workers, 1, "", 3600.0)
    with box._cond:
        assert box._cond.wait_for(lambda: len(box._idle) == 1, timeout=30)
    return box


class Interrupted(BaseException):
    """What a signal handler raises in the calling thread (Ctrl-C is one such)."""


def _go_once_taken(box: lanes.Lanes, monkeypatch) -> None:
    """Let :func:`gated` go once the calling thread has taken the lane from the reader thread.

    Its reply cannot come before: the reader thread never reads it (a batch answered at
    once was read there first now and then, and the test saw nothing of the call's path).
    """
    _go.clear()
    real = box._poller.detach

    def detach(fd):
        taken = real(fd)
        if threading.current_thread() is threading.main_thread():
            _go.set()
        return taken

    monkeypatch.setattr(box._poller, "detach", detach)


def test_a_call_interrupted_in_the_middle_of_its_reply_fails_that_batch_and_ends_its_lane(monkeypatch):
    real = lanes.receive
    with ThreadPoolExecutor(1) as workers:
        box = _one_idle_lane(workers)
        _go_once_taken(box, monkeypatch)
        fut = box.submit(pickle.dumps((gated, (32,))))
        assert isinstance(fut, lanes.LaneFuture)

        def half_read(fd):
            os.read(fd, 2)  # part of the message's header
            raise Interrupted

        monkeypatch.setattr(lanes, "receive", half_read)
        with pytest.raises(Interrupted):
            fut.read_here(30)
        monkeypatch.setattr(lanes, "receive", real)
        assert isinstance(fut.exception(timeout=30), BrokenProcessPool)
        assert "interrupted" in str(fut.exception())
        assert box._jobs[0].result(timeout=30) == 1  # the lane's job ended after its one batch
        box._thread.join(30)
        assert not box._thread.is_alive() and not box._lanes
    assert box.submit(_pow_batch()) is None  # no lane left: the next batch goes through loky


_go = threading.Event()


def gated(x: int) -> int:
    """*x*, once the test lets it go (lanes' jobs are threads here)."""
    assert _go.wait(30)
    return x


def test_a_call_interrupted_while_it_waits_leaves_the_reply_to_the_reader_thread():
    _go.clear()
    with ThreadPoolExecutor(1) as workers:
        box = _one_idle_lane(workers)
        fut = box.submit(pickle.dumps((gated, (7,))))
        assert fut is not None
        lane = box._lanes[0]

        class Poll:  # the calling thread's wait, interrupted before anything came
            def poll(self, timeout):
                raise Interrupted

        lane.wait = Poll()
        try:
            with pytest.raises(Interrupted):
                fut.read_here(30)
            assert lane.reader == "watched"
            _go.set()
            assert fut.result(timeout=30) == 7  # read by the reader thread
            again = box.submit(pickle.dumps((gated, (8,))))
            assert again is not None and again.result(timeout=30) == 8
        finally:
            _go.set()
            box.release()
        assert box._jobs[0].result(timeout=30) == 2


def test_a_reply_that_is_there_is_read_without_sleeping_in_poll():
    """The calling thread looks for the reply without sleeping first (``lanes.SPIN``): a reply
    already there is read by ``poll(0)``, and poll() is never given a timeout to sleep in."""
    _go.clear()
    released = threading.Event()  # the task let go, once the call looks for its reply
    with ThreadPoolExecutor(1) as workers:
        box = _one_idle_lane(workers)
        fut = box.submit(pickle.dumps((gated, (9,))))
        assert fut is not None
        lane = box._lanes[0]
        timeouts = []

        class Poll:  # the reply is there before the call looks: the task ran, its reply was sent
            def __init__(self, fd):
                self.real = select.poll()
                self.real.register(fd, select.POLLIN)

            def poll(self, timeout):
                if not released.is_set():
                    released.set()
                    _go.set()
                    ready = select.poll()
                    ready.register(lane.conn.fileno(), select.POLLIN)
                    assert ready.poll(30_000)  # the reply has come
                timeouts.append(timeout)
                return self.real.poll(timeout)

        lane.wait = Poll(lane.conn.fileno())
        try:
            assert fut.read_here(30)
            assert fut.result(timeout=0) == 9
            assert timeouts == [0]
        finally:
            _go.set()
            box.release()


def test_looking_without_sleeping_ends_after_its_time_or_when_the_descriptor_is_ready():
    r, w = os.pipe()
    try:
        waiter = select.poll()
        waiter.register(r, select.POLLIN)
        assert lanes._spin(waiter, 0.001) is False  # nothing came: it gives up (then sleeps in poll)
        os.write(w, b"x")
        assert lanes._spin(waiter, 0.0) is True  # ready: True at the first look, whatever its time
    finally:
        os.close(r)
        os.close(w)


class Alarm(Exception):
    """What a signal handler may raise in the calling thread: an ``Exception`` (a timeout's)."""


def test_an_exception_in_a_done_callback_run_by_the_calling_thread_reaches_the_caller(monkeypatch):
    """A signal handler raising while the calling thread runs the batch's done-callbacks:
    ``Future`` would log and drop it, and the call, whose callback queues the batch, would
    never see its batch (it waited for ever)."""
    with ThreadPoolExecutor(1) as workers:
        box = _one_idle_lane(workers)
        _go_once_taken(box, monkeypatch)
        fut = box.submit(pickle.dumps((gated, (32,))))
        assert isinstance(fut, lanes.LaneFuture)
        seen = []

        def interrupted(f):
            raise Alarm("the handler's")

        fut.add_done_callback(interrupted)
        fut.add_done_callback(seen.append)  # the others still run
        try:
            with pytest.raises(Alarm):
                while not fut.done():
                    fut.read_here(30)
            assert fut.result() == 32 and seen == [fut]
            again = box.submit(_pow_batch())  # the lane is idle again
            assert again is not None and again.result(timeout=30) == 32
        finally:
            box.release()


def test_a_call_interrupted_as_it_takes_the_lane_leaves_the_reply_to_the_reader_thread(monkeypatch):
    """A signal handler raising just after the lane left the reader thread's watch: the
    lane is given back (it stayed unwatched: its reply never read, its worker never free)."""
    _go.clear()
    with ThreadPoolExecutor(1) as workers:
        box = _one_idle_lane(workers)
        fut = box.submit(pickle.dumps((gated, (7,))))
        assert fut is not None
        real = box._poller.detach

        def detach_then_interrupted(fd):
            real(fd)
            monkeypatch.setattr(box._poller, "detach", real)  # once
            raise Interrupted

        monkeypatch.setattr(box._poller, "detach", detach_then_interrupted)
        try:
            with pytest.raises(Interrupted):
                fut.read_here(30)
            assert box._lanes[0].reader == "watched"
            _go.set()
            assert fut.result(timeout=30) == 7  # read by the reader thread
        finally:
            _go.set()
            box.release()
        assert box._jobs[0].result(timeout=30) == 1


def test_a_call_that_finds_its_lane_already_lost_waits_for_the_batchs_error(monkeypatch):
    """The reader thread saw the lane's worker close it (a task that closed the worker's file
    descriptors) and waits for loky's report on the worker; meanwhile the call came to read
    its batch's reply. It read the closed connection's number: ``OSError("handle is closed")``
    out of the call, naming no task, and the dead worker failed the next call instead."""
    import socket

    _go.clear()
    monkeypatch.setattr(lanes, "DEATH_REPORT_WAIT", 60.0)  # the reader waits for the job's end
    with ThreadPoolExecutor(1) as workers:
        box = _one_idle_lane(workers)
        fut = box.submit(pickle.dumps((gated, (7,))))
        assert fut is not None
        lane = box._lanes[0]
        try:
            # as the worker's end closing: the reader thread reads EOF on its next wait
            peer = socket.socket(fileno=os.dup(lane.conn.fileno()))
            peer.shutdown(socket.SHUT_RD)
            peer.close()
            with box._cond:
                assert box._cond.wait_for(lambda: not box._lanes, timeout=30)  # lost, its job not ended
            assert lane.conn.closed and not fut.done()
            assert fut.read_here(30) is False  # the reader thread has it: wait on the future
        finally:
            _go.set()
        assert isinstance(fut.exception(timeout=30), BrokenProcessPool)
        assert "closed its connection to the parent without answering" in str(fut.exception())


def _exit_in_first(i: int) -> int:
    if i == 0:
        os._exit(1)
    return i


def _loky_executors_alive() -> int:
    import gc

    from loky.process_executor import ProcessPoolExecutor

    gc.collect()
    return sum(isinstance(o, ProcessPoolExecutor) for o in gc.get_objects())


def test_a_pool_replaced_after_a_crash_is_freed_with_its_lanes():
    # lanes._by_executor's value held its own weak key: every pool a worker's death replaced
    # (after lanes had been opened on it) stayed alive, with its queues and a /dev/shm semaphore
    def crash_then_small_calls() -> None:
        with pytest.raises(WorkerCrashedError):
            Parallel(n_jobs=2)(delayed(_exit_in_first)(i) for i in range(2))
        for _ in range(3):
            assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(2)) == [0, 1]

    crash_then_small_calls()
    alive = _loky_executors_alive()
    for _ in range(4):
        crash_then_small_calls()
    assert _loky_executors_alive() <= alive
