"""joblib's generator semantics: dispatch at the call, one call at a time, clean early close."""

from __future__ import annotations

import os
import re
import threading
import warnings

import pytest

import picklepool
from picklepool import Parallel, delayed


def _write_to(path, i):
    with open(path, "w") as f:
        f.write(str(i))
    return i


def _touch(folder, i):
    open(os.path.join(folder, str(i)), "w").close()
    return i


def test_tasks_start_at_the_call_threads():
    started = threading.Event()
    gen = Parallel(n_jobs=2, backend="threading", return_as="generator")(
        delayed(started.set)() for _ in range(3)
    )
    assert started.wait(30)  # before any next()
    assert list(gen) == [None] * 3


def test_tasks_start_at_the_call_processes(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    gen = Parallel(n_jobs=2, return_as="generator")(delayed(_write_to)(fifo, i) for i in range(1))
    with open(fifo) as f:  # blocks until the task, already running, writes
        assert f.read() == "0"
    assert list(gen) == [0]


def test_a_running_instance_refuses_a_second_call():
    p = Parallel(n_jobs=2, backend="threading", return_as="generator")
    gen = p(delayed(abs)(-i) for i in range(4))
    with pytest.raises(RuntimeError, match="This Parallel instance is already running"):
        p(delayed(abs)(-i) for i in range(4))
    assert list(gen) == [0, 1, 2, 3]
    assert list(p(delayed(abs)(-i) for i in range(2))) == [0, 1]  # done: callable again
    gen = p(delayed(abs)(-i) for i in range(2))
    del gen  # dropped unread: the instance is free again
    assert list(p(delayed(abs)(-i) for i in range(2))) == [0, 1]


def test_closing_a_generator_early_cancels_the_rest(tmp_path):
    # unordered: the first result comes back before any refill (an ordered generator
    # may refill while it waits for task 0), so exactly two tasks were ever sent
    p = Parallel(n_jobs=2, return_as="generator_unordered", batch_size=1, pre_dispatch=2)
    gen = p(delayed(_touch)(str(tmp_path), i) for i in range(200))
    assert next(gen) in (0, 1)
    gen.close()
    picklepool.shutdown(wait=True)  # whatever was running has finished
    assert len(os.listdir(tmp_path)) <= 2  # pre_dispatch=2: no task past the first two was sent
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def _total(a):
    return float(a.sum())


@pytest.mark.parametrize("backend", ["loky", "threading", "multiprocessing"])
@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_a_blocks_generator_read_after_the_block_gives_every_result(backend, return_as):
    # The block ended while its generator was unread: the generator keeps the block's pool
    # and shared-memory folder until it ends (was: TypeError "cannot create weak reference
    # to 'NoneType' object" from the lanes; joblib 1.6 gives an AttributeError, or 0 results)
    np = pytest.importorskip("numpy")
    with Parallel(n_jobs=2, backend=backend, return_as=return_as, max_nbytes=1000, batch_size=1) as p:
        gen = p(delayed(_total)(np.full(1000, i)) for i in range(20))
        first = next(gen)
    assert sorted([first, *gen]) == [1000.0 * i for i in range(20)]
    assert p._left_open is None  # given back once the generator ended
    with Parallel(n_jobs=2, backend=backend, return_as=return_as) as p:
        gen = p(delayed(abs)(-i) for i in range(50))
    gen.close()  # closed unread after the block: the pool is given back then
    assert p._left_open is None
    with p:  # and the instance works again
        assert sorted(p(delayed(abs)(-i) for i in range(3))) == [0, 1, 2]


def _once_there(path, i):
    while not os.path.exists(path):  # the parent creates it once the other call is closed
        threading.Event().wait(0.005)
    return i


def test_closing_an_old_generator_never_cancels_a_later_call(tmp_path):
    # A call's cancel flag is slot id % 4096 of the session's flag file: the call made 4096
    # ids after an unread generator shared its slot, and that generator's close (or its
    # garbage collection) made the later call's workers skip its queued batches, which
    # came back as the end of its results: 3 of 300, silently.
    from picklepool.executor.session import current_session
    from picklepool.workers.control import CANCEL_SLOTS

    gate = str(tmp_path / "gate")
    old = Parallel(n_jobs=2, return_as="generator")(delayed(_once_there)(gate, i) for i in range(100))
    session = current_session()
    session._next_call += CANCEL_SLOTS - 1  # as if 4095 calls were made since (slow to make)
    new = Parallel(n_jobs=2, return_as="generator", batch_size=1)(
        delayed(_once_there)(gate, i) for i in range(40)
    )
    old.close()
    open(gate, "w").close()
    assert list(new) == list(range(40))


def test_batches_skipped_by_a_cancel_the_call_did_not_make_are_an_error_not_fewer_results(tmp_path):
    # A flag set from outside the call (4096 calls running at once share slots) made its
    # queued batches come back as cancelled, read as no results: the list was short, silently.
    from picklepool.executor.session import current_session
    from picklepool.workers.control import CANCEL_SLOTS

    gate = str(tmp_path / "gate")
    gen = Parallel(n_jobs=2, return_as="generator", batch_size=1)(
        delayed(_once_there)(gate, i) for i in range(40)
    )
    session = current_session()
    session._flags[session._next_call % CANCEL_SLOTS] = 1  # the flag of the call just made
    open(gate, "w").close()
    with pytest.raises(RuntimeError, match=r"skipped by (its|their) worker as cancelled.*rerun the call"):
        list(gen)


def test_a_threading_generator_left_unread_at_exit_starts_no_more_tasks():
    # Python's exit joined the pool's threads only once they had run every task queued:
    # tasks of a generator nobody reads any more started after the program's end, and
    # the exit waited for them too (loky's workers still busy then are killed).
    from tests.conftest import run_python

    result = run_python(
        """
        import os, threading
        from concurrent.futures import thread as pool_threads
        from picklepool import Parallel, delayed

        running = [threading.Event() for _ in range(3)]

        def step(i):
            os.write(1, f"start {i}\\n".encode())
            if i < 3:
                running[i].set()
            while i > 0 and not pool_threads._shutdown:  # until Python's exit stops the pools
                threading.Event().wait(0.01)
            return i

        if __name__ == "__main__":
            results = Parallel(n_jobs=2, backend="threading", return_as="generator", batch_size=1)(
                delayed(step)(i) for i in range(20)
            )
            assert next(results) == 0
            running[1].wait()
            running[2].wait()
        """
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:-1]) == ["start 0", "start 1", "start 2"], result.stdout
    assert result.stderr == "", result.stderr


def fail_at_five(i):
    if i == 5:
        raise ValueError("task 5 failed")
    return i


@pytest.mark.parametrize(
    ("backend", "n_jobs", "return_as"),
    [
        ("loky", 2, "list"),
        ("loky", 2, "generator"),
        ("threading", 2, "list"),
        ("multiprocessing", 2, "list"),
        ("loky", 1, "list"),
    ],
)
def test_a_failed_calls_generator_of_tasks_is_let_go_at_once(backend, n_jobs, return_as):
    # The error's traceback held the call's frames in a cycle (through the reply, and an
    # in-process backend's future, holding the error): the caller's generator of tasks
    # stayed suspended inside its `with lock:` until the GC ran, where the loop the call
    # replaces lets it go (and its lock with it) as the error leaves
    import gc

    lock = threading.Lock()

    def tasks():
        with lock:
            for i in range(100):
                yield delayed(fail_at_five)(i)

    enabled = gc.isenabled()
    gc.disable()  # only reference counting may let it go
    try:
        with pytest.raises(ValueError, match="task 5 failed"):
            list(Parallel(n_jobs=n_jobs, backend=backend, return_as=return_as, batch_size=1)(tasks()))
        assert not lock.locked()
    finally:
        if enabled:
            gc.enable()


EARLY_CLOSE = re.compile(
    r"^(?:(\d+) tasks have been successfully executed  but not used\.)?"
    r"(?: ?Additionally, )?(?:(\d+) tasks which were still being processed by the workers "
    r"have been cancelled\.)? You could benefit from adjusting the input task iterator to "
    r"limit unnecessary computation time\.$"
)


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_a_generator_closed_early_warns_as_joblibs(return_as):
    # joblib's Parallel._warn_exit_early: the tasks finished and not read, and those cancelled
    gen = Parallel(n_jobs=2, return_as=return_as, batch_size=1, pre_dispatch="all")(
        delayed(abs)(-i) for i in range(6)
    )
    next(gen)
    with pytest.warns(UserWarning) as caught:
        gen.close()
    [w] = caught.list
    m = EARLY_CLOSE.match(str(w.message))
    assert m is not None, str(w.message)
    unread, cancelled = (int(n or 0) for n in m.groups())
    assert unread + cancelled == 5  # all six dispatched at the call, one read
    assert w.filename == __file__  # at the line that closed it


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_generator_read_to_its_end_or_sequential_does_not_warn(n_jobs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(Parallel(n_jobs=n_jobs, return_as="generator")(delayed(abs)(-i) for i in range(4))) == [
            0,
            1,
            2,
            3,
        ]
        gen = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(abs)(-i) for i in range(4))
        assert [next(gen) for _ in range(4)] == [0, 1, 2, 3]
        if n_jobs == 1:
            gen2 = Parallel(n_jobs=1, return_as="generator")(delayed(abs)(-i) for i in range(4))
            next(gen2)
            gen2.close()  # joblib's sequential generator does not warn either
        gen.close()  # every result read: nothing unused
