"""joblib's ``timeout=`` on the threading backend: the call fails at the deadline, the task runs on.

As in joblib 1.6, a task past the timeout makes the call raise in the caller (here the
``TaskTimeoutError`` loky's timeouts raise, naming the task and its function); the
thread running it cannot be stopped, so the task finishes in the background, while
the call's tasks not started yet are cancelled. Late tasks are held by events, never
by sleeps: each test releases them, and waits for them, before it ends.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading

import pytest

from picklepool import Parallel, TaskTimeoutError, delayed, parallel_config
from tests.conftest import run_python

TIMEOUT = 0.3  # the tasks that time out are held until released: any value works


class Held:
    """Tasks ``held`` wait for :meth:`release`; the others return at once. Records what ran."""

    def __init__(self, held: set[int]) -> None:
        self.held = held
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.finished: list[int] = []
        self.all_held_done = threading.Semaphore(0)

    def __call__(self, i: int) -> int:
        with self.lock:
            self.started.append(i)
        if i in self.held:
            assert self.released.wait(60)
            with self.lock:
                self.finished.append(i)
            self.all_held_done.release()
        return i

    def release_and_wait(self) -> None:
        """Release the held tasks and wait until every one that started has returned."""
        self.released.set()
        for _ in range(len(set(self.started) & self.held)):
            assert self.all_held_done.acquire(timeout=60)


@pytest.fixture
def task():
    made: list[Held] = []

    def make(*held: int) -> Held:
        made.append(Held(set(held)))
        return made[-1]

    yield make
    for t in made:  # a failing test must not leave a task waiting for its release
        t.released.set()


@pytest.mark.parametrize(
    "chosen, config",
    [
        ({"backend": "threading"}, {}),
        ({"prefer": "threads"}, {}),
        ({"require": "sharedmem"}, {}),
        ({}, {"backend": "threading"}),
        ({}, {"prefer": "threads", "timeout": TIMEOUT}),
    ],
    ids=["backend", "prefer", "require", "config", "config-timeout"],
)
def test_a_late_task_fails_the_call_naming_it_while_it_still_runs(task, chosen, config):
    t = task(1)
    given = {"timeout": TIMEOUT} if "timeout" not in config else {}
    with parallel_config(**config):
        p = Parallel(n_jobs=2, batch_size=1, **chosen, **given)
        with pytest.raises(TaskTimeoutError) as info:
            p(delayed(t)(i) for i in range(4))
    err = info.value
    assert isinstance(err, TimeoutError) and isinstance(err, multiprocessing.TimeoutError)
    msg = str(err)
    assert msg.startswith(f"task 1: Held(1) ran longer than timeout={TIMEOUT}s"), msg
    assert "its thread keeps running until the task returns" in msg
    assert "Raise the timeout, or make the task faster." in msg
    assert t.finished == []  # raised at the deadline, not once the task returned
    t.release_and_wait()
    assert t.finished == [1]  # the leftover thread finished once released


def test_tasks_not_started_at_the_timeout_never_start(task):
    t = task(0, 1)  # both threads held: every other task is queued when the deadline comes
    with pytest.raises(TaskTimeoutError, match=r"task [01]: Held\([01]\) ran longer"):
        Parallel(n_jobs=2, backend="threading", batch_size=1, timeout=TIMEOUT)(
            delayed(t)(i) for i in range(20)
        )
    t.release_and_wait()
    assert sorted(t.started) == [0, 1]
    assert sorted(t.finished) == [0, 1]


def test_the_rest_of_a_late_tasks_batch_never_starts(task):
    t = task(0)
    with pytest.raises(TaskTimeoutError, match=r"task 0: Held\(0\)"):
        # 10 tasks: one full pull of batch_size * n_jobs, so tasks 0-4 are one batch (joblib's
        # rule splits a short last pull finer)
        Parallel(n_jobs=2, backend="threading", batch_size=5, timeout=TIMEOUT)(
            delayed(t)(i) for i in range(10)
        )
    t.release_and_wait()
    assert 0 in t.started and not {1, 2, 3, 4} & set(t.started)  # the other batch may have run


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_a_generator_raises_on_iteration(task, return_as):
    t = task(2)
    gen = Parallel(n_jobs=2, backend="threading", batch_size=1, timeout=TIMEOUT, return_as=return_as)(
        delayed(t)(i) for i in range(4)
    )
    got = []
    with pytest.raises(TaskTimeoutError, match=r"task 2: Held\(2\) ran longer"):
        for x in gen:
            got.append(x)
    assert 2 not in got
    if return_as == "generator":
        assert got == [0, 1][: len(got)]
    t.release_and_wait()


@pytest.mark.parametrize("return_as", ["list", "generator", "generator_unordered"])
def test_a_call_that_finishes_in_time_returns_normally(return_as):
    out = Parallel(n_jobs=2, backend="threading", timeout=30, return_as=return_as)(
        delayed(abs)(-i) for i in range(50)
    )
    assert sorted(out) == list(range(50))


def test_the_next_calls_after_a_timeout_work(task):
    t = task(1)
    with Parallel(n_jobs=2, backend="threading", batch_size=1, timeout=TIMEOUT) as p:
        with pytest.raises(TaskTimeoutError):
            p(delayed(t)(i) for i in range(4))
        assert p(delayed(abs)(-i) for i in range(6)) == list(range(6))  # the same pool, both threads
    again = Parallel(n_jobs=2, backend="threading", timeout=30)
    assert again(delayed(abs)(-i) for i in range(6)) == list(range(6))
    t.release_and_wait()


def test_n_jobs_1_enforces_the_timeout_as_on_loky(task):
    # n_jobs=1 runs sequentially on every backend, the timeout enforced as for loky's
    # n_jobs=1 (its task interrupted once it runs Python code again): a documented
    # difference from joblib, which ignores it there
    t = task(1)
    with pytest.raises(TaskTimeoutError, match=r"task 1: Held\(1\) ran longer.* was interrupted"):
        Parallel(n_jobs=1, backend="threading", timeout=TIMEOUT)(delayed(t)(i) for i in range(3))
    assert t.started == [0, 1]


def test_n_jobs_1_with_a_timeout_runs_its_tasks_in_the_callers_thread():
    # They ran in a helper thread: an sqlite3 connection of the caller raised
    # ProgrammingError, threading.local values were missing, signal.signal refused to
    # run; without the timeout (and in joblib, which ignores it there) all work. In a
    # script's main thread, with no SIGALRM of its own (pytest-timeout has one: hence
    # a script), the deadline is a SIGALRM, as in a worker, so a task blocked in a
    # wait is interrupted too.
    proc = run_python(
        """
        import signal, sqlite3, threading
        from picklepool import Parallel, TaskTimeoutError, delayed

        BOUND = threading.local()
        BOUND.value = "mine"
        conn = sqlite3.connect(":memory:")
        conn.execute("create table t(x)")

        def task(i):
            conn.execute("insert into t values (?)", (i,))  # only in the thread that made it
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)  # only in the main thread
            return (BOUND.value, conn.execute("select count(*) from t").fetchone()[0])

        print(Parallel(n_jobs=1, timeout=30)(delayed(task)(i) for i in range(2)))
        never = threading.Event()
        try:
            Parallel(n_jobs=1, timeout=0.3)(delayed(never.wait)(s) for s in (0, 600))
        except TaskTimeoutError as exc:
            print(str(exc).split(" ran ")[0])
        print(signal.getsignal(signal.SIGALRM) == signal.SIG_DFL, signal.getitimer(signal.ITIMER_REAL))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[('mine', 1), ('mine', 2)]",
        "task 1: Event.wait(600)",
        "True (0.0, 0.0)",  # the alarm is given back
    ]
    assert proc.stderr == ""


def test_a_task_that_takes_the_alarm_for_itself_is_still_late():
    # A task using SIGALRM itself (a timeout library: its own handler, signal.alarm(n),
    # then signal.alarm(0)) cancels the timer that times it, in the caller's thread
    # (n_jobs=1) as in a worker: its late result counted as on time ([0.6]).
    proc = run_python(
        """
        import signal, threading
        from picklepool import Parallel, TaskTimeoutError, delayed

        def own_alarm(wait):
            old = signal.signal(signal.SIGALRM, lambda *a: None)
            signal.alarm(60)
            try:
                threading.Event().wait(wait)  # past the call's timeout
            finally:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)
            return wait

        for n_jobs in (1, 2):
            try:
                print(Parallel(n_jobs=n_jobs, timeout=0.2)(delayed(own_alarm)(w) for w in (0, 0.6)))
            except TaskTimeoutError as exc:
                print(str(exc).split(" ran ")[0], "cancelled" in str(exc))
        print(signal.getsignal(signal.SIGALRM) == signal.SIG_DFL, signal.getitimer(signal.ITIMER_REAL))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "task 1: own_alarm(0.6) True",
        "task 1: own_alarm(0.6) True",
        "True (0.0, 0.0)",
    ]


def test_an_alarm_that_comes_as_a_task_raises_leaves_the_tasks_own_error():
    # A task that raised just as its deadline passed (its own timeout, the call's): the
    # alarm's handler ran in picklepool's code after the task, and the call raised this
    # module's private _Timeout (about 1 in 50 such races; here made exact).
    proc = run_python(
        """
        import ctypes, itertools, operator, os, signal
        from picklepool import Parallel, delayed

        def raise_as_the_alarm_comes():
            # SIGALRM by libc's kill (Python's own runs the handler at once), then an
            # error, all in C: the handler runs only once the task has ended
            kill = ctypes.CDLL(None).kill
            calls = [(kill, os.getpid(), signal.SIGALRM), (os.kill, os.getpid(), -1)]
            list(itertools.starmap(operator.call, calls))

        for n_jobs in (1, 2):
            try:
                Parallel(n_jobs=n_jobs, timeout=30)(delayed(raise_as_the_alarm_comes)() for _ in range(1))
            except BaseException as exc:
                print(type(exc).__module__, type(exc).__name__)
        print(signal.getsignal(signal.SIGALRM) == signal.SIG_DFL, signal.getitimer(signal.ITIMER_REAL))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["builtins OSError", "builtins OSError", "True (0.0, 0.0)"]


def test_a_task_left_running_does_not_hold_the_interpreter_at_exit():
    # A task that never returns: the script still ends (a hang would show as run_python's
    # deadline passing), as joblib's daemon pool threads let it.
    result = run_python(
        """
        import threading
        from picklepool import Parallel, TaskTimeoutError, delayed

        never = threading.Event()

        def task(i):
            if i == 1:
                never.wait()
            return i

        try:
            Parallel(n_jobs=2, backend="threading", timeout=0.2)(delayed(task)(i) for i in range(4))
        except TaskTimeoutError:
            print("timed out")
        print(Parallel(n_jobs=2, backend="threading")(delayed(abs)(-i) for i in range(3)))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["timed out", "[0, 1, 2]"]


class _Deadline(Exception):
    """A program's own timeout exception, raised by its SIGALRM-style signal handler."""


class _RingsWhilePickled:
    """An argument whose pickling is where the program's signal lands (deterministically)."""

    def __reduce__(self):
        signal.raise_signal(signal.SIGUSR1)
        return (_RingsWhilePickled, ())


def test_a_signal_handlers_exception_while_a_batch_is_pickled_is_the_programs_own(monkeypatch):
    # the classic signal-handler deadline (timeout-decorator's): landing while picklepool
    # pickled a batch, it became "PicklingError: tasks 0..0: my deadline passed", which
    # `except Deadline:` did not catch
    def handler(signum, frame):
        raise _Deadline("my deadline passed")

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(_Deadline, match="my deadline passed"):
            Parallel(n_jobs=2)(delayed(repr)(_RingsWhilePickled()) for _ in range(2))
    finally:
        signal.signal(signal.SIGUSR1, previous)


class _WaitsWhenLoaded:
    """A client that reconnects as it is unpickled, and never gets an answer (in a worker)."""

    def __init__(self):
        import os

        self.parent = os.getpid()

    def __setstate__(self, state):
        import os

        self.__dict__.update(state)
        if os.getpid() != self.parent:
            threading.Event().wait()


class _WaitsWhenPickled:
    def __reduce__(self):
        threading.Event().wait()
        return (_WaitsWhenPickled, ())


def _returns(x, arg=None):
    return _WaitsWhenPickled() if x == "waits" else x


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("items", "stage"),
    [
        ([(1, None), (2, _WaitsWhenLoaded()), (3, None)], "loading the batch's functions and arguments"),
        ([(1, None), ("waits", None), (3, None)], "pickling the results"),
    ],
)
def test_the_timeout_covers_loading_the_arguments_and_pickling_the_results(items, stage):
    # Only the function's own run was timed: a call whose argument waited in its
    # __setstate__, or whose result waited in its __reduce__, waited for ever (joblib's
    # timeout fails it); the worker is killed past the timeout and the call fails
    with pytest.raises(TaskTimeoutError, match=f"task 1: _returns.*: {stage} in the worker took longer"):
        Parallel(n_jobs=2, timeout=0.5, batch_size=1)(delayed(_returns)(x, a) for x, a in items)
    assert Parallel(n_jobs=2, timeout=5)(delayed(_returns)(i) for i in range(4)) == [0, 1, 2, 3]
