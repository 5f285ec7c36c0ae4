"""One conformance suite: the same behaviour for every pickler on every backend.

Picklers: the three built-in ones and a registered pickler with a format of its
own (``tests.custom_picklers.Zlibbed``). Backends: loky, threading, sequential and
dask (a real LocalCluster; skipped without dask.distributed).
"""

from __future__ import annotations

import numpy as np
import pytest

from picklepool import Parallel, delayed
from picklepool.pickler import register_pickler, unregister_pickler

from ..custom_picklers import Zlibbed

PICKLERS = ["pickle", "cloudpickle", "hybrid", "zlibbed"]
BACKENDS = ["loky", "threading", "sequential", "dask"]


@pytest.fixture(params=PICKLERS)
def pickler(request):
    if request.param == "zlibbed":
        register_pickler("zlibbed", Zlibbed)
        yield "zlibbed"
        unregister_pickler("zlibbed")
    else:
        yield request.param


@pytest.fixture(params=BACKENDS)
def run(request, pickler):
    if request.param == "dask":
        request.getfixturevalue("dask_client")

    def run(items, **options):
        return Parallel(n_jobs=2, backend=request.param, pickler=pickler, **options)(items)

    return run


class Mismatch(Exception):
    def __init__(self, account, expected, found):
        super().__init__(f"{account}: {expected} != {found}")
        self.account = account


def power(x, p=2):
    return x**p


def fail_at(i, bad):
    if i == bad:
        raise Mismatch("acct", i, -i)
    return i


def column_sums(a):
    return a.sum(axis=0)


def test_results_in_order_with_kwargs(run):
    assert run(delayed(power)(i, p=3) for i in range(30)) == [i**3 for i in range(30)]


def test_generators(run):
    assert list(run((delayed(power)(i) for i in range(12)), return_as="generator")) == [
        i * i for i in range(12)
    ]
    unordered = run((delayed(power)(i) for i in range(12)), return_as="generator_unordered")
    assert sorted(unordered) == [i * i for i in range(12)]


def test_a_task_error_keeps_its_type_and_names_the_task(run):
    with pytest.raises(Mismatch) as info:
        run((delayed(fail_at)(i, 5) for i in range(10)), batch_size=1)
    assert info.value.account == "acct"
    assert "task 5: fail_at(5, 5)" in "".join(info.value.__notes__)


def test_large_arrays_both_ways(run):
    a = np.arange(300_000, dtype=np.float64).reshape(-1, 3)
    out = run(delayed(column_sums)(a) for _ in range(4))
    for sums in out:
        np.testing.assert_array_equal(sums, a.sum(axis=0))


def test_the_next_call_works_after_a_failure(run):
    with pytest.raises(Mismatch):
        run(delayed(fail_at)(i, 0) for i in range(4))
    assert run(delayed(power)(i) for i in range(4)) == [0, 1, 4, 9]
