"""scikit-learn's settings reach the workers, as the calling thread's (workers.sklearnconfig)."""

from __future__ import annotations

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.workers import mirror, sklearnconfig

from ..conftest import run_python

sklearn = pytest.importorskip("sklearn")
np = pytest.importorskip("numpy")


def _settings(_=None):
    import sklearn

    config = sklearn.get_config()
    return config["assume_finite"], config["working_memory"]


def _checked(_=None):
    # assume_finite=True skips the check for NaN: the loop's check_array passes it
    from sklearn.utils import check_array

    try:
        return str(check_array([[np.nan]]))
    except ValueError as exc:
        return type(exc).__name__


def test_a_task_runs_under_the_callers_scikit_learn_settings_as_in_the_loop():
    # a warm worker ran with scikit-learn's defaults whatever the parent had set (as under
    # joblib with a script's own Parallel): check_array raised on NaN where the loop's passed
    with sklearn.config_context(assume_finite=True, working_memory=64):
        loop = [_settings(), _checked()]
        assert loop == [(True, 64), "[[nan]]"]
        assert Parallel(n_jobs=2)(delayed(f)() for f in (_settings, _checked)) == loop
        with Executor(max_workers=2) as ex:
            assert [ex.submit(_settings).result(), ex.submit(_checked).result()] == loop
            with sklearn.config_context(working_memory=7):  # a block inside: its own
                assert ex.submit(_settings).result() == (True, 7)
            assert list(ex.map(_settings, range(2))) == [(True, 64)] * 2
    default = [_settings(), _checked()]
    assert default == [(False, 1024), "ValueError"]
    # the same warm workers: scikit-learn's defaults again
    assert Parallel(n_jobs=2)(delayed(f)() for f in (_settings, _checked)) == default


def test_a_threading_backends_tasks_run_under_the_callers_settings_too():
    # scikit-learn keeps them per thread, not in the context the pool's threads run in
    with sklearn.config_context(assume_finite=True, working_memory=64):
        got = Parallel(n_jobs=2, backend="threading")(delayed(f)() for f in (_settings, _checked))
        assert got == [(True, 64), "[[nan]]"]
    got = Parallel(n_jobs=2, backend="threading")(delayed(f)() for f in (_settings, _checked))
    assert got == [(False, 1024), "ValueError"]  # the same threads: the defaults again


def test_read_is_none_for_the_defaults_and_apply_puts_them_back():
    assert sklearnconfig.read() is None
    assert mirror.numeric_state()[3] is None
    with sklearn.config_context(working_memory=5):
        settings = sklearnconfig.read()
        assert settings is not None and dict(settings)["working_memory"] == 5
        assert mirror.numeric_state()[3] == settings
    sklearnconfig.apply(settings)
    try:
        assert sklearn.get_config()["working_memory"] == 5
    finally:
        sklearnconfig.apply(None)
    assert sklearn.get_config()["working_memory"] == 1024 and sklearnconfig.read() is None


def test_a_worker_imports_scikit_learn_for_settings_only_when_they_are_not_the_defaults():
    # a parent that imported scikit-learn and kept its defaults costs a task that does not
    # use it no import; one that set it makes the worker's scikit-learn match before the task
    proc = run_python(
        """
        import sys
        import sklearn
        from picklepool import Parallel, delayed

        def task(_):
            return "sklearn" in sys.modules

        def settings(_):
            import sklearn
            return sklearn.get_config()["working_memory"]

        print(Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)))
        sklearn.set_config(working_memory=5)
        print(Parallel(n_jobs=2)(delayed(settings)(i) for i in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[False, False]", "[5, 5]"]


def test_a_worker_without_scikit_learn_runs_the_batch_without_its_settings(monkeypatch):
    # (a cluster's worker without it: applying the parent's settings must not fail the batch)
    monkeypatch.setitem(__import__("sys").modules, "sklearn._config", None)  # import fails
    sklearnconfig.apply((("working_memory", 5),))  # no exception
