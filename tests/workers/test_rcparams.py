"""matplotlib's settings the parent changed reach the workers (workers.rcparams)."""

from __future__ import annotations

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.workers import rcparams

from ..conftest import run_python

matplotlib = pytest.importorskip("matplotlib")


def _drawn(_=None):
    params = matplotlib.rcParams
    size = list(params["figure.figsize"])
    return params["figure.dpi"], params["lines.linewidth"], params["axes.facecolor"], size


def _own_dpi():
    matplotlib.rcParams["figure.dpi"] = 7


@pytest.fixture(autouse=True)
def _defaults():
    with matplotlib.rc_context():  # (whatever other tests left: matplotlib's defaults, then back)
        matplotlib.rcdefaults()
        yield


def test_a_task_draws_with_the_parents_settings_as_in_the_loop():
    # plt.style.use(...) and rcParams at a script's top: a warm worker drew its figures with
    # matplotlib's defaults (under joblib too)
    import matplotlib.style

    style = {"figure.dpi": 42.0, "lines.linewidth": 3.5, "figure.figsize": [3.0, 2.0]}
    with matplotlib.style.context("dark_background"), matplotlib.rc_context(style):
        loop = _drawn()
        assert loop == (42.0, 3.5, "black", [3.0, 2.0])
        assert Parallel(n_jobs=2)(delayed(_drawn)() for _ in range(2)) == [loop, loop]
        with Executor(max_workers=1, initializer=_own_dpi) as ex:
            assert ex.submit(_drawn).result() == loop  # the parent's, over the initializer's
    default = _drawn()
    assert default == (100.0, 1.5, "white", [6.4, 4.8])
    # the same warm workers: the defaults again
    assert Parallel(n_jobs=2)(delayed(_drawn)() for _ in range(2)) == [default, default]


def test_the_backend_is_the_workers_own_and_the_read_is_kept_while_nothing_changes():
    with matplotlib.rc_context({"interactive": True, "lines.linewidth": 2.5}):
        first = rcparams.pickled()
        assert first is not None and rcparams.pickled() is first
        sent = [k for k, _ in _entries(first)]
        assert "lines.linewidth" in sent and not set(sent) & rcparams.NOT_SENT
    now = rcparams.pickled()  # (the defaults: nothing of these sent)
    assert now is None or "lines.linewidth" not in [k for k, _ in _entries(now)]


def _entries(data):
    import pickle

    return [pickle.loads(one) for _, one in pickle.loads(data)]


def test_a_fork_started_worker_takes_back_a_setting_the_parent_took_back_after_the_fork():
    # a fork-started Executor's worker took the rcParams it inherited (the parent's at the
    # fork) for its own: a setting the parent reset afterwards stayed in force there, where
    # the loop drew with matplotlib's default again
    proc = run_python(
        """
        import multiprocessing
        import matplotlib
        from picklepool import Executor

        def probe(i):
            import matplotlib
            return matplotlib.rcParams["lines.linewidth"]

        matplotlib.rcParams["lines.linewidth"] = 7.0
        with Executor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as ex:
            print(ex.submit(probe, 0).result())
            matplotlib.rcdefaults()
            print(ex.submit(probe, 1).result(), probe(1))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["7.0", "1.5 1.5"]
