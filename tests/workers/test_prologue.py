"""The worker's record of functions rebuilt by value, for an initializer's globals (workers.prologue)."""

from __future__ import annotations

from picklepool import Parallel, delayed
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
