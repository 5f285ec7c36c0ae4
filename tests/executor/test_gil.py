"""The GIL switch interval is lowered only while a loky call dispatches (executor/gil.py)."""

from __future__ import annotations

import sys
import threading

import pytest

from picklepool import Parallel, delayed
from picklepool.executor import gil


def square(x):
    return x * x


def boom(x):
    raise ValueError(x)


@pytest.fixture(autouse=True)
def default_interval():
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


def all_equal(values, expected):
    return bool(values) and all(v == pytest.approx(expected) for v in values)


def recording(n, seen, func=square):
    """delayed calls, noting the interval each time the call pulls one (inside dispatch)."""
    for i in range(n):
        seen.append(sys.getswitchinterval())
        yield delayed(func)(i)


def test_lowered_while_dispatching_and_restored_after():
    seen = []
    assert Parallel(n_jobs=2, batch_size=1)(recording(50, seen)) == [i * i for i in range(50)]
    # lowered once a second batch is on its way: the first two pulls come before
    assert seen[:2] == [pytest.approx(0.005)] * 2
    assert all_equal(seen[2:], gil.DISPATCH_INTERVAL)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_a_call_of_one_batch_leaves_the_interval_alone():
    seen = []
    assert Parallel(n_jobs=2)(recording(1, seen)) == [0]
    assert seen == [pytest.approx(0.005)]


def test_restored_after_a_task_error():
    with pytest.raises(ValueError):
        Parallel(n_jobs=2)(recording(20, [], func=boom))
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_the_callers_code_between_results_runs_with_its_own_interval():
    seen_by_consumer = []
    out = Parallel(n_jobs=2, return_as="generator", batch_size=1)(recording(10, []))
    for value in out:
        seen_by_consumer.append((value, sys.getswitchinterval()))
    assert [v for v, _ in seen_by_consumer] == [i * i for i in range(10)]
    assert all_equal([s for _, s in seen_by_consumer], 0.005)


def test_abandoned_generator_leaves_the_interval_alone():
    out = Parallel(n_jobs=2, return_as="generator", batch_size=1)(recording(10, []))
    assert next(out) == 0
    assert sys.getswitchinterval() == pytest.approx(0.005)
    out.close()
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_a_lower_interval_of_the_user_is_kept():
    sys.setswitchinterval(0.0001)
    seen = []
    Parallel(n_jobs=2, batch_size=1)(recording(20, seen))
    assert all_equal(seen, 0.0001)
    assert sys.getswitchinterval() == pytest.approx(0.0001)


def test_a_change_made_by_the_user_during_the_call_is_not_overwritten():
    def changing():
        yield delayed(square)(1)
        sys.setswitchinterval(0.002)
        yield delayed(square)(2)

    Parallel(n_jobs=2)(changing())
    assert sys.getswitchinterval() == pytest.approx(0.002)


def test_in_process_backends_do_not_touch_it():
    for backend in ("threading", "sequential"):
        seen = []
        Parallel(n_jobs=2, backend=backend)(recording(20, seen))
        assert all_equal(seen, 0.005)


def test_concurrent_calls_restore_once_the_last_one_ends():
    # Call A pauses inside its dispatch until call B (another thread) has run whole.
    b_done = threading.Event()
    seen_in_a = []

    def items_a():
        yield delayed(square)(1)
        yield delayed(square)(2)  # two batches on their way: A has lowered it
        seen_in_a.append(sys.getswitchinterval())
        thread.start()
        assert b_done.wait(30)
        seen_in_a.append(sys.getswitchinterval())  # B ended: A still dispatches, still lowered
        yield delayed(square)(3)

    def run_b():
        Parallel(n_jobs=2, backend="loky")(delayed(square)(i) for i in range(5))
        b_done.set()

    thread = threading.Thread(target=run_b)
    assert Parallel(n_jobs=2, batch_size=1)(items_a()) == [1, 4, 9]
    thread.join(30)
    assert len(seen_in_a) == 2 and all_equal(seen_in_a, gil.DISPATCH_INTERVAL)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_scopes_nest_and_repeat_safely():
    a, b = gil.Scope(), gil.Scope()
    a.lower()
    a.lower()  # repeated: still one user
    b.lower()
    a.restore()
    assert sys.getswitchinterval() == pytest.approx(gil.DISPATCH_INTERVAL)
    a.restore()  # repeated: does not take b's place
    assert sys.getswitchinterval() == pytest.approx(gil.DISPATCH_INTERVAL)
    b.restore()
    assert sys.getswitchinterval() == pytest.approx(0.005)
    assert not gil._active


def test_ctrl_c_inside_the_generator_restores_it():
    def interrupted():
        yield delayed(square)(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Parallel(n_jobs=2)(interrupted())
    assert sys.getswitchinterval() == pytest.approx(0.005)
    assert not gil._active
