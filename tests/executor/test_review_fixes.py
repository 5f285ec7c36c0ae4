"""Regressions found in review: state leaking between tasks, lost results, slow cancel."""

from __future__ import annotations

import signal
import threading

import pytest

from picklepool import Parallel, delayed


class Counter:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return self.n


class Acc:
    def __init__(self):
        self.items = []

    def add(self, x):
        self.items.append(x)
        return len(self.items)


def test_callable_objects_do_not_share_state_across_calls():
    for _ in range(3):
        out = Parallel(n_jobs=2, batch_size=1)(delayed(Counter())() for _ in range(4))
        assert out == [1, 1, 1, 1]


def test_bound_methods_of_fresh_objects_start_fresh():
    first = Parallel(n_jobs=2, batch_size=1)(delayed(Acc().add)(i) for i in range(5))
    second = Parallel(n_jobs=2, batch_size=1)(delayed(Acc().add)(i) for i in range(5))
    assert first == second == [1] * 5


def test_a_generator_read_after_its_threading_block_loses_nothing():
    with Parallel(n_jobs=2, backend="threading", return_as="generator", batch_size=1) as p:
        gen = p(delayed(abs)(-i) for i in range(8))
        assert next(gen) == 0
    try:
        rest = list(gen)
    except RuntimeError as exc:  # the pool is gone: said clearly, never silently short
        assert "Consume the generator inside the block" in str(exc)
    else:
        assert rest == list(range(1, 8))


def wait_or_fail(i, release):
    if i == 0:
        raise ValueError("first fails")
    release.wait(30)  # never set: the remaining tasks must be skipped, not waited for
    return i


def test_cancel_skips_the_rest_of_a_small_batch_in_a_worker(tmp_path):
    import os
    import time

    def marker(i, folder):
        if i == 0:
            raise ValueError("first fails")
        with open(os.path.join(folder, str(i)), "w"):
            pass
        time.sleep(0.2)  # real work that takes a while
        return i

    with pytest.raises(ValueError):
        Parallel(n_jobs=2, batch_size=10)(delayed(marker)(i, str(tmp_path)) for i in range(20))
    import picklepool

    picklepool.shutdown()
    assert len(os.listdir(tmp_path)) < 10


def test_sequential_timeout_leaves_the_callers_timer_alone():
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        assert Parallel(n_jobs=1, timeout=5)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert remaining > 20
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_sequential_timeout_is_enforced():
    from picklepool import TaskTimeoutError

    stuck = threading.Event()
    with pytest.raises(TaskTimeoutError, match="task 1"):
        Parallel(n_jobs=1, timeout=0.3)(delayed(stuck.wait)(0 if i != 1 else 30) for i in range(3))


class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def raise_needs_two(i):
    if i == 1:
        raise NeedsTwo(1, 2)
    return i


def test_an_exception_that_cannot_be_rebuilt_by_its_init_keeps_its_type():
    with pytest.raises(NeedsTwo, match="1/2") as info:
        Parallel(n_jobs=2, batch_size=1)(delayed(raise_needs_two)(i) for i in range(3))
    assert "task 1: raise_needs_two(1)" in "".join(info.value.__notes__)


@pytest.mark.parametrize("value", ["n_jobs", "n_jobs*2", "3*n_jobs", 5])
def test_pre_dispatch_accepts_joblibs_forms(value):
    assert Parallel(n_jobs=2, pre_dispatch=value)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


@pytest.mark.parametrize("value", ["-1M", "infM", "nanK", -5])
def test_bad_sizes_are_value_errors(value):
    with pytest.raises(ValueError, match="max_nbytes"):
        Parallel(max_nbytes=value)


# -- second review (this session's dispatch changes) ----------------------------------


def _make_counter():
    count = 0

    def bump():
        nonlocal count
        count += 1
        return count

    return bump


@pytest.mark.parametrize("backend", ["sequential", "threading"])
def test_in_process_closures_alike_in_content_stay_distinct(backend):
    counters = [_make_counter() for _ in range(3)]
    out = Parallel(n_jobs=2, backend=backend, batch_size=3)([delayed(c)() for c in counters])
    assert out == [1, 1, 1]
    assert [c.__closure__[0].cell_contents for c in counters] == [1, 1, 1]


class _Named:
    def __init__(self, name):
        self.name = name

    def __eq__(self, other):  # equal to everything: must not stand in for another
        return True

    __hash__ = object.__hash__

    def __call__(self, owner, x):
        return self.name


@pytest.mark.parametrize("backend", ["loky", "sequential"])
def test_methods_equal_by_value_are_not_merged(backend):
    import types

    owner = _Named("owner")
    first, second = types.MethodType(_Named("first"), owner), types.MethodType(_Named("second"), owner)
    out = Parallel(n_jobs=2, backend=backend, batch_size=2)([delayed(first)(1), delayed(second)(2)])
    assert out == ["first", "second"]


_ran: list[int] = []


def _note(x):
    _ran.append(x)
    return x


def test_a_bad_item_stops_its_batch_before_any_task_also_with_a_timeout():
    items = [delayed(_note)(0), delayed(_note)(1), (_note, [2], {})]
    for timeout in (None, 30):
        _ran.clear()
        with pytest.raises(TypeError, match="item 2 .* not a delayed call"):
            Parallel(n_jobs=1, batch_size=3, timeout=timeout)(items)
        assert _ran == []
