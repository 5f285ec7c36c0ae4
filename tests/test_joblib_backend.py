"""joblib (and scikit-learn) on picklepool: ``parallel_config(backend="picklepool")``."""

from __future__ import annotations

import contextlib
import os
import pickle
import threading

import pytest

joblib = pytest.importorskip("joblib")
np = pytest.importorskip("numpy")

import picklepool  # noqa: E402
from picklepool import SharedState  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def registered():
    picklepool.register_joblib_backend()


@pytest.fixture(autouse=True)
def stop_joblib_workers():
    """joblib's own loky workers (the comparison runs) are stopped after each test."""
    yield
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


def pid(_x=None):
    return os.getpid()


def inner(n):
    return joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(n))


def total(a):
    return float(a.sum()), a.flags.writeable


def read_state(state, k):
    with state as value:
        return value["w"] * k


def test_importing_registers_nothing():
    code = "import picklepool, picklepool.joblib, joblib.parallel as p; print('picklepool' in p.BACKENDS)"
    from tests.conftest import run_python

    assert run_python(code).stdout.strip() == "False"


def test_parallel_runs_in_workers_with_joblib_semantics():
    with joblib.parallel_config(backend="picklepool", n_jobs=2):
        pids = joblib.Parallel()(joblib.delayed(pid)(i) for i in range(20))
        assert os.getpid() not in pids
        gen = joblib.Parallel(return_as="generator")(joblib.delayed(abs)(-i) for i in range(30))
        assert list(gen) == list(range(30))
        unordered = joblib.Parallel(return_as="generator_unordered")(
            joblib.delayed(abs)(-i) for i in range(30)
        )
        assert sorted(unordered) == list(range(30))
        assert joblib.Parallel()(joblib.delayed(inner)(3) for _ in range(2)) == [[0, 1, 2]] * 2  # nested
        with pytest.raises(ValueError, match="invalid literal"):
            joblib.Parallel()(joblib.delayed(int)(s) for s in ["1", "x"])
        # joblib's own rules: sharedmem runs on threads here
        assert set(joblib.Parallel(require="sharedmem")(joblib.delayed(pid)() for _ in range(4))) == {
            os.getpid()
        }
    with joblib.parallel_config(backend="picklepool"):  # n_jobs=None: 1, in this process
        assert joblib.Parallel()(joblib.delayed(pid)() for _ in range(3)) == [os.getpid()] * 3
    with joblib.parallel_config(backend="picklepool", n_jobs=2, pickler="cloudpickle"):
        assert joblib.Parallel()(joblib.delayed(lambda x: x + 1)(i) for i in range(3)) == [1, 2, 3]
    with pytest.raises(ValueError, match="unknown parameter"):
        with joblib.parallel_config(backend="picklepool", n_jobs=2, picklr="pickle"):
            pass


def test_shared_memory_arrays_and_shared_state():
    big = np.arange(300_000, dtype=np.float64)  # 2.4 MB: above max_nbytes, through /dev/shm
    state = SharedState({"w": 2.0})
    with joblib.parallel_config(backend="picklepool", n_jobs=2):
        sums = joblib.Parallel()(joblib.delayed(total)(big) for _ in range(4))
        assert sums == [(float(big.sum()), False)] * 4  # mapped read-only, as joblib's memmaps
        assert joblib.Parallel()(joblib.delayed(read_state)(state, k) for k in range(4)) == [0, 2, 4, 6]


class Tally:
    """A cache shared by estimators (clone keeps it), guarded by an RLock."""

    def __init__(self):
        self.lock = threading.RLock()
        self.seen = 0

    def __deepcopy__(self, memo):
        return self


def _sklearn_setup():
    pytest.importorskip("sklearn")
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    class LockedLogistic(ClassifierMixin, BaseEstimator):
        def __init__(self, C=1.0, tally=None):
            self.C = C
            self.tally = tally

        def fit(self, X, y):
            with self.tally.lock:
                self.tally.seen += 1
            self.model_ = LogisticRegression(C=self.C, max_iter=300).fit(X, y)
            self.classes_ = self.model_.classes_
            return self

        def predict(self, X):
            return self.model_.predict(X)

    X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    return LockedLogistic, LogisticRegression, X, y


def test_grid_search_and_cross_val_score_match_loky():
    LockedLogistic, LogisticRegression, X, y = _sklearn_setup()
    from sklearn.model_selection import GridSearchCV, cross_val_score

    def run(backend):
        with joblib.parallel_config(backend=backend):
            gs = GridSearchCV(LogisticRegression(max_iter=300), {"C": [0.01, 0.1, 1, 10]}, cv=4, n_jobs=2)
            gs.fit(X, y)
            cv = cross_val_score(LogisticRegression(max_iter=300), X, y, cv=5, n_jobs=2)
        return gs.best_params_, list(gs.cv_results_["mean_test_score"]), list(cv)

    assert run("picklepool") == run("loky")


def test_estimator_holding_an_rlock_runs_on_picklepool_not_on_loky():
    LockedLogistic, _, X, y = _sklearn_setup()
    from sklearn.model_selection import GridSearchCV

    grid = {"C": [0.1, 1]}
    with joblib.parallel_config(backend="picklepool"):
        gs = GridSearchCV(LockedLogistic(tally=Tally()), grid, cv=3, n_jobs=2).fit(X, y)
    assert gs.best_params_["C"] in (0.1, 1)
    with joblib.parallel_config(backend="loky"):
        with pytest.raises(pickle.PicklingError, match="Could not pickle") as info:
            GridSearchCV(LockedLogistic(tally=Tally()), grid, cv=3, n_jobs=2).fit(X, y)
    assert "RLock" in str(info.value.__cause__)


CTRL_C_CHILD = """
import os, sys
import joblib, picklepool

def block(ready, gate):
    with open(ready, "w") as f:
        f.write(f"{os.getpid()}\\n")
    with open(gate) as f:             # a FIFO nobody writes to: blocks until killed
        f.read()

if __name__ == "__main__":
    picklepool.register_joblib_backend()
    with joblib.parallel_config(backend="picklepool", n_jobs=2):
        joblib.Parallel(batch_size=1)(joblib.delayed(block)(sys.argv[1], sys.argv[2]) for _ in range(6))
"""


@pytest.mark.timeout(90)
def test_ctrl_c_stops_a_joblib_call_and_its_workers_at_once(tmp_path):
    import signal
    import subprocess
    import sys
    import textwrap

    import psutil

    ready, gate = tmp_path / "ready", tmp_path / "gate"
    os.mkfifo(ready)
    os.mkfifo(gate)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CTRL_C_CHILD), str(ready), str(gate)],
        stderr=subprocess.DEVNULL,
    )
    try:
        workers: set[int] = set()
        while len(workers) < 2:  # both workers run a task that never ends by itself
            with open(ready) as f:
                workers.update(int(line) for line in f)
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) != 0  # not after the six tasks: they never end
        procs = []
        for pid in workers:
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass  # already gone
        _, alive = psutil.wait_procs(procs, timeout=10)
        assert not alive, f"workers {[p.pid for p in alive]} outlived the interrupted call"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def fail_at_two(i):
    if i == 2:
        raise ValueError(f"bad {i}")
    return i


@pytest.mark.parametrize("managed", [False, True])
def test_errors_name_the_task_of_the_joblib_call(registered, managed):
    # Numbering restarts at each call, also in a `with joblib.Parallel() as p` block,
    # whose calls share one executor (its second call's task 2 was named "task 7").
    with joblib.parallel_config(backend="picklepool", n_jobs=2):
        p = joblib.Parallel(batch_size=1)
        with p if managed else contextlib.nullcontext():
            p(joblib.delayed(abs)(-i) for i in range(5))
            with pytest.raises(ValueError, match="bad 2") as info:
                p(joblib.delayed(fail_at_two)(i) for i in range(5))
    assert "task 2: fail_at_two(2) of this joblib.Parallel call" in "".join(info.value.__notes__)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (fail_at_two, "is the function fail_at_two itself"),  # found in the parent
        (joblib.delayed(5)(1), r"calls 5 \(type int\), which is not callable"),
        ((abs, 3, {}), r"arguments must be a tuple or list \(here int\)"),  # found by the worker
    ],
)
@pytest.mark.parametrize(("at", "n"), [(0, 1), (3, 5), (15, 20)])
def test_an_item_that_is_not_a_call_is_named_by_its_index_in_the_joblib_call(bad, why, at, n):
    # The executor's own count (joblib's config frames, earlier calls) named "item 10"
    # for item 3; a bad item is named by its index, as picklepool's own Parallel names it.
    items = [joblib.delayed(abs)(-i) for i in range(n)]
    items[at] = bad
    with joblib.parallel_config(backend="picklepool", n_jobs=2):
        for _ in range(2):
            with pytest.raises(TypeError, match=f"^item {at} of the iterable given to Parallel .*{why}"):
                joblib.Parallel()(items)
        assert joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def test_a_bad_item_error_crosses_processes_as_a_type_error():
    with pytest.raises(TypeError) as info:
        picklepool.Parallel(n_jobs=2)([picklepool.delayed(abs)(1), (5, (1,), {})])
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is TypeError and str(again) == str(info.value)


def fail_at_one(i):
    if i == 1:
        raise KeyError(i)
    return i


@pytest.mark.parametrize("managed", [False, True])
def test_a_failed_call_leaves_nothing_for_the_next_call_of_its_parallel(managed):
    # batch_size=1, pre_dispatch=1: task 0's callback sends task 1 and keeps task 2 split
    # off ahead (joblib's _ready_batches); task 1 fails before anything takes it. joblib
    # 1.6 dispatches that batch in the next call of the same Parallel, on every backend:
    # the next call returned [2, 10, 11].
    with joblib.parallel_config(backend="picklepool", n_jobs=2):
        p = joblib.Parallel(batch_size=1, pre_dispatch=1)
        with p if managed else contextlib.nullcontext():
            with pytest.raises(KeyError):
                p(joblib.delayed(fail_at_one)(i) for i in range(10))
            assert p(joblib.delayed(fail_at_one)(i) for i in [10, 11]) == [10, 11]


def test_a_joblib_call_made_while_holding_the_rlock_of_what_it_sends_runs():
    # A thread-safe class running joblib over its own state under its lock. joblib
    # dispatches later batches from its callbacks (picklepool's manager thread), which
    # waited for the caller's RLock while the caller waited for the results: a hang.
    tally = Tally()
    tally.seen = 3
    results = []

    def call():
        with joblib.parallel_config(backend="picklepool", n_jobs=2):
            with tally.lock:
                results.extend(
                    joblib.Parallel(batch_size=1, pre_dispatch="2")(
                        joblib.delayed(seen_plus)(tally, k) for k in range(8)
                    )
                )

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(30)
    assert not caller.is_alive(), "the call waited for its own thread's lock"
    assert results == [3 + k for k in range(8)]


def seen_plus(tally, k):
    return tally.seen + k


def test_each_call_of_a_with_parallel_block_sees_the_main_globals_of_its_moment():
    # joblib pickles every batch anew, so the second call of a `with joblib.Parallel()`
    # block sees a global of __main__ rebound (and a class attribute set) after the first.
    # The backend's executor lives for the block and pickled each function once: the
    # second call got [[1, 1], ...] again. A task's change to its worker's copy (STORE)
    # does not reach the next call either.
    from tests.conftest import run_python

    code = """
        import joblib, picklepool
        picklepool.register_joblib_backend()
        G = 1
        STORE = []
        class C:
            attr = 1
        def read(x):
            STORE.append(x)
            return [G, C.attr, len(STORE) > 0]
        if __name__ == "__main__":
            with joblib.parallel_config(backend="picklepool", n_jobs=2):
                with joblib.Parallel(batch_size=1) as p:
                    first = p(joblib.delayed(read)(i) for i in range(4))
                    G = 2
                    C.attr = 3
                    second = p(joblib.delayed(read)(i) for i in range(4))
            print(first, second, STORE)
    """
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == f"{[[1, 1, True]] * 4} {[[2, 3, True]] * 4} []"


def seventh(_):
    import decimal

    return str(decimal.Decimal(1) / decimal.Decimal(7))


def test_every_batch_of_a_joblib_call_runs_with_the_callers_decimal_context():
    # joblib dispatches the batches after the first from its completion callbacks, in the
    # executor's manager thread: those read that thread's default context (28 digits),
    # so one task of the call rounded to 5 digits and the others to 28.
    import decimal

    with decimal.localcontext() as ctx:
        ctx.prec = 5
        with joblib.parallel_config(backend="picklepool", n_jobs=2):
            out = joblib.Parallel(batch_size=1, pre_dispatch=1)(joblib.delayed(seventh)(i) for i in range(8))
    assert out == ["0.14286"] * 8


def backend_inside(i):
    with joblib.parallel_config(backend="picklepool", n_jobs=2):
        from joblib.parallel import get_active_backend

        results = joblib.Parallel()(joblib.delayed(abs)(-k) for k in range(i + 3))
        return type(get_active_backend()[0]).__name__, results


def test_a_task_can_use_the_picklepool_backend_as_a_loky_task_uses_loky():
    # joblib's loky tasks may enter parallel_config(backend="loky"): a task on picklepool
    # may enter backend="picklepool" (it raised joblib's "Invalid backend: picklepool",
    # the name being registered in the parent only)
    with joblib.parallel_config(backend="picklepool", n_jobs=2):
        got = joblib.Parallel()(joblib.delayed(backend_inside)(i) for i in range(2))
    assert got == [("PicklepoolBackend", [0, 1, 2]), ("PicklepoolBackend", [0, 1, 2, 3])]


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"pickler": "nope"}, "joblib.parallel_config(backend='picklepool', ...)"),
        ({"max_worker_memory": "lots"}, "joblib.parallel_config(backend='picklepool', ...)"),
        ({"idle_worker_timeout": -1}, "joblib.parallel_config(backend='picklepool', ...)"),
        ({"inner_max_num_threads": "x"}, "joblib.Parallel(...) or joblib.parallel_config(...)"),
        ({"mmap_mode": "rw"}, "joblib.Parallel(...) or joblib.parallel_config(...)"),
        ({"temp_folder": 3}, "joblib.Parallel(...) or joblib.parallel_config(...)"),
    ],
)
def test_a_bad_setting_names_the_joblib_config_it_was_given_in(config, where):
    # was "(from argument)": the arguments of the Executor the backend makes, not the user's
    with pytest.raises(ValueError) as info:  # noqa: PT012 - either line may raise
        with joblib.parallel_config(backend="picklepool", n_jobs=2, **config):
            joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(3))
    assert f"(from {where})" in str(info.value)
    assert next(iter(config)) in str(info.value)


def wait_for_go(started, go):
    with open(started, "w") as f:
        f.write("s")
    with open(go) as f:
        return f.read()


def fail_at_first(i, error=LookupError):
    if i == 1:
        raise error("task 1 fails")
    return i


@pytest.mark.parametrize("error", [LookupError, TimeoutError])
def test_a_failing_joblib_call_leaves_other_threads_calls_on_the_shared_pool_running(tmp_path, error):
    # joblib aborts a failed call; the backend killed picklepool's shared warm pool there
    # (as joblib's loky backend kills its own): another thread's Executor task running on
    # it failed with WorkerCrashedError ("usually a segfault"). A task's own TimeoutError
    # (a socket's, a Future's) still did: it was taken for joblib's timeout= passing.
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    os.mkfifo(started)
    os.mkfifo(go)
    box = {}

    def other():
        with picklepool.Executor(2) as ex:
            try:
                box["other"] = ex.submit(wait_for_go, started, go).result(timeout=60)
            except Exception as e:  # noqa: BLE001 - shown by the assertion
                box["other"] = repr(e)

    thread = threading.Thread(target=other)
    thread.start()
    with open(started) as f:
        f.read()  # the other thread's task runs
    with joblib.parallel_config(backend="picklepool", n_jobs=2), pytest.raises(error):
        joblib.Parallel()(joblib.delayed(fail_at_first)(i, error) for i in range(4))
    try:  # its task still reads the FIFO (a killed one would leave no reader: ENXIO)
        fd = os.open(go, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"go")
        os.close(fd)
    finally:
        thread.join(60)
    assert box == {"other": "go"}


def stuck(_x):
    threading.Event().wait()  # for ever


@pytest.mark.timeout(120)
def test_joblibs_timeout_kills_the_stuck_tasks_and_names_them():
    # As joblib's loky backend, joblib's timeout= kills the workers running the call's
    # tasks. joblib raises multiprocessing's TimeoutError, not the built-in one the
    # backend looked for: the stuck tasks ran on, and the next call waited for them for
    # ever (here, both workers). joblib's bare TimeoutError() now names them.
    import multiprocessing

    with joblib.parallel_config(backend="picklepool", n_jobs=2):
        joblib.Parallel()(joblib.delayed(pid)(i) for i in range(2))  # the workers are up
        with pytest.raises(multiprocessing.TimeoutError) as info:
            joblib.Parallel(timeout=1)(joblib.delayed(stuck)(i) for i in range(2))
        assert len(joblib.Parallel()(joblib.delayed(pid)(i) for i in range(4))) == 4
    note = " ".join(getattr(info.value, "__notes__", []))
    assert "timeout=1 s passed before" in note and "stuck(" in note, note
    assert "workers were killed" in note


def _inner_call():
    """A joblib call on picklepool made where no worker can (or, as under loky, should) start."""
    import warnings

    picklepool.register_joblib_backend()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with joblib.parallel_config(backend="picklepool", n_jobs=2):
            pids = joblib.Parallel()(joblib.delayed(pid)(i) for i in range(4))
    return pids, os.getpid(), [str(w.message) for w in caught]


def _below_joblib_threads(_x):
    return _inner_call()


def test_a_call_in_a_daemonic_process_runs_sequentially_and_warns_as_under_loky():
    # In a multiprocessing pool's worker (or a dask worker: daemonic processes) joblib's
    # loky backend warns and runs the call with n_jobs=1; picklepool's failed with
    # "AssertionError: daemonic processes are not allowed to have children".
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        pids, worker, messages = pool.apply(_inner_call)
    assert set(pids) == {worker}
    assert len(messages) >= 1 and "inside a daemonic multiprocessing worker" in messages[0], messages
    assert "n_jobs=1" in messages[0]


def test_a_call_below_joblibs_threads_runs_sequentially_and_warns_as_under_loky():
    # A task of joblib's threading backend (nesting level 1, not the main thread):
    # loky runs a call there with n_jobs=1 and warns; picklepool's started workers.
    with joblib.parallel_config(backend="threading", n_jobs=2):
        ((pids, caller, messages),) = joblib.Parallel()(
            joblib.delayed(_below_joblib_threads)(0) for _ in range(1)
        )
    assert set(pids) == {caller} == {os.getpid()}
    assert messages and "below threads" in messages[0], messages


REGISTERED_IN_THE_PARENT = """
import joblib, picklepool
from joblib.parallel import register_parallel_backend
from picklepool.joblib import PicklepoolBackend

def inner(n):  # the joblib backend by name, as the loop runs it in the parent
    return joblib.Parallel(n_jobs=2, backend="picklepool")(joblib.delayed(abs)(-i) for i in range(n))

def inner_alias(n):  # registered under a name of the user's own
    with joblib.parallel_config(backend="pp", n_jobs=2):
        return joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(n))

if __name__ == "__main__":
    picklepool.register_joblib_backend()
    register_parallel_backend("pp", PicklepoolBackend)
    for f in (inner, inner_alias):
        loop = [f(i) for i in range(3)]
        # a fresh pool: its workers ran no joblib-backend call, which registered it there
        picklepool.shutdown()
        got = picklepool.Parallel(n_jobs=2)(picklepool.delayed(f)(i) for i in range(3))
        print(got == loop == [[], [0], [0, 1]], got)
"""


def test_a_task_runs_the_joblib_backend_the_parent_registered_as_the_loop_does():
    # joblib's registry is per process: a task's joblib.Parallel(backend="picklepool")
    # raised "Invalid backend: picklepool" in workers no joblib-backend call had reached.
    from tests.conftest import run_python

    result = run_python(REGISTERED_IN_THE_PARENT, timeout=120)
    assert result.stdout.split("\n")[:2] == ["True [[], [0], [0, 1]]"] * 2, result.stdout + result.stderr


def test_joblibs_delayed_of_a_result_never_called_says_delayed_f_x():
    # joblib.delayed(f(x)) (no task arguments after it): named as the function
    # "delayed.<locals>.delayed_function itself", with advice to delay that
    with pytest.raises(
        TypeError,
        match=r"item 1 .* is delayed\(9\) \(type int\), which is not callable"
        r".*delayed\(f\)\(x\), not delayed\(f\(x\)\)",
    ):
        picklepool.Parallel(n_jobs=2)([joblib.delayed(abs)(-1), joblib.delayed(abs(-9))])
