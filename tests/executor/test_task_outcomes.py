"""What a task's ending becomes in the caller (issue 14, items 2-4).

A task's ``sys.exit`` cannot end the caller's script quietly; a timeout the task swallows
is still a timeout; an exception keeps its type, attributes, cause and notes, and
is replaced by a stand-in only when its class itself cannot travel.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import os
import sys
import threading
import time
import weakref

import pytest

from picklepool import Executor, Parallel, TaskTimeoutError, delayed
from picklepool.errors import RemoteTraceback
from picklepool.workers import tasks
from tests.conftest import run_python

from .crash_cases import LedgerMismatch


def test_sys_exit_in_a_task_makes_the_script_fail_naming_the_task():
    # issue 14: a task's sys.exit(0) must not end the caller's script quietly with status 0
    result = run_python(
        """
        import sys
        from picklepool import Parallel, delayed

        def quits(i):
            if i == 3:
                sys.exit(0)
            return i

        if __name__ == "__main__":
            Parallel(n_jobs=2, batch_size=1)(delayed(quits)(i) for i in range(6))
            print("not reached")
        """
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "TaskSystemExitError: task 3: quits(3) raised SystemExit(0)" in result.stderr, result.stderr


def swallow_timeout(seconds):
    try:
        time.sleep(seconds)
    except BaseException:  # noqa: BLE001 - what the test is about
        pass
    return "finished anyway"


def turn_timeout_into_value_error(seconds):
    try:
        time.sleep(seconds)
    except BaseException as exc:
        raise ValueError("something else") from exc


@pytest.mark.parametrize("task", [swallow_timeout, turn_timeout_into_value_error])
def test_a_timeout_the_task_swallows_is_still_a_timeout_sigalrm(task):
    with pytest.raises(
        TaskTimeoutError, match=rf"task 1: {task.__name__}\(30\) ran longer than timeout=0.5s"
    ):
        Parallel(n_jobs=2, batch_size=1, timeout=0.5)(delayed(task)(s) for s in [0, 30, 0])
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def test_a_timeout_the_task_swallows_is_still_a_timeout_in_a_thread():
    # The path of a worker thread (dask) and the threading backend: no SIGALRM there.
    stop = threading.Event()
    returned = threading.Event()

    def swallow():
        try:
            while not stop.is_set():  # Python code: the asynchronous exception lands here
                time.sleep(0.01)
        except BaseException:  # noqa: BLE001
            pass
        returned.set()
        return "finished anyway"

    try:
        out = tasks.execute_watched([swallow], 0, [()], None, 7, None, 0, 0.2)
        assert type(out).__name__ == "TaskFailed"
        assert isinstance(out.error, TaskTimeoutError) and "task 7" in str(out.error)
        assert returned.wait(30)  # the task did swallow the interruption and return
    finally:
        stop.set()


def test_a_watched_batch_runs_none_of_its_tasks_after_one_failed():
    # The path of a timeout in a thread (the threading backend, dask): the helper thread
    # running the batch went on to its next task after one raised, until the watching
    # thread had read that failure; the tasks after it ran (their side effects done,
    # their results dropped), where a batch stops at its first failure. With the GIL kept
    # by the helper (a long switch interval) it always went on.
    ran = []

    def fail():
        ran.append(0)
        raise ValueError("task 0 failed")

    def record():
        ran.append(len(ran))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(60)
    try:
        out = tasks.execute_watched([fail, record], (0, 1, 1), [(), (), ()], None, 970, None, 0, 60.0)
    finally:
        sys.setswitchinterval(interval)
    for thread in threading.enumerate():
        if thread.name == "picklepool-task-970":
            thread.join()  # the helper is done: whatever it would run has run
    assert type(out).__name__ == "TaskFailed" and isinstance(out.error, ValueError)
    assert ran == [0]


class _Held:
    """A task's argument (a model, an array), watched through a weak reference."""


def _fail_at_one(held, i):
    if i == 1:
        raise ValueError("task 1 failed")
    return held


@pytest.mark.parametrize("runner", ["run_local", "execute_watched"])
def test_a_tasks_error_in_this_process_holds_none_of_its_batchs_other_arguments(runner):
    # In-process backends (threading, n_jobs=1 in a thread) keep the task's exception itself,
    # whose traceback holds the batch's loop (workers.tasks.execute) and, through the
    # task's frame, its callers': the other tasks' arguments and the results before it
    # lived as long as the program kept the error. The failed task's own arguments stay
    # with its frame, as in a loop.
    watched = []

    def batch():
        values = [_Held() for _ in range(3)]
        watched.extend(weakref.ref(v) for v in values)
        return [(v, i) for i, v in enumerate(values)]

    if runner == "run_local":
        out = tasks.run_local([_fail_at_one], 0, batch(), None, 0, None)
    else:
        out = tasks.execute_watched(
            [_fail_at_one], 0, batch(), None, 0, None, 0, 60.0, mark=False, format_tb=False
        )
    gc.collect()
    assert isinstance(out.error, ValueError) and out.error.__traceback__ is not None
    assert [ref() is not None for ref in watched] == [False, True, False]


def hold_the_gil(i):
    if i == 1:  # a PyDLL call keeps the GIL: no other thread runs until it returns
        ctypes.PyDLL(None).usleep(1_000_000)
    return i


@pytest.mark.parametrize("backend", ["sequential", "threading"])
@pytest.mark.parametrize("thread", ["main", "other"])
def test_a_task_holding_the_gil_past_the_timeout_is_still_a_timeout(backend, thread):
    # The thread watching the deadline could not run while the task held the GIL, and
    # woke after it returned: the call returned the late task's result as if on time.
    # (In the main thread an n_jobs=1 call times its tasks with SIGALRM, as a worker.)
    outcome: list[BaseException] = []

    def call():
        try:
            Parallel(n_jobs=2, backend=backend, timeout=0.2)(delayed(hold_the_gil)(i) for i in range(3))
        except BaseException as exc:  # noqa: BLE001 - looked at below
            outcome.append(exc)

    if thread == "main":
        call()
    else:
        runner = threading.Thread(target=call)
        runner.start()
        runner.join()
    assert len(outcome) == 1 and isinstance(outcome[0], TaskTimeoutError), outcome
    assert "task 1: hold_the_gil(1) ran longer than timeout=0.2s" in str(outcome[0])


class HoldsAGenerator(ValueError):
    def __init__(self, account):
        super().__init__(f"account {account}")
        self.account = account
        self.rows = (i for i in range(3))  # cannot be pickled


def raise_with_unpicklable_attribute():
    raise HoldsAGenerator("acct-9")


def raise_a_local_class():
    class OnlyHere(KeyError):  # a local class: pickle (by reference) cannot send it
        pass

    raise OnlyHere("missing key")


def raise_with_cause_and_notes():
    try:
        raise KeyError("inner")
    except KeyError as inner:
        err = LedgerMismatch("acct-1", 1, 2)
        err.add_note("checked at close")
        raise err from inner


def _one(func, pickler="hybrid"):
    with pytest.raises(BaseException) as info:
        Parallel(n_jobs=2, pickler=pickler)([delayed(func)()])
    return info.value


def test_an_unpicklable_attribute_is_left_out_the_type_and_the_rest_travel():
    err = _one(raise_with_unpicklable_attribute)
    assert type(err) is HoldsAGenerator
    assert err.account == "acct-9" and str(err) == "account acct-9"
    assert not hasattr(err, "rows")


def test_an_attribute_left_out_of_a_tasks_exception_is_named_in_a_note():
    # `except HoldsAGenerator as e: e.rows` was an AttributeError with no word of why
    err = _one(raise_with_unpicklable_attribute)
    assert not hasattr(err, "rows")
    left = [note for note in err.__notes__ if "left out" in note]
    assert left == [
        "(picklepool: the attribute rows (builtins.generator) of this HoldsAGenerator could not "
        "be pickled in the worker, so it was left out; keep in the exception what pickles (an "
        "address rather than a connection, a path rather than a file), or catch it in the task "
        "and return what you need)"
    ]


class SlotsAConnection(ValueError):
    __slots__ = ("code", "rows")

    def __init__(self, code):
        super().__init__(f"code {code}")
        self.code = code
        self.rows = (i for i in range(3))  # cannot be pickled


def raise_with_unpicklable_slot():
    raise SlotsAConnection(7)


def raise_with_unpicklable_argument():
    raise ValueError("bad rows", (i for i in range(3)))


def test_a_value_left_out_of_a_tasks_exceptions_slots_or_args_is_named_in_a_note():
    # A value in __slots__ that does not pickle made the whole exception a bare stand-in:
    # its other slots lost too (`e.code` an AttributeError), with no word; an argument's
    # repr took its place in args (`e.args[1]` a string, not the generator) with no word
    err = _one(raise_with_unpicklable_slot)
    assert type(err) is SlotsAConnection and str(err) == "code 7"
    assert err.code == 7 and not hasattr(err, "rows")
    left = [note for note in err.__notes__ if note.startswith("(picklepool:")]
    assert left == [
        "(picklepool: the attribute rows (builtins.generator) of this SlotsAConnection could not "
        "be pickled in the worker, so it was left out; keep in the exception what pickles (an "
        "address rather than a connection, a path rather than a file), or catch it in the task "
        "and return what you need)"
    ]
    err = _one(raise_with_unpicklable_argument)
    assert type(err) is ValueError and err.args[0] == "bad rows"
    assert type(err.args[1]) is str and err.args[1].startswith("<generator object")
    left = [note for note in err.__notes__ if note.startswith("(picklepool:")]
    assert left == [
        "(picklepool: the argument args[1] (builtins.generator) of this ValueError could not "
        "be pickled in the worker, so its repr (a string) stands in its place; raise the "
        "exception with what pickles (an address rather than a connection, a path rather than "
        "a file), or catch it in the task and return what you need)"
    ]


def test_a_class_that_cannot_travel_comes_back_as_a_stand_in_of_its_nearest_base():
    err = _one(raise_a_local_class, pickler="pickle")
    assert isinstance(err, KeyError) and type(err).__name__ == "OnlyHere"
    assert "missing key" in str(err)
    assert isinstance(err.__cause__, RemoteTraceback) and "raise_a_local_class" in str(err.__cause__)
    assert any("stand-in" in note and "task 0: raise_a_local_class()" in note for note in err.__notes__)


def test_an_executor_gives_the_same_stand_in_for_a_class_that_cannot_travel():
    # An Executor's batch travels apart (isolated): its task's exception of a class that
    # cannot travel came back as RuntimeError("the task raised ...OnlyHere: ..., which could
    # not be pickled back"), which `except KeyError` did not catch, where Parallel gives
    # the stand-in above.
    with Executor(max_workers=1, pickler="pickle") as ex:
        err = ex.submit(raise_a_local_class).exception()
        assert ex.submit(abs, -1).result() == 1
    assert isinstance(err, KeyError) and type(err).__name__ == "OnlyHere", repr(err)
    assert "missing key" in str(err)
    assert isinstance(err.__cause__, RemoteTraceback) and "raise_a_local_class" in str(err.__cause__)
    assert any("stand-in" in note and "task 0 (the 1st call submitted" in note for note in err.__notes__)


def test_the_cause_and_the_notes_survive():
    err = _one(raise_with_cause_and_notes)
    assert type(err) is LedgerMismatch and err.account == "acct-1"
    assert "checked at close" in err.__notes__
    assert isinstance(err.__cause__, KeyError) and err.__cause__.args == ("inner",)
    assert isinstance(err.__cause__.__cause__, RemoteTraceback)  # the worker's traceback, last


def raise_while_handling():
    try:
        {}["missing"]
    except KeyError:
        raise LedgerMismatch("acct-2", 1, 2)  # noqa: B904 - the implicit context is the point


def raise_while_handling_from_none():
    try:
        {}["missing"]
    except KeyError:
        raise ValueError("no context") from None


@pytest.mark.parametrize("pickler", ["hybrid", "cloudpickle", "pickle"])
def test_an_exception_raised_while_handling_another_keeps_it_as_its_context(pickler):
    # As in the loop: "During handling of the above exception, another exception occurred".
    # The implicit __context__ was dropped: the worker's traceback stood in its place.
    try:
        raise_while_handling()
    except LedgerMismatch as loop:
        expected = loop.__context__
    err = _one(raise_while_handling, pickler)
    assert type(err) is LedgerMismatch and err.account == "acct-2"
    assert err.__cause__ is None and not err.__suppress_context__
    assert type(err.__context__) is KeyError and err.__context__.args == expected.args
    assert isinstance(err.__context__.__cause__, RemoteTraceback)  # the worker's traceback, last
    with Executor(max_workers=1, pickler=pickler) as ex:
        err = ex.submit(raise_while_handling).exception()
    assert type(err.__context__) is KeyError and not err.__suppress_context__
    err = _one(raise_while_handling_from_none, pickler)  # `from None`: no context, as in the loop
    assert type(err) is ValueError and err.__suppress_context__
    assert isinstance(err.__cause__, RemoteTraceback) and err.__cause__.__cause__ is None


def raise_from_the_handled_one():
    try:
        {}["missing"]
    except KeyError as exc:
        raise ValueError("bad row") from exc


@pytest.mark.parametrize("pickler", ["hybrid", "cloudpickle"])
def test_raise_from_the_handled_exception_keeps_it_as_cause_and_context(pickler):
    # `raise X from e` in e's handler: Python sets both X.__cause__ and X.__context__ to e;
    # the __context__ came back None (code that walks __context__ lost the KeyError)
    try:
        raise_from_the_handled_one()
    except ValueError as loop:
        assert loop.__context__ is loop.__cause__
    err = _one(raise_from_the_handled_one, pickler)
    assert type(err.__cause__) is KeyError and err.__cause__.args == ("missing",)
    assert err.__context__ is err.__cause__ and err.__suppress_context__
    with Executor(max_workers=1, pickler=pickler) as ex:
        err = ex.submit(raise_from_the_handled_one).exception()
    assert type(err.__context__) is KeyError and err.__context__ is err.__cause__


def raise_http_error():
    import urllib.error

    raise urllib.error.HTTPError("http://example.invalid/x", 404, "Not Found", {}, None)


def make_oserror_with_fields_set_by_hand():
    err = OSError("disk full")
    err.errno, err.filename = 28, "/data/out.csv"
    return err


def raise_oserror_with_fields_set_by_hand():
    raise make_oserror_with_fields_set_by_hand()


@pytest.mark.parametrize("pickler", ["hybrid", "cloudpickle"])
def test_an_oserror_keeps_the_fields_it_set_apart_from_its_args(pickler):
    # HTTPError sets filename to its URL with empty args: OSError's pickling dropped it (None)
    err = _one(raise_http_error, pickler)
    assert type(err).__name__ == "HTTPError" and err.code == 404
    assert err.filename == err.url == "http://example.invalid/x"
    err = _one(raise_oserror_with_fields_set_by_hand, pickler)
    assert type(err) is OSError and err.args == ("disk full",)
    assert (err.errno, err.filename) == (28, "/data/out.csv")


def make_http_error():
    import urllib.error

    return urllib.error.HTTPError("http://example.invalid/y", 500, "Oops", {}, None)


def test_an_http_error_returned_keeps_its_filename():
    [err] = Parallel(n_jobs=2)([delayed(make_http_error)()])  # (hybrid: sent as its parts)
    assert err.code == 500 and err.filename == "http://example.invalid/y"


def _rebuild_only_in_a_worker(parent, text):
    if os.getpid() == parent:
        raise RuntimeError("this exception cannot be rebuilt in the parent")
    return LoadsOnlyInWorkers(parent, text)


class LoadsOnlyInWorkers(Exception):
    def __init__(self, parent, text):
        super().__init__(text)
        self.parent = parent

    def __reduce__(self):
        return _rebuild_only_in_a_worker, (self.parent, self.args[0])


def raise_loads_only_in_workers(parent):
    raise LoadsOnlyInWorkers(parent, "the task's own error")


def test_a_raised_exception_that_does_not_unpickle_in_the_parent_is_named_as_the_task_s_exception():
    # was "the reply of task 0 ... A result's unpickling raised": the task returned nothing
    from picklepool.errors import UnpicklingError

    expected = (
        f"raise_loads_only_in_workers({os.getpid()}) raised an exception that could not be "
        "unpickled in the parent with pickler 'hybrid': RuntimeError: this exception cannot be "
        "rebuilt in the parent. The exception's (or that of an object it holds) unpickling "
        "raised in this process"
    )
    with pytest.raises(UnpicklingError) as info:
        Parallel(n_jobs=2)([delayed(raise_loads_only_in_workers)(os.getpid())])
    assert str(info.value).startswith("task 0: " + expected), str(info.value)
    with Executor(max_workers=1) as ex:
        error = ex.submit(raise_loads_only_in_workers, os.getpid()).exception()
        assert isinstance(error, UnpicklingError)
        assert str(error).startswith("task 0 (the 1st call submitted to this Executor): " + expected)
        assert ex.submit(abs, -1).result() == 1


class NotesSetByHand(ValueError):
    pass


class AttributesRaise(ValueError):
    def __getattr__(self, name):  # every missing attribute (__notes__ included) raises
        raise RuntimeError(f"no attribute {name}")


class StrRaisesAndCannotTravel(ValueError):
    def __init__(self):
        super().__init__(i for i in range(3))  # its args cannot travel: their repr goes instead

    def __str__(self):
        raise RuntimeError("no text")


def raise_with_notes(notes):
    err = NotesSetByHand("bad row")
    err.__notes__ = notes  # a tuple or a string: add_note refuses those
    raise err


def raise_attributes_raise():
    raise AttributesRaise("odd class")


def raise_str_raises():
    raise StrRaisesAndCannotTravel()


@pytest.mark.parametrize("notes", [("from a tuple",), "from a string"])
def test_notes_that_are_not_a_list_keep_the_tasks_exception(notes):
    # was: TypeError("Cannot add note: __notes__ is not a list") in place of the task's own
    err = _one(lambda: raise_with_notes(notes))
    assert type(err) is NotesSetByHand and str(err) == "bad row"
    assert err.__notes__[0] in ("from a tuple", "from a string")
    assert "(raised by task 0: " in err.__notes__[-1]


@pytest.mark.parametrize(
    "func, kind", [(raise_attributes_raise, AttributesRaise), (raise_str_raises, StrRaisesAndCannotTravel)]
)
def test_an_exception_whose_own_methods_raise_comes_back_instead_of_killing_the_worker(func, kind):
    # was: the worker died formatting its traceback (WorkerCrashedError, "lost sys.stderr"),
    # as joblib's loky worker does
    err = _one(func)
    assert isinstance(err, ValueError) and type(err).__name__ == kind.__name__
    assert "(raised by task 0:" in err.__dict__["__notes__"][-1]
    assert func.__name__ in str(err.__cause__)  # the worker's traceback: its frames at least


def test_an_executor_delivers_such_exceptions():
    from picklepool import Executor

    with Executor(max_workers=2) as ex:
        futures = [
            ex.submit(raise_with_notes, ("from a tuple",)),
            ex.submit(raise_attributes_raise),
            ex.submit(raise_str_raises),
            ex.submit(abs, -3),
        ]
        errors = [f.exception(timeout=60) for f in futures[:3]]
        # the third's args cannot travel: their repr goes instead, and the type with it (it
        # was a RuntimeError naming it, which `except ValueError` did not catch)
        assert [type(e) for e in errors] == [NotesSetByHand, AttributesRaise, StrRaisesAndCannotTravel]
        assert errors[2].args[0].startswith("<generator object StrRaisesAndCannotTravel.__init__.")
        assert futures[3].result(timeout=60) == 3
        assert errors[0].__notes__[0] == "from a tuple"


@dataclasses.dataclass(frozen=True)
class FrozenError(Exception):
    code: int


def raise_frozen():
    raise FrozenError(42)


@pytest.mark.parametrize("backend", ["loky", "threading", "executor"])
def test_a_frozen_dataclass_exception_comes_back_as_itself(backend):
    # Its __setattr__ refuses every attribute: it came back as a stand-in that
    # `except FrozenError` misses (loky), a RuntimeError (Executor), without the note
    # naming the task (threading; joblib: BrokenProcessPool)
    if backend == "executor":
        from picklepool import Executor

        with Executor(max_workers=2) as ex:
            err = ex.submit(raise_frozen).exception(timeout=60)
    else:
        with pytest.raises(FrozenError) as info:
            Parallel(n_jobs=2, backend=backend)([delayed(raise_frozen)()])
        err = info.value
    assert type(err) is FrozenError and err.code == 42
    assert err.__notes__[-1].startswith("(raised by task 0") and "raise_frozen()" in err.__notes__[-1]
    if backend != "threading":
        assert isinstance(err.__cause__, RemoteTraceback) and "raise_frozen" in str(err.__cause__)


@pytest.mark.timeout(60)
def test_a_frozen_dataclass_exception_under_the_joblib_backend_is_raised_not_waited_for():
    # joblib's callback sets the exception's __traceback__: refused, the callback failed and
    # joblib waited for the batch for ever (joblib's loky backend: BrokenProcessPool)
    import joblib

    import picklepool

    picklepool.register_joblib_backend()
    with joblib.parallel_config(backend="picklepool"):
        with pytest.raises(RuntimeError) as info:
            joblib.Parallel(n_jobs=2)(joblib.delayed(raise_frozen)() for _ in range(2))
    text = str(info.value)
    assert text.startswith("FrozenError: 42 (raised by task ") and "raise_frozen()" in text, text
    assert "cannot be raised by joblib.Parallel" in text and "picklepool.Parallel" in text, text
    assert type(info.value.__cause__) is FrozenError and info.value.__cause__.code == 42


def _inner_fails(i):
    if i == 2:
        raise ValueError(f"bad {i}")
    return i


def _outer(j, backend, n_jobs):
    return Parallel(n_jobs=n_jobs, backend=backend)(delayed(_inner_fails)(i) for i in range(4))


@pytest.mark.parametrize(
    ("backend", "n_jobs", "place"),
    [
        (None, 2, "in the worker running that task"),  # nested: threads of that worker
        ("sequential", 1, "in the worker running that task"),
        ("loky", 2, "in a worker of that call"),
    ],
)
def test_the_note_of_a_call_made_inside_a_task_says_so(backend, n_jobs, place):
    # Read by the top caller, the nested call's note said "of this Parallel call, in this process"
    with pytest.raises(ValueError, match="bad 2") as info:
        Parallel(n_jobs=2)(delayed(_outer)(j, backend, n_jobs) for j in range(1))
    assert info.value.__notes__ == [
        f"(raised by task 2: _inner_fails(2) of a Parallel call made inside a task, {place})",
        "(raised by task 0: _outer(0, " + repr(backend) + f", {n_jobs}) of this Parallel call, in a worker)",
    ]


def test_the_note_of_a_call_made_in_a_thread_of_the_threading_backend_is_in_this_process():
    with pytest.raises(ValueError, match="bad 2") as info:
        Parallel(n_jobs=2, backend="threading")(delayed(_outer)(j, None, 2) for j in range(1))
    assert info.value.__notes__ == [
        "(raised by task 2: _inner_fails(2) of a Parallel call made inside a task, in this process)",
        "(raised by task 0: _outer(0, None, 2) of this Parallel call, in this process)",
    ]


@pytest.mark.parametrize(
    ("backend", "n_jobs", "place"),
    [("sequential", 1, "in this process"), ("loky", 2, "in a worker of that call")],
)
def test_the_note_of_a_call_made_inside_a_task_of_an_n_jobs_1_call_says_so(backend, n_jobs, place):
    # The outer call's tasks run in the caller's thread (no worker, no depth): the inner
    # call's note said "of this Parallel call, in this process" (or "in a worker")
    with pytest.raises(ValueError, match="bad 2") as info:
        Parallel(n_jobs=1)(delayed(_outer)(j, backend, n_jobs) for j in range(1))
    assert info.value.__notes__ == [
        f"(raised by task 2: _inner_fails(2) of a Parallel call made inside a task, {place})",
        f"(raised by task 0: _outer(0, {backend!r}, {n_jobs}) of this Parallel call, in this process)",
    ]


def _outer_executor(j):
    with Executor(max_workers=1) as ex:
        return ex.submit(_inner_fails, 2).result()


@pytest.mark.parametrize(("n_jobs", "place"), [(1, "in this process"), (2, "in a worker")])
def test_the_note_of_an_executor_made_inside_a_task_says_so(n_jobs, place):
    # its replies are read by its own thread, outside the task's context: under n_jobs=1 the
    # note said nothing of the task; in a worker it said "of a Executor ..., of that call"
    with pytest.raises(ValueError, match="bad 2") as info:
        Parallel(n_jobs=n_jobs)(delayed(_outer_executor)(j) for j in range(1))
    assert info.value.__notes__ == [
        "(raised by task 0 (the 1st call submitted to this Executor): _inner_fails(2) of an "
        "Executor made inside a task, in a worker of that Executor)",
        f"(raised by task 0: _outer_executor(0) of this Parallel call, {place})",
    ]


def test_a_call_made_between_the_tasks_of_an_n_jobs_1_generator_is_not_inside_a_task():
    out = Parallel(n_jobs=1, return_as="generator")(delayed(_inner_fails)(i) for i in range(2))
    next(out)
    with pytest.raises(ValueError, match="bad 2") as info:
        Parallel(n_jobs=1)(delayed(_inner_fails)(i) for i in range(4))
    note = "(raised by task 2: _inner_fails(2) of this Parallel call, in this process)"
    assert info.value.__notes__ == [note]
    assert list(out) == [1]


_SAME_ERROR = ValueError("the same object every time")  # as Future.result() re-raises its own


def _raise_the_same_error(i):
    raise _SAME_ERROR


@pytest.mark.parametrize(("backend", "n_jobs"), [("threading", 2), ("sequential", 1), ("loky", 1)])
def test_an_exception_object_raised_again_gets_its_note_once(backend, n_jobs):
    # in-process tasks raise the caller's own object: each call added the same note again
    _SAME_ERROR.__notes__ = []
    for _ in range(3):
        with pytest.raises(ValueError):
            Parallel(n_jobs=n_jobs, backend=backend)(delayed(_raise_the_same_error)(i) for i in range(1))
    assert _SAME_ERROR.__notes__ == [
        "(raised by task 0: _raise_the_same_error(0) of this Parallel call, in this process)"
    ]


def raise_with_a_generator_argument(kind):
    rows = (i for i in range(3))
    if kind == "plain":
        raise ValueError("bad rows", rows)
    try:
        raise OSError("cannot read", rows)
    except OSError as exc:
        raise KeyError("no rows") from exc


def test_an_exception_whose_arguments_cannot_make_the_trip_keeps_its_type():
    # was: a stand-in subclassing Exception (`except ValueError` missed it), an Executor's
    # RuntimeError, and such a cause dropped from the chain
    err = _one(functools.partial(raise_with_a_generator_argument, "plain"))
    assert type(err) is ValueError and err.args[0] == "bad rows"
    assert err.args[1].startswith("<generator object raise_with_a_generator_argument.")
    err = _one(functools.partial(raise_with_a_generator_argument, "cause"))
    assert type(err) is KeyError and type(err.__cause__) is OSError
    assert err.__cause__.args[0] == "cannot read"
    assert isinstance(err.__cause__.__cause__, RemoteTraceback)
    with Executor(max_workers=2) as ex:
        err = ex.submit(raise_with_a_generator_argument, "plain").exception()
    assert type(err) is ValueError and err.args[0] == "bad rows"


def fork_then(x, child):
    """Fork; the child exits with ``sys.exit(x + 3)`` or returns from the task; the task
    gives the child's exit status."""
    pid = os.fork()
    if pid == 0:
        if child == "exit":
            sys.exit(x + 3)
        return ("the child's", x)
    _, status = os.waitpid(pid, 0)
    return ("the task's", x, os.waitstatus_to_exitcode(status))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_child_a_task_forks_ends_when_it_comes_back_into_the_worker():
    # It went on as a worker of its own: its copy of the reply came to the call (some
    # results were the child's, the worker's lost), it took other calls' batches, and
    # one that called sys.exit(n) never ended (the task's waitpid waited for ever).
    calls = Parallel(n_jobs=2, timeout=60)(delayed(fork_then)(x, "exit") for x in range(3))
    assert calls == [("the task's", x, x + 3) for x in range(3)]
    calls = Parallel(n_jobs=2, timeout=60)(delayed(fork_then)(x, "return") for x in range(3))
    assert calls == [("the task's", x, 0) for x in range(3)]
    with Executor(max_workers=2) as ex:
        assert list(ex.map(fork_then, range(2), ["exit", "return"])) == [
            ("the task's", 0, 3),
            ("the task's", 1, 0),
        ]


def fork_at_first(x, log, child):
    """Write the pid that runs task *x* to *log*; task 0 forks, and its child returns
    from the task (or raises); the task gives the child's exit status."""
    with open(log, "a") as f:
        f.write(f"{x} {os.getpid()}\n")
    if x != 0:
        return x
    pid = os.fork()
    if pid == 0:
        if child == "raise":
            raise ValueError("the child's own error")
        return "the child's"
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_child_a_task_forks_runs_no_later_task_of_its_batch(tmp_path):
    # The child that came back from task 0 ran the rest of the batch (tasks 1-4 ran
    # twice, in two processes: their side effects too) before it ended; one that raised
    # ended with status 0, its error unsaid, where the script's child exits 1 with its
    # traceback.
    for child, code in (("return", 0), ("raise", 1)):
        log = tmp_path / f"{child}.log"
        # 10 tasks: one full pull of batch_size * n_jobs, so tasks 0-4 are one batch (joblib's
        # rule splits a short last pull finer)
        tasks = (delayed(fork_at_first)(x, str(log), child) for x in range(10))
        calls = Parallel(n_jobs=2, batch_size=5)(tasks)
        assert calls == [code, *range(1, 10)]
        ran = sorted(int(line.split()[0]) for line in log.read_text().splitlines())
        assert ran == list(range(10))
    log = tmp_path / "executor.log"
    with Executor(max_workers=1) as ex:
        futures = [ex.submit(fork_at_first, x, str(log), "return") for x in range(4)]
        assert [f.result() for f in futures] == [0, 1, 2, 3]
    ran = sorted(int(line.split()[0]) for line in log.read_text().splitlines())
    assert ran == [0, 1, 2, 3]


needs_groups = pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups: Python 3.11")


def raise_a_group_holding(kind):
    if kind == "ledger":  # an __init__ that takes other arguments: rebuilt without it
        inner = LedgerMismatch("acct-7", 1, 2)
    else:  # a class that cannot travel under pickler="pickle"

        class OnlyInTheWorker(KeyError):
            pass

        inner = OnlyInTheWorker("k")
    raise ExceptionGroup("checks failed", [ValueError("v"), inner])  # noqa: F821 - 3.11


class GroupOfItsOwn(Exception if sys.version_info < (3, 11) else ExceptionGroup):  # noqa: F821
    def __new__(cls, code):  # arguments of its own
        self = super().__new__(cls, f"code {code}", [ValueError(code)])
        self.code = code
        return self

    def __init__(self, code):
        super().__init__(f"code {code}", [ValueError(code)])


def raise_a_group_of_its_own():
    raise GroupOfItsOwn(5)


def raise_a_local_group():
    class LocalGroup(ExceptionGroup):  # noqa: F821 - 3.11
        pass

    raise LocalGroup("local", [ValueError(1)])


@needs_groups
def test_an_exception_group_whose_members_cannot_make_the_trip_keeps_its_type_and_members():
    # was: a bare TypeError("BaseException.__new__(ExceptionGroup) is not safe") naming no
    # task, from rebuilding the group as a stand-in without its sub-exceptions
    err = _one(functools.partial(raise_a_group_holding, "ledger"))
    assert type(err) is ExceptionGroup and err.message == "checks failed"  # noqa: F821
    value, ledger = err.exceptions
    assert type(value) is ValueError and value.args == ("v",)
    assert type(ledger) is LedgerMismatch and ledger.account == "acct-7"
    assert any("task 0" in note for note in err.__notes__)

    err = _one(functools.partial(raise_a_group_holding, "local"), pickler="pickle")
    assert type(err) is ExceptionGroup  # noqa: F821
    value, stand_in = err.exceptions
    assert type(value) is ValueError
    assert type(stand_in) is RuntimeError and "OnlyInTheWorker: 'k'" in str(stand_in)

    with Executor(max_workers=2) as ex:  # was: RuntimeError("... could not be pickled back")
        err = ex.submit(raise_a_group_holding, "ledger").exception()
    assert type(err) is ExceptionGroup  # noqa: F821
    assert type(err.exceptions[1]) is LedgerMismatch and err.exceptions[1].account == "acct-7"


def raise_a_group_of_caused_members():
    members = []
    for k in range(2):
        try:
            try:
                {}[k]
            except KeyError as missing:
                raise ValueError(f"row {k}") from missing
        except ValueError as bad:
            members.append(bad)
    inner = ExceptionGroup("inner", [members[1]])  # noqa: F821 - 3.11
    raise ExceptionGroup("rows failed", [members[0], inner])  # noqa: F821


@needs_groups
@pytest.mark.parametrize("pickler", ["hybrid", "pickle"])
def test_the_members_of_an_exception_group_keep_their_causes(pickler):
    # The group pickled whole (it has no cause of its own): each member's __cause__ was
    # dropped, where README promises a group's members keep theirs
    with Executor(max_workers=1, pickler=pickler) as ex:
        submitted = ex.submit(raise_a_group_of_caused_members).exception()
    for err in (_one(raise_a_group_of_caused_members, pickler=pickler), submitted):
        assert type(err) is ExceptionGroup and str(err) == "rows failed (2 sub-exceptions)"  # noqa: F821
        first, inner = err.exceptions
        (second,) = inner.exceptions
        assert type(first) is ValueError and first.args == ("row 0",)
        assert type(first.__cause__) is KeyError and first.__cause__.args == (0,)
        assert type(second.__cause__) is KeyError and second.__cause__.args == (1,)
        assert isinstance(err.__cause__, RemoteTraceback)  # the worker's traceback, at the group's end


@needs_groups
def test_an_exception_group_with_a_new_of_its_own_comes_back():
    err = _one(raise_a_group_of_its_own, pickler="pickle")
    assert type(err) is GroupOfItsOwn and err.code == 5
    assert [e.args for e in err.exceptions] == [(5,)]


@needs_groups
def test_an_exception_group_class_that_cannot_travel_comes_back_as_a_stand_in_group():
    err = _one(raise_a_local_group, pickler="pickle")
    assert isinstance(err, ExceptionGroup) and type(err).__name__ == "LocalGroup"  # noqa: F821
    assert str(err) == "local (1 sub-exception)"
    assert any("stand-in" in note and "task 0: raise_a_local_group()" in note for note in err.__notes__)


def test_an_exception_with_an_init_of_its_own_travels_in_results_and_arguments():
    # Only a task's raised exception went as its parts: one returned (the usual way to
    # collect failures) failed the whole reply in the parent ("missing 1 required
    # positional argument"), and one sent as an argument failed the task
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        class BadCell(ValueError):
            def __init__(self, row, column):
                super().__init__(f"bad cell {row},{column}")
                self.row, self.column = row, column

        class Coded(Exception):
            def __init__(self, *, code):
                super().__init__("coded")
                self.code = code

        def check(i):
            try:
                if i % 2:
                    raise BadCell(i, "B")
                raise Coded(code=i)
            except (BadCell, Coded) as e:
                e.add_note(f"row {i}")
                return i, e

        def describe(e):
            return type(e).__name__, e.args, vars(e), e.__suppress_context__

        here = [describe(e) for _, e in (check(i) for i in range(4))]
        there = [describe(e) for _, e in Parallel(n_jobs=2)(delayed(check)(i) for i in range(4))]
        passed = Parallel(n_jobs=2)(delayed(describe)(check(i)[1]) for i in range(4))
        print(there == here, passed == here, here[1])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "True True ('BadCell', ('bad cell 1,B',), {'row': 1, 'column': 'B', '__notes__': ['row 1']}, False)"
    )


def read_a_missing_name(kind):
    if kind == "attribute":
        return None.shape  # type: ignore[attr-defined]
    if kind == "global":
        return undefined_global  # type: ignore[name-defined]  # noqa: F821


@pytest.mark.parametrize("n_jobs", [2, 1])
@pytest.mark.parametrize(
    ("kind", "cls", "name"),
    [
        ("attribute", AttributeError, "shape"),
        ("global", NameError, "undefined_global"),
    ],
)
def test_an_attribute_or_name_error_keeps_the_name_it_is_about(n_jobs, kind, cls, name):
    # The interpreter sets .name (Python >= 3.10), which pickling drops: code that asks
    # `except AttributeError as e: if e.name == ...` got None from a worker
    with pytest.raises(cls) as info:
        Parallel(n_jobs=n_jobs)(delayed(read_a_missing_name)(k) for k in [kind])
    assert type(info.value) is cls and info.value.name == name
    assert any("task 0: read_a_missing_name" in note for note in info.value.__notes__)
    with Executor(max_workers=1) as ex:
        error = ex.submit(read_a_missing_name, kind).exception()
    assert type(error) is cls and error.name == name


def test_an_exception_with_an_init_of_its_own_keeps_what_its_builtin_base_holds():
    # Rebuilt without __init__, the built-in class under it was never initialised: an
    # OSError subclass (requests' exceptions) came back with errno and filename None and
    # str "(2, 'gone')", a UnicodeDecodeError's encoding None, an ImportError's name
    # None, a StopIteration's value None; its own pickling, cls(*args), had kept them
    proc = run_python(
        """
        import errno
        from picklepool import Parallel, delayed

        class RequestError(OSError):
            def __init__(self, *args, **kwargs):
                self.response = kwargs.pop("response", None)
                super().__init__(*args, **kwargs)

        class Decode(UnicodeDecodeError):
            def __init__(self, *args):
                super().__init__(*args)
                self.tag = 1

        class Missing(ImportError):
            def __init__(self, msg, **kwargs):
                super().__init__(msg, **kwargs)

        class Done(StopIteration):
            def __init__(self, value):
                super().__init__(value)

        def make(i):
            return [
                RequestError(errno.ENOENT, "gone", "/x", response="r"),
                Decode("utf-8", b"\\xff", 0, 1, "bad"),
                Missing("no module", name="mod", path="/p"),
                Done(7),
            ][i]

        def raise_it(i):
            raise make(i)

        def describe(e):
            fields = ("errno", "strerror", "filename", "response", "encoding", "start")
            fields += ("name", "path", "value")
            return type(e).__name__, e.args, str(e), [getattr(e, f, None) for f in fields]

        here = [describe(make(i)) for i in range(4)]
        print(Parallel(n_jobs=2)(delayed(describe)(make(i)) for i in range(4)) == here)
        print([describe(e) for e in Parallel(n_jobs=2)(delayed(make)(i) for i in range(4))] == here)
        raised = []
        for i in range(3):
            try:
                Parallel(n_jobs=2)([delayed(raise_it)(i)])
            except (OSError, ValueError, ImportError) as e:
                raised.append(describe(e))
        print(raised == here[:3], here[0][2])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "True", "True [Errno 2] gone: '/x'"]


def test_an_exception_with_slots_keeps_their_values():
    # BaseException's pickling sends args and __dict__ only: a slot's value was lost (an
    # AttributeError at e.code), and with an __init__ of its own the returned exception
    # failed the whole reply in the parent ("missing 1 required positional argument")
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        class Coded(Exception):
            __slots__ = ("code",)

        class Located(ValueError):
            __slots__ = ("line", "column")

            def __init__(self, line):
                super().__init__(f"line {line}")
                self.line = line

        def make(i):
            coded = Coded("c")
            coded.code = i
            return [coded, Located(i)]

        def raise_it(i):
            raise make(i)[i]

        def describe(e):
            return type(e).__name__, e.args, getattr(e, "code", "-"), getattr(e, "line", "-")

        here = [describe(e) for e in make(1)]
        print([describe(e) for e in Parallel(n_jobs=2)([delayed(make)(1)])[0]] == here)
        print(Parallel(n_jobs=2)(delayed(describe)(e) for e in make(1)) == here)
        for i in range(2):
            try:
                Parallel(n_jobs=2)([delayed(raise_it)(i)])
            except Exception as e:
                print(describe(e))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "True",
        "True",
        "('Coded', ('c',), 0, '-')",
        "('Located', ('line 1',), '-', 1)",
    ]


def test_a_main_global_looked_up_by_name_in_a_worker_says_why_it_is_missing():
    # A function of __main__ travels with the globals its code names, and no others: one
    # that dispatches by name (globals()["handler_" + kind], getattr(sys.modules[__name__],
    # ...)) failed in the worker with a bare KeyError / AttributeError, where the loop ran.
    proc = run_python(
        """
        import sys
        from picklepool import Executor, Parallel, delayed

        def handler_a(x):
            return ("a", x)

        def by_globals(kind, x):
            return globals()["handler_" + kind](x)

        def by_module(kind, x):
            return getattr(sys.modules[__name__], "handler_" + kind)(x)

        def other_key(x):
            return {}["handler_a"] if x else {}["nothing"]

        print(by_globals("a", 1), by_module("a", 1))
        for f, arg in ((by_globals, 1), (by_module, 1)):
            try:
                Parallel(n_jobs=2)(delayed(f)("a", arg) for _ in range(2))
            except (KeyError, AttributeError) as exc:
                print(type(exc).__name__, " ".join(exc.__notes__))
        with Executor(2) as ex:
            exc = ex.submit(by_globals, "a", 1).exception()
            print(type(exc).__name__, " ".join(getattr(exc, "__notes__", [])))
        try:
            Parallel(n_jobs=2)(delayed(other_key)(0) for _ in range(2))
        except KeyError as exc:
            print("plain", len(exc.__notes__))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "('a', 1) ('a', 1)"
    for line in lines[1:4]:
        assert "'handler_a' is a global of __main__ that the task looked up by name" in line, line
        assert "HANDLERS = {'handler_a': handler_a}" in line, line
    assert lines[1].startswith("KeyError") and lines[2].startswith("AttributeError")
    assert lines[4] == "plain 1"  # a key that is no global of __main__: the task's note only


def _fails_on_two(x, scale=1):
    if x == 2:
        raise ValueError("two")
    return x * scale


class _Wrapper:
    """Stands in for scikit-learn's ``_FuncWrapper``: ``update_wrapper`` around a partial."""

    def __init__(self, function):
        self.function = function
        functools.update_wrapper(self, function)

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: functools.partial(_fails_on_two, scale=3), "partial(_fails_on_two, scale=3)(2)"),
        (lambda: _Wrapper(functools.partial(_fails_on_two, scale=3)), "partial(_fails_on_two, scale=3)(2)"),
        (lambda: __import__("numpy").vectorize(_fails_on_two), "vectorize(_fails_on_two)(2)"),
    ],
)
def test_a_task_of_a_wrapped_function_is_named_by_the_function_it_calls(make, name):
    # "task 2: partial(2)" said nothing of where to look; the note names the function
    with pytest.raises(ValueError, match="two") as info:
        Parallel(n_jobs=2)(delayed(make())(i) for i in range(4))
    assert info.value.__notes__[-1] == f"(raised by task 2: {name} of this Parallel call, in a worker)"
    with Executor(max_workers=1) as ex, pytest.raises(ValueError, match="two") as info:
        ex.submit(make(), 2).result()
    assert f": {name}, in a worker" in info.value.__notes__[-1]


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_task_of_a_numpy_ufunc_is_named_by_the_ufunc(n_jobs):
    # a ufunc has a __name__ but no __qualname__: the note said "ufunc(0)"
    numpy = pytest.importorskip("numpy")
    with pytest.raises(TypeError) as info:
        Parallel(n_jobs=n_jobs)(delayed(numpy.add)(i) for i in range(1))
    place = "in this process" if n_jobs == 1 else "in a worker"
    assert info.value.__notes__[-1] == f"(raised by task 0: add(0) of this Parallel call, {place})"


def ask_for_input(i):
    return input(f"value for {i}: ")


def stop_at_a_breakpoint(i):
    import pdb

    pdb.Pdb(nosigint=True).set_trace()  # (what breakpoint() calls, without PYTHONBREAKPOINT)
    return i


@pytest.mark.parametrize(
    ("func", "kind", "what"),
    [
        (ask_for_input, EOFError, "read its standard input"),
        (stop_at_a_breakpoint, None, "stopped at a breakpoint"),
    ],
)
def test_a_task_that_reads_the_terminal_in_a_worker_is_told_to_run_in_this_process(func, kind, what):
    # A worker's standard input is /dev/null: pdb quit at once with a bare BdbQuit, input()
    # raised "EOF when reading a line", and nothing said why or what to do
    import bdb

    with pytest.raises(kind or bdb.BdbQuit) as info:
        Parallel(n_jobs=2)(delayed(func)(i) for i in range(1))
    note = info.value.__notes__[-1]
    assert note.startswith(f"(The task {what}")
    assert "a worker's standard input is not your terminal" in note and "n_jobs=1" in note
    with Executor(max_workers=1) as ex:
        error = ex.submit(func, 0).exception()
    assert type(error) is type(info.value) and "the function itself for an Executor's" in error.__notes__[-1]


def raise_a_deep_chain(links):
    def level(k):
        if k == 0:
            raise KeyError("the root")
        try:
            level(k - 1)
        except Exception as e:
            raise ValueError(f"level {k}") from e

    level(links)


def raise_a_cycle_of_causes():
    a, b = ValueError("a"), TypeError("b")
    a.__cause__, b.__cause__ = b, a
    raise a


def _chain(err):
    links, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        links.append(err)
        err = err.__cause__
    return links


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_a_deep_chain_of_causes_comes_back_to_its_root(backend):
    # The worker sent 9 links (the root cause of a deeper chain, the KeyError here, was lost
    # with no word), and the parent put the worker's traceback in place of the 17th's cause
    with pytest.raises(ValueError, match="level 30") as info:
        Parallel(n_jobs=2, backend=backend)(delayed(raise_a_deep_chain)(30) for _ in range(2))
    links = _chain(info.value)
    assert [str(e) for e in links[:31]] == [f"level {k}" for k in range(30, 0, -1)] + ["'the root'"]
    assert type(links[30]) is KeyError
    if backend == "loky":
        assert len(links) == 32 and isinstance(links[31], RemoteTraceback)
    # a cycle of causes still comes back, cut where it closes
    with pytest.raises(ValueError) as info:
        Parallel(n_jobs=2, backend=backend)(delayed(raise_a_cycle_of_causes)() for _ in range(2))
    assert [(type(e), e.args) for e in _chain(info.value)][:2] == [(ValueError, ("a",)), (TypeError, ("b",))]


def test_a_chain_of_causes_longer_than_the_worker_sends_still_ends_at_its_root():
    # Past 64 links the rest was dropped: the root cause (the KeyError, the one a reader
    # looks for first) was lost with no word, as at 9 links before.
    with pytest.raises(ValueError, match="level 100") as info:
        Parallel(n_jobs=2)(delayed(raise_a_deep_chain)(100) for _ in range(1))
    links = [e for e in _chain(info.value) if not isinstance(e, RemoteTraceback)]
    assert [str(e) for e in links[:64]] == [f"level {k}" for k in range(100, 36, -1)]
    root = links[64]
    assert type(root) is KeyError and str(root) == "'the root'" and len(links) == 65
    assert "36 links of the chain of causes" in root.__notes__[-1]


def import_a_runtime_module(i):
    import picklepool_test_runtime_config

    return picklepool_test_runtime_config.THRESHOLD + i


def test_a_task_importing_a_module_made_at_run_time_is_told_why_a_worker_has_none(monkeypatch):
    # sys.modules["config"] = types.ModuleType("config"): the loop imported it; a worker's
    # ModuleNotFoundError said nothing of why, nor what to do
    import types

    module = types.ModuleType("picklepool_test_runtime_config")
    module.THRESHOLD = 5
    monkeypatch.setitem(sys.modules, "picklepool_test_runtime_config", module)
    assert import_a_runtime_module(1) == 6  # (the loop)
    with pytest.raises(ModuleNotFoundError) as info:
        Parallel(n_jobs=2)(delayed(import_a_runtime_module)(i) for i in range(1))
    note = info.value.__notes__[-1]
    assert note.startswith("(module 'picklepool_test_runtime_config' was made at run time in this process")
    assert "initializer" in note and "as an argument" in note


class _HookFinder:
    """An import hook a program installs (as pyximport.install() does): serves one module.
    This one holds what cannot be pickled, so it cannot be sent to the workers."""

    NAME = "picklepool_test_hooked"

    def __init__(self):
        self.held = (i for i in range(1))  # (a generator: as an open connection would)

    def find_spec(self, name, path, target=None):
        import importlib.util

        return importlib.util.spec_from_loader(name, self) if name == self.NAME else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.VALUE = 7


def import_a_hooked_module(i):
    import picklepool_test_hooked

    return picklepool_test_hooked.VALUE + i


def test_a_task_importing_through_a_hook_that_cannot_be_sent_is_told_why_a_worker_cannot(monkeypatch):
    # pyximport.install() (or a plugin system's finder) in the script: its finder goes to the
    # workers (workers.finders) when it pickles; when it does not, the worker's bare
    # ModuleNotFoundError said nothing of why, nor what to do
    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, _HookFinder()])
    monkeypatch.delitem(sys.modules, _HookFinder.NAME, raising=False)
    assert import_a_hooked_module(1) == 8  # (the loop; imported here since, as a script's top does)
    with pytest.raises(ModuleNotFoundError) as info:
        Parallel(n_jobs=2)(delayed(import_a_hooked_module)(i) for i in range(1))
    note = info.value.__notes__[-1]
    assert note.startswith("(module 'picklepool_test_hooked' is found in this process by an import hook (")
    assert "_HookFinder" in note and "initializer" in note
    monkeypatch.delitem(sys.modules, _HookFinder.NAME)  # not imported here yet: found by the hook
    with pytest.raises(ModuleNotFoundError) as info:
        Parallel(n_jobs=2)(delayed(import_a_hooked_module)(i) for i in range(1))
    assert "_HookFinder" in info.value.__notes__[-1]


def _return_a_worker_only_object(folder, how):
    sys.path.insert(0, folder)  # the worker's sys.path (the next batch has the parent's again)
    import pp_worker_only_mod  # type: ignore[import-not-found]

    if how == "raise":
        raise pp_worker_only_mod.WorkerOnlyError("from the worker")
    return pp_worker_only_mod.Made(3)


@pytest.mark.parametrize("how", ["return", "raise"])
def test_a_result_whose_module_only_the_worker_imports_says_the_parent_cannot(tmp_path, how):
    # a task imported a module from a folder it put on its own sys.path (a plugin folder; or a
    # module installed only where a dask worker runs) and returned an instance of its class: the
    # error said "Pickler 'hybrid' sends functions and classes by reference ..., so the worker
    # must be able to import them. Fix: use pickler='hybrid' (the default)": the wrong side
    # (the parent cannot import it) and a fix already in force
    from picklepool.errors import UnpicklingError

    (tmp_path / "pp_worker_only_mod.py").write_text(
        "class Made:\n    def __init__(self, n):\n        self.n = n\n\n\n"
        "class WorkerOnlyError(Exception):\n    pass\n"
    )
    with pytest.raises(UnpicklingError) as info:
        Parallel(n_jobs=2)([delayed(_return_a_worker_only_object)(str(tmp_path), how)])
    text = str(info.value)
    assert "task 0: _return_a_worker_only_object(" in text, text
    assert "No module named 'pp_worker_only_mod'" in text, text
    assert "the worker must be able to import" not in text and "use pickler=" not in text, text
    assert "this process (the parent) cannot import module 'pp_worker_only_mod'" in text, text
    assert "sys.path" in text and "plain data" in text, text
    sys.modules.pop("pp_worker_only_mod", None)


class ExitsInRepr:
    """An argument of the task's exception that cannot travel, whose ``__repr__`` raises a
    ``BaseException`` that is not an ``Exception``."""

    def __init__(self, kind):
        self.kind = kind
        self.rows = (i for i in range(3))

    def __repr__(self):
        raise self.kind()


def raise_with_an_arg_whose_repr_exits(kind):
    raise ValueError("bad rows", ExitsInRepr(kind))


def raise_a_local_class_whose_str_exits(kind):
    class LocalError(ValueError):  # cannot travel under pickler="pickle": sent as text
        def __str__(self):
            raise kind()

    raise LocalError("bad rows")


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize(
    "func, pickler",
    [(raise_with_an_arg_whose_repr_exits, "hybrid"), (raise_a_local_class_whose_str_exits, "pickle")],
)
def test_an_exception_whose_repr_or_str_raises_a_base_exception_comes_back_as_the_tasks(func, pickler, kind):
    # The worker's reply code ran the exception's __repr__ / __str__ under `except Exception`:
    # a SystemExit or KeyboardInterrupt from them escaped the worker's reply, and the caller
    # got it bare, naming no task (a bare SystemExit ends a script quietly).
    with pytest.raises(ValueError) as info:
        Parallel(n_jobs=2, pickler=pickler)(delayed(func)(kind) for _ in range(1))
    err = info.value
    assert type(err).__name__ in ("ValueError", "LocalError")
    assert "(raised by task 0: " in err.__dict__["__notes__"][-1]
    with Executor(max_workers=1, pickler=pickler) as ex:
        err = ex.submit(func, kind).exception()
        assert isinstance(err, ValueError), repr(err)
        assert "(raised by task 0 (the 1st call submitted" in err.__dict__["__notes__"][-1]


class AttributesExit(ValueError):
    """Every missing attribute (``__notes__`` too) raises a ``BaseException`` of the test's."""

    kind: type[BaseException] = SystemExit

    def __getattr__(self, name):
        raise type(self).kind(f"no attribute {name}")


def raise_attributes_exit(kind):
    cls = type("AttributesExit", (AttributesExit,), {"kind": kind, "__module__": __name__})
    raise cls("odd class")


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_an_exception_whose_getattr_raises_a_base_exception_does_not_kill_the_worker(kind):
    # Formatting the task's traceback reads its __notes__ (wire.format_error), under
    # `except Exception` only: a SystemExit from the class's __getattr__ ended the worker
    # (WorkerCrashedError, "exit code EXIT(1)", blaming os._exit), the pool broken with it.
    with pytest.raises(ValueError) as info:
        Parallel(n_jobs=2)(delayed(raise_attributes_exit)(kind) for _ in range(1))
    assert "(raised by task 0: raise_attributes_exit(" in str(info.value.__dict__["__notes__"])
    assert "raise_attributes_exit" in str(info.value.__cause__)  # the worker's frames at least
