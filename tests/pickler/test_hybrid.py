"""The hybrid pickler: plain data as pickle does, by value where needed, awkward objects."""

from __future__ import annotations

import functools
import io
import math
import os
import pickle
import queue
import random
import socket
import struct
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picklepool import Parallel, delayed
from picklepool.pickler import get_pickler, sentinels
from picklepool.pickler.hybrid import HybridPickler, Pickler

from ..conftest import prints_ok, run_python

PICKLERS = ["pickle", "cloudpickle", "hybrid"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.complex_numbers(allow_nan=False)
)
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=8
)
plain = st.recursive(
    hashables,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.sets(hashables, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None)
@given(plain)
def test_plain_data_round_trips_equal_through_every_pickler(obj):
    for name in PICKLERS:
        p = get_pickler(name)
        assert p.loads(p.dumps(obj)) == obj, name


@settings(max_examples=60, deadline=None)
@given(plain)
def test_hybrid_writes_the_same_bytes_as_pickle_on_plain_data(obj):
    assert get_pickler("hybrid").dumps(obj) == pickle.dumps(obj, protocol=5)


def test_hybrid_is_the_registered_default_strategy():
    p = get_pickler("hybrid")
    assert isinstance(p, HybridPickler) and p.name == "hybrid" and p.pickler_class is Pickler


def test_shared_and_recursive_structure_is_kept():
    inner = [1, 2]
    outer = [inner, inner]
    outer.append(outer)
    copy = get_pickler("hybrid").loads(get_pickler("hybrid").dumps(outer))
    assert copy[0] is copy[1] and copy[2] is copy


def test_out_of_band_buffers_pass_through():
    np = pytest.importorskip("numpy")
    arr = np.arange(1000.0)
    buffers: list[pickle.PickleBuffer] = []
    p = get_pickler("hybrid")
    data = p.dumps(arr, buffer_callback=buffers.append)
    assert len(buffers) == 1 and len(data) < 1000
    assert (p.loads(data, buffers=buffers) == arr).all()


def importable(x):
    return x + 1


def test_importable_functions_go_by_reference():
    data = get_pickler("hybrid").dumps(importable)
    assert data == pickle.dumps(importable, protocol=5)


# -- awkward objects: what each pickler does -----------------------------------------


def _closure():
    base = 10

    def add(x):
        return x + base

    return add


def _local_instance():
    class Local:
        def __init__(self):
            self.v = 7

    return Local()


class LockHolder:
    def __init__(self):
        self._lock = threading.RLock()
        self.data = {"w": [1.0, 2.0]}


def _generator():
    return (i for i in range(3))


def _queue():
    q = queue.Queue()
    q.put("job")
    return q


OK, FAILS = "ok", "fails"
AWKWARD = {
    # name: (factory, check of the rebuilt object, outcome per pickler)
    "lambda": (lambda: lambda x: x * 2, lambda f: f(3) == 6, (FAILS, OK, OK)),
    "closure": (_closure, lambda f: f(1) == 11, (FAILS, OK, OK)),
    "local class": (_local_instance, lambda o: o.v == 7, (FAILS, OK, OK)),
    "generator": (_generator, None, (FAILS, FAILS, FAILS)),
    "lock-holding class": (LockHolder, lambda o: o.data == {"w": [1.0, 2.0]}, (FAILS, FAILS, OK)),
    "queue": (_queue, lambda q: q.get_nowait() == "job", (FAILS, FAILS, OK)),
    "condition": (threading.Condition, lambda c: isinstance(c, threading.Condition), (FAILS, FAILS, OK)),
    "event": (threading.Event, lambda e: not e.is_set(), (FAILS, FAILS, OK)),
}


@pytest.mark.parametrize("name", list(AWKWARD))
@pytest.mark.parametrize("pickler", PICKLERS)
def test_awkward_objects(name, pickler):
    factory, check, outcomes = AWKWARD[name]
    expected = outcomes[PICKLERS.index(pickler)]
    p = get_pickler(pickler)
    obj = factory()
    if expected == FAILS:
        with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
            p.dumps(obj)
        return
    copy = p.loads(p.dumps(obj))
    assert check is None or check(copy)


@pytest.mark.parametrize("pickler", PICKLERS)
def test_open_binary_file_fails_everywhere(pickler, tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc")
    with open(path, "rb") as f, pytest.raises(TypeError):
        get_pickler(pickler).dumps(f)


@pytest.mark.parametrize("pickler", PICKLERS)
def test_open_text_file_only_by_cloudpickle_rules(pickler, tmp_path):
    """cloudpickle sends a text file opened for reading as its contents; hybrid too."""
    path = tmp_path / "data.txt"
    path.write_text("hello")
    p = get_pickler(pickler)
    with open(path) as f:
        if pickler == "pickle":
            with pytest.raises(TypeError):
                p.dumps(f)
        else:
            assert p.loads(p.dumps(f)).read() == "hello"


@pytest.mark.parametrize("mode", ["w", "a", "r+", "w+", "a+"])
def test_a_text_file_open_for_writing_is_refused_as_what_a_task_gets(mode, tmp_path):
    # cloudpickle sends a text file opened "r+", "w+" or "a+" as an io.StringIO copy of
    # its contents: a task's writes went to the copy and were lost, silently.
    from picklepool import Parallel, delayed

    path = tmp_path / "log.txt"
    path.write_text("start\n")
    with open(path, mode) as f, pytest.raises(pickle.PicklingError, match="open for writing"):
        Parallel(n_jobs=2)(delayed(id)(f) for _ in range(1))
    hybrid = get_pickler("hybrid")
    assert hybrid.loads(hybrid.dumps(sys.stdout)) is sys.stdout
    # The hybrid pickler on its own pickles it as cloudpickle does (cloudpickle's own tests
    # ask for the copy of a "w+" file): a copy when it can be read, else cloudpickle's error.
    with open(path, mode) as f:
        if "+" in mode:
            f.seek(0)
            assert isinstance(hybrid.loads(hybrid.dumps(f)), io.StringIO)
        else:
            with pytest.raises(pickle.PicklingError, match="not opened for reading"):
                hybrid.dumps(f)


def test_a_named_temporary_file_is_refused_and_left_alone(tmp_path):
    # A NamedTemporaryFile ("w+") travelled as a copy; the worker could not rebuild its
    # wrapper (KeyError: 'file'), and its copy of the file's closer deleted the parent's file.
    proc = run_python(
        f"""
        import os, tempfile
        from picklepool import Parallel, PicklingError, delayed

        def write(f, i):
            f.write(str(i))
            return i

        with tempfile.NamedTemporaryFile("w+", dir={str(tmp_path)!r}) as tf:
            try:
                Parallel(n_jobs=2)(delayed(write)(tf, i) for i in range(2))
            except PicklingError as exc:
                print(exc)
            print(os.path.exists(tf.name))
        """
    )
    assert proc.returncode == 0, proc.stderr
    message, exists = proc.stdout.splitlines()
    assert message.startswith("task 0: write(") and "cannot pickle args[0].file " in message, message
    assert "open for writing" in message and "Fix: send its path" in message, message
    assert exists == "True"


@pytest.mark.parametrize("pickler", PICKLERS)
def test_socket_fails_everywhere(pickler):
    with socket.socket() as s, pytest.raises(TypeError):
        get_pickler(pickler).dumps(s)


MAIN_SCRIPT = """
    import pickle, sys
    from picklepool.pickler import get_pickler, sentinels

    SCALE = 3

    def triple(x):
        return x * SCALE

    class Box:
        def __init__(self, v):
            self.v = v

    p = get_pickler(sys.argv[1] if len(sys.argv) > 1 else "{name}")
    sys.stdout.buffer.write(p.dumps((triple, Box(4))))
"""

LOAD_SCRIPT = """
    import pickle, sys
    f, box = pickle.loads(sys.stdin.buffer.read())
    print(f(2), box.v, type(box).__name__)
"""


@pytest.mark.parametrize("pickler", PICKLERS)
def test_main_functions_and_classes(pickler):
    import subprocess
    import sys
    import textwrap

    made = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MAIN_SCRIPT.format(name=pickler))],
        capture_output=True,
        env=dict(os.environ),
        check=True,
    )
    loaded = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LOAD_SCRIPT)],
        input=made.stdout,
        capture_output=True,
        env=dict(os.environ),
    )
    if pickler == "pickle":
        assert loaded.returncode != 0 and b"Can't get attribute 'triple'" in loaded.stderr
    else:
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout.decode().split() == ["6", "4", "Box"]


def test_main_function_through_parallel_with_every_pickler():
    proc = run_python(
        """
        import threading
        from picklepool import Parallel, delayed

        LOCK = threading.RLock()

        def square(x):
            with LOCK:  # a __main__ function whose global is a lock
                return x * x

        for name in ("cloudpickle", "pickle", "hybrid"):
            try:
                print(name, Parallel(n_jobs=2, pickler=name)(delayed(square)(i) for i in range(4)))
            except Exception as exc:
                print(name, type(exc).__name__)
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == ["cloudpickle PicklingError", "pickle UnpicklingError", "hybrid [0, 1, 4, 9]"]


def test_pickler_class_is_usable_directly():
    f = io.BytesIO()
    Pickler(f, protocol=5).dump({"lock": threading.Lock(), "f": lambda: math.pi})
    copy = pickle.loads(f.getvalue())
    assert copy["f"]() == math.pi and copy["lock"].acquire(blocking=False)


def test_lru_cache_functions_of_main_travel_by_value():
    # An lru_cache/cache wrapper pickles by name; one defined in __main__ (a memoised
    # helper of a script) could not be found in a worker, though the same function
    # undecorated travels by value. cloudpickle keeps that limit, and says why.
    proc = run_python(
        """
        import functools
        from picklepool import Parallel, delayed

        SCALE = 3

        @functools.cache
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        @functools.lru_cache(maxsize=4, typed=True)
        def scaled(x):
            return x * SCALE

        def uses_scaled(x):
            return scaled(x), scaled.cache_parameters()["maxsize"]

        print(Parallel(n_jobs=2)(delayed(fib)(i) for i in range(10, 13)))
        print(Parallel(n_jobs=2)(delayed(uses_scaled)(i) for i in range(3)))
        try:
            Parallel(n_jobs=2, pickler="cloudpickle")(delayed(uses_scaled)(i) for i in range(3))
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["[55, 89, 144]", "[(0, 4), (3, 4), (6, 4)]"]
    assert lines[2].startswith("UnpicklingError"), lines[2]
    assert "is a functools._lru_cache_wrapper, whose own pickling sends it by name" in lines[2]
    assert "use pickler='hybrid' (the default)" in lines[2]


def test_slots_classes_of_main_come_back_from_workers():
    # cloudpickle rebuilt a __main__ class with __slots__ without slots (it sets
    # __slots__ on an empty skeleton), so the worker's instances had a __dict__ and a
    # result carrying one could not be rebuilt in the parent ("'C' object has no
    # attribute '__dict__'"); joblib fails the same way. hybrid makes the slots.
    proc = run_python(
        """
        import typing
        from dataclasses import dataclass, field
        from picklepool import Parallel, delayed

        @dataclass(slots=True)
        class Point:
            x: int
            tags: list = field(default_factory=list)

        class Pair:
            __slots__ = ("__a", "b")
            def __init__(self, a, b):
                self.__a = a
                self.b = b
            def get(self):
                return self.__a, self.b

        class Child(Pair):
            __slots__ = "c"
            def __init__(self):
                super().__init__(1, 2)
                self.c = 3

        class Named(typing.NamedTuple):  # __slots__ = (), refused in its namespace
            x: int

        def echo(x):
            return x, hasattr(x, "__dict__")

        def make(i):
            return Point(i, [i]), Pair(i, -i)

        out = Parallel(n_jobs=2)(delayed(echo)(o) for o in [Point(1), Pair(2, 3), Child(), Named(4)])
        print([(type(o).__name__, has_dict) for o, has_dict in out])
        p, pair, child, named = (o for o, _ in out)
        print(named, type(named) is Named)
        print(p, pair.get(), child.get(), child.c)
        print(Parallel(n_jobs=2)(delayed(make)(i) for i in range(2))[1][0])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[('Point', False), ('Pair', False), ('Child', False), ('Named', False)]",
        "Named(x=4) True",
        "Point(x=1, tags=[]) (2, 3) (1, 2) 3",
        "Point(x=1, tags=[1])",
    ]


def test_nested_and_local_classes_keep_their_qualified_name_in_workers():
    # cloudpickle rebuilt a class sent by value with its __name__ only (a type keeps
    # __qualname__ outside its __dict__), so in a worker Outer.Inner was "Inner": a
    # dataclass's repr, type(x).__qualname__ and messages differed from the parent's.
    proc = run_python(
        """
        from dataclasses import dataclass
        from picklepool import Parallel, delayed

        class Outer:
            @dataclass
            class Inner:
                v: int

        def local():
            @dataclass
            class Row:
                x: int
            return Row

        Row = local()

        def show(o):
            return repr(o), type(o).__qualname__, type(o).__name__

        def make(i):
            return repr(Outer.Inner(i))

        tasks = [Outer.Inner(1), Row(2)]
        print(Parallel(n_jobs=2)(delayed(show)(o) for o in tasks) == [show(o) for o in tasks])
        print(Parallel(n_jobs=2)(delayed(make)(i) for i in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "['Outer.Inner(v=0)', 'Outer.Inner(v=1)']"]


def test_enums_of_main_keep_their_aliases_and_named_flag_combinations_in_workers():
    # cloudpickle rebuilt an enum sent by value from the members its iteration gives,
    # which leaves out aliases and a flag's named combinations: in the worker
    # Status["SUCCESS"] was a KeyError (joblib fails the same way).
    proc = run_python(
        """
        import enum
        from picklepool import Parallel, delayed

        class Status(enum.Enum):
            OK = 0
            SUCCESS = 0
            FAIL = 1

        class Perm(enum.Flag):
            R = 4
            W = 2
            RW = 6

        def look(name):
            return Status[name], Status.SUCCESS is Status.OK, Perm.RW, Perm(6).name, list(Perm.__members__)

        names = ["SUCCESS", "FAIL"]
        print(Parallel(n_jobs=2)(delayed(look)(n) for n in names) == [look(n) for n in names])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True"]


def test_an_enum_cloudpickle_cannot_rebuild_is_said_so_with_the_advice_to_use_hybrid():
    # cloudpickle sets the attributes of the copy it gets on the class it already has: an
    # enum's alias member (RW = R | W) is refused there ("cannot reassign member 'RW'"), in
    # the parent for a result, in a worker for an argument (a class the worker made, whose
    # member came back); the advice was to fix a __setstate__ or __reduce__ never written
    proc = run_python(
        """
        import enum
        from picklepool import Executor, Parallel, delayed
        from picklepool.errors import UnpicklingError

        class Perm(enum.Flag):
            R = 4
            W = 2
            RW = R | W

        KEPT = []

        def get(i):
            return Perm.RW

        def make():
            class Mode(enum.Flag):
                R = 4
                W = 2
                RW = R | W
            KEPT.append(Mode)  # (the worker's own class stays, under the id its member went with)
            return Mode.RW

        def value(mode):
            return mode.value

        try:
            Parallel(n_jobs=2, pickler="cloudpickle")(delayed(get)(i) for i in range(2))
        except UnpicklingError as exc:
            print(exc)
        with Executor(max_workers=1, pickler="cloudpickle") as ex:
            try:
                ex.submit(value, ex.submit(make).result()).result()
            except UnpicklingError as exc:
                print(exc)
        print(Parallel(n_jobs=2)(delayed(get)(i) for i in range(2)) == [Perm.RW] * 2)
        with Executor(max_workers=1) as ex:
            print(ex.submit(value, ex.submit(make).result()).result())
        """
    )
    assert proc.returncode == 0, proc.stderr
    result, argument, *rest = proc.stdout.splitlines()
    hybrid = "Fix: use pickler='hybrid' (the default), which rebuilds the classes and enums it sends by value"
    assert result.startswith("the reply of task "), result
    assert (
        "could not be unpickled in the parent with pickler 'cloudpickle': AttributeError: cannot "
        "reassign member 'RW'. A result's unpickling failed in this process inside cloudpickle's own "
        "rebuilding of the enum __main__.Perm, sent by value (cloudpickle's _class_setstate): not in a "
        "method of yours" in result
    ), result
    assert hybrid in result and "or define Perm in a module the workers import" in result, result
    assert argument.startswith("a worker could not rebuild the arguments of task 1"), argument
    assert (
        "An argument's unpickling failed in the worker inside cloudpickle's own rebuilding of a class"
        in argument
    ), argument
    assert hybrid in argument, argument
    assert "Fix that method" not in result + argument
    assert rest == ["True", "6"]


def test_newtypes_and_paramspecs_of_main_travel_with_the_functions_they_annotate():
    # They pickle by name: a function of the script merely annotated with one failed in
    # the worker ("Can't get attribute 'UserId' on <module '__main__'>"), as under joblib.
    proc = run_python(
        """
        import typing
        from picklepool import Parallel, delayed

        UserId = typing.NewType("UserId", int)
        P = typing.ParamSpec("P", bound=None)
        Ts = typing.TypeVarTuple("Ts")

        def bump(u: UserId, cb: typing.Callable[P, int] = None, *rest: typing.Unpack[Ts]) -> UserId:
            hints = typing.get_type_hints(bump)
            return UserId(u + 1), repr(hints["u"]), hints["u"].__supertype__, repr(P), repr(Ts)

        print(Parallel(n_jobs=2)(delayed(bump)(i) for i in range(2)) == [bump(0), bump(1)])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True"]


IMPORTABLE_ID = __import__("typing").NewType("IMPORTABLE_ID", int)


def test_an_importable_newtype_still_goes_by_name():
    assert pickle.loads(get_pickler("hybrid").dumps(IMPORTABLE_ID)) is IMPORTABLE_ID


def test_empty_slots_of_main_classes_keep_instances_without_a_dict():
    # `__slots__ = ()` says "no __dict__" (the namedtuple-subclass idiom, a subclass of
    # a slotted class): hybrid passed only non-empty slots to the rebuilt class, so in a
    # worker its instances took any attribute (a typo that raises in the parent passed
    # there) and a result carrying one could not be rebuilt in the parent
    proc = run_python(
        """
        import collections, typing
        from picklepool import Parallel, delayed

        class Point(collections.namedtuple("Point", "x y")):
            __slots__ = ()
            def norm(self):
                return abs(self.x) + abs(self.y)

        class Base:
            __slots__ = ("a",)

        class Sub(Base):
            __slots__ = ()

        class Named(typing.NamedTuple):
            x: int

        class SubNamed(Named):
            __slots__ = ()

        def try_set(cls):
            obj = cls.__new__(cls) if cls is Sub else cls(1, 2) if cls is Point else cls(1)
            try:
                obj.typo = 1
            except AttributeError:
                return cls.__name__, "refused"
            return cls.__name__, "taken"

        classes = [Point, Sub, Named, SubNamed]
        print([try_set(c) for c in classes])
        print(Parallel(n_jobs=2)(delayed(try_set)(c) for c in classes))
        print(Parallel(n_jobs=2)(delayed(Point.norm)(Point(i, -i)) for i in range(3)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    expected = "[('Point', 'refused'), ('Sub', 'refused'), ('Named', 'refused'), ('SubNamed', 'refused')]"
    assert lines == [expected, expected, "[0, 2, 4]"]


def test_a_plugin_module_loaded_from_its_file_travels_by_value(tmp_path):
    # A module loaded by path (importlib.util.spec_from_file_location, as plugin loaders
    # do) is in sys.modules but no import finds it by its name: its functions, classes
    # and the module itself (a __main__ function's global) went by name, and the worker
    # failed with "No module named 'myplugin'" where the loop the call replaces ran them.
    plugin = tmp_path / "plugins" / "myplugin.py"
    plugin.parent.mkdir()
    plugin.write_text(
        "FACTOR = 3\n"
        "def transform(x):\n    return x * FACTOR\n"
        "class Thing:\n    def __init__(self, v):\n        self.v = v\n"
        "    def doubled(self):\n        return Thing(self.v * 2)\n"
    )
    proc = run_python(
        f"""
        import importlib.util, sys
        from picklepool import Parallel, delayed

        spec = importlib.util.spec_from_file_location("myplugin", {str(plugin)!r})
        plugin = importlib.util.module_from_spec(spec)
        sys.modules["myplugin"] = plugin
        spec.loader.exec_module(plugin)

        def through_module(i):
            return plugin.transform(i)

        print(Parallel(n_jobs=2)(delayed(plugin.transform)(i) for i in range(3)))
        out = Parallel(n_jobs=2)(delayed(plugin.Thing.doubled)(plugin.Thing(i)) for i in range(2))
        print([type(t) is plugin.Thing for t in out], [t.v for t in out])
        plugin.FACTOR = 10  # sent with the call, as a __main__ global is
        print(Parallel(n_jobs=2)(delayed(through_module)(i) for i in range(3)))
        try:
            Parallel(n_jobs=2, pickler="cloudpickle")(delayed(plugin.transform)(i) for i in range(3))
        except Exception as exc:
            print(type(exc).__name__, exc)
        sys.path.insert(0, {str(plugin.parent)!r})  # found by its name now: by name again
        print(Parallel(n_jobs=2, pickler="pickle")(delayed(plugin.transform)(i) for i in range(3)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == ["[0, 3, 6]", "[True, True] [0, 2]", "[0, 10, 20]"]
    assert lines[3].startswith("UnpicklingError") and "No module named 'myplugin'" in lines[3]
    assert "cannot be imported by its name in the worker" in lines[3]
    assert "Fix: use pickler='hybrid' (the default)" in lines[3]
    assert lines[4] == "[0, 3, 6]"  # the worker imports the file itself (its FACTOR is 3)


def test_a_plugin_module_under_a_dotted_name_of_no_package_travels_by_value(tmp_path):
    # A plugin loader's dotted name ("plugins.alpha") with no "plugins" package loaded, or
    # anywhere to import: importing the name fails at "plugins", so the worker could not
    # import it either, but the check for "found by its name" took a package missing from
    # sys.modules for one it could not judge, and the module's functions and classes went
    # by name: the call failed in the parent ("import of module 'plugins.alpha' failed",
    # with a fix about class attributes) where the loop the call replaces ran them.
    plugin = tmp_path / "myplugin.py"
    plugin.write_text(
        "FACTOR = 3\n"
        "class Thing:\n    def __init__(self, v):\n        self.v = v\n"
        "def work(x):\n    return Thing(x * FACTOR)\n"
    )
    package = tmp_path / "found" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub.py").write_text("def f(x):\n    return x + 1\n")
    proc = run_python(
        f"""
        import importlib.util, sys
        from picklepool import Parallel, delayed
        from picklepool.pickler import homes

        def load(name, path):
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module

        def value(thing):
            return thing.v

        plugin = load("plugins.alpha", {str(plugin)!r})
        plugin.FACTOR = 5  # sent with the call, as a __main__ global is
        out = Parallel(n_jobs=2)(delayed(plugin.work)(i) for i in range(3))
        print([type(t) is plugin.Thing for t in out], [t.v for t in out])
        print(Parallel(n_jobs=2)(delayed(value)(plugin.Thing(i)) for i in range(2)))
        # a package that importing the name finds (not loaded yet), holding that very file:
        # by name, as before
        sys.path.insert(0, {str(package.parent)!r})
        sub = load("pkg.sub", {str(package / "sub.py")!r})
        print("pkg" in sys.modules, homes.not_found_by_name(sub.f), homes.not_found_by_name(plugin.work))
        print(Parallel(n_jobs=2, pickler="pickle")(delayed(sub.f)(i) for i in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[True, True, True] [0, 5, 10]",
        "[0, 1]",
        "False False True",
        "[1, 2]",
    ]


def test_a_module_made_by_hand_from_its_file_travels_by_value(tmp_path):
    # A module made without the import system (types.ModuleType with its __file__ set and
    # the file's code run in it, as config and plugin loaders do; runpy.run_path's
    # "<run_path>" module) has no __spec__: hybrid sent its functions and classes by name,
    # and the worker failed with "No module named 'cfgmod'" where the loop ran them (and,
    # for "<run_path>", advised putting a folder on sys.path, which cannot help).
    source = tmp_path / "cfgmod.py"
    source.write_text(
        "K = 3\ndef f(x):\n    return x * K\nclass C:\n    def __init__(self, v):\n        self.v = v\n"
    )
    script = tmp_path / "script.py"
    script.write_text(
        "from picklepool import Parallel, delayed\n"
        "K = 4\n"
        "def f(x):\n    return x * K\n"
        "print(Parallel(n_jobs=2)(delayed(f)(i) for i in range(3)))\n"
        "try:\n"
        "    Parallel(n_jobs=2, pickler='cloudpickle')(delayed(f)(i) for i in range(3))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    proc = run_python(
        f"""
        import runpy, sys, types
        from picklepool import Parallel, delayed

        m = types.ModuleType("cfgmod")
        m.__file__ = {str(source)!r}
        with open(m.__file__) as fh:
            exec(compile(fh.read(), m.__file__, "exec"), m.__dict__)
        sys.modules["cfgmod"] = m
        print(Parallel(n_jobs=2)(delayed(m.f)(i) for i in range(3)))
        print([type(c) is m.C for c in Parallel(n_jobs=2)(delayed(m.C)(i) for i in range(2))])
        runpy.run_path({str(script)!r})  # no run_name: its module is "<run_path>"
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == ["[0, 3, 6]", "[True, True]", "[0, 4, 8]"]
    assert lines[3].startswith("UnpicklingError") and "No module named '<run_path>'" in lines[3]
    assert "no file of that name exists" in lines[3] and "sys.path" not in lines[3]
    assert "Fix: use pickler='hybrid' (the default)" in lines[3]


def test_typing_newtype_and_paramspec_of_main_travel_by_value():
    # typing.NewType, ParamSpec and TypeVarTuple pickle by name only: one made in __main__
    # (UserId = NewType("UserId", int)) could not be found in a worker, and a function of
    # __main__ annotated with it (def load(uid: UserId)) could not be sent at all ("Can't
    # get attribute 'UserId' on <module '__main__'>"), where the loop ran it.
    proc = run_python(
        """
        import typing
        from typing import NewType, Optional, ParamSpec, TypeVarTuple
        from picklepool import Parallel, delayed

        UserId = NewType("UserId", int)
        P = ParamSpec("P", bound=None)
        Ts = TypeVarTuple("Ts")

        def load(uid: UserId, tags: Optional[list[UserId]] = None) -> int:
            hints = typing.get_type_hints(load)
            return uid + 1, hints["uid"] is UserId, hints["uid"].__supertype__ is int

        def describe(obj):
            return repr(obj), getattr(obj, "__name__", None)

        print(Parallel(n_jobs=2)(delayed(load)(UserId(i)) for i in range(2)))
        print(Parallel(n_jobs=2)(delayed(describe)(o) for o in (UserId, P, Ts, Optional[UserId])))
        try:
            Parallel(n_jobs=2, pickler="cloudpickle")(delayed(load)(UserId(i)) for i in range(2))
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "[(1, True, True), (2, True, True)]"
    assert lines[1] == (
        "[('__main__.UserId', 'UserId'), ('~P', 'P'), ('Ts', 'Ts'), "
        "('typing.Optional[__main__.UserId]', 'Optional')]"
    )
    assert lines[2].startswith("UnpicklingError") and "Can't get attribute 'UserId'" in lines[2]
    assert "or use pickler='hybrid' (the default), which sends typing's NewType" in lines[2]


def test_a_copyreg_reducer_registered_for_a_main_class_applies_to_its_results_too():
    # copyreg.pickle(DB, reduce_db) in a script ran in the parent only: the arguments
    # travelled by it, but a worker pickled a result of the class field by field, and
    # failed on what the reducer leaves out ("cannot pickle 'sqlite3.Connection' object"),
    # where the loop returned it. The worker's copy of the class now has the reducer.
    proc = run_python(
        """
        import copyreg, sqlite3
        from picklepool import Parallel, delayed

        class DB:
            def __init__(self, path):
                self.path = path
                self.conn = sqlite3.connect(path)

        def reduce_db(db):
            return DB, (db.path,)

        copyreg.pickle(DB, reduce_db)

        def open_db(i):
            return DB(":memory:")

        def same(db):
            return db

        out = Parallel(n_jobs=2)(delayed(open_db)(i) for i in range(2))
        out += Parallel(n_jobs=2)(delayed(same)(DB(":memory:")) for i in range(2))
        print([(type(db) is DB, db.conn.execute("select 1").fetchone()) for db in out])
        print(copyreg.dispatch_table[DB] is reduce_db)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[(True, (1,)), (True, (1,)), (True, (1,)), (True, (1,))]", "True"]


def test_a_plugin_packages_import_inside_a_task_names_the_module_and_the_fix(tmp_path):
    # A function of a package loaded by path that imports a sibling inside its body (a
    # lazy "from .other import helper") goes by value, and the import runs in the worker,
    # which cannot find the package: the error said "No module named 'mypkg'" and nothing
    # more, where the loop ran it.
    package = tmp_path / "plugins" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core.py").write_text("def lazy(x):\n    from .other import helper\n    return helper(x)\n")
    (package / "other.py").write_text("def helper(x):\n    return x + 1\n")
    proc = run_python(
        f"""
        import importlib.util, sys
        from picklepool import Parallel, delayed

        spec = importlib.util.spec_from_file_location(
            "mypkg", {str(package / "__init__.py")!r}, submodule_search_locations=[{str(package)!r}]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["mypkg"] = module
        spec.loader.exec_module(module)
        import mypkg.core

        print([mypkg.core.lazy(i) for i in range(2)])
        try:
            Parallel(n_jobs=2)(delayed(mypkg.core.lazy)(i) for i in range(2))
        except ModuleNotFoundError as exc:
            print(" ".join(exc.__notes__))
        sys.path.insert(0, {str(package.parent)!r})  # the fix the note gives
        print(Parallel(n_jobs=2)(delayed(mypkg.core.lazy)(i) for i in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "[1, 2]" and lines[2] == "[1, 2]"
    assert "module 'mypkg' was loaded here from its file" in lines[1]
    assert f"sys.path.insert(0, {str(package.parent)!r})" in lines[1]


def test_modules_found_by_their_name_are_not_sent_by_value():
    import json.decoder

    from picklepool.pickler import homes

    assert not homes.not_found_by_name(json.dumps) and not homes.not_found_by_name(json.decoder.JSONDecoder)
    assert not homes.module_not_found(json.decoder) and not homes.module_not_found(sys)
    assert not homes.not_found_by_name(cached_square)  # a test module, on sys.path


def test_results_of_main_classes_leave_the_parents_own_classes_as_they_are():
    # A result's class, sent back by value, was set on the parent's own class (cloudpickle
    # reuses the class its id names, then sets the copy's attributes on it): its methods
    # became the worker's, whose globals are a copy of the parent's of the call's time,
    # so the parent's own C().get() read a global rebound since at its old value. joblib
    # does the same.
    proc = run_python(
        """
        import enum
        from picklepool import Parallel, delayed

        CONFIG = 1

        class C:
            tag = "first"
            def get(self):
                return CONFIG, self.tag

        class Color(enum.Enum):
            RED = 1
            def config(self):
                return CONFIG

        def make(i):
            return C(), Color.RED

        def read(c):
            return c.get()

        get, config = C.get, Color.config
        out = Parallel(n_jobs=2)(delayed(make)(i) for i in range(2))
        CONFIG = 2
        print(C.get is get, Color.config is config, C().get(), Color.RED.config())
        print(type(out[0][0]) is C, out[0][1] is Color.RED, out[0][0].get())
        C.tag = "second"  # the workers' copies still follow the parent's class
        print(Parallel(n_jobs=2)(delayed(read)(C()) for i in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "True True (2, 'first') 2",
        "True True (2, 'first')",
        "[(2, 'second'), (2, 'second')]",
    ]


def test_the_members_of_a_main_enum_keep_what_its_init_set_in_a_worker():
    # cloudpickle makes a by-value enum's members by the functional API, which runs no
    # __init__ of the class: the Python docs' Planet (an Enum whose __init__ sets mass)
    # reached through a function's globals, or a str-mixin enum's member as an argument,
    # arrived without the attributes (AttributeError in the task; joblib fails the same)
    proc = run_python(
        """
        import enum
        from picklepool import Parallel, delayed

        class Planet(enum.Enum):
            MERCURY = (3.303e23, 2.4397e6)
            EARTH = (5.976e24, 6.37814e6)
            def __init__(self, mass, radius):
                self.mass = mass
                self.radius = radius

        class Color(str, enum.Enum):
            RED = "r"
            SCARLET = "r"  # an alias: the same member
            def __init__(self, code):
                self.label = code.upper()

        class Level(enum.IntEnum):
            LOW = 1
            def __init__(self, value):
                self.tag = f"L{value}"

        def look(color):
            return (
                [p.radius for p in Planet], color.label, Color.SCARLET.label, Level.LOW.tag,
                color is Color.RED,
            )

        print(look(Color.RED))
        print(Parallel(n_jobs=2)(delayed(look)(Color.RED) for _ in range(2)))
        Level.LOW.tag = "changed"  # the next call's copy follows the parent's members
        print(Parallel(n_jobs=2)(delayed(look)(Color.RED) for _ in range(2))[0][3])
        out = Parallel(n_jobs=2)(delayed(lambda: (Planet.EARTH, Color.RED))() for _ in range(2))
        print(out[0][0] is Planet.EARTH, out[0][1] is Color.RED, Planet.EARTH.mass, Level.LOW.tag)
        """
    )
    assert proc.returncode == 0, proc.stderr
    parent = "([2439700.0, 6378140.0], 'R', 'R', 'L1', True)"
    assert proc.stdout.splitlines() == [
        parent,
        f"[{parent}, {parent}]",
        "changed",
        "True True 5.976e+24 changed",
    ]


def test_an_enum_member_holding_what_cannot_be_pickled_is_named_by_its_attribute():
    # its attributes travel with its class now: the search for the culprit walked into the
    # member's __objclass__ first and named the class ("args[0].__objclass__", with the
    # generic advice), not the attribute holding the generator
    proc = run_python(
        """
        import enum
        from picklepool import Parallel, PicklingError, delayed

        class Source(enum.Enum):
            A = 1
            def __init__(self, value):
                self.rows = (i for i in range(value))

        try:
            Parallel(n_jobs=2)(delayed(str)(Source.A) for _ in range(2))
        except PicklingError as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "cannot pickle args[0].rows (type builtins.generator)" in proc.stdout, proc.stdout
    assert "__objclass__" not in proc.stdout


def test_a_workers_copy_of_a_main_class_is_the_parents_class_at_each_call():
    # cloudpickle only sets the pickled copy's attributes on a class a warm worker already
    # had: an attribute the parent deleted, or one a task added, stayed for every later call
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        class C:
            k = 1
            extra = "parent's"

        class Sub(C):
            pass

        def mark(i):
            C.seen = i
            Sub.own = i
            return i

        def read(i):
            return hasattr(C, "seen"), hasattr(Sub, "own"), hasattr(C, "extra"), C.k, Sub.k

        with Parallel(n_jobs=2) as p:
            print(p(delayed(read)(i) for i in range(2)))
            p(delayed(mark)(i) for i in range(4))
            del C.extra
            C.k = 2
            print(p(delayed(read)(i) for i in range(2)))
        print(read(0))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[(False, False, True, 1, 1), (False, False, True, 1, 1)]",
        "[(False, False, False, 2, 2), (False, False, False, 2, 2)]",
        "(False, False, False, 2, 2)",
    ]


def test_a_class_statements_init_subclass_runs_once_where_it_was_written():
    # Rebuilding a class ran its bases' __init_subclass__ again: in the parent, for a
    # result's class (a skeleton made only to be dropped), which the parent's registry then
    # named; in a worker, a second registration; a hook taking a class keyword failed
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        BY_TAG = {}
        ORDER = []

        class Plugin:
            def __init_subclass__(cls, *, tag, **kwargs):
                super().__init_subclass__(**kwargs)
                cls.tag = tag
                BY_TAG[tag] = cls
                ORDER.append(tag)

        class Csv(Plugin, tag="csv"):
            def run(self):
                return "csv"

        def use(plugin):
            return plugin.run(), sorted(BY_TAG), ORDER, BY_TAG["csv"] is type(plugin)

        def make(i):
            return Csv()

        print(Parallel(n_jobs=2)(delayed(use)(Csv()) for i in range(2)))
        out = Parallel(n_jobs=2)(delayed(make)(i) for i in range(2))
        print(BY_TAG["csv"] is Csv, ORDER, type(out[0]) is Csv, BY_TAG["csv"]().run())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[('csv', ['csv'], ['csv'], True), ('csv', ['csv'], ['csv'], True)]",
        "True ['csv'] True csv",
    ]


@pytest.mark.parametrize("pickler", ["hybrid", "cloudpickle"])
def test_a_class_registered_in_a_main_abc_stays_registered_in_a_worker_across_batches(pickler):
    # The worker keeps the ABC with the call's function, but the copy of the registered class
    # came with a batch's arguments: nothing held it after the batch, the ABC's registry (weak
    # references) lost it, the next batch's copy was a new class that no registration named,
    # and isinstance turned False after the first batch (joblib, which sends the ABC with
    # every batch, answers True). One worker, and a collection in each task, make the batches'
    # order and the copies' end certain. Held, the copies stay one a class over many calls.
    proc = run_python(
        f"""
        import abc, gc
        from picklepool import Executor, Parallel, delayed

        class Shape(abc.ABC):
            @abc.abstractmethod
            def area(self): ...

        class Square:
            def area(self):
                return 1

        Shape.register(Square)

        def make():
            class Local:  # a class no name of the module holds
                pass
            Shape.register(Local)
            return Local

        Local = make()

        def check(x):
            gc.collect()  # a batch without the class: the last batch's copy, if not held, ends
            return x is None or isinstance(x, Shape)

        def check_abc(abc_class):
            gc.collect()
            return abc_class is None or isinstance(Square(), abc_class)  # the ABC per batch

        def copies(x):
            gc.collect()
            return isinstance(x, Shape), sum(
                isinstance(o, type) and o.__name__ == "Local" for o in gc.get_objects()
            )

        def alternate(make_one):
            return [make_one() if i % 2 == 0 else None for i in range(6)]

        print(Parallel(n_jobs=2, pickler={pickler!r})(delayed(check)(Square()) for i in range(8)))
        with Executor(max_workers=1, pickler={pickler!r}) as ex:
            print(list(ex.map(check, alternate(Square))))
            print(list(ex.map(check, alternate(Local))))
            print(list(ex.map(check_abc, alternate(lambda: Shape))))
            print([ex.submit(check, x).result() for x in alternate(Square)])
        seen = []
        for i in range(20):  # a new class made and registered for each call
            Local = make()
            seen += Parallel(n_jobs=2, pickler={pickler!r})(delayed(copies)(Local()) for _ in range(4))
            del Local
            gc.collect()  # (the parent's ABC forgets it)
        print(all(ok for ok, _ in seen), max(n for _, n in seen))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:5] == [str([True] * 8)] + [str([True] * 6)] * 4
    registered, most = lines[5].split()
    # the copies the task's own arguments hold, and at most those of the batch before
    assert registered == "True" and 1 <= int(most) <= 2, lines[5]


def test_a_workers_copy_of_a_main_class_lives_as_long_as_the_parents_name_holds_it():
    # What holds a class weakly (a WeakSet of classes, its base's __subclasses__()) lost the
    # worker's copy with the batch that brought it; a copy is held under the name that holds
    # the parent's class, and one only: a class defined again under the same name, or one no
    # name holds (type(f"Dyn{i}", ...)), leaves no copy behind over many calls
    proc = run_python(
        """
        import gc, weakref
        from picklepool import Executor, Parallel, delayed

        class Thing:
            pass

        class Base:
            pass

        class Sub(Base):
            pass

        KNOWN = weakref.WeakSet([Thing])

        def known(x):
            gc.collect()
            return x is None or type(x) in KNOWN

        def subclasses(x):
            gc.collect()
            return [c.__name__ for c in Base.__subclasses__()]

        def copies(x):
            gc.collect()
            return sorted(
                o.__name__[:3] for o in gc.get_objects()
                if isinstance(o, type) and (o.__name__ == "Point" or o.__name__.startswith("Dyn"))
            )

        with Executor(max_workers=1) as ex:
            print(list(ex.map(known, [Thing() if i % 2 == 0 else None for i in range(6)])))
            print(list(ex.map(subclasses, [Sub(), None, None])))
        seen = []
        for i in range(30):
            class Point:  # a new class under the same name, each time
                pass
            Dyn = type(f"Dyn{i}", (), {})
            seen.append(Parallel(n_jobs=2)(delayed(copies)((Point(), Dyn())) for _ in range(4))[-1])
            del Dyn
        print(max(s.count("Poi") for s in seen), max(s.count("Dyn") for s in seen))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == [str([True] * 6), str([["Sub"]] * 3)]
    # the copies the task's own arguments hold, and at most those of the batch before
    points, dyns = map(int, lines[2].split())
    assert 1 <= points <= 2 and 1 <= dyns <= 2, lines[2]


def test_an_object_whose_getattr_delegates_travels_both_ways():
    # pickle's BUILD asks the new instance for __setstate__ before it has attributes: a
    # delegating __getattr__ (getattr(self._target, name)) called itself until RecursionError,
    # in the worker for an argument and in the parent for a result (joblib fails alike)
    proc = run_python(
        """
        import threading
        from picklepool import Parallel, delayed

        class Proxy:
            def __init__(self, target):
                self._target = target
            def __getattr__(self, name):
                return getattr(self._target, name)

        class SlottedProxy(Proxy):
            __slots__ = ()

        class LockedProxy(Proxy):
            def __init__(self, target):
                super().__init__(target)
                self._lock = threading.RLock()

        def wrap(i):
            return Proxy(i), LockedProxy(i)

        def read(p):
            return type(p).__name__, p.real

        print(Parallel(n_jobs=2)(delayed(read)(p) for p in [Proxy(3), SlottedProxy(4), LockedProxy(5)]))
        print([[read(p) for p in pair] for pair in Parallel(n_jobs=2)(delayed(wrap)(i) for i in range(2))])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[('Proxy', 3), ('SlottedProxy', 4), ('LockedProxy', 5)]",
        "[[('Proxy', 0), ('LockedProxy', 0)], [('Proxy', 1), ('LockedProxy', 1)]]",
    ]


def test_a_subclass_of_a_stdlib_type_with_a_constructor_of_its_own_comes_back_as_it_went():
    # OrderedDict, defaultdict, deque, Counter, date... pickle as cls(the base's arguments):
    # such a subclass failed ("missing 1 required positional argument"), or came back with
    # its own attribute set to the base's argument (a defaultdict's name = list), silently
    proc = run_python(
        """
        import collections, datetime
        from picklepool import Parallel, delayed

        class Index(collections.defaultdict):
            def __init__(self, name):
                super().__init__(list)
                self.name = name

        class Recent(collections.deque):
            def __init__(self, name, items=()):
                super().__init__(items, maxlen=2)
                self.name = name

        class Tally(collections.Counter):
            def __init__(self, name, text=""):
                super().__init__(text)
                self.name = name

        class Ordered(collections.OrderedDict):
            def __init__(self, name):
                super().__init__(b=1, a=2)
                self.name = name

        class Day(datetime.date):
            def __new__(cls, name):
                day = super().__new__(cls, 2020, 1, 2)
                day.name = name
                return day

        def make(i):
            index = Index("ix")
            index["k"].append(i)
            return [index, Recent("re", [1, 2, 3]), Tally("ta", "aab"), Ordered("or"), Day("da")]

        def describe(objs):
            return [(type(o).__name__, o.name, repr(o)) for o in objs]

        want = describe(make(0))
        print(describe(Parallel(n_jobs=2)(delayed(make)(i) for i in range(1))[0]) == want)
        print(Parallel(n_jobs=2)(delayed(describe)(make(0)) for i in range(1))[0] == want)
        print(Parallel(n_jobs=2)(delayed(describe)(make(0)) for i in range(1))[0][0][:2])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "True", "('Index', 'ix')"]


class _Seeded(random.Random):
    def __init__(self, seed=None, name="unnamed"):
        super().__init__(seed)
        self.name = name


def test_a_subclass_whose_stdlib_base_pickles_a_state_of_its_own_keeps_its_attributes():
    # random.Random pickles as cls() with its generator's state, which has no room for the
    # __dict__: hybrid made the instance with the base's constructor and set that state, so
    # a subclass's own attribute (self.name) was silently gone in the worker (AttributeError,
    # or the class's default read instead), where pickle itself at least called cls().
    pickler = get_pickler("hybrid")
    rng = _Seeded(7, name="trial-3")
    rng.random()
    copy = pickler.loads(pickler.dumps(rng))
    assert type(copy) is _Seeded and copy.name == "trial-3"
    assert [copy.random() for _ in range(3)] == [rng.random() for _ in range(3)]  # the same stream


def test_a_subclass_of_int_str_or_tuple_with_a_new_of_its_own_comes_back_as_it_went():
    # int, float, complex, str, bytes and tuple subclasses pickle as cls.__new__(cls, value):
    # one whose __new__ takes other arguments failed in the worker ("missing 1 required
    # keyword-only argument"), as an argument and as a result
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        class Meters(float):
            def __new__(cls, value, *, unit):
                made = super().__new__(cls, value * (1000 if unit == "km" else 1))
                made.unit = unit
                return made

        class Code(int):
            def __new__(cls, prefix, number):
                made = super().__new__(cls, number)
                made.prefix = prefix
                return made

        class Pair(tuple):
            def __new__(cls, a, b):
                return super().__new__(cls, (a, b))

        class Tag(str):
            def __new__(cls, value, owner):
                made = super().__new__(cls, value.upper())
                made.owner = owner
                return made

        def make(i):
            return [Meters(2, unit="km"), Code("E", 40 + i), Pair(i, "b"), Tag("x", "me")]

        def describe(objs):
            return [(type(o).__name__, repr(o), vars(o)) for o in objs]

        want = describe(make(0))
        print(describe(Parallel(n_jobs=2)(delayed(make)(i) for i in range(1))[0]) == want)
        print(Parallel(n_jobs=2)(delayed(describe)(make(0)) for i in range(1))[0] == want)
        print(want[0], want[3])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "True",
        "True",
        "('Meters', '2000.0', {'unit': 'km'}) ('Tag', \"'X'\", {'owner': 'me'})",
    ]


def test_a_slotted_subclass_of_float_with_a_new_of_its_own_comes_back_as_it_went():
    # the same with __slots__ (a value type kept small: `class Quantity(float): __slots__ =
    # ("unit",)`; float and complex are the value types that take non-empty slots): such
    # classes were left to their own pickling, cls.__new__(cls, value), so a task returning
    # one failed in the parent ("Quantity.__new__() missing 1 required positional argument:
    # 'unit'"), and one passed as an argument failed in the worker; under joblib too
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        class Quantity(float):
            __slots__ = ("unit",)
            def __new__(cls, value, unit):
                made = super().__new__(cls, value)
                made.unit = unit
                return made

        class Phase(complex):
            __slots__ = ("name", "__weakref__")
            def __new__(cls, re, im, *, name):
                made = super().__new__(cls, re, im)
                made.name = name
                return made

        class Point(tuple):
            __slots__ = ()
            def __new__(cls, x, y):
                return super().__new__(cls, (x, y))

        def make(i):
            return [Quantity(1.5 + i, "m"), Phase(1, i, name="p"), Point(i, 2)]

        def describe(objs):
            return [(type(o).__name__, repr(o), getattr(o, "unit", getattr(o, "name", None))) for o in objs]

        want = describe(make(0))
        print(describe(Parallel(n_jobs=2)(delayed(make)(i) for i in range(1))[0]) == want)
        print(Parallel(n_jobs=2)(delayed(describe)(make(0)) for i in range(1))[0] == want)
        print(want[0], want[1])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "True", "('Quantity', '1.5', 'm') ('Phase', '(1+0j)', 'p')"]


@functools.lru_cache
def cached_square(x):
    return x * x


def test_an_importable_lru_cache_function_goes_by_name():
    data = get_pickler("hybrid").dumps(cached_square)
    assert b"cached_square" in data and b"co_code" not in data
    assert pickle.loads(data) is cached_square


def test_outside_a_call_a_function_round_trip_is_cloudpickles_copy():
    # ownfunctions' token is for calls only: a user's own hybrid.dumps/loads in one process
    # gives a copy with globals of its own (cloudpickle's suite checks it), and the bytes carry
    # nothing of this process (cloudpickle's pickles are the same in every process)
    def scale(x):
        return x * 2

    hybrid = get_pickler("hybrid")
    data = hybrid.dumps(scale)
    copy = hybrid.loads(data)
    assert copy is not scale and copy(3) == 6
    assert sentinels.nonce() not in data


def test_a_function_sent_by_value_keeps_its_file_name():
    # cloudpickle names its code "<dynamic-code>": a task's traceback named no file and
    # showed no source line, its warnings and log records no file either
    def fails(i):
        raise ValueError(f"bad {i}")

    hybrid = get_pickler("hybrid")
    data = hybrid.dumps(fails)  # (outside a call: cloudpickle's copy, no ownfunctions token)
    copy = hybrid.loads(data)
    assert copy is not fails and copy.__code__.co_filename == __file__
    assert copy.__code__.co_firstlineno == fails.__code__.co_firstlineno

    from picklepool import Parallel, delayed

    with pytest.raises(ValueError, match="bad 0") as info:
        Parallel(n_jobs=2)(delayed(fails)(i) for i in range(1))
    worker_traceback = str(info.value.__cause__)
    assert f'File "{__file__}", line {fails.__code__.co_firstlineno + 1}, in fails' in worker_traceback
    assert 'raise ValueError(f"bad {i}")' in worker_traceback


LAZY_PACKAGE = {
    # lazypkg.Thing and lazypkg.helper live in lazypkg._impl but name lazypkg.public
    # (a public submodule the package does not import) as their home, as
    # np.recarray names numpy.rec
    "lazypkg/__init__.py": "from ._impl import Thing, helper\n",
    "lazypkg/public.py": "from ._impl import Thing, helper\n",
    "lazypkg/_impl.py": (
        "class Base:\n"
        "    def describe(self):\n"
        "        return 'base'\n"
        "class Thing(Base):\n"
        "    def describe(self):\n"
        "        return 'thing of ' + super().describe()\n"
        "def helper(x):\n"
        "    return x + 1\n"
        "Thing.__module__ = helper.__module__ = 'lazypkg.public'\n"
    ),
}


def test_a_class_whose_home_module_is_not_imported_yet_goes_by_name(tmp_path):
    # cloudpickle sent such a class by value (its module was not in sys.modules); in
    # the worker its methods, found by name, were the real class's, so super() in them
    # failed on the copy's instances: "super(type, obj): obj must be an instance or
    # subtype of type" (joblib fails the same way). hybrid imports the module first.
    for rel, text in LAZY_PACKAGE.items():
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text(text)
    proc = run_python(
        """
        import sys
        import lazypkg
        from picklepool import Parallel, delayed

        def use(thing, f):
            return thing.describe(), f(1), type(thing) is lazypkg.Thing

        assert "lazypkg.public" not in sys.modules
        print(Parallel(n_jobs=2)(delayed(use)(lazypkg.Thing(), lazypkg.helper) for _ in range(2)))
        """,
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[('thing of base', 2, True), ('thing of base', 2, True)]"]


def test_a_numpy_recarray_reaches_a_worker_whole():
    # np.recarray names numpy.rec, which numpy imports only when np.rec is used:
    # arr.view(np.recarray) sent the class by value, and indexing it in the task raised.
    pytest.importorskip("numpy")
    proc = run_python(
        """
        import sys
        import numpy as np
        from picklepool import Parallel, delayed

        def head(r):
            return type(r).__name__, r[:2].a.tolist()

        assert "numpy.rec" not in sys.modules
        rec = np.array([(1,), (2,), (3,)], dtype=[("a", "i4")]).view(np.recarray)
        print(Parallel(n_jobs=2)(delayed(head)(rec) for _ in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[('recarray', [1, 2]), ('recarray', [1, 2])]"]


def test_a_home_module_that_exits_at_import_does_not_end_the_program(tmp_path, monkeypatch):
    # a class naming as its home a module whose import runs sys.exit() (a script in a
    # package): importing it to send the class by name must not exit the caller, as the
    # standard library's pickler turns the failed import into a PicklingError; it goes
    # by value, as before import_home
    import sys

    (tmp_path / "exitingpkg").mkdir()
    (tmp_path / "exitingpkg" / "__init__.py").write_text("")
    (tmp_path / "exitingpkg" / "script.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "exitingpkg", None)  # removed again after the test
    del sys.modules["exitingpkg"]
    import exitingpkg  # noqa: F401  # its package is loaded: import_home tries its module

    class Local:
        value = 7

    Local.__module__ = "exitingpkg.script"
    copy = pickle.loads(HybridPickler().dumps(Local))
    assert copy.value == 7 and "exitingpkg.script" not in sys.modules


SPAWNED_MAIN = """
import concurrent.futures
import multiprocessing

from picklepool import Parallel, delayed, wrap_non_picklable_objects


class Point:
    def __init__(self, v):
        self.v = v


@wrap_non_picklable_objects
class Wrapped:
    def __init__(self, v):
        self.v = v


def square(x):
    return x * x


def point(v):
    return Point(v)


def in_the_child(pickler):
    try:
        if pickler == "pickle":  # only the wrapped class travels by value
            out = Parallel(n_jobs=2, pickler=pickler)(delayed(Wrapped)(i) for i in range(2))
            return [type(w) is Wrapped and w.v for w in out]
        squares = Parallel(n_jobs=2, pickler=pickler)(delayed(square)(i) for i in range(4))
        points = Parallel(n_jobs=2, pickler=pickler)(delayed(point)(i) for i in range(2))
        return squares, [type(p) is Point and p.v for p in points]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        for pickler in ("hybrid", "pickle", "cloudpickle"):
            print(ex.submit(in_the_child, pickler).result())
"""


@pytest.mark.timeout(120)
def test_a_spawned_processs_script_functions_and_classes_travel_by_value(tmp_path):
    # A process multiprocessing starts with "spawn" (or "forkserver") runs its parent's
    # script as __mp_main__: its functions and classes name that module, which the
    # workers do not have. They went by name ("Can't get attribute 'square' on <module
    # 'loky.backend.popen_loky_posix'>", and a message saying a function was not one).
    script = tmp_path / "spawned_main.py"
    script.write_text(SPAWNED_MAIN)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr
    hybrid, pickle_, cloudpickle_ = proc.stdout.splitlines()
    assert hybrid == "([0, 1, 4, 9], [0, 1])"
    assert pickle_ == "[0, 1]"  # wrap_non_picklable_objects: by value under any pickler
    # cloudpickle's own rule sends them by name: the message says why and what to do
    assert cloudpickle_.startswith("UnpicklingError: a worker could not rebuild the function __mp_main__.")
    assert "runs your script as the module '__mp_main__'" in cloudpickle_
    assert "pickler='hybrid'" in cloudpickle_


def test_a_singleton_of_main_that_pickles_by_its_name_travels_and_comes_back_itself():
    # pickle's singleton idiom (a __reduce__ returning the global's name) wrote __main__.MISSING,
    # which a worker does not have: every task whose function used the sentinel, or that was
    # given it, failed ("Can't get attribute 'MISSING' on <module '__main__'>"), as under
    # cloudpickle and joblib, where the loop ran; a worker's copy returned could not be sent back
    proc = run_python(
        """
        from picklepool import Executor, Parallel, delayed

        class _Missing:
            __slots__ = ("why",)
            def __init__(self):
                self.why = "no value"
            def __repr__(self):
                return "MISSING"
            def __reduce__(self):
                return "MISSING"

        MISSING = _Missing()
        CACHE = {1: "one"}

        class _Undefined(str):
            def __reduce__(self):
                return "UNDEFINED"

        UNDEFINED = _Undefined("<undefined>")

        def lookup(k, default=None):
            got = CACHE.get(k, MISSING)
            return got, got is MISSING, default is MISSING, MISSING.why, UNDEFINED, UNDEFINED.upper()

        def loop():
            return [lookup(k, MISSING) for k in range(3)]

        out = Parallel(n_jobs=2)(delayed(lookup)(k, MISSING) for k in range(3))
        print(out == loop(), [r[0] is MISSING for r in out])
        with Executor(2) as ex:
            print([r[0] is MISSING for r in ex.map(lookup, range(3))])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True [True, False, True]", "[True, False, True]"]


def test_a_function_of_main_returned_by_a_task_comes_back_as_the_parents_own():
    # a function of __main__ travels by value; a task returning it (the best of candidate
    # models, a handler it chose) gave the parent a copy: `MODELS.index(best)` raised
    # ValueError, a dict keyed by functions missed, and calling the copy read the globals as
    # they were when it was sent (WEIGHT rebound since: 4.0 where the loop gives 13.0). So did
    # an lru_cache-wrapped function (with its own empty cache) and a NewType/ParamSpec of
    # __main__ (`hint is UserId` False). joblib does the same (cloudpickle's copies).
    proc = run_python(
        """
        import functools, typing
        from picklepool import Executor, Parallel, delayed

        WEIGHT = 1.0
        def model_a(x):
            return x * WEIGHT
        def model_b(x):
            return x + WEIGHT
        MODELS = [model_a, model_b]
        UserId = typing.NewType("UserId", int)
        P = typing.ParamSpec("P")
        Ts = typing.TypeVarTuple("Ts")

        @functools.lru_cache(maxsize=None)
        def lookup(k):
            return k * 2

        def evaluate(m):
            return m(3.0), m

        def own(k):
            return [model_a, UserId, P, Ts, lookup][k]

        def adder(n):
            def add(x):
                return x + n
            return add

        res = Parallel(n_jobs=2)(delayed(evaluate)(m) for m in MODELS)
        best = max(res, key=lambda r: r[0])[1]
        print(MODELS.index(best), [r[1] is m for r, m in zip(res, MODELS)])
        print([o is own(k) for k, o in enumerate(Parallel(n_jobs=2)(delayed(own)(k) for k in range(5)))])
        add3 = adder(3)
        print(Parallel(n_jobs=2)(delayed(lambda f: f)(add3) for _ in range(2))[0] is add3)
        with Executor(2) as ex:
            print(ex.submit(evaluate, model_b).result()[1] is model_b)
        WEIGHT = 10.0
        print(best(3.0))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "1 [True, True]",
        "[True, True, True, True, True]",
        "True",
        "True",
        "13.0",
    ]


def test_a_newtype_of_main_is_one_object_in_a_worker_however_many_pickles_bring_it():
    # a NewType/ParamSpec of __main__ was made anew by each pickle: the task's function's
    # global, an argument and a SharedState's value were three objects (`hint is UserId`
    # False in the task, True in the loop)
    proc = run_python(
        """
        import typing
        from picklepool import Parallel, SharedState, delayed

        UserId = typing.NewType("UserId", int)
        P = typing.ParamSpec("P")

        def check(hint, spec, st):
            with st as v:
                return hint is UserId, v["uid"] is UserId, spec is P, v["p"] is P

        st = SharedState({"uid": UserId, "p": P})
        print(check(UserId, P, st))
        print(Parallel(n_jobs=2)(delayed(check)(UserId, P, st) for _ in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "(True, True, True, True)",
        "[(True, True, True, True), (True, True, True, True)]",
    ]


def test_a_function_a_task_made_comes_back_as_a_working_copy():
    # what the parent never had (a closure a task made, a function of the worker's own) comes
    # back by value as before, and a task still gets its own copy of the parent's function
    # (a change to its attributes stays in the worker)
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        def make(n):
            def add(x):
                return x + n
            return add

        def counted(x):
            counted.calls = getattr(counted, "calls", 0) + 1
            return counted

        print([f(1) for f in Parallel(n_jobs=2)(delayed(make)(n) for n in range(3))])
        out = Parallel(n_jobs=2)(delayed(counted)(i) for i in range(2))
        print([f is counted for f in out], hasattr(counted, "calls"))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[1, 2, 3]", "[True, True] False"]


def test_a_singletons_copy_in_a_warm_worker_follows_the_parents_object():
    # a worker kept its first copy of a __main__ singleton (one per parent object): a call
    # made after the parent changed it (CONFIG.scale = 10) saw the old state, and a task's
    # change to its copy reached the next call, where the loop sees the parent's state;
    # its slots too (also one named by a str, or mangled)
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        class _Config:
            __slots__ = ("__unit", "__dict__")
            def __init__(self):
                self.scale, self.__unit = 1, "m"
            def unit(self):
                return self.__unit
            def __reduce__(self):
                return "CONFIG"

        class _Flag:
            __slots__ = "why"
            def __reduce__(self):
                return "FLAG"

        CONFIG, FLAG = _Config(), _Flag()
        FLAG.why = "set"

        def read(x, config):
            return x * CONFIG.scale, config is CONFIG, config.unit(), FLAG.why

        def scribble(x):
            CONFIG.scale, CONFIG._Config__unit, CONFIG.extra = -1, "km", 1
            FLAG.why = "gone"
            return x

        with Parallel(n_jobs=2) as p:
            for scale in (1, 10, 100):
                CONFIG.scale = scale
                got = p(delayed(read)(x, CONFIG) for x in range(4))
                print(got == [read(x, CONFIG) for x in range(4)], got[1])
                p(delayed(scribble)(x) for x in range(4))
            print(p(delayed(hasattr)(CONFIG, "extra") for x in range(4)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "True (1, True, 'm', 'set')",
        "True (10, True, 'm', 'set')",
        "True (100, True, 'm', 'set')",
        "[False, False, False, False]",
    ]


def test_a_container_singletons_copy_in_a_warm_worker_follows_the_parents_items():
    # a singleton of a dict (list) subclass: the worker's copy kept the items it was made
    # with (only its __dict__ followed the parent): a registry the parent filled after the
    # first call was not seen, and a task's additions reached the next calls
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        class _Registry(dict):
            def __reduce__(self):
                return "REGISTRY"

        class _Seen(list):
            def __reduce__(self):
                return "SEEN"

        REGISTRY, SEEN = _Registry(a=1), _Seen([1])

        def read(x):
            return sorted(REGISTRY.items()), list(SEEN)

        def scribble(x):
            REGISTRY["task"] = x
            SEEN.append(x)
            return x

        with Parallel(n_jobs=2) as p:
            for n in (2, 3):
                REGISTRY[str(n)], SEEN[:] = n, [n]
                got = p(delayed(read)(x) for x in range(4))
                print(got == [read(x) for x in range(4)], got[0])
                p(delayed(scribble)(x) for x in range(4))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "True ([('2', 2), ('a', 1)], [2])",
        "True ([('2', 2), ('3', 3), ('a', 1)], [3])",
    ]


class _ByName:
    def __reduce__(self):
        return "BY_NAME"


BY_NAME = _ByName()


def test_a_singleton_of_an_importable_module_still_goes_by_its_name():
    assert pickle.loads(get_pickler("hybrid").dumps(BY_NAME)) is BY_NAME


class _Header(struct.Struct):
    """A struct.Struct of its own: an __init__ taking no format, a method, an attribute."""

    def __init__(self) -> None:
        super().__init__("<IH")
        self.name = "header"

    def read(self, data: bytes) -> tuple[int, ...]:
        return self.unpack(data)


def _read_header(header: _Header, x: int) -> tuple[str, str, tuple[int, ...], int, str]:
    return type(header).__name__, header.format, header.read(header.pack(x, x + 1)), header.size, header.name


def test_a_struct_subclass_travels_as_its_own_class():
    # class Header(struct.Struct) with an __init__ of its own: only struct.Struct itself was
    # sent as its format; its subclass failed every task ("cannot pickle '_Header' object"),
    # under each pickler, where the loop ran
    header = _Header()
    copy = get_pickler("hybrid").loads(get_pickler("hybrid").dumps(header))
    assert type(copy) is _Header and (copy.format, copy.size, copy.name) == ("<IH", 6, "header")
    got = Parallel(n_jobs=2)(delayed(_read_header)(header, x) for x in range(3))
    assert got == [_read_header(header, x) for x in range(3)]


class _SlottedHeader(struct.Struct):
    __slots__ = ("name", "__version")

    def __init__(self) -> None:
        super().__init__("<IH")
        self.name, self.__version = "header", 2

    def version(self) -> int:
        return self.__version


def test_a_struct_subclass_keeps_its_slots():
    # a subclass with __slots__ (no __dict__) arrived without their values (AttributeError
    # in the task), where the loop read them
    header = _SlottedHeader()
    copy = get_pickler("hybrid").loads(get_pickler("hybrid").dumps(header))
    assert (type(copy), copy.format, copy.name, copy.version()) == (_SlottedHeader, "<IH", "header", 2)
    got = Parallel(n_jobs=2)(delayed(_SlottedHeader.version)(header) for _ in range(2))
    assert got == [2, 2]


def test_struct_objects_and_directory_entries_travel_both_ways():
    # HEADER = struct.Struct("<II") read by a function of __main__, and the entries of
    # os.scandir(folder) passed to tasks (or returned by them): "cannot pickle
    # '_struct.Struct' object" / "'posix.DirEntry' object" failed every task, under
    # pickle, cloudpickle and joblib, where the loop ran
    proc = run_python(
        """
        import os, struct, tempfile
        from picklepool import Parallel, delayed

        HEADER = struct.Struct("<II")

        def parse(i):
            return HEADER.unpack(HEADER.pack(i, i + 1)), HEADER.size

        def describe(entry):
            with open(entry) as f:
                text = f.read()
            return (entry.name, entry.path, os.fspath(entry), entry.is_dir(), entry.is_file(),
                    entry.is_symlink(), entry.inode(), entry.stat().st_size, text)

        def listing(folder):
            return sorted(os.scandir(folder), key=lambda e: e.name)

        folder = tempfile.mkdtemp()
        for name in ("a.txt", "b.txt"):
            with open(os.path.join(folder, name), "w") as f:
                f.write(name * 3)
        print(Parallel(n_jobs=2)(delayed(parse)(i) for i in range(3)) == [parse(i) for i in range(3)])
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
        print(Parallel(n_jobs=2)(delayed(describe)(e) for e in entries) == [describe(e) for e in entries])
        back = Parallel(n_jobs=2)(delayed(listing)(folder) for _ in range(1))[0]
        print([describe(e) for e in back] == [describe(e) for e in entries])
        print(Parallel(n_jobs=2)(delayed(lambda s: s.format)(HEADER) for _ in range(1)))
        for e in entries:
            os.remove(e.path)
        os.rmdir(folder)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "True", "True", "['<II']"]


def test_a_directory_entry_keeps_what_its_listing_said_of_a_symlink(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (entry,) = [e for e in os.scandir(tmp_path) if e.name == "link"]
    copy = pickle.loads(get_pickler("hybrid").dumps(entry))
    for follow in (True, False):
        assert copy.is_dir(follow_symlinks=follow) == entry.is_dir(follow_symlinks=follow)
        assert copy.is_file(follow_symlinks=follow) == entry.is_file(follow_symlinks=follow)
        assert copy.stat(follow_symlinks=follow) == entry.stat(follow_symlinks=follow)
    assert (copy.is_symlink(), copy.inode(), copy.name) == (True, entry.inode(), "link")
    assert copy.path == entry.path
    again = pickle.loads(get_pickler("hybrid").dumps(copy))  # a copy sent on (a nested call)
    assert (again.is_dir(), again.is_symlink(), again.path) == (True, True, entry.path)


def test_a_saved_singleton_of_main_is_the_loading_runs_own_object(tmp_path):
    # a state saved with a __main__ singleton in it (pickle's by-name idiom) and loaded by a
    # new run of the script: that run's own object, as pickle's by-name reference gave it
    script = """
        import os
        from picklepool import SharedState

        class _Missing:
            def __reduce__(self):
                return "MISSING"

        MISSING = _Missing()
        path = os.environ["STATE_PATH"]
        if os.environ["MODE"] == "save":
            SharedState({"cached": MISSING}).save(path)
        else:
            print(SharedState.load(path).value["cached"] is MISSING)
        """
    path = str(tmp_path / "state.pp")
    saved = run_python(script, env={"STATE_PATH": path, "MODE": "save"})
    assert saved.returncode == 0, saved.stderr
    loaded = run_python(script, env={"STATE_PATH": path, "MODE": "load"})
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines() == ["True"]


def _match_key(m):
    if m is None:
        return None
    return m.span(), m.groups(), m.groupdict(), m.lastindex, m.lastgroup, m.string, m.endpos, m.re


def _every_match(pattern, line):
    return list(pattern.finditer(line))


def test_regex_matches_travel_both_ways():
    # delayed(pattern.search)(line), or a task returning its matches: "cannot pickle
    # 're.Match' object" under pickle, cloudpickle and joblib, where the loop ran
    import re

    from picklepool import Parallel, delayed

    pattern = re.compile(r"(?P<key>\w+)=(?P<value>\d+)?")
    lines = ["a=1 b=2", "nothing here", "  x= y=3"]
    out = Parallel(n_jobs=2)(delayed(pattern.search)(line) for line in lines)
    assert [_match_key(m) for m in out] == [_match_key(pattern.search(line)) for line in lines]
    out = Parallel(n_jobs=2)(delayed(_every_match)(pattern, line) for line in lines)
    assert [[_match_key(m) for m in ms] for ms in out] == [
        [_match_key(m) for m in _every_match(pattern, line)] for line in lines
    ]
    hybrid = get_pickler("hybrid")
    for m in (re.fullmatch(r"a+", "aaa"), re.compile(r"(?<=x)y").search("xyxy", 2), re.match(rb"(\d)", b"7")):
        assert _match_key(pickle.loads(hybrid.dumps(m))) == _match_key(m)


def test_linked_and_byte_swapped_ctypes_structures_of_main_travel_by_value():
    # class Node(ctypes.Structure) whose _fields_, set after the class statement, hold
    # POINTER(Node) (ctypes' documented linked list) arrived in the workers with no fields
    # ("too many initializers"), and so did mutually linked ones; a BigEndianStructure's
    # class failed to pickle, with an error telling hybrid's user to use hybrid
    proc = run_python(
        """
        import ctypes
        from picklepool import Parallel, delayed

        class Node(ctypes.Structure):
            _pack_ = 1

        LINK = ctypes.POINTER(Node)
        Node._fields_ = [("val", ctypes.c_int), ("next", LINK), ("kids", LINK * 2)]

        class A(ctypes.Structure):
            pass

        class B(ctypes.Structure):
            _fields_ = [("a", ctypes.POINTER(A))]

        A._fields_ = [("b", ctypes.POINTER(B)), ("v", ctypes.c_short)]

        class Wire(ctypes.BigEndianStructure):
            _fields_ = [("v", ctypes.c_uint32), ("w", ctypes.c_uint16 * 2)]

        def work(x):
            head = Node(x, None)
            head.next = ctypes.pointer(Node(x + 1, None))
            return (ctypes.sizeof(Node), head.next.contents.val, ctypes.sizeof(A), A(None, x).v,
                    bytes(Wire(x, (1, 2))))

        want = [work(x) for x in range(4)]
        with Parallel(n_jobs=2, batch_size=1) as p:  # (and again in warm workers)
            print([p(delayed(work)(x) for x in range(4)) == want for _ in range(2)])
            back = p(delayed(Wire)(x, (3, 4)) for x in range(2))
            print([(type(w), bytes(w)) for w in back] == [(Wire, bytes(Wire(x, (3, 4)))) for x in range(2)])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[True, True]", "True"]


def test_ctypes_structures_of_main_travel_by_value():
    # class Header(ctypes.Structure) in a script: its fields are descriptors (CField) that
    # cannot be pickled, its metaclass and array types (c_int * 3) are found by no name, so
    # a task whose function or arguments reached one failed, under cloudpickle and joblib too
    proc = run_python(
        """
        import ctypes
        from picklepool import Parallel, delayed

        class Inner(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("a", ctypes.c_uint8), ("b", ctypes.c_uint32)]

        class Either(ctypes.Union):
            _fields_ = [("i", ctypes.c_int), ("f", ctypes.c_float)]

        class Outer(ctypes.Structure):
            _anonymous_ = ("u",)
            _fields_ = [("inner", Inner), ("u", Either), ("arr", ctypes.c_int * 3)]

            def total(self):
                return self.inner.a + self.inner.b + self.i + sum(self.arr)

        def work(o):
            pair = (Inner * 2)()
            pair[1].b = 5
            ptr = ctypes.pointer(pair[1])
            made = Inner(1, 2)
            return (o.total(), ctypes.sizeof(Inner), ctypes.sizeof(Outer), Outer.u.offset, ptr.contents.b,
                    bytes(o), type(o) is Outer, bytes(made), type(made) is Inner)

        o = Outer(Inner(1, 2), Either(i=3), (ctypes.c_int * 3)(4, 5, 6))
        print(Parallel(n_jobs=2)(delayed(work)(o) for _ in range(2)) == [work(o)] * 2)
        try:
            Parallel(n_jobs=2, pickler="cloudpickle")(delayed(work)(o) for _ in range(2))
        except Exception as e:
            print(e)
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "True"
    assert ".<global Inner>.a (type _ctypes.CField)" in lines[1] or ".<global Outer>" in lines[1], lines[1]
    assert "of the ctypes structure" in lines[1] and "use pickler='hybrid'" in lines[1], lines[1]


def test_subclasses_of_module_property_classmethod_and_staticmethod_travel_with_main_code():
    # cloudpickle reduces modules, properties, classmethods and staticmethods by their exact
    # type: mpmath (a ModuleType subclass of its own) used by a script's function, and a
    # script's class with a `classproperty` of its own, could not be sent ("cannot pickle
    # '_MPMathModule' object"), under joblib too
    proc = run_python(
        """
        import sys, types
        import json
        from picklepool import Parallel, delayed

        class Lazy(types.ModuleType):  # as mpmath makes itself
            pass

        json.__class__ = Lazy

        class classproperty(property):  # an __init__ of its own, and state
            def __init__(self, fget):
                super().__init__(lambda self: fget(type(self)))
                self.label = "cp"

        class OnceMethod(classmethod):
            pass

        class Tool(staticmethod):
            pass

        class Config:
            unit = "km"

            @classproperty
            def name(cls):
                return cls.__name__ + ":" + cls.unit

            @OnceMethod
            def make(cls):
                return cls.unit * 2

            @Tool
            def double(x):
                return 2 * x

        def task(i):
            c = Config()
            return json.dumps([i]), c.name, Config.make(), Config.double(i), vars(Config)["name"].label

        print(Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "[('[0]', 'Config:km', 'kmkm', 0, 'cp'), ('[1]', 'Config:km', 'kmkm', 2, 'cp')]"
    )


def test_a_typed_dict_made_by_a_call_in_main_travels_by_value():
    # TD = TypedDict("TD", {...}) has dict as its only base and no __orig_bases__: cloudpickle's
    # copy asked its metaclass for a TypedDict deriving from dict, which it refuses, so no
    # function of __main__ naming it could be sent (joblib fails the same way)
    prints_ok(
        """
        import typing
        import typing_extensions
        from picklepool import Parallel, delayed

        Movie = typing.TypedDict("Movie", {"title": str, "year": int}, total=False)
        Row = typing_extensions.TypedDict("Row", {"id": int})

        def describe(i):
            return (Movie(title="x", year=i), Movie.__name__, Movie.__total__,
                    sorted(Movie.__optional_keys__), sorted(Movie.__annotations__),
                    sorted(Row.__required_keys__), Row(id=i))

        if __name__ == "__main__":
            here = [describe(i) for i in range(3)]
            assert Parallel(n_jobs=2)(delayed(describe)(i) for i in range(3)) == here
            print("ok")
        """
    )
