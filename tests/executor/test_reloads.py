"""A task function of a module the parent reloaded runs the parent's code (``workers.reloads``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from picklepool.workers import reloads

from ..conftest import run_python

# The module's two versions differ in length: its cached bytecode is never taken for the other.
OLD = "def f(x):\n    return ('old', x)\n"
NEW = "import functools\n\n\ndef f(x):\n    return ('new', x, helper())\n\n\ndef helper():\n    return 2\n"

SCRIPT = """
import importlib, sys
sys.path.insert(0, {folder!r})
from picklepool import Executor, Parallel, delayed

def write(text):
    with open({path!r}, "w") as f:
        f.write(text)

write({old!r})
import mod
{first}
write({new!r})
{then}
"""


# a __main__ script's function f of `from mod import f`, and one of its own calling it
HELD = """from mod import f

def via_main(x):
    return f(x)
"""


def _script(tmp_path, first: str, then: str) -> subprocess.CompletedProcess[str]:
    code = SCRIPT.format(
        folder=str(tmp_path), path=str(tmp_path / "mod.py"), old=OLD, new=NEW, first=first, then=then
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_a_module_reloaded_in_the_parent_is_the_one_warm_workers_run(tmp_path):
    # joblib issue #1085: the warm workers kept the module as they first imported it
    proc = _script(
        tmp_path,
        first="print(Parallel(n_jobs=2)(delayed(mod.f)(i) for i in range(4)))",
        then="""mod = importlib.reload(mod)
print(Parallel(n_jobs=2)(delayed(mod.f)(i) for i in range(4)))
with Executor(2) as ex:
    print(list(ex.map(mod.f, range(2))))""",
    )
    assert proc.stdout.splitlines() == [
        str([("old", i) for i in range(4)]),
        str([("new", i, 2) for i in range(4)]),
        str([("new", i, 2) for i in range(2)]),
    ]
    assert "RuntimeWarning" not in proc.stderr


CLASSES_OLD = "class Shape:\n    def area(self):\n        return 1\n\n\ndef f(x):\n    return ('old', x)\n"
CLASSES_NEW = (
    "class Shape:\n    def area(self):\n        return 22\n\n\ndef f(x):\n    return ('new', x, 2)\n"
)


def test_code_reaching_a_reloaded_module_any_way_runs_the_new_code(tmp_path):
    # A __main__ function calling mod.f() (as a notebook's do), a class of an argument:
    # the worker's module is reloaded too, not only a task function found by name.
    code = SCRIPT.replace("{old!r}", repr(CLASSES_OLD)).replace("{new!r}", repr(CLASSES_NEW))
    code = code.format(
        folder=str(tmp_path),
        path=str(tmp_path / "mod.py"),
        first="""def via_main(x):
    return mod.f(x)

def area(shape):
    return shape.area()

print(Parallel(n_jobs=2)(delayed(via_main)(i) for i in range(2)))
print(Parallel(n_jobs=2)(delayed(area)(mod.Shape()) for i in range(2)))""",
        then="""mod = importlib.reload(mod)
print(Parallel(n_jobs=2)(delayed(via_main)(i) for i in range(2)))
print(Parallel(n_jobs=2)(delayed(area)(mod.Shape()) for i in range(2)))
import operator
by_name = delayed(operator.methodcaller("area"))  # the class found by name by the stdlib pickler
print(Parallel(n_jobs=2, pickler="pickle")(by_name(mod.Shape()) for i in range(2)))""",
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        str([("old", 0), ("old", 1)]),
        "[1, 1]",
        str([("new", 0, 2), ("new", 1, 2)]),
        "[22, 22]",
        "[22, 22]",
    ]
    assert "Warning" not in proc.stderr


def test_a_module_whose_file_changed_without_a_reload_runs_the_workers_copy_with_a_warning(tmp_path):
    # The parent runs the file's old code, a worker that imports the module now the new
    # one: no reload can give the worker the parent's code. It says so.
    proc = _script(
        tmp_path,
        first="",
        then="""print(Parallel(n_jobs=2)(delayed(mod.f)(i) for i in range(2)))""",
    )
    assert proc.stdout.splitlines() == [str([("new", i, 2) for i in range(2)])]
    assert "RuntimeWarning: picklepool: the task function mod.f in this worker" in proc.stderr
    assert "does not hold the parent's code: it holds this worker's copy" in proc.stderr
    assert "Reload the module in the parent" in proc.stderr


@pytest.mark.parametrize("seed", ["1", "2"])
def test_a_codes_digest_is_the_same_in_every_process_that_compiled_the_same_source(seed):
    source = "def g(x, *, k=frozenset({'a', 'b', 'c', 1.5})):\n    return [lambda: (x, 'z', None, k)]\n"
    here = reloads.code_digest(compile(source, "m.py", "exec", dont_inherit=True))
    there = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from picklepool.workers.reloads import code_digest; "
            "print(code_digest(compile(sys.argv[1], 'm.py', 'exec', dont_inherit=True)))",
            source,
        ],
        capture_output=True,
        text=True,
        env={"PYTHONHASHSEED": seed, "PATH": ""},
        timeout=60,
    )
    assert there.returncode == 0, there.stderr
    assert there.stdout.strip() == here
    other = compile(source.replace("'z'", "'y'"), "m.py", "exec", dont_inherit=True)
    assert reloads.code_digest(other) != here


def test_digests_follow_what_a_function_wraps():
    import functools

    def inner(x):
        return x

    @functools.wraps(inner)
    def outer(x):
        return inner(x)

    assert reloads.digests(outer) == (
        reloads.code_digest(outer.__code__),
        reloads.code_digest(inner.__code__),
    )


def test_a_function_of_a_module_whose_loader_rewrote_its_code_goes_without_digests():
    # pytest rewrites the asserts of test modules as it imports them: no compile of the
    # file gives that code, and a worker would take it for a stale copy and warn
    from picklepool.executor.functions import by_reference
    from picklepool.pickler.hybrid import HybridPickler

    from . import crash_cases

    rewritten = test_digests_follow_what_a_function_wraps  # of this module, which pytest rewrote
    assert not reloads.checkable(rewritten)
    assert b"resolve" not in by_reference(HybridPickler(), rewritten)[1]
    assert reloads.checkable(crash_cases.identity_task)  # a helper module: not rewritten
    assert b"resolve" in by_reference(HybridPickler(), crash_cases.identity_task)[1]


def test_functions_patched_in_place_by_autoreload_run_their_new_code(tmp_path):
    # IPython's %autoreload reloads the module and sets each old function's __code__ to the
    # new one's: the parent's `f` of `from mod import f` runs the new code. The parent sent
    # the digests it had pickled at the first call, and the worker kept the functions it had
    # rebuilt before its reload (a partial of mod.f, a __main__ function's global f).
    proc = _script(
        tmp_path,
        first="import functools\n"
        + HELD
        + """
def calls():
    return [
        Parallel(n_jobs=2)(delayed(f)(i) for i in range(2)),
        Parallel(n_jobs=2)(delayed(via_main)(i) for i in range(2)),
        Parallel(n_jobs=2)(delayed(functools.partial(f, 1))() for i in range(2)),
        list(ex.map(f, range(2))),
    ]

ex = Executor(2)
print(calls())""",
        then="""old = mod.f
mod = importlib.reload(mod)
old.__code__ = mod.f.__code__  # what %autoreload does
print([f(i) for i in range(2)])
print(calls())
ex.shutdown()""",
    )
    old = [("old", 0), ("old", 1)]
    new = [("new", 0, 2), ("new", 1, 2)]
    assert proc.stdout.splitlines() == [
        str([old, old, [("old", 1)] * 2, old]),
        str(new),
        str([new, new, [("new", 1, 2)] * 2, new]),
    ]
    assert "Warning" not in proc.stderr


def test_a_parent_run_with_python_O_gets_no_warning_and_its_reloads(tmp_path):
    # Its workers run without -O (as joblib's): a function with an assert compiles to other
    # code there. That is no sign of a reload: no warning, and a real reload still reaches them.
    old = "def f(x):\n    assert x >= 0\n    return ('old', x)\n"
    new = "def f(x):\n    assert x >= 0\n    return ('new', x, 2)\n\n\n"
    code = SCRIPT.format(
        folder=str(tmp_path),
        path=str(tmp_path / "mod.py"),
        old=old,
        new=new,
        first="print(Parallel(n_jobs=2)(delayed(mod.f)(i) for i in range(2)))",
        then="""mod = importlib.reload(mod)
print(Parallel(n_jobs=2)(delayed(mod.f)(i) for i in range(2)))""",
    )
    proc = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str([("old", 0), ("old", 1)]), str([("new", 0, 2), ("new", 1, 2)])]
    assert "Warning" not in proc.stderr


def test_a_call_looks_again_only_at_the_modules_the_import_system_was_asked_for(tmp_path, monkeypatch):
    # An editable install of a large package is a thousand watched modules: looking at each
    # at every call cost 0.4 ms. A reload, an import after `del sys.modules[name]`, a reload
    # found by another finder put first since the last call: each is still counted.
    import importlib
    import importlib.machinery
    import types

    from picklepool.executor import reloaded

    looks = []
    spec = importlib.machinery.ModuleSpec(
        "pp_watched_many", None, origin=str(tmp_path / "pp_watched_many.py")
    )

    class Counted(types.ModuleType):
        @property
        def __spec__(self):  # type: ignore[override]
            looks.append(1)
            return spec

    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "pp_watched_many", Counted("pp_watched_many"))
    (tmp_path / "pp_watched_reloaded.py").write_text("X = 1\n")
    mod = importlib.import_module("pp_watched_reloaded")
    try:
        reloaded.generations()
        assert "pp_watched_many" in reloaded._seen and looks
        looks.clear()
        for _ in range(3):
            reloaded.generations()
        assert looks == []

        def count() -> int:
            return dict(reloaded.generations()).get("pp_watched_reloaded", 0)

        importlib.reload(mod)
        assert count() == 1
        del sys.modules["pp_watched_reloaded"]
        mod = importlib.import_module("pp_watched_reloaded")
        assert count() == 2
        sys.meta_path.insert(0, importlib.machinery.PathFinder)  # finds it: the watch is not asked
        importlib.reload(mod)
        assert count() == 3
        assert sys.meta_path[0] is reloaded._watch
    finally:
        sys.modules.pop("pp_watched_reloaded", None)
        reloaded._seen.pop("pp_watched_reloaded", None)
        reloaded._seen.pop("pp_watched_many", None)
        reloaded._out = tuple(item for item in reloaded._out if not item[0].startswith("pp_watched"))


IPYTHON_SCRIPT = """
import os, sys
sys.path.insert(0, {folder!r})
from IPython.core.interactiveshell import InteractiveShell

def write(text, bump):
    with open({path!r}, "w") as f:
        f.write(text)
    st = os.stat({path!r})
    os.utime({path!r}, (st.st_atime, st.st_mtime + bump))

write({old!r}, 0)
shell = InteractiveShell.instance()
CALLS = (
    "print([Parallel(n_jobs=2)(delayed(f)(i) for i in range(2)),"
    " Parallel(n_jobs=2)(delayed(via_main)(i) for i in range(2)),"
    " Parallel(n_jobs=2)(delayed(shape.area)() for i in range(2))])"
)
for cell in [
    "%load_ext autoreload",
    "%autoreload 2",
    "from picklepool import Parallel, delayed\\nfrom mod import f, Shape\\nimport mod",
    "def via_main(x):\\n    return mod.helper(x)",
    "shape = Shape()",
    CALLS,
]:
    assert shell.run_cell(cell).success, cell
write({new!r}, 10)
assert shell.run_cell(CALLS).success
"""


@pytest.mark.parametrize("future", ["", "from __future__ import annotations\n\n"])
def test_ipython_autoreload_that_patches_the_module_in_place_reaches_the_workers(tmp_path, future):
    # IPython 9's %autoreload 2 (deduperreload) runs the edited definitions in the module and
    # sets the old functions' __code__, compiled alone from their unparsed source: no reload,
    # no new __spec__. The workers ran the old code, and a task function warned.
    pytest.importorskip("IPython.extensions.deduperreload")
    old = (
        "def f(x):\n    return ('old', x)\n\n\ndef helper(x):\n    return ('old', x)\n\n\n"
        "class Shape:\n    def area(self):\n        return 1\n"
    )
    new = (
        "def f(x):\n    return ('new', x, 2)\n\n\ndef helper(x):\n    return ('new', x)\n\n\n"
        "class Shape:\n    def area(self):\n        return 22\n"
    )
    # (the file's `from __future__` import is not on the code %autoreload compiles alone)
    old, new = future + old, future + new
    code = IPYTHON_SCRIPT.format(folder=str(tmp_path), path=str(tmp_path / "mod.py"), old=old, new=new)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        str([[("old", 0), ("old", 1)], [("old", 0), ("old", 1)], [1, 1]]),
        str([[("new", 0, 2), ("new", 1, 2)], [("new", 0), ("new", 1)], [22, 22]]),
    ]
    assert "Warning" not in proc.stderr


def test_a_codes_digest_is_not_of_its_first_line_nor_its_class():
    # what %autoreload compiles alone (line 1, in a class of its own) is the file's code
    in_file = compile("\n\nclass Shape:\n    def area(self):\n        return 22\n", "m.py", "exec")
    alone = compile("class __autoreload_class__:\n    def area(self):\n        return 22\n", "m.py", "exec")

    def method(top):
        return next(
            c
            for c in next(c for c in top.co_consts if hasattr(c, "co_code")).co_consts
            if hasattr(c, "co_code")
        )

    assert reloads.code_digest(method(in_file)) == reloads.code_digest(method(alone))


def test_a_codes_digest_is_not_of_its_files_future_imports():
    def function(source):
        top = compile(source, "m.py", "exec", dont_inherit=True)
        return next(c for c in top.co_consts if hasattr(c, "co_code"))

    body = "def f(x: int) -> int:\n    return x\n"
    plain, future = function(body), function("from __future__ import annotations\n" + body)
    assert future.co_flags != plain.co_flags
    assert reloads.code_digest(future) == reloads.code_digest(plain)


def test_objects_held_from_before_a_reload_run_as_the_parent_runs_them(tmp_path):
    # `from mod import f` then importlib.reload(mod): the parent's f is the old function, no
    # longer its module's; a loop in the parent runs the old code. It went by name from
    # bytes cached before the reload (a call's, a long-lived Executor's, a __main__
    # function's global), and the workers ran the reloaded module's f (with a warning).
    stale = (
        HELD
        + """
def calls():
    return [
        Parallel(n_jobs=2)(delayed(f)(i) for i in range(2)),
        Parallel(n_jobs=2)(delayed(via_main)(i) for i in range(2)),
        [ex.submit(f, i).result() for i in range(2)],
        [ex.submit(via_main, i).result() for i in range(2)],
    ]

ex = Executor(2)
print(calls())"""
    )
    proc = _script(
        tmp_path,
        first=stale,
        then="""mod = importlib.reload(mod)
print([f(i) for i in range(2)], Parallel(n_jobs=2)(delayed(mod.f)(i) for i in range(2)))
print(calls())
ex.shutdown()""",
    )
    old = [("old", 0), ("old", 1)]
    assert proc.stdout.splitlines() == [
        str([old] * 4),
        f"{old} {[('new', 0, 2), ('new', 1, 2)]}",
        str([old] * 4),
    ]
    assert "Warning" not in proc.stderr


def test_an_installed_librarys_module_is_never_reloaded_in_a_worker(tmp_path, monkeypatch):
    # A dask worker started before `pip install -U lib`, its client after: the file holds
    # the parent's code, but reloading one module of a library under the rest of it (and
    # under the other tasks of a shared worker) is not safe. The worker's copy runs, said.
    import importlib

    (tmp_path / "pp_installed_lib.py").write_text("def f(x):\n    return ('old', x)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lib = importlib.import_module("pp_installed_lib")
    try:
        here = lib.f
        (tmp_path / "pp_installed_lib.py").write_text("def f(x):\n    return ('new', x)\n\n")
        parents = compile((tmp_path / "pp_installed_lib.py").read_text(), str(tmp_path / "x.py"), "exec")
        sent = (reloads.code_digest(next(c for c in parents.co_consts if hasattr(c, "co_code"))),)
        monkeypatch.setattr(reloads, "_roots", (str(tmp_path) + "/",), raising=False)
        with pytest.warns(RuntimeWarning, match="an installed library's, which picklepool does not reload"):
            assert reloads.resolve(here, sent, sys.flags.optimize) is here
        assert lib.f is here and lib.f(1) == ("old", 1)
        monkeypatch.setattr(reloads, "_roots", ("/nowhere/",))  # the user's own: reloaded
        assert reloads.resolve(here, sent, sys.flags.optimize)(1) == ("new", 1)
    finally:
        sys.modules.pop("pp_installed_lib", None)
