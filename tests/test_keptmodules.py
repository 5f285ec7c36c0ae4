"""A ``sys.modules`` that code restores keeps the modules picklepool loaded (``keptmodules``).

picklepool imports loky, cloudpickle, psutil and most of itself at the first call; a
``mock.patch.dict(sys.modules)`` block (a test fixture, a plugin) around that call dropped
them at its end, and the next call imported second copies next to those in use.
"""

from __future__ import annotations

import sys

import pytest

from picklepool import Parallel, delayed, keptmodules
from tests.conftest import prints_ok, run_python


def test_a_call_after_a_sys_modules_block_around_the_first_call_works():
    # the next call failed: "Could not pickle the task to send it to the workers" (a
    # RecursionError in cloudpickle: loky's classes, of the dropped copies, not found by
    # name), and loky's second resource tracker printed a KeyError and a leaked folder at exit
    proc = run_python(
        """
        import sys, types
        from unittest import mock
        from picklepool import Parallel, delayed

        def task(i):
            return i * 2

        with mock.patch.dict(sys.modules, {"some_stubbed_dep": types.ModuleType("some_stubbed_dep")}):
            print(Parallel(n_jobs=2)(delayed(task)(i) for i in range(4)))
        print(Parallel(n_jobs=2)(delayed(task)(i) for i in range(4)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[0, 2, 4, 6]"] * 2
    assert "leaked" not in proc.stderr and "KeyError" not in proc.stderr, proc.stderr


_BLOCKS = """
    import sys, types
    from unittest import mock
    import picklepool
    from picklepool import Executor, Parallel, delayed

    def task(i):
        return i * 2

    def parallel(**kw):
        return Parallel(n_jobs=2, **kw)(delayed(task)(i) for i in range(4))

    def executor():
        with Executor(2) as ex:
            return list(ex.map(task, range(4)))

    want = [0, 2, 4, 6]
    with mock.patch.dict(sys.modules):
        for _ in range(3):
            assert FIRST() == want
        inside = {name: sys.modules[name] for name in ("loky", "cloudpickle", "picklepool.executor.dispatch")}
    assert parallel() == want and executor() == want
    assert all(sys.modules[name] is module for name, module in inside.items())
    stub = types.ModuleType("some_stubbed_dep")
    with mock.patch.dict(sys.modules, {"some_stubbed_dep": stub}):  # picklepool is warm
        assert parallel() == want and executor() == want
        assert sys.modules["some_stubbed_dep"] is stub  # the block's own stand-in stays
    assert "some_stubbed_dep" not in sys.modules
    assert parallel(backend="threading") == want and executor() == want
    picklepool.shutdown()
    print("ok")
"""


@pytest.mark.parametrize("first", ["parallel", "executor"])
def test_blocks_around_many_calls_and_entered_when_warm(first):
    # the calls worked, but the modules the block dropped were imported again: loky's
    # second resource tracker printed a KeyError and a "leaked folder" at exit
    proc = run_python(_BLOCKS.replace("FIRST", first))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "leaked" not in proc.stderr and "KeyError" not in proc.stderr, proc.stderr


def test_a_workers_modules_stay_after_a_tasks_sys_modules_block():
    # a task's block around the worker's first nested call dropped what that call imported
    # (picklepool.executor's modules): the next batch's nested call imported second copies
    prints_ok(
        """
        import sys
        from unittest import mock
        from picklepool import Executor, Parallel, delayed

        def inner(i):
            return i + 1

        def first(_):
            with mock.patch.dict(sys.modules):
                out = Parallel(n_jobs=2)(delayed(inner)(j) for j in range(3))
                sys._picklepool_test_dispatch = sys.modules["picklepool.executor.dispatch"]
            return out

        def later(_):
            out = Parallel(n_jobs=2)(delayed(inner)(j) for j in range(3))
            return out, sys.modules["picklepool.executor.dispatch"] is sys._picklepool_test_dispatch

        with Executor(1) as ex:  # one worker: both batches run there
            assert ex.submit(first, 0).result() == [1, 2, 3]
            assert ex.submit(later, 0).result() == ([1, 2, 3], True)
        print("ok")
        """
    )


def test_dropped_modules_are_put_back_as_the_same_objects():
    Parallel(n_jobs=2)(delayed(abs)(i) for i in range(2))
    keptmodules.note()
    probe = keptmodules._probe_name
    gone = {name: sys.modules[name] for name in (probe, "loky.process_executor", "cloudpickle")}
    try:
        for name in gone:
            del sys.modules[name]
        keptmodules.check()
        assert {name: sys.modules.get(name) for name in gone} == gone
    finally:
        sys.modules.update(gone)
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(2)) == [0, 1]
