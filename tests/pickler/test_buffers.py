"""Large arrays through shared memory (pickler/buffers.py): both ways, nothing left behind.

Arguments of at least ``max_nbytes`` go to files in the call's folder once per call
and are mapped copy-on-write in workers (``mmap_mode="c"``, the default; the modes
and ``np.memmap`` arguments are in test_memmap.py); large results come back the same
way and are owned by the parent. The tests use ``max_nbytes="64K"`` so that arrays of a few
hundred KB take the shared-memory road.
"""

from __future__ import annotations

import functools
import gc
import logging
import mmap
import os
import pickle
import re
import signal
import tempfile
import time
from concurrent.futures import Future

import pytest

import picklepool
from picklepool import Parallel, WorkerCrashedError, delayed
from picklepool.executor.session import session
from picklepool.pickler import buffers
from picklepool.pickler.base import StdlibPickler
from picklepool.pickler.context import CallContext
from picklepool.wire import Results
from picklepool.workers import buffers as worker_buffers
from tests.conftest import run_python, spare_folders

np = pytest.importorskip("numpy")

LIMIT = "64K"
N = 100_000  # elements: 100 KB and more for every dtype below


# -- run in workers ---------------------------------------------------------------------


def shm_backed(a) -> bool:
    """Whether *a*'s memory is a mapped file (shared memory), not a private copy."""
    obj = a
    while isinstance(obj, np.ndarray) and obj.base is not None:
        obj = obj.base
    if isinstance(obj, memoryview):
        obj = obj.obj
    return isinstance(obj, mmap.mmap)


def describe(a):
    flags = a.flags
    return {
        "dtype": a.dtype,
        "shape": a.shape,
        "strides": a.strides,
        "c": flags.c_contiguous,
        "f": flags.f_contiguous,
        "writeable": flags.writeable,
        "shm": shm_backed(a),
        "memmap": type(a).__name__ == "memmap",
        "copy": a.copy(),
    }


def shm_flags(tree):
    """The shm_backed flag of every array inside dicts, lists and Holder objects."""
    if isinstance(tree, dict):
        return {k: shm_flags(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [shm_flags(v) for v in tree]
    if isinstance(tree, Holder):
        return {"weights": shm_flags(tree.weights), "extra": shm_flags(tree.extra)}
    return shm_backed(tree)


class Holder:
    def __init__(self, weights, extra):
        self.weights, self.extra = weights, extra


def write_first(a):
    a[0] = 1


def arg_files(folder: str) -> int:
    """How many argument files the parent's calls have in the session folder now."""
    return sum(
        1
        for call in os.listdir(folder)
        if call.startswith("call-")
        for name in os.listdir(os.path.join(folder, call))
        if name.startswith("a-")
    )


def count_and_read(a, folder):
    return arg_files(folder), float(a[-1]), shm_backed(a)


def fresh(n, value):
    return np.full(n, value, dtype=np.float64)


def first_of(a):
    return float(a.flat[0])


def sum_with(weights, x):
    return float(weights[x]), shm_backed(weights)


def misbehave(a, i, how):
    if i == 3:
        if how == "error":
            raise ValueError("task 3 failed on purpose")
        if how == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "timeout":
            time.sleep(60)  # interrupted by Parallel(timeout=...)
    return float(a[i])


def wait_then_return(started, go, n):
    with open(started, "wb"):  # blocks until fail_after_start() opens it
        pass
    with open(go, "rb") as f:  # blocks until the parent opens it
        f.read()
    return fresh(n, 7.0)


def fail_after_start(started):
    with open(started, "rb") as f:  # returns once wait_then_return() is running
        f.read()
    raise KeyError("fail while the other task runs")


class PlainPickler(pickle.Pickler):
    """A user's ``pickle.Pickler`` subclass, passed as ``pickler=PlainPickler``."""


# -- helpers in the parent --------------------------------------------------------------


def leftovers() -> list[str]:
    """Everything this process has in the session folder, /dev/shm and the temp folder
    besides the session's own cancel flags, worker status files and the empty call
    folders it keeps for the next calls."""
    path = session().path
    pid_prefix = f"picklepool-{os.getpid()}-"
    spare = {os.path.basename(f) for f in spare_folders()}
    out = [e for e in os.listdir(path) if e != "cancel" and not re.fullmatch(r"w\d+", e) and e not in spare]
    for root in {os.path.dirname(path), "/dev/shm", tempfile.gettempdir()}:
        if os.path.isdir(root):
            out += [
                os.path.join(root, e)
                for e in os.listdir(root)
                if e.startswith(pid_prefix) and os.path.join(root, e) != path
            ]
    return sorted(out)


@pytest.fixture
def writes(monkeypatch):
    """(path, nbytes) of every buffer file the parent writes (workers are not patched)."""
    seen: list[tuple[str, int]] = []
    real = buffers.write_file

    def record(path, buf):
        real(path, buf)
        seen.append((path, buf.nbytes))

    monkeypatch.setattr(buffers, "write_file", record)
    return seen


@pytest.fixture
def clean():
    """``clean()`` lists what appeared in the session folder, /dev/shm and the temp
    folder since the test started (other tests' leftovers are not its business)."""
    before = set(leftovers())
    return lambda: sorted(set(leftovers()) - before)


def run(tasks, **kw):
    kw.setdefault("n_jobs", 2)
    kw.setdefault("max_nbytes", LIMIT)
    return Parallel(**kw)(tasks)


# -- arguments --------------------------------------------------------------------------

DTYPES = {
    "int": np.arange(N, dtype=np.int64),
    "float": np.linspace(0, 1, N, dtype=np.float32),
    "bool": np.arange(N) % 3 == 0,
    "complex": np.arange(N) * (1 + 2j),
    "structured": np.array(
        [(i, i / 2, b"abc") for i in range(N)], dtype=[("x", "<i4"), ("y", "<f8"), ("s", "S3")]
    ),
    "datetime64": np.datetime64("2024-01-01T00:00:00", "ns") + np.arange(N).astype("m8[s]"),
    "timedelta64": np.arange(N).astype("m8[ms]"),
    "structured with a datetime": np.array(
        [(np.datetime64(i, "s"), i / 2) for i in range(N)], dtype=[("t", "<M8[s]"), ("y", "<f8")]
    ),
}


@pytest.mark.parametrize("name", list(DTYPES))
def test_dtypes_arrive_copy_on_write_through_shared_memory(name, writes, clean):
    a = DTYPES[name]
    out = run(delayed(describe)(a) for _ in range(4))
    for d in out:
        assert (d["dtype"], d["shape"], d["strides"]) == (a.dtype, a.shape, a.strides)
        np.testing.assert_array_equal(d["copy"], a)
    # datetime64 and timedelta64 too, though numpy exports no buffer of them (numpy issue
    # #4983): they were pickled in band, a copy per batch, and mmap_mode="r" did not hold.
    assert all(d["shm"] and d["writeable"] and d["memmap"] for d in out)
    assert [n for _, n in writes] == [a.nbytes]
    assert clean() == []


@pytest.mark.parametrize("view", ["whole", "strided", "fortran"])
@pytest.mark.parametrize("kind", ["M8[s]", "m8[ns]"])
def test_datetime_arrays_are_mapped_with_the_mmap_mode_as_joblib(kind, view, writes, clean):
    a = np.arange(0, 2 * N, dtype=kind)
    a = {"whole": a, "strided": a[::2], "fortran": np.asfortranarray(a.reshape(2, N))}[view]
    for mode, writeable in (("r", False), ("c", True), ("r+", True)):
        out = run((delayed(describe)(a) for _ in range(2)), mmap_mode=mode)
        for d in out:
            assert (d["dtype"], d["shape"], d["shm"], d["memmap"]) == (a.dtype, a.shape, True, True)
            assert (d["writeable"], d["f"] or view != "fortran") == (writeable, True)
            np.testing.assert_array_equal(d["copy"], a)
    with pytest.raises(ValueError, match="read-only"):  # as with joblib's mmap_mode="r"
        run((delayed(write_first)(a) for _ in range(1)), mmap_mode="r")
    assert len(writes) == 4  # one file per call
    assert clean() == []


def test_zero_d_and_empty_arrays(clean):
    zero_d = np.array(3.5)
    zero_d_struct = np.zeros((), dtype=[("v", "<f8", (4,))])
    empty, empty_2d = np.zeros(0), np.zeros((0, 5), dtype=np.int32)
    out = run((delayed(describe)(a) for a in (zero_d, zero_d_struct, empty, empty_2d)), max_nbytes=0)
    for d, a in zip(out, (zero_d, zero_d_struct, empty, empty_2d), strict=True):
        assert (d["dtype"], d["shape"]) == (a.dtype, a.shape)
        np.testing.assert_array_equal(d["copy"], a)
    assert [d["shm"] for d in out] == [True, True, False, False]  # nothing to map when empty
    assert clean() == []


def test_views_and_slices():
    base = np.arange(200_000, dtype=np.float64).reshape(400, 500)
    views = {
        "rows": base[10:300],  # contiguous slice: mapped, no copy
        "transposed": base.T,  # Fortran-contiguous view: mapped
        "column": base[:, 5],  # strided, small: numpy copies it in band
        "every_other": base[::2, ::3],  # strided, large: one contiguous copy, mapped (as joblib)
    }
    out = dict(zip(views, run(delayed(describe)(v) for v in views.values()), strict=True))
    for name, v in views.items():
        np.testing.assert_array_equal(out[name]["copy"], v)
        assert out[name]["shape"] == v.shape
    assert out["rows"]["shm"] and out["rows"]["strides"] == views["rows"].strides
    assert out["transposed"]["shm"] and out["transposed"]["f"] and not out["transposed"]["c"]
    assert not out["column"]["shm"]
    assert out["every_other"]["shm"] and out["every_other"]["c"]


def test_fortran_order_is_kept():
    a = np.asfortranarray(np.arange(60_000, dtype=np.float64).reshape(300, 200))
    (d,) = run([delayed(describe)(a)])
    assert d["shm"] and d["f"] and not d["c"] and d["strides"] == a.strides
    np.testing.assert_array_equal(d["copy"], a)


def test_many_different_arrays_in_one_call(writes):
    arrays = [np.full(20_000, i, dtype=np.float64) for i in range(40)]
    out = run((delayed(sum_with)(a, 7) for a in arrays), batch_size=3)
    assert out == [(float(i), True) for i in range(40)]
    assert sorted(n for _, n in writes) == [a.nbytes for a in arrays]


def test_same_array_in_many_tasks_is_stored_once(writes, clean):
    a = np.arange(262_144, dtype=np.float64)  # 2 MB
    folder = session().path
    out = run((delayed(count_and_read)(a, folder) for _ in range(200)), batch_size=1)
    assert out == [(1, float(a[-1]), True)] * 200  # every task saw exactly one file
    assert writes == [(writes[0][0], a.nbytes)]  # written once, 2 MB in all
    assert clean() == []


def test_function_holding_a_large_array_is_shared_too(writes):
    weights = np.arange(50_000, dtype=np.float64)
    f = functools.partial(sum_with, weights)
    out = run((delayed(f)(i) for i in range(50)), batch_size=2)
    assert out == [(float(i), True) for i in range(50)]
    assert [n for _, n in writes] == [weights.nbytes]


def test_distinct_arrays_from_a_generator_are_released_as_the_call_goes(writes, clean):
    folder = session().path
    tasks = (delayed(count_and_read)(np.full(N, i, dtype=np.float64), folder) for i in range(40))
    out = run(tasks, batch_size=1, pre_dispatch=4)
    assert [v for _, v, _ in out] == [float(i) for i in range(40)]
    assert len(writes) == 40
    # Files in flight at most, not one per task: batches in flight plus the one being sent.
    assert max(n for n, _, _ in out) <= 5
    assert clean() == []


def _closure_over(a):
    return lambda folder: (arg_files(folder), float(a[-1]))


def test_an_executors_closure_over_a_large_array_takes_its_file_with_it(writes, clean):
    # An Executor keeps a function sent by value while it lives (pickled once), with the file
    # of a large array it holds; that file stayed until the executor's shutdown: one more in
    # /dev/shm for every closure submitted (counts 1, 2, ..., 6 here)
    folder = session().path
    seen = []
    with picklepool.Executor(1, max_nbytes=LIMIT) as ex:
        for i in range(6):
            fn = _closure_over(np.full(N, i, dtype=np.float64))
            seen.append(ex.submit(fn, folder).result())
            del fn
    assert [v for _, v in seen] == [float(i) for i in range(6)]
    assert len(writes) == 6
    # its own file, and the one before it while its batch's end is being noted
    assert max(n for n, _ in seen) <= 2, seen
    assert clean() == []


def test_arrays_inside_dicts_and_objects():
    a, b, c = (np.full(N, i, dtype=np.float64) for i in range(3))
    tree = {"a": a, "nested": [b, {"c": c}], "obj": Holder(a, [c, np.zeros(3)])}
    (flags,) = run([delayed(shm_flags)(tree)])
    assert flags == {
        "a": True,
        "nested": [True, {"c": True}],
        "obj": {"weights": True, "extra": [True, False]},  # the small one is copied
    }


def test_writing_to_an_argument_in_a_worker_changes_its_own_copy():
    a = np.zeros(N)
    assert run([delayed(write_first)(a)]) == [None]
    assert a[0] == 0


def test_a_temp_folder_that_cannot_hold_files_says_so(tmp_path, clean):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    a = np.arange(N, dtype=np.float64)
    with pytest.raises(
        OSError,
        match=r"^\[Errno 17\] task 0: first_of\(<ndarray shape=\(100000,\) dtype=float64>\): "
        r"temp_folder='.*a-file' cannot hold",
    ) as info:
        run([delayed(first_of)(a)], temp_folder=str(not_a_folder))
    assert not isinstance(info.value, pickle.PicklingError)
    assert "Use a folder you can write to, or leave temp_folder unset" in str(info.value)
    assert run([delayed(first_of)(a)]) == [0.0] and clean() == []


@pytest.mark.parametrize("temp_folder", [None, "given"])
def test_a_full_folder_for_large_arguments_says_where_and_what_to_do(
    tmp_path, monkeypatch, temp_folder, clean
):
    # A full disk under a large argument's file was a PicklingError "tasks 1..1: [Errno 28]
    # No space left on device": no function, no folder, no fix (the task pickles fine).
    import errno

    def full(path, buf):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    a = np.arange(N, dtype=np.float64)
    monkeypatch.setattr(buffers, "write_file", full)
    if temp_folder is None:  # /dev/shm without room: the temporary folder, full too
        monkeypatch.setattr(buffers, "free_space", lambda path: 0)
        where = "the temporary folder, used as /dev/shm had no room"
    else:
        temp_folder = str(tmp_path)
        where = f"temp_folder={temp_folder!r}"
    with pytest.raises(OSError) as info:
        run(
            [delayed(first_of)(i) for i in range(2)] + [delayed(first_of)(a)],
            batch_size=1,
            temp_folder=temp_folder,
        )
    assert not isinstance(info.value, pickle.PicklingError)
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    name = "task 2: first_of(<ndarray shape=(100000,) dtype=float64>): "  # (its shape, not its repr)
    assert message.startswith(f"[Errno 28] {name}"), message
    assert f"could not be written to {where}: No space left on device" in message
    assert "point temp_folder (or PICKLEPOOL_TEMP_FOLDER) to a folder with room" in message
    assert "max_nbytes=None" in message
    monkeypatch.undo()
    assert run([delayed(first_of)(a)]) == [0.0] and clean() == []


def try_write(a):
    try:
        a[(0,) * a.ndim] = -1
    except ValueError as exc:
        return str(exc)
    return "written"


@pytest.mark.parametrize("mmap_mode", ["c", "r+"])
def test_a_read_only_argument_stays_read_only(mmap_mode):
    # In the parent (n_jobs=1) a write to a read-only array raises; in a worker too,
    # whether the array went through shared memory (large) or was copied (small, strided).
    big = np.arange(3 * N, dtype=np.float64)
    big.flags.writeable = False
    arrays = [big, big[::2], big[:10], big[:300].reshape(-1, 3).T]
    tasks = [delayed(try_write)(a) for a in arrays]
    assert run(tasks, n_jobs=1) == ["assignment destination is read-only"] * len(arrays)
    assert run(tasks, mmap_mode=mmap_mode) == ["assignment destination is read-only"] * len(arrays)
    assert not big.flags.writeable and big[0] == 0


def read_only_copy(a, step):
    a = a.copy()
    a.flags.writeable = False
    return a[::step]


def test_a_read_only_result_stays_read_only():
    a = np.arange(3 * N, dtype=np.float64)
    tasks = [delayed(read_only_copy)(x, step) for x in (a, a[:10]) for step in (1, 2)]
    for nj in (1, 2):
        assert [r.flags.writeable for r in run(tasks, n_jobs=nj)] == [False] * 4


def views_of(a):
    return a, a[::2], a[:10], a.T, np.asarray(a)


def test_a_result_viewing_an_argument_mapped_read_only_by_mmap_mode_r_comes_back_writable():
    # mmap_mode="r" maps a large argument read-only in the task; a result viewing it (the
    # argument itself, a slice) came back read-only, where the same call with n_jobs=1, the
    # loop in the parent and joblib give writable arrays (the parent gets a copy anyway)
    a = np.arange(3 * N, dtype=np.float64).reshape(3, N)
    for nj in (1, 2):
        got = run([delayed(views_of)(a)], n_jobs=nj, mmap_mode="r")[0]
        assert [r.flags.writeable for r in got] == [True] * 5
        assert [r.flags.f_contiguous for r in got] == [False, False, False, True, False]
        assert all(np.array_equal(r, v) for r, v in zip(got, views_of(a), strict=True))
    # one read-only in the parent stays read-only both ways, whatever mmap_mode says
    a.flags.writeable = False
    for mode in ("r", "c"):
        assert [r.flags.writeable for r in run([delayed(views_of)(a)], mmap_mode=mode)[0]] == [False] * 5


def both(x, y):
    return x, y


def test_a_writable_argument_beside_a_read_only_view_of_its_memory_comes_back_writable():
    # The two travel in one file; the read-only one marked the file, so under mmap_mode="r"
    # a result viewing the writable one came back read-only too (the loop: writable)
    a = np.arange(3 * N, dtype=np.float64)
    frozen = a.view()
    frozen.flags.writeable = False
    for mode in ("r", "c"):
        for args, flags in [((a, frozen), [True, False]), ((frozen, a), [False, True])]:
            got = run([delayed(both)(*args)] * 2, mmap_mode=mode)
            assert [[r.flags.writeable for r in pair] for pair in got] == [flags] * 2, mode
            assert all(np.array_equal(r, a) for pair in got for r in pair)


@pytest.mark.parametrize("where", ["argument", "parallel_config"])
def test_max_nbytes_none_sends_copies(where, writes):
    a = np.arange(N, dtype=np.float64)
    if where == "argument":
        (d,) = run([delayed(describe)(a)], max_nbytes=None)
    else:
        with picklepool.parallel_config(max_nbytes=None):
            (d,) = Parallel(n_jobs=2)([delayed(describe)(a)])
    assert not d["shm"] and not d["memmap"] and d["writeable"]
    assert writes == []


@pytest.mark.parametrize("pickler", ["pickle", "cloudpickle", "hybrid", PlainPickler])
def test_every_pickler(pickler, writes, clean):
    a = np.arange(N, dtype=np.int32)
    out = run((delayed(describe)(a) for _ in range(3)), pickler=pickler)
    assert all(d["shm"] and d["writeable"] for d in out)
    back = run([delayed(fresh)(N, 2.0)], pickler=pickler)[0]
    assert shm_backed(back) and back.flags.writeable and back[-1] == 2.0
    assert len(writes) == 1 and clean() == []


# -- results ----------------------------------------------------------------------------


def _mapped(path_part: str) -> list[str]:
    with open("/proc/self/maps") as f:
        return [line for line in f if path_part in line]


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps")
def test_results_come_back_mapped_owned_and_freed_on_gc(clean):
    results = run(delayed(fresh)(N, float(i)) for i in range(6))
    assert clean() == []  # the files are gone already: the parent holds the mappings
    for i, r in enumerate(results):
        assert shm_backed(r) and r.flags.writeable and r.dtype == np.float64
        assert r[0] == r[-1] == float(i)
        r += 1  # the parent owns them: writable, and private to it
    assert results[5][3] == 6.0
    calls = os.path.join(session().path, "call-")
    assert len(_mapped(calls)) == 6
    del results, r
    gc.collect()
    assert _mapped(calls) == []


def test_small_results_stay_in_band():
    (r,) = run([delayed(fresh)(100, 1.0)])
    assert not shm_backed(r) and r.flags.writeable


# -- nothing left behind ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["error", "crash", "timeout"])
def test_nothing_left_after_a_failed_call(how, writes, clean):
    a = np.arange(N, dtype=np.float64)
    expected = {"error": ValueError, "crash": WorkerCrashedError, "timeout": TimeoutError}[how]
    with pytest.raises(expected):
        timeout = 1 if how == "timeout" else None
        run((delayed(misbehave)(a, i, how) for i in range(20)), batch_size=1, timeout=timeout)
    assert writes and clean() == []
    assert run([delayed(first_of)(a)]) == [0.0]  # and the next call works
    assert clean() == []


def test_nothing_left_after_ctrl_c_in_the_parent(writes, clean):
    def tasks():
        for i in range(10):
            if i == 6:
                raise KeyboardInterrupt
            yield delayed(fresh)(N, float(i)) if i % 2 else delayed(first_of)(np.full(N, i))

    with pytest.raises(KeyboardInterrupt):
        run(tasks(), batch_size=1)
    assert writes and clean() == []


CTRL_C_SCRIPT = """
import os, signal, sys, threading
import numpy as np
from picklepool import Parallel, delayed
from picklepool.executor.session import session

fifo = {fifo!r}

def task(a, i, fifo):
    if i == 0:
        with open(fifo, "w") as f:
            f.write("started")
    threading.Event().wait(60)
    return a[i]

def interrupt_when_started():
    with open(fifo) as f:  # blocks until a task has started in a worker
        f.read()
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # os.kill may pick this thread

threading.Thread(target=interrupt_when_started, daemon=True).start()
a = np.ones(1 << 20)  # 8 MB: through shared memory
print("pid", os.getpid(), "session", session().path)
try:
    Parallel(n_jobs=2, batch_size=1)(delayed(task)(a, i, fifo) for i in range(10))
except KeyboardInterrupt:
    print("interrupted")
print("left", sorted(e for e in os.listdir(session().path) if e.startswith("call-")))
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX signals and FIFOs")
def test_nothing_left_after_a_real_ctrl_c(tmp_path):
    fifo = str(tmp_path / "started")
    os.mkfifo(fifo)
    res = run_python(CTRL_C_SCRIPT.format(fifo=fifo))
    assert "interrupted" in res.stdout and "left []" in res.stdout, res.stdout + res.stderr
    pid = res.stdout.split()[1]
    shm_root = os.path.dirname(res.stdout.split()[3])
    for root in (shm_root, tempfile.gettempdir()):  # and nothing once it has exited
        assert [e for e in os.listdir(root) if e.startswith(f"picklepool-{pid}-")] == []


def test_nothing_left_after_with_parallel(writes, clean):
    a = np.arange(N, dtype=np.float64)
    with Parallel(n_jobs=2, max_nbytes=LIMIT) as p:
        first = p(delayed(first_of)(a) for _ in range(5))
        second = p(delayed(describe)(a) for _ in range(3))  # large results too
        # the block's argument folder (joblib's pool temp folder) stays, empty, until it ends
        [folder] = clean()
        assert folder.startswith("args-") and os.listdir(os.path.join(session().path, folder)) == []
    assert first == [0.0] * 5
    assert all(d["shm"] and shm_backed(d["copy"]) and d["copy"][-1] == a[-1] for d in second)
    assert len(writes) == 2 and clean() == []  # one file per call for the same array


def test_nothing_left_when_a_generator_is_dropped(clean):
    tasks = (delayed(fresh)(N, float(i)) for i in range(50))
    gen = Parallel(n_jobs=2, max_nbytes=LIMIT, return_as="generator", batch_size=1)(tasks)
    assert next(gen)[0] == 0.0
    gen.close()
    picklepool.shutdown(wait=True)  # lets the batches already running finish
    assert clean() == []


def test_a_result_finished_after_the_call_ended_leaves_nothing(tmp_path, clean):
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    os.mkfifo(started)
    os.mkfifo(go)
    tasks = [delayed(wait_then_return)(started, go, N), delayed(fail_after_start)(started)]
    with pytest.raises(KeyError):
        run(tasks, batch_size=1)
    with open(go, "wb"):  # lets the first task finish, after its call has ended
        pass
    picklepool.shutdown(wait=True)
    assert clean() == []


def test_late_batches_remove_the_call_folder_again(tmp_path):
    class FakeSession:
        path = str(tmp_path)

        def take_folder(self):
            return None

    calls = buffers.CallBuffers(CallContext(StdlibPickler(), FakeSession()), 1, 1024)
    a = np.arange(1000, dtype=np.float64)
    frames = calls.dumps_tasks(StdlibPickler(), [a])
    fut: Future[bytes] = Future()
    calls.sent(frames, fut)
    calls.close()
    assert not os.path.exists(calls.folder)
    os.mkdir(calls.folder)  # as if a worker's late result had raced with the removal
    open(os.path.join(calls.folder, "r-1-0"), "wb").close()
    fut.set_result(b"")
    assert os.listdir(tmp_path) == []


def test_a_kept_specs_file_unpinned_while_a_batch_uses_it_goes_when_that_batch_is_done(tmp_path):
    # An Executor's function dies (executor.functions unpins its spec's files) as soon as its
    # batch is handed to a worker, which may not have mapped the file yet: it must stay till then
    class FakeSession:
        path = str(tmp_path)

        def take_folder(self):
            return None

    calls = buffers.CallBuffers(CallContext(StdlibPickler(), FakeSession()), 1, 1024)
    calls.per_batch = True  # (an Executor's)
    calls.begin_batch()
    _data, refs = calls.dumps_function(StdlibPickler(), np.arange(1000, dtype=np.float64), True)
    first, second = Future(), Future()
    calls.sent(b"", first, specs=refs)  # two batches using the kept spec, in flight
    calls.begin_batch()
    calls.sent(b"", second, specs=refs)
    calls.unpin(refs)  # its function died
    [(path, _)] = refs
    assert os.path.exists(path)
    first.set_result(b"")
    assert os.path.exists(path)
    second.set_result(b"")
    assert not os.path.exists(path)
    calls.close()


# -- small /dev/shm -----------------------------------------------------------------


def test_small_dev_shm_falls_back_to_files_on_disk(monkeypatch, caplog, writes, clean):
    monkeypatch.setattr(buffers, "free_space", lambda path: 32 << 20)  # a 32 MB /dev/shm
    a = np.arange(N, dtype=np.float64)
    big = np.arange(4_194_304, dtype=np.float64)  # 32 MB: does not fit
    with caplog.at_level(logging.DEBUG, logger="picklepool.pickler.buffers"):
        out = run(delayed(sum_with)(x, 9) for x in (a, big, big))
    assert out == [(9.0, True)] * 3
    shm_dir = os.path.dirname(session().path)
    [(small_path, _), (big_path, _)] = writes
    assert small_path.startswith(shm_dir)
    assert big_path.startswith(tempfile.gettempdir()) and not big_path.startswith(shm_dir)
    assert "memory-mapped files" in caplog.text
    assert clean() == []


def test_worker_sends_results_in_band_when_shared_memory_is_full(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(buffers, "free_space", lambda path: 0)
    tasks = buffers.Frames(b"", (), (str(tmp_path), 1024))
    outcome = Results([np.arange(10_000, dtype=np.float64)], 0.0)
    monkeypatch.setattr(worker_buffers, "free_space", lambda path: 0)
    with caplog.at_level(logging.DEBUG, logger="picklepool.buffers"):
        reply = worker_buffers.dump_reply(StdlibPickler(), outcome, tasks)
    assert isinstance(reply, bytes) and os.listdir(tmp_path) == []
    np.testing.assert_array_equal(pickle.loads(reply).values[0], outcome.values[0])
    assert "sent in band" in caplog.text


def length(xs):
    return len(xs), xs[-1]


def test_a_large_pickle_stream_goes_through_a_file_and_is_removed():
    big = list(range(400_000))  # no buffer to share: the stream itself is large
    assert buffers.PAYLOAD_FILE_MIN < len(pickle.dumps(big, 5))
    out = Parallel(n_jobs=2, batch_size=1)(delayed(length)(big) for _ in range(3))
    assert out == [(400_000, 399_999)] * 3
    assert not [e for e in leftovers() if e.startswith("call-")]


@pytest.mark.parametrize("value", [b"x" * (2 << 20), "y" * (2 << 20), [b"x" * (1 << 20)] * 2])
def test_a_large_string_in_a_one_task_call_goes_through_a_file_not_the_pipe(value, monkeypatch):
    written = []
    real = buffers.write_file

    def spy(path, data):
        written.append(os.path.basename(path))
        return real(path, data)

    monkeypatch.setattr(buffers, "write_file", spy)
    assert Parallel(n_jobs=2)(delayed(len)(value) for _ in range(1)) == [len(value)]
    assert [name for name in written if name.startswith("p-")]  # the batch's pickle stream


# -- the call folder of a warm call of small values goes to the next call ---------------


def folders_made(monkeypatch):
    made: list[str] = []
    real = os.mkdir

    def mkdir(path, *args, **kw):
        made.append(os.path.basename(path))
        return real(path, *args, **kw)

    monkeypatch.setattr(buffers.os, "mkdir", mkdir)
    return made


def test_the_empty_folder_of_a_clean_call_is_the_next_calls(monkeypatch):
    run(delayed(abs)(-i) for i in range(4))  # a clean call: its folder kept
    (spare,) = spare_folders()
    made = folders_made(monkeypatch)
    for _ in range(3):
        assert run(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
        # large results written to it by the workers, taken over by the parent
        out = run(delayed(fresh)(N, float(i)) for i in range(3))
        assert [r[-1] for r in out] == [0.0, 1.0, 2.0]
        assert spare_folders() == [spare]  # (each empty: checked there)
    assert made == []  # no folder made, none removed


def test_a_folder_the_parent_wrote_to_is_removed_not_kept(monkeypatch, clean):
    run(delayed(abs)(-i) for i in range(4))
    (spare,) = spare_folders()
    a = np.arange(N, dtype=np.float64)
    assert run(delayed(first_of)(a) for _ in range(4)) == [0.0] * 4  # an argument file in it
    assert not os.path.exists(spare) and spare_folders() == []
    assert clean() == []


def test_a_call_that_failed_or_was_left_early_keeps_no_folder(clean):
    run(delayed(abs)(-i) for i in range(4))
    with pytest.raises(ZeroDivisionError):
        run((delayed(divmod)(1, 0 if i == 2 else 1) for i in range(6)), batch_size=1)
    gen = run((delayed(fresh)(N, float(i)) for i in range(8)), batch_size=1, return_as="generator")
    assert next(gen)[0] == 0.0
    gen.close()  # batches still running: what they write goes with the folder
    assert spare_folders() == []
    assert clean() == []
