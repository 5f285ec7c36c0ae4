"""A task that pickles its script's objects by name finds them, as in the parent (workers.mainnames)."""

from __future__ import annotations

import functools
import subprocess
import sys

from picklepool.workers import mainnames

from ..conftest import run_python

SCRIPT = """
from __future__ import annotations
import dataclasses, multiprocessing, os, pickle, sys, tempfile, typing
from concurrent.futures import ProcessPoolExecutor
from picklepool import Executor, Parallel, delayed

@dataclasses.dataclass
class Result:
    i: int

class Outer:
    class Inner:
        pass

def square(x):
    return x * x

def round_trip(i):  # the standard library's pickle, by name, inside the task
    return pickle.loads(pickle.dumps(Result(i))), pickle.loads(pickle.dumps(square))(i)

def nested(_i):
    return type(pickle.loads(pickle.dumps(Outer.Inner()))).__qualname__

def itself(i):
    return pickle.loads(pickle.dumps(itself)) is itself

def save(path, i):  # a task saving its result to a file, for the parent to read
    with open(path, "wb") as f:
        pickle.dump(Result(i), f)

def pool_in_task(n):  # a multiprocessing pool started by a task, with the script's function
    with multiprocessing.get_context("fork").Pool(1) as p:
        return p.map(square, range(n))

def executor_in_task(n):
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
        return list(ex.map(square, range(n)))

@dataclasses.dataclass
class Line:
    a: Result
    b: Result

def hints(i):  # string annotations, evaluated in __main__'s namespace
    line = Line(Result(i), Result(i + 1))
    return {k: type(getattr(line, k)) is t for k, t in typing.get_type_hints(Line).items()}

class Job:  # run as delayed(Job)(i) or delayed(Job(0))(i): its methods look Result up
    def __init__(self, i):
        self.r = pickle.loads(pickle.dumps(Result(i))).i

    def __call__(self, i):
        return pickle.loads(pickle.dumps(Result(i))).i

def main(i):  # the name of the worker launcher's own function
    return pickle.loads(pickle.dumps(main)) is main

def unknown(_i):
    main = sys.modules["__main__"]
    return hasattr(main, "not_a_name_of_the_script"), hasattr(main, "__file__") == hasattr(main, "__file__")

if __name__ == "__main__":
    out = {}
    for pickler in ("hybrid", "cloudpickle"):
        got = Parallel(n_jobs=2, pickler=pickler)(delayed(round_trip)(i) for i in range(3))
        out[pickler] = [(r.i, type(r) is Result, s) for r, s in got]
    out["nested"] = Parallel(n_jobs=2)(delayed(nested)(i) for i in range(2))
    out["itself"] = Parallel(n_jobs=2)(delayed(itself)(i) for i in range(2))
    with tempfile.TemporaryDirectory() as d:
        paths = [os.path.join(d, f"{i}.pkl") for i in range(2)]
        Parallel(n_jobs=2)(delayed(save)(p, i) for i, p in enumerate(paths))
        loaded = []
        for p in paths:
            with open(p, "rb") as f:
                loaded.append(pickle.load(f))
        out["saved"] = [(r.i, type(r) is Result) for r in loaded]
    out["pool"] = Parallel(n_jobs=2)(delayed(pool_in_task)(4) for _ in range(2))
    out["executor"] = Parallel(n_jobs=2)(delayed(executor_in_task)(3) for _ in range(2))
    with Executor(max_workers=2) as ex:
        r, s = ex.submit(round_trip, 5).result()
        out["Executor"] = (r.i, type(r) is Result, s)
    out["hints"] = Parallel(n_jobs=2)(delayed(hints)(i) for i in range(2))
    out["main"] = Parallel(n_jobs=2)(delayed(main)(i) for i in range(2))
    out["class"] = [j.r for j in Parallel(n_jobs=2)(delayed(Job)(i) for i in range(2))]
    out["callable"] = Parallel(n_jobs=2)(delayed(Job(0))(i) for i in range(2))
    with Executor(max_workers=2) as ex:
        out["main_Executor"] = ex.submit(main, 0).result()
    out["unknown"] = Parallel(n_jobs=2)(delayed(unknown)(i) for i in range(2))
    out["parent_main_untouched"] = "__getattr__" not in vars(sys.modules["__main__"])
    print(repr(out))
"""


def test_a_task_finding_its_scripts_objects_through_main_finds_them_as_in_the_parent():
    # In a loky worker, __main__ is loky's module: pickle.dumps(Result(i)) in a task
    # raised "attribute lookup Result on __main__ failed" (as under joblib), and so did
    # a multiprocessing pool or a ProcessPoolExecutor the task started with a function
    # of the script; typing.get_type_hints of a class with string annotations raised
    # NameError. In the parent's loop all of these work.
    proc = run_python(SCRIPT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our own script's repr
    expected = [(i, True, i * i) for i in range(3)]
    assert out["hybrid"] == expected
    assert out["cloudpickle"] == expected
    assert out["nested"] == ["Outer.Inner", "Outer.Inner"]
    assert out["itself"] == [True, True]
    assert out["saved"] == [(0, True), (1, True)]  # the parent's own class
    assert out["pool"] == [[0, 1, 4, 9], [0, 1, 4, 9]]
    assert out["executor"] == [[0, 1, 4], [0, 1, 4]]
    assert out["Executor"] == (5, True, 25)
    assert out["hints"] == [{"a": True, "b": True}] * 2
    assert out["unknown"] == [(False, True), (False, True)]  # other names: still missing
    # a script's def main(): the worker's __main__ had the launcher's main, so pickling it
    # by name was "not the same object as __main__.main"
    assert out["main"] == [True, True]
    assert out["main_Executor"] is True
    # a class of the script as the task's callable, or an object of one: the globals its
    # methods see were not put there (only its own name)
    assert out["class"] == [0, 1]
    assert out["callable"] == [0, 1]
    assert out["parent_main_untouched"] is True


def _g(x):
    return x


def test_names_looks_through_partials_bound_methods_and_callable_objects_of_main_only():
    def f(x):
        return x

    f.__module__ = "__main__"
    f.__qualname__ = "f"

    class Holder:
        def m(self):
            return f

        def __call__(self):
            return None

    Holder.m.__module__ = Holder.__module__ = "__main__"
    Holder.__qualname__ = "Holder"
    found = mainnames.names([functools.partial(functools.partial(f, 1)), Holder().m])
    assert found["f"] is f
    assert found["functools"] is functools  # a global the function sees
    assert not any(k.startswith("__") for k in found)
    assert mainnames.names([Holder()])["Holder"] is Holder  # a callable object: its class
    assert mainnames.names([_g, len]) == {}  # nothing of __main__


def test_enter_puts_the_names_and_leave_takes_them_out_never_the_modules_own(monkeypatch):
    ns = {"main": "loky's own", "sys": sys}
    monkeypatch.setattr(mainnames, "_namespace", ns)
    monkeypatch.setattr(mainnames, "_launcher", {})  # (set there by the test, not the launcher)

    def first(x):
        return x

    def second(x):
        return x

    for fn in (first, second):
        fn.__module__, fn.__qualname__ = "__main__", fn.__name__
    put = mainnames.enter([first, second])
    assert put is not None
    assert ns["first"] is first and ns["second"] is second and ns["functools"] is functools
    assert ns["main"] == "loky's own" and ns["sys"] is sys  # never the module's own
    ns["second"] = "bound anew by a task"
    mainnames.leave(put)
    assert ns == {"main": "loky's own", "sys": sys, "second": "bound anew by a task"}
    assert mainnames.enter([len]) is None  # nothing of __main__: nothing to take out


def test_the_launchers_names_give_way_to_the_scripts_for_the_batch_and_come_back(monkeypatch):
    # the forkserver's -c left main (and sys) in the worker's __main__: a script's own
    # main was not put there, so pickle.dumps(main) in a task failed, where the loop works
    launchers_main = object()
    ns = {"__name__": "__main__", "main": launchers_main, "sys": sys}
    monkeypatch.setattr(mainnames, "_namespace", ns)
    monkeypatch.setattr(mainnames, "_launcher", {"main": launchers_main, "sys": sys})

    def main(x):
        return x

    main.__module__, main.__qualname__ = "__main__", "main"
    put = mainnames.enter([main])
    assert ns["main"] is main and ns["sys"] is sys and put is not None and "sys" not in put
    mainnames.leave(put)
    assert ns["main"] is launchers_main  # the launcher's back
    ns["main"] = "set by an initializer"
    put = mainnames.enter([main])
    assert "main" not in (put or {}) and ns["main"] == "set by an initializer"


SPAWNED = """
import copyreg, multiprocessing, pickle, sqlite3, sys
from picklepool import Parallel, delayed

class Result:
    def __init__(self, i):
        self.i = i

def reduce_conn(conn):
    return sqlite3.connect, (":memory:",)

def task(i):  # pickle by name, inside the task, of the script's class and function
    return type(pickle.loads(pickle.dumps(Result(i)))) is Result, pickle.loads(pickle.dumps(task)) is task

def child(method):
    copyreg.pickle(sqlite3.Connection, reduce_conn)
    out = Parallel(n_jobs=2)(delayed(task)(i) for i in range(2))
    conns = Parallel(n_jobs=2)(delayed(sqlite3.connect)(":memory:") for i in range(2))
    print(repr((method, out, [type(c).__name__ for c in conns])), flush=True)

if __name__ == "__main__":
    for method in sys.argv[1:]:
        p = multiprocessing.get_context(method).Process(target=child, args=(method,))
        p.start()
        p.join()
        assert p.exitcode == 0, p.exitcode
"""


def test_a_program_that_multiprocessing_started_finds_its_scripts_objects_too(tmp_path):
    # a Process (spawn, forkserver) whose target calls Parallel runs its script as
    # __mp_main__: its functions were not put in the worker's __main__ (nor its copyreg
    # reducers registered there), so pickle.dumps(Result(i)) in a task failed with
    # "attribute lookup Result on __mp_main__ failed" where the loop works
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED)
    methods = ["spawn", "forkserver", "fork"]
    proc = subprocess.run(
        [sys.executable, str(script), *methods], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    got = [eval(line) for line in proc.stdout.splitlines()]  # noqa: S307 - our own script's repr
    assert got == [(m, [(True, True), (True, True)], ["Connection", "Connection"]) for m in methods]


SPAWNS = """
import inspect, multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
from picklepool import Parallel, delayed
from {helpers} import K

class Shape:
    sides = 3

def square(x):
    return x * x + K

def pools_in_task(method, n):  # the script's function in processes the task starts
    ctx = multiprocessing.get_context(method)
    with ctx.Pool(1) as p:
        a = p.map(square, range(n))
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        b = list(ex.map(square, range(n)))
    return a, b

def source(_):
    return inspect.getsource(Shape).splitlines()[0]

if __name__ == "__main__":
    methods = ("spawn", "forkserver")
    loop = [pools_in_task(m, 3) for m in methods]
    tasks = Parallel(n_jobs=2)(delayed(pools_in_task)(m, 3) for m in methods)
    print(repr((loop, tasks, Parallel(n_jobs=2)(delayed(source)(i) for i in range(2)))))
"""


def test_processes_a_task_spawns_run_the_script_as_the_parents_do(tmp_path):
    # a task's Pool or ProcessPoolExecutor with multiprocessing's "spawn" or "forkserver"
    # context and a function of the script: its processes could not find the function
    # (the worker's __main__ had no __file__ to run), died at their first task, and the
    # Pool started new ones for ever: the call never returned, where the loop ran (joblib's
    # workers fail to pickle the function). And inspect.getsource of a script's class said
    # "source code not available". Run as a file, and as a package's module (python -m).
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("K = 10\n")
    (package / "cli.py").write_text(SPAWNS.format(helpers=".helpers"))
    (tmp_path / "script.py").write_text(SPAWNS.format(helpers="app.helpers"))
    expected = ([10, 11, 14], [10, 11, 14])
    for command in (["script.py"], ["-m", "app.cli"]):
        proc = subprocess.run(
            [sys.executable, *command], capture_output=True, text=True, timeout=150, cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        loop, tasks, sources = eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our script's repr
        assert loop == tasks == [expected, expected]
        assert sources == ["class Shape:", "class Shape:"]
