"""The wire: every byte through the call's pickler; failures framed without it; layering."""

from __future__ import annotations

import pickle
import zlib

import pytest

from picklepool import Parallel, PicklingError, delayed
from picklepool.errors import UnpicklingError
from picklepool.pickler import register_pickler, unregister_pickler
from picklepool.wire import (
    Batch,
    Failure,
    NumericState,
    ParentState,
    WorkerLimits,
    decode_failure,
    pack_batch,
    unpack_batch,
)

from .conftest import run_python
from .custom_picklers import Zlibbed
from .executor.crash_cases import FailsOnLoad, LedgerMismatch, crash_task, identity_task, make_fails_on_dump


@pytest.fixture
def zlibbed():
    register_pickler("zlibbed", Zlibbed)
    yield "zlibbed"
    unregister_pickler("zlibbed")


def test_a_pickler_with_its_own_format_runs_every_call(zlibbed):
    assert Parallel(n_jobs=2, pickler=zlibbed)(delayed(pow)(i, 2) for i in range(20)) == [
        i * i for i in range(20)
    ]


def test_its_failures_are_reported_too(zlibbed):
    p = Parallel(n_jobs=2, pickler=zlibbed, batch_size=1)
    with pytest.raises(LedgerMismatch):
        p(delayed(crash_task)("unrebuildable" if i == 1 else "none", i) for i in range(3))
    with pytest.raises(UnpicklingError, match="task 1"):
        p(delayed(abs)(FailsOnLoad("raise") if i == 1 else i) for i in range(3))
    with pytest.raises(PicklingError, match="task 1"):
        p(delayed(make_fails_on_dump if i == 1 else identity_task)("raise") for i in range(3))
    with pytest.raises(ValueError, match="boom"):
        p(delayed(crash_task)("raise" if i == 1 else "none", i) for i in range(3))


def test_failure_framing_round_trips_and_never_matches_a_pickle():
    failure = Failure("dump", 3, "result", "cannot", "tb", ("a:B",), "f")
    assert decode_failure(failure.encode()) == failure
    assert decode_failure(pickle.dumps(failure)) is None
    assert decode_failure(b"ZZ" + zlib.compress(b"x")) is None


def test_workers_never_import_the_front_end():
    out = run_python(
        """
        import sys
        from picklepool import Parallel, delayed

        def modules():
            return sorted(m for m in sys.modules if m.startswith("picklepool"))

        print(*Parallel(n_jobs=2)(delayed(modules)() for _ in range(1))[0])
        """
    )
    mods = out.stdout.split()
    assert out.returncode == 0 and "picklepool.workers.runner" in mods, out.stderr
    assert not [m for m in mods if m.startswith(("picklepool.executor", "picklepool.bench"))], mods


def test_layers_have_no_cycles_and_no_upward_imports():
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    tool = root.parent / "shared" / "tools" / "layers.py"
    if not tool.exists():
        pytest.skip("../shared/tools/layers.py is not beside this checkout")
    out = subprocess.run(
        [sys.executable, str(tool), str(root / "src" / "picklepool")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout


def test_a_reply_freed_after_sending_travels_as_the_reply_itself():
    import cloudpickle

    from picklepool.wire import FreedAfterSending

    kept = [list(range(10))]
    for dumps in (pickle.dumps, cloudpickle.dumps):
        assert pickle.loads(dumps(FreedAfterSending(b"reply", kept))) == b"reply"  # kept stays here


def test_only_large_batches_keep_their_arguments_until_the_reply_is_sent():
    import cloudpickle

    from picklepool.pickler.base import StdlibPickler
    from picklepool.wire import Batch, FreedAfterSending, Results
    from picklepool.workers import runner

    pickler = StdlibPickler()
    header = cloudpickle.dumps(pickler)
    fn = (None, pickler.dumps(len), "len", "t")

    def run(values):
        tasks = pickler.dumps((0, [(values,)], None))
        return runner.run_batch(Batch(1, None, header, (fn,), tasks, 0, None, None, None))

    small, large = run([1, 2]), run(list(range(100_000)))
    assert type(small) is bytes
    assert type(large) is FreedAfterSending
    assert [pickler.loads(r)[0] for r in (small, large.reply)] == [[2], [100_000]]
    assert large.keep[1] is None and len(large.keep[0][0][0]) == 100_000  # (args, kwargs, outcome)
    assert type(large.keep[2]) is Results


@pytest.mark.parametrize(
    "limits, parent",
    [
        (WorkerLimits(1, None), ParentState(("/a", "/b"), 1000, "/", 1, 2, 4300, (None, None, None), 0o22)),
        (None, NumericState((None, (("divide", "raise"),), None))),
        (WorkerLimits(None, 1 << 30), None),
    ],
)
def test_a_batch_travels_as_plain_tuples_and_is_rebuilt_as_it_was(limits, parent):
    batch = Batch(7, "/dev/shm/s", b"pickler", (("key", b"f", "f", "t"),), b"tasks", 3, 1.5, limits, parent)
    batch = batch._replace(isolate=True, single_arg=True)
    packed = pack_batch(batch)
    data = pickle.dumps(packed, protocol=5)
    for cls in (Batch, WorkerLimits, ParentState):  # no namedtuple class is looked up on the way
        assert cls.__name__.encode() not in data
    rebuilt = unpack_batch(pickle.loads(data))
    assert rebuilt == batch
    assert type(rebuilt) is Batch
    assert (type(rebuilt.limits), type(rebuilt.parent)) == (type(limits), type(parent))


def test_only_the_batch_runner_is_packed_so():
    # the loky path packs (run_batch, Batch) only: anything else is sent as it is
    from picklepool.executor.backends import _packed
    from picklepool.workers.packed import run_packed
    from picklepool.workers.runner import run_batch

    assert pickle.loads(_packed(run_batch, (Batch(*[None] * 9),)))[0].__name__ == "run_packed_batch"
    assert run_packed(_packed(abs, (-3,))) == 3
