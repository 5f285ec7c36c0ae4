"""picklepool.Executor takes ProcessPoolExecutor's parameters and behaves as it does (issue 16).

Where running both is cheap, the standard library's executor is the expected value.
Deterministic: no sleeps, no timed assertions.
"""

from __future__ import annotations

import gc
import inspect
import itertools
import multiprocessing
import os
import re
import threading
import weakref
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import psutil
import pytest

from picklepool import Executor, WorkerCrashedError
from tests.conftest import run_python

FORK = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")


def square(x):
    return x * x


def add(a, b):
    return a + b


def pid_and_square(x):
    return os.getpid(), x * x


def pid_of_chunk(x):
    return os.getpid()


_SEEN: list[str] = []  # changed by the tests in the parent: a forked worker inherits it
_INIT_PID: list[int] = []


def seen(_x=None):
    return list(_SEEN)


def note_pid():
    _INIT_PID.append(os.getpid())


def initialized_here(_x):
    return _INIT_PID == [os.getpid()]


def nested(n):
    """A task that runs pools of its own, as the stdlib's (non-daemonic) workers allow."""
    from picklepool import Parallel, delayed

    with ProcessPoolExecutor(2, multiprocessing.get_context("spawn")) as ex:
        inner = list(ex.map(square, range(n)))
    return inner, Parallel(n_jobs=2)(delayed(square)(i) for i in range(n))


def test_the_first_parameters_are_the_stdlibs_in_its_order():
    stdlib = list(inspect.signature(ProcessPoolExecutor).parameters.values())
    ours = list(inspect.signature(Executor).parameters.values())
    assert [(p.name, p.kind, p.default) for p in ours[: len(stdlib)]] == [
        (p.name, p.kind, p.default) for p in stdlib
    ]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in ours[len(stdlib) - 1 :])
    # positionally, as ProcessPoolExecutor code passes them
    with Executor(1, None, note_pid, ()) as ex:
        assert ex.submit(initialized_here, 0).result() is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_workers": 0},
        {"max_workers": -1},
        {"max_workers": "2"},
        {"initializer": 5},
        {"max_tasks_per_child": 0},
        {"max_tasks_per_child": -3},
        {"max_tasks_per_child": "2"},
        pytest.param({"max_tasks_per_child": 2, "mp_context": "fork"}, marks=FORK),
    ],
    ids=str,
)
def test_bad_arguments_raise_as_the_stdlib(kwargs):
    kwargs = dict(kwargs)
    if kwargs.get("mp_context") == "fork":
        kwargs["mp_context"] = multiprocessing.get_context("fork")
    with pytest.raises((TypeError, ValueError)) as expected:
        ProcessPoolExecutor(**kwargs)
    with pytest.raises(expected.type) as ours:
        Executor(**kwargs)
    if "not supported" not in str(expected.value):  # the stdlib's own message, not an accident
        assert str(ours.value).startswith(str(expected.value).rstrip("."))


@pytest.mark.parametrize("context", ["spawn", object(), 3])
def test_mp_context_that_is_not_a_context_is_named(context):
    with pytest.raises(TypeError, match=r"mp_context=.*must be a multiprocessing context") as info:
        Executor(1, context)
    assert repr(context) in str(info.value)
    if context == "spawn":
        assert "multiprocessing.get_context('spawn')" in str(info.value)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawn_and_forkserver_run_on_the_warm_workers(method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} here")
    context = multiprocessing.get_context(method)
    with Executor(2, context) as ex:
        assert ex._mp_context is context
        assert list(ex.map(square, range(20), chunksize=3)) == [i * i for i in range(20)]
        assert ex.submit(seen).result() == []  # inherits nothing, as with spawn


def test_attributes_as_the_stdlib():
    args = (3, None, note_pid, (1,))
    stdlib = ProcessPoolExecutor(*args, max_tasks_per_child=4)
    ours = Executor(*args, max_tasks_per_child=4)
    try:
        for name in ("_max_workers", "_initializer", "_initargs", "_max_tasks_per_child"):
            assert getattr(ours, name) == getattr(stdlib, name), name
        # max_tasks_per_child makes no context mean "spawn", in both (CPython's tests read it)
        assert ours._mp_context.get_start_method() == stdlib._mp_context.get_start_method() == "spawn"
    finally:
        stdlib.shutdown()
        ours.shutdown()


@FORK
def test_fork_tasks_see_the_parents_globals_as_at_the_first_submit():
    fork = multiprocessing.get_context("fork")
    results = []
    try:
        for cls in (ProcessPoolExecutor, Executor):
            _SEEN[:] = ["at construction"]
            with cls(2, fork) as ex:
                _SEEN.append("before the first submit")  # the workers are forked at the first submit
                results.append((ex.submit(seen).result(), list(ex.map(seen, range(3)))))
    finally:
        _SEEN.clear()
    assert results[1] == results[0]
    assert results[0][0] == ["at construction", "before the first submit"]


@FORK
def test_fork_pool_recovers_after_a_crash():
    with Executor(2, multiprocessing.get_context("fork")) as ex:
        assert ex.submit(square, 3).result() == 9
        with pytest.raises(WorkerCrashedError, match=r"exit code EXIT\(3\).*os\._exit\(3\)"):
            ex.submit(os._exit, 3).result()
        assert list(ex.map(square, range(6), chunksize=2)) == [i * i for i in range(6)]


@pytest.mark.parametrize("how", ["fork", "max_tasks_per_child"])
def test_tasks_on_a_pool_of_its_own_may_start_processes(how):
    if how == "fork" and "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    kwargs = (
        {"mp_context": multiprocessing.get_context("fork")} if how == "fork" else {"max_tasks_per_child": 1}
    )
    with Executor(1, **kwargs) as ex:
        assert ex.submit(nested, 4).result() == ([0, 1, 4, 9], [0, 1, 4, 9])


def thread_variable(_x):
    return os.environ.get("OMP_NUM_THREADS")


@pytest.mark.parametrize("how", ["warm", "max_tasks_per_child"])
def test_inner_max_num_threads_reaches_every_kind_of_worker(how):
    kwargs = {"max_tasks_per_child": 1} if how == "max_tasks_per_child" else {}
    with Executor(1, inner_max_num_threads=3, **kwargs) as ex:
        assert list(ex.map(thread_variable, range(2))) == ["3", "3"]


def test_loky_only_options_with_a_pool_of_its_own_raise():
    with pytest.raises(ValueError, match=r"max_worker_memory='1G'.*max_tasks_per_child=2"):
        Executor(1, max_tasks_per_child=2, max_worker_memory="1G")
    if "fork" in multiprocessing.get_all_start_methods():
        with pytest.raises(ValueError, match=r"idle_worker_timeout=5.*'fork'"):
            Executor(1, multiprocessing.get_context("fork"), idle_worker_timeout=5)


def test_max_tasks_per_child_replaces_each_worker_after_its_quota():
    # The stdlib's own executor hangs on this very case in Python 3.11-3.13 (CPython gh-115634).
    with Executor(1, max_tasks_per_child=2) as ex:
        futures = [ex.submit(pid_and_square, i) for i in range(10)]
        out = [f.result() for f in futures]
    assert [v for _pid, v in out] == [i * i for i in range(10)]
    per_pid = Counter(pid for pid, _v in out)
    assert len(per_pid) == 5 and set(per_pid.values()) == {2}
    assert [pid for pid, _v in out] == [pid for pid in per_pid for _ in range(2)]  # one after the other


def test_max_tasks_per_child_counts_a_map_chunk_as_one_task_and_reruns_the_initializer():
    with Executor(2, multiprocessing.get_context("spawn"), note_pid, max_tasks_per_child=1) as ex:
        pids = list(ex.map(pid_of_chunk, range(12), chunksize=3))
        assert all(ex.map(initialized_here, range(4)))  # each new worker ran the initializer
    chunks = [pids[i : i + 3] for i in range(0, 12, 3)]
    assert all(len(set(c)) == 1 for c in chunks)  # one chunk, one worker
    assert len({c[0] for c in chunks}) == 4  # and never the same worker twice


def exits_at_five(x, code):
    if x == 5:
        os._exit(code)
    return x


@pytest.mark.timeout(90)
@pytest.mark.parametrize("code", [0, 4])
@pytest.mark.parametrize("how", [pytest.param("fork", marks=FORK), "max_tasks_per_child"])
def test_a_worker_that_dies_in_a_task_on_a_pool_of_its_own_fails_it_and_shutdown_returns(how, code):
    # Such a pool (multiprocessing.Pool) loses a dead worker's task without a word: the
    # executor must notice the death (a status 0 too, taken for a clean end after
    # max_tasks_per_child), or that task's future, and shutdown(), waited for ever.
    # As the standard library's, the crash fails the tasks sent with it; then fresh workers.
    kwargs: dict = {"max_tasks_per_child": 1}
    if how == "fork":
        kwargs = {"mp_context": multiprocessing.get_context("fork")}
    ex = Executor(2, **kwargs)
    try:
        futures = [ex.submit(exits_at_five, i, code) for i in range(8)]
        crash = futures[5].exception(timeout=60)
        assert isinstance(crash, WorkerCrashedError), crash
        text = str(crash)
        assert f"died (exit code EXIT({code}))" in text and "lost its task" in text, text
        assert "never came back" in text and "Submit again" in text, text
        # its batch is named: each task alone with max_tasks_per_child, a few with "fork"
        alone = r"\(task 5 \(the 6th call submitted to this Executor\): exits_at_five\(5, "
        batched = r"\(tasks \d\.\.\d \(first: task \d"
        assert re.search(alone, text) or (how == "fork" and re.search(batched, text)), text
        for i, future in enumerate(futures):
            error = future.exception(timeout=60)
            assert isinstance(error, WorkerCrashedError) if error is not None else future.result() == i
        assert ex.submit(square, 3).result(timeout=60) == 9
    finally:
        ex.shutdown()  # returns: no lost task is left in the pool


def blocks_at_four_exits_at_five(x, fifo):
    if x == 4:
        with open(fifo) as f:  # nobody writes: held until the pool is stopped
            return f.read()
    if x == 5:
        os._exit(4)
    return x


@pytest.mark.timeout(90)
def test_a_crash_names_only_the_dead_workers_task_the_others_failed_as_the_pool_broke(tmp_path):
    # Executor(max_tasks_per_child=...) runs on a multiprocessing.Pool, stopped when a worker
    # dies: task 4, held in the other worker, and the tasks queued behind fail with it. Their
    # message said that the dead worker "lost its task (task 4 ...)", which it never ran.
    fifo = str(tmp_path / "never")
    os.mkfifo(fifo)
    with Executor(2, max_tasks_per_child=2) as ex:
        futures = [ex.submit(blocks_at_four_exits_at_five, i, fifo) for i in range(8)]
        errors = {i: f.exception(timeout=60) for i, f in enumerate(futures)}
    dead = str(errors[5])
    assert "lost its task" in dead and "exits_at_five(5, " in dead and "never came back" in dead, dead
    held = str(errors[4])
    assert isinstance(errors[4], WorkerCrashedError), held
    assert "lost its task" not in held and "never came back" not in held, held
    assert held.startswith("task 4 (the 5th call submitted to this Executor)"), held
    assert "failed because the pool broke" in held and "while running task 5 " in held, held
    for i, error in errors.items():
        if error is not None and i != 5:
            assert "lost its task" not in str(error), error


def raise_in_init():
    raise OSError("no database")


def exit_in_init():
    os._exit(4)


def test_an_initializer_that_kills_its_worker_is_named_not_a_task():
    with Executor(1, initializer=exit_in_init) as ex:
        with pytest.raises(WorkerCrashedError) as info:
            ex.submit(square, 2).result()
    text = str(info.value)
    assert "while running the initializer " in text and "exit_in_init" in text, text
    assert "exit code EXIT(4)" in text and "task" not in text, text


def test_an_initializer_that_kills_every_worker_names_its_exit_code_once():
    # loky lists each worker's exit code: "EXIT(4), EXIT(4)" in a message naming one worker.
    # (Both workers of the pool start, and both die so.)
    with Executor(2, initializer=exit_in_init) as ex:
        with pytest.raises(WorkerCrashedError) as info:
            ex.submit(square, 2).result()
    text = str(info.value)
    assert "exit code EXIT(4)" in text and "EXIT(4), EXIT(4)" not in text, text


def test_the_workers_exit_codes_are_named_once_each():
    from picklepool.executor.replies import exit_codes_named

    assert exit_codes_named("EXIT(4), EXIT(4)") == "exit code EXIT(4)"
    assert exit_codes_named("EXIT(4), SIGKILL(-9), EXIT(4)") == "exit codes EXIT(4), SIGKILL(-9)"


@pytest.mark.parametrize("how", ["warm", "fork", "max_tasks_per_child"])
def test_a_failing_initializer_breaks_a_pool_of_its_own_too(how):
    if how == "fork" and "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    kwargs: dict = {
        "warm": {},
        "fork": {"mp_context": multiprocessing.get_context("fork")},
        "max_tasks_per_child": {"max_tasks_per_child": 1},
    }[how]
    ex = Executor(1, initializer=raise_in_init, **kwargs)
    try:
        with pytest.raises(BrokenProcessPool) as info:
            ex.submit(square, 2).result()
        # what the standard library prints ("Exception in initializer:" and the
        # traceback) is on the error: the initializer, its exception, the worker's traceback
        text = str(info.value)
        assert "the initializer " in text and "raise_in_init" in text, text
        assert "raised OSError: no database in a worker; the executor is broken" in text, text
        cause = info.value.__cause__
        assert type(cause) is OSError and str(cause) == "no database"
        assert "the initializer" in "".join(cause.__notes__) and "task 0" not in "".join(cause.__notes__)
        assert 'raise OSError("no database")' in str(cause.__cause__)  # the worker's traceback
        with pytest.raises(BrokenProcessPool, match="raise_in_init.*no database") as later:
            ex.submit(square, 2)
        assert later.value.__cause__ is cause
    finally:
        ex.shutdown()


def test_a_dropped_executor_gives_its_own_pool_back():
    ex = Executor(1, max_tasks_per_child=5)
    worker = psutil.Process(ex.submit(pid_of_chunk, 0).result())
    alive = weakref.ref(ex)
    del ex
    waited = threading.Event()
    while alive() is not None:  # until the manager thread lets go of it (no timing asserted)
        gc.collect()
        waited.wait(0.01)
    worker.wait(timeout=60)  # already reaped by the pool's join when it was closed
    assert not worker.is_running()


def test_method_signatures_are_the_stdlibs():
    def params(f):
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]

    for name in ("submit", "map", "shutdown"):
        stdlib, ours = params(getattr(ProcessPoolExecutor, name)), params(getattr(Executor, name))
        if name == "map" and len(stdlib) < len(ours):  # Python 3.14's buffersize, on an older Python
            stdlib.append(("buffersize", inspect.Parameter.KEYWORD_ONLY, None))
        assert ours == stdlib


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("2", TypeError, "buffersize must be an integer or None"),
        (2.0, TypeError, "buffersize must be an integer"),
        (0, ValueError, "buffersize must be None or > 0"),
        (-1, ValueError, "buffersize must be None or > 0"),
    ],
)
def test_map_buffersize_errors_as_python_314(value, error, message):
    with Executor(1) as ex:
        with pytest.raises(error, match=f"^{message}"):
            ex.map(square, range(3), buffersize=value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"chunksize": "2"}, TypeError, r"chunksize must be an integer: map\(chunksize='2'\)"),
        ({"chunksize": 2.0}, TypeError, r"chunksize must be an integer: map\(chunksize=2.0\)"),
        ({"chunksize": 0}, ValueError, r"chunksize must be >= 1"),
        ({"timeout": "1"}, TypeError, r"timeout must be a number of seconds or None: map\(timeout='1'\)"),
    ],
)
def test_map_argument_errors_name_the_argument(kwargs, error, message):
    # a str chunksize was a ValueError saying "must be >= 1"; a str timeout, Python's
    # "unsupported operand type(s) for +"
    with Executor(1) as ex:
        with pytest.raises(error, match=f"^{message}"):
            ex.map(square, range(3), **kwargs)
        assert list(ex.map(square, range(3), timeout=5, chunksize=True)) == [0, 1, 4]  # as the stdlib's
        np = pytest.importorskip("numpy")
        assert list(ex.map(square, range(3), timeout=np.float32(5), chunksize=np.int64(2))) == [0, 1, 4]


@pytest.mark.parametrize("chunksize", [1, 3])
def test_map_buffersize_reads_the_iterable_as_results_are_read(chunksize):
    read = []

    def numbers():
        for i in itertools.count():
            read.append(i)
            yield i

    with Executor(2) as ex:
        results = ex.map(square, numbers(), chunksize=chunksize, buffersize=2)
        assert len(read) == 2 * chunksize  # two submissions ahead, before any result is read
        assert next(results) == 0
        assert len(read) == 3 * chunksize  # one more submitted before the first result was taken
        assert list(itertools.islice(results, 9)) == [i * i for i in range(1, 10)]
        results.close()  # an endless iterable: closing cancels what is not sent
        assert list(ex.map(add, range(7), range(5), buffersize=3)) == [0, 2, 4, 6, 8]


def started_and_wait(started, gate):
    with open(started, "w"):  # tells the test the task runs
        pass
    with open(gate) as f:  # blocks until the test opens the gate (a FIFO); it never does here
        return f.read()


def submit_running(ex, tmp_path):
    """Submit a task that runs until its worker is stopped; return its future once it runs."""
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    os.mkfifo(started)
    os.mkfifo(gate)
    running = ex.submit(started_and_wait, started, gate)
    with open(started) as f:  # the task runs now
        f.read()
    return running


@pytest.mark.parametrize("how", ["warm", "fork", "max_tasks_per_child"])
@pytest.mark.parametrize("method", ["terminate_workers", "kill_workers"])
def test_terminate_and_kill_workers_as_python_314(tmp_path, how, method):
    if how == "fork" and "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork here")
    kwargs = {
        "warm": {},
        "fork": {"mp_context": multiprocessing.get_context("fork")},
        "max_tasks_per_child": {"max_tasks_per_child": 3},
    }[how]
    ex = Executor(1, **kwargs)
    running = submit_running(ex, tmp_path)
    queued = [ex.submit(square, i) for i in range(3)]
    getattr(ex, method)()
    with pytest.raises(BrokenProcessPool):
        running.result()
    for f in queued:  # not started: cancelled, or (already handed to the pool) broken, as the stdlib's
        if not f.cancelled():
            with pytest.raises(BrokenProcessPool):
                f.result()
    with pytest.raises(RuntimeError, match="^cannot schedule new futures after shutdown"):
        ex.submit(square, 1)
    ex.shutdown()


def test_shutdown_without_wait_still_runs_the_submitted_calls():
    results = []
    for cls in (ProcessPoolExecutor, Executor):
        ex = cls(2)
        it = ex.map(square, range(8))
        chunked = ex.map(add, range(8), range(8), chunksize=3)
        ex.shutdown(wait=False)
        results.append((list(it), list(chunked)))
        ex.shutdown()  # again: allowed
    assert results[1] == results[0] == ([i * i for i in range(8)], [2 * i for i in range(8)])


def test_after_shutdown_new_work_raises_the_stdlibs_runtime_error():
    for cls in (ProcessPoolExecutor, Executor):
        ex = cls(1)
        with ex:
            assert ex.submit(square, 2).result() == 4
        with ex:  # re-entering is allowed; scheduling is not
            with pytest.raises(RuntimeError, match="^cannot schedule new futures after shutdown"):
                ex.submit(square, 2)
            with pytest.raises(RuntimeError, match="^cannot schedule new futures after shutdown"):
                ex.map(square, [1, 2])


def test_map_stops_at_the_shortest_iterable_as_the_stdlib():
    results = []
    for cls in (ProcessPoolExecutor, Executor):
        with cls(2) as ex:
            results.append(
                (
                    list(ex.map(add, range(7), range(3))),
                    list(ex.map(add, range(7), [10, 20, 30, 40, 50], chunksize=2)),
                    list(ex.map(square)),
                    list(ex.map(square, [], chunksize=4)),
                )
            )
    assert results[1] == results[0] == ([0, 2, 4], [10, 21, 32, 43, 54], [], [])


def test_a_dropped_executor_still_runs_what_was_submitted(monkeypatch):
    # The standard library's executor, dropped without shutdown, still runs what was
    # submitted to it. The executor is collected here before its manager thread first
    # looks at it (held at a gate), which is the window where nothing holds it.
    from picklepool.executor import futures as futures_module

    gate = threading.Event()
    manage = futures_module._manage

    def held_manage(*args):
        gate.wait()
        manage(*args)

    monkeypatch.setattr(futures_module, "_manage", held_manage)
    ex = Executor(1)
    futures = [ex.submit(square, i) for i in range(4)]
    alive = weakref.ref(ex)
    del ex
    gc.collect()
    gate.set()
    assert [f.result(timeout=60) for f in futures] == [0, 1, 4, 9]
    waited = threading.Event()
    while alive() is not None:  # once idle, it is let go (no timing asserted)
        gc.collect()
        waited.wait(0.01)


@pytest.mark.parametrize("how", ["warm", "max_tasks_per_child"])
def test_a_batch_taken_as_the_workers_are_stopped_breaks_and_never_runs(tmp_path, how, monkeypatch):
    # The manager thread has taken the queued calls off the queue when kill_workers()
    # lands: they must break (BrokenProcessPool), not fail with the closed pool's own
    # error nor run on the pool started after the kill.
    kwargs = {"warm": {}, "max_tasks_per_child": {"max_tasks_per_child": 3}}[how]
    entered, release = threading.Event(), threading.Event()
    real_send = Executor._send

    def send(self, works):
        if any(w.future is not running for w in works):
            entered.set()
            release.wait()
        return real_send(self, works)

    ex = Executor(1, **kwargs)
    running = submit_running(ex, tmp_path)
    monkeypatch.setattr(Executor, "_send", send)
    queued = ex.submit(square, 3)
    assert entered.wait(60)  # taken off the queue, about to be sent
    ex.kill_workers()
    release.set()
    with pytest.raises(BrokenProcessPool):
        running.result()
    with pytest.raises(BrokenProcessPool, match="stopped .* as the call was about to be sent"):
        queued.result(timeout=60)
    ex.shutdown()


@pytest.mark.parametrize("method", ["terminate_workers", "kill_workers"])
def test_a_call_running_when_the_workers_are_stopped_says_so_not_segfault(tmp_path, method, monkeypatch):
    # loky reports the kill as a dead worker (TerminatedWorkerError) or as its own shutdown
    # (ShutdownExecutorError), whichever its manager thread sees first; both say "stopped".
    # Here the deaths are seen first, every time: the shutdown waits for them.
    from concurrent.futures import wait

    from picklepool import lokycompat

    real = lokycompat.shutdown

    def after_the_deaths_are_seen(executor, kill):
        wait([job.future for job in list(executor._pending_work_items.values())], timeout=30)
        real(executor, kill)

    monkeypatch.setattr(lokycompat, "shutdown", after_the_deaths_are_seen)
    ex = Executor(1)
    running = submit_running(ex, tmp_path)
    getattr(ex, method)()
    with pytest.raises(WorkerCrashedError) as info:
        running.result()
    message = str(info.value)
    assert "the workers were stopped (terminate_workers, kill_workers or Ctrl-C)" in message, message
    assert "segfault" not in message
    ex.shutdown()


class Held:
    """A result, function or argument whose freeing a test watches (weakref-able)."""

    def method(self):
        return 1


class HeldList(list):
    """A list whose freeing a test watches: its builtin methods are bound to it."""


def make_held(_i):
    return Held()


def _gc_off():
    """Only reference counting frees objects while it is held: a kept cycle shows."""
    was = gc.isenabled()
    gc.disable()
    return was


@pytest.mark.parametrize("cls", [ProcessPoolExecutor, Executor])
def test_a_finished_call_does_not_keep_its_function_or_arguments(cls):
    # CPython issue 16284 (test_no_stale_references): once a call is done, the executor
    # holds neither its function nor its arguments, though its future is still held.
    was = _gc_off()
    try:
        with cls(1) as ex:
            held, arg = Held(), Held()
            refs = weakref.ref(held), weakref.ref(arg)
            fut = ex.submit(held.method)
            other = ex.submit(id, arg)
            del held, arg
            assert fut.result() == 1 and other.result()
            assert ex.submit(square, 2).result() == 4  # the executor has moved on
            assert [r() for r in refs] == [None, None]
    finally:
        if was:
            gc.enable()


def _closure_over(obj):
    return lambda: obj.method()


@pytest.mark.parametrize("how", ["bound method", "closure", "builtin method"])
def test_a_finished_call_frees_what_its_function_holds_with_no_later_submit(how):
    # CPython's test_no_stale_references exactly: no submit after the call. A bound method's
    # object stayed held (executor.functions' note of what it holds, kept to the next batch)
    # until the executor's next submit, which the test above made; a closure's cells and a
    # builtin's bound object (a list's append) until the executor ended (its table of
    # functions held every function it had pickled).
    was = _gc_off()
    try:
        with Executor(1) as ex:
            assert ex.submit(square, 2).result() == 4  # warm: the call below is not the first
            held = HeldList() if how == "builtin method" else Held()
            ref = weakref.ref(held)
            if how == "bound method":
                fut = ex.submit(held.method)
            elif how == "closure":
                fut = ex.submit(_closure_over(held))
            else:
                fut = ex.submit(held.append, 1)  # (a builtin bound to the list: no weak reference)
            del held
            fut.result()
            assert ref() is None
    finally:
        if was:
            gc.enable()


_NAMESPACE_CODE = """
def scaled(x):
    return x * len(data)
"""


def test_a_function_of_an_exec_namespace_does_not_keep_the_namespace_once_dropped():
    # The executor's table of functions held, by a weakref.finalize on the function, the
    # objects its key names, its globals among them: the namespace held the function by its
    # name, so neither ever died, and the namespace's data lived as long as the process (a
    # notebook's or a tool's exec namespace; __main__'s at the exit, its __del__ never run).
    # (The standard library's pool cannot pickle such a function: the process stays as is.)
    with Executor(1) as ex:
        namespace = {"data": HeldList([1, 2])}
        exec(_NAMESPACE_CODE, namespace)
        ref = weakref.ref(namespace["data"])
        assert ex.submit(namespace["scaled"], 3).result() == 6
        del namespace
        gc.collect()
        assert ref() is None


@pytest.mark.parametrize("cls", [ProcessPoolExecutor, Executor])
@pytest.mark.parametrize("chunksize", [1, 3])
def test_map_does_not_keep_a_result_it_yielded(cls, chunksize):
    # CPython issue 14406 (test_free_reference): the iterator keeps no reference to the
    # results it yielded, so a caller dropping each one frees it.
    was = _gc_off()
    try:
        with cls(2) as ex:
            alive = []
            for obj in ex.map(make_held, range(7), chunksize=chunksize):
                ref = weakref.ref(obj)
                del obj
                alive.append(ref() is not None)
            assert alive == [False] * 7
    finally:
        if was:
            gc.enable()


_AT_EXIT = """
    import fcntl, sys, threading
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from picklepool import Executor

    def task(i, path):
        with open(path) as f:
            fcntl.flock(f, fcntl.LOCK_SH)  # waits until the parent has begun to exit
        sys.stdout.write(f"{{i}}\\n")  # one write: lines of two workers do not mix
        sys.stdout.flush()

    if __name__ == "__main__":
        cls = {{"std": ProcessPoolExecutor, "ours": Executor}}[{cls!r}]
        lock = open({path!r}, "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        ex = cls(2, mp.get_context({method!r}))
        ex.submit(print, "started", flush=True).result()
        # a hook registered after the executors' own runs before them (last in, first out)
        threading._register_atexit(lambda: fcntl.flock(lock, fcntl.LOCK_UN))
        for i in range(12):
            ex.submit(task, i, {path!r})
        if {drop!r}:
            del ex
"""


@pytest.mark.parametrize(
    ("cls", "method"),
    [pytest.param("std", "fork", marks=FORK), pytest.param("ours", "fork", marks=FORK), ("ours", "spawn")],
)
@pytest.mark.parametrize("drop", [False, True])
def test_calls_queued_when_the_interpreter_exits_still_run(tmp_path, cls, method, drop):
    # As the standard library's exit hook: an executor not shut down runs every call
    # submitted to it before the interpreter exits (they were lost: the pools were
    # stopped, or multiprocessing terminated the fork pool's workers, with calls queued).
    path = str(tmp_path / "lock")
    done = run_python(_AT_EXIT.format(cls=cls, path=path, method=method, drop=drop))
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == sorted(["started", *map(str, range(12))]), done.stderr


_SUBMIT_AT_EXIT = """
    import atexit
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from picklepool import Executor

    @atexit.register
    def run_last():
        try:
            ex.submit(id, None)
        except RuntimeError as exc:
            print("RuntimeError:", exc)

    if __name__ == "__main__":
        cls = {{"std": ProcessPoolExecutor, "ours": Executor}}[{cls!r}]
        ex = cls(2, mp.get_context({method!r}), **{kwargs!r})
        ex.submit(id, 42).result()
"""


@pytest.mark.parametrize(
    ("cls", "method", "kwargs"),
    [
        pytest.param("std", "fork", {}, marks=FORK),
        pytest.param("ours", "fork", {}, marks=FORK),
        ("ours", "spawn", {"max_tasks_per_child": 2}),
        ("ours", "spawn", {}),
    ],
)
def test_submit_while_the_interpreter_exits_raises_on_every_pool(cls, method, kwargs):
    done = run_python(_SUBMIT_AT_EXIT.format(cls=cls, method=method, kwargs=kwargs))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("RuntimeError: cannot schedule new futures after"), done.stdout


_SHARED: list = []  # set in each worker by keep_shared, the initializer


def keep_shared(queue, counter):
    _SHARED[:] = [queue, counter]


def report_to_shared(x):
    queue, counter = _SHARED
    with counter.get_lock():
        counter.value += 1
    queue.put(x * x)
    return x


def fail_with_shared(queue):
    queue.put("initializer ran")
    raise ValueError("error in initializer")


def _contexts():
    # not "forkserver": its server process outlives the test (as multiprocessing keeps it)
    return [None, *(m for m in ("spawn", "fork") if m in multiprocessing.get_all_start_methods())]


@pytest.mark.parametrize(
    ("cls", "method", "kwargs"),
    [
        (ProcessPoolExecutor, None, {}),  # the stdlib's own, where cheap
        *((Executor, method, {}) for method in _contexts()),
        # (not the stdlib's: it hangs once a worker is replaced with tasks queued, gh-115634)
        (Executor, "spawn", {"max_tasks_per_child": 2}),
    ],
    ids=str,
)
def test_initargs_may_hold_multiprocessing_queues_locks_and_values(cls, method, kwargs):
    # ProcessPoolExecutor hands its initargs to each worker as it starts it, so they may
    # hold objects that travel only by inheritance (CPython's FailingInitializer tests
    # pass a Queue): they failed with "cannot send a multiprocessing.queues.Queue".
    context = multiprocessing.get_context(method) if method else None
    maker = context or multiprocessing
    queue, counter = maker.Queue(), maker.Value("i", 0)
    with cls(2, context, keep_shared, (queue, counter), **kwargs) as ex:
        assert list(ex.map(report_to_shared, range(6))) == list(range(6))
        assert ex.submit(report_to_shared, 6).result() == 6
    assert sorted(queue.get(timeout=60) for _ in range(7)) == [i * i for i in range(7)]
    assert counter.value == 7


class SharedHolder:
    """Keeps what a worker shares, as an attribute (ProcessPoolExecutor passes it at start)."""

    def __init__(self, queue, total):
        self.queue, self.total = queue, total


_held: list[SharedHolder] = []


def keep_holder(holder):
    _held[:] = [holder]


def report_to_holder(x):
    holder = _held[0]
    holder.queue.put(x)
    holder.total[0] += x
    return x


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("cls", "method"), [(ProcessPoolExecutor, "spawn"), (Executor, None), (Executor, "spawn")]
)
def test_initargs_holding_them_in_an_object_or_a_raw_shared_array_go_at_the_workers_start(cls, method):
    # an object's attribute and sharedctypes.RawArray/RawValue travel only by inheritance
    # too: they failed with "cannot pickle args[2][0].queue" / "cannot pickle 'mmap.mmap'"
    context = multiprocessing.get_context(method) if method else None
    maker = context or multiprocessing
    holder = SharedHolder(maker.Queue(), maker.RawArray("i", 1))
    with cls(1, context, keep_holder, (holder,)) as ex:
        assert list(ex.map(report_to_holder, range(4))) == list(range(4))
    assert sorted(holder.queue.get(timeout=60) for _ in range(4)) == list(range(4))
    assert holder.total[0] == 6


@pytest.mark.parametrize("method", _contexts())
def test_a_failing_initializer_with_inherited_initargs_breaks_the_executor(method):
    context = multiprocessing.get_context(method) if method else None
    queue = (context or multiprocessing).Queue()
    ex = Executor(2, context, fail_with_shared, (queue,))
    with pytest.raises(BrokenProcessPool, match="fail_with_shared") as info:
        ex.submit(square, 2).result()
    assert "error in initializer" in str(info.value.__cause__)
    with pytest.raises(BrokenProcessPool):
        ex.submit(square, 2)
    assert queue.get(timeout=60) == "initializer ran"  # the queue the worker inherited
    ex.shutdown()


def test_inherited_initargs_and_warm_only_options_raise():
    lock = multiprocessing.get_context("spawn").Lock()
    with pytest.raises(ValueError, match="initargs holding a multiprocessing queue, lock"):
        Executor(1, None, keep_shared, (lock, None), idle_worker_timeout=10)


def _counting(cls):
    class Counting(cls):
        """A subclass that wraps submit, as one that logs or carries a context does."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.seen = []

        def submit(self, fn, /, *args, **kwargs):
            inner = getattr(fn, "func", fn)  # a chunk: partial(_process_chunk, fn)
            self.seen.append((getattr(inner, "__name__", None), args))
            return super().submit(fn, *args, **kwargs)

    return Counting


@pytest.mark.parametrize("chunksize", [1, 3])
def test_map_of_a_subclass_goes_through_its_submit_as_the_stdlibs(chunksize):
    # ProcessPoolExecutor.map submits each call (each chunk) with self.submit, so a
    # subclass wrapping submit sees them; picklepool's map packed them without it (the
    # subclass saw none)
    seen, results = [], []
    for cls in (ProcessPoolExecutor, Executor):
        with _counting(cls)(2) as ex:
            results.append(list(ex.map(add, range(7), range(10, 17), chunksize=chunksize)))
            seen.append(list(ex.seen))
        with pytest.raises(RuntimeError, match="^cannot schedule new futures after shutdown"):
            ex.map(square, [1])
    assert results[1] == results[0] == [2 * i + 10 for i in range(7)]
    assert seen[1] == seen[0] and len(seen[0]) == -(-7 // chunksize)


def test_map_of_a_subclass_with_a_buffersize_submits_as_it_is_read():
    with _counting(Executor)(1) as ex:
        it = ex.map(square, itertools.count(), buffersize=2)  # endless: read as the results are
        assert [next(it) for _ in range(5)] == [0, 1, 4, 9, 16]
        assert len(ex.seen) == 7  # two ahead of the five read
        it.close()


def test_a_futures_repr_and_type_name_are_the_stdlibs():
    # they showed picklepool's private class: <_Future at 0x... state=finished returned int>
    shown = []
    for cls in (ProcessPoolExecutor, Executor):
        with cls(1) as ex:
            done, failed = ex.submit(square, 2), ex.submit(divmod, 1, 0)
            assert done.result() == 4 and failed.exception() is not None
            shown.append(
                [type(done).__name__] + [re.sub("0x[0-9a-f]+", "0x", repr(f)) for f in (done, failed)]
            )
    assert shown[1] == shown[0]
    assert shown[0][1:] == [
        "<Future at 0x state=finished returned int>",
        "<Future at 0x state=finished raised ZeroDivisionError>",
    ]


def _fail_on_three(x):
    if x == 3:
        raise ValueError(f"bad {x}")
    return x


@pytest.mark.parametrize(
    ("chunksize", "named"), [(1, "_fail_on_three(3)"), (2, "_fail_on_three(2), _fail_on_three(3)")]
)
def test_a_failing_call_of_a_subclass_s_map_is_named_as_the_user_wrote_it(chunksize, named):
    # map through a subclass's submit sends partial(_process_chunk, f) over argument tuples,
    # as the standard library: the error's note named that, "partial(_process_chunk,
    # <function _fail_on_three at 0x...>)(((3,),))", not the call the user's code made
    with _counting(Executor)(2) as ex, pytest.raises(ValueError, match="bad 3") as info:
        list(ex.map(_fail_on_three, range(6), chunksize=chunksize))
    note = "\n".join(info.value.__notes__)
    assert f"call submitted to this Executor): {named}" in note, note
    assert "_process_chunk" not in note
    if chunksize == 2:
        assert "(a chunk of 2 of map's calls)" in note
