"""wrap_non_picklable_objects: by value under any pickler, isinstance kept."""

from __future__ import annotations

import abc
import functools
import pickle
import sys

import pytest

import picklepool
from picklepool import wrap_non_picklable_objects
from picklepool.pickler import get_pickler
from picklepool.pickler.wrap import ByValueFunction

from ..conftest import run_python

PICKLERS = ["pickle", "cloudpickle", "hybrid"]


def roundtrip(obj, name="pickle"):
    p = get_pickler(name)
    return p.loads(p.dumps(obj))


def test_exported_from_the_package():
    assert "wrap_non_picklable_objects" in picklepool.__all__
    assert picklepool.wrap_non_picklable_objects is wrap_non_picklable_objects


def test_function_keeps_its_metadata():
    def area(r: float) -> float:
        """Area of a disc."""
        return 3.0 * r * r

    area.unit = "m2"
    wrapped = wrap_non_picklable_objects(area)
    assert isinstance(wrapped, ByValueFunction)
    assert wrapped.__name__ == "area" and wrapped.__doc__ == "Area of a disc."
    assert wrapped.__qualname__ == area.__qualname__ and wrapped.__module__ == __name__
    assert wrapped.__wrapped__ is area and wrapped.unit == "m2"
    assert wrapped.__annotations__ == {"r": "float", "return": "float"}
    assert wrapped(2) == 12.0
    assert wrap_non_picklable_objects(wrapped) is wrapped


@pytest.mark.parametrize("name", PICKLERS)
def test_local_function_pickles_under_every_pickler(name):
    scale = 5

    def times(x):
        return x * scale

    copy = roundtrip(wrap_non_picklable_objects(times), name)
    assert copy(3) == 15 and copy.__name__ == "times"


def module_level(x):
    return -x


def test_importable_function_still_goes_by_value():
    data = pickle.dumps(wrap_non_picklable_objects(module_level))
    # by value: the code travels, not a reference to this test module
    assert b"module_level" in data and len(data) > len(pickle.dumps(module_level)) + 100
    assert pickle.loads(data)(4) == -4


def test_keep_wrapper_false_gives_the_plain_function():
    copy = roundtrip(wrap_non_picklable_objects(lambda x: x + 1, keep_wrapper=False))
    assert not isinstance(copy, ByValueFunction) and copy(1) == 2


def test_decorated_method_binds():
    class Counter:
        def __init__(self):
            self.n = 2

        @wrap_non_picklable_objects
        def double(self):
            return self.n * 2

    assert Counter().double() == 4


def _make_classes():
    class Shape(abc.ABC):
        @abc.abstractmethod
        def area(self): ...

    class Square(Shape):
        def __init__(self, side):
            self.side = side

        def area(self):
            return self.side**2

        def __eq__(self, other):
            return isinstance(other, Square) and other.side == self.side

    return Shape, Square


def test_wrapped_class_keeps_isinstance_and_issubclass_both_ways():
    Shape, Square = _make_classes()
    W = wrap_non_picklable_objects(Square)
    w, plain = W(3), Square(3)
    assert W.__name__ == "Square" and W.__qualname__ == Square.__qualname__ and W.__wrapped__ is Square
    assert isinstance(w, W) and isinstance(w, Square) and isinstance(w, Shape)
    assert isinstance(plain, W)  # the wrapper answers for the original's instances
    assert issubclass(W, Square) and issubclass(Square, W) and issubclass(W, Shape)
    assert not isinstance(3, W) and not issubclass(int, W)
    assert w.area() == 9 and w == plain
    assert wrap_non_picklable_objects(W) is W


@pytest.mark.parametrize("name", PICKLERS)
def test_wrapped_local_class_and_its_instances_pickle_under_every_pickler(name):
    _, Square = _make_classes()
    W = wrap_non_picklable_objects(Square)
    cls_copy, obj_copy = roundtrip((W, W(4)), name)
    assert obj_copy.area() == 16 and isinstance(obj_copy, cls_copy)
    # rebuilt in the same process, cloudpickle's class tracking gives the same class back
    assert isinstance(obj_copy, W) and isinstance(obj_copy, Square)


def test_subclass_of_a_wrapped_class_follows_ordinary_rules():
    _, Square = _make_classes()
    W = wrap_non_picklable_objects(Square)

    class Big(W):
        pass

    assert isinstance(Big(1), W) and isinstance(Big(1), Square) and not isinstance(W(1), Big)
    assert not isinstance(Square(1), Big)


def test_class_with_another_metaclass_is_refused_clearly():
    import enum

    class Color(enum.Enum):
        RED = 1

    with pytest.raises(TypeError, match="its metaclass Enum(Meta|Type) is not type"):
        wrap_non_picklable_objects(Color)


def test_recursive_decorated_function_under_pickle_in_a_subprocess():
    proc = run_python(
        """
        from picklepool import Parallel, delayed, wrap_non_picklable_objects

        @wrap_non_picklable_objects
        def fib(n):
            "Fibonacci, recursively."
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        @wrap_non_picklable_objects
        class Point:
            def __init__(self, x):
                self.x = x

            def norm(self):
                return abs(self.x)

        @wrap_non_picklable_objects
        def norm(p):
            return p.norm()

        print(Parallel(n_jobs=2, pickler="pickle")(delayed(fib)(n) for n in range(8)))
        print(Parallel(n_jobs=2, pickler="pickle")(delayed(norm)(Point(-i)) for i in range(3)))
        pts = Parallel(n_jobs=2, pickler="pickle")(delayed(Point)(i) for i in range(3))
        print([p.x for p in pts], all(isinstance(p, Point) for p in pts), fib.__doc__)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[0, 1, 1, 2, 3, 5, 8, 13]",
        "[0, 1, 2]",
        "[0, 1, 2] True Fibonacci, recursively.",
    ]


def test_joblib_signature_and_partial():
    add = functools.partial(lambda a, b: a + b, 1)
    wrapped = wrap_non_picklable_objects(add, keep_wrapper=True)
    assert roundtrip(wrapped)(2) == 3


MODULE = """
from picklepool import wrap_non_picklable_objects

@wrap_non_picklable_objects
class Decorated:
    def __init__(self, v):
        self.v = v

@wrap_non_picklable_objects
def decorated(x):
    return x + 100
"""


@pytest.mark.parametrize("name", PICKLERS)
def test_decorated_in_an_importable_module(name, tmp_path, monkeypatch):
    import importlib

    (tmp_path / "pp_wrapped_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("pp_wrapped_mod")
    try:
        cls_copy, obj_copy, func_copy = roundtrip((mod.Decorated, mod.Decorated(1), mod.decorated), name)
        assert cls_copy is mod.Decorated  # importable under its own name: by reference
        assert obj_copy.v == 1 and isinstance(obj_copy, mod.Decorated)
        assert func_copy(1) == 101
    finally:
        del sys.modules["pp_wrapped_mod"]
