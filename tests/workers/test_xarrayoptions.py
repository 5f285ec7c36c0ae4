"""xarray's options the parent set reach the workers (workers.xarrayoptions)."""

from __future__ import annotations

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.workers import xarrayoptions

from ..conftest import run_python

xr = pytest.importorskip("xarray")


def _options(_=None):
    options = xr.get_options()
    return options["keep_attrs"], options["display_width"], options["arithmetic_join"]


def _own_width():
    xr.set_options(display_width=33)


def test_a_task_computes_with_the_parents_options_as_in_the_loop():
    # xr.set_options(keep_attrs=True) at a script's top: a warm worker ran with xarray's
    # defaults (under joblib too), so results lost their attributes or aligned otherwise
    default = _options()
    with xr.set_options(keep_attrs=True, display_width=120, arithmetic_join="outer"):
        loop = _options()
        assert loop == (True, 120, "outer")
        assert Parallel(n_jobs=2)(delayed(_options)() for _ in range(2)) == [loop, loop]
        with Executor(max_workers=1, initializer=_own_width) as ex:
            assert ex.submit(_options).result() == loop  # the parent's, over the initializer's
        assert xarrayoptions.pickled() is xarrayoptions.pickled()  # (read again only on a change)
    # the same warm workers: the defaults again
    assert Parallel(n_jobs=2)(delayed(_options)() for _ in range(2)) == [default, default]


def test_a_fork_started_worker_takes_back_an_option_the_parent_took_back_after_the_fork():
    # a fork-started Executor's worker took the options it inherited (the parent's at the
    # fork) for its own: an option the parent set back afterwards stayed in force there
    pytest.importorskip("xarray")
    proc = run_python(
        """
        import multiprocessing
        import xarray as xr
        from picklepool import Executor

        def probe(i):
            import xarray as xr
            return xr.get_options()["display_width"]

        xr.set_options(display_width=33)
        with Executor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as ex:
            print(ex.submit(probe, 0).result())
            xr.set_options(display_width=80)
            print(ex.submit(probe, 1).result(), probe(1))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["33", "80 80"]
