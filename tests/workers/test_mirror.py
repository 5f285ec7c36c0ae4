"""Warm workers mirror the parent's state: sys.path, limits, the working folder, numeric settings."""

from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys
import types

import pytest

from picklepool import Parallel, delayed
from picklepool.errors import UnpicklingError

from ..conftest import run_python


def _warm():
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


def test_a_folder_added_to_sys_path_after_the_pool_started(tmp_path, monkeypatch):
    _warm()  # the workers exist before the folder is on the parent's path
    (tmp_path / "late_module_for_mirror.py").write_text("def inc(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "late_module_for_mirror", raising=False)
    import late_module_for_mirror

    # pickler="pickle" sends the function by reference: the worker must import it.
    out = Parallel(n_jobs=2, pickler="pickle")(delayed(late_module_for_mirror.inc)(i) for i in range(6))
    assert out == [1, 2, 3, 4, 5, 6]


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value):
    n = 0
    while value:
        value, n = value[0], n + 1
    return n


@contextlib.contextmanager
def limit(get, set_, value):
    """The parent's limit at *value* for the block (``sys.setrecursionlimit`` and the like)."""
    old = get()
    set_(value)
    try:
        yield old
    finally:
        set_(old)


def test_a_raised_recursion_limit_reaches_the_workers():
    _warm()
    with limit(sys.getrecursionlimit, sys.setrecursionlimit, 20_000):
        out = Parallel(n_jobs=2)(delayed(nested)(3000) for _ in range(2))
    assert [depth_of(v) for v in out] == [3000, 3000]


STACK_SCRIPT = """
import sys, threading
from picklepool import Parallel, delayed
from picklepool.wire import thread_stack_size

sys.setrecursionlimit(200_000)
threading.stack_size(512 * 1024 * 1024)  # (the deep-recursion recipe: with a thread of its own)

def depth(n):
    return 0 if n == 0 else 1 + sum(map(depth, [n - 1]))  # (through C calls: the C stack)

def task(n):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("d", depth(n)))
    t.start()
    t.join()
    return out.get("d")

assert Parallel(n_jobs=2)(delayed(task)(60_000) for _ in range(2)) == [60_000, 60_000]
assert thread_stack_size() == 512 * 1024 * 1024  # (the parent's is left as it was)
print("ok")
"""


def test_a_raised_thread_stack_size_reaches_the_workers():
    # the worker's threads had the platform's 8 MiB: the task's recursion crashed it (SIGSEGV)
    proc = run_python(STACK_SCRIPT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def read_relative(name):
    with open(name) as f:
        return f.read()


def test_relative_paths_open_the_same_files(tmp_path, monkeypatch):
    _warm()
    (tmp_path / "data.txt").write_text("from the parent's folder")
    monkeypatch.chdir(tmp_path)
    assert (
        Parallel(n_jobs=2)(delayed(read_relative)("data.txt") for _ in range(3))
        == ["from the parent's folder"] * 3
    )


def test_a_module_made_at_run_time_is_named_as_the_cause(monkeypatch):
    module = types.ModuleType("made_at_run_time")
    exec("def f(x):\n    return x\n", module.__dict__)
    module.f.__module__ = "made_at_run_time"
    monkeypatch.setitem(sys.modules, "made_at_run_time", module)
    with pytest.raises(UnpicklingError) as info:
        Parallel(n_jobs=2, pickler="pickle")(delayed(module.f)(i) for i in range(2))
    text = str(info.value)
    # (it said to use hybrid or cloudpickle, which send it by name too: register it instead)
    assert "'made_at_run_time' was made at run time in this process" in text
    assert "cloudpickle.register_pickle_by_value(module) (with pickler 'hybrid' or 'cloudpickle')" in text


def worker_cwd():
    return os.getcwd()


def test_the_parent_state_is_restored_when_it_changes_back(tmp_path, monkeypatch):
    here = os.getcwd()
    monkeypatch.chdir(tmp_path)
    assert set(Parallel(n_jobs=2, batch_size=1)(delayed(worker_cwd)() for _ in range(4))) == {str(tmp_path)}
    monkeypatch.chdir(here)
    assert set(Parallel(n_jobs=2, batch_size=1)(delayed(worker_cwd)() for _ in range(4))) == {here}


def write_file(path):
    with open(path, "w") as f:
        f.write("x")
    return os.stat(path).st_mode & 0o777


def set_umask(mask):
    return os.umask(mask)


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_files_a_task_creates_get_the_parents_umask(tmp_path):
    # Workers started before the parent's os.umask(0o077) created files readable
    # by all (0o644), workers started after it 0o600.
    _warm()

    def modes(prefix):
        files = [str(tmp_path / f"{prefix}{i}") for i in range(4)]
        return Parallel(n_jobs=2, batch_size=1)(delayed(write_file)(f) for f in files)

    with umask(0o077):
        assert modes("f") == [0o600] * 4
        # a task that changes its worker's umask: the parent's next change goes over it
        Parallel(n_jobs=2, batch_size=1)(delayed(set_umask)(0) for _ in range(4))
    with umask(0o022):
        assert modes("h") == [0o644] * 4


def test_a_deleted_working_folder_is_named_as_the_cause(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(FileNotFoundError, match="working folder was deleted.*os.chdir"):
        Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4))
    monkeypatch.chdir(tmp_path)
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


def wander_off(folder):
    os.chdir(folder)
    return os.getcwd()


def test_a_folder_a_task_moved_its_worker_to_stays_until_the_parent_moves(tmp_path, monkeypatch):
    # as in a loop in the parent, and in a loky worker: the task's os.chdir lasts in its
    # worker; the parent's own next os.chdir goes over it
    from picklepool import Executor

    other = tmp_path / "other"
    other.mkdir()
    with Executor(max_workers=1) as ex:
        assert ex.submit(wander_off, str(tmp_path)).result() == str(tmp_path)
        assert ex.submit(worker_cwd).result() == str(tmp_path)
        monkeypatch.chdir(other)
        assert ex.submit(worker_cwd).result() == str(other)


def decimal_third(_):
    import decimal

    return str(decimal.Decimal(1) / decimal.Decimal(3))


def test_the_callers_decimal_context_reaches_the_workers():
    import decimal

    _warm()
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        ctx.rounding = decimal.ROUND_DOWN
        here = decimal_third(0)
        out = Parallel(n_jobs=2)(delayed(decimal_third)(i) for i in range(4))
    assert here == "0." + "3" * 40
    assert out == [here] * 4
    # back to the default in the parent: the workers follow, they do not keep 40 digits
    assert Parallel(n_jobs=2)(delayed(decimal_third)(i) for i in range(4)) == ["0." + "3" * 28] * 4


@pytest.mark.parametrize("chunksize", [1, 2])
def test_every_call_of_an_executor_map_runs_with_the_settings_of_the_map(chunksize):
    # With buffersize, map submits its later calls as the results are read: there the
    # reader's thread was read, outside the block, and those calls got 28 digits.
    import decimal

    from picklepool import Executor

    with Executor(max_workers=2) as ex:
        with decimal.localcontext() as ctx:
            ctx.prec = 5
            results = ex.map(decimal_third, range(6), chunksize=chunksize, buffersize=1)
        assert list(results) == ["0.33333"] * 6


def set_precision_then_third(prec):
    import decimal

    decimal.getcontext().prec = prec
    return decimal_third(0)


def test_a_decimal_context_a_task_set_stays_until_the_parents_changes_and_after_its_block_ends():
    import decimal

    from picklepool import Executor

    with Executor(max_workers=1) as ex:
        assert ex.submit(set_precision_then_third, 5).result() == "0.33333"
        assert ex.submit(decimal_third, 0).result() == "0.33333"  # as in a loop in the parent
        with decimal.localcontext() as ctx:
            ctx.prec = 9
            assert ex.submit(decimal_third, 0).result() == "0." + "3" * 9
        # the block's end puts back the context before it: in a loop, the task's (it gave 28 digits)
        assert ex.submit(decimal_third, 0).result() == "0.33333"
        decimal.getcontext().prec = 12  # a change of the parent's own: the tasks' from now on
        try:
            assert ex.submit(decimal_third, 0).result() == "0." + "3" * 12
        finally:
            decimal.getcontext().prec = 28


def divide_by_zero(x):
    import numpy as np

    return float(np.float64(x) / np.float64(0.0))


def test_numpy_floating_point_errors_raise_in_workers_as_in_the_parent():
    np = pytest.importorskip("numpy")
    _warm()
    with np.errstate(divide="raise"):
        with pytest.raises(FloatingPointError):
            divide_by_zero(1.0)
        with pytest.raises(FloatingPointError) as info:
            Parallel(n_jobs=2)(delayed(divide_by_zero)(x) for x in (1.0, 2.0))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "divide_by_zero" in notes and ("task 0" in notes or "task 1" in notes)
    # the default again: a warning and inf, in the parent and in the workers
    with pytest.warns(RuntimeWarning):
        assert divide_by_zero(1.0) == float("inf")
    assert Parallel(n_jobs=2)(delayed(divide_by_zero)(x) for x in (1.0, 2.0)) == [float("inf")] * 2


def divide_by_zero_mode(x):
    np = __import__("numpy")
    with np.errstate(over="raise"):  # a change of the task's own, inside the mirrored state
        return float(np.float64(x) / np.float64(0.0)), np.geterr()["divide"], np.geterr()["invalid"]


def test_a_callback_error_mode_of_the_parent_is_numpys_default_in_the_workers():
    # np.errstate(divide="call") hands the error to the parent's np.seterrcall function,
    # which the worker does not have: every task dividing by zero raised numpy's
    # NameError("python callback specified for divide by zero ... but no function found").
    np = pytest.importorskip("numpy")
    _warm()
    seen = []
    old = np.seterrcall(lambda kind, flag: seen.append(kind))
    try:
        with np.errstate(divide="call", invalid="raise"), contextlib.suppress(RuntimeWarning):
            assert divide_by_zero_mode(1.0) == (float("inf"), "call", "raise") and seen
            out = Parallel(n_jobs=2)(delayed(divide_by_zero_mode)(x) for x in (1.0, 2.0))
    finally:
        np.seterrcall(old)
    assert out == [(float("inf"), "warn", "raise")] * 2  # the rest of the state still mirrored


def digits_of(n):
    return len(str(10**n))


@pytest.mark.skipif(not hasattr(sys, "set_int_max_str_digits"), reason="Python without the int digit limit")
def test_a_raised_int_digit_limit_reaches_the_workers():
    _warm()
    with limit(sys.get_int_max_str_digits, sys.set_int_max_str_digits, 20_000):
        out = Parallel(n_jobs=2)(delayed(digits_of)(10_000) for _ in range(2))
    assert out == [10_001, 10_001]


def test_an_executor_sees_the_parent_as_it_is_when_tasks_are_submitted(tmp_path, monkeypatch):
    import decimal

    from picklepool import Executor

    with Executor(max_workers=2, pickler="pickle") as ex:
        assert ex.submit(abs, -1).result() == 1  # the executor and its workers exist first
        (tmp_path / "late_module_for_executor.py").write_text("def inc(x):\n    return x + 1\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, "late_module_for_executor", raising=False)
        import late_module_for_executor

        assert list(ex.map(late_module_for_executor.inc, range(4))) == [1, 2, 3, 4]
        with decimal.localcontext() as ctx:
            ctx.prec = 12
            assert ex.submit(decimal_third, 0).result() == "0." + "3" * 12
        assert ex.submit(decimal_third, 0).result() == "0." + "3" * 28


def int_digit_limit(_):
    return sys.get_int_max_str_digits()


@pytest.mark.skipif(not hasattr(sys, "set_int_max_str_digits"), reason="Python without the int digit limit")
def test_no_int_digit_limit_in_the_parent_is_no_limit_in_the_workers():
    _warm()
    with limit(sys.get_int_max_str_digits, sys.set_int_max_str_digits, 0) as old:  # 0: no limit
        out = Parallel(n_jobs=2)(delayed(int_digit_limit)(i) for i in range(2))
        assert Parallel(n_jobs=2)(delayed(digits_of)(10_000) for _ in range(2)) == [10_001, 10_001]
    assert out == [0, 0]
    assert Parallel(n_jobs=2)(delayed(int_digit_limit)(i) for i in range(2)) == [old, old]


def test_the_numeric_state_read_in_the_parent_follows_every_change():
    # numeric_state keeps what it read while the context looks the same (decimal's
    # __reduce__, numpy's context variable): each change is still read at once
    decimal = pytest.importorskip("decimal")
    np = pytest.importorskip("numpy")
    from picklepool.workers import mirror

    def fresh():
        dec = mirror._decimal_now(decimal)
        err = tuple(sorted(np.geterr().items()))
        default = (mirror._DECIMAL_DEFAULT, mirror._NUMPY_DEFAULT)
        return (None if dec == default[0] else dec, None if err == default[1] else err, None, None)

    seen = [mirror.numeric_state()]
    with decimal.localcontext() as ctx:
        ctx.prec = 7
        seen.append(mirror.numeric_state())
        ctx.traps[decimal.Inexact] = True  # changed in place: the same context object
        seen.append(mirror.numeric_state())
        assert seen[-1] == fresh() and "Inexact" in seen[-1][0][6]
        with np.errstate(divide="raise"):
            seen.append(mirror.numeric_state())
            assert seen[-1] == fresh() and ("divide", "raise") in seen[-1][1]
        old = np.seterr(over="raise")
        try:
            assert mirror.numeric_state() == fresh()
        finally:
            np.seterr(**old)
        assert mirror.numeric_state() == fresh()
    assert mirror.numeric_state() == fresh() == seen[0] == mirror.NO_NUMERIC
    assert seen[1][0][0] == 7 and seen[1][1] is None


def test_the_umask_is_read_again_after_its_descriptor_was_closed_under_it():
    # a daemonizing program closes every descriptor (os.closerange): the number the umask
    # was read from may be another file's then, which is left alone
    from picklepool.workers import mirror

    assert mirror.umask() >= 0  # read once: the descriptor is kept
    fd = mirror._status[1]
    os.close(fd)
    r, w = os.pipe()  # the lowest free numbers: the closed one among them
    try:
        with umask(0o077):
            assert mirror.umask() == 0o077
        assert mirror._status[1] not in (r, w)
        os.write(w, b"x")
        assert os.read(r, 1) == b"x"  # the pipe was not closed by the reader
    finally:
        os.close(r)
        os.close(w)


def test_the_umask_read_is_the_mask_in_force_and_leaves_it_so():
    from picklepool.workers import mirror

    for mask in (0o077, 0o077, 0o002, 0o000, 0o027):
        with umask(mask):
            assert mirror.umask() == mask
            assert mirror.umask() == mask
            assert os.umask(mask) == mask  # still in force


def test_reading_the_umask_never_sets_another_mask_even_for_a_moment(tmp_path, monkeypatch):
    # Read by os.umask(guess) and set back, the mask was the guess for a moment: a file
    # another thread created then got 0o664 though the program had set 0o077, and a mask
    # a signal handler set then was undone. Every mask set while reading is recorded here.
    from picklepool.workers import mirror

    real = os.umask
    changed = []

    def spy(mask):
        before = real(mask)
        if before != mask:
            changed.append((oct(before), oct(mask)))
        return before

    _warm()
    with umask(0o002):
        mirror.umask()  # read last: 0o002
        real(0o077)  # the program's new mask
        monkeypatch.setattr(os, "umask", spy)
        assert mirror.umask() == 0o077
        paths = [str(tmp_path / f"f{i}") for i in range(4)]
        assert Parallel(n_jobs=2, batch_size=1)(delayed(write_file)(p) for p in paths) == [0o600] * 4
        monkeypatch.setattr(os, "umask", real)
        assert changed == []
        assert real(0o077) == 0o077  # the program's mask is still in force


def test_sys_path_entries_imports_skip_do_not_fail_the_call(tmp_path):
    # importlib reads only the str entries of sys.path: a Path, bytes, a lock are skipped
    # there, and must not fail the call; a str subclass of the script is sent as a str
    (tmp_path / "where_mod.py").write_text("def where():\n    return __file__\n")
    out = run_python(
        f"""
        import pathlib, sys, threading
        from picklepool import Parallel, delayed

        class Entry(str):
            pass

        if __name__ == "__main__":
            sys.path[:0] = [pathlib.Path("/nowhere"), b"/nowhere", threading.Lock(), Entry({str(tmp_path)!r})]
            import where_mod
            print(Parallel(n_jobs=2)(delayed(where_mod.where)() for _ in range(4)) == [where_mod.where()] * 4)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"]


def spawn_a_child(method):
    """Start a child process of *method* from the task, as a task's Pool would; its exit code."""
    import multiprocessing
    import time

    child = multiprocessing.get_context(method).Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    return child.exitcode


def default_start_method(_):
    import multiprocessing

    return multiprocessing.get_start_method(allow_none=True)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_task_starts_spawned_processes_as_the_parent_would(method):
    # loky's workers start with "loky" as multiprocessing's default start method, and
    # the standard library's spawned children, which cannot find it, died in their
    # start (exit code 1: "cannot find context for 'loky'"); a Pool replaced them for ever.
    out = Parallel(n_jobs=2)(delayed(spawn_a_child)(method) for _ in range(2))
    assert out == [0, 0]


def test_the_parents_default_start_method_reaches_the_workers():
    import multiprocessing

    _warm()
    parents = multiprocessing.get_start_method(allow_none=True)
    try:
        for method in ("spawn", None):
            multiprocessing.set_start_method(method, force=True)
            out = Parallel(n_jobs=2, batch_size=1)(delayed(default_start_method)(i) for i in range(4))
            assert out == [method] * 4
    finally:
        multiprocessing.set_start_method(parents, force=True)


def test_an_initializer_starts_spawned_processes_as_the_parent_would():
    # Parallel's initializer runs at the worker's start, before any batch is mirrored.
    from tests.workers import start_method_initializer as init

    out = Parallel(n_jobs=2, initializer=init.remember_exit_code)(delayed(init.exit_code)() for _ in range(2))
    assert out == [0, 0]


def warn_and_report(i):
    import warnings

    warnings.warn(f"task {i} warns", RuntimeWarning, stacklevel=1)
    return i


def raise_warnings_as_errors(_):
    import warnings

    warnings.simplefilter("error")  # in this worker, until the parent's filters change
    return True


def test_the_parents_warnings_filters_decide_in_the_workers_as_in_the_parent():
    # A warm worker kept the filters it started with: a filter turning a warning into an
    # error raised in the parent and not in a worker (the task returned), as under joblib
    import warnings

    _warm()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeWarning, match="task 0 warns"):
            warn_and_report(0)
        with pytest.raises(RuntimeWarning, match=r"task \d warns"):  # (the first to fail)
            Parallel(n_jobs=2, batch_size=1)(delayed(warn_and_report)(i) for i in range(4))
    with warnings.catch_warnings():  # the block is over in the parent: over in the workers too
        warnings.simplefilter("ignore", RuntimeWarning)
        assert Parallel(n_jobs=2, batch_size=1)(delayed(warn_and_report)(i) for i in range(4)) == [0, 1, 2, 3]
    # a task that changed its worker's filters: the parent's next change goes over it
    assert Parallel(n_jobs=2, batch_size=1)(delayed(raise_warnings_as_errors)(i) for i in range(4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert Parallel(n_jobs=2, batch_size=1)(delayed(warn_and_report)(i) for i in range(4)) == [0, 1, 2, 3]


def test_warnings_a_script_ignores_are_not_printed_by_its_workers():
    proc = run_python(
        """
        import warnings
        from picklepool import Parallel, delayed

        class Noisy(UserWarning):
            pass

        def task(i):
            warnings.warn(f"noisy {i}", Noisy)
            warnings.warn(f"kept {i}", FutureWarning)
            return i

        Parallel(n_jobs=2)(delayed(task)(i) for i in range(2))  # warm workers, default filters
        warnings.simplefilter("ignore", Noisy)  # a category of __main__
        print(Parallel(n_jobs=2, batch_size=1)(delayed(task)(i) for i in range(10, 14)))
        warnings.simplefilter("error", Noisy)
        try:
            Parallel(n_jobs=2)(delayed(task)(i) for i in range(20, 21))
        except Noisy as exc:
            print("raised", type(exc).__name__, exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[10, 11, 12, 13]", "raised Noisy noisy 20"]
    assert "noisy 1" in proc.stderr  # the first call's: the default filters then
    assert "noisy 1" + "0" not in proc.stderr and "noisy 13" not in proc.stderr, proc.stderr
    assert "kept 12" in proc.stderr  # the filter ignores only its category


def ignore_runtime_warnings():
    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)


def test_warnings_filters_an_initializer_set_stay_ahead_of_the_parents():
    # the initializer was run to set them: the parent's filters, mirrored at each batch,
    # do not undo them (its filters are behind them)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        out = Parallel(n_jobs=2, batch_size=1, initializer=ignore_runtime_warnings)(
            delayed(warn_and_report)(i) for i in range(6)
        )
    assert out == list(range(6))


def test_the_parents_error_filter_does_not_fail_the_imports_a_worker_makes_to_load_a_batch(tmp_path):
    # The parent imported a module (its import warned, a dependency's DeprecationWarning)
    # before simplefilter("error"); a worker imports it to load the task's function: the
    # parent's "error" filter failed that import, the call with an UnpicklingError, while the
    # parent ran the function without a warning. Only the tasks' own warnings are its concern.
    (tmp_path / "deprecated_dep.py").write_text(
        "import warnings\n"
        "warnings.warn('deprecated_dep is deprecated', DeprecationWarning, stacklevel=2)\n"
        "class Point:\n"
        "    def __init__(self, x):\n"
        "        self.x = x\n"
        "def double(p):\n"
        "    return p.x * 2\n"
        "def warns(p):\n"
        "    warnings.warn(f'task {p.x} warns', RuntimeWarning)\n"
    )
    proc = run_python(
        """
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import deprecated_dep
        from picklepool import Parallel, delayed

        warnings.simplefilter("error")
        points = [deprecated_dep.Point(i) for i in range(4)]
        print([deprecated_dep.double(p) for p in points])
        print(Parallel(n_jobs=2, batch_size=1)(delayed(deprecated_dep.double)(p) for p in points))
        try:
            Parallel(n_jobs=2)(delayed(deprecated_dep.warns)(p) for p in points[:1])
        except RuntimeWarning as exc:
            print("raised", exc)
        """,
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[0, 2, 4, 6]", "[0, 2, 4, 6]", "raised task 0 warns"], proc.stderr


def test_a_default_warning_is_not_printed_at_every_batch_under_an_error_filter():
    # the worker's own filters while it loads a batch, the parent's for the tasks: a swap
    # that reset the "default" registries printed a task's warning at each of its batches
    proc = run_python(
        """
        import warnings
        from picklepool import Parallel, delayed

        def task(i):
            warnings.warn("careful", UserWarning)
            return i

        warnings.simplefilter("error", RuntimeWarning)
        with Parallel(n_jobs=2, batch_size=1) as parallel:
            for _ in range(5):
                assert parallel(delayed(task)(i) for i in range(8)) == list(range(8))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert 0 < proc.stderr.count("UserWarning: careful") <= 2, proc.stderr  # once per worker


def test_a_default_warning_of_a_script_function_is_printed_once_per_worker_not_per_call():
    # warnings.warn keeps what it showed in the globals of the code that warns: each call's
    # copy of a __main__ function began with none, so the loop's one warning was printed
    # by every worker at every call, and the registry warn added made the copy look changed
    # by its task, so that the worker unpickled the function again at every call
    proc = run_python(
        """
        import warnings
        from picklepool import Parallel, delayed

        def task(i):
            warnings.warn("careful", UserWarning)
            return id(task.__globals__)

        copies = set()
        for _ in range(5):
            copies.update(Parallel(n_jobs=2, batch_size=1)(delayed(task)(i) for i in range(8)))
        print(len(copies) <= 2)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True"], proc.stderr
    assert 0 < proc.stderr.count("UserWarning: careful") <= 2, proc.stderr  # once per worker


def test_a_filter_whose_category_a_worker_cannot_import_leaves_the_others_in_force():
    # The filters travelled as one pickle: one category the workers could not import (a
    # module made at run time) made them keep their own filters, the "error" ignored
    proc = run_python(
        """
        import sys, types, warnings
        from picklepool import Parallel, delayed

        made = types.ModuleType("made_at_run_time")
        exec("class MadeWarning(UserWarning): pass", made.__dict__)
        sys.modules["made_at_run_time"] = made

        def task(i):
            warnings.warn(f"task {i} warns", RuntimeWarning)
            return i

        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", made.MadeWarning)
        try:
            Parallel(n_jobs=2, batch_size=1)(delayed(task)(i) for i in range(2))
        except RuntimeWarning as exc:
            print("raised", type(exc).__name__)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["raised RuntimeWarning"], proc.stderr


def io_defaults_seen(_=None):
    import csv
    import socket
    import tempfile

    return socket.getdefaulttimeout(), tempfile.gettempdir(), csv.field_size_limit()


def set_io_defaults(timeout, folder, limit=131072):
    import csv
    import socket
    import tempfile

    socket.setdefaulttimeout(timeout)
    tempfile.tempdir = folder
    csv.field_size_limit(limit)
    return io_defaults_seen()


def parse_wide_csv(width):
    import csv
    import io

    return [len(field) for row in csv.reader(io.StringIO("a," + "x" * width + "\n")) for field in row]


@contextlib.contextmanager
def io_defaults(timeout, folder, limit=131072):
    """The parent's socket default timeout, ``tempfile.tempdir`` and csv field limit for the block."""
    import csv
    import socket
    import tempfile

    old = socket.getdefaulttimeout(), tempfile.tempdir, csv.field_size_limit()
    socket.setdefaulttimeout(timeout)
    tempfile.tempdir = folder
    csv.field_size_limit(limit)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old[0])
        tempfile.tempdir = old[1]
        csv.field_size_limit(old[2])


def test_the_socket_timeout_temporary_folder_and_csv_limit_set_in_the_parent_reach_the_workers(tmp_path):
    # socket.setdefaulttimeout(10) at a script's top, then tasks that download: a warm worker
    # had no timeout, and a server that did not answer held the task for ever where the loop
    # raised TimeoutError; tempfile.tempdir set to a scratch disk: the tasks' files went to
    # the worker's /tmp; csv.field_size_limit(sys.maxsize), then tasks parsing csv files
    # with large fields: "field larger than field limit (131072)" (all as under joblib)
    _warm()
    with io_defaults(7.5, str(tmp_path), 1 << 20):
        want = io_defaults_seen()
        assert want == (7.5, str(tmp_path), 1 << 20)
        assert Parallel(n_jobs=2, batch_size=1)(delayed(io_defaults_seen)(i) for i in range(4)) == [want] * 4
        assert Parallel(n_jobs=2)(delayed(parse_wide_csv)(200_000) for _ in range(2)) == [[1, 200_000]] * 2
        # a task that changes its worker's: the parent's next change goes over it
        Parallel(n_jobs=2, batch_size=1)(delayed(set_io_defaults)(1.0, "/", 10) for _ in range(4))
    with io_defaults(None, None):  # the parent's back to none: the workers' own again
        out = Parallel(n_jobs=2, batch_size=1)(delayed(io_defaults_seen)(i) for i in range(4))
        assert {(timeout, limit) for timeout, _, limit in out} == {(None, 131072)}


def temporary_file_folder(_=None):
    import tempfile

    with tempfile.NamedTemporaryFile() as f:
        return os.path.dirname(f.name)


@pytest.mark.parametrize("kind", [pathlib.Path, os.fsencode])
def test_a_temporary_folder_set_as_a_path_or_bytes_reaches_the_workers(tmp_path, kind):
    # tempfile.tempdir = Path(scratch) (tempfile takes a path or bytes as well as a str):
    # only a str was sent, and the tasks' temporary files went to the worker's /tmp
    _warm()
    with io_defaults(None, kind(str(tmp_path))):
        want = temporary_file_folder()
        assert os.fsdecode(want) == str(tmp_path)
        assert (
            Parallel(n_jobs=2, batch_size=1)(delayed(temporary_file_folder)(i) for i in range(4))
            == [want] * 4
        )


def test_a_socket_timeout_an_initializer_set_stays_where_the_parent_has_none(tmp_path):
    with io_defaults(None, None):
        out = Parallel(
            n_jobs=2, batch_size=1, initializer=set_io_defaults, initargs=(3.0, str(tmp_path), 99)
        )(delayed(io_defaults_seen)(i) for i in range(4))
        assert out == [(3.0, str(tmp_path), 99)] * 4
    with io_defaults(7.5, None):  # the parent's own wins where it has one
        out = Parallel(
            n_jobs=2, batch_size=1, initializer=set_io_defaults, initargs=(3.0, str(tmp_path), 99)
        )(delayed(io_defaults_seen)(i) for i in range(4))
        assert out == [(7.5, str(tmp_path), 99)] * 4


def command_line(_):
    return list(sys.argv)


def local_zone(_):
    import time

    return os.environ.get("TZ"), time.tzname, time.localtime(0).tm_hour


def change_zone_and_command_line(_):
    import time

    os.environ["TZ"] = "America/New_York"
    time.tzset()
    sys.argv[:] = ["changed by a task"]
    return local_zone(0)


def test_the_command_line_the_parent_changes_reaches_warm_workers(monkeypatch):
    # a warm worker kept the sys.argv it started with (a new one got the parent's): a task
    # that parses the command line read the old one, depending on which worker ran it
    _warm()
    monkeypatch.setattr(sys, "argv", ["script.py", "--epochs", "3"])
    assert Parallel(n_jobs=2)(delayed(command_line)(i) for i in range(4)) == [sys.argv] * 4


def test_a_command_line_that_is_not_a_sequence_does_not_fail_the_calls(monkeypatch):
    # an embedding program's sys.argv = None: every call raised "'NoneType' object is not
    # iterable" once sys.argv was mirrored, where calls worked before; the tasks see []
    _warm()
    monkeypatch.setattr(sys, "argv", None)
    assert Parallel(n_jobs=2)(delayed(command_line)(i) for i in range(2)) == [[], []]


def test_the_time_zone_the_parent_sets_reaches_warm_workers(monkeypatch):
    # os.environ["TZ"] = ...; time.tzset() in the parent: a warm worker kept the zone it
    # started with, so local times computed in tasks were off by the difference, silently
    import time

    _warm()
    for zone in ("Asia/Tokyo", None):
        if zone is None:
            monkeypatch.delenv("TZ", raising=False)
        else:
            monkeypatch.setenv("TZ", zone)
        time.tzset()
        try:
            expected = local_zone(0)
            assert Parallel(n_jobs=2)(delayed(local_zone)(i) for i in range(4)) == [expected] * 4
        finally:
            monkeypatch.undo()
            time.tzset()


def test_a_task_that_changes_its_time_zone_or_command_line_does_not_change_the_next_batch():
    out = Parallel(n_jobs=2, batch_size=1)(delayed(change_zone_and_command_line)(i) for i in range(4))
    assert {r[0] for r in out} == {"America/New_York"}
    assert Parallel(n_jobs=2, batch_size=1)(delayed(local_zone)(i) for i in range(6)) == [local_zone(0)] * 6
    assert Parallel(n_jobs=2, batch_size=1)(delayed(command_line)(i) for i in range(6)) == [sys.argv] * 6


def test_a_call_leaves_the_parents_temp_folder_free_to_follow_tmpdir(tmp_path):
    # picklepool's own tempfile.gettempdir() pinned tempfile.tempdir at the first call: a
    # TMPDIR set after it was ignored by the parent's own temporary files, and the pinned
    # folder was sent to the workers as if the program had chosen it
    out = run_python(
        f"""
        import os, tempfile
        from picklepool import Parallel, delayed

        def where(_):
            with tempfile.NamedTemporaryFile() as f:
                return os.path.dirname(f.name)

        print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)), tempfile.tempdir)
        os.environ["TMPDIR"] = {str(tmp_path)!r}
        print(where(0))
        print(sorted(set(Parallel(n_jobs=2)(delayed(where)(i) for i in range(4)))))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[0, 1, 2, 3] None", str(tmp_path), str([str(tmp_path)])]


def test_a_workers_temp_folder_follows_a_tmpdir_the_parent_set_after_the_worker_chose_its_own(tmp_path):
    # a worker whose tempfile had chosen its folder (a task's temporary file, /tmp) kept it
    # once the parent set TMPDIR: the loop's tasks wrote to the new folder, the workers' to /tmp
    out = run_python(
        f"""
        import os, tempfile
        from picklepool import Parallel, delayed

        def where(_):
            with tempfile.NamedTemporaryFile() as f:
                return os.path.dirname(f.name)

        first = set(Parallel(n_jobs=2, batch_size=1)(delayed(where)(i) for i in range(4)))
        print(first == {{os.path.abspath(tempfile._candidate_tempdir_list()[0])}})
        os.environ["TMPDIR"] = {str(tmp_path)!r}
        print(where(0))
        print(sorted(set(Parallel(n_jobs=2, batch_size=1)(delayed(where)(i) for i in range(4)))))
        del os.environ["TMPDIR"]
        again = set(Parallel(n_jobs=2, batch_size=1)(delayed(where)(i) for i in range(4)))
        print(again == {{where(0)}})
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["True", str(tmp_path), str([str(tmp_path)]), "True"]


_SETTINGS_SCRIPT = """
import csv, decimal, os, socket, sys, warnings
import picklepool
from picklepool import Executor, Parallel, delayed

def setup():  # what an initializer, or a task's one-time setup, sets in its process
    sys.setrecursionlimit(20000)
    decimal.getcontext().prec = 50
    os.chdir(os.environ["SCRATCH"])
    os.umask(0o077)
    socket.setdefaulttimeout(5.0)
    csv.field_size_limit(1 << 30)
    warnings.simplefilter("ignore", DeprecationWarning)

_ready = False

def lazily(_):
    global _ready
    if not _ready:
        setup()
        _ready = True
    return read(_)

def read(_):
    m = os.umask(0o077)
    os.umask(m)
    ignored = any(f[0] == "ignore" and f[2] is DeprecationWarning for f in warnings.filters)
    return (sys.getrecursionlimit(), decimal.getcontext().prec, os.getcwd(), oct(m),
            socket.getdefaulttimeout(), csv.field_size_limit(), ignored)

if __name__ == "__main__":
    how = sys.argv[1]
    if how == "executor":
        with Executor(max_workers=1, initializer=setup) as ex:
            print(ex.submit(read, 0).result())
            print(ex.submit(read, 1).result())
            decimal.getcontext().prec = 12  # the parent's change goes over the worker's
            print(ex.submit(read, 2).result()[1])
    elif how == "parallel":
        sys.setrecursionlimit(3000)  # the script's own, before the pool: setup's goes over it
        decimal.getcontext().prec = 30
        p = Parallel(n_jobs=2, initializer=setup)
        print(p(delayed(read)(i) for i in range(2))[0])
        print(p(delayed(read)(i) for i in range(2))[1])
        os.umask(0o027)  # the parent's change goes over the worker's
        print(p(delayed(read)(i) for i in range(2))[1][3])
    else:  # a task's one-time setup, behind a module flag: it stays as the flag does
        with Executor(max_workers=1) as ex:
            print(ex.submit(lazily, 0).result())
            print(ex.submit(lazily, 1).result())
            sys.setrecursionlimit(3000)
            print(ex.submit(lazily, 2).result()[0])
"""


@pytest.mark.parametrize("how", ["executor", "parallel", "lazily"])
def test_what_a_workers_own_code_sets_stays_until_the_parent_changes_it(tmp_path, how):
    # Every batch put the parent's settings back over the worker's: an initializer's
    # recursion limit, decimal precision, folder, umask, socket timeout... were gone by
    # its first task, and a task's one-time setup (behind a module flag that stayed set)
    # was undone from the next batch on, where a loop in the parent and a loky worker
    # keep both.
    lines = _run_script(tmp_path, _SETTINGS_SCRIPT, how)
    own = str((20000, 50, str(tmp_path / "scratch"), "0o77", 5.0, 1 << 30, True))
    last = {"executor": "12", "parallel": "0o27", "lazily": "3000"}[how]
    assert lines == [own, own, last]


def _run_script(tmp_path, text, how):
    """The lines *text*, run as a script in *tmp_path* with argument *how*, printed (the
    folder ``scratch`` in it made, its path in the environment as ``SCRATCH``)."""
    script = tmp_path / "script.py"
    script.write_text(text)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "SCRATCH": str(scratch)}
    out = subprocess.run(
        [sys.executable, str(script), how], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


_FOLLOWS_SCRIPT = """
import decimal, os, sys, warnings
import numpy as np
from picklepool import Executor, Parallel, delayed

def init():
    decimal.getcontext().prec = 50
    np.seterr(divide="ignore")

_ready = False

def setup_once(_):
    global _ready
    if not _ready:
        decimal.getcontext().prec = 40
        warnings.filterwarnings("ignore", message="lib internal")  # a library, as imported
        _ready = True
    warnings.warn("lib internal detail")
    err = np.geterr()
    return (decimal.getcontext().prec, err["over"], err["divide"])

def read(_):
    err = np.geterr()
    return (decimal.getcontext().prec, err["over"], err["divide"])

if __name__ == "__main__":
    how = sys.argv[1]
    np.seterr(over="raise")  # the script's, before the pool
    if how == "initializer":
        p = Parallel(n_jobs=2, initializer=init)
        print(p(delayed(read)(0) for _ in range(1))[0])  # the script's and the initializer's
        decimal.getcontext().prec = 60  # after the pool started: every worker follows
        print(sorted(set(p(delayed(read)(i) for i in range(6)))))
    elif how == "own":  # a task moves a filter ahead, another removes the parent's
        warnings.simplefilter("error")
        with Executor(max_workers=1) as ex:
            ex.submit(warnings.simplefilter, "ignore", DeprecationWarning).result()  # one of the defaults
            warnings.filterwarnings("ignore", message="unrelated")  # the parent changes them
            print(ex.submit(warnings.warn, "old api", DeprecationWarning).result())
            ex.submit(warnings.resetwarnings).result()  # the parent's "error" gone here
            warnings.filterwarnings("ignore", message="unrelated too")
            print(ex.submit(warnings.warn, "boom", UserWarning).result())
    elif how == "grow":  # a worker that starts after the parent changed a setting and back
        p = Parallel(n_jobs=2, initializer=init)
        print(sorted({r[0] for r in p(delayed(read)(i) for i in range(4))}))
        decimal.getcontext().prec = 30
        p(delayed(read)(i) for i in range(4))
        decimal.getcontext().prec = 28  # the default again, as the pool started: its initializer's 50
        print(sorted({r[0] for r in Parallel(n_jobs=3, initializer=init, batch_size=1)(
            delayed(read)(i) for i in range(9))}))
    elif how == "blocks":  # a call in a catch_warnings block (a pytest test), then another
        with Executor(max_workers=1) as ex:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                print(ex.submit(setup_once, 0).result()[0])
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # ahead of the library's, as in the loop
                try:
                    print(ex.submit(setup_once, 1).result())
                except UserWarning as exc:
                    print("raised", exc)
    else:
        warnings.simplefilter("error")  # as -W error, or pytest
        with Executor(max_workers=1) as ex:
            print(ex.submit(setup_once, 0).result())
            np.seterr(under="raise")  # another setting: the task's precision stays
            warnings.filterwarnings("ignore", category=ResourceWarning)  # and the library's filter
            print(ex.submit(setup_once, 1).result())
"""


@pytest.mark.parametrize("how", ["initializer", "setup", "blocks", "grow", "own"])
def test_a_worker_follows_each_setting_the_parent_changes_and_only_that(tmp_path, how):
    # helper-119: a worker that had run no batch when the parent changed a setting kept
    # the initializer's; a change of numpy's handling undid a task's decimal precision (one
    # group); the parent's new warnings filter dropped the one a library added in the worker;
    # an initializer's np.seterr(divide=...) dropped the script's over="raise"
    script = tmp_path / "follows.py"
    script.write_text(_FOLLOWS_SCRIPT)
    out = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    if how == "initializer":
        assert out.stdout.splitlines() == [str((50, "raise", "ignore")), str([(60, "raise", "ignore")])]
    elif how == "blocks":
        assert out.stdout.splitlines() == ["40", "raised lib internal detail"]
    elif how == "grow":
        # (the parent's counts of changes, kept for the whole process, made it 28: a new
        # pool's initializer lost to changes made before the pool was)
        assert out.stdout.splitlines() == ["[50]", "[50]"]
    elif how == "own":  # as in a loop: the task's ignore stays ahead, its reset stays
        assert out.stdout.splitlines() == ["None", "None"]
    else:
        assert out.stdout.splitlines() == [str((40, "raise", "warn"))] * 2


_ENDS_SCRIPT = """
import decimal, os, sys, tempfile, warnings
import numpy as np
from picklepool import Executor

def divide_raises_once(_):  # a task's one-time setup (a module's, as it is imported)
    np.seterr(divide="raise")

def divide(_):
    try:
        return str(np.float64(1.0) / np.float64(0.0))
    except FloatingPointError:
        return "raised"

def set_precision(prec):
    decimal.getcontext().prec = prec

def precision(_):
    return decimal.getcontext().prec

def quiet_noisy(_):  # as a library adds a filter for its own warning when a task imports it
    warnings.filterwarnings("ignore", message="noisy")

def noisy(_):
    try:
        warnings.warn("noisy", UserWarning)
        return "ok"
    except UserWarning:
        return "raised"

def scratch(folder):
    tempfile.tempdir = folder

def temp_folder(_):
    return tempfile.gettempdir() == os.environ["SCRATCH"]

if __name__ == "__main__":
    how = sys.argv[1]
    init = (scratch, (os.environ["SCRATCH"],)) if how == "tempdir" else (None, ())
    ex, other = Executor(max_workers=1, initializer=init[0], initargs=init[1]), Executor(max_workers=1)
    with ex, other:
        if how == "errstate":
            ex.submit(divide_raises_once, 0).result()
            with np.errstate(over="ignore"):  # another kind, around a call of each pool
                ex.submit(divide, 0).result()
                other.submit(divide, 0).result()
            print(ex.submit(divide, 0).result())
        elif how == "localcontext":
            ex.submit(set_precision, 50).result()
            with decimal.localcontext() as ctx:
                ctx.prec = 10
                print(ex.submit(precision, 0).result())
            print(ex.submit(precision, 0).result())
        elif how == "tempdir":  # the parent's tempfile keeps the folder it chose: no setting of its
            print(ex.submit(temp_folder, 0).result())
            with tempfile.TemporaryDirectory():
                pass
            print(ex.submit(temp_folder, 0).result())
        else:
            warnings.simplefilter("error")  # -W error, or pytest's
            ex.submit(noisy if how == "same-block" else quiet_noisy, 0).result()
            if how == "block-elsewhere":  # a call of another pool in a block
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    other.submit(noisy, 0).result()
            elif how == "block-here":  # the block moves one of Python's filters to the front
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    print(ex.submit(noisy, 0).result())
            elif how == "append":  # added at the end: behind the task's, as in a loop
                warnings.filterwarnings("default", message="unrelated", append=True)
            elif how == "move":  # an existing filter moved to the front: ahead of the task's
                warnings.simplefilter("ignore", DeprecationWarning)
            elif how == "same-block":  # a block whose filters read the same, a task's filter in it
                with warnings.catch_warnings():
                    ex.submit(quiet_noisy, 0).result()
                    print(ex.submit(noisy, 0).result())
            print(ex.submit(noisy, 0).result())
"""


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("errstate", ["raised"]),
        ("localcontext", ["10", "50"]),
        ("tempdir", ["True", "True"]),
        ("block-elsewhere", ["ok"]),
        ("block-here", ["ok", "ok"]),
        ("append", ["ok"]),
        ("move", ["ok"]),
        ("same-block", ["ok", "raised"]),
    ],
)
def test_the_end_of_a_parents_change_gives_a_worker_back_what_it_had(tmp_path, how, expected):
    # helper-122: the parent counted its changes of each setting, and a worker set the
    # parent's value whenever the count moved. A `with np.errstate(...)` or
    # `decimal.localcontext()` block around any call (another pool's too) moved it twice,
    # and its end undid a task's one-time setup for good; a catch_warnings block, an appended
    # filter or one moved to the front put the parent's "error" ahead of the task's "ignore";
    # the parent's tempfile choosing its folder went over an initializer's scratch folder.
    # A loop keeps each (the block's end puts back what was set before it: the task's).
    assert _run_script(tmp_path, _ENDS_SCRIPT, how) == expected


_FIELDS_SCRIPT = """
import contextlib, decimal, os, sys, warnings
import numpy as np
from picklepool import Executor, Parallel, delayed

def setup(_):  # a task's one-time setup: one field of each setting
    decimal.getcontext().rounding = decimal.ROUND_DOWN
    np.seterr(divide="raise")

def read(_):
    context, errors = decimal.getcontext(), np.geterr()
    return (context.prec, context.rounding, errors["divide"], errors["over"])

def set_precision(prec):
    decimal.getcontext().prec = prec

def precision(_):
    return decimal.getcontext().prec

def nothing():
    pass

def noisy(_):
    try:
        warnings.warn("noisy", UserWarning)
        return "ok"
    except UserWarning:
        return "raised"

def crash(_):
    os._exit(3)

def on_path(folder):
    return folder in sys.path

if __name__ == "__main__":
    how = sys.argv[1]
    if how == "fields":
        with Executor(max_workers=1) as ex:
            ex.submit(setup, 0).result()
            with decimal.localcontext(prec=5), np.errstate(over="raise"):
                print(ex.submit(read, 0).result())
            print(ex.submit(read, 0).result())
    elif how == "initializer-filters":  # the parent's filters as the pool started: not the initializer's
        warnings.simplefilter("ignore", UserWarning)
        p = Parallel(n_jobs=2, initializer=nothing)
        p(delayed(noisy)(i) for i in range(2))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            print(sorted(set(p(delayed(noisy)(i) for i in range(4)))))
    elif how == "crash":  # a pool made again after a crash: its initializer's as the first pool's
        p = Parallel(n_jobs=2, initializer=set_precision, initargs=(50,))
        p(delayed(precision)(i) for i in range(2))
        with decimal.localcontext(prec=10):
            try:
                p(delayed(crash)(i) for i in range(1))
            except Exception as exc:
                print(type(exc).__name__)
            print(sorted(set(p(delayed(precision)(i) for i in range(4)))))
        print(sorted(set(p(delayed(precision)(i) for i in range(4)))))
    elif how == "sys-path":  # a folder the parent added, then removed
        folder = os.path.abspath("project")
        with Executor(max_workers=1) as ex:
            sys.path.insert(0, folder)
            print(ex.submit(on_path, folder).result())
            sys.path.remove(folder)
            print(ex.submit(on_path, folder).result())
    elif how == "deep":  # 20 blocks nested
        with Executor(max_workers=1) as ex, contextlib.ExitStack() as blocks:
            ex.submit(set_precision, 50).result()
            for depth in range(20):
                blocks.enter_context(decimal.localcontext(prec=10 + depth))
                ex.submit(precision, 0).result()
            blocks.close()
            print(ex.submit(precision, 0).result())
"""


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("fields", ["(5, 'ROUND_DOWN', 'raise', 'raise')", "(28, 'ROUND_DOWN', 'raise', 'warn')"]),
        ("initializer-filters", ["['raised']"]),
        ("crash", ["WorkerCrashedError", "[10]", "[50]"]),
        ("sys-path", ["True", "False"]),
        ("deep", ["50"]),
    ],
)
def test_a_worker_follows_the_fields_the_parent_changes_as_a_loop_does(tmp_path, how, expected):
    # helper-127: a block changing one field (localcontext(prec=5), np.errstate(over=...))
    # set the parent's whole context over a task's rounding and divide mode inside it; the
    # parent's filters as a pool with an initializer started were taken for the initializer's
    # and stayed ahead of the parent's later "error"; a pool made again after a crash took the
    # parent's settings of the crash for its start; a folder the parent removed from sys.path
    # stayed in the workers (and piled up); past 8 nested blocks the task's value was lost.
    assert _run_script(tmp_path, _FIELDS_SCRIPT, how) == expected
