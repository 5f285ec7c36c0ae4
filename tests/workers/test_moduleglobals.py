"""The globals a script sets on its project's modules reach the workers
(``workers.moduleglobals``): after ``config.DEBUG = True``, a task reading it computes as the
loop's did, where a warm worker read the module's own value (under joblib too); what a
module's own code sets (a lazily made resource, a counter, a cache) stays each process's own."""

from __future__ import annotations

import sys
import types

from picklepool.workers import moduleglobals
from picklepool.workers.overlay import loads_each

from ..conftest import run_python

CONFIG = '''
"""A project's settings, which its script sets from its command line."""
import os

DEBUG = False
SCALE = 1
OPTIONS = {"mode": "slow", "level": 1}
PATHS = ["a"]
TMPDIR = None  # (made lazily, per process, by the module's own code)
LOADED = False
COUNT = 0

class Limits:
    RETRIES = 3
    made = 0

    def __init__(self):
        Limits.made += 1

def fetch(x):
    return f"real {x}"

def scratch():
    global TMPDIR
    if TMPDIR is None:
        TMPDIR = f"tmp-of-{os.getpid()}"
    return TMPDIR

def ensure_loaded():
    global LOADED, COUNT
    COUNT += 1
    LOADED = True
'''

USER = """
from pp_config import OPTIONS  # (the same dict as pp_config.OPTIONS)

def mode():
    return OPTIONS["mode"]
"""

TASKS = """
import os
import pp_config, pp_user

def report(x):
    return (pp_config.DEBUG, pp_config.SCALE * x, pp_config.OPTIONS["mode"],
            pp_config.OPTIONS.get("extra"), pp_config.PATHS, pp_config.fetch(x),
            getattr(pp_config, "ADDED", None), pp_config.Limits.RETRIES, pp_user.mode(),
            pp_config.scratch() == f"tmp-of-{os.getpid()}")

def bump(x):
    pp_config.SCALE = 99  # (a task's own change: its batch's only)
    return pp_config.SCALE

def own(x):
    pp_config.ensure_loaded()
    pp_config.Limits()
    return pp_config.COUNT, pp_config.Limits.made, pp_config.LOADED
"""

SCRIPT = """
import os, sys
sys.path.insert(0, os.path.dirname(__file__))
import pp_config, pp_tasks
from picklepool import Executor, Parallel, delayed

def fake(x):
    return f"fake {x}"

def check():
    loop = [pp_tasks.report(x) for x in range(3)]
    assert Parallel(n_jobs=2)(delayed(pp_tasks.report)(x) for x in range(3)) == loop, loop
    with Executor(max_workers=2) as ex:
        assert list(ex.map(pp_tasks.report, range(3))) == loop
    return loop[1]

pp_config.scratch(), pp_config.ensure_loaded(), pp_config.Limits()  # (the parent's own)
assert check() == (False, 1, "slow", None, ["a"], "real 1", None, 3, "slow", True)
pp_config.DEBUG, pp_config.SCALE = True, 3
pp_config.OPTIONS["mode"] = "fast"
pp_config.PATHS.append("b")
pp_config.fetch = fake
pp_config.ADDED = 42
pp_config.Limits.RETRIES = 5
assert check() == (True, 3, "fast", None, ["a", "b"], "fake 1", 42, 5, "fast", True)
pp_config.OPTIONS["extra"] = 1  # (a change in place: seen too)
assert check()[3] == 1
Parallel(n_jobs=2)(delayed(pp_tasks.bump)(x) for x in range(4))
assert check()[1] == 3  # (not the tasks' 99)
# what the module's own code set in the parent (a counter, a flag, a class's count) is not sent:
# each worker counts its own, from the module's start
counts = Parallel(n_jobs=2, batch_size=1)(delayed(pp_tasks.own)(x) for x in range(4))
assert all(1 <= c <= 4 and m == c and loaded for c, m, loaded in counts), counts
pp_config.DEBUG, pp_config.SCALE = False, 1
pp_config.OPTIONS.update(mode="slow")
pp_config.OPTIONS.pop("extra")
assert check()[:4] == (False, 1, "slow", None)
print("ok")
"""


def test_a_task_reads_the_globals_the_script_set_on_its_modules(tmp_path):
    (tmp_path / "pp_config.py").write_text(CONFIG)
    (tmp_path / "pp_user.py").write_text(USER)
    (tmp_path / "pp_tasks.py").write_text(TASKS)
    (tmp_path / "main.py").write_text(SCRIPT)  # (a script's file: what it sets is read there)
    proc = run_python(f"import runpy; runpy.run_path({str(tmp_path / 'main.py')!r}, run_name='__main__')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok", proc.stdout


def test_what_a_script_sets_on_names():
    source = """
import config, pkg.sub.settings as st
config.DEBUG = True
config.A = config.B = 1
config.SCALE += 1
config.OPTIONS["mode"] = "fast"
config.TABLE["a"]["b"] = 2
config.PATHS.append("x")
config.Settings.RETRIES = 5
pkg.sub.settings.LEVEL = 2
st.NAME: str = "x"
setattr(config, "EXTRA", 1)
x, config.PAIR = 1, 2
local = 3
def main(args):
    config.VERBOSE = args.verbose
print(config.READ)
config.log.info("read")
config.Settings.load()
"""
    assert moduleglobals.targets(source) == {
        ("config", "DEBUG"),
        ("config", "A"),
        ("config", "B"),
        ("config", "SCALE"),
        ("config", "OPTIONS"),
        ("config", "TABLE"),
        ("config", "PATHS"),
        ("config", "Settings", "RETRIES"),
        ("pkg", "sub", "settings", "LEVEL"),
        ("st", "NAME"),
        ("config", "EXTRA"),
        ("config", "PAIR"),
        ("config", "VERBOSE"),
    }
    assert moduleglobals.targets("def broken(:\n") == set()


def test_what_notebook_cells_set_is_sent_as_the_cells_come(tmp_path, monkeypatch):
    config = types.ModuleType("pp_cells_config")
    config.__file__ = str(tmp_path / "pp_cells_config.py")  # (a module of the user's)
    config.X, config.Y = 1, [0]
    main = types.ModuleType("__main__")
    main.pp_cells_config = config
    main.In = ["", "import pp_cells_config\npp_cells_config.X = 5"]  # (IPython's cells)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setitem(sys.modules, "pp_cells_config", config)
    for name, value in (("_script", (None, frozenset())), ("_cells_read", 0), ("_read", (None, None))):
        monkeypatch.setattr(moduleglobals, name, value)
    config.X = 5
    assert loads_each(moduleglobals.pickled(), "test") == {("pp_cells_config", "X"): 5}
    main.In.append("pp_cells_config.Y.append(1)")  # a new cell
    config.Y.append(1)
    assert loads_each(moduleglobals.pickled(), "test") == {
        ("pp_cells_config", "X"): 5,
        ("pp_cells_config", "Y"): [0, 1],
    }
    config.Y.append(2)  # (a change in place: seen)
    assert loads_each(moduleglobals.pickled(), "test")[("pp_cells_config", "Y")] == [0, 1, 2]
