"""The globals a script changes in its project's modules reach the workers
(``workers.moduleglobals``): ``config.DEBUG = True`` before the call, and a task reading it
computes as the loop's did, where a warm worker read the module's own value (under joblib too)."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest

from picklepool.workers import moduleglobals

from ..conftest import prints_ok

CONFIG = '''
"""A project's settings, which its script sets from its command line."""
import os

DEBUG = False
SCALE = 1
OPTIONS = {"mode": "slow", "level": 1}
PATHS = ["a"]
level = "INFO"
HOME = os.path.expanduser("~")  # (computed: its value at import is not known)
_initialized = False  # (private: each worker's own)
_client = None

class Limits:
    RETRIES = 3
    HOSTS = ["a"]

def configure(lvl):
    global level
    level = lvl

def fetch(x):
    return f"real {x}"

def client():
    global _initialized, _client
    if not _initialized:
        _client, _initialized = f"client of {os.getpid()}", True
    return _client

def report(x):
    import pp_config
    return (DEBUG, SCALE * x, OPTIONS["mode"], OPTIONS.get("extra"), PATHS, level, fetch(x),
            getattr(pp_config, "ADDED", None), client() == f"client of {os.getpid()}",
            Limits.RETRIES, Limits.HOSTS)

def bump(x):
    global SCALE
    SCALE = 99  # (a task's own change: its batch's only)
    return SCALE
'''

SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
import pp_config
from picklepool import Executor, Parallel, delayed

def fake(x):
    return f"fake {x}"

def check():
    loop = [pp_config.report(x) for x in range(3)]
    assert Parallel(n_jobs=2)(delayed(pp_config.report)(x) for x in range(3)) == loop, loop
    with Executor(max_workers=2) as ex:
        assert list(ex.map(pp_config.report, range(3))) == loop
    return loop[1]

pp_config.client()  # (the parent's own client: the workers make theirs)
assert check() == (False, 1, "slow", None, ["a"], "INFO", "real 1", None, True, 3, ["a"])
pp_config.DEBUG, pp_config.SCALE = True, 3
pp_config.OPTIONS["mode"] = "fast"
pp_config.PATHS.append("b")
pp_config.configure("DEBUG")
pp_config.fetch = fake
pp_config.ADDED = 42
pp_config.Limits.RETRIES = 5  # (a class's attribute)
pp_config.Limits.HOSTS.append("b")
assert check() == (True, 3, "fast", None, ["a", "b"], "DEBUG", "fake 1", 42, True, 5, ["a", "b"])
pp_config.OPTIONS["extra"] = 1  # (a change in place: seen too)
assert check()[3] == 1
Parallel(n_jobs=2)(delayed(pp_config.bump)(x) for x in range(4))
assert check()[1] == 3  # (not the tasks' 99)
pp_config.DEBUG, pp_config.SCALE, pp_config.OPTIONS = False, 1, {"mode": "slow", "level": 1}
assert check()[:4] == (False, 1, "slow", None)  # (the module's own again)
print("ok")
"""


def test_a_task_reads_the_globals_the_script_changed_in_its_modules(tmp_path):
    (tmp_path / "pp_config.py").write_text(CONFIG)
    prints_ok(SCRIPT.replace("sys.argv[1]", repr(str(tmp_path))))


SOURCE = """
import os, json as js
from collections import *
A = 1
B = C = "x"
D: int = 2
E = [1, {"k": (2, 3)}]
F = os.getcwd()
G = 1
G += 1
if os.name:
    H = True
else:
    H = False
try:
    I = 1
except ImportError as err:
    I = None
for J in range(3):
    pass
with open(__file__) as K:
    pass
L, M = 1, 2
def f():
    global N
    N = 1
    local = 2
class P:
    inside = 3
    table = {}
    table[1] = 2
R = {}
R["k"] = 1
S = []
S.append(1)
T = [0]
T[0] += 1
PID = None
def _init():
    global PID
    PID = os.getpid()
_init()
COUNT = 0
def bump():
    global COUNT
    COUNT += 1
class Node:
    made = 0
    seen = 0
    kind = "leaf"
    peak = 0
    def __init__(self):
        Node.made += 1
        type(self).seen += 1
        Node.peak = max(Node.peak, Node.made)
"""


def test_what_a_modules_source_binds_at_its_top(tmp_path):
    path = tmp_path / "pp_source.py"
    path.write_text(textwrap.dedent(SOURCE))
    module = moduleglobals._Module("pp_source", {}, str(path))
    assert module._read()
    assert module.literals == {
        "A": [1],
        "B": ["x"],
        "C": ["x"],
        "D": [2],
        "E": [[1, {"k": (2, 3)}]],
        "H": [True, False],
        "I": [1, None],
    }
    assert module.scope.defined == {"f", "P", "_init", "bump", "Node"}
    assert module.scope.star
    assert module.scope.classes["P"].known() == {"inside": [3]}
    assert module.scope.classes["Node"].known() == {"kind": ["leaf"]}  # (counters: each process's own)
    assert {
        "os",
        "js",
        "F",
        "G",
        "J",
        "K",
        "L",
        "M",
        "N",
        "err",
        "R",
        "S",
        "T",
        "PID",
        "COUNT",
    } <= module.bound
    assert not {"local", "inside"} & module.bound


@pytest.fixture(params=["versions", "identities"])
def project(request, tmp_path, monkeypatch):
    """A module of the user's, ``pp_proj``, imported in this process; its changes seen
    through CPython's dict versions, or the identities of its values (Python 3.14 on)."""
    if request.param == "identities":
        monkeypatch.setattr(moduleglobals, "_versions", None)
    path = tmp_path / "pp_proj.py"
    path.write_text(
        "LIMIT = 10\nNAMES = ['a']\n_seen = {}\n_ready = False\nTOTAL = sum([1, 2])\n"
        "class Conf:\n    SIZE = 1\n    _hidden = 0\n"
    )
    module = types.ModuleType("pp_proj")
    module.__file__ = str(path)
    exec(compile(path.read_text(), str(path), "exec"), vars(module))
    monkeypatch.setitem(sys.modules, "pp_proj", module)
    monkeypatch.setattr(moduleglobals, "_read", (None, None))
    yield module
    sys.modules.pop("pp_proj", None)
    moduleglobals.pickled()  # (the module gone: nothing watched of it)


def _sent() -> dict[object, object]:
    from picklepool.workers.overlay import loads_each

    sent = loads_each(moduleglobals.pickled(), "test")
    return {key: value for key, value in sent.items() if key[0] == "pp_proj"}  # (not other tests')


def test_only_the_public_globals_changed_from_the_source_are_sent(project):
    assert _sent() == {}  # (nothing changed: nothing travels)
    project._seen["k"] = 1  # a private table (a cache) and flag: the module's machinery
    project._ready = True
    project.TOTAL = 7  # computed at import: its value then is not known
    assert _sent() == {}
    project.LIMIT = 20
    project.NAMES.append("b")
    project.EXTRA = (1, 2)
    assert _sent() == {
        ("pp_proj", "LIMIT"): 20,
        ("pp_proj", "NAMES"): ["a", "b"],
        ("pp_proj", "EXTRA"): (1, 2),
    }
    project.LIMIT = 10
    del project.EXTRA
    assert _sent() == {("pp_proj", "NAMES"): ["a", "b"]}


def test_a_reloaded_modules_source_is_read_again(project, tmp_path):
    assert _sent() == {}
    (tmp_path / "pp_proj.py").write_text(
        "LIMIT = 50\nNAMES = ['a']\nTOTAL = sum([1, 2])\n"
    )  # edited, reloaded
    project.LIMIT = 50
    project.__spec__ = types.SimpleNamespace(origin=project.__file__)  # (a reload finds it anew)
    assert _sent() == {}  # the module's own value now
    project.LIMIT = 10
    assert _sent() == {("pp_proj", "LIMIT"): 10}


def test_a_class_attribute_changed_from_the_class_body_is_sent(project):
    assert _sent() == {}
    project.Conf._hidden = 5  # (private)
    assert _sent() == {}
    project.Conf.SIZE = 2
    assert _sent() == {("pp_proj", "Conf.SIZE"): 2}
