"""The conformance suite: the same Parallel semantics on every backend.

Each test runs once per backend in ``BACKENDS``; a backend that needs a service
(dask) adds itself through the ``backend`` fixture.
"""

from __future__ import annotations

import collections
import contextvars
import decimal
import functools
import gc
import os
import pickle
import signal
import socket
import threading

import pytest

from picklepool import Parallel, PicklingError, delayed, parallel_config
from tests.conftest import run_python
from tests.executor.cyclic import Cyclic, making_cyclic_garbage

BACKENDS = ["loky", "threading", "sequential", "dask"]
PROCESS_BACKENDS = {"loky", "dask"}


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "dask":
        request.getfixturevalue("dask_client")  # this module's LocalCluster; skips without dask
    return request.param


def square(x):
    return x * x


def add(x, y=0, *, z=0):
    return x + y + z


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


class CustomError(Exception):
    def __init__(self, code, detail):
        super().__init__(code, detail)
        self.code = code


def raise_custom(x):
    if x == 1:
        raise CustomError(x, "detail")
    return x


def test_results_in_order(backend):
    assert Parallel(n_jobs=2, backend=backend)(delayed(square)(i) for i in range(200)) == [
        i * i for i in range(200)
    ]


def test_args_and_kwargs(backend):
    out = Parallel(n_jobs=2, backend=backend)(delayed(add)(i, y=1, z=i) for i in range(10))
    assert out == [2 * i + 1 for i in range(10)]


def test_builtins_and_mixed_functions(backend):
    tasks = [delayed(pow)(2, 3), delayed(square)(4), delayed(add)(1, 2), delayed(len)("abc")]
    assert Parallel(n_jobs=2, backend=backend)(tasks) == [8, 16, 3, 3]


def test_empty_iterable(backend):
    assert Parallel(n_jobs=2, backend=backend)([]) == []
    assert list(Parallel(n_jobs=2, backend=backend, return_as="generator")(iter([]))) == []


def test_generator_is_ordered_and_lazy(backend):
    gen = Parallel(n_jobs=2, backend=backend, return_as="generator")(delayed(square)(i) for i in range(50))
    assert not isinstance(gen, list)
    assert list(gen) == [i * i for i in range(50)]


def test_generator_unordered_has_every_result(backend):
    out = Parallel(n_jobs=2, backend=backend, return_as="generator_unordered")(
        delayed(square)(i) for i in range(100)
    )
    assert sorted(out) == [i * i for i in range(100)]


@pytest.mark.parametrize("batch_size", [1, 7, "auto"])
def test_fixed_and_auto_batch_sizes(backend, batch_size):
    out = Parallel(n_jobs=2, backend=backend, batch_size=batch_size)(delayed(square)(i) for i in range(30))
    assert out == [i * i for i in range(30)]


def gc_enabled(_):
    return gc.isenabled()


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_tasks_run_with_the_cyclic_gc_on(backend, n_jobs):
    # n_jobs=1 (the default) ran every task with the GC off: a task making cyclic
    # garbage grew without bound (2 GB where joblib stays at 46 MB)
    assert gc.isenabled()
    out = Parallel(n_jobs=n_jobs, backend=backend)(delayed(gc_enabled)(i) for i in range(50))
    assert out == [True] * 50
    assert gc.isenabled()


@pytest.mark.parametrize("batch_size", [5000, "auto"])
def test_the_callers_generator_garbage_is_collected_while_a_batch_is_pulled(batch_size):
    # the GC was off while each batch was pulled: all of a batch's garbage lived until
    # the batch was sent (10,000 objects here; 1.6 GB where joblib peaks at 138 MB)
    Cyclic.reset()
    out = Parallel(n_jobs=2, batch_size=batch_size)(making_cyclic_garbage(20000, lambda i: delayed(abs)(-i)))
    assert out == list(range(20000))
    assert Cyclic.peak < 3000, Cyclic.peak


def test_task_exception_keeps_type_message_and_remote_traceback(backend):
    with pytest.raises(ValueError, match="bad value 3") as info:
        Parallel(n_jobs=2, backend=backend)(delayed(fail_on)(i, 3) for i in range(10))
    if backend in PROCESS_BACKENDS:
        assert "fail_on" in str(info.value.__cause__)
    notes = getattr(info.value, "__notes__", [])
    assert any("task 3" in n for n in notes)


def fail_at_500(x):
    if x == 500:
        raise ValueError(f"bad value {x}")
    return x


def test_one_argument_calls_mixed_with_other_calls_each_run_as_given(backend):
    # delayed(f)(x) calls travel as a column of their x (executor.functions.one_argument,
    # made as dispatch.pull pulls them); a batch where another kind of call turns up
    # after hundreds of them goes as (function, args, kwargs) triples, in order
    items = [delayed(square)(i) for i in range(700)]
    items[300] = delayed(add)(1, 2)  # another function
    items[400] = delayed(square)(x=4)  # keywords
    items[500] = (square, [5], {})  # a list of arguments
    items[600] = (square, (6,), None)  # no kwargs dict
    expected = [i * i for i in range(700)]
    expected[300], expected[400], expected[500], expected[600] = 3, 16, 25, 36
    for batch_size in (700, 350, "auto"):
        assert Parallel(n_jobs=2, backend=backend, batch_size=batch_size)(iter(items)) == expected
        assert Parallel(n_jobs=2, backend=backend, batch_size=batch_size)(iter(items[:300])) == expected[:300]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (42, "is not a delayed call"),
        ((square, 3, {}), r"arguments must be a tuple or list \(here int\)"),
        ((square, (3,), [("y", 1)]), r"keywords a dict or None \(here list\)"),
        ((3, (1,), {}), r"calls 3 \(type int\), which is not callable.*not delayed\(f\(x\)\)\(\)"),
    ],
)
def test_a_bad_item_deep_in_a_batch_pulled_as_columns_is_named(backend, bad, why):
    # items 0..299 one-argument calls (pulled as a column, dispatch.pull), 300..599
    # two-argument ones (the batch back to triples), and a bad item: named by its index,
    # with what is wrong in it
    # with as many items again after them: one full pull of batch_size * n_jobs, so 0..599
    # are one batch (joblib's rule splits a short last pull finer)
    items = [delayed(square)(i) for i in range(300)] + [delayed(add)(i, 1) for i in range(900)]
    items[550] = bad
    with pytest.raises(TypeError, match=f"item 550 .*{why}"):
        Parallel(n_jobs=2, backend=backend, batch_size=600)(iter(items))


def test_one_argument_calls_run_under_a_timeout(backend):
    # a worker times them with SIGALRM, or (dask's threads) from a watching thread
    timed = {"n_jobs": 2, "backend": backend, "timeout": 60}
    out = Parallel(**timed, batch_size=300)(delayed(square)(i) for i in range(600))
    assert out == [i * i for i in range(600)]
    with pytest.raises(ValueError, match="bad value 500"):  # in a batch of 600 (a full pull)
        Parallel(**timed, batch_size=600)(delayed(fail_at_500)(i) for i in range(1200))


def test_one_argument_calls_of_one_batch_share_what_they_share_in_the_caller(backend):
    shared = [1, 2, 3]  # one object in the caller: one copy per batch in a worker, as in joblib
    # 600 tasks, batch_size=300: one full pull of batch_size * n_jobs, two batches of 300
    ids = Parallel(n_jobs=2, backend=backend, batch_size=300)(delayed(id)(shared) for _ in range(600))
    assert len(set(ids[:300])) == 1 and len(set(ids[300:])) == 1


def test_a_failing_one_argument_call_is_named_in_a_large_batch(backend):
    with pytest.raises(ValueError, match="bad value 500") as info:
        # 1200 tasks: one full pull of batch_size * n_jobs, tasks 0..599 one batch
        Parallel(n_jobs=2, backend=backend, batch_size=600)(delayed(fail_at_500)(i) for i in range(1200))
    notes = getattr(info.value, "__notes__", [])
    assert any("task 500: fail_at_500(500)" in n for n in notes), notes


def test_custom_exception_round_trips(backend):
    with pytest.raises(CustomError) as info:
        Parallel(n_jobs=2, backend=backend)(delayed(raise_custom)(i) for i in range(3))
    assert info.value.code == 1


def test_exception_in_generator_mode(backend):
    gen = Parallel(n_jobs=2, backend=backend, return_as="generator")(
        delayed(fail_on)(i, 5) for i in range(10)
    )
    got = []
    with pytest.raises(ValueError, match="bad value 5"):
        for x in gen:
            got.append(x)
    assert got == list(range(len(got)))


def _tasks_then_break(n_good, bad_item=None):
    """``delayed(fail_on)(i, bad_item)`` for i < n_good, then the generator itself raises."""
    for i in range(n_good):
        yield delayed(fail_on)(i, bad_item)
    raise LookupError(f"the task generator broke after {n_good} tasks")


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("n_good", [0, 3, 30])
@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_a_task_generator_that_breaks_midway_gives_the_results_before_it_first(
    backend, n_jobs, n_good, return_as
):
    # the loop `for x in gen: yield fail_on(x)` (and joblib's n_jobs=1) yields the results
    # of every task the generator gave, then raises its error; the tasks of the batch
    # being pulled when it broke were dropped, and the batches in flight cancelled
    got = []
    with pytest.raises(LookupError, match=f"broke after {n_good} tasks"):
        for x in Parallel(n_jobs=n_jobs, backend=backend, return_as=return_as)(_tasks_then_break(n_good)):
            got.append(x)
    assert sorted(got) == list(range(n_good))
    if return_as == "generator":
        assert got == list(range(n_good))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_task_error_before_the_generator_breaks_is_the_one_raised(backend, n_jobs):
    # as in the loop: task 5 fails before the generator reaches its own error
    with pytest.raises(ValueError, match="bad value 5"):
        Parallel(n_jobs=n_jobs, backend=backend)(_tasks_then_break(30, bad_item=5))
    with pytest.raises(LookupError, match="broke after 30 tasks"):
        Parallel(n_jobs=n_jobs, backend=backend)(_tasks_then_break(30))


def _first_of(buffer):
    return buffer[0]


@pytest.mark.parametrize("timeout", [None, 30])
@pytest.mark.parametrize("backend_name", ["sequential", "loky", "threading"])
def test_n_jobs_1_runs_each_task_as_its_item_is_pulled(backend_name, timeout):
    # joblib's n_jobs=1, like the loop, runs task i before pulling item i + 1: batches of
    # 1, 2, 4... items pulled ahead ran tasks early and let the generator run ahead of them
    pulled, ran = [], []

    def task(i):
        ran.append(i)
        return i

    def items():
        for i in range(40):
            pulled.append(i)
            yield delayed(task)(i)

    gen = Parallel(n_jobs=1, backend=backend_name, return_as="generator", timeout=timeout)(items())
    for k in range(6):
        assert next(gen) == k
        assert (len(pulled), len(ran)) == (k + 1, k + 1)  # the task ran at the next() that needed it
    gen.close()
    # a closure's variable and a buffer the generator reuses, as each item left them
    late = Parallel(n_jobs=1, backend=backend_name)(delayed(lambda: i)() for i in range(10))  # noqa: B023
    assert late == list(range(10))
    buffer = [None]

    def reused():
        for i in range(10):
            buffer[0] = i
            yield delayed(_first_of)(buffer)

    assert Parallel(n_jobs=1, backend=backend_name)(reused()) == list(range(10))


@pytest.mark.parametrize("backend_name", ["sequential", "loky", "threading"])
def test_n_jobs_1_with_a_batch_size_pulls_each_batch_before_running_it(backend_name):
    # joblib's test_dispatch_one_job: an explicit batch_size of 4 pulls 4 items, then runs them
    log = []

    def items(n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise LookupError(f"broke at {i}")
            log.append(f"pulled {i}")
            yield delayed(log.append)(f"ran {i}")

    Parallel(n_jobs=1, batch_size=4, backend=backend_name)(items(6))
    pulled = [f"pulled {i}" for i in range(6)]
    ran = [f"ran {i}" for i in range(6)]
    assert log == pulled[:4] + ran[:4] + pulled[4:] + ran[4:]
    log.clear()
    # the iterable breaking inside a batch: the items it gave before still run, then its error
    with pytest.raises(LookupError, match="broke at 6"):
        Parallel(n_jobs=1, batch_size=4, backend=backend_name)(items(9, fail_at=6))
    assert log == pulled[:4] + ran[:4] + pulled[4:] + ran[4:]


def _mark_and_fail(i, folder):
    if i == 0:
        raise RuntimeError("first task fails")
    with open(os.path.join(folder, str(i)), "w"):
        pass
    threading.Event().wait(0.005)  # stands in for real work
    return i


def test_failure_cancels_the_remaining_tasks(backend, tmp_path):
    n = 400
    with pytest.raises(RuntimeError, match="first task fails"):
        Parallel(n_jobs=2, backend=backend, batch_size=1)(
            delayed(_mark_and_fail)(i, str(tmp_path)) for i in range(n)
        )
    Parallel(n_jobs=2, backend=backend)([])  # let in-flight work drain
    import picklepool

    picklepool.shutdown()
    ran = len(os.listdir(tmp_path))
    assert ran < n // 4, f"{ran} tasks ran after the first one failed"


def test_pickler_choice_applies(backend):
    lam = Parallel(n_jobs=2, backend=backend, pickler="cloudpickle")(
        delayed(lambda x: x + 1)(i) for i in range(4)
    )
    assert lam == [1, 2, 3, 4]
    if backend in PROCESS_BACKENDS:
        with pytest.raises(PicklingError, match="pickle"):
            Parallel(n_jobs=2, backend=backend, pickler="pickle")(delayed(lambda x: x)(i) for i in range(2))
    else:  # in-process backends do not pickle at all
        assert Parallel(n_jobs=2, backend=backend, pickler="pickle")(
            delayed(lambda x: x)(1) for _ in range(2)
        ) == [
            1,
            1,
        ]


def test_unpicklable_argument_names_its_path(backend):
    class Holder:
        def __init__(self):
            self.handle = socket.socket()

    h = Holder()
    try:
        if backend in PROCESS_BACKENDS:
            with pytest.raises(PicklingError) as info:
                Parallel(n_jobs=2, backend=backend, pickler="cloudpickle")(
                    delayed(id)({"h": h}) for _ in range(2)
                )
            msg = str(info.value)
            assert "args[0]['h'].handle" in msg
            assert "socket" in msg
            assert "cloudpickle" in msg
        else:
            assert len(Parallel(n_jobs=2, backend=backend)(delayed(id)({"h": h}) for _ in range(2))) == 2
    finally:
        h.handle.close()


def test_a_function_that_cannot_be_pickled_names_its_own_task_not_its_batchs_first():
    holder = threading.Thread()  # a bound method of a thread cannot travel
    # twice batch_size tasks: one full pull of batch_size * n_jobs, so tasks 0..99 (0..9)
    # are one batch (joblib's rule splits a short last pull finer)
    items = [delayed(square)(i) if i != 57 else delayed(holder.is_alive)() for i in range(200)]
    with pytest.raises(PicklingError, match=r"^task 57: Thread\.is_alive\(\): cannot pickle function"):
        Parallel(n_jobs=2, batch_size=100)(items)
    with pytest.raises(PicklingError, match=r"^task 3: \S*<lambda>\(3\): cannot pickle function"):
        Parallel(n_jobs=2, batch_size=10, pickler="pickle")(
            delayed(square if i != 3 else lambda x: x)(i) for i in range(20)
        )


def test_parallel_config_supplies_defaults(backend):
    with parallel_config(backend=backend, n_jobs=2, pickler="cloudpickle"):
        assert Parallel()(delayed(lambda x: -x)(i) for i in range(3)) == [0, -1, -2]


def test_reused_parallel_object(backend):
    with Parallel(n_jobs=2, backend=backend) as p:
        assert p(delayed(square)(i) for i in range(5)) == [0, 1, 4, 9, 16]
        assert p(delayed(square)(i) for i in range(3)) == [0, 1, 4]


def test_results_that_cannot_be_pickled_back(backend):
    if backend not in PROCESS_BACKENDS:
        pytest.skip("in-process backends do not pickle results")
    with pytest.raises(PicklingError, match="task 1: .*the result could not be sent back") as info:
        Parallel(n_jobs=2, backend=backend, batch_size=1)(
            delayed(threading.Thread if i == 1 else int)() for i in range(3)
        )
    assert "threading.Thread" in str(info.value)  # (locks do pickle back under hybrid)


def _generator_of(n):
    return (i for i in range(n))


def test_pickling_errors_are_also_of_the_type_the_pickler_raised(backend):
    # joblib and concurrent.futures raise the pickler's own TypeError / ValueError for a
    # result (and the standard library for an argument) that cannot be pickled: code
    # written for them catches it with `except TypeError`. picklepool's PicklingError is
    # that type too, with the worker's traceback as its cause.
    import ctypes

    if backend not in PROCESS_BACKENDS:
        pytest.skip("in-process backends do not pickle")
    run = Parallel(n_jobs=2, backend=backend, batch_size=1)
    with pytest.raises(TypeError, match="task 1: _generator_of.*could not be sent back") as info:
        run(delayed(_generator_of)(i) if i == 1 else delayed(square)(i) for i in range(3))
    assert isinstance(info.value, PicklingError) and info.value.__cause__ is not None
    assert "cannot pickle 'generator' object" in str(info.value.__cause__)
    with pytest.raises(ValueError, match=r"task \d: pointer.*could not be sent back"):
        run(delayed(ctypes.pointer)(ctypes.c_int(i)) for i in range(2))
    with pytest.raises(TypeError, match=r"task 2: square.*args\[0\]") as info:
        run(delayed(square)(_generator_of(3) if i == 2 else i) for i in range(3))
    assert isinstance(info.value, PicklingError)
    copy = pickle.loads(pickle.dumps(info.value))  # it travels back from a nested call
    assert type(copy) is type(info.value) and str(copy) == str(info.value)
    assert run(delayed(square)(i) for i in range(3)) == [0, 1, 4]


def test_a_non_iterable_argument_is_rejected_with_what_to_write(backend):
    expected = r"given 42 \(type int\), which is not iterable.*delayed\(f\)\(x\) for x in xs"
    with pytest.raises(TypeError, match=expected):
        Parallel(n_jobs=2, backend=backend)(42)
    assert Parallel(n_jobs=2, backend=backend)(delayed(square)(i) for i in range(3)) == [0, 1, 4]


def test_one_delayed_call_given_alone_says_to_put_it_in_a_list(backend):
    # Parallel()(delayed(f)(x)) iterated the call's parts: "item 0 ... is not a delayed call: <function>"
    with pytest.raises(
        TypeError,
        match=r"was given one delayed call of square, .*: put it in a list, "
        r"Parallel\(...\)\(\[delayed\(square\)\(x\)\]\)",
    ):
        Parallel(n_jobs=2, backend=backend)(delayed(square)(3))
    assert Parallel(n_jobs=2, backend=backend)([delayed(square)(3)]) == [9]


def test_delayed_never_called_says_to_call_it_with_the_arguments(backend):
    with pytest.raises(
        TypeError,
        match=r"item 1 of the iterable given to Parallel is the function square itself .* not a "
        r"delayed call of it: call what delayed\(\) returns with the task's arguments, "
        r"Parallel\(...\)\(delayed\(square\)\(x\) for x in xs\)",
    ):
        Parallel(n_jobs=2, backend=backend)([delayed(square)(1), delayed(square)])


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("empty", [[], (), 0, ""])
def test_empty_keywords_of_another_type_than_a_dict_are_rejected(backend, n_jobs, empty):
    # joblib's f(*args, **kwargs) refuses them ("argument after ** must be a mapping"); a
    # batch whose keywords were all empty dropped them unchecked, and ran f(2) as if fine
    # three more: one full pull of batch_size * n_jobs, items 0..2 one batch with n_jobs=2
    items = [delayed(square)(1), (square, (2,), empty), delayed(square)(3)] + [delayed(square)(4)] * 3
    with pytest.raises(TypeError, match=r"item 1 .* keywords a dict or None \(here "):
        Parallel(n_jobs=n_jobs, backend=backend, batch_size=3)(items)
    assert Parallel(n_jobs=n_jobs, backend=backend)([(square, (2,), None), (square, [3], {})]) == [4, 9]


def test_non_delayed_items_are_rejected_with_their_index(backend):
    items = [delayed(square)(1), delayed(square)(2), 42]
    with pytest.raises(TypeError, match="item 2 .* not a delayed call"):
        Parallel(n_jobs=2, backend=backend)(items)
    with pytest.raises(TypeError, match="item 0"):
        Parallel(n_jobs=2, backend=backend)([(square, 1, {})])
    with pytest.raises(TypeError, match=r"item 1 .* calls 3 \(type int\), which is not callable"):
        Parallel(n_jobs=2, backend=backend)([delayed(square)(1), (3, (1,), {})])
    with pytest.raises(TypeError, match="item 0 .* not a delayed call"):  # would splat "ab"
        Parallel(n_jobs=2, backend=backend)([(square, "ab", {})])
    # found inside a large batch, which then runs none of its tasks (as many items again
    # after it: one full pull of batch_size * n_jobs, items 0..100 one batch; below too)
    items = [delayed(square)(i) for i in range(100)] + [(square, 3, {})] + [delayed(square)(1)] * 101
    with pytest.raises(
        TypeError, match=r"item 100 .* not a delayed call: \(<function square at \w+>, 3, \{\}\)"
    ):
        Parallel(n_jobs=2, backend=backend, batch_size=101)(items)
    ok = [delayed(square)(3)] * 2
    with pytest.raises(TypeError, match="item 1 .* not a delayed call"):
        Parallel(n_jobs=2, backend=backend, batch_size=2)([delayed(square)(x=1), (square, (2,), 7)] + ok)

    with pytest.raises(TypeError, match="item 1 .* not a delayed call"):
        items = [delayed(square)(1), (square, (2,), [("x", 2)])]
        Parallel(n_jobs=2, backend=backend, batch_size=2)(items + ok)

    class EqualToAll:  # not callable, yet == the batch's function: must not pass for it
        def __eq__(self, other):
            return True

        __hash__ = object.__hash__

    with pytest.raises(TypeError, match="item 1 .* calls .*EqualToAll object.* which is not callable"):
        Parallel(n_jobs=2, backend=backend, batch_size=2)([delayed(square)(1), (EqualToAll(), (2,), {})] + ok)


Pair = collections.namedtuple("Pair", "a b")


def test_items_with_list_or_namedtuple_args_and_mapping_kwargs_run_as_in_joblib(backend):
    # joblib calls func(*args, **kwargs): hand-made items need not be exact tuples and dicts
    items = [
        (divmod, [7, 2], {}),
        (divmod, Pair(9, 4), None),
        (int, ["11"], collections.OrderedDict(base=2)),
        delayed(square)(5),
        (int, ("z",), collections.defaultdict(int, base=36)),
    ]
    for batch_size in (1, 5):  # twice the items: with 5, one full pull, each half one batch
        got = Parallel(n_jobs=2, backend=backend, batch_size=batch_size)(items * 2)
        assert got == [(3, 1), (2, 1), 3, 25, 35] * 2


def test_delayed_refuses_what_is_not_callable_where_it_is_given():
    import importlib

    # emptied, as after a call: delayed(None) found the empty cache's None, and returned it
    importlib.import_module("picklepool.executor.delayed").forget()
    for bad in (None, 5, None, "square", square(3)):
        with pytest.raises(TypeError, match=r"delayed\(\) needs a callable, but .* is not callable") as info:
            delayed(bad)
        assert f"type builtins.{type(bad).__qualname__}" in str(info.value)
        assert "delayed(f)(x), not delayed(f(x))" in str(info.value)

    class Adder:
        def __call__(self, x):
            return x + 1

    # callable objects, classes, partials and methods are calls
    assert delayed(Adder())(1)[1] == (1,)
    assert delayed(int)("7") == (int, ("7",), {})
    assert delayed(functools.partial(pow, 2))(3)[1] == (3,)
    assert delayed([].append)(1)[1] == (1,)


def test_any_function_args_kwargs_triple_is_a_call(backend):
    # As in joblib: lists work too, and None stands for no keyword arguments.
    items = [[square, (2,), {}], (square, (3,), None), delayed(square)(x=4)]
    # twice the items: one full pull of batch_size * n_jobs, each half one batch
    assert Parallel(n_jobs=2, backend=backend, batch_size=3)(items * 2) == [4, 9, 16] * 2


def test_pickle_module_errors_are_pickle_errors():
    assert issubclass(PicklingError, pickle.PicklingError)


def test_a_generator_read_after_its_threading_block_loses_nothing():
    with Parallel(n_jobs=2, backend="threading", return_as="generator", batch_size=1) as p:
        gen = p(delayed(abs)(-i) for i in range(8))
        assert next(gen) == 0
    try:
        rest = list(gen)
    except RuntimeError as exc:  # the pool is gone: said clearly, never silently short
        assert "Consume the generator inside the block" in str(exc)
    else:
        assert rest == list(range(1, 8))


def wait_or_fail(i, release):
    if i == 0:
        raise ValueError("first fails")
    release.wait(30)  # never set: the remaining tasks must be skipped, not waited for
    return i


def test_cancel_skips_the_rest_of_a_small_batch_in_a_worker(tmp_path):
    import os
    import time

    def marker(i, folder):
        if i == 0:
            raise ValueError("first fails")
        with open(os.path.join(folder, str(i)), "w"):
            pass
        time.sleep(0.2)  # real work that takes a while
        return i

    with pytest.raises(ValueError):
        Parallel(n_jobs=2, batch_size=10)(delayed(marker)(i, str(tmp_path)) for i in range(20))
    import picklepool

    picklepool.shutdown()
    assert len(os.listdir(tmp_path)) < 10


def test_cancel_skips_the_rest_of_a_batch_on_a_thread():
    # threading: a failure stops the call's batches running on the other threads before
    # their next task, as a worker's cancel flag does (the error is raised meanwhile)
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    def task(i):
        if i == 0:
            assert started.wait(60)  # fails once the other batch is running
            raise ValueError("first fails")
        if i == 5:  # the first task of the other thread's batch
            started.set()
            assert release.wait(60)
        ran.append(i)
        return i

    with Parallel(n_jobs=2, backend="threading", batch_size=5) as p:
        try:
            with pytest.raises(ValueError, match="first fails"):
                p(delayed(task)(i) for i in range(10))
        finally:
            release.set()
    # leaving the block waited for the pool's threads: task 5 returned, 6..9 never started
    assert ran == [5]


def test_sequential_timeout_leaves_the_callers_timer_alone():
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        assert Parallel(n_jobs=1, timeout=5)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert remaining > 20
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_caller_var: contextvars.ContextVar[str] = contextvars.ContextVar("caller_var", default="unset")


def _context_seen(_):
    with Parallel() as inner:  # the caller's parallel_config reaches a call the task makes
        backend = type(inner._backend).__name__
    return _caller_var.get(), decimal.getcontext().prec, backend


def test_sequential_timeout_runs_tasks_in_the_callers_context():
    # the tasks run on a watching thread there: it must not start from an empty context
    token = _caller_var.set("set")
    try:
        with decimal.localcontext(prec=7), parallel_config(backend="threading", n_jobs=2):
            for timeout in (None, 30):
                got = Parallel(n_jobs=1, timeout=timeout)(delayed(_context_seen)(i) for i in range(2))
                assert got == [("set", 7, "ThreadingBackend")] * 2
    finally:
        _caller_var.reset(token)


def _numeric_seen(_):
    import numpy as np

    return _caller_var.get(), decimal.getcontext().prec, np.geterr()["divide"]


def test_threading_tasks_run_with_the_calling_threads_settings():
    # README's deliberate difference: joblib's threads run with the defaults (28, "warn", unset)
    np = pytest.importorskip("numpy")
    token = _caller_var.set("set")
    try:
        with decimal.localcontext(prec=7), np.errstate(divide="raise"):
            calls = (delayed(_numeric_seen)(i) for i in range(4))
            got = Parallel(n_jobs=2, backend="threading", batch_size=1)(calls)
    finally:
        _caller_var.reset(token)
    assert got == [("set", 7, "raise")] * 4


def test_sequential_timeout_is_enforced():
    from picklepool import TaskTimeoutError

    stuck = threading.Event()
    with pytest.raises(TaskTimeoutError, match="task 1"):
        Parallel(n_jobs=1, timeout=0.3)(delayed(stuck.wait)(0 if i != 1 else 30) for i in range(3))


_ran: list[int] = []


def _note(x):
    _ran.append(x)
    return x


def test_a_bad_item_stops_its_batch_before_any_task_also_with_a_timeout():
    items = [delayed(_note)(0), delayed(_note)(1), (_note, 2, {})]
    for timeout in (None, 30):
        _ran.clear()
        with pytest.raises(TypeError, match="item 2 .* not a delayed call"):
            Parallel(n_jobs=1, batch_size=3, timeout=timeout)(items)
        # with n_jobs=1 each task runs as its item is pulled, as joblib's and the loop (which
        # run tasks 0 and 1 too), also under a timeout
        assert _ran == [0, 1]


def test_a_sentinel_returned_by_a_task_comes_back_as_the_parents_own_object():
    # MISSING = object() is told apart with `is`; pickled, it became a new object at each
    # trip, so a task returning it (CACHE.get(k, MISSING)) gave the parent a copy, and the
    # parent's `r is not MISSING` filter kept every result, silently. joblib does the same.
    proc = run_python(
        """
        from picklepool import Executor, Parallel, delayed

        MISSING = object()
        CACHE = {1: "one"}

        def lookup(k):
            return CACHE.get(k, MISSING)

        def wrap(x):
            return {"given": x, "held": MISSING, "fresh": object()}

        print([r for r in Parallel(n_jobs=2)(delayed(lookup)(k) for k in range(4)) if r is not MISSING])
        other = object()
        out = Parallel(n_jobs=2, batch_size=1)(delayed(wrap)(other) for _ in range(3))
        print([(d["given"] is other, d["held"] is MISSING, d["fresh"] is not MISSING) for d in out])
        with Executor(2) as ex:
            print([r for r in ex.map(lookup, range(4)) if r is not MISSING])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "['one']",
        "[(True, True, True), (True, True, True), (True, True, True)]",
        "['one']",
    ]


class _Blob(bytes):
    pass


class _NoWholeCounter(collections.Counter):
    def most_common(self, n=None):  # what Counter's own repr calls, sorting all the items
        raise AssertionError("the whole repr was built")


class _Secret(dict):
    def __repr__(self):
        return "Secret(<hidden>)"


def test_naming_a_task_never_builds_the_whole_repr_of_a_large_argument():
    # reprlib repr()s what it has no method for, then cuts: naming a failed task of a
    # 300 MB bytes argument took 3 s and 1.1 GB; a Counter's repr sorts all its items.
    # A class's own __repr__ is still the one used (it may hide what it holds).
    from picklepool.executor.functions import describe_task

    big = _Blob(b"x" * 1_000_000)
    counts = _NoWholeCounter(range(100_000))
    args = (big, counts, bytearray(10**6), memoryview(big), _Secret(password="hunter2"))
    text = describe_task(3, (square, args, {"n": b"y" * 10**6}))
    assert text.startswith("task 3: square(_Blob(b'xxxx") and len(text) < 700, text
    assert "_NoWholeCounter({0: 1, 1: 1, 2: 1, 3: 1, ...})" in text and "<1000000 bytes>" in text
    assert "<memoryview of 1000000 bytes>" in text and "Secret(<hidden>)" in text
    assert "hunter2" not in text


def _fails_on_group(group, *rest, **options):
    if len(group) == 3:
        raise ValueError("bad group")
    return len(group)


def test_a_task_of_a_table_or_of_many_arguments_is_named_on_one_short_line():
    # groupby-apply over frames: the note named the task by its frame's repr cut in the
    # middle, a line break and the header's padding in it (`f(         a  b\n0   ...0 rows
    # x 2 columns])`); scikit-learn's _fit_and_score (21 arguments) made a 1000-character
    # note. A multi-line repr gives way to the shape; past 8 arguments, how many more.
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"k": [0, 0, 1, 1, 1], "v": np.arange(5.0)})
    with pytest.raises(ValueError, match="bad group") as info:
        Parallel(n_jobs=2)(delayed(_fails_on_group)(g) for _, g in df.groupby("k"))
    assert info.value.__notes__[-1] == (
        "(raised by task 1: _fails_on_group(<DataFrame shape=(3, 2)>) of this Parallel call, in a worker)"
    )
    with pytest.raises(ValueError, match="bad group") as info:
        Parallel(n_jobs=2)(
            delayed(_fails_on_group)(np.zeros((3, 3)), *range(10), a=df["v"]) for _ in range(1)
        )
    note = info.value.__notes__[-1]
    assert note == (
        "(raised by task 0: _fails_on_group(<ndarray shape=(3, 3) dtype=float64>, 0, 1, 2, 3, 4, 5, 6, "
        "... 4 more) of this Parallel call, in a worker)"
    ), note
