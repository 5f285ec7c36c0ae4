"""numpy memmaps and mmap_mode (pickler/arrays.py): writes are never silently lost.

- An ``np.memmap`` argument, or any view of one, travels as a reference to its file:
  the worker opens the same file with the same mode and layout, so "r+"/"w+" writes
  reach it; "c" and "r" keep numpy's semantics (private writes / read-only).
- Arguments larger than ``max_nbytes`` arrive as ``np.memmap``s of the call's file,
  mapped as ``mmap_mode`` says: "c" (default) a private copy-on-write copy per task
  batch, "r" read-only (the error names mmap_mode), "r+"/"w+" shared through the file.
"""

from __future__ import annotations

import os
import pickle

import pytest

import picklepool
from picklepool import Parallel, PicklingError, delayed
from picklepool.executor.session import session
from picklepool.pickler import arrays
from picklepool.pickler.registry import unregister_pickler
from tests.pickler.test_buffers import leftovers

np = pytest.importorskip("numpy")

ROWS = 300_000
PICKLERS = ["hybrid", "cloudpickle", "pickle", "PlainPickler"]


class PlainPickler(pickle.Pickler):
    """A user's ``pickle.Pickler`` subclass, registered with ``register_pickler``."""


@pytest.fixture(autouse=True, scope="module")
def _registered():
    picklepool.register_pickler("PlainPickler", PlainPickler)
    yield
    unregister_pickler("PlainPickler")


@pytest.fixture
def clean():
    before = set(leftovers())
    return lambda: sorted(set(leftovers()) - before)


# -- run in workers ---------------------------------------------------------------------


def put_column(out, c, v):
    out[:, c] = v


def put_row(out, r, v):
    out[r] = v


def describe(x):
    return {
        "type": type(x).__name__,
        "filename": getattr(x, "filename", None),
        "mode": getattr(x, "mode", None),
        "writeable": x.flags.writeable,
        "first": float(x.flat[0]),
    }


def type_name(x):
    return type(x).__name__


def center(x):
    x -= x.mean(0)
    return float(np.abs(x).sum())


def add_one_and_read(x):
    x += 1
    return float(x.flat[0])


def read_then_write(x, value):
    before = float(x[0])
    x[0] = value
    return before


def identity(x):
    return x


def backed_by_memmap(x):
    return isinstance(x, np.memmap) and x.filename is not None


# -- np.memmap arguments: writes reach the file -----------------------------------------


def _new_memmap(tmp_path, mode="w+", **kw):
    path = str(tmp_path / "out.dat")
    kw.setdefault("shape", (ROWS, 2))
    return path, np.memmap(path, dtype="float64", mode=mode, **kw)


def _file(path, shape=(ROWS, 2), offset=0):
    return np.fromfile(path, dtype="float64", offset=offset).reshape(shape)


@pytest.mark.parametrize("pickler", PICKLERS)
@pytest.mark.parametrize("mode", ["w+", "r+"])
def test_writes_to_a_memmap_reach_its_file(tmp_path, pickler, mode, clean):
    path, mm = _new_memmap(tmp_path)
    if mode == "r+":
        mm = np.memmap(path, dtype="float64", mode="r+", shape=(ROWS, 2))
    Parallel(n_jobs=2, pickler=pickler)(delayed(put_column)(mm, c, c + 1.0) for c in range(2))
    expected = np.tile([1.0, 2.0], (ROWS, 1))
    np.testing.assert_array_equal(_file(path), expected)
    # transposed views (Fortran-contiguous) and strided views with an offset
    Parallel(n_jobs=2, pickler=pickler)(delayed(put_row)(mm.T, c, c + 5.0) for c in range(2))
    np.testing.assert_array_equal(_file(path), np.tile([5.0, 6.0], (ROWS, 1)))
    part = mm[1000:2000:3]  # starts 16,000 bytes in, every third row
    Parallel(n_jobs=2, pickler=pickler)(delayed(put_column)(part, c, -1.0 - c) for c in range(2))
    expected = np.tile([5.0, 6.0], (ROWS, 1))
    expected[1000:2000:3] = [-1.0, -2.0]
    np.testing.assert_array_equal(_file(path), expected)
    np.testing.assert_array_equal(mm, expected)  # the parent's own mapping sees them too
    assert clean() == []


def test_memmap_with_an_offset_and_fortran_order(tmp_path):
    path = str(tmp_path / "f.dat")
    np.zeros(10 + 1000 * 3).tofile(path)
    mm = np.memmap(path, dtype="float64", mode="r+", offset=80, shape=(1000, 3), order="F")
    Parallel(n_jobs=2)(delayed(put_column)(mm, c, c + 1.0) for c in range(3))
    data = np.fromfile(path, dtype="float64")
    assert not data[:10].any()  # the header before the offset is untouched
    np.testing.assert_array_equal(
        data[10:].reshape((1000, 3), order="F"), np.tile([1.0, 2.0, 3.0], (1000, 1))
    )


def test_a_small_memmap_goes_by_reference_too(tmp_path):
    path, mm = _new_memmap(tmp_path, shape=(4, 2))
    [d] = Parallel(n_jobs=2)(delayed(describe)(mm[1:]) for _ in range(1))
    assert d == {"type": "memmap", "filename": path, "mode": "r+", "writeable": True, "first": 0.0}


def test_copy_on_write_and_read_only_memmaps_keep_numpys_semantics(tmp_path):
    path, mm = _new_memmap(tmp_path)
    mm[:] = 3.0
    mm.flush()
    cow = np.memmap(path, dtype="float64", mode="c", shape=(ROWS, 2))
    assert Parallel(n_jobs=2)(delayed(add_one_and_read)(cow) for _ in range(3)) == [4.0] * 3
    assert _file(path)[0, 0] == 3.0 and cow[0, 0] == 3.0  # private to each worker's mapping
    ro = np.memmap(path, dtype="float64", mode="r", shape=(ROWS, 2))
    with pytest.raises(ValueError, match="read-only"):
        Parallel(n_jobs=2)(delayed(add_one_and_read)(ro) for _ in range(1))


def test_a_writable_memmap_whose_file_is_gone_is_an_error(tmp_path):
    path, mm = _new_memmap(tmp_path, shape=(10, 2))
    os.unlink(path)
    with pytest.raises(PicklingError, match="no longer exists"):
        Parallel(n_jobs=2)(delayed(put_column)(mm, 0, 1.0) for _ in range(1))
    ro = np.memmap(str(tmp_path / "ro.dat"), dtype="float64", mode="w+", shape=(10,))
    ro[:] = 7.0
    ro = np.memmap(ro.filename, dtype="float64", mode="r", shape=(10,))
    os.unlink(ro.filename)  # "r": a copy has the same semantics
    assert Parallel(n_jobs=2)(delayed(describe)(ro) for _ in range(1))[0]["first"] == 7.0


def test_a_memmap_result_comes_back_by_reference(tmp_path):
    path, mm = _new_memmap(tmp_path)
    [back] = Parallel(n_jobs=2)(delayed(identity)(mm[10:20]) for _ in range(1))
    assert isinstance(back, np.memmap) and back.filename == path
    back[:] = 9.0
    assert _file(path)[10, 0] == 9.0


def test_outside_a_call_memmaps_pickle_by_value(tmp_path):
    _, mm = _new_memmap(tmp_path, shape=(10, 2))
    out = pickle.loads(pickle.dumps(mm, protocol=5))
    assert out.filename is None and not arrays.active()


# -- large arguments: mmap_mode ---------------------------------------------------------


@pytest.mark.parametrize("shape", [(100, 100), (3000, 100)])
def test_the_same_function_works_whatever_the_size(shape, clean):
    a = np.random.default_rng(0).random(shape)
    before = a.copy()
    out = Parallel(n_jobs=2, batch_size=1)(delayed(center)(a) for _ in range(3))
    assert out == [center(before.copy())] * 3
    np.testing.assert_array_equal(a, before)  # the parent's array is unchanged
    assert clean() == []


@pytest.mark.parametrize("pickler", PICKLERS)
def test_copy_on_write_each_batch_sees_the_original(pickler, clean):
    a = np.zeros((3000, 100))
    out = Parallel(n_jobs=2, batch_size=1, pickler=pickler)(delayed(add_one_and_read)(a) for _ in range(6))
    assert out == [1.0] * 6 and not a.any()
    [d] = Parallel(n_jobs=2, pickler=pickler)(delayed(describe)(a) for _ in range(1))
    assert d["type"] == "memmap" and d["mode"] == "c" and d["writeable"]
    assert d["filename"].startswith(os.path.dirname(session().path))
    assert clean() == []


def test_read_only_mode_error_names_mmap_mode():
    a = np.zeros((3000, 100))
    with pytest.raises(ValueError, match="read-only") as info:
        Parallel(n_jobs=2, mmap_mode="r")(delayed(center)(a) for _ in range(1))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "mmap_mode='r'" in notes and "mmap_mode='c'" in notes


def test_read_only_mode_error_names_mmap_mode_in_an_executor_too():
    # an Executor's batch fails each task on its own (isolated): the note was not added there
    a = np.zeros((3000, 100))
    with picklepool.Executor(max_workers=2, mmap_mode="r") as ex:
        futures = [ex.submit(center, a), ex.submit(center, np.zeros(3))]
        with pytest.raises(ValueError, match="read-only") as info:
            futures[0].result()
        assert futures[1].result() == center(np.zeros(3))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "mmap_mode='r'" in notes and "mmap_mode='c'" in notes


@pytest.mark.parametrize("mode", ["r+", "w+"])
def test_shared_modes_let_later_tasks_see_writes(mode):
    a = np.zeros(200_000)
    # one batch in flight at a time: each task starts after the previous one ended
    out = Parallel(n_jobs=2, mmap_mode=mode, batch_size=1, pre_dispatch=1)(
        delayed(read_then_write)(a, i + 1.0) for i in range(4)
    )
    assert out == [0.0, 1.0, 2.0, 3.0] and a[0] == 0.0  # the parent's array is not the file
    out = Parallel(n_jobs=2, batch_size=1, pre_dispatch=1)(
        delayed(read_then_write)(a, i + 1.0) for i in range(4)
    )
    assert out == [0.0] * 4  # "c": every task has its own copy


@pytest.mark.parametrize("mode", ["c", "r", "r+", "w+"])
def test_large_arguments_arrive_as_memmaps(mode):
    a = np.ones(200_000)
    [d] = Parallel(n_jobs=2, mmap_mode=mode)(delayed(describe)(a) for _ in range(1))
    assert d["type"] == "memmap" and d["filename"] and d["first"] == 1.0
    assert d["mode"] == {"w+": "r+"}.get(mode, mode) and d["writeable"] == (mode != "r")


@pytest.mark.parametrize("max_nbytes", [0, "0", "0K"])
def test_max_nbytes_0_shares_every_array_as_in_joblib(max_nbytes):
    # "Buffers of at least max_nbytes": joblib memmaps every array with 0; here 0 was
    # the internal "nothing is large" and every array was copied.
    out = Parallel(n_jobs=2, max_nbytes=max_nbytes)(delayed(type_name)(a) for a in [np.ones(3), np.ones(0)])
    assert out == ["memmap", "ndarray"]  # an empty array has nothing to share


def write_first(x):
    x.flat[0] = 7.0
    return type(x).__name__, float(x.flat[0])


def test_an_array_of_exactly_max_nbytes_is_copied_as_in_joblib():
    # joblib shares the arrays larger than max_nbytes (a.nbytes > max_nbytes); here an
    # array of exactly that size (1024 x 128 float64 under the default "1M") was shared
    # too, so under mmap_mode="r" a task writing to it failed where joblib's worked.
    exact, larger = np.zeros(1000), np.zeros(1001)  # 8000 and 8008 bytes
    out = Parallel(n_jobs=2, max_nbytes=8000, mmap_mode="r")(delayed(type_name)(a) for a in [exact, larger])
    assert out == ["ndarray", "memmap"]
    out = Parallel(n_jobs=2, max_nbytes="1M", mmap_mode="r")(
        delayed(write_first)(np.zeros((1024, 128))) for _ in range(2)
    )
    assert out == [("ndarray", 7.0)] * 2


def values(x):
    return (type(x).__name__, x.flags.writeable, x.tolist())


def _count_writes(monkeypatch) -> list[int]:
    """The sizes of the buffers the calls write to files, as they are written."""
    from picklepool.pickler import buffers

    written: list[int] = []
    write = buffers.CallBuffers._write

    def counted(self, raw):
        written.append(raw.nbytes)
        return write(self, raw)

    monkeypatch.setattr(buffers.CallBuffers, "_write", counted)
    return written


@pytest.mark.parametrize("pickler", PICKLERS)
def test_a_large_strided_view_is_shared_once_as_in_joblib(pickler, monkeypatch, clean):
    # joblib memmaps X[:, :k] and X[::2] (a contiguous copy in one file); here they went
    # in band, copied into every batch, whatever max_nbytes said.
    written = _count_writes(monkeypatch)
    grid = np.arange(24.0).reshape(4, 6)
    views = [grid[:, 1:4], grid[::2], grid.T[::-1], np.asfortranarray(grid)[:, ::2]]
    frozen = grid[:, ::3]
    frozen.flags.writeable = False
    out = Parallel(n_jobs=2, max_nbytes=0, pickler=pickler)(delayed(values)(v) for v in [*views, frozen])
    assert out == [("memmap", True, v.tolist()) for v in views] + [("memmap", False, frozen.tolist())]
    written.clear()
    view = np.arange(400_000.0)[::2]  # 1.6 MB: large by the default max_nbytes
    out = Parallel(n_jobs=2, batch_size=1, pickler=pickler)(delayed(type_name)(view) for _ in range(8))
    assert out == ["memmap"] * 8 and written == [view.nbytes]  # one file for the 8 batches
    assert clean() == []


def first_last(x):
    return (type(x).__name__, float(x[0]), float(x[-1]))


def test_the_same_strided_view_made_afresh_for_each_task_is_shared_once(monkeypatch, clean):
    # `delayed(f)(X[::2]) for ...` makes a new view object per task: each was copied and
    # written to a file of its own (8 files of 1.6 MB here), where a contiguous slice made
    # afresh per task (X[:k]) was written once; joblib writes one file for both.
    written = _count_writes(monkeypatch)
    base = np.arange(800_000.0)
    views = [base[::2] for _ in range(8)] + [base[1::2], base[::-2]]  # the last two: other data
    out = Parallel(n_jobs=2, batch_size=1)(delayed(first_last)(v) for v in views)
    assert out == [("memmap", 0.0, 799_998.0)] * 8 + [("memmap", 1.0, 799_999.0), ("memmap", 799_999.0, 1.0)]
    assert written == [views[0].nbytes] * 3  # one file per distinct view, not per task
    assert clean() == []


def test_temporary_memmaps_come_back_as_plain_arrays():
    a = np.ones(200_000)
    [back] = Parallel(n_jobs=2)(delayed(identity)(a) for _ in range(1))
    assert type(back) is np.ndarray and back[0] == 1.0
    assert Parallel(n_jobs=2)(delayed(backed_by_memmap)(a) for _ in range(1)) == [True]


# -- temp_folder --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["argument", "JOBLIB_TEMP_FOLDER", "with"])
def test_temp_folder_holds_the_files_and_is_emptied(tmp_path, monkeypatch, how, clean):
    a = np.ones(200_000)
    folder = str(tmp_path / "tmp")
    if how == "JOBLIB_TEMP_FOLDER":
        monkeypatch.setenv("JOBLIB_TEMP_FOLDER", folder)
        out = Parallel(n_jobs=2)(delayed(describe)(a) for _ in range(2))
    elif how == "argument":
        out = Parallel(n_jobs=2, temp_folder=folder)(delayed(describe)(a) for _ in range(2))
    else:
        with Parallel(n_jobs=2, temp_folder=folder) as p:
            out = p(delayed(describe)(a) for _ in range(2))
            again = p(delayed(describe)(a) for _ in range(1))
            assert len(os.listdir(folder)) == 1  # the block's folder stays while it runs
        assert os.path.dirname(again[0]["filename"]) == os.path.dirname(out[0]["filename"])
    assert {os.path.dirname(os.path.dirname(d["filename"])) for d in out} == {folder}
    assert os.listdir(folder) == [] and clean() == []


def memmap_in_a_removed_folder(n):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        mm = np.memmap(os.path.join(folder, "x.dat"), dtype="float64", mode="w+", shape=(n,))
        mm[:] = 1.0
        return mm  # the folder is removed before the result is pickled


@pytest.mark.parametrize("n", [10, ROWS])
def test_a_returned_memmap_whose_file_is_gone_says_return_a_copy(n, clean):
    # the reply's error must speak of the task's return, not of sending to workers
    with pytest.raises(PicklingError, match="returned by a task") as info:
        Parallel(n_jobs=2)(delayed(memmap_in_a_removed_folder)(n) for _ in range(1))
    text = str(info.value)
    assert "return np.array(x)" in text and "travels to workers" not in text
    assert "memmap_in_a_removed_folder" in text
    with picklepool.Executor(max_workers=2) as ex:
        with pytest.raises(PicklingError, match="return np.array"):
            ex.submit(memmap_in_a_removed_folder, n).result()
    assert clean() == []


def test_an_argument_memmap_whose_file_is_gone_without_sharing_says_pass_a_copy(tmp_path):
    # max_nbytes=None: the batch is pickled with no array sharing, but still as a batch
    path, mm = _new_memmap(tmp_path, shape=(10, 2))
    os.unlink(path)
    with pytest.raises(PicklingError, match="travels to workers") as info:
        Parallel(n_jobs=2, max_nbytes=None)(delayed(put_column)(mm, 0, 1.0) for _ in range(1))
    assert "returned by a task" not in str(info.value)
