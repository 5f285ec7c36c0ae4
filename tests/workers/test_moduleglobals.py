"""The globals a script sets on its project's modules reach the workers
(``workers.moduleglobals``): after ``config.DEBUG = True``, a task reading it computes as the
loop's did, where a warm worker read the module's own value (under joblib too); what a
module's own code sets (a lazily made resource, a counter, a cache) stays each process's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from typing import Any

import pytest

from picklepool.workers import moduleglobals, settargets
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
    assert settargets.targets(source) == {
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
    assert settargets.targets("def broken(:\n") == set()


def test_what_notebook_cells_set_is_sent_as_the_cells_come(tmp_path, monkeypatch):
    config = types.ModuleType("pp_cells_config")
    config.__file__ = str(tmp_path / "pp_cells_config.py")  # (a module of the user's)
    config.X, config.Y = 1, [0]
    main = types.ModuleType("__main__")
    main.pp_cells_config = config
    main.In = ["", "import pp_cells_config\npp_cells_config.X = 5"]  # (IPython's cells)
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setitem(sys.modules, "pp_cells_config", config)
    for name, value in (("_script", (None, frozenset(), {})), ("_cells_read", 0), ("_read", (None, None))):
        monkeypatch.setattr(moduleglobals, name, value)
    config.X = 5
    assert loads_each(moduleglobals.pickled(), "test") == {("pp_cells_config", "X"): 5}
    main.In.append("pp_cells_config.Y.append(1)")  # a new cell
    config.Y.append(1)
    assert loads_each(moduleglobals.pickled(), "test") == {
        ("pp_cells_config", "X"): 5,
        ("pp_cells_config", "Y", moduleglobals.IN_PLACE): [0, 1],
    }
    config.Y.append(2)  # (a change in place: seen)
    assert loads_each(moduleglobals.pickled(), "test")[("pp_cells_config", "Y", "in place")] == [0, 1, 2]


def test_more_ways_a_script_sets_its_modules_attributes_are_read():
    source = """
from config import OPTIONS, cfg
from unittest import mock
import importlib

def main(monkeypatch, values, name):
    import localcfg
    import pkg.deep as deep
    localcfg.DEBUG = True
    OPTIONS["mode"] = "fast"
    cfg.batch = 64
    importlib.import_module("cfg3").B = 2
    __import__("pkg.sub").X = 1
    setattr(localcfg, name.upper(), 1)
    vars(deep).update(values)
    deep.__dict__["Z"] = 3
    monkeypatch.setattr(localcfg, "LEVEL", 2)
    with mock.patch.object(localcfg, "fetch", None), mock.patch("pkg.deep.fetch", None):
        pass
    with mock.patch.dict("config.TABLE", {"a": 1}), mock.patch.dict(localcfg.ENV, {}):
        pass
    monkeypatch.setattr("pkg.deep.LEVEL", 3)
local = {}
local["x"] = 1  # (a dict of the script's own: read as a name, resolved only through imports)
renamed = 2
"""
    chains, imports, changed, _ = settargets.read(source)
    assert chains == {
        ("localcfg", "DEBUG"),
        ("OPTIONS",),
        ("cfg", "batch"),
        (settargets.MODULES, "cfg3", "B"),
        (settargets.MODULES, "pkg", "X"),
        ("localcfg", settargets.EVERY),
        ("deep", settargets.EVERY),
        ("localcfg", "LEVEL"),
        ("localcfg", "fetch"),
        (settargets.MODULES, "pkg", "deep", "fetch"),
        (settargets.MODULES, "pkg", "deep", "LEVEL"),
        (settargets.MODULES, "config", "TABLE"),
        ("localcfg", "ENV"),
        ("local",),
    }
    assert imports["localcfg"] == "localcfg" and imports["deep"] == "pkg.deep"
    assert imports["OPTIONS"] == "config.OPTIONS" and imports["cfg"] == "config.cfg"
    # what another module's code sets: only what binds anew (filling a cache in place is its own)
    # changed in place (set so in a worker: what imported it holds the same one), not bound anew
    assert changed == {
        ("OPTIONS",),
        (settargets.MODULES, "config", "TABLE"),
        ("localcfg", "ENV"),
        ("local",),
    }
    assert settargets.read(source, in_place=False)[0] == chains - {
        ("OPTIONS",),
        ("deep", settargets.EVERY),
        (settargets.MODULES, "config", "TABLE"),
        ("localcfg", "ENV"),
        ("local",),
    }


MORE_CONFIG = """
import random

MODE = "slow"
OPTIONS = {"level": 1}
TABLE = {"a": {"b": 1}}
LAYERS = [64, 32]
TAGS = {"x"}
SEED = 0
RNG = None
HANDLER = None

class Settings:
    def __init__(self):
        self.batch = 8
        self.layers = [1]

cfg = Settings()

class Point:
    __slots__ = ("x", "__y")

    def __init__(self):
        self.x, self.__y = 1, 2

point = Point()

import dataclasses

@dataclasses.dataclass(frozen=True)
class Limits:
    n: int = 1

limits = Limits()
BOUND = {"k": 1}

def real():
    return "real"
"""

MORE_TASKS = """
from pp_more_config import OPTIONS, TABLE, LAYERS, TAGS, cfg  # (held: changed in place)
import pp_more_config, pp_dyn_config

def report(x):
    return (pp_more_config.MODE, OPTIONS["level"], TABLE["a"]["b"], list(LAYERS), sorted(TAGS),
            cfg.batch, list(cfg.layers), pp_more_config.cfg is cfg, pp_dyn_config.A, pp_dyn_config.B,
            getattr(pp_dyn_config, "C", None))

from pp_more_config import limits, BOUND  # (held before the parent binds new ones)

def bound(x):
    return pp_more_config.limits.n, limits.n, pp_more_config.BOUND["k"], BOUND["k"]

def which(x):
    return pp_more_config.real()

def slot(x):
    from pp_more_config import point  # (held: set in place)
    return point.x, point is pp_more_config.point

def draw(x):
    return pp_more_config.RNG is None

def handler(x):
    return pp_more_config.HANDLER is None
"""

MORE_SCRIPT = """
import dataclasses, importlib, os, random, sys
sys.path.insert(0, os.path.dirname(__file__))
from picklepool import Parallel, delayed
from pp_more_config import OPTIONS
import pp_more_tasks

def check():
    loop = [pp_more_tasks.report(x) for x in range(3)]
    got = Parallel(n_jobs=2)(delayed(pp_more_tasks.report)(x) for x in range(3))
    assert got == loop, (got, loop)
    return loop[0]

def fake():
    return "fake"

class Unloadable:  # (pickles in the parent, fails to load in a worker)
    def __reduce__(self):
        return (int, ("not a number",))

def main(values):
    import pp_more_config  # (imported in the function only: its name is not the script's)
    pp_more_config.MODE = "fast"
    OPTIONS["level"] = 2  # (from pp_more_config import OPTIONS)
    pp_more_config.cfg.batch = 64  # (an attribute of the module's instance)
    importlib.import_module("pp_dyn_config").B = "b"
    for name, value in values.items():
        setattr(pp_dyn_config, name, value)  # (names the source does not spell)
    assert check() == ("fast", 2, 1, [64, 32], ["x"], 64, [1], True, "a", "b", "c")
    # after warm: in place, keeping lengths, and within what was sent
    pp_more_config.LAYERS[0] = 128
    pp_more_config.TABLE["a"]["b"] = 2
    pp_more_config.TAGS.add("y")
    pp_more_config.cfg.layers[0] = 5
    assert check() == ("fast", 2, 2, [128, 32], ["x", "y"], 64, [5], True, "a", "b", "c")
    original, pp_more_config.real = pp_more_config.real, fake  # (a patch, then undone)
    assert Parallel(n_jobs=2)(delayed(pp_more_tasks.which)(x) for x in range(2)) == ["fake"] * 2
    pp_more_config.real = original  # (the module's own function, which travels by reference)
    assert Parallel(n_jobs=2)(delayed(pp_more_tasks.which)(x) for x in range(2)) == ["real"] * 2
    import pp_more_tasks as t
    pp_more_config.limits = dataclasses.replace(pp_more_config.limits, n=5)  # (bound anew)
    pp_more_config.BOUND = {"k": 2}
    loop = [t.bound(x) for x in range(2)]
    assert loop == [(5, 1, 2, 1)] * 2, loop  # (what imported the old ones keeps them)
    assert Parallel(n_jobs=2)(delayed(t.bound)(x) for x in range(2)) == loop
    pp_more_config.point.x = 7  # (an instance with slots)
    assert Parallel(n_jobs=2)(delayed(pp_more_tasks.slot)(x) for x in range(2)) == [(7, True)] * 2
    pp_more_config.point.x = 8  # (after warm: its slots are watched)
    assert Parallel(n_jobs=2)(delayed(pp_more_tasks.slot)(x) for x in range(2)) == [(8, True)] * 2
    pp_more_config.TAGS.discard("y")
    pp_more_config.LAYERS[0] = 64.5
    pp_more_config.LAYERS[0] = 256.5  # (a new float where the last one was freed)
    assert check()[3:5] == ([256.5, 32], ["x"])
    # a seeded generator is not copied to every worker (each would draw the same numbers)
    pp_more_config.RNG = random.Random(42)
    assert Parallel(n_jobs=2)(delayed(pp_more_tasks.draw)(x) for x in range(2)) == [True, True]
    pp_more_config.RNG = None
    pp_more_config.HANDLER = Unloadable()
    assert Parallel(n_jobs=2)(delayed(pp_more_tasks.handler)(x) for x in range(2)) == [True, True]

import pp_dyn_config
main({"C": "c"})
print("ok")
"""


def test_more_ways_a_script_sets_its_modules_reach_the_workers(tmp_path):
    (tmp_path / "pp_more_config.py").write_text(MORE_CONFIG)
    (tmp_path / "pp_dyn_config.py").write_text('A = "a"\nB = None\n_HIDDEN = 1\n')
    (tmp_path / "pp_more_tasks.py").write_text(MORE_TASKS)
    (tmp_path / "main.py").write_text(MORE_SCRIPT)
    proc = run_python(f"import runpy; runpy.run_path({str(tmp_path / 'main.py')!r}, run_name='__main__')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok", proc.stdout
    assert "pp_more_config.RNG, which the script sets, is not sent to the workers: it is a random" in (
        proc.stderr
    )
    assert "random.Random" in proc.stderr
    assert "pp_more_config.HANDLER, which the script sets, could not be loaded in worker" in proc.stderr


def test_a_zip_applications_script_is_read_through_its_loader(tmp_path):
    import zipapp

    app = tmp_path / "app"
    (app / "proj").mkdir(parents=True)
    (app / "proj" / "__init__.py").write_text("")
    (app / "proj" / "settings.py").write_text('MODE = "default"\n')
    (app / "proj" / "work.py").write_text(
        "import proj.settings\n\ndef work(x):\n    return proj.settings.MODE\n"
    )
    (app / "__main__.py").write_text(
        "import proj.settings\n"
        "from proj.work import work\n"
        "from picklepool import Parallel, delayed\n"
        "if __name__ == '__main__':\n"
        "    proj.settings.MODE = 'zip'\n"
        "    print(Parallel(n_jobs=2)(delayed(work)(x) for x in range(2)))\n"
    )
    zipapp.create_archive(app, tmp_path / "app.pyz")
    proc = run_python(f"import runpy; runpy.run_path({str(tmp_path / 'app.pyz')!r}, run_name='__main__')")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['zip', 'zip']", proc.stdout


@pytest.mark.parametrize("tool", ["cProfile", "profile", "trace"])
def test_a_script_run_by_a_tool_that_runs_it_in_a_namespace_of_its_own_is_read(tool, tmp_path):
    # `python -m cProfile script.py` (profile, trace) runs the script in a dict of its own, not
    # in __main__ (the tool's module): what the script set on its modules was not read, and a
    # task computed with the module's own value (a profiled script's results changed)
    (tmp_path / "pp_tool_settings.py").write_text("SCALE = 1\n")
    (tmp_path / "script.py").write_text(
        "import pp_tool_settings\n"
        "from picklepool import Parallel, delayed\n"
        "def work(x):\n"
        "    return pp_tool_settings.SCALE * x\n"
        "if __name__ == '__main__':\n"
        "    pp_tool_settings.SCALE = 5\n"
        "    print([work(x) for x in range(3)], Parallel(n_jobs=2)(delayed(work)(x) for x in range(3)))\n"
    )
    options = {
        "cProfile": ["-o", os.devnull],
        "profile": ["-o", os.devnull],
        "trace": ["--count", "-C", str(tmp_path)],
    }
    proc = subprocess.run(
        [sys.executable, "-m", tool, *options[tool], "script.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[0, 5, 10] [0, 5, 10]" in proc.stdout.splitlines(), proc.stdout


def test_changes_within_what_is_sent_are_seen_with_or_without_dict_versions(tmp_path, monkeypatch):
    # (Python 3.14 keeps no dict version: the keys and values are held and compared instead)
    for versions in (moduleglobals._versions, None):
        config = types.ModuleType("pp_within_config")
        config.__file__ = str(tmp_path / "pp_within_config.py")  # (a module of the user's)
        config.TABLE, config.LAYERS = {"a": {"b": 1.5}}, [1.5, 2.5]
        main = types.ModuleType("__main__")
        main.In = ["", "from pp_within_config import TABLE, LAYERS\nTABLE['a']['b'] = 2\nLAYERS[0] = 0"]
        monkeypatch.setitem(sys.modules, "__main__", main)
        monkeypatch.setitem(sys.modules, "pp_within_config", config)
        monkeypatch.setattr(moduleglobals, "_versions", versions)
        for name, value in (
            ("_script", (None, frozenset(), {})),
            ("_cells_read", 0),
            ("_read", (None, None)),
        ):
            monkeypatch.setattr(moduleglobals, name, value)
        first = moduleglobals.pickled()
        assert moduleglobals.pickled() is first  # (nothing changed: the pickle is kept)
        config.TABLE["a"]["b"] = 2.5  # (a dict within: its own version, or its values, change)
        sent = loads_each(moduleglobals.pickled(), "test")
        assert sent[("pp_within_config", "TABLE", "in place")] == {"a": {"b": 2.5}}
        for value in (3.5, 4.5, 5.5):  # (a new float each time, where an old one was freed)
            config.LAYERS[0] = value
            assert (
                loads_each(moduleglobals.pickled(), "test")[("pp_within_config", "LAYERS", "in place")][0]
                == value
            )


CLI = """
import argparse, threading
import pp_cli_config, pp_cli_cache, pp_cli_tasks
from picklepool import Parallel, delayed

def main(argv):
    args = argparse.ArgumentParser()
    args.add_argument("--debug", action="store_true")
    args.add_argument("--scale", type=int)
    args = args.parse_args(argv)
    pp_cli_config.DEBUG = args.debug  # (what the program's command line sets, in its module)
    setattr(pp_cli_config, "SCALE", args.scale)
    pp_cli_config.lock = threading.Lock()  # (a module's own resource: not sent, not warned of)
    pp_cli_cache.STORE["parent"] = 1  # (a cache filled in place: each process's own)
    loop = [pp_cli_tasks.read(x) for x in range(2)]
    got = Parallel(n_jobs=2)(delayed(pp_cli_tasks.read)(x) for x in range(2))
    # a client the tasks' module makes lazily in another module: once per worker, as in a loop
    made = Parallel(n_jobs=2, batch_size=1)(delayed(pp_cli_tasks.client)(x) for x in range(8))
    assert {count for _, count in made} == {1}, made
    return loop, got
"""

CLI_TASKS = """
import os
import pp_cli_config, pp_cli_cache

def read(x):
    return pp_cli_config.DEBUG, pp_cli_config.SCALE * x, "parent" in pp_cli_cache.STORE

MADE = 0

def client(x):
    global MADE
    if pp_cli_cache.CLIENT is None:
        MADE += 1
        pp_cli_cache.CLIENT = f"client of {os.getpid()}"
    return os.getpid(), MADE
"""


def test_what_the_programs_own_modules_set_on_its_modules_reaches_the_workers(tmp_path):
    # an installed command's script is two lines (from cli import main; main()): the settings
    # are made by the program's command-line module
    (tmp_path / "pp_cli_config.py").write_text("DEBUG = False\nSCALE = 1\nlock = None\n")
    (tmp_path / "pp_cli_cache.py").write_text("STORE = {}\nCLIENT = None\n")
    (tmp_path / "pp_cli_tasks.py").write_text(CLI_TASKS)
    (tmp_path / "pp_cli.py").write_text(CLI)
    (tmp_path / "main.py").write_text(
        "import os, sys\nsys.path.insert(0, os.path.dirname(__file__))\nfrom pp_cli import main\n"
        "loop, got = main(['--debug', '--scale', '3'])\nprint(loop)\nprint(got)\n"
    )
    proc = run_python(f"import runpy; runpy.run_path({str(tmp_path / 'main.py')!r}, run_name='__main__')")
    assert proc.returncode == 0, proc.stderr
    loop, got = proc.stdout.splitlines()
    assert loop == "[(True, 0, True), (True, 3, True)]"
    assert got == "[(True, 0, False), (True, 3, False)]"
    assert "RuntimeWarning" not in proc.stderr, proc.stderr


DEEP_CONFIG = """
import array, collections
import numpy as np
COUNTS = collections.defaultdict(int)
RECENT = collections.deque([1, 2], maxlen=5)
RAW = bytearray(b"abc")
ARR = array.array("d", [1.0, 2.0])
WEIGHTS = np.zeros(3)
GRID = np.zeros((2, 2))
OPTIONS = {"paths": ["/data"], "tags": {"a"}}
NESTED = {"a": {"b": [1]}}
ORDER = collections.OrderedDict(a=1)
LEGACY = True
TEMP = 1
class Settings:
    OLD = 1
"""

DEEP_TASKS = """
import pp_deep_config as c
def read(i):
    return [dict(c.COUNTS), list(c.RECENT), c.RAW.decode(), list(c.ARR), c.WEIGHTS.tolist(),
            c.GRID.tolist(), c.OPTIONS["paths"], sorted(c.OPTIONS["tags"]), c.NESTED["a"]["b"],
            list(c.ORDER.items()), hasattr(c, "LEGACY"), getattr(c, "TEMP", "absent"),
            hasattr(c.Settings, "OLD")]
"""


# Each step changes a value of the module after a warm call ran with the module's own
# values: in place deep in a value, in objects whose change no dict version shows (an array,
# a deque, a bytearray), or by deleting an attribute. The workers must read what the loop reads.
def _stepping(config: str, tasks: str, imports: str) -> str:
    """The top of a script whose ``step(label)`` prints, as a JSON line, the label, what
    ``tasks.read(0)`` gives in the loop and what two tasks of it give in the workers."""
    return f"""
import json, os, sys, warnings
sys.path.insert(0, os.path.dirname(__file__))
{imports}
import {config}, {tasks}
from picklepool import Parallel, delayed

def step(label):
    loop = {tasks}.read(0)
    workers = Parallel(n_jobs=2)(delayed({tasks}.read)(i) for i in range(2))
    print(json.dumps([label, loop, workers]))

if __name__ == "__main__":
"""


def _run_script(tmp_path: Any, files: dict[str, str]) -> list[Any]:
    """Write *files* (name -> text) to *tmp_path*, run its ``main.py`` as a script: the JSON
    lines it printed."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = run_python(f"import runpy; runpy.run_path({str(tmp_path / 'main.py')!r}, run_name='__main__')")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


DEEP_SCRIPT = (
    _stepping("pp_deep_config", "pp_deep_tasks", "import numpy as np\nfrom pp_deep_config import NESTED")
    + """
    step("warm")
    pp_deep_config.COUNTS["x"] += 1; step("defaultdict")
    pp_deep_config.RECENT.append(3); step("deque")
    pp_deep_config.RAW[0] = ord("z"); step("bytearray")
    pp_deep_config.ARR[0] = 9.0; step("array.array")
    pp_deep_config.WEIGHTS[0] = 2.0; step("numpy item")
    pp_deep_config.OPTIONS["paths"].append("/s1"); step("list in a dict")
    pp_deep_config.OPTIONS["tags"].add("b"); step("set in a dict")
    NESTED["a"]["b"].append(2); step("from-imported, deep")
    pp_deep_config.ORDER["b"] = 2; step("OrderedDict")
    np.copyto(pp_deep_config.GRID, 3.0); step("numpy.copyto")
    pp_deep_config.GRID += 1; step("array +=")
    del pp_deep_config.LEGACY; step("del")
    pp_deep_config.TEMP = 5; step("set")
    del pp_deep_config.TEMP; step("set, then del")
    del pp_deep_config.Settings.OLD; step("del a class attribute")
    pp_deep_config.TEMP = 6; step("set again")
"""
)


def test_changes_deep_in_a_modules_values_and_deletions_reach_warm_workers(tmp_path):
    pytest.importorskip("numpy")
    files = {"pp_deep_config.py": DEEP_CONFIG, "pp_deep_tasks.py": DEEP_TASKS, "main.py": DEEP_SCRIPT}
    steps = _run_script(tmp_path, files)
    assert len(steps) == 17, steps
    for label, loop, workers in steps:
        assert workers == [loop, loop], label
    assert steps[-1][1] == [
        {"x": 1},
        [1, 2, 3],
        "zbc",
        [9.0, 2.0],
        [2.0, 0.0, 0.0],
        [[4.0, 4.0], [4.0, 4.0]],
        ["/data", "/s1"],
        ["a", "b"],
        [1, 2],
        [["a", 1], ["b", 2]],
        False,
        6,
        False,
    ]
    assert steps[-2][1][11] == "absent"  # (set, then deleted: not the module's own 1)


def test_what_a_script_changes_deep_in_a_value_or_deletes_is_read():
    source = """
import heapq, random
import numpy as np
import config
from config import OPTS
config.OPTIONS["paths"].append(1)
config.REGISTRY.get("k").add(1)
config.FRAME.fillna(0, inplace=True)
config.A[0].b = 3
config.W += 1
del config.D["k"]
np.copyto(config.W2, 0)
np.add(1, 2, out=config.W3)
random.shuffle(config.ITEMS)
heapq.heappush(config.QUEUE, 1)
OPTS["x"]["y"] = 1
del config.OLD
delattr(config, "GONE")
for config.SCALE in (1, 2):
    pass
def test(monkeypatch):
    monkeypatch.delattr("config.M")
"""
    found = settargets.read(source)
    names = ("OPTIONS", "REGISTRY", "FRAME", "A", "W", "D", "W2", "W3", "ITEMS", "QUEUE")
    changed = {("config", n) for n in names}
    assert changed | {("OPTS",)} <= found.changed
    deleted = {("config", "OLD"), ("config", "GONE"), (settargets.MODULES, "config", "M")}
    assert found.deleted == deleted
    assert not found.deleted & found.changed
    assert deleted | changed | {("config", "SCALE")} <= found.chains
    # another module's code: its bindings and deletions count, not its changes in place
    theirs = settargets.read(source, in_place=False)
    assert theirs.deleted == deleted and not theirs.changed
    assert ("config", "OPTIONS") not in theirs.chains


KIND_CONFIG = """
import array, collections, dataclasses
@dataclasses.dataclass
class Run:
    name: str = "base"
    workers: int = dataclasses.field(default=1, compare=False)  # (== leaves it out)
RUN = Run()
COUNTS = collections.Counter()
ORDER = collections.OrderedDict(a=1)
RECENT = collections.deque([1, 2])
RAW = bytearray(b"abc")
ARR = array.array("i", [1, 2])
TABLE = {i: {"w": 0} for i in range(1000)}  # (more dicts than are watched one by one)
ROWS = list(range(20000))  # (longer than a list watched item by item)
STATE = {"n": 0}
SETTINGS = {"mode": "slow"}
"""

# another module that imported the values themselves: it must see them changed in place
KIND_TASKS = """
from pp_kind_config import COUNTS, ORDER, RECENT, RAW, ARR, TABLE, ROWS, SETTINGS
import pp_kind_config as c
def read(i):
    return [c.RUN.workers, dict(COUNTS), list(ORDER.items()), list(RECENT), RAW.decode(),
            list(ARR), TABLE[0]["w"], ROWS[5], sorted(SETTINGS), SETTINGS["mode"]]
def grow(i):
    RECENT.append(i)  # (a task's change: its batch's only, as a list's)
    return len(RECENT)
def draw(i):
    return c.STATE.get("rng") is None
"""

KIND_SCRIPT = (
    _stepping("pp_kind_config", "pp_kind_tasks", "import math, random")
    + """
    step("warm")
    pp_kind_config.RUN.workers = 8; step("dataclass field left out of ==")
    pp_kind_config.COUNTS["x"] += 1; step("Counter")
    pp_kind_config.ORDER["b"] = 2; step("OrderedDict")
    pp_kind_config.RECENT.append(3); step("deque")
    pp_kind_config.RAW[0] = ord("z"); step("bytearray")
    pp_kind_config.ARR[0] = 9; step("array.array")
    pp_kind_config.TABLE[0]["w"] = 5; step("the first of 1000 dicts")
    pp_kind_config.ROWS[5] = -5; step("an item of a long list")
    pp_kind_config.SETTINGS["math"] = math  # (an item that pickles, by reference, but does not copy)
    pp_kind_config.SETTINGS["mode"] = "fast"; step("a dict holding a module")
    grow = delayed(pp_kind_tasks.grow)
    grown = [Parallel(n_jobs=2, batch_size=1)(grow(i) for i in range(4)) for _ in range(2)]
    print(json.dumps(["grown", grown]))
    pp_kind_config.STATE["rng"] = random.Random(42)  # (a seeded generator within a value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        print(json.dumps(["rng", Parallel(n_jobs=2)(delayed(pp_kind_tasks.draw)(i) for i in range(2)),
                          [str(w.message) for w in caught]]))
"""
)


def test_values_changed_in_place_of_every_kind_are_changed_in_the_workers_own(tmp_path):
    # helper-112's break-it review: another module's `from config import RECENT` kept the old
    # deque, Counter, OrderedDict, bytearray, array.array (rebound, not changed in place); a
    # task's deque.append piled up across batches; a dataclass whose == leaves a field out was
    # never updated; a change among 1000 dicts or in a 20,000-item list was missed; a seeded
    # generator within a value was sent, each batch replaying its draws
    files = {"pp_kind_config.py": KIND_CONFIG, "pp_kind_tasks.py": KIND_TASKS, "main.py": KIND_SCRIPT}
    lines = _run_script(tmp_path, files)
    steps, (_, grown), (_, fresh, warned) = lines[:-2], lines[-2], lines[-1]
    assert len(steps) == 10, lines
    for label, loop, workers in steps:
        assert workers == [loop, loop], label
    last = [8, {"x": 1}, [["a", 1], ["b", 2]], [1, 2, 3], "zbc", [9, 2], 5, -5, ["math", "mode"], "fast"]
    assert steps[-1][1] == last
    assert grown == [[4, 4, 4, 4]] * 2  # the parent's 3 items and the task's one, each batch
    assert fresh == [True, True]  # (STATE not sent: the worker's own, without the generator)
    assert any("pp_kind_config.STATE, which the script sets, is not sent" in w for w in warned), warned
    assert any("random number generator (random.Random)" in w for w in warned), warned


def test_a_value_bound_anew_then_changed_in_place_leaves_what_another_module_imported(tmp_path):
    # `config.OPTIONS = {...}` then `config.OPTIONS["mode"] = ...` (helper-113): the module
    # that imported OPTIONS before keeps the old dict in the parent; the worker's refilled it
    (tmp_path / "pp_rebound_config.py").write_text('OPTIONS = {"mode": "slow"}\nOTHER = {"mode": "slow"}\n')
    (tmp_path / "pp_rebound_tasks.py").write_text(
        "import pp_rebound_config as c\n"
        "from pp_rebound_config import OPTIONS, OTHER\n"
        "def read(i):\n"
        "    return OPTIONS['mode'], c.OPTIONS['mode'], OTHER['mode']\n"
    )
    (tmp_path / "pp_rebound_elsewhere.py").write_text('OPTIONS = {"mode": "its own"}\n')  # (same name)
    (tmp_path / "main.py").write_text(
        "import json, os, sys\n"
        "sys.path.insert(0, os.path.dirname(__file__))\n"
        "import pp_rebound_config, pp_rebound_tasks, pp_rebound_elsewhere\n"
        "from picklepool import Parallel, delayed\n"
        "def step():\n"
        "    loop = pp_rebound_tasks.read(0)\n"
        "    read = delayed(pp_rebound_tasks.read)\n"
        "    print(json.dumps([loop, Parallel(n_jobs=2)(read(i) for i in range(2))]))\n"
        "if __name__ == '__main__':\n"
        "    step()\n"
        "    pp_rebound_config.OPTIONS = {'mode': 'new'}\n"
        "    step()\n"
        "    pp_rebound_config.OPTIONS['mode'] = 'newer'\n"
        "    pp_rebound_config.OTHER['mode'] = 'fast'  # (in place only: seen through the import)\n"
        "    step()\n"
    )
    proc = run_python(f"import runpy; runpy.run_path({str(tmp_path / 'main.py')!r}, run_name='__main__')")
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(line) for line in proc.stdout.splitlines()]
    for loop, workers in steps:
        assert workers == [loop, loop], steps
    assert steps[-1][0] == ["slow", "newer", "fast"]
