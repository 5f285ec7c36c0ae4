"""picklepool.Executor conforms to concurrent.futures: futures, exceptions, cancel, crash, shutdown.

Deterministic: a task that must stay busy blocks on a FIFO until the test opens it
for writing (``Gate``); nothing sleeps.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import threading
from concurrent.futures import BrokenExecutor, CancelledError, Future, as_completed, wait
from concurrent.futures.process import BrokenProcessPool

import pytest

from picklepool import Executor, PicklingError, WorkerCrashedError
from tests.executor.cyclic import Cyclic, making_cyclic_garbage


class LedgerError(Exception):
    pass


def square(x):
    return x * x


def fail(x):
    raise LedgerError(f"bad {x}")


def wait_for(path):
    """Block until the test opens *path* (a FIFO) for writing and closes it."""
    with open(path) as f:
        f.read()
    return "released"


class Gate:
    def __init__(self, tmp_path, name="gate"):
        self.path = str(tmp_path / name)
        os.mkfifo(self.path)

    def open(self):
        with open(self.path, "w"):
            pass


def started_and_wait(started, gate):
    with open(started, "w"):  # tells the test the task runs
        pass
    return wait_for(gate)


def busy(ex, tmp_path):
    """Submit a task that runs until the returned gate opens; return when it runs."""
    started, gate = Gate(tmp_path, "started"), Gate(tmp_path, "gate")
    fut = ex.submit(started_and_wait, started.path, gate.path)
    with open(started.path) as f:
        f.read()
    return fut, gate


def batches_of_many(ex):
    """As after fast tasks: the executor sends the calls that queue up in batches of many."""
    ex._batcher.per_task, ex._batcher.last = 1e-6, 1000
    ex._batcher.record = lambda n, seconds: None


def hold_manager(running, gate):
    """End *running* (its *gate* opens) and hold the executor's manager thread in its done
    callback, so that calls submitted now queue up together; returns the event that lets it go."""
    entered, release = threading.Event(), threading.Event()
    running.add_done_callback(lambda _f: (entered.set(), release.wait()))
    gate.open()
    entered.wait()
    return release


def one_worker_idle_one_busy(ex, tmp_path):
    """Both workers busy, then one idle with the manager thread held (:func:`hold_manager`),
    batches of many; returns (release, the other worker's call, its gate)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    running, gate = busy(ex, tmp_path / "a")
    other, other_gate = busy(ex, tmp_path / "b")
    release = hold_manager(running, gate)
    batches_of_many(ex)
    return release, other, other_gate


_initialized = []


def remember(value):
    _initialized.append(value)


def initialized():
    return list(_initialized)


def raise_in_init():
    raise OSError("no database")


def test_submit_map_and_own_exception_type():
    with Executor(max_workers=2) as ex:
        assert ex.submit(pow, 2, 5).result() == 32
        assert ex.submit(sorted, [3, 1], reverse=True).result() == [3, 1]
        futures = [ex.submit(square, i) for i in range(500)] + [ex.submit(fail, 7)]
        assert [f.result() for f in futures[:-1]] == [i * i for i in range(500)]
        error = futures[-1].exception()
        assert type(error) is LedgerError and str(error) == "bad 7"
        assert "fail(7)" in error.__notes__[0] and "Executor" in error.__notes__[0]
        assert "LedgerError" in str(error.__cause__)  # the worker's traceback
        assert list(ex.map(square, range(10))) == [i * i for i in range(10)]
        assert list(ex.map(pow, range(10), range(10), chunksize=3)) == [i**i for i in range(10)]
        with pytest.raises(LedgerError):
            list(ex.map(fail, range(3), chunksize=2))


def fail_at_five(x):
    if x == 5:
        raise LedgerError(f"bad {x}")
    return x * x


def test_map_in_chunks_keeps_order_and_names_the_failing_call():
    with Executor(max_workers=2) as ex:
        results = ex.map(fail_at_five, range(10), chunksize=4)
        assert [next(results) for _ in range(4)] == [0, 1, 4, 9]
        with pytest.raises(LedgerError) as info:
            next(results)  # the chunk holding call 5 fails when the iterator reaches it
        assert "task 5 (the 6th call submitted to this Executor): fail_at_five(5)" in info.value.__notes__[0]
        assert list(ex.map(square, iter(range(1001)), chunksize=100)) == [i * i for i in range(1001)]
        assert list(ex.map(square, (), chunksize=4)) == []
        assert list(ex.map(len, [(1, 2)], chunksize=4)) == [2]  # a tuple is one argument
        with pytest.raises(TypeError):
            list(ex.map(42, range(3), chunksize=2))
    with Executor(max_workers=1, initializer=remember, initargs=("chunks",)) as ex:
        assert list(ex.map(square, range(7), chunksize=3)) == [i * i for i in range(7)]
        assert list(ex.map(pow, range(7), range(7), chunksize=3)) == [i**i for i in range(7)]


def test_map_chunks_queued_behind_a_busy_worker_leave_together(tmp_path):
    with Executor(max_workers=1) as ex:
        ex._max_inflight = 1  # the busy batch fills the pool: the chunks queue behind it
        fut, gate = busy(ex, tmp_path)
        batches_of_many(ex)
        sent = []
        send = ex._channel.send
        ex._channel.send = lambda items, first, column=None, **kw: (
            sent.append(len(items)) or send(items, first, column, **kw)
        )
        results = ex.map(fail_at_five, range(40), chunksize=4)  # call 5 is the executor's task 6
        gate.open()
        assert fut.result() == "released"
        assert [next(results) for _ in range(4)] == [0, 1, 4, 9]  # the next chunk holds call 5
        with pytest.raises(LedgerError) as info:
            next(results)
        assert "task 6 (the 7th call submitted to this Executor): fail_at_five(5)" in info.value.__notes__[0]
        assert sent == [40]  # 10 chunks, one batch
        assert list(ex.map(fail_at_five, range(6, 46), chunksize=4)) == [i * i for i in range(6, 46)]


def precision(_):
    import decimal

    return decimal.getcontext().prec


@pytest.mark.timeout(60)
def test_calls_queued_together_each_run_with_the_decimal_context_of_their_submission(tmp_path):
    """The numeric settings travel with each call: a call submitted inside
    ``decimal.localcontext()`` keeps them though sent after a later submission's."""
    import decimal

    for max_workers in (1, 2):
        (tmp_path / str(max_workers)).mkdir()
        with Executor(max_workers=max_workers) as ex:
            ex._max_inflight = 1  # the busy batch fills the pool: the calls queue behind it
            fut, gate = busy(ex, tmp_path / str(max_workers))
            batches_of_many(ex)
            with decimal.localcontext() as context:
                context.prec = 5
                five = [ex.submit(precision, i) for i in range(3)]
                mapped = ex.map(precision, range(4), chunksize=2)
            default = [ex.submit(precision, i) for i in range(3)]
            mapped_default = ex.map(precision, range(4), chunksize=2)
            gate.open()
            assert fut.result() == "released"
            assert [f.result() for f in five] == [5, 5, 5]
            assert list(mapped) == [5, 5, 5, 5]
            assert [f.result() for f in default] == [28, 28, 28]
            assert list(mapped_default) == [28, 28, 28, 28]


def warn_and_report(i):
    import warnings

    warnings.warn(f"call {i} warns", RuntimeWarning, stacklevel=1)
    return i


@pytest.mark.timeout(60)
def test_calls_run_with_the_warnings_filters_of_their_submission(tmp_path):
    """A call submitted inside ``catch_warnings()`` with an "error" filter raises though its
    batch leaves after the block ended: the filters were read when the batch was sent,
    so no call raised (a ``map``'s neither), as if the block had not been there."""
    import warnings

    with Executor(max_workers=1) as ex:
        ex._max_inflight = 1  # the busy batch fills the pool: the calls queue behind it
        fut, gate = busy(ex, tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            errors = [ex.submit(warn_and_report, i) for i in range(3)]
            mapped = ex.map(warn_and_report, range(4), chunksize=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ignored = [ex.submit(warn_and_report, i) for i in range(3)]
        gate.open()
        assert fut.result() == "released"
        for f in errors:
            with pytest.raises(RuntimeWarning, match="warns"):
                f.result()
        with pytest.raises(RuntimeWarning, match="call 0 warns"):
            list(mapped)
        assert [f.result() for f in ignored] == [0, 1, 2]


def test_one_failure_in_a_coalesced_batch_fails_only_its_future():
    with Executor(max_workers=1) as ex:
        futures = [ex.submit(fail if i % 3 == 0 else square, i) for i in range(300)]
        for i, f in enumerate(futures):
            if i % 3 == 0:
                assert isinstance(f.exception(), LedgerError)
            else:
                assert f.result() == i * i


def wait_for_event(event):
    return event.wait(60)  # False: nothing set it (a deadlock, bounded)


def set_event(event):
    event.set()
    return "set"


def test_a_task_submitted_while_a_worker_is_idle_starts_there_not_behind_another(tmp_path):
    # As with ProcessPoolExecutor: tasks given to idle workers run at once, side by side,
    # so the first waits for the second instead of sitting in one batch before it.
    with multiprocessing.Manager() as manager, Executor(max_workers=2) as ex:
        event = manager.Event()
        release = hold_manager(*busy(ex, tmp_path))  # both workers idle now
        batches_of_many(ex)  # the three calls below queue up together
        futures = [ex.submit(wait_for_event, event), ex.submit(set_event, event), ex.submit(square, 3)]
        release.set()
        assert [f.result() for f in futures] == [True, "set", 9]


def test_a_call_sent_behind_one_that_waits_for_it_is_given_back_and_runs_elsewhere(tmp_path):
    # Calls that queue up while the workers are busy go together, in one batch; one that
    # waits for a later call of its batch would wait forever. Its worker gives back the
    # calls behind a long one (workers.handback), and the other worker runs them.
    with multiprocessing.Manager() as manager, Executor(max_workers=2) as ex:
        event = manager.Event()
        release, other, other_gate = one_worker_idle_one_busy(ex, tmp_path)
        futures = [ex.submit(square, 3), ex.submit(wait_for_event, event), ex.submit(set_event, event)]
        futures += [ex.submit(square, 4), ex.submit(square, 5)]
        release.set()  # square(3) goes alone to the idle worker; the next two go together
        other_gate.open()
        assert [f.result() for f in futures] == [9, True, "set", 16, 25]
        assert other.result() == "released"


def handshake(step):
    what, event = step
    return wait_for_event(event) if what == "wait" else set_event(event)


def test_calls_of_one_function_sent_behind_one_that_waits_for_them_are_given_back(tmp_path):
    # the same with one function of one argument, whose batch travels as a column of its
    # arguments (executor.functions.one_argument): its worker gives them back all the same
    with multiprocessing.Manager() as manager, Executor(max_workers=2) as ex:
        event = manager.Event()
        release, other, other_gate = one_worker_idle_one_busy(ex, tmp_path)
        futures = [
            ex.submit(square, 3),
            ex.submit(handshake, ("wait", event)),
            ex.submit(handshake, ("set", event)),
        ]
        release.set()  # square(3) goes alone to the idle worker; the next two go together
        other_gate.open()
        assert [f.result() for f in futures] == [9, True, "set"]
        assert other.result() == "released"


def until_given_back(runs, started):
    from picklepool.workers import control

    runs.append("long")
    with open(started, "w"):  # tells the test the call runs (its batch was made)
        pass
    (view,) = control._views.values()
    for _ in range(3000):  # its worker gave back the calls behind it: return at once
        if view.status[4] >= 0:
            return "long"
        threading.Event().wait(0.01)
    return "nothing was given back"


def counted(runs, x):
    runs.append(x)
    return x * x


def test_calls_given_back_run_once_each_whichever_side_sees_it_first(tmp_path):
    # the batch's reply (after the long call) or the worker's status (the manager thread's
    # look): either way each call runs once, and its future gets its own result
    with multiprocessing.Manager() as manager, Executor(max_workers=2) as ex:
        runs = manager.list()
        release, other, other_gate = one_worker_idle_one_busy(ex, tmp_path)
        started = Gate(tmp_path, "long")
        first = ex.submit(counted, runs, 1)  # alone, to the idle worker
        futures = [ex.submit(until_given_back, runs, started.path)]
        futures += [ex.submit(counted, runs, x) for x in range(2, 8)]
        release.set()  # the long call goes with the next three, the other three together
        with open(started.path) as f:  # the batches are made while the other worker is busy:
            f.read()  # were it free, the long call would go alone (nothing behind it to give back)
        other_gate.open()
        assert first.result() == 1 and other.result() == "released"
        assert [f.result() for f in futures] == ["long"] + [x * x for x in range(2, 8)]
        assert sorted(runs, key=str) == sorted([1, "long", *range(2, 8)], key=str)


def test_a_lone_worker_gives_back_nothing_its_calls_start_in_the_order_submitted(tmp_path):
    # Calls given back run after the batches sent since: with one worker, there is no
    # other to run them sooner, and they would run out of order (ProcessPoolExecutor's
    # one worker starts them in order).
    with Executor(max_workers=1) as ex:
        sent = []
        send = ex._channel.send

        def recording(items, *args, **kwargs):
            sent.append((len(items), kwargs.get("splittable")))
            return send(items, *args, **kwargs)

        ex._channel.send = recording
        running, gate = busy(ex, tmp_path)
        batches_of_many(ex)
        futures = [ex.submit(square, x) for x in range(5)]
        gate.open()
        assert running.result() == "released"
        assert [f.result() for f in futures] == [x * x for x in range(5)]
        assert max(n for n, _s in sent) > 1  # some went together
        assert not any(splittable for _n, splittable in sent)


def test_unpicklable_argument_fails_its_future_only():
    with Executor(max_workers=2) as ex:
        bad = ex.submit(square, (x for x in range(3)))
        good = ex.submit(square, 3)
        with pytest.raises(PicklingError, match="generator"):
            bad.result()
        assert good.result() == 9


def test_a_function_that_cannot_be_pickled_names_its_call_as_submitted():
    with Executor(max_workers=1, pickler="pickle") as ex:
        futures = [ex.submit(square, i) for i in range(5)] + [ex.submit(lambda: 1)]
        with pytest.raises(
            PicklingError, match=r"^task 5 \(the 6th call submitted to this Executor\): \S*<lambda>\(\)"
        ):
            futures[-1].result()
        assert [f.result() for f in futures[:5]] == [0, 1, 4, 9, 16]


def total(a):
    return float(a.sum())


def test_an_array_changed_between_submissions_is_sent_again_and_no_file_outlives_its_batch():
    np = pytest.importorskip("numpy")
    a = np.zeros(300_000)  # 2.4 MB: through a shared-memory file
    with Executor(max_workers=2) as ex:
        assert ex.submit(total, a).result() == 0.0
        # read after the first batch: the call may have taken a spare folder an earlier
        # call left (Session.take_folder), not made its own call-<id>
        folder = ex._channel.buffers.folder
        a += 1  # as ProcessPoolExecutor: the next submission sees the array as it is now
        assert ex.submit(total, a).result() == a.size
        a += 1
        assert list(ex.map(total, [a, a, a], chunksize=2)) == [2.0 * a.size] * 3
        # nor is an array held by a callable object or partial, pickled at each submission
        a += 1
        assert ex.submit(functools.partial(total, a)).result() == 3.0 * a.size
        a += 1
        assert ex.submit(functools.partial(total, a)).result() == 4.0 * a.size
        assert ex.submit(total, a).result() == 4.0 * a.size  # not the partial's file either
        # each batch's file went with it, though the array lives on
        assert not [name for name in os.listdir(folder) if name.startswith("a-")]


class RefusesState(Exception):
    def __setstate__(self, state):
        raise RuntimeError("no __setstate__ here")


def raise_refusing(x):
    error = RefusesState(f"bad {x}")
    error.detail = x  # a __dict__: pickle calls __setstate__ to rebuild it
    raise error


def test_an_exception_whose_setstate_raises_keeps_its_type():
    # As a Parallel call's: rebuilt without its __setstate__, not an UnpicklingError
    # failing every future of its batch.
    with Executor(max_workers=1) as ex:
        futures = [ex.submit(raise_refusing, 1), ex.submit(square, 3)]
        with pytest.raises(RefusesState, match="^bad 1") as info:
            futures[0].result()
        assert info.value.detail == 1
        assert futures[1].result() == 9


def test_cancel_pending_and_shutdown_cancel_futures(tmp_path):
    ex = Executor(max_workers=1)
    running, gate = busy(ex, tmp_path)
    assert not running.cancel()
    pending = [ex.submit(square, i) for i in range(20)]
    cancelled = [f.cancel() for f in pending]
    # At most one batch of one task (the batcher has no measure yet) left before the cancel.
    assert sum(cancelled) >= 19
    more = [ex.submit(square, i) for i in range(20)]
    ex.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)
    gate.open()
    assert running.result() == "released"
    ex.shutdown(wait=True)
    for i, f in enumerate(pending + more):
        assert f.cancelled() or f.result() == (i % 20) ** 2
    assert sum(f.cancelled() for f in more) >= 19
    with pytest.raises(CancelledError):
        next(f for f in more if f.cancelled()).result()


def test_futures_cancelled_by_shutdown_are_seen_by_wait_and_as_completed(tmp_path):
    # concurrent.futures.wait and as_completed count a cancelled future only once it is
    # notified: those shutdown(cancel_futures=True) cancelled were not, and both waited
    # for ever on them (as on the standard library's executors, CPython gh-87893).
    ex = Executor(max_workers=1)
    running, gate = busy(ex, tmp_path)
    queued = [ex.submit(square, i) for i in range(5)]
    ex.shutdown(wait=False, cancel_futures=True)
    gate.open()
    done, not_done = wait(queued + [running], timeout=60)
    assert not_done == set()
    # at most one batch of one task (the batcher has no measure yet) left before the cancel
    assert all(f.cancelled() or f.result() == i * i for i, f in enumerate(queued))
    assert sum(f.cancelled() for f in queued) >= 4
    assert len(list(as_completed(queued, timeout=60))) == 5
    ex.shutdown(wait=True)


def test_map_timeout(tmp_path):
    with Executor(max_workers=1) as ex:
        gate = Gate(tmp_path)
        results = ex.map(wait_for, [gate.path], timeout=0.2)
        with pytest.raises(TimeoutError):
            next(results)
        gate.open()


def test_crash_breaks_pending_futures_then_recovers():
    with Executor(max_workers=2) as ex:
        crashed = ex.submit(os._exit, 3)
        with pytest.raises(WorkerCrashedError, match="exit code") as info:
            crashed.result()
        assert isinstance(info.value, BrokenProcessPool)
        assert ex.submit(square, 4).result() == 16  # a fresh pool
        assert list(ex.map(square, range(5), chunksize=2)) == [0, 1, 4, 9, 16]


def test_asyncio_run_in_executor():
    async def main(ex):
        loop = asyncio.get_running_loop()
        return await asyncio.gather(*(loop.run_in_executor(ex, square, i) for i in range(8)))

    with Executor(max_workers=2) as ex:
        assert asyncio.run(main(ex)) == [i * i for i in range(8)]


def test_initializer_runs_once_per_worker_and_a_failing_one_breaks():
    with Executor(max_workers=1, initializer=remember, initargs=("db",)) as ex:
        assert [ex.submit(initialized).result() for _ in range(3)] == [["db"]] * 3
    ex = Executor(max_workers=1, initializer=raise_in_init)
    with pytest.raises(BrokenProcessPool, match="raise_in_init.*no database"):
        ex.submit(square, 2).result()
    with pytest.raises(BrokenExecutor):
        ex.submit(square, 2)
    ex.shutdown()


def tag_process(tag):
    os.environ["PICKLEPOOL_TEST_INIT_TAG"] = tag


def meet_and_read_tag(fifo, side):
    """The tag this worker's process has, once the other side's task runs too (another worker)."""
    with open(fifo, "r" if side == 0 else "w"):  # each open waits for the other side's
        pass
    return os.environ.get("PICKLEPOOL_TEST_INIT_TAG")


def test_an_executors_initializer_changes_no_other_calls_workers(tmp_path):
    # Its initializer ran on the shared warm workers, and what it changed in their
    # processes (here the environment; warnings filters, logging, module globals alike)
    # stayed for every later Parallel call and Executor on them. The standard library's
    # executors share no process; Parallel(initializer=...) already gets a pool of its own.
    from picklepool import Parallel, delayed

    def both_workers(run):
        fifo = str(tmp_path / f"meet{len(os.listdir(tmp_path))}")
        os.mkfifo(fifo)
        return run(fifo)

    def submitted(ex):
        return lambda f: [fut.result() for fut in [ex.submit(meet_and_read_tag, f, k) for k in (0, 1)]]

    with Executor(max_workers=2, initializer=tag_process, initargs=("A",)) as ex:
        seen = both_workers(submitted(ex))
    assert seen == ["A", "A"]  # both workers ran it
    after = both_workers(
        lambda f: Parallel(n_jobs=2, batch_size=1)(delayed(meet_and_read_tag)(f, k) for k in (0, 1))
    )
    assert after == [None, None]
    with Executor(max_workers=2) as ex:
        seen = both_workers(submitted(ex))
    assert seen == [None, None]


def meet_and_pid(fifo, side):
    with open(fifo, "r" if side == 0 else "w"):  # each open waits for the other side's
        pass
    return os.getpid()


def test_an_executor_with_an_initializer_leaves_the_shared_warm_pool_to_other_calls(tmp_path):
    # It took the shared pool's place (the warm workers were stopped), so every Parallel
    # call and Executor of other settings while it lived started and stopped a pool of
    # its own, and the next call after its shutdown started yet another.
    from picklepool import Parallel, delayed

    def both_pids():
        fifo = str(tmp_path / f"meet{len(os.listdir(tmp_path))}")
        os.mkfifo(fifo)
        return set(Parallel(n_jobs=2, batch_size=1)(delayed(meet_and_pid)(fifo, k) for k in (0, 1)))

    warm = both_pids()
    with Executor(max_workers=2, initializer=tag_process, initargs=("B",)) as ex:
        fifo = str(tmp_path / "executor")
        os.mkfifo(fifo)
        own = {fut.result() for fut in [ex.submit(meet_and_pid, fifo, k) for k in (0, 1)]}
        during = [both_pids(), both_pids()]
        with Executor(max_workers=2) as plain:
            fifo = str(tmp_path / "plain")
            os.mkfifo(fifo)
            plain_pids = {fut.result() for fut in [plain.submit(meet_and_pid, fifo, k) for k in (0, 1)]}
    after = both_pids()
    assert not own & warm
    assert during == [warm, warm]
    assert plain_pids == warm
    assert after == warm


def test_submit_from_threads_and_bad_arguments():
    with pytest.raises(ValueError, match="max_workers=0"):
        Executor(max_workers=0)
    with pytest.raises(ValueError, match="pickler"):
        Executor(max_workers=1, pickler="nope")
    with Executor(max_workers=2) as ex:
        with pytest.raises(ValueError, match="chunksize"):
            ex.map(square, [1], chunksize=0)
        out: list[Future[int]] = []
        threads = [
            threading.Thread(
                target=lambda k=k: out.extend(ex.submit(square, k * 100 + i) for i in range(100))
            )
            for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(f.result() for f in out) == sorted((i) ** 2 for i in range(400))


def test_a_function_that_is_not_callable_is_refused_where_it_is_given():
    with Executor(max_workers=1) as ex:
        for call in (lambda: ex.submit(5, 1), lambda: ex.map(5, [1]), lambda: ex.map(None, [1], chunksize=2)):
            with pytest.raises(TypeError, match=r"Executor\.(submit|map)\(\) needs a callable") as info:
                call()
            assert "is not callable" in str(info.value) and "(type builtins." in str(info.value)
        assert ex.submit(square, 3).result() == 9


def test_errors_number_the_users_calls():
    with Executor(max_workers=2) as ex:
        assert [ex.submit(square, i).result() for i in range(3)] == [0, 1, 4]
        with pytest.raises(LedgerError) as info:
            ex.submit(fail, 3).result()
    assert "task 3 (the 4th call submitted to this Executor): fail(3)," in "".join(info.value.__notes__)


def test_an_initializer_in_main_sets_globals_its_tasks_see():
    from tests.conftest import run_python
    from tests.executor.initializer_script import CONNECT

    out = run_python(
        """
        from picklepool import Executor
        """
        + CONNECT
        + """
        with Executor(max_workers=2, initializer=connect, initargs=("open",)) as ex:
            print(sorted({ex.submit(use).result() for _ in range(6)}))
        """
    )
    assert out.stdout.strip() == "[('open', 'from the parent', 'open')]", out.stderr


def _exit_at_7(i):
    if i == 7:
        os._exit(3)
    return i


def test_every_future_a_crash_breaks_names_the_same_culprit():
    # and its own call first: the culprit's error is the crash's, the others say they failed with it
    from concurrent.futures import wait

    with Executor(max_workers=2) as ex:
        futures = [ex.submit(_exit_at_7, i) for i in range(12)]
        wait(futures)
    assert isinstance(futures[7].exception(), WorkerCrashedError)
    culprit = "a worker process died while running task 7 (the 8th call submitted to this Executor)"
    assert str(futures[7].exception()).startswith(culprit)
    for i, f in enumerate(futures):
        error = f.exception()
        if error is None or i == 7:
            continue
        assert isinstance(error, WorkerCrashedError), repr(error)
        text = str(error)
        assert text.startswith(f"task {i} (the "), text
        assert f"_exit_at_7({i})" in text and culprit[len("a worker process died") :] in text, text
        assert "_exit_at_7(7)" in text and "not at fault" in text, text


@pytest.mark.parametrize("chunksize", [1, 100])
def test_map_collects_the_garbage_its_iterable_makes(chunksize):
    # map read the whole iterable with the cyclic GC off: all its garbage lived until
    # every call was submitted (1.9 GB for 10,000 items making 200 KB each; stdlib 145 MB)
    Cyclic.reset()
    with Executor(max_workers=2) as ex:
        out = list(ex.map(abs, making_cyclic_garbage(20000, lambda i: -i), chunksize=chunksize))
    assert out == list(range(20000))
    assert Cyclic.peak < 3000, Cyclic.peak


class LoadsOnlyHere:
    """A function that a worker cannot unpickle (its rebuild raises there)."""

    def __init__(self):
        self.parent = os.getpid()

    def __call__(self, x):
        return x

    def __reduce__(self):
        from tests.executor.crash_cases import _act_unless_in

        return _act_unless_in, (self.parent, "raise")


@pytest.mark.parametrize("what", ["arguments", "function"])
def test_a_call_that_does_not_load_fails_alone_its_batch_neighbours_run(tmp_path, what):
    # Calls that queue up go together, as one pickle; a worker that cannot unpickle one of
    # them runs none. Each good call got the bad one's error; with the standard library's
    # executor (a pickle per call) only the bad one fails. Now each is sent again alone.
    from picklepool.errors import UnpicklingError
    from tests.executor.crash_cases import FailsOnLoad, identity_task

    bad = (identity_task, FailsOnLoad("raise")) if what == "arguments" else (LoadsOnlyHere(), 7)
    with Executor(max_workers=2) as ex:
        release, other, other_gate = one_worker_idle_one_busy(ex, tmp_path)
        futures = [ex.submit(square, 3), ex.submit(square, 4), ex.submit(*bad), ex.submit(square, 5)]
        release.set()  # square(3) goes alone to the idle worker; the next three go together
        other_gate.open()
        wait(futures)
        assert [futures[k].result() for k in (0, 1, 3)] == [9, 16, 25]
        error = futures[2].exception()
        assert isinstance(error, UnpicklingError) and type(error).__name__ == "UnpicklingError", repr(error)
        named = (
            "the arguments of task 4 (the 5th call submitted to this Executor): identity_task(FailsOnLoad("
            if what == "arguments"
            else "the function tests.executor.test_futures.LoadsOnlyHere of task 4 (the 5th call submitted"
        )
        assert named in str(error), error
        assert other.result() == "released"


class Guarded:
    """A class of the user's that guards its state with an RLock (hybrid snapshots it under it)."""

    def __init__(self):
        self.lock = threading.RLock()
        self.value = 0


def read_guarded(guarded, k=0):
    return guarded.value + k


def test_a_call_submitted_while_its_argument_s_rlock_is_held_by_the_submitter_does_not_wait_for_it():
    # The manager thread pickles the call, holding the argument's RLock for its snapshot.
    # A submitter that holds that lock and waits for the result (a method of a thread-safe
    # class: ``with self._lock: ex.submit(f, self).result()``) made both wait for ever;
    # Parallel, which pickles in the calling thread, takes the held RLock again and runs.
    guarded = Guarded()
    with Executor(max_workers=2) as ex:
        with guarded.lock:
            guarded.value = 5
            single = ex.submit(read_guarded, guarded)
            assert single.result(timeout=30) == 5  # TimeoutError before the fix
            batch = [ex.submit(read_guarded, guarded, k) for k in range(6)]  # queued together
            assert [f.result(timeout=30) for f in batch] == [5, 6, 7, 8, 9, 10]
            mapped = ex.map(read_guarded, [guarded] * 4, range(4), chunksize=2, timeout=30)
            assert list(mapped) == [5, 6, 7, 8]


def test_an_rlock_another_thread_holds_is_still_waited_for():
    # Only the submitter's own hold is taken as the snapshot's: another thread's change
    # in progress under the lock is not seen half done.
    guarded = Guarded()
    held, go = threading.Event(), threading.Event()

    def change():
        with guarded.lock:
            guarded.value = 1
            held.set()
            go.wait(30)
            guarded.value = 2

    changer = threading.Thread(target=change)
    changer.start()
    held.wait(30)
    with Executor(max_workers=2) as ex:
        future = ex.submit(read_guarded, guarded)
        go.set()
        assert future.result(timeout=30) == 2
    changer.join()


class WatchedBlock:
    """A pure-Python RLock's inner lock that tells when a thread starts to wait for it."""

    def __init__(self, inner, waiting):
        self.inner, self.waiting = inner, waiting

    def acquire(self, blocking=True, timeout=-1):
        if blocking:
            self.waiting.set()
        return self.inner.acquire(blocking, timeout)

    def release(self):
        self.inner.release()


def test_an_rlock_held_by_another_thread_with_calls_in_the_same_batch_is_still_waited_for(tmp_path):
    # The manager thread did not wait for an RLock held by any thread with a call in the
    # batch: thread B, changing the object under its lock, had a call queued beside A's
    # call that sends the object, and A's worker saw B's change half done.
    from picklepool.pickler import locks

    guarded = Guarded()
    guarded.lock = locks.PyRLockType()
    waited_or_done = threading.Event()  # the manager waits for the lock, or A's call ran
    with Executor(max_workers=2) as ex:
        release, other, other_gate = one_worker_idle_one_busy(ex, tmp_path)
        b_holds, a_submitted = threading.Event(), threading.Event()
        seen = {}

        def b():
            with guarded.lock:
                guarded.lock._block = WatchedBlock(guarded.lock._block, waited_or_done)
                guarded.value = 1  # a change in progress
                ex.submit(square, 1)  # goes alone, to the idle worker
                b_holds.set()
                a_submitted.wait()
                ex.submit(square, 2), ex.submit(square, 3), ex.submit(square, 4)  # A's with one
                seen["a"].add_done_callback(lambda _f: waited_or_done.set())
                release.set()
                waited_or_done.wait()
                seen["done while held"] = seen["a"].done()
                guarded.value = 2

        changer = threading.Thread(target=b)
        changer.start()
        b_holds.wait()
        seen["a"] = ex.submit(read_guarded, guarded)
        a_submitted.set()
        changer.join()
        other_gate.open()
        assert not seen["done while held"], seen["a"].result()
        assert seen["a"].result(timeout=30) == 2


@pytest.mark.parametrize("raised", [SystemExit("from a callback"), KeyboardInterrupt()])
def test_a_callback_raising_a_base_exception_is_logged_and_the_executor_goes_on(raised, caplog):
    # The standard library's manager thread ends there (every later future waits for
    # ever); picklepool's ended too, and then failed every unfinished future.
    def callback(_f):
        raise raised

    with Executor(max_workers=2) as ex:
        first = ex.submit(square, 2)
        first.add_done_callback(callback)
        assert first.result(timeout=60) == 4
        later = [ex.submit(square, i) for i in range(10)]
        assert [f.result(timeout=60) for f in later] == [i * i for i in range(10)]
    assert any(
        r.name == "concurrent.futures" and "exception calling callback" in r.getMessage()
        for r in caplog.records
    )


def _generator_of(n):
    return (i for i in range(n))


def test_pickling_errors_are_also_the_pickler_s_type_as_in_process_pool_executor():
    # ProcessPoolExecutor's future raises the pickler's TypeError for a result or an
    # argument that cannot be pickled; picklepool's PicklingError is one too.
    with Executor(max_workers=2) as ex:
        with pytest.raises(TypeError, match=r"task 0 \(the 1st call.*_generator_of\(3\).*sent back"):
            ex.submit(_generator_of, 3).result()
        with pytest.raises(TypeError, match=r"task 1 \(the 2nd call.*square.*args\[0\]") as info:
            ex.submit(square, _generator_of(3)).result()
        assert isinstance(info.value, PicklingError)
        with pytest.raises(TypeError, match="_generator_of"):
            list(ex.map(_generator_of, [1, 2]))
        assert ex.submit(square, 3).result() == 9
