"""A worker keeps the memory of its last large batch (workers/warmheap.py).

The sample of a large argument's scalars keeps the allocator's arenas mapped, so the
next batch of that size is rebuilt without a page fault per 4 KB.
"""

from __future__ import annotations

import os
import pickle
import resource
import sysconfig

import pytest

from picklepool.workers import warmheap


def columns(*args, **kwargs):
    """A one-task batch's (args, kwargs, outcome), as workers.runner holds them."""
    return ([args], [kwargs] if kwargs else None, None)


@pytest.fixture(autouse=True)
def nothing_kept():
    warmheap._kept.clear()
    yield
    warmheap._kept.clear()


def test_a_sample_of_large_scalar_containers_is_kept_and_replaces_the_last():
    n = 200_000
    warmheap.keep_warm(columns(list(range(n)), 7, {"t": tuple(float(i) for i in range(n))}))
    assert warmheap.kept() == 2 * (n // warmheap.STRIDE + 1)
    warmheap.keep_warm(columns(kw={str(i): i for i in range(n)}))  # keywords, dicts: keys and values
    assert warmheap.kept() == 2 * (n // warmheap.STRIDE + 1)
    warmheap.keep_warm(([(i,) for i in range(100)], None, None))  # many tiny tasks: not looked at
    assert warmheap.kept() == 2 * (n // warmheap.STRIDE + 1)
    warmheap.keep_warm(columns([1, 2, 3]))  # a batch without a large container: the sample stays
    assert warmheap.kept() == 2 * (n // warmheap.STRIDE + 1)


def test_large_strings_are_never_kept_and_the_bound_counts_what_is_sampled():
    n = 60_000
    big = "x" * (4 << 20)  # one 4 MB string on every sampled position
    items = [big if i % warmheap.STRIDE == 0 else i for i in range(n)]
    warmheap.keep_warm(columns(items))
    assert warmheap.kept() == 0  # its own block, not in the allocator's arenas: nothing to keep warm
    small = ["s" * 40 if i % warmheap.STRIDE == 0 else i for i in range(n)]
    warmheap.keep_warm(columns(small))
    assert warmheap.kept() == n // warmheap.STRIDE + 1


def test_only_plain_immutable_scalars_are_kept():
    class Noted:
        pass

    n = 100_000
    mixed = [Noted() if i % 2 else i * 3 for i in range(n)]  # stride 1024 lands on even items
    warmheap.keep_warm(columns(mixed, [Noted() for _ in range(n)], [[i] for i in range(n)]))
    assert warmheap.kept() == n // warmheap.STRIDE + 1
    assert {type(v) for v in warmheap._kept} == {int}


def test_what_is_kept_has_a_bound(monkeypatch):
    monkeypatch.setattr(warmheap, "KEEP_MAX_BYTES", 10 << 20)  # 10 MB: about 250,000 ints
    warmheap.keep_warm(columns(list(range(200_000)), list(range(200_000))))
    assert warmheap.kept() == 200_000 // warmheap.STRIDE + 1  # the first fits, the second not


@pytest.mark.skipif(
    not sysconfig.get_config_var("WITH_PYMALLOC") or os.environ.get("PYTHONMALLOC", "pymalloc") != "pymalloc",
    reason="about CPython's own small-object allocator",
)
def test_the_next_batch_of_that_size_is_rebuilt_without_page_faults():
    data = pickle.dumps(list(range(1_000_000)), protocol=5)

    def faults_while_loading():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        value = pickle.loads(data)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, value

    _, value = faults_while_loading()
    del value
    cold, value = faults_while_loading()  # the memory went back to the kernel: faulted in again
    warmheap.keep_warm(columns(value))
    del value
    warm, value = faults_while_loading()
    del value
    assert cold > 2_000  # 32 MB of new pages
    assert warm < cold / 10


@pytest.mark.parametrize("single_arg", [False, True])
def test_a_worker_keeps_the_sample_of_a_batch_of_one_argument_calls(single_arg):
    # delayed(f)(big) calls travel as the column of their one argument (wire.Batch.single_arg)
    import cloudpickle

    from picklepool.pickler.base import StdlibPickler
    from picklepool.pickler.buffers import Frames
    from picklepool.wire import Batch, FreedAfterSending
    from picklepool.workers import runner

    n = 200_000
    pickler = StdlibPickler()
    fn = (None, pickler.dumps(len), "len", "t")
    args = [list(range(n))] if single_arg else [(list(range(n)),)]
    tasks = Frames(pickler.dumps((0, args, None)), (), None, "c")
    header = cloudpickle.dumps(pickler)
    reply = runner.run_batch(Batch(1, None, header, (fn,), tasks, 0, None, None, None, single_arg=single_arg))
    assert type(reply) is FreedAfterSending
    del reply  # sent: the arguments go, a sample of their scalars stays
    assert warmheap.kept() == n // warmheap.STRIDE + 1
