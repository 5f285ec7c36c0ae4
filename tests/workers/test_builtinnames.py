"""Names the parent's program added to builtins are there in a worker (workers.builtinnames)."""

from __future__ import annotations

import builtins
import warnings

import pytest

from picklepool.workers import builtinnames, overlay

from ..conftest import run_python


def test_a_task_finds_what_the_program_added_to_builtins_as_in_the_loop():
    # gettext.install("app") puts _ in builtins, so that every module's _("Hello")
    # translates; in a warm worker (and under joblib) a task's _() raised NameError
    proc = run_python(
        """
        import builtins, gettext
        from picklepool import Parallel, delayed

        def greet(x):
            return _("hello ") + str(x)

        def helper(x):
            return MY_HELPER(x)

        def has(name):
            import builtins
            return hasattr(builtins, name)

        def rebind(_x):
            import builtins
            builtins._ = str.upper  # the task's own binding: its batch's only
            return _("a")

        gettext.install("app")
        builtins.MY_HELPER = lambda x: x * 10
        builtins.UNSENDABLE = (i for i in ()).send  # cannot be pickled: left out, not the others
        builtins.LEVEL = 3  # not callable: left out
        with Parallel(n_jobs=2) as p:
            print(p(delayed(greet)(i) for i in range(2)), p(delayed(helper)(i) for i in range(2)))
            print(p(delayed(has)(n) for n in ("UNSENDABLE", "LEVEL", "print")))
            print(p(delayed(rebind)(i) for i in range(2)), p(delayed(greet)(i) for i in range(2)))
            del builtins.MY_HELPER
            print(p(delayed(has)("MY_HELPER") for i in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "['hello 0', 'hello 1'] [0, 10]",
        "[False, False, True]",
        "['A', 'A'] ['hello 0', 'hello 1']",
        "[False, False]",
    ]


def test_added_leaves_out_the_interpreters_own_names_dunders_and_values_that_are_not_callable():
    assert builtinnames.added(dict(vars(builtins))) == {}  # this interpreter's (pytest adds none)

    def helper():
        return None

    namespace = {"print": print, "exit": exit, "ValueError": ValueError, "__import__": helper}
    namespace.update({"_": helper, "LEVEL": 3, "Helper": type("Helper", (), {})})
    assert set(builtinnames.added(namespace)) == {"_", "Helper"}


def _helper(x):
    return x


def test_a_name_too_large_to_travel_with_every_batch_is_left_out_with_a_warning(monkeypatch):
    monkeypatch.setattr(builtins, "PP_TEST_HELPER", _helper, raising=False)
    monkeypatch.setattr(builtinnames, "_read", (-1, {}, None))
    data = builtinnames.pickled()
    assert data is not None and overlay.loads_each(data, "") == {"PP_TEST_HELPER": _helper}
    assert builtinnames.pickled() is data  # unchanged builtins: kept
    monkeypatch.setattr(builtinnames, "LIMIT", 10)
    monkeypatch.setattr(builtinnames, "_read", (-1, {}, None))
    with pytest.warns(RuntimeWarning, match=r"builtins.PP_TEST_HELPER is not sent to the workers.*NameError"):
        assert builtinnames.pickled() is None


def test_apply_sets_the_parents_names_and_gives_back_the_workers_own(monkeypatch):
    monkeypatch.setattr(builtinnames, "_overlay", overlay.Overlay(builtinnames.WHAT))
    monkeypatch.setattr(builtins, "PP_TEST_OWN", "the worker's", raising=False)
    data = overlay.dumps_each([("PP_TEST_OWN", _helper), ("PP_TEST_NEW", len)], builtinnames.WHAT)
    try:
        builtinnames.apply(data)
        assert builtins.PP_TEST_OWN is _helper and builtins.PP_TEST_NEW is len
        builtins.PP_TEST_NEW = None  # a task's own binding: its batch's only
        builtinnames.apply(data)
        assert builtins.PP_TEST_NEW is len
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            builtinnames.apply(None)  # the parent has none any more
        assert builtins.PP_TEST_OWN == "the worker's" and not hasattr(builtins, "PP_TEST_NEW")
    finally:
        vars(builtins).pop("PP_TEST_NEW", None)


class _Unpicklable:
    def __call__(self, x):
        return x * 2

    def __reduce__(self):
        raise TypeError("no pickling this helper")


def _use_the_helper(i):
    return PP_TEST_UNPICKLABLE(i)  # type: ignore[name-defined]  # noqa: F821 - set in builtins


def test_a_tasks_name_error_for_a_name_not_sent_says_why_and_what_to_do(monkeypatch):
    # a callable in builtins that cannot be pickled is left out (the others are sent): a task
    # using it raised a bare "name 'PP_TEST_UNPICKLABLE' is not defined", where the loop ran
    from picklepool import Executor, Parallel, delayed

    monkeypatch.setattr(builtins, "PP_TEST_UNPICKLABLE", _Unpicklable(), raising=False)
    assert [_use_the_helper(i) for i in range(2)] == [0, 2]
    with pytest.raises(NameError) as info:
        Parallel(n_jobs=2)(delayed(_use_the_helper)(i) for i in range(2))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "builtins.PP_TEST_UNPICKLABLE is set in this process, but it is not sent to the workers" in notes
    assert "cannot be pickled (TypeError: no pickling this helper)" in notes
    assert "initializer" in notes
    with Executor(max_workers=2) as ex, pytest.raises(NameError) as info:
        ex.submit(_use_the_helper, 1).result()
    assert "builtins.PP_TEST_UNPICKLABLE" in "\n".join(getattr(info.value, "__notes__", []))
    monkeypatch.delattr(builtins, "PP_TEST_UNPICKLABLE")
    builtinnames.pickled()
    assert builtinnames.left_out == {}


def _use_the_level(i):
    return PP_TEST_LEVEL + i  # type: ignore[name-defined]  # noqa: F821 - set in builtins


def test_a_tasks_name_error_for_a_value_in_builtins_says_only_callables_are_sent(monkeypatch):
    # builtins.LEVEL = 3 in a script: a value (not callable) is not sent, by design (the
    # interactive shell's _ is one), and a task using it raised a bare "name 'LEVEL' is not
    # defined", naming neither why nor what to do, where the loop ran
    from picklepool import Executor, Parallel, delayed

    monkeypatch.setattr(builtins, "PP_TEST_LEVEL", 3, raising=False)
    assert [_use_the_level(i) for i in range(2)] == [3, 4]
    with pytest.raises(NameError) as info:
        Parallel(n_jobs=2)(delayed(_use_the_level)(i) for i in range(2))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "_use_the_level" in notes
    assert "builtins.PP_TEST_LEVEL is set in this process, but it is not sent to the workers" in notes
    assert "only callables" in notes
    assert "initializer" in notes
    with Executor(max_workers=2) as ex, pytest.raises(NameError) as info:
        ex.submit(_use_the_level, 1).result()
    assert "builtins.PP_TEST_LEVEL is set in this process" in "\n".join(getattr(info.value, "__notes__", []))


def test_a_fork_started_worker_takes_back_what_the_parent_took_back_after_the_fork():
    # a fork-started Executor's worker took the builtins and pandas options it inherited (the
    # parent's at the fork) for its own: a name the parent deleted from builtins, or an option
    # it reset, stayed there, where the loop had them gone
    proc = run_python(
        """
        import builtins, multiprocessing
        import pandas as pd
        from picklepool import Executor

        def probe(i):
            import builtins
            import pandas as pd
            return hasattr(builtins, "MY_HELPER"), pd.get_option("display.precision")

        builtins.MY_HELPER = lambda x: x
        pd.set_option("display.precision", 3)
        with Executor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as ex:
            print(ex.submit(probe, 0).result())
            del builtins.MY_HELPER
            pd.reset_option("display.precision")
            print(ex.submit(probe, 1).result(), probe(1))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["(True, 3)", "(False, 6) (False, 6)"]
