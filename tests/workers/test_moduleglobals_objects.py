"""What a script sets on an object one of its modules holds is set on the worker's own object
(``workers.moduleglobals``): a client with a background thread and its queue, a
``threading.local`` holding a connection, an instance holding its pid, lock and cache stay the
worker's, as in the loop and under joblib; only the attributes the script set (once they are
set in the parent) arrive, each alone. Before, the parent's object was sent whole in place of
the worker's, also before the script's line ran, or when it never ran (a task then waited for
ever on a queue nobody read)."""

from __future__ import annotations

import sys
import types

from picklepool.workers import moduleglobals
from picklepool.workers.overlay import loads_each

from .test_moduleglobals import _run_script, _stepping

LIVE = """
import os, queue, sqlite3, threading

class Batcher:
    # a client whose daemon thread reads its queue (a metrics or batching client)
    def __init__(self):
        self.verbose = False
        self.q = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            x, box, done = self.q.get()
            box.append(x * 10)
            done.set()

    def compute(self, x):
        box, done = [], threading.Event()
        self.q.put((x, box, done))
        if not done.wait(10):  # (bounded: a queue nobody reads gives this, not a hang)
            return "stuck: nobody reads the queue"
        return box[0]

client = Batcher()

_local = threading.local()
_local.conn = sqlite3.connect(":memory:")

class Client:
    def __init__(self):
        self.retries = 1
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.cache = {}

    def made_here(self):
        return self.pid == os.getpid()

instance = Client()
REGISTRY = {"default": Client()}  # (made by the module: each process's own)
LIMIT = 1

class Service:
    default = Client()  # (a class attribute holding an instance)
"""

LIVE_TASKS = """
import threading
import pp_live as m

def read(i):
    conn = getattr(m._local, "conn", None)
    return [m.client.compute(1), m.client.verbose,
            "no connection" if conn is None else conn.execute("select 1").fetchone()[0],
            getattr(m._local, "timeout", None),
            m.instance.retries, m.instance.made_here(), getattr(m.instance, "tag", None),
            m.REGISTRY["default"].made_here(), sorted(m.REGISTRY), m.LIMIT,
            m.Service.default.made_here(), m.Service.default.retries]
"""

LIVE_SCRIPT = (
    _stepping("pp_live", "pp_live_tasks", "from unittest import mock")
    + """
    step("before any line ran")
    if "--never" in sys.argv:  # (in the source, never run)
        pp_live._local.timeout = 5
    pp_live.client.verbose = True; step("a live client's attribute")
    pp_live._local.timeout = 5; step("a thread-local's attribute")
    pp_live.instance.retries = 3; step("an instance's attribute")
    with mock.patch.object(pp_live.instance, "tag", "patched", create=True):
        step("patch.object on an instance")
    step("the patch undone")
    pp_live.REGISTRY["extra"] = pp_live.Client(); step("a container of live objects, changed")
    setattr(pp_live, "LIMIT", 7); step("setattr by a name")
    pp_live.Service.default.retries = 4; step("a class attribute's instance")
"""
)


def test_the_script_setting_attributes_of_a_modules_objects_keeps_the_workers_own(tmp_path):
    # the thirty-fifth session's review (/tmp/s35/bk_state r1, r2, r7): the worker's client,
    # thread-local and instance were replaced by the parent's copies, before the line ran too
    files = {"pp_live.py": LIVE, "pp_live_tasks.py": LIVE_TASKS, "main.py": LIVE_SCRIPT}
    steps = _run_script(tmp_path, files)
    assert [label for label, _, _ in steps][-1] == "a class attribute's instance", steps
    for label, loop, workers in steps:
        assert workers == [loop, loop], (label, loop, workers)
    first, last = steps[0], steps[-1]
    assert first[1] == [10, False, 1, None, 1, True, None, True, ["default"], 1, True, 1]
    assert last[1] == [10, True, 1, 5, 3, True, None, True, ["default", "extra"], 7, True, 4]
    assert dict((label, loop[6]) for label, loop, _ in steps)["patch.object on an instance"] == "patched"


BATCHER = LIVE.split("_local = ", 1)[0] + "\ndef task(i):\n    return client.compute(i)\n"


def test_a_live_clients_attribute_set_after_the_call_leaves_its_thread_reading(tmp_path):
    # /tmp/s35/bk_state/r7b_background_hang.py: the line after the call sent the client whole
    # before it ran; the worker's thread read its own queue, tasks put into the copy's (a hang
    # with an unbounded wait)
    script = (
        "import json, os, sys\n"
        "sys.path.insert(0, os.path.dirname(__file__))\n"
        "import pp_batcher\n"
        "from picklepool import Parallel, delayed\n"
        "loop = [pp_batcher.task(i) for i in range(2)]\n"
        "print(json.dumps([loop, Parallel(n_jobs=2)(delayed(pp_batcher.task)(i) for i in range(2))]))\n"
        "pp_batcher.client.verbose = True\n"
    )
    [(loop, got)] = _run_script(tmp_path, {"pp_batcher.py": BATCHER, "main.py": script})
    assert loop == [0, 10]
    assert got == [0, 10]


def test_what_is_sent_of_a_modules_object_is_its_attributes_each_alone(tmp_path, monkeypatch):
    config = types.ModuleType("pp_obj_config")
    config.__file__ = str(tmp_path / "pp_obj_config.py")  # (a module of the user's)
    config.cfg = types.SimpleNamespace(batch=8, layers=[1], lock=object(), _pid=1)
    config.CLIENTS = {"a": types.SimpleNamespace(lock=None)}
    config.N = 1
    main = types.ModuleType("__main__")
    main.In = [
        "",
        "import pp_obj_config as c\nc.cfg.batch = 64\nc.cfg.layers.append(2)\nc.cfg.absent = 1\n"
        "setattr(c, name, value)\nsetattr(c.cfg, name, value)",
    ]
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setitem(sys.modules, "pp_obj_config", config)
    for name, value in (
        ("_script", (None, moduleglobals.NOTHING)),
        ("_cells_read", 0),
        ("_read", (None, None)),
    ):
        monkeypatch.setattr(moduleglobals, name, value)
    sent = loads_each(moduleglobals.pickled(), "test")
    assert sent == {
        ("pp_obj_config", "cfg.batch"): 8,  # (the parent's value, set on the worker's cfg)
        ("pp_obj_config", "cfg.layers", moduleglobals.IN_PLACE): [1],
        ("pp_obj_config", "N"): 1,  # (setattr by a name: plain data only, not CLIENTS)
    }  # (nor cfg's lock, nor its private _pid; cfg.layers keeps its key, changed in place)
    config.cfg.batch = 64
    assert loads_each(moduleglobals.pickled(), "test")[("pp_obj_config", "cfg.batch")] == 64
