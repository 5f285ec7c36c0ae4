"""A task's ``KeyboardInterrupt`` comes back as a ``KeyboardInterrupt``, as in joblib (issue 13, item 5).

What the caller gets is both a ``TaskExitError`` (naming the task) and a
``KeyboardInterrupt``: ``except KeyboardInterrupt`` written for joblib catches it. A
task's ``SystemExit`` is a ``TaskSystemExitError`` with the task's ``code`` but not a
``SystemExit`` (issue 14: a task must not end the caller's script quietly), a
documented difference from joblib.
"""

from __future__ import annotations

import os
import sys

import pytest

from picklepool import Executor, Parallel, TaskExitError, delayed
from picklepool.errors import RemoteTraceback, TaskSystemExitError
from tests.conftest import run_python

BACKENDS = [("loky", 2), ("threading", 2), ("sequential", 1), ("multiprocessing", 2), ("loky", 1)]


def interrupt_at(i, bad):
    if i == bad:
        raise KeyboardInterrupt("stop")
    return i


def exit_at(i, bad, code):
    if i == bad:
        sys.exit(code)
    return i


@pytest.mark.parametrize(("backend", "n_jobs"), BACKENDS)
def test_a_tasks_keyboard_interrupt_is_a_keyboard_interrupt_naming_the_task(backend, n_jobs):
    with pytest.raises(KeyboardInterrupt) as info:
        Parallel(n_jobs=n_jobs, backend=backend, batch_size=1)(delayed(interrupt_at)(i, 2) for i in range(4))
    error = info.value
    assert isinstance(error, TaskExitError)
    assert str(error).startswith("task 2: interrupt_at(2, 2) raised KeyboardInterrupt('stop')")
    assert type(error.original) is KeyboardInterrupt and error.original.args == ("stop",)
    # the pool is not torn down as for a real Ctrl-C: the next call works
    assert Parallel(n_jobs=n_jobs, backend=backend)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


@pytest.mark.parametrize(("backend", "n_jobs"), BACKENDS)
@pytest.mark.parametrize("code", [3, 0, None, "bye"])
def test_a_tasks_system_exit_is_a_task_error_with_its_code(backend, n_jobs, code):
    with pytest.raises(TaskSystemExitError) as info:
        Parallel(n_jobs=n_jobs, backend=backend, batch_size=1)(delayed(exit_at)(i, 1, code) for i in range(3))
    error = info.value
    assert isinstance(error, TaskExitError) and not isinstance(error, SystemExit)
    assert error.code == code
    assert str(error).startswith(f"task 1: exit_at(1, 1, {code!r}) raised SystemExit")
    assert isinstance(error.original, SystemExit) and error.original.code == code


def stop_at(i, bad):
    if i == bad:
        raise StopIteration(i * 10)  # a bare next() on an exhausted iterator, in real code
    return i


@pytest.mark.parametrize(("backend", "n_jobs"), BACKENDS)
@pytest.mark.parametrize("return_as", ["list", "generator", "generator_unordered"])
def test_a_tasks_stop_iteration_is_a_runtime_error_naming_the_task(backend, n_jobs, return_as):
    # Python made it RuntimeError("generator raised StopIteration") in the generators the
    # results come through, as in joblib: the message named no task
    with pytest.raises(RuntimeError) as info:
        list(Parallel(n_jobs, backend, return_as, batch_size=1)(delayed(stop_at)(i, 1) for i in range(3)))
    error = info.value
    assert isinstance(error, TaskExitError)
    assert str(error).startswith("task 1: stop_at(1, 1) raised StopIteration(10), which cannot come out")
    # (its args: once distributed is imported, tblib's exception reducers, which fork-started
    # multiprocessing workers inherit, rebuild a StopIteration without its value)
    assert type(error.original) is StopIteration and error.original.args == (10,)
    assert Parallel(n_jobs=n_jobs, backend=backend)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def test_an_executor_future_raises_a_tasks_stop_iteration_itself():
    with Executor(max_workers=2) as ex:  # as the standard library's
        with pytest.raises(StopIteration) as info:
            ex.submit(stop_at, 2, 2).result()
        assert info.value.args == (20,)
        # its map: the standard library's RuntimeError("generator raised StopIteration"),
        # which named no call
        with pytest.raises(RuntimeError) as mapped:
            list(ex.map(stop_at, range(4), [3] * 4))
    assert str(mapped.value).startswith(
        "generator raised StopIteration: task 4 (the 5th call submitted to this Executor): "
        "stop_at(3, 3) raised StopIteration(30), which would end map's results there"
    )
    assert type(mapped.value.__cause__) is StopIteration


def test_the_workers_traceback_is_the_cause():
    with pytest.raises(KeyboardInterrupt) as info:
        Parallel(n_jobs=2, batch_size=1)(delayed(interrupt_at)(i, 1) for i in range(2))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "interrupt_at" in info.value.__cause__.tb


def test_executor_futures_raise_the_tasks_kind():
    with Executor(max_workers=2) as ex:
        with pytest.raises(KeyboardInterrupt) as interrupted:
            ex.submit(interrupt_at, 5, 5).result()
        with pytest.raises(TaskSystemExitError) as exited:
            ex.submit(exit_at, 1, 1, 4).result()
        assert ex.submit(abs, -7).result() == 7  # the executor was not stopped as by a Ctrl-C
    assert isinstance(interrupted.value, TaskExitError) and "interrupt_at(5, 5)" in str(interrupted.value)
    assert isinstance(exited.value, TaskExitError) and exited.value.code == 4


def test_an_uncaught_keyboard_interrupt_in_a_task_shows_the_task():
    result = run_python(
        """
        from picklepool import Parallel, delayed

        def stops(i):
            if i == 3:
                raise KeyboardInterrupt
            return i

        if __name__ == "__main__":
            Parallel(n_jobs=2, batch_size=1)(delayed(stops)(i) for i in range(6))
            print("not reached")
        """
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "TaskInterruptError: task 3: stops(3) raised KeyboardInterrupt" in result.stderr, result.stderr


def exit_with_a_cause(code):
    try:
        raise ValueError("why")
    except ValueError as exc:
        raise SystemExit(code) from exc  # a cause: the exception travels as its parts


@pytest.mark.parametrize(("backend", "n_jobs"), [("loky", 2), ("multiprocessing", 2)])
def test_the_code_survives_the_trip_as_parts(backend, n_jobs):
    with pytest.raises(TaskSystemExitError) as info:
        Parallel(n_jobs=n_jobs, backend=backend)([delayed(exit_with_a_cause)(5)])
    assert info.value.code == 5 and info.value.original.code == 5


# The end of a script whose call a real Ctrl-C interrupts: how the call ended, and whether
# Python's own SIGINT handler is back (the script's body: indented as run_python dedents it)
_HOW_IT_ENDED = """
            try:
                {call}
            except Exception as exc:
                print("swallowed", type(exc).__name__)
            except KeyboardInterrupt as exc:
                print("interrupted", type(exc).__name__)
            print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


def _assert_interrupted(result):
    assert result.stdout.split() == ["interrupted", "KeyboardInterrupt", "True"], (
        result.stdout + result.stderr
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and FIFOs")
def test_a_real_ctrl_c_inside_a_task_run_in_the_caller_is_a_plain_keyboard_interrupt(tmp_path):
    # n_jobs=1 (the default) runs tasks in the calling thread, where a Ctrl-C lands inside
    # one: it came back as that task's TaskInterruptError, which `except Exception` caught,
    # so a loop around the call went on after Ctrl-C (joblib raises KeyboardInterrupt)
    fifo = str(tmp_path / "started")
    os.mkfifo(fifo)
    result = run_python(
        f"""
        import os, signal, threading
        from picklepool import Parallel, delayed

        def task(i, fifo):
            if i == 1:
                with open(fifo, "w") as f:
                    f.write("started")
                threading.Event().wait(60)
            return i

        def interrupt_when_started():
            with open({fifo!r}) as f:  # blocks until the task runs
                f.read()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # os.kill may pick this thread

        if __name__ == "__main__":
            threading.Thread(target=interrupt_when_started, daemon=True).start()
        """
        + _HOW_IT_ENDED.format(call=f"Parallel(n_jobs=1)(delayed(task)(i, {fifo!r}) for i in range(3))")
    )
    _assert_interrupted(result)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_real_ctrl_c_in_a_task_of_a_call_made_inside_an_n_jobs_1_task_is_a_keyboard_interrupt():
    # The inner n_jobs=1 call told the Ctrl-C from a task's own and made it a plain
    # KeyboardInterrupt, which the outer call then took for its task's own:
    # TaskInterruptError, caught by `except Exception` (joblib, the loop: KeyboardInterrupt)
    result = run_python(
        """
        import os, signal
        from picklepool import Parallel, delayed

        def task(i):
            if i == 1:
                os.kill(os.getpid(), signal.SIGINT)  # lands in this task, in the main thread
            return i

        def outer(j):
            try:
                return Parallel(n_jobs=1)(delayed(task)(i) for i in range(3))
            except Exception as exc:
                return "swallowed " + type(exc).__name__

        if __name__ == "__main__":
        """
        + _HOW_IT_ENDED.format(call="print(Parallel(n_jobs=1)(delayed(outer)(j) for j in range(2)))")
    )
    _assert_interrupted(result)


def test_a_tasks_own_keyboard_interrupt_in_the_caller_is_still_the_tasks():
    with pytest.raises(KeyboardInterrupt) as info:
        Parallel(n_jobs=1)(delayed(interrupt_at)(i, 1) for i in range(3))
    assert isinstance(info.value, TaskExitError)
    # the handler is the default one again after the call
    import signal

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_a_threading_call_ends_the_program_without_waiting_for_its_tasks():
    # The threading backend's pool threads were a ThreadPoolExecutor's, which the
    # interpreter's exit joins: after Ctrl-C the program went on until the tasks still
    # running ended (for ever here; 30 s for a 30 s task, where joblib's ended at once:
    # its pool threads are daemon threads). The call raises KeyboardInterrupt as before.
    result = run_python(
        """
        import os, signal, threading
        from picklepool import Parallel, delayed

        started = threading.Event()

        def task(i):
            started.set()
            threading.Event().wait()  # never ends by itself
            return i

        def interrupt_when_started():
            started.wait()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # os.kill may pick this thread

        if __name__ == "__main__":
            threading.Thread(target=interrupt_when_started, daemon=True).start()
            try:
                Parallel(n_jobs=2, backend="threading")(delayed(task)(i) for i in range(4))
            except KeyboardInterrupt:
                print("interrupted", flush=True)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "interrupted\n", result.stdout + result.stderr


def test_a_threading_block_dropped_without_its_end_leaves_no_thread_behind():
    # The threading backend's daemon threads end once their pool is collected, as a
    # collected ThreadPoolExecutor's do (a `with` block entered and never left).
    import gc
    import threading

    from picklepool import Parallel, delayed

    before = set(threading.enumerate())
    for _ in range(5):
        block = Parallel(n_jobs=2, backend="threading")
        block.__enter__()
        assert block(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
        del block
    gc.collect()
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("picklepool_"):
            thread.join()  # ends once its pool is gone: else this waits for ever
    assert {t for t in threading.enumerate() if t.name.startswith("picklepool_")} <= before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and FIFOs")
def test_a_ctrl_c_that_reached_the_workers_only_says_where_the_keyboard_interrupt_came_from(tmp_path):
    # A terminal's Ctrl-C reaches the workers too (its process group); a program whose own
    # SIGINT handler does not raise (a graceful-stop flag) got "task 0 raised
    # KeyboardInterrupt ... make the task return a value", blaming a task that did not
    fifo = str(tmp_path / "started")
    os.mkfifo(fifo)
    result = run_python(
        f"""
        import os, signal, threading
        from picklepool import Parallel, TaskExitError, delayed

        def task(fifo):
            with open(fifo, "w") as f:
                f.write(str(os.getpid()))
            threading.Event().wait(60)

        def ctrl_c_when_started():
            with open({fifo!r}) as f:  # blocks until the task runs
                worker = int(f.read())
            os.kill(os.getpid(), signal.SIGINT)  # the parent's handler only notes it
            os.kill(worker, signal.SIGINT)

        if __name__ == "__main__":
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda *a: stop.set())
            threading.Thread(target=ctrl_c_when_started, daemon=True).start()
            try:
                Parallel(n_jobs=2)([delayed(task)({fifo!r})])
            except TaskExitError as exc:
                print(stop.is_set(), isinstance(exc, KeyboardInterrupt))
                print(exc)
        """
    )
    first, message = result.stdout.split("\n", 1)
    assert first == "True True", result.stdout + result.stderr
    assert message.startswith("task 0: task(")
    assert "If you pressed Ctrl-C" in message and "process group" in message
