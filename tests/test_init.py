"""The public names: one door, pinned."""

import picklepool

EXPECTED = {
    "Executor",
    "Parallel",
    "PicklingError",
    "SharedState",
    "StateFileError",
    "StateSignatureError",
    "TaskExitError",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "cpu_count",
    "delayed",
    "effective_n_jobs",
    "parallel_backend",
    "parallel_config",
    "register_joblib_backend",
    "register_pickler",
    "shutdown",
    "wrap_non_picklable_objects",
}


def test_all_is_pinned():
    assert set(picklepool.__all__) == EXPECTED


def test_every_name_in_all_is_importable():
    for name in picklepool.__all__:
        assert getattr(picklepool, name) is not None


def test_exceptions_extend_the_stdlib():
    import pickle
    from concurrent.futures.process import BrokenProcessPool

    assert issubclass(picklepool.PicklingError, pickle.PicklingError)
    assert issubclass(picklepool.WorkerCrashedError, BrokenProcessPool)
    assert issubclass(picklepool.TaskTimeoutError, TimeoutError)
    assert issubclass(picklepool.StateFileError, ValueError)
    assert issubclass(picklepool.StateSignatureError, picklepool.StateFileError)


def test_the_executor_package_lists_and_gives_its_names_before_they_are_imported():
    # picklepool.executor loads Parallel, effective_n_jobs and shutdown as first used:
    # dir() (a REPL's completion) did not list them until then
    from tests.conftest import run_python

    result = run_python(
        """
        import picklepool.executor as ex
        listed = [name for name in ex.__all__ if name in dir(ex)]
        from picklepool.executor import Parallel, delayed, effective_n_jobs, shutdown
        print(listed, Parallel.__name__, effective_n_jobs(1), shutdown() is None)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['Parallel', 'delayed', 'effective_n_jobs', 'shutdown'] Parallel 1 True"
