"""numpy's print options reach the workers, as the calling thread's (workers.printopts)."""

from __future__ import annotations

import warnings

import pytest

from picklepool import Executor, Parallel, delayed
from picklepool.workers import mirror, printopts

np = pytest.importorskip("numpy")
if printopts._variable() is None:
    pytest.skip("numpy keeps its print options per thread from 2.1 on", allow_module_level=True)


def _shown(x):
    return str(x), repr(x[1])


def test_a_task_prints_arrays_with_the_callers_print_options_as_in_the_loop():
    # a warm worker printed with numpy's defaults whatever the parent had set (joblib too)
    x = np.arange(3) / 3
    with np.printoptions(precision=2, suppress=True, legacy="1.25"):
        loop = _shown(x)
        assert loop == ("[0.   0.33 0.67]", "0.3333333333333333")
        assert Parallel(n_jobs=2)(delayed(_shown)(x) for _ in range(2)) == [loop, loop]
        with Executor(max_workers=2) as ex:
            assert ex.submit(_shown, x).result() == loop
        with np.printoptions(formatter={"float": lambda v: f"<{v:.1f}>"}):
            assert Parallel(n_jobs=2)(delayed(str)(x) for _ in range(2)) == ["[<0.0> <0.3> <0.7>]"] * 2
    default = _shown(x)
    assert default[0] == "[0.         0.33333333 0.66666667]"
    assert Parallel(n_jobs=2)(delayed(_shown)(x) for _ in range(2)) == [default, default]  # back to numpy's


def test_read_is_none_for_numpys_defaults_and_apply_puts_options_back():
    assert printopts.read(np) is None
    assert mirror.numeric_state()[2] is None
    with np.printoptions(precision=3):
        options = printopts.read(np)
        assert options is not None and dict(options)["precision"] == 3
    printopts.apply(np, options)
    try:
        assert np.get_printoptions()["precision"] == 3
    finally:
        printopts.apply(np, None)
    assert np.get_printoptions()["precision"] == 8 and printopts.read(np) is None


class _Unpicklable:
    """A formatter holding what cannot be pickled (a generator, as a file or a connection)."""

    def __init__(self):
        self.held = (i for i in range(1))

    def __call__(self, v):
        return f"<{v:.1f}>"


def test_a_formatter_that_cannot_be_pickled_is_left_out_with_a_warning_not_the_calls(monkeypatch):
    # np.set_printoptions(formatter={"float": obj}) with obj not picklable: every call failed
    # ("Could not pickle the task to send it to the workers"), whatever its tasks printed,
    # where they worked before print options were mirrored
    monkeypatch.setattr(printopts, "_sent", (None, None))
    x = np.arange(3) / 3
    with np.printoptions(precision=2):
        without = _shown(x)  # its other options
    with np.printoptions(precision=2, formatter={"float": _Unpicklable()}):
        assert str(x) == "[<0.0> <0.3> <0.7>]"  # the loop's
        with pytest.warns(
            RuntimeWarning, match=r"formatter=.* is not sent to the workers: it cannot be pickled"
        ):
            got = Parallel(n_jobs=2)(delayed(_shown)(x) for _ in range(2))
        assert got == [without] * 2 and without[0] == "[0.   0.33 0.67]"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per change of the options
            with Executor(max_workers=2) as ex:
                assert ex.submit(_shown, x).result() == got[0]
