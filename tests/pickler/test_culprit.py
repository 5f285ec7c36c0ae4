"""pickler.culprit: which item of a pickled list does not unpickle."""

from __future__ import annotations

import collections
import datetime
import decimal
import pickle

import cloudpickle
import pytest

from picklepool.pickler.culprit import first_failing_item, item_ends

Pair = collections.namedtuple("Pair", "a b")
SHARED = ["shared", 1]  # one object at several places: later items refer back to it (memo)


def _value(i):
    kinds = [
        i,
        str(i) * (i % 5),
        (i, [i, {"k": i}]),
        SHARED,
        Pair(i, (i,)),
        decimal.Decimal(i),
        frozenset({i}),
        {i, i + 1},
        datetime.date(2020, 1, 1 + i % 28),
    ]
    return kinds[i % len(kinds)]


def _rebuild(n):
    if n == "bad":
        raise ValueError("this one does not load")
    return ("ok", n)


class LoadsOrNot:
    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        return _rebuild, (self.n,)


DUMPS = {
    "protocol 2": lambda obj: pickle.dumps(obj, protocol=2),
    "protocol 5": lambda obj: pickle.dumps(obj, protocol=5),
    "cloudpickle": cloudpickle.dumps,
}


@pytest.mark.parametrize("dumps", DUMPS.values(), ids=list(DUMPS))
@pytest.mark.parametrize("n", [1, 2, 999, 1000, 1001, 2500])  # APPEND alone; groups of 1000 (APPENDS)
def test_each_items_end_closes_a_pickle_of_the_list_up_to_it(dumps, n):
    values = [_value(i) for i in range(n)]
    data = dumps((values, 1.5))  # as a reply travels (wire.pack_results)
    ends = item_ends(data)
    assert ends is not None and len(ends) == n
    assert first_failing_item(pickle.loads, data) is None  # nothing fails


@pytest.mark.parametrize("dumps", DUMPS.values(), ids=list(DUMPS))
@pytest.mark.parametrize(("n", "bad"), [(1, 0), (2, 1), (1001, 0), (1001, 500), (1001, 1000), (2500, 2001)])
def test_the_first_item_that_does_not_load_is_found(dumps, n, bad):
    values = [LoadsOrNot(i) if i % 3 else _value(i) for i in range(n)]
    values[bad] = LoadsOrNot("bad")
    data = dumps((values, 0.5))
    with pytest.raises(ValueError):
        pickle.loads(data)
    assert first_failing_item(pickle.loads, data) == bad


@pytest.mark.parametrize("data", [pickle.dumps({"a": 1}), pickle.dumps((1, [2])), b"not a pickle", b""])
def test_another_shape_cannot_be_told(data):
    assert item_ends(data) is None
    assert first_failing_item(pickle.loads, data) is None


@pytest.mark.parametrize("dumps", DUMPS.values(), ids=list(DUMPS))
@pytest.mark.parametrize(
    "last",
    [[1, 2], {1, 2}, (1, 2, 3, 4), frozenset({1, 2}), [[1, 2], [3]], {"a": 1, "b": 2}],
    ids=["list", "set", "tuple of 4", "frozenset", "nested lists", "dict"],
)
@pytest.mark.parametrize("n", [1, 1001])  # the last item appended alone (APPEND), after a group or not
def test_an_item_built_with_a_mark_of_its_own_is_one_item(dumps, last, n):
    # an inner list's APPENDS (or a tuple's MARK) at the list's level was taken for the
    # end of a group of the list's items: a one-item list of [1, 2] counted 3 items
    values = [*range(n - 1), last]
    ends = item_ends(dumps((values, 1.5)))
    assert ends is not None and len(ends) == n
