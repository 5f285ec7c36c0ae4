"""Nesting as joblib does it: threads at level 1, sequential below, joblib's names and levels."""

from __future__ import annotations

import os
import threading
import warnings

import joblib
import psutil
import pytest

from picklepool import Parallel, cpu_count, delayed, parallel_backend, parallel_config
from picklepool.settings import MAX_DEPTH
from tests.conftest import helper, run_python


def _busy_processes(root: int) -> int:
    """Worker processes below *root* now (loky's and picklepool's helpers left out)."""
    n = 0
    for proc in psutil.Process(root).children(recursive=True):
        try:
            if not helper(proc):
                n += 1
        except psutil.Error:
            continue
    return n


def _leaf(root: int) -> int:
    return _busy_processes(root)


def _middle(root: int, backend: str | None) -> list[int]:
    return Parallel(n_jobs=-1, backend=backend)(delayed(_leaf)(root) for _ in range(4))


@pytest.mark.parametrize("inner", [None, "loky"])
def test_nested_minus_one_never_runs_more_processes_than_cores(monkeypatch, inner):
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "2")  # at most 2 cores, whatever the machine
    cores = cpu_count()
    counts = Parallel(n_jobs=-1)(delayed(_middle)(os.getpid(), inner) for _ in range(cores))
    # inner None: threads of each worker. inner "loky": each of the `cores` workers gets
    # cores // cores = 1 core, so its -1 call runs in it (without the share: cores +
    # cores**2 processes)
    assert 1 <= max(max(c) for c in counts) <= cores


def _levels(level: int) -> list:
    here = threading.get_ident()
    s = Parallel()._settings()
    if level == 3:
        return [(s.backend, s.n_workers)]
    inner = Parallel(n_jobs=2)(delayed(_ran_in)(level + 1) for _ in range(1))[0]
    return [(s.backend, s.n_workers, inner[0] == here)] + inner[1]


def _ran_in(level: int):
    return threading.get_ident(), _levels(level)


def test_depth_is_bounded_and_pool_threads_get_joblibs_nested_default():
    assert MAX_DEPTH == 1
    with parallel_config(backend="threading", n_jobs=2, pickler="pickle"):
        out = _levels(0)
        assert Parallel()._settings().pickler == "pickle"
    # level 0: the config's pool of 2 threads. Its threads (level 1) do not inherit the
    # caller's backend and n_jobs: threading with n_jobs=1 unless given (the explicit
    # n_jobs=2 starts 2 threads); level 2: sequential, in the calling thread.
    assert out == [
        ("threading", 2, False),
        ("threading", 1, False),
        ("sequential", 1, True),
        ("sequential", 1),
    ]


def _pickler_here():
    return Parallel()._settings().pickler


def test_other_settings_of_the_callers_config_reach_pool_threads():
    with parallel_config(backend="threading", n_jobs=2, pickler="pickle"):
        assert Parallel()(delayed(_pickler_here)() for _ in range(2)) == ["pickle", "pickle"]


def _recurse():
    return Parallel()(delayed(_recurse)() for _ in range(2))


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_unbounded_recursion_ends_in_recursion_error_not_a_bomb(backend):
    threads = threading.active_count()
    with parallel_config(backend=backend, n_jobs=2), pytest.raises(RecursionError):
        _recurse()
    # threading: one pool of 2 at level 0, 2 threads below it at level 1, then sequential
    assert threading.active_count() <= threads + 2 + 4
    assert _busy_processes(os.getpid()) <= cpu_count()  # no process below level 1


def _inner_loky():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = Parallel(n_jobs=2, backend="loky")(delayed(os.getpid)() for _ in range(2))
    return out, [str(w.message) for w in seen], [w.filename for w in seen]


def test_process_backend_below_threads_runs_in_the_thread_with_a_warning():
    results = Parallel(n_jobs=2, backend="threading")(delayed(_inner_loky)() for _ in range(2))
    for pids, messages, where in results:
        assert pids == [os.getpid()] * 2
        assert (
            len(messages) == 1 and "Loky-backed parallel loops cannot be nested below threads" in messages[0]
        )
        assert where == [__file__]  # the inner call's line (it named picklepool's parallel.py)


def _inner_loky_block():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with Parallel(n_jobs=2, backend="loky") as p:
            out = [p(delayed(os.getpid)() for _ in range(2)) for _ in range(3)]
    return out, [str(w.message) for w in seen]


def test_a_with_block_below_threads_warns_once_as_joblib():
    # joblib warns as the block sets its backend up, not again at each call of the block
    results = Parallel(n_jobs=2, backend="threading")(delayed(_inner_loky_block)() for _ in range(1))
    for calls, messages in results:
        assert calls == [[os.getpid()] * 2] * 3
        assert len(messages) == 1 and "cannot be nested below threads" in messages[0], messages


def _recursive_backend_info(limit=3):
    """joblib's test_nested_parallelism_limit helper, unchanged."""
    with Parallel(n_jobs=2) as p:
        this_level = [(type(p._backend).__name__, p._backend.nesting_level)]
        if limit == 0:
            return this_level
        results = p(delayed(_recursive_backend_info)(limit=limit - 1) for i in range(1))
        return this_level + results[0]


@pytest.mark.parametrize("context", [parallel_config, parallel_backend])
@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_backend_names_and_nesting_levels_are_joblibs(context, backend):
    with context(backend, n_jobs=2):
        info = _recursive_backend_info()
    assert info == [
        (backend.title() + "Backend", 0),
        ("ThreadingBackend", 1),
        ("SequentialBackend", 2),
        ("SequentialBackend", 2),
    ]


def _in_worker():
    """What a worker's calls get: backends chosen, processes started (none), pids used."""
    me = os.getpid()
    plain, two = Parallel()._settings(), Parallel(n_jobs=2)._settings()
    pids = Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(4))
    with parallel_config(backend="loky"):  # given in the worker: honoured
        configured = Parallel(n_jobs=2)._settings()
    explicit = Parallel(n_jobs=2, backend="loky")._settings()
    # a sequential call keeps its caller's backend for the calls of its tasks
    below_sequential = Parallel(n_jobs=1)(delayed(_settings_of)(2) for _ in range(1))[0]
    return (
        (plain.backend, plain.n_workers),
        (two.backend, two.n_workers),
        set(pids) == {me},
        len(psutil.Process().children()),
        (configured.backend, configured.n_workers),
        (explicit.backend, explicit.n_workers),
        below_sequential,
    )


def _settings_of(n_jobs):
    s = Parallel(n_jobs=n_jobs)._settings()
    return s.backend, s.n_workers


def test_a_workers_calls_run_on_its_threads_unless_a_backend_is_given_there():
    with parallel_config(backend="loky", n_jobs=2):  # the caller's config stays in the caller
        out = Parallel()(delayed(_in_worker)() for _ in range(2))
    for plain, two, same_pid, children, configured, explicit, below_sequential in out:
        assert plain == ("threading", 1)  # joblib's n_jobs=None: 1
        assert two == ("threading", 2)
        assert same_pid and children == 0  # threads of the worker, no process started
        assert configured == explicit == ("loky", 2)
        assert below_sequential == ("threading", 2)


def test_a_sequential_call_does_not_change_what_nested_calls_get():
    with parallel_config(backend="threading", n_jobs=2):
        assert Parallel(n_jobs=1)(delayed(_settings_of)(None) for _ in range(2)) == [("threading", 2)] * 2
    assert Parallel(n_jobs=1)(delayed(_settings_of)(2) for _ in range(1)) == [("loky", 2)]


def _config_level(context, backend):
    with context(backend) as entered:
        chosen = entered["backend"] if context is parallel_config else entered[0]
        return chosen.name, chosen.nesting_level


@pytest.mark.parametrize("context", [parallel_config, parallel_backend])
@pytest.mark.parametrize("outer", ["loky", "threading", "multiprocessing"])
def test_entering_a_config_gives_the_backend_with_its_nesting_level(context, outer):
    assert _config_level(context, "threading") == ("threading", 0)
    out = Parallel(n_jobs=2, backend=outer)(delayed(_config_level)(context, "loky") for _ in range(2))
    assert out == [("loky", 1)] * 2
    with parallel_config(n_jobs=2) as entered:  # no backend given: the one a call here would use
        assert (entered["backend"].name, entered["backend"].nesting_level, entered["n_jobs"]) == (
            "loky",
            0,
            2,
        )


def test_entering_a_config_starts_nothing():
    result = run_python(
        """
        import threading, psutil
        from picklepool import parallel_backend, parallel_config
        before = threading.active_count()
        with parallel_config("loky", n_jobs=2) as c, parallel_backend("threading") as (b, n):
            print(len(psutil.Process().children()), threading.active_count() - before,
                  c["backend"].name, c["backend"].nesting_level, b.name, n)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "0", "loky", "0", "threading", "-1"]


def _joblib_here():
    backend, n_jobs = joblib.parallel.get_active_backend()
    pids = joblib.Parallel(n_jobs=2)(joblib.delayed(os.getpid)() for _ in range(4))
    return type(backend).__name__, backend.nesting_level, n_jobs, set(pids) == {os.getpid()}


@pytest.mark.parametrize("timeout", [None, 30])  # with one, threading's tasks run on watched threads
@pytest.mark.parametrize("outer", ["loky", "threading"])
def test_joblib_code_in_a_task_nests_as_in_a_joblib_worker(outer, timeout):
    out = Parallel(n_jobs=2, backend=outer, timeout=timeout)(delayed(_joblib_here)() for _ in range(2))
    assert out == [("ThreadingBackend", 1, None, True)] * 2  # joblib's threads, no loky pool
    assert type(joblib.parallel.get_active_backend()[0]).__name__ == "LokyBackend"  # caller untouched


def test_a_worker_whose_tasks_do_not_use_joblib_does_not_import_it():
    result = run_python(
        """
        import sys
        from picklepool import Parallel, delayed

        def loaded(_):
            return "joblib" in sys.modules

        if __name__ == "__main__":
            print(Parallel(n_jobs=2)(delayed(loaded)(i) for i in range(4)))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[False, False, False, False]"


def _cross_validate_here():
    from sklearn.datasets import make_classification
    from sklearn.model_selection import cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    X, y = make_classification(n_samples=60, random_state=0)
    scores = cross_val_score(DecisionTreeClassifier(random_state=0), X, y, cv=3, n_jobs=-1)
    started = {p.pid for p in psutil.Process().children(recursive=True)} - before
    return len(scores), len(started)


def test_scikit_learn_n_jobs_in_a_task_runs_on_the_workers_threads():
    pytest.importorskip("sklearn")
    out = Parallel(n_jobs=2)(delayed(_cross_validate_here)() for _ in range(2))
    assert out == [(3, 0), (3, 0)]  # joblib's threads at level 1: no loky pool per worker


def _picklepool_inside_joblib():
    with Parallel() as p:
        default = (type(p._backend).__name__, p._effective_n_jobs())
    with Parallel(n_jobs=-1) as p:
        all_cores = (type(p._backend).__name__, p._backend.nesting_level)
    children = len(psutil.Process().children(recursive=True))
    return default, all_cores, children


def test_picklepool_code_in_a_joblib_worker_nests_as_in_a_picklepool_worker():
    # a joblib loky worker is level 1 for picklepool too: threads (or the caller's thread
    # for n_jobs=1), not a new loky pool in each joblib worker
    from joblib.externals.loky import reusable_executor

    try:
        in_joblib = joblib.Parallel(n_jobs=2, backend="loky")(
            joblib.delayed(_picklepool_inside_joblib)() for _ in range(2)
        )
    finally:
        executor = getattr(reusable_executor, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=True, kill_workers=True)
    in_picklepool = Parallel(n_jobs=2)(delayed(_picklepool_inside_joblib)() for _ in range(2))
    # n_jobs not given: 1, in the calling thread, as in a picklepool worker
    assert [default for default, _, _ in in_joblib] == [default for default, _, _ in in_picklepool]
    # -1: joblib does not say what share of the cores its worker has, so all of them, on
    # threads of that worker (as joblib's own nested calls); no process is started
    expected = [(("ThreadingBackend", 1), 0)] * 2
    assert [(all_cores, children) for _, all_cores, children in in_joblib] == expected


def test_joblib_first_imported_in_a_tasks_body_nests_from_that_task_on():
    # fresh workers that have not loaded joblib: the task's own import frames its calls
    result = run_python(
        """
        import os
        from picklepool import Parallel, delayed

        def task(i):
            import joblib

            backend, n_jobs = joblib.parallel.get_active_backend()
            pids = joblib.Parallel(n_jobs=2)(joblib.delayed(os.getpid)() for _ in range(2))
            return type(backend).__name__, backend.nesting_level, set(pids) == {os.getpid()}

        if __name__ == "__main__":
            import sys

            assert "joblib" not in sys.modules
            for row in Parallel(n_jobs=2, batch_size=1)(delayed(task)(i) for i in range(4)):
                print(*row)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == ["ThreadingBackend 1 True"] * 4
    assert "did not stop" not in result.stderr


def test_a_joblib_loky_pool_a_task_started_does_not_hold_its_workers_exit():
    # A task that runs joblib's own loky backend (parallel_config(backend="loky")) leaves
    # that pool in the worker. Nothing told it to stop (joblib's worker tells it at its
    # exit, picklepool's loky did not know of it): the worker's exit joined its workers
    # for ever, picklepool killed it 5 s later and said "did not stop within 5 s".
    result = run_python(
        """
        import os
        import joblib
        from picklepool import Executor, Parallel, delayed

        def task(i):
            with joblib.parallel_config(backend="loky", n_jobs=2):
                return sum(joblib.Parallel()(joblib.delayed(abs)(-k) for k in range(i + 3)))

        if __name__ == "__main__":
            print(Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)))
            with Executor(2) as ex:
                print(ex.submit(task, 2).result())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[3,", "6]", "10"]
    assert "did not stop" not in result.stderr
    assert "failed with traceback" not in result.stderr  # a pool half torn down, spawning


def test_a_picklepool_pool_a_task_started_does_not_hold_its_workers_exit():
    # A task's own Parallel(backend="loky") leaves a warm pool in the worker, whose workers
    # then run lanes (long loky jobs) until 10 idle seconds pass. A worker told to stop
    # calls loky's _python_exit() itself, which joined that pool's manager thread, waiting
    # for the lanes: picklepool's exit hooks, run later, never ended them in time, and the
    # parent killed the worker 5 s later, saying "did not stop within 5 s of shutdown".
    result = run_python(
        """
        import picklepool
        from picklepool import Parallel, delayed

        def inner(j):
            return j

        def task(i):
            return Parallel(n_jobs=2, backend="loky")(delayed(inner)(j) for j in range(2))

        if __name__ == "__main__":
            print(Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)))
            picklepool.shutdown()
            print("stopped")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[[0, 1], [0, 1]]", "stopped"]
    assert "did not stop" not in result.stderr, result.stderr
