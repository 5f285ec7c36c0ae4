"""A batch of ``delayed(f)(x)`` calls as a column of its ``x`` (functions.one_argument, dispatch.pull)."""

from __future__ import annotations

import collections
import gc

import pytest

from picklepool import delayed
from picklepool.executor import dispatch, functions

Pair = collections.namedtuple("Pair", "a")


def square(x):
    return x * x


class EqualsAnything:  # as mock.ANY: == {}, yet no mapping of keywords
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


def cube(x):
    return x**3


@pytest.mark.parametrize(
    "odd",
    [
        delayed(cube)(3),  # another function
        delayed(square)(3, 4),  # two arguments
        delayed(square)(),  # none
        delayed(square)(x=3),  # keywords
        (square, [3], {}),  # a list of arguments
        (square, Pair(3), {}),  # a namedtuple
        (square, "3", {}),  # a string: f(*"3") would pass, the columns say it is no call
        (square, (3,), None),  # no kwargs dict
        (square, (3,), collections.OrderedDict(a=1)),
        (square, (3,), collections.OrderedDict()),  # a mapping, but not a plain dict: the columns
        (square, (3,), EqualsAnything()),
        (square, (3,)),  # not a triple
        42,
    ],
)
def test_only_exact_one_argument_calls_of_one_function_make_a_column(odd):
    calls = [delayed(square)(i) for i in range(10)]
    assert functions.one_argument(calls) == list(range(10))
    for at in (0, 5, 9):
        mixed = calls[:at] + [odd] + calls[at + 1 :]
        assert functions.one_argument(mixed) is None
        try:
            columns = functions.split(mixed, 0, by_content=True)
        except TypeError as exc:  # not a call: split names it
            assert f"item {at} " in str(exc)
        else:
            assert type(columns) is functions.Calls


def test_the_column_keeps_the_calls_as_triples_for_messages():
    column = functions.split([delayed(square)(i) for i in range(3)], 0, by_content=True)
    assert type(column) is functions.Column
    assert list(column) == [(square, (0,), None), (square, (1,), None), (square, (2,), None)]
    assert functions.describe_task(7, column[2]) == "task 7: square(2)"
    # in-process backends (nothing pickled) keep the columns they run from
    assert type(functions.split([delayed(square)(1)], 0, by_content=False)) is functions.Calls


@pytest.mark.parametrize("at", [0, 255, 256, 300, 699])
def test_pull_gives_a_column_or_the_calls_in_order(at):
    calls = [delayed(square)(i) for i in range(700)]
    got = dispatch.pull(iter(calls), 1000, by_content=True)
    assert type(got) is functions.Column and got.fn is square and got.args == list(range(700))
    calls[at] = delayed(square)(at, y=1)
    gc.collect()
    got = dispatch.pull(iter(calls), 1000, by_content=True)
    assert type(got) is list
    assert [(f, tuple(a), dict(k)) for f, a, k in got] == [(f, tuple(a), dict(k)) for f, a, k in calls]
    # at most size items, the rest left in the iterator
    it = iter(calls)
    assert len(dispatch.pull(it, 400, by_content=True)) == 400
    assert len(list(it)) == 300


def test_pull_decides_for_a_small_batch_too_and_split_is_not_asked_again(monkeypatch):
    got = dispatch.pull(iter([delayed(square)(i) for i in range(10)]), 100, by_content=True)
    assert type(got) is functions.Column and got.args == list(range(10))
    mixed = [delayed(square)(i) for i in range(600)] + [delayed(cube)(1)]
    pulled = dispatch.pull(iter(mixed), 1000, by_content=True)
    assert type(pulled) is list
    looked = []
    monkeypatch.setattr(functions, "one_argument", lambda *a: looked.append(a) or None)
    assert type(functions.split(pulled, 0, by_content=True, single=False)) is functions.Calls
    assert looked == []  # the pull's own pass stands: no second one over the batch
