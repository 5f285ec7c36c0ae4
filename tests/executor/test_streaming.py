"""Streamed batches (executor/streaming.py): a large list argument is unpickled in its
worker while the parent still pickles it (issue 17, item 4).

Results, identities and errors are those of a batch pickled whole; a worker that dies
mid-stream, or a parent that stops mid-stream, ends in the call's usual error, naming
the task, and never in a hang; no socket or call folder is left (the autouse fixture
of tests/conftest.py checks the call folders). Whether a batch was streamed is read
from the DEBUG record ``executor.streaming`` writes.
"""

from __future__ import annotations

import gc
import glob
import logging
import os
import pickle
import sys
import threading
import types
import weakref

import pytest

from picklepool import Executor, Parallel, PicklingError, WorkerCrashedError, delayed, lokycompat
from picklepool.errors import UnpicklingError
from picklepool.executor import lanes, pool, streaming
from picklepool.executor.session import session
from picklepool.pickler import register_pickler, unregister_pickler
from tests.custom_picklers import Zlibbed
from tests.fake_outbound import FakeOutbound, write_all

N = 200_000  # items: well above streaming.MIN_ITEMS


class OwnPickler(pickle.Pickler):
    """A registered pickle.Pickler subclass: its format is pickle's, so it streams."""


@pytest.fixture
def streamed(caplog):
    """``streamed()``: how many batches went through a stream since the test began
    (``streamed("broken")``: how many streams the worker's end broke)."""
    caplog.set_level(logging.DEBUG, logger=streaming.__name__)
    texts = {"done": "batch streamed to its worker", "broken": "broken ("}

    def count(what: str = "done") -> int:
        join_senders()  # a sender thread may still be saying it
        return sum(texts[what] in r.getMessage() for r in caplog.records)

    return count


def join_senders() -> None:
    """Wait for the sender threads of streams still being sent (they end with their stream)."""
    for thread in threading.enumerate():
        if thread.name.startswith("picklepool-stream-"):
            thread.join()


def warm(n_jobs: int = 2) -> None:
    """Start the workers: a batch streams only to a worker that is up and idle."""
    Parallel(n_jobs=n_jobs)(delayed(abs)(-i) for i in range(n_jobs))


def worker_pids() -> set[int]:
    """The pids of the shared warm pool's workers."""
    return set(lokycompat.worker_processes(pool._shared))


def left_sockets() -> list[str]:
    join_senders()
    return glob.glob(os.path.join(session().path, "call-*", "s-*"))


# -- run in workers -----------------------------------------------------------------------


def summary(*args, **kwargs):
    """What a task saw: types, lengths, and which arguments are one object."""
    values = list(args) + [kwargs[k] for k in sorted(kwargs)]
    same = [[j for j, w in enumerate(values) if w is v] for v in values]
    return [(type(v).__name__, len(v) if hasattr(v, "__len__") else v) for v in values], same


def identities(big, holder):
    """The nested references to *big* in *holder*, as identities in the worker."""
    return holder["a"] is big, holder["b"][0] is big, holder["b"][1] is big


def self_reference(cycle):
    return cycle[-1] is cycle, len(cycle)


def head(values, k=3):
    return list(values)[:k], len(values)


# -- correctness --------------------------------------------------------------------------


@pytest.mark.parametrize("pickler", ["pickle", "cloudpickle", "hybrid", "own"])
def test_each_streaming_pickler_gives_what_a_whole_batch_gives(pickler, streamed):
    if pickler == "own":
        register_pickler("own", OwnPickler)
    try:
        warm()
        big = list(range(N))
        got = Parallel(n_jobs=2, pickler=pickler)(delayed(head)(big) for _ in range(1))
        assert got == [([0, 1, 2], N)]
        assert streamed() == 1
    finally:
        if pickler == "own":
            unregister_pickler("own")
    assert left_sockets() == []


def test_a_pickler_with_a_format_of_its_own_is_not_streamed_and_still_works(streamed):
    assert Zlibbed.streams is False
    register_pickler("zlibbed", Zlibbed)
    try:
        warm()
        big = list(range(N))
        assert Parallel(n_jobs=2, pickler="zlibbed")(delayed(head)(big) for _ in range(1)) == [([0, 1, 2], N)]
        assert streamed() == 0
    finally:
        unregister_pickler("zlibbed")


@pytest.mark.parametrize(
    "value",
    [
        list(range(N)),
        tuple(range(N)),
        {i: str(i) for i in range(N)},
        set(range(N)),
        frozenset(range(N)),
        [str(i) for i in range(N)],
    ],
    ids=["list", "tuple", "dict", "set", "frozenset", "strings"],
)
def test_containers_arrive_as_the_same_types_and_contents(value, streamed):
    warm()
    (got,) = Parallel(n_jobs=2)(delayed(summary)(value) for _ in range(1))
    assert got == ([(type(value).__name__, len(value))], [[0]])
    (echo,) = Parallel(n_jobs=2)(
        delayed(sorted if isinstance(value, (set, frozenset)) else list)(value) for _ in "x"
    )
    assert echo == (sorted(value) if isinstance(value, (set, frozenset)) else list(value))
    assert streamed() == 2


def test_the_same_list_twice_arrives_as_one_object_as_pickle_makes_it(streamed):
    warm()
    big = list(range(N))
    other = list(range(N))
    (got,) = Parallel(n_jobs=2)(delayed(summary)(big, other, big, k=big) for _ in range(1))
    kinds, same = got
    assert kinds == [("list", N)] * 4
    assert same == [[0, 2, 3], [1], [0, 2, 3], [0, 2, 3]]  # big is one object, other another
    assert streamed() == 1


def test_nested_references_to_a_large_argument_stay_one_object(streamed):
    warm()
    big = list(range(N))
    holder = {"a": big, "b": [big, big]}
    assert Parallel(n_jobs=2)(delayed(identities)(big, holder) for _ in range(1)) == [(True, True, True)]
    cycle = list(range(N))
    cycle.append(cycle)
    assert Parallel(n_jobs=2)(delayed(self_reference)(cycle) for _ in range(1)) == [(True, N + 1)]
    assert streamed() == 2


def test_a_large_list_inside_a_small_argument_or_a_keyword_streams(streamed):
    warm()
    big = list(range(N))
    assert Parallel(n_jobs=2)(delayed(summary)({"data": big}) for _ in range(1))[0][0] == [("dict", 1)]
    assert Parallel(n_jobs=2)(delayed(summary)(values=big) for _ in range(1))[0][0] == [("list", N)]
    assert streamed() == 2


def test_an_array_next_to_a_large_list_still_goes_through_shared_memory(streamed):
    np = pytest.importorskip("numpy")
    warm()
    arr = np.arange(200_000, dtype=np.float64)  # 1.6 MB: above max_nbytes

    def task(a, values):
        return type(a).__name__, float(a.sum()), len(values)

    got = Parallel(n_jobs=2, max_nbytes="64K")(delayed(task)(arr, list(range(N))) for _ in range(1))
    assert got == [("memmap", float(arr.sum()), N)]
    assert streamed() == 1


def test_small_arguments_and_batches_of_many_tasks_are_not_streamed(streamed):
    warm()
    small = list(range(streaming.MIN_ITEMS - 1))
    assert Parallel(n_jobs=2)(delayed(len)(small) for _ in range(1)) == [len(small)]
    big = list(range(N))
    n = streaming.MAX_TASKS + 1
    # 2n tasks: one full pull of batch_size * n_jobs, two batches of n (joblib's rule splits a
    # short last pull finer)
    assert Parallel(n_jobs=2, batch_size=n)(delayed(len)(big) for _ in range(2 * n)) == [N] * (2 * n)
    assert streamed() == 0


def test_worth_streaming_looks_at_arguments_keywords_and_one_level_down():
    big, small = list(range(streaming.MIN_ITEMS)), [1, 2]
    assert streaming.worth_streaming([(1, big)], None)
    assert streaming.worth_streaming([(1,)], [{"x": big}])
    assert streaming.worth_streaming([((small, {"k": big}),)], None) is False  # two levels down
    assert streaming.worth_streaming([({"k": big},)], None)
    assert streaming.worth_streaming([big], None, single_arg=True)
    assert not streaming.worth_streaming([(small,)] * 2, None)
    assert not streaming.worth_streaming([(big,)] * (streaming.MAX_TASKS + 1), None)
    assert not streaming.worth_streaming([("x" * streaming.MIN_ITEMS,)], None)  # strings copy at C speed
    assert not streaming.worth_streaming([1, "ab"], [7, None])  # not calls: the worker says so


def test_threading_and_sequential_backends_pass_the_object_itself(streamed):
    big = list(range(N))
    for backend in ("threading", "sequential"):
        got = Parallel(n_jobs=2, backend=backend)(delayed(lambda v: v is big)(big) for _ in range(2))
        assert got == [True, True]
    assert streamed() == 0


def test_an_executor_submission_streams(streamed):
    warm()
    big = list(range(N))
    with Executor(max_workers=2) as ex:
        assert ex.submit(head, big).result() == ([0, 1, 2], N)
    assert streamed() == 1


# -- failures -------------------------------------------------------------------------------


class DiesWhenLoaded:
    """Unpickled in the worker as ``os._exit(70)``: the worker dies while it reads the stream."""

    def __reduce__(self):
        return os._exit, (70,)


class CannotPickle:
    def __reduce__(self):
        raise TypeError("this object refuses to be pickled")


class InterruptsPickling:
    def __reduce__(self):
        raise KeyboardInterrupt


def consume(values):
    return len(values)


def test_a_worker_killed_mid_stream_gives_worker_crashed_error_naming_the_task(streamed):
    warm()
    # Dies at the first frame; the rest (~5 MB) cannot fit in the socket's buffer, so
    # the parent is still sending when the worker dies.
    values = [DiesWhenLoaded(), *range(1_000_000)]
    with pytest.raises(WorkerCrashedError) as info:
        Parallel(n_jobs=2)(delayed(consume)(values) for _ in range(1))
    message = str(info.value)
    assert "task 0: consume(" in message
    assert "while unpickling" in message
    assert streamed("broken") == 1
    assert left_sockets() == []
    assert Parallel(n_jobs=2)(delayed(consume)(list(range(N))) for _ in range(1)) == [
        N
    ]  # the next call works


def test_an_argument_that_fails_mid_stream_names_its_path_and_the_worker_survives(streamed):
    warm()
    pids = worker_pids()
    values = [*range(N), CannotPickle(), *range(N)]
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2)(delayed(consume)(values) for _ in range(1))
    message = str(info.value)
    assert "task 0: consume(" in message
    assert "args[0]" in message
    assert "this object refuses to be pickled" in message
    assert left_sockets() == []
    # the worker that read the truncated stream replied with a failure and stays in the pool
    assert Parallel(n_jobs=2)(delayed(consume)(list(range(N))) for _ in range(1)) == [N]
    assert worker_pids() == pids


def test_a_parent_interrupted_mid_stream_raises_at_once_and_the_next_call_works(streamed):
    warm()
    values = [*range(N), InterruptsPickling(), *range(N)]
    with pytest.raises(KeyboardInterrupt):
        Parallel(n_jobs=2)(delayed(consume)(values) for _ in range(1))
    assert left_sockets() == []
    assert Parallel(n_jobs=2)(delayed(consume)(list(range(N))) for _ in range(1)) == [N]


def test_a_worker_that_fails_before_reading_does_not_keep_the_parent_waiting(streamed, monkeypatch):
    # The function's module exists only in this process, so the worker cannot rebuild
    # the function and replies without connecting: the parent stops waiting when the
    # batch's future ends, and raises the worker's error.
    only_here = types.ModuleType("only_in_the_parent")

    def task(values):
        return len(values)

    task.__module__, task.__qualname__ = only_here.__name__, "task"
    only_here.task = task
    monkeypatch.setitem(sys.modules, only_here.__name__, only_here)
    warm()
    with pytest.raises(UnpicklingError, match="only_in_the_parent"):
        Parallel(n_jobs=2, pickler="pickle")(delayed(task)(list(range(N))) for _ in range(1))
    assert streamed() == 0
    assert left_sockets() == []


# -- the parent's side, piece by piece ----------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 10**6], ids=["at-once", "after-some-frames", "after-the-dump"])
def test_what_is_pickled_before_the_worker_connects_is_sent_first_in_order(k):
    import socket
    import threading

    from picklepool.pickler.stream import StreamRef
    from picklepool.workers.streams import Reader

    value = {"values": list(range(300_000)), "blob": bytearray(b"z" * 200_000)}
    a, b = socket.socketpair()
    got = []
    reader = threading.Thread(target=lambda: got.append(pickle.load(Reader(b, StreamRef("unused")))))
    reader.start()
    fake = FakeOutbound(a, k)
    writer = streaming.Writer(fake, lambda: None)
    pickle.Pickler(writer, protocol=5).dump(value)
    value["blob"][:3] = b"new"  # changed once dumped: what was pickled is sent
    write_all(writer, fake)
    reader.join()
    b.close()
    value["blob"][:3] = b"zzz"
    assert got == [value]
    assert (writer.held > 0) == (k > 1)
    assert fake.log == [] or fake.log[0].startswith("streamed")


@pytest.fixture
def outbound(tmp_path):
    out = streaming.Outbound(str(tmp_path), 1 << 20, "c")
    yield out
    out.close()


def test_outbound_gives_up_at_once_when_asked_not_to_wait(outbound):
    assert outbound.accept(lambda: None, wait=0) is None
    assert os.path.exists(outbound.path)


def test_outbound_sends_nothing_for_a_batch_that_ended_first(outbound, caplog):
    from concurrent.futures import Future

    caplog.set_level(logging.DEBUG, logger=streaming.__name__)
    fut: Future = Future()
    fut.set_result(b"failure")  # the worker replied without connecting
    dumped = []
    assert outbound.send(fut, lambda writer: dumped.append(writer) or [], lambda: None) == []
    assert dumped == []
    assert "ended before its worker read it" in caplog.text


def test_outbound_stops_waiting_when_the_pool_stalls(outbound, monkeypatch):
    monkeypatch.setattr(streaming, "POLL", 0.01)
    looks = []

    def look():
        looks.append(1)
        return "the pool is gone" if len(looks) == 3 else None

    with pytest.raises(streaming.StreamBroken, match="the pool is gone"):
        outbound.accept(look, wait=None)
    assert len(looks) == 3


def test_outbound_close_removes_the_socket_and_ignores_a_late_future(outbound):
    from concurrent.futures import Future

    fut: Future = Future()
    fut.add_done_callback(outbound._wake)
    outbound.close()
    assert not os.path.exists(outbound.path)
    fut.set_result(None)  # its callback must not write to the closed pipe
    outbound.close()  # twice is fine


class _Reply:
    """A batch's reply, whose life a weak reference shows."""


def test_a_closed_stream_lets_its_batchs_future_and_reply_go_by_reference_counting(outbound):
    # the future's callback holds the stream and the stream held the future: a cycle that
    # kept the future's reply (a streamed task's result) until the GC ran
    from concurrent.futures import Future

    fut: Future = Future()
    outbound._fut = fut  # (as send() ties them)
    fut.add_done_callback(outbound._wake)
    reply = _Reply()
    gone = weakref.ref(reply)
    fut.set_result(reply)
    del reply
    gc.disable()
    try:
        outbound.close()
        del fut
        assert gone() is None
    finally:
        gc.enable()


def test_a_batch_streams_only_to_an_idle_worker_with_a_core_to_spare():
    assert streaming.room_for_one((2, 0), cores=2)
    assert not streaming.room_for_one((2, 1), cores=2)  # the parent and two workers on two cores
    assert streaming.room_for_one((4, 2), cores=8)
    assert not streaming.room_for_one((4, 4), cores=8)  # every worker busy: pickled ahead
    assert not streaming.room_for_one((0, 0), cores=8)  # workers still starting
    assert not streaming.room_for_one(None, cores=8)  # a backend that cannot tell


def test_batches_after_the_first_of_a_busy_pool_are_pickled_whole(streamed):
    warm()
    values = [list(range(N)) for _ in range(4)]
    assert Parallel(n_jobs=2, batch_size=1)(delayed(len)(v) for v in values) == [N] * 4
    assert 1 <= streamed() <= 4


def test_a_function_that_cannot_be_pickled_leaves_no_socket_or_descriptor(streamed):
    warm()
    lanes.settle()  # the lanes warm()'s small call opened (executor.lanes): their sockets go now
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(PicklingError):
        Parallel(n_jobs=2, pickler="pickle")(delayed(lambda v: len(v))(list(range(N))) for _ in range(1))
    assert left_sockets() == []
    assert len(os.listdir("/proc/self/fd")) == before
    assert streamed() == 0


def test_streamed_calls_leave_no_descriptor_or_thread_behind(streamed):
    warm()
    big = list(range(N))
    Parallel(n_jobs=2)(delayed(len)(big) for _ in range(1))
    join_senders()
    lanes.settle()  # warm()'s lanes (executor.lanes), given back by the streamed call: their sockets go
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        assert Parallel(n_jobs=2)(delayed(len)(big) for _ in range(1)) == [N]
    assert streamed() == 6
    assert len(os.listdir("/proc/self/fd")) == before
    assert not [t for t in threading.enumerate() if t.name.startswith("picklepool-stream-")]
