"""The worker's record of functions rebuilt by value, for an initializer's globals (workers.prologue)."""

from __future__ import annotations

import functools

from picklepool import Executor, Parallel, delayed
from picklepool.workers import prologue


def _counter(k):
    def count(_i):  # nested: sent by value, rebuilt in the worker for each call's token
        from picklepool.workers import prologue

        return len(prologue._adopted) + 0 * k

    return count


def test_a_warm_worker_remembers_the_functions_of_its_last_calls_only():
    # every Parallel call has a token of its own: one entry per call would grow without end
    n = prologue.ADOPTED_TOKENS * 3
    seen = [max(Parallel(n_jobs=2)(delayed(_counter(k))(i) for i in range(2))) for k in range(n)]
    assert max(seen) == prologue.ADOPTED_TOKENS  # a worker ran tasks of half the calls at least


def test_a_partial_or_a_bound_method_of_a_function_sent_by_value_sees_its_initializer_globals():
    # the task is a functools.partial, or a bound method, of a function sent by value: the
    # function it calls gets the globals its module's initializer set, as a plain one does
    def make():
        def init(value):
            global SETTING
            SETTING = value

        def read(suffix, _i=0):
            return SETTING + suffix  # noqa: F821 - set by the initializer

        class Reader:
            def read(self, suffix):
                return SETTING + suffix  # noqa: F821

        return init, read, Reader

    init, read, reader = make()  # nested: sent by value, each copy with globals of its own
    with Executor(max_workers=2, initializer=init, initargs=("set",)) as ex:
        assert ex.submit(functools.partial(read, "!")).result() == "set!"
        assert ex.submit(reader().read, "?").result() == "set?"
    call = Parallel(n_jobs=2, initializer=init, initargs=("pool",))
    assert call(delayed(functools.partial(read, "!"))(i) for i in range(2)) == ["pool!", "pool!"]
