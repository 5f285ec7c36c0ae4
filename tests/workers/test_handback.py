"""A worker gives back the calls a long one keeps waiting in its batch (workers.handback)."""

from __future__ import annotations

import threading

from picklepool.workers import handback
from picklepool.workers.tasks import execute_isolated


class _View:
    def __init__(self):
        self.status = [0, -1, 0, 0, -1]  # as control.WorkerView's


def test_the_calls_behind_a_long_one_are_given_back_and_never_run_here(monkeypatch):
    monkeypatch.setattr(handback, "HAND_BACK_AFTER", 0.01)
    view, ran = _View(), []
    given_back = threading.Event()

    def long_one(i):
        ran.append(i)
        while view.status[4] < 0:  # until the worker gave the others back
            handback.check()  # as the worker's watching thread does every half second
            given_back.wait(0.01)
        return "long"

    def short(i):
        ran.append(i)
        return i

    funcs, fidx = [long_one, short], [0, 0, 1, 1]  # tasks 10..13: two long, two short
    outcome = execute_isolated(funcs, fidx, [(10,), (11,), (12,), (13,)], None, 10, view, splittable=True)
    assert outcome.values == ["long"]  # task 10 ran; 11, 12 and 13 came back
    assert ran == [10]
    assert view.status[4] == 11  # the parent sends them again from task 11
    assert view.status[1] == -1


def test_a_batch_not_splittable_runs_every_call():
    view = _View()
    outcome = execute_isolated([abs], 0, [(-1,), (-2,)], None, 0, view, splittable=False)
    assert outcome.values == [1, 2] and view.status[4] == -1


def test_a_column_of_single_arguments_gives_back_the_calls_behind_a_long_one(monkeypatch):
    # one function's one-argument calls travel as a column of their arguments
    # (executor.functions.one_argument): the same gate applies to them
    monkeypatch.setattr(handback, "HAND_BACK_AFTER", 0.01)
    view, ran = _View(), []

    def task(i):
        ran.append(i)
        while i == 10 and view.status[4] < 0:
            handback.check()
            threading.Event().wait(0.01)
        return i

    outcome = execute_isolated([task], 0, [10, 11, 12], None, 10, view, single_arg=True, splittable=True)
    assert outcome.values == [10] and ran == [10] and view.status[4] == 11
    outcome = execute_isolated([task], 0, [11, 12], None, 11, _View(), single_arg=True, splittable=False)
    assert outcome.values == [11, 12]
