"""The import finders the parent put in sys.meta_path reach the workers (workers.finders)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys

import pytest

from picklepool import Executor
from picklepool.workers import finders

from ..conftest import run_python

_NAME = "picklepool_test_virtual_module"


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.ANSWER = 42


class _Finder(importlib.abc.MetaPathFinder):
    """A finder of the program's own, as pyximport's: it serves one module no folder has."""

    def find_spec(self, name, path, target=None):
        if name.startswith(_NAME):
            return importlib.util.spec_from_loader(name, _Loader(), origin="virtual")
        return None


@pytest.fixture
def installed():
    finder = _Finder()
    sys.meta_path.append(finder)
    yield finder
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
    for name in [n for n in sys.modules if n.startswith(_NAME)]:
        del sys.modules[name]


def _imported(suffix=""):
    """A task importing a module only the finder finds: its value, or the error."""
    try:
        return importlib.import_module(_NAME + suffix).ANSWER
    except ImportError as exc:
        return type(exc).__name__


def test_a_task_of_a_module_only_the_scripts_finder_finds_runs_as_in_the_loop():
    # the script's own finder, installed after the workers started (as pyximport.install()):
    # a worker could not import the task's module, so it could not load the task (as under joblib)
    proc = run_python(
        """
        import sys, importlib.abc, importlib.util
        from picklepool import Parallel, delayed

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return None
            def exec_module(self, module):
                exec("def double(x):\\n    return 2 * x\\n", module.__dict__)

        class Finder(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "virtualmod":
                    return importlib.util.spec_from_loader(name, Loader(), origin="virtual")

        print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(2)))
        sys.meta_path.append(Finder())
        import virtualmod

        def task(x):
            import virtualmod
            return virtualmod.double(x) + 1

        print([virtualmod.double(i) for i in range(3)], [task(i) for i in range(3)])
        print(
            Parallel(n_jobs=2)(delayed(virtualmod.double)(i) for i in range(3)),
            Parallel(n_jobs=2)(delayed(task)(i) for i in range(3)),
        )
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[0, 1]", "[0, 2, 4] [1, 3, 5]", "[0, 2, 4] [1, 3, 5]"]


def _take_out(_=None):
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "_Finder"]


def test_a_tasks_own_change_is_its_batchs_and_a_finder_the_parent_took_out_goes(installed):
    with Executor(max_workers=1) as ex:
        assert ex.submit(_imported).result() == 42
        ex.submit(_take_out).result()  # a task's own: not the next batch's
        assert ex.submit(_imported).result() == 42
        sys.meta_path.remove(installed)
        assert _imported("_2") == "ModuleNotFoundError"
        assert ex.submit(_imported, "_2").result() == "ModuleNotFoundError"


def test_pickled_leaves_out_the_interpreters_finders_and_is_kept_while_unchanged(installed):
    from picklepool.workers.overlay import loads_each

    data = finders.pickled()
    assert data is not None and finders.pickled() is data
    sent = loads_each(data, finders.WHAT)
    assert [type(f).__name__ for f in sent.values()][-1] == "_Finder"
    assert not any(type(f).__module__.startswith("_frozen_importlib") for f in sent.values())
    # (importlib's classes; a class a program put there, as setuptools' editable installs
    # do, is the program's own)
    interpreters = (
        importlib.machinery.BuiltinImporter,
        importlib.machinery.FrozenImporter,
        importlib.machinery.PathFinder,
    )
    assert not any(f in interpreters for f in sent.values())
    sys.meta_path.remove(installed)
    after = loads_each(finders.pickled(), finders.WHAT)
    assert not any(type(f).__name__ == "_Finder" for f in after.values())
    sys.meta_path.append(installed)


def _how_many(_=None):
    return sum(type(f).__name__ == "SelfInstalled" for f in sys.meta_path)


def test_a_module_that_installs_its_own_finder_when_imported_keeps_its_own_only():
    # as six: loading the parent's finder imports the module, which puts its own there
    with Executor(max_workers=1) as ex:
        ex.submit(_how_many).result()  # (warm)
        from . import self_installing_finder

        try:
            assert _how_many() == 1
            assert ex.submit(_how_many).result() == 1
        finally:
            own = self_installing_finder.SelfInstalled
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, own)]
