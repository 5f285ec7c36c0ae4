"""A worker's crash fails other calls of an Executor too: each future says which call it is.

Every future one crash failed raised the same words, naming the call whose worker died
(``a worker process died while running task 0 ...: die(1)``): a user catching the
error of another call learned nothing of that call, nor that it was only collateral.
Now the dying call's future has the crash's error, and each other future names its
own call, what it was doing (running on another worker, killed with the pool; queued),
and the call whose worker died.

Deterministic: each task says it started through a FIFO, and blocks on another until
the test opens it (the one that dies) or for good (killed with the pool); nothing sleeps.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import wait
from concurrent.futures.process import BrokenProcessPool

import pytest

from picklepool import Executor, WorkerCrashedError

pytestmark = pytest.mark.timeout(90)

_QUEUED = ("had been sent to the pool, where no worker was running it", "was queued in this Executor")


def square(x):
    return x * x


def _signal(started):
    with open(started, "w"):  # tells the test the task runs
        pass


def _block(gate):
    with open(gate) as f:  # until the test opens the gate for writing
        f.read()


def started_then_die(started, gate):
    _signal(started)
    _block(gate)
    os._exit(1)


def started_then_block(started, gate):
    _signal(started)
    _block(gate)
    return "released"


def blocks_at(k, started, gate, i):
    """A map's call: the *k*-th blocks (its worker is killed with the pool); the others return."""
    if i == k:
        started_then_block(started, gate)
    return i


class Fifos:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path

    def __call__(self, name):
        path = str(self.tmp_path / name)
        os.mkfifo(path)
        return path


def _wait_started(path):
    with open(path) as f:
        f.read()


def _dying(ex, tmp_path):
    """Call 0 of *ex*, running: it dies once its gate (the second path) is opened; and the
    FIFOs a second call signals its start on and blocks on."""
    fifo = Fifos(tmp_path)
    die_started, die_gate, busy_started, never = fifo("ds"), fifo("dg"), fifo("bs"), fifo("never")
    dying = ex.submit(started_then_die, die_started, die_gate)
    _wait_started(die_started)
    return dying, die_gate, busy_started, never


def test_each_future_a_crash_fails_names_its_own_call_and_the_one_that_died(tmp_path):
    with Executor(max_workers=2) as ex:
        dying, die_gate, busy_started, never = _dying(ex, tmp_path)
        running = ex.submit(started_then_block, busy_started, never)
        _wait_started(busy_started)  # on the other worker: both run now
        queued = ex.submit(square, 7)  # no worker is free for it
        with open(die_gate, "w"):  # the first task's worker exits
            pass
        wait([dying, running, queued])
        errors = [f.exception() for f in (dying, running, queued)]
        if errors[2] is None:
            # taken off the Executor's queue by its manager thread just before the crash was
            # seen, it was sent after, to the fresh pool, where it ran (under load, now and then)
            assert queued.result() == 49
        # the standard library gives each a BrokenProcessPool: so does picklepool, each its own
        sent = [e for e in errors if e is not None]
        assert all(isinstance(e, (WorkerCrashedError, BrokenProcessPool)) for e in sent), errors
        assert len({id(e) for e in sent}) == len(sent) >= 2
        culprit = "task 0 (the 1st call submitted to this Executor): started_then_die("
        first = str(errors[0])
        assert first.startswith(f"a worker process died while running {culprit}"), first
        assert "exit code EXIT(1)" in first and "This Executor starts a fresh pool" in first, first

        second = str(errors[1])
        assert second.startswith("task 1 (the 2nd call submitted to this Executor): started_then_block("), (
            second
        )
        assert "was running on another worker (pid " in second and "killed with the pool" in second, second
        assert f"died while running {culprit}" in second and "exit code EXIT(1)" in second, second
        assert "not at fault" in second and "Submit it again" in second, second

        if errors[2] is not None:
            third = str(errors[2])
            assert third.startswith("task 2 (the 3rd call submitted to this Executor): square(7) "), third
            assert any(q in third for q in _QUEUED), third
            assert f"died while running {culprit}" in third and "Submit it again" in third, third

        # what the errors say: the Executor is not broken, a new call runs on a fresh pool
        assert ex.submit(square, 7).result() == 49


def test_a_map_chunk_a_crash_fails_names_the_call_that_was_running(tmp_path):
    with Executor(max_workers=2) as ex:
        dying, die_gate, busy_started, never = _dying(ex, tmp_path)
        results = ex.map(functools.partial(blocks_at, 1, busy_started, never), range(3), chunksize=3)
        _wait_started(busy_started)  # the chunk's second call runs on the other worker
        with open(die_gate, "w"):
            pass
        with pytest.raises(WorkerCrashedError) as info:
            list(results)
        wait([dying])
    text = str(info.value)
    assert text.startswith(
        "tasks 1..3 (first: task 1 (the 2nd call submitted to this Executor): partial(blocks_at, "
    ), text
    assert "at task 2 (the 3rd call submitted to this Executor): partial(blocks_at, " in text, text
    assert "killed with the pool" in text and "Submit them again" in text, text
    assert "died while running task 0 (the 1st call submitted to this Executor): started_then_die(" in text, (
        text
    )


def opens_then_blocks(gate, never):
    with open(gate, "w"):  # lets the other task go on to die: this one runs meanwhile
        pass
    _block(never)


def waits_then_dies(gate):
    _block(gate)
    os._exit(1)


def test_under_the_joblib_backend_the_error_raised_names_the_task_whose_worker_died(tmp_path):
    # joblib raises the first failed batch's error, in submission order: a bystander's,
    # when an earlier task was killed with the pool. Each said it was not at fault and
    # named "the future of task 1", which a joblib user never sees; as under joblib's loky
    # backend, every batch a crash fails has the crash's error.
    import joblib

    import picklepool

    picklepool.register_joblib_backend()
    fifo = Fifos(tmp_path)
    gate, never = fifo("gate"), fifo("never")
    tasks = [joblib.delayed(opens_then_blocks)(gate, never), joblib.delayed(waits_then_dies)(gate)]
    with pytest.raises(WorkerCrashedError) as info:
        joblib.Parallel(n_jobs=2, batch_size=1, backend="picklepool")(tasks)
    text = str(info.value)
    assert text.startswith("a worker process died while running task 1: waits_then_dies("), text
    assert "exit code EXIT(1)" in text and "task 0" not in text and "not at fault" not in text, text


def test_a_bystanders_error_names_the_calls_without_their_colons(tmp_path):
    with Executor(max_workers=2) as ex:
        dying, die_gate, busy_started, never = _dying(ex, tmp_path)
        running = ex.submit(started_then_block, busy_started, never)
        _wait_started(busy_started)
        with open(die_gate, "w"):
            pass
        wait([dying, running])
    text = str(running.exception())
    said = "Task 1 failed with it, though not at fault: the future of task 0 has the crash's error"
    assert said in text, text
