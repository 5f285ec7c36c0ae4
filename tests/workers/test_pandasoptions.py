"""pandas' options the parent set reach the workers (workers.pandasoptions)."""

from __future__ import annotations

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.workers import pandasoptions

pd = pytest.importorskip("pandas")


def _frame():
    return pd.DataFrame([[i / 7 for i in range(30)], [i / 3 for i in range(30)]])


def _shown(_=None):
    return repr(_frame()), pd.get_option("display.precision")


def _tenths(v):
    return f"<{v:.1f}>"


class _Unpicklable:
    """A float_format holding what cannot be pickled (a generator, as a file or a connection)."""

    def __init__(self):
        self.held = (i for i in range(1))

    def __call__(self, v):
        return f"[{v:.1f}]"


def test_a_task_prints_frames_with_the_parents_options_as_in_the_loop():
    # pd.set_option("display.max_columns", None) at a script's top: a warm worker printed the
    # frame truncated to 20 columns with 6 digits (under joblib too)
    with pd.option_context(
        "display.max_columns", None, "display.precision", 2, "display.float_format", _tenths
    ):
        loop = _shown()
        assert "..." not in loop[0] and "<4.1>" in loop[0] and loop[1] == 2
        assert Parallel(n_jobs=2)(delayed(_shown)() for _ in range(2)) == [loop, loop]
        with Executor(max_workers=2) as ex:
            assert ex.submit(_shown).result() == loop
    default = _shown()
    assert "..." in default[0] and default[1] == 6
    # the same warm workers: pandas' defaults again
    assert Parallel(n_jobs=2)(delayed(_shown)() for _ in range(2)) == [default, default]


def _own_precision():
    pd.set_option("display.precision", 3)


def test_an_initializers_own_option_comes_back_when_the_parent_no_longer_sets_it():
    with Executor(max_workers=1, initializer=_own_precision) as ex:
        assert ex.submit(_shown).result()[1] == 3
        with pd.option_context("display.precision", 2):
            assert ex.submit(_shown).result()[1] == 2
        assert ex.submit(_shown).result()[1] == 3


def test_an_option_that_cannot_be_pickled_is_left_out_not_the_others():
    with pd.option_context("display.precision", 2, "display.float_format", _Unpicklable()):
        got = Parallel(n_jobs=2)(delayed(_shown)() for _ in range(2))
        with pd.option_context("display.float_format", None):
            without = _shown()  # its other options
    assert got == [without] * 2 and without[1] == 2


def test_pickled_is_none_for_the_defaults_and_follows_every_change():
    assert pandasoptions.pickled() is None
    with pd.option_context("display.precision", 2):
        first = pandasoptions.pickled()
        assert first is not None and pandasoptions.pickled() is first  # (kept while unchanged)
        pd.set_option("display.max_rows", 5)  # in place: read again
        second = pandasoptions.pickled()
        assert second != first
        pd.reset_option("display.max_rows")
    assert pandasoptions.pickled() is None


def test_a_worker_without_pandas_runs_the_batch_without_its_options(monkeypatch):
    # (a worker without it: applying the parent's options must not fail the batch)
    import sys

    with pd.option_context("display.precision", 2):
        data = pandasoptions.pickled()
    monkeypatch.setitem(sys.modules, "pandas._config.config", None)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import fails
    pandasoptions.apply(data)  # no exception


def test_an_initializers_option_gives_way_to_the_parents_from_the_first_batch_on():
    # the batch the initializer ran in printed with its option, the next ones with the parent's
    with Executor(max_workers=1, initializer=_own_precision) as ex:
        with pd.option_context("display.precision", 2):
            assert [ex.submit(_shown).result()[1] for _ in range(3)] == [2, 2, 2]
        assert ex.submit(_shown).result()[1] == 3  # the initializer's, the worker's own, back
