"""A function sent by value is pickled again only when its bytes may have changed."""

from __future__ import annotations

import sys
import types

import cloudpickle
import pytest

from picklepool.executor import unchanged
from picklepool.executor.functions import _importable, identity
from picklepool.pickler.base import CloudPickler
from picklepool.pickler.context import CallContext, active
from picklepool.pickler.hybrid import HybridPickler

from ..conftest import run_python

PICKLERS = [HybridPickler, CloudPickler]


@pytest.fixture(autouse=True)
def _fresh():
    unchanged.forget()
    yield
    unchanged.forget()


def dynamic(source: str, **names):
    """The functions *source* defines, in a module of its own that workers cannot import."""
    namespace = {"__name__": "picklepool_test_not_importable", **names}
    exec(source, namespace)
    return namespace


def keep(kind, func):
    data = kind().dumps(func)
    unchanged.remember(kind, identity(func)[0], func, "key", data, _importable)
    return data


def recalled(kind, func):
    found = unchanged.recall(kind, identity(func)[0], func)
    return None if found is None else found[1]


@pytest.mark.parametrize("kind", PICKLERS)
def test_the_same_function_is_recalled_with_the_bytes_a_new_pickle_makes(kind):
    ns = dynamic(
        "import math\n"
        "K, T = 3, (1, 'a', (2.5, None))\n"
        "def helper(x):\n    return x + K\n"
        "def f(x, y=2, *, z=K):\n    return helper(math.floor(x)) + y + z + len(T) + len(str(abs))\n"
    )
    f = ns["f"]
    data = keep(kind, f)
    assert recalled(kind, f) == data == kind().dumps(f)


CHANGES = {
    "a global rebound": lambda ns: ns.update(K=4),
    "a global defined": lambda ns: ns.update(NEW=1),
    "a tuple global rebound": lambda ns: ns.update(T=(1,)),
    "a nested function's global": lambda ns: ns.update(J=9),
    "a nested function rebound": lambda ns: ns.update(helper=lambda x: -x),
    "defaults": lambda ns: setattr(ns["f"], "__defaults__", (5,)),
    "keyword defaults changed in place": lambda ns: ns["f"].__kwdefaults__.update(z=7),
    "annotations changed in place": lambda ns: ns["f"].__annotations__.update(x=int),
    "name": lambda ns: setattr(ns["f"], "__name__", "g"),
    "qualified name": lambda ns: setattr(ns["f"], "__qualname__", "g"),
    "doc": lambda ns: setattr(ns["f"], "__doc__", "now documented"),
    "module": lambda ns: setattr(ns["f"], "__module__", "elsewhere"),
    "code": lambda ns: setattr(ns["f"], "__code__", ns["f"].__code__.replace(co_firstlineno=99)),
    "an attribute set": lambda ns: setattr(ns["f"], "tag", 1),
    "a closure's variable": lambda ns: ns["set_c"](10),
}


@pytest.mark.parametrize("kind", PICKLERS)
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_change_of_what_the_bytes_are_made_of_pickles_again(kind, change):
    ns = dynamic(
        "K, T, J = 3, (1, 2), 1\n"
        "def helper(x):\n    return x + J\n"
        "def outer():\n"
        "    c = 1\n"
        "    def f(x, y=2, *, z=3):\n        return helper(x) + K + len(T) + c if x else NEW\n"
        "    def set_c(v):\n        nonlocal c\n        c = v\n"
        "    return f, set_c\n"
        "f, set_c = outer()\n"
    )
    f = ns["f"]
    before = keep(kind, f)
    assert recalled(kind, f) == before
    CHANGES[change](ns)
    f = ns["f"]
    assert recalled(kind, f) is None
    assert kind().dumps(f) != before  # the change did change the bytes: the test tests something


MUTABLE = {
    "list": [1, 2],
    "dict": {"a": 1},
    "set": {1},
    "bytearray": bytearray(b"x"),
    "instance": types.SimpleNamespace(a=1),
    "tuple holding a list": (1, [2]),
    "class sent by value": type("C", (), {"__module__": "picklepool_test_not_importable"}),
}


@pytest.mark.parametrize("kind", PICKLERS)
@pytest.mark.parametrize("what", sorted(MUTABLE))
def test_a_function_naming_an_object_that_changes_in_place_is_pickled_at_every_call(kind, what):
    ns = dynamic("def f(x):\n    return (x, V)\n", V=MUTABLE[what])
    keep(kind, ns["f"])
    assert recalled(kind, ns["f"]) is None


def test_a_closure_over_a_variable_not_set_yet_is_pickled_at_every_call():
    ns = dynamic("def outer():\n    def f(x):\n        return v\n    return f\n    v = 1\nf = outer()\n")
    keep(HybridPickler, ns["f"])
    assert recalled(HybridPickler, ns["f"]) is None


def test_a_module_imported_since_makes_a_function_naming_a_module_pickle_again():
    ns = dynamic("import os\ndef f(x):\n    return os.sep\n")
    keep(HybridPickler, ns["f"])
    assert recalled(HybridPickler, ns["f"]) is not None
    name = "picklepool_test_new_module"
    sys.modules[name] = types.ModuleType(name)
    try:
        assert recalled(HybridPickler, ns["f"]) is None
    finally:
        del sys.modules[name]


def test_a_module_registered_to_go_by_value_makes_every_function_pickle_again():
    import tests.mutator as module

    ns = dynamic("def f(x):\n    return x\n")
    keep(HybridPickler, ns["f"])
    cloudpickle.register_pickle_by_value(module)
    try:
        assert recalled(HybridPickler, ns["f"]) is None
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    assert recalled(HybridPickler, ns["f"]) is not None


SCRIPT = """
    from picklepool import Parallel, delayed
    from picklepool.pickler.hybrid import HybridPickler

    dumped = []
    real = HybridPickler.dumps

    def counting(self, obj, buffer_callback=None):
        dumped.append(getattr(obj, "__name__", None))
        return real(self, obj, buffer_callback)

    HybridPickler.dumps = counting

    N = 0
    DATA = [0]

    def plain(x):
        return x + N

    def reads_a_list(x):
        return x + DATA[0]

    def bump(x):
        global N
        N += 1
        return N

    def one(f):
        return Parallel(n_jobs=2)(delayed(f)(1) for _ in range(1))[0]

    out = []
    for n in (0, 0, 5, 5):
        N = n
        out.append(one(plain))
    DATA[0] = 7
    out.append(one(reads_a_list))
    DATA[0] = 8
    out.append(one(reads_a_list))
    N = 0
    out += [one(bump) for _ in range(4)]
    print(out, dumped.count("plain"), dumped.count("reads_a_list"), dumped.count("bump"))
"""


def test_repeated_calls_pickle_a_main_function_once_per_change_and_see_every_change():
    proc = run_python(SCRIPT)
    assert proc.returncode == 0, proc.stderr
    # plain: pickled when N is 0, then again when N is 5; the list reader at each call;
    # bump (a global a task rebinds in its worker) always starts from the parent's N = 0
    assert proc.stdout.split() == ["[1,", "1,", "6,", "6,", "8,", "9,", "1,", "1,", "1,", "1]", "2", "2", "1"]


class _Big:
    """Stands for a large array or data set in a function's namespace."""


@pytest.mark.parametrize("recursive", [False, True])
def test_a_remembered_function_does_not_keep_its_dropped_namespace_alive(recursive):
    import gc
    import weakref

    body = "f(x - 1) if x else 0" if recursive else "x + K"
    ns = dynamic(f"K = 1\ndef f(x):\n    return {body}\n", DATA=_Big())
    data = keep(HybridPickler, ns["f"])
    assert recalled(HybridPickler, ns["f"]) == data  # remembered while alive
    big = weakref.ref(ns["DATA"])
    del ns
    gc.collect()
    assert big() is None  # the namespace (and what it holds) went with the function
    assert unchanged._kept == {}


def test_functions_of_a_module_made_anew_at_each_call_are_still_recalled():
    name = "picklepool_test_module_of_lambdas"
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        exec("K = 2\ndef make():\n    return lambda x: x + K\n", module.__dict__)
        first = module.make()
        with active(CallContext(HybridPickler(), None)):  # pickled for a call: with its token
            data = keep(HybridPickler, first)
            del first
            again = module.make()  # another object: same code, globals and (no) closure
            assert recalled(HybridPickler, again) == data == HybridPickler().dumps(again)
        # the bytes made for the first one now stand for the one they are sent for: a copy sent
        # back is this call's function (ownfunctions.pass_on)
        assert HybridPickler().loads(data) is again
        module.K = 3
        assert recalled(HybridPickler, module.make()) is None
    finally:
        del sys.modules[name]


@pytest.mark.parametrize("kind", PICKLERS)
def test_a_doc_or_module_that_changes_in_place_is_pickled_at_every_call(kind):
    ns = dynamic("def f(x):\n    return f.__doc__\n")
    ns["f"].__doc__ = ["usage"]
    keep(kind, ns["f"])
    assert recalled(kind, ns["f"]) is None


def test_a_function_remembered_weakly_outlives_the_table_at_exit_quietly():
    proc = run_python(
        """
        from picklepool import Parallel, delayed
        ns = {"__name__": "namespace_of_exec"}
        exec("def f(x):\\n    return x + 1\\n", ns)
        print(Parallel(n_jobs=2)(delayed(ns["f"])(i) for i in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[1,", "2]"]
    assert "Exception ignored" not in proc.stderr and "AttributeError" not in proc.stderr
