"""The tasks' warnings reach a parent that records or redirects its own (workers.warnback)."""

from __future__ import annotations

import os
import warnings

import pytest

from picklepool import Executor, Parallel, delayed

from ..conftest import run_python


class TaskWarning(UserWarning):
    pass


def warn_twice(i):
    warnings.warn(f"task {i} warns", UserWarning, stacklevel=1)
    warnings.warn(f"task {i} warns its own", TaskWarning, stacklevel=1)
    return i


def warn_then_fail(i):
    warnings.warn(f"task {i} warned first", UserWarning, stacklevel=1)
    raise ValueError(f"task {i} failed")


def test_a_recording_block_around_the_call_records_the_tasks_warnings_as_in_a_loop():
    # The workers printed them: catch_warnings(record=True) (pytest.warns, recwarn) got none
    with warnings.catch_warnings(record=True) as loop:
        warnings.simplefilter("always")
        [warn_twice(i) for i in range(4)]
    with warnings.catch_warnings(record=True) as pooled:
        warnings.simplefilter("always")
        assert Parallel(n_jobs=2, batch_size=1)(delayed(warn_twice)(i) for i in range(4)) == [0, 1, 2, 3]

    def seen(log):
        return sorted((str(w.message), w.category, w.filename, w.lineno) for w in log)

    assert seen(pooled) == seen(loop)
    assert len(pooled) == 8


def test_the_parents_filters_still_decide_which_warnings_come_back():
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=TaskWarning)
        Parallel(n_jobs=2)(delayed(warn_twice)(i) for i in range(2))
    assert sorted(str(w.message) for w in log) == ["task 0 warns", "task 1 warns"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # what pytest.warns passes on after it
def test_pytest_warns_sees_a_workers_warning_and_a_failing_tasks_warning_comes_back_too():
    with pytest.warns(TaskWarning, match="task 3 warns its own"):
        Parallel(n_jobs=2)(delayed(warn_twice)(i) for i in range(4))
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="task 5 failed"):
            Parallel(n_jobs=2)(delayed(warn_then_fail)(i) for i in range(5, 6))
    assert [str(w.message) for w in log] == ["task 5 warned first"]


def test_an_executors_tasks_warnings_are_recorded_too():
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        with Executor(max_workers=2) as ex:
            assert list(ex.map(warn_twice, range(3))) == [0, 1, 2]
            assert ex.submit(warn_twice, 7).result() == 7
    assert sorted(str(w.message) for w in log if w.category is UserWarning) == [
        "task 0 warns",
        "task 1 warns",
        "task 2 warns",
        "task 7 warns",
    ]


def test_a_main_scripts_warning_class_and_logging_capture_warnings():
    # A class of __main__ comes back as the script's own (except MyWarning, category is);
    # logging.captureWarnings(True) logs the tasks' warnings, where the workers printed them
    proc = run_python(
        """
        import logging, sys, warnings
        from picklepool import Parallel, delayed

        class MyWarning(UserWarning):
            pass

        def task(i):
            warnings.warn(f"task {i} warns", MyWarning)
            return i

        if __name__ == "__main__":
            with warnings.catch_warnings(record=True) as log:
                warnings.simplefilter("always")
                Parallel(n_jobs=2)(delayed(task)(i) for i in range(2))
            print(sorted((str(w.message), w.category is MyWarning) for w in log))
            logging.basicConfig(stream=sys.stdout, format="LOGGED %(name)s %(message)s")
            logging.captureWarnings(True)
            Parallel(n_jobs=2)(delayed(task)(i) for i in range(1, 2))
            logging.captureWarnings(False)
            Parallel(n_jobs=2)(delayed(task)(i) for i in range(2, 3))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "[('task 0 warns', True), ('task 1 warns', True)]"
    assert lines[1].startswith("LOGGED py.warnings ") and "MyWarning: task 1 warns" in lines[1]
    assert "task 1 warns" not in proc.stderr
    assert "MyWarning: task 2 warns" in proc.stderr  # not redirected: printed by the worker, as before
    assert "task 2 warns" not in proc.stdout


def warn_the_same(i):
    warnings.warn("the same warning", UserWarning, stacklevel=1)
    return i


def test_a_warning_shown_once_per_location_is_shown_once_as_in_a_loop():
    # Under the "default" action (Python's own for UserWarning) a loop shows a warning
    # of one line once; recorded in the workers, it came back once per batch
    counts = []
    for run in (
        lambda: [warn_the_same(i) for i in range(12)],
        lambda: Parallel(n_jobs=2, batch_size=1)(delayed(warn_the_same)(i) for i in range(12)),
    ):
        with warnings.catch_warnings(record=True) as log:
            warnings.simplefilter("default")
            run()
            run()  # a second call: the registry of warnings shown holds it already
        counts.append(len(log))
    assert counts == [1, 1]


def test_a_batchs_warnings_make_one_round_trip_and_one_that_cannot_goes_as_its_text():
    # Each warning was pickled and unpickled on its own to check it could make the trip
    # (100,000 warnings: 2.8 s in the worker); all go in one now, one by one only when one
    # of them cannot
    import pickle
    import threading

    from picklepool.workers import warnback

    class Counting:
        def __init__(self):
            self.dumps_calls = 0

        def dumps(self, obj):
            self.dumps_calls += 1
            return pickle.dumps(obj)

        def loads(self, data):
            return pickle.loads(data)

    def record(messages):
        with warnback.recorded(True) as log, warnings.catch_warnings():
            warnings.simplefilter("always")
            for m in messages:
                warnings.warn(m, stacklevel=1)
        return log

    pickler = Counting()
    log = record([f"w{k}" for k in range(1000)])
    items = warnback.loads(pickler, warnback.dumps(pickler, log))
    assert pickler.dumps_calls == 2  # (the warnings, then them with their texts: not one each)
    assert [str(m) for m, *_ in items] == [f"w{k}" for k in range(1000)]
    log = record(["plain", TaskWarning(threading.Lock())])  # (a lock: not by pickle)
    items = warnback.loads(pickler, warnback.dumps(Counting(), log))
    assert [(str(m), c) for m, c, *_ in items][0] == ("plain", UserWarning)
    assert items[1][1] is UserWarning and str(items[1][0]).startswith("TaskWarning: <unlocked _thread.lock")


def test_each_recording_block_records_a_warning_shown_once_per_location_again_as_in_a_loop():
    # A loop's catch_warnings block (pytest.warns, each test's recwarn) starts with empty
    # registries of warnings shown; a worker kept its own from the earlier block, so every
    # later block recorded nothing of a "default" warning (a second test's pytest.warns
    # failed with DID NOT WARN)
    for action in ("default", "module", "once"):
        counts = []
        for _ in range(4):
            with warnings.catch_warnings(record=True) as log:
                warnings.simplefilter(action)
                Parallel(n_jobs=2, batch_size=1)(delayed(warn_the_same)(i) for i in range(8))
            counts.append(len(log))
        assert counts == [1, 1, 1, 1], action
    for _ in range(3):
        with pytest.warns(UserWarning, match="the same warning"):
            Parallel(n_jobs=2, batch_size=1)(delayed(warn_the_same)(i) for i in range(8))


def test_a_module_whose_attributes_raise_does_not_fail_the_call():
    # The parent looks for the module a warning's file was loaded as; a lazy module in
    # sys.modules whose __getattr__ raises ImportError failed the call with that error
    # (getattr(m, "__file__", None) catches AttributeError only), where the loop has its
    # warning
    proc = run_python(
        """
        import sys, types, warnings
        from picklepool import Parallel, delayed

        class Lazy(types.ModuleType):
            def __getattr__(self, name):
                raise ImportError(f"lazy {name} failed")

        class NoDict:
            __slots__ = ()
            __file__ = "/nonexistent/nodict.py"

        def warns(i):
            import email.feedparser  # (a file no module of the parent was loaded from)
            warnings.warn_explicit("from a worker's own module", UserWarning, "/nonexistent/nodict.py", 1)
            warnings.warn_explicit("and another", UserWarning, email.feedparser.__file__ + "x", 1)
            return i

        if __name__ == "__main__":
            sys.modules["lazy_thing"] = Lazy("lazy_thing")
            sys.modules["no_dict"] = NoDict()
            with warnings.catch_warnings(record=True) as log:
                warnings.simplefilter("always")
                print(Parallel(n_jobs=2)(delayed(warns)(i) for i in range(2)), len(log))
        """
    )
    assert proc.stdout.splitlines()[0] == "[0, 1] 4", proc.stderr


class _Raises:
    """An object whose every attribute read raises (a lazy proxy left unloaded)."""

    def __getattr__(self, name):
        raise ImportError(f"lazy {name} failed")


def test_every_look_the_parent_takes_through_sys_modules_passes_over_objects_that_raise(monkeypatch):
    # The kind of the case above: the parent reads sys.modules (reloaded modules, generic
    # functions, colormaps' homes, context variables' homes, warnings' modules) and a module's
    # globals; an object there whose attributes raise must not fail the call, as it does not
    # fail the loop
    import functools
    import sys
    import types

    from picklepool.executor.dispatch import parent_state
    from picklepool.pickler import contextvar
    from picklepool.workers import reloads, warnback
    from picklepool.workers.registries import colormaps, genericfunctions

    class Lazy(types.ModuleType):
        def __getattr__(self, name):
            raise ImportError(f"lazy {name} failed")

    holder = types.ModuleType("pp_holds_a_proxy")
    holder.__file__ = "/nonexistent/pp_holds_a_proxy.py"
    holder.functools = functools
    holder.proxy = _Raises()
    monkeypatch.setitem(sys.modules, "pp_lazy_thing", Lazy("pp_lazy_thing"))
    monkeypatch.setitem(sys.modules, "pp_raises", _Raises())
    monkeypatch.setitem(sys.modules, "pp_holds_a_proxy", holder)
    assert not reloads.users(sys.modules["pp_lazy_thing"])
    assert not reloads.users(sys.modules["pp_raises"])
    assert reloads.file_of(sys.modules["pp_raises"]) is None
    assert parent_state(2).cwd  # (the call's whole reading of this process)
    assert genericfunctions.generic_signal(functools) is not None
    assert colormaps._library_homes(["viridis_pp"], type(holder)) == {}
    assert all(name != "pp_raises" for name, _ in contextvar._modules())
    assert warnback._origin("/nonexistent/pp_holds_a_proxy.py")[0] == "pp_holds_a_proxy"


class _BuiltOnlyInWorkers(UserWarning):
    """A warning that this process (the parent) cannot rebuild: as one of a module only the
    worker imports."""

    def __init__(self, parent, text):
        super().__init__(text)
        self.parent = parent

    def __reduce__(self):
        return _rebuild_in_workers_only, (self.parent, self.args[0])


def _rebuild_in_workers_only(parent, text):
    if os.getpid() == parent:
        raise ModuleNotFoundError("No module named 'plugin_only_in_the_worker'")
    return _BuiltOnlyInWorkers(parent, text)


def _warn_one_the_parent_cannot_rebuild(parent):
    warnings.warn("plain", stacklevel=1)
    warnings.warn(_BuiltOnlyInWorkers(parent, "odd"), stacklevel=1)
    warnings.warn("runtime", RuntimeWarning, stacklevel=1)
    return 1


def test_a_batchs_warnings_that_the_parent_cannot_rebuild_come_as_their_texts():
    # one warning of a batch that the parent cannot unpickle (its class's module only the
    # worker imports) lost every warning of the batch, without a word
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert Parallel(n_jobs=2)([delayed(_warn_one_the_parent_cannot_rebuild)(os.getpid())]) == [1]
    got = [(r.category, str(r.message)) for r in rec]
    # (its class, loaded here, takes other arguments than a text: a UserWarning naming it)
    assert got == [
        (UserWarning, "plain"),
        (UserWarning, "_BuiltOnlyInWorkers: odd"),
        (RuntimeWarning, "runtime"),
    ]
