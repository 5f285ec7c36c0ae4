"""Small plain values are pickled the short way, to the very bytes of the full road."""

from __future__ import annotations

import collections
import enum
import pickle

import pytest

from picklepool.pickler import plain
from picklepool.pickler.registry import resolve_pickler

from ..custom_picklers import Zlibbed


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        ((0,), ((-1,),), None),
        [1, 2.5, "x", b"y", None, True, 3j],
        {"a": [1, {"b": (2,)}]},
        ([], {}, ()),
    ],
)
@pytest.mark.parametrize("name", ["pickle", "cloudpickle", "hybrid"])
def test_plain_values_pickle_as_the_pickler_would(name, value):
    pickler = resolve_pickler(name)[0]
    fast = plain.dumps(pickler, value)
    assert fast == pickler.dumps(value)
    assert pickle.loads(fast) == value


@pytest.mark.parametrize(
    "value",
    [
        Color.RED,  # an int subclass: its own reduce
        collections.OrderedDict(a=1),
        [1, {2}],  # a set: not looked into
        list(range(plain.BUDGET + 1)),  # too many items: the usual road
        (1, (2, (3, [object()]))),
        ((0,), ((b"x" * (plain.MAX_TEXT + 1),),), None),  # large: through a file, not the pipe
        ["y" * (plain.MAX_TEXT + 1)],
    ],
)
def test_anything_else_takes_the_usual_road(value):
    assert plain.dumps(resolve_pickler("hybrid")[0], value) is None


def test_a_list_that_holds_itself_runs_out_of_budget():
    loop: list = [1]
    loop.append(loop)
    assert not plain.is_plain(loop)


def test_a_registered_pickler_always_gets_the_value():
    assert plain.dumps(Zlibbed(), (1, 2)) is None


def test_a_subclass_of_a_builtin_pickler_gets_the_value():
    class Mine(type(resolve_pickler("hybrid")[0])):
        pass

    assert plain.dumps(Mine(), (1, 2)) is None
