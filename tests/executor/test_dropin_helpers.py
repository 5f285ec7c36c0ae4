"""joblib's small helpers: delayed's metadata, effective_n_jobs, errors and timing at n_jobs=1."""

from __future__ import annotations

import gc
import multiprocessing
import weakref

import pytest

import picklepool
from picklepool import Parallel, delayed, effective_n_jobs, parallel_config


def square(x):
    """Square *x*."""
    return x * x


def test_delayed_keeps_the_functions_metadata():
    d = delayed(square)
    assert d.__name__ == "square"
    assert d.__wrapped__ is square
    assert d.__doc__ == "Square *x*."
    assert d(3) == (square, (3,), {})
    assert delayed(abs).__name__ == "abs"


class _Model:
    def predict(self, x):
        return x + 1


@pytest.mark.parametrize(
    ("n_jobs", "return_as"), [(1, "list"), (2, "list"), (2, "generator"), (2, "generator_unordered")]
)
def test_delayed_holds_the_programs_callable_no_longer_than_its_call(n_jobs, return_as):
    # delayed() reuses the function it made last; kept after the call, it held a bound
    # method's object (a model, its arrays, a file it owns), a closure's values and, through a
    # function of the script, __main__'s globals, whose __del__ then never ran at exit
    model = _Model()
    gone = weakref.ref(model)
    out = Parallel(n_jobs=n_jobs, return_as=return_as)(delayed(model.predict)(i) for i in range(4))
    assert sorted(out) == [1, 2, 3, 4]
    del model, out
    gc.collect()
    assert gone() is None


def _batches_alive() -> int:
    from picklepool.executor.replies import Pending

    return sum(type(o) is Pending for o in gc.get_objects())


def test_a_calls_batches_go_by_reference_counting_not_at_the_next_collection():
    # each batch's future held its completion callback, which held the batch, which held the
    # future back (with the reply's bytes) and, through the callback's call, the call's
    # functions: a cycle, kept until the GC ran. A warm one-task call reads its reply in the
    # calling thread (executor.lanes), which runs the callbacks: nothing is left unwinding
    model = _Model()
    Parallel(n_jobs=2)(delayed(model.predict)(i) for i in range(2))  # (its lanes open after it)
    Parallel(n_jobs=2)([delayed(model.predict)(0)])
    gone = weakref.ref(model)
    gc.collect()
    before = _batches_alive()
    gc.disable()
    try:
        out = Parallel(n_jobs=2)([delayed(model.predict)(1)])
        del model
        assert out == [2]
        assert _batches_alive() == before
    finally:
        gc.enable()
    gc.collect()
    assert gone() is None


class _Held:
    """An argument of the program's (a model, an array), watched through a weak reference."""


def _fail_at_one(held, i):
    if i == 1:
        raise ValueError("task 1 failed")
    return i


@pytest.mark.parametrize("return_as", ["list", "generator", "generator_unordered"])
def test_a_tasks_error_the_handler_keeps_holds_none_of_the_calls_arguments(return_as):
    # The error's traceback held the call's loop (its frame): the batch whose task failed,
    # the batches still in flight and the items pulled and not sent, with their arguments,
    # alive as long as the program kept the error (joblib lets them go in generator mode)
    watched = []

    def held():
        value = _Held()
        watched.append(weakref.ref(value))
        return value

    tasks = (delayed(_fail_at_one)(held(), i) for i in range(6))
    with pytest.raises(ValueError, match="task 1 failed") as caught:
        list(Parallel(n_jobs=2, batch_size=1, return_as=return_as)(tasks))
    del tasks
    gc.collect()
    assert caught.value.__traceback__ is not None  # still held, as a handler would
    assert [ref() for ref in watched] == [None] * len(watched)


_RESULTS: list[weakref.ref] = []  # the results made in this process (unpickled, or by a thread's task)


class _Result:
    """A task's result (an array, a fitted model), watched where it is made or unpickled."""

    def __reduce__(self):
        return (_result, ())


def _result():
    made = _Result()
    _RESULTS.append(weakref.ref(made))
    return made


def _result_until_five(i):
    if i == 5:
        raise ValueError("task 5 failed")
    return _result()


@pytest.mark.parametrize("backend", ["loky", "threading"])
@pytest.mark.parametrize("return_as", ["list", "generator", "generator_unordered"])
def test_a_tasks_error_the_handler_keeps_holds_none_of_the_results_before_it(backend, return_as):
    # The error's traceback held the list of the results read before it (list), the batch
    # of results given last (generators), and the results waiting for an earlier one: as
    # many results (arrays, fitted models) alive as the call had read, for as long as the
    # program kept the error. pre_dispatch=1: each batch is read before the next is sent,
    # so tasks 0..4 are read before task 5 fails.
    _RESULTS.clear()
    parallel = Parallel(n_jobs=2, backend=backend, batch_size=1, pre_dispatch=1, return_as=return_as)
    with pytest.raises(ValueError, match="task 5 failed") as caught:
        for result in parallel(delayed(_result_until_five)(i) for i in range(8)):
            del result  # (the loop's variable would hold the last one)
    gc.collect()
    assert caught.value.__traceback__ is not None  # still held, as a handler would
    assert len(_RESULTS) == 5
    assert [ref() for ref in _RESULTS] == [None] * 5


class _Progress:
    def __init__(self):
        self.seen = []

    def __call__(self, done, total):
        self.seen.append(done)


def test_parallels_settings_hold_the_programs_objects_no_longer_than_its_instance():
    # the settings a Parallel resolved were kept for the next Parallel of the same arguments,
    # with the progress callable (and its object): alive after the call and the instance,
    # until 64 other settings had pushed them out. (An initializer's arguments stay while its
    # warm pool does: its workers were started with them, as loky's executor keeps them.)
    held = _Progress()
    gone = weakref.ref(held)
    parallel = Parallel(n_jobs=2, progress=held)
    assert parallel(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    assert held.seen and held.seen[-1] == 3
    del held, parallel
    gc.collect()
    assert gone() is None


def test_effective_n_jobs_follows_parallel_config():
    assert effective_n_jobs(2) == 2
    with parallel_config(backend="threading", n_jobs=3):
        assert effective_n_jobs(None) == 3
    with pytest.raises(ValueError, match="n_jobs=0"):
        effective_n_jobs(0)


def test_timeout_error_is_multiprocessings_too():
    assert issubclass(picklepool.TaskTimeoutError, multiprocessing.TimeoutError)


def _record(log, i):
    log.append(i)
    if i == 0:
        raise ValueError("task 0 fails")
    return i


@pytest.mark.parametrize("return_as", ["list", "generator"])
def test_n_jobs_1_raises_before_any_later_task_runs(return_as):
    log: list[int] = []
    with pytest.raises(ValueError, match="task 0 fails"):
        list(Parallel(n_jobs=1, return_as=return_as)(delayed(_record)(log, i) for i in range(5)))
    assert log == [0]


@pytest.mark.parametrize("n_jobs", [None, -1, 3])
def test_the_sequential_backend_counts_one_worker_as_joblib(n_jobs):
    # joblib's SequentialBackend.effective_n_jobs is 1 whatever n_jobs says: code that
    # splits its work by effective_n_jobs() must not make 3 slices for one worker.
    with parallel_config(backend="sequential"):
        assert effective_n_jobs(n_jobs) == 1
        assert Parallel(n_jobs=n_jobs)._effective_n_jobs() == 1
    assert Parallel(n_jobs=n_jobs, backend="sequential")._effective_n_jobs() == 1
    assert Parallel(n_jobs=3, backend="sequential").n_jobs == 3  # the setting stays as given
