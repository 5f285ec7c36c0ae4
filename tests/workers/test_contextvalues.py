"""The calling context's variables reach the tasks in warm workers (workers.contextvalues)."""

from __future__ import annotations

import asyncio
import contextvars
import pickle

import pytest

from picklepool import Executor, Parallel, delayed, parallel_config
from picklepool.pickler import get_pickler
from picklepool.workers import contextvalues

from ..conftest import run_python

_request: contextvars.ContextVar[str] = contextvars.ContextVar("_request", default="none")
_extra: contextvars.ContextVar[object] = contextvars.ContextVar("_extra")


def _seen(_=None):
    return _request.get()


def _both(_=None):
    return _request.get(), _extra.get("unset")


def test_a_script_variable_is_read_with_the_callers_value_as_in_the_loop():
    # request_id.set("abc") before the call: a warm worker read the default (None), and
    # under joblib the function did not even pickle
    res = run_python(
        """
        import contextvars
        from picklepool import Parallel, delayed

        request_id = contextvars.ContextVar("request_id", default=None)

        def task(var):
            return request_id.get(), var is request_id

        def overwrite(_):
            request_id.set("the task's")
            return request_id.get()

        if __name__ == "__main__":
            run = lambda f: Parallel(n_jobs=2)(delayed(f)(request_id) for _ in range(4))
            print(run(task))  # warm the workers
            token = request_id.set("abc")
            print(run(task))
            request_id.set("def")
            print((run(task), run(overwrite), run(task)))
            request_id.reset(token)
            print(run(task))
            print(contextvars.Context().run(run, task))
        """
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == str([(None, True)] * 4)
    assert lines[1] == str([("abc", True)] * 4)
    # a task's own set does not change what the next batch reads
    assert lines[2] == str(([("def", True)] * 4, ["the task's"] * 4, [("def", True)] * 4))
    assert lines[3] == lines[4] == str([(None, True)] * 4)


async def _handle(ex, name):
    _request.set(name)
    return await asyncio.get_running_loop().run_in_executor(ex, _seen)


async def _serve(ex, names):
    return await asyncio.gather(*(_handle(ex, n) for n in names))


def test_each_asyncio_task_runs_its_calls_with_its_own_context():
    names = [f"request-{i}" for i in range(6)]
    with Executor(max_workers=2) as ex:
        assert asyncio.run(_serve(ex, names)) == names
        assert ex.submit(_seen).result() == "none"  # this thread's context never set it


def test_a_modules_variable_is_that_modules_in_the_worker():
    token = _request.set("abc")
    try:
        assert Parallel(n_jobs=2)(delayed(_seen)() for _ in range(3)) == ["abc"] * 3
        # sent by module and name: a variable passed as an argument is the one tasks read
        assert pickle.loads(get_pickler("hybrid").dumps(_request)) is _request
    finally:
        _request.reset(token)
    assert Parallel(n_jobs=2)(delayed(_seen)() for _ in range(3)) == ["none"] * 3


def test_a_value_that_does_not_pickle_is_left_out_and_the_others_are_sent():
    token = _request.set("abc")
    held = _extra.set(i for i in range(3))  # a generator
    try:
        assert Parallel(n_jobs=2)(delayed(_both)() for _ in range(2)) == [("abc", "unset")] * 2
    finally:
        _extra.reset(held)
        _request.reset(token)


def _own_request():
    _request.set("the worker's")


def test_an_initializers_value_gives_way_to_the_parents_from_the_first_batch_on():
    with Executor(max_workers=1, initializer=_own_request) as ex:
        token = _request.set("the parent's")
        try:
            # the batch the initializer ran in sees what later ones see
            assert [ex.submit(_seen).result() for _ in range(3)] == ["the parent's"] * 3
        finally:
            _request.reset(token)
        assert ex.submit(_seen).result() == "the worker's"  # its own value back


def _read_while_changing():
    _request.set("abc")
    first = contextvalues.pickled()
    assert first is not None and contextvalues.pickled() is first
    _request.set("abd")
    assert contextvalues.pickled() != first
    box = {"user": "a"}
    _request.set(box)  # type: ignore[arg-type]
    before = contextvalues.pickled()
    box["user"] = "b"  # changed in place: sent again
    assert contextvalues.pickled() != before


def _read_with_only_others():
    np = pytest.importorskip("numpy")
    with np.errstate(divide="raise"), parallel_config(n_jobs=2):
        return contextvalues.pickled()


def test_the_parents_read_is_cached_while_the_values_are_the_same():
    contextvars.Context().run(_read_while_changing)  # (a context of the test's own)
    # picklepool's own variables and numpy's are not sent
    assert contextvars.Context().run(_read_with_only_others) is None


def test_an_installed_librarys_variable_is_not_sent():
    # its state (a web framework's request, a tracer's span): the worker's copy keeps its own
    import json

    json._picklepool_test_var = var = contextvars.ContextVar("_picklepool_test_var_lib")
    try:
        assert contextvars.Context().run(lambda: (var.set("a request"), contextvalues.pickled())[1]) is None
    finally:
        del json._picklepool_test_var


def test_the_pure_python_decimal_modules_context_is_not_sent():
    # _pydecimal's context variable (a program on the pure-Python decimal) went with every
    # batch, pickled by value: 258 KB each (the C decimal's context is what is mirrored)
    import _pydecimal
    import contextvars

    from picklepool.workers import contextvalues

    def check():
        _pydecimal.setcontext(_pydecimal.Context(prec=9))
        return contextvalues.pickled()

    assert contextvars.copy_context().run(check) is None
