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
