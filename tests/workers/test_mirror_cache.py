"""The per-batch checks that skip work still see every change, in this process.

``workers.mirror.apply`` sets what the parent changed since the last batch, compared
with the process itself through shortcuts (the decimal context read in one call, numpy's
error handling by the object numpy holds): a parent's change must be applied by the
next batch, over what a task changed; a task's change stays while the parent's
setting stays as it was. So must the runner's and the thread
limits' caches, and the lane's own framing must match ``Connection``'s.
"""

from __future__ import annotations

import decimal
import os
import pickle
import socket
import sys
import threading
from multiprocessing.connection import Connection

import pytest

from picklepool.executor.dispatch import parent_state
from picklepool.workers import following, mainnames, mirror


@pytest.fixture
def restored(monkeypatch, tmp_path):
    """This process's state as it was after the test (apply() changes the process)."""
    path, cwd, limit = list(sys.path), os.getcwd(), sys.getrecursionlimit()
    context = decimal.getcontext().copy()
    mask = os.umask(0o022)
    os.umask(mask)
    try:  # (imported now: a test that imports it first changes its handling, put back below)
        import numpy as np
    except ImportError:
        np = None
    errors = np.geterr() if np is not None else None
    monkeypatch.setattr(mirror, "_applied", None)
    monkeypatch.setattr(mirror, "_followed", None)
    monkeypatch.setattr(following, "_seen", {})
    monkeypatch.setattr(following, "_before", {})
    monkeypatch.setattr(mainnames, "script", mainnames.script)  # (apply sets a worker's)
    yield tmp_path
    sys.path[:] = path
    os.chdir(cwd)
    sys.setrecursionlimit(limit)
    decimal.setcontext(context)
    os.umask(mask)
    if errors is not None:
        np.seterr(**errors)


def test_a_tasks_changes_stay_until_the_parent_changes_the_same_setting(restored, tmp_path):
    state = parent_state(2)
    mirror.apply(state)
    # what a task may do to its worker (a one-time setup behind a module flag)
    sys.path.insert(0, str(restored))
    os.chdir(restored)
    sys.setrecursionlimit(state.recursion_limit + 123)
    decimal.getcontext().prec = 5
    os.umask(0o077)
    mirror.apply(pickle.loads(pickle.dumps(state)))  # an equal state (a new object each batch)
    assert sys.path[0] == str(restored) and os.getcwd() == str(restored)
    assert sys.getrecursionlimit() == state.recursion_limit + 123
    assert decimal.getcontext().prec == 5 and mirror.umask() == 0o077
    # the parent changes each setting: its values go over the task's
    other = tmp_path / "other"
    other.mkdir()
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        mask = os.umask(0o027)
        try:
            changed = parent_state(2)
        finally:
            os.umask(mask)
    changed = changed._replace(
        sys_path=(*state.sys_path, "/a/new/entry"), cwd=str(other), recursion_limit=state.recursion_limit + 7
    )
    mirror.apply(changed)
    assert tuple(sys.path[: len(changed.sys_path)]) == changed.sys_path
    assert os.getcwd() == str(other) and sys.getrecursionlimit() == state.recursion_limit + 7
    assert decimal.getcontext().prec == 40 and mirror.umask() == 0o027


def test_a_parents_change_is_applied_by_the_next_batch(restored):
    default = parent_state(2)
    mirror.apply(default)
    with decimal.localcontext() as ctx:
        ctx.prec, ctx.rounding = 40, decimal.ROUND_DOWN
        ctx.traps[decimal.Inexact] = True
        changed = parent_state(2)
    assert changed.numeric[0] is not None
    mirror.apply(changed)
    now = decimal.getcontext()
    assert (now.prec, now.rounding, bool(now.traps[decimal.Inexact])) == (40, decimal.ROUND_DOWN, True)
    mirror.apply(pickle.loads(pickle.dumps(default)))  # the default again
    assert mirror.numeric_state()[0] is None


def test_numpy_error_handling_a_task_changed_stays_until_the_parent_changes_it(restored):
    np = pytest.importorskip("numpy")
    state = parent_state(2)
    mirror.apply(state)
    np.seterr(divide="raise")  # a task's: numpy holds a new object now
    mirror.apply(state)
    assert np.geterr()["divide"] == "raise"
    over = (("divide", "warn"), ("invalid", "warn"), ("over", "raise"), ("under", "ignore"))
    raising = parent_state(2, numeric=(None, over, None, None))
    mirror.apply(raising)  # the parent's change of one kind: over the task's, the others stay
    assert np.geterr()["divide"] == "raise" and np.geterr()["over"] == "raise"
    mirror.apply(state)  # the change ended: the task's handling of before it
    assert np.geterr()["over"] == "warn" and np.geterr()["divide"] == "raise"
    divide = (("divide", "ignore"), ("invalid", "warn"), ("over", "raise"), ("under", "ignore"))
    mirror.apply(parent_state(2, numeric=(None, divide, None, None)))  # the kind the task set
    assert np.geterr()["divide"] == "ignore" and np.geterr()["over"] == "raise"


def test_a_parents_numpy_change_is_applied_while_the_worker_holds_the_same_object(restored):
    np = pytest.importorskip("numpy")
    mirror.apply(parent_state(2))  # checked: the worker's object is the default handling
    raising = parent_state(
        2,
        numeric=(
            None,
            (("divide", "raise"), ("invalid", "warn"), ("over", "warn"), ("under", "ignore")),
            None,
            None,
        ),
    )
    mirror.apply(raising)  # the same object in numpy's variable, another handling wanted
    assert np.geterr()["divide"] == "raise"
    mirror.apply(parent_state(2, numeric=mirror.NO_NUMERIC))
    assert np.geterr()["divide"] == "warn"


def test_numpy_error_handling_of_another_thread_is_checked_there(restored):
    np = pytest.importorskip("numpy")
    state = parent_state(2, numeric=mirror.NO_NUMERIC)
    mirror.apply(state)
    seen = []

    def other():
        np.seterr(invalid="raise")  # this thread's own context
        mirror._apply_numeric(state.numeric)
        seen.append(np.geterr()["invalid"])

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen == ["warn"]


def test_the_decimal_read_matches_reading_the_context_item_by_item(restored):
    want = mirror._DECIMAL_DEFAULT
    decimal.setcontext(decimal.Context())
    assert mirror._decimal_read(decimal) == mirror._decimal_now(decimal) == want
    for change in (
        lambda c: setattr(c, "prec", 7),
        lambda c: setattr(c, "rounding", decimal.ROUND_UP),
        lambda c: setattr(c, "Emin", -5),
        lambda c: setattr(c, "capitals", 0),
        lambda c: setattr(c, "clamp", 1),
        lambda c: c.traps.__setitem__(decimal.Underflow, True),
        lambda c: c.traps.__setitem__(decimal.DivisionByZero, False),
    ):
        decimal.setcontext(decimal.Context(*decimal.DefaultContext.__reduce__()[1][:6], flags=[], traps=[]))
        mirror._apply_numeric(mirror.NO_NUMERIC)
        assert mirror._decimal_read(decimal) == want
        change(decimal.getcontext())
        assert mirror._decimal_read(decimal) != want
        mirror._apply_numeric(mirror.NO_NUMERIC)
        assert mirror._decimal_read(decimal) == want and mirror._decimal_now(decimal) == want
    decimal.getcontext().flags[decimal.Inexact] = True  # flags are not mirrored
    assert mirror._decimal_read(decimal) == want


def test_the_pure_python_decimal_module_is_checked_too():
    # in a copy of the context: _pydecimal's context variable set in this test's context
    # went with every later dask batch of this process (258 KB each)
    import contextvars

    contextvars.copy_context().run(_check_pydecimal)


def _check_pydecimal():
    import _pydecimal

    want = mirror._DECIMAL_DEFAULT
    _pydecimal.setcontext(
        _pydecimal.Context(
            traps=[_pydecimal.InvalidOperation, _pydecimal.DivisionByZero, _pydecimal.Overflow]
        )
    )
    assert mirror._decimal_read(_pydecimal) == want
    _pydecimal.getcontext().traps[_pydecimal.Inexact] = True
    assert mirror._decimal_read(_pydecimal) != want


def test_the_last_pickler_is_kept_only_for_the_same_header():
    import cloudpickle

    from picklepool.pickler.base import StdlibPickler
    from picklepool.pickler.hybrid import HybridPickler
    from picklepool.workers import runner

    one, two = cloudpickle.dumps(StdlibPickler()), cloudpickle.dumps(HybridPickler())
    first = runner._pickler(one)
    assert type(first) is StdlibPickler and runner._pickler(bytes(one)) is first
    other = runner._pickler(two)
    assert type(other) is HybridPickler
    assert runner._pickler(one) is first  # (from the cache of rebuilt objects)


def test_the_pickler_kept_loads_as_its_own_loads():
    # pickle.loads itself stands for BasePickler's loads only: a class (or an instance) with
    # a loads of its own keeps it
    import cloudpickle

    from picklepool.pickler.base import StdlibPickler
    from picklepool.workers import runner

    class Own(StdlibPickler):
        def loads(self, data, buffers=None):
            return ("own", pickle.loads(data, buffers=buffers))

    assert runner._loads_of(StdlibPickler()) is pickle.loads
    assert runner._loads_of(Own())(pickle.dumps(1)) == ("own", 1)
    mine = StdlibPickler()
    mine.loads = lambda data, buffers=None: "instance's"
    assert runner._loads_of(mine)(b"") == "instance's"
    header = cloudpickle.dumps(Own())
    _, pickler, loads = runner._pickler_and_loads(header)
    assert type(pickler) is Own and loads(pickle.dumps(2)) == ("own", 2)


def test_a_kept_function_skips_its_check_only_when_it_carries_nothing():
    from picklepool.workers import runner

    assert runner._Kept(os.getcwd, "call-1").fixed  # a built-in: nothing to watch
    assert runner._Kept(_importable, "call-1").fixed  # of an importable module: its state is the module's
    import types

    carried = {"n": [0]}  # globals of its own, as a function rebuilt by value: they may change
    kept = runner._Kept(types.FunctionType(_importable.__code__, carried), "call-1")
    assert not kept.fixed and not kept.baseline.changed()
    carried["n"] = [1]
    assert kept.baseline.changed()


def _importable() -> int:
    return 1


def test_the_loading_swap_follows_the_filters_applied(monkeypatch):
    import warnings

    from picklepool.workers import warnfilters

    fresh = {
        "_read": (None, None, (), None),
        "_parents": None,
        "_own": (),
        "_base": None,
        "_erring": (None, False),
    }
    for name, value in fresh.items():  # a worker's, before its first batch
        monkeypatch.setattr(warnfilters, name, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        erring = warnfilters.pickled()
    with warnings.catch_warnings():
        warnings.resetwarnings()  # (not pytest's own "error" filters)
        warnings.simplefilter("ignore")
        quiet = warnfilters.pickled()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        mine = list(warnings.filters)
        warnfilters.apply(erring)  # the parent's "error": loading swaps in the worker's own
        parents = list(warnings.filters)
        swapped = warnfilters.swap_in()
        assert swapped is not None and list(warnings.filters) == mine
        warnfilters.swap_out(swapped)
        assert list(warnings.filters) == parents
        warnfilters.apply(quiet)  # no "error" now: nothing is swapped
        assert warnfilters.swap_in() is None and warnings.filters[0][0] == "ignore"
        warnfilters.apply(erring)  # and again
        swapped = warnfilters.swap_in()
        assert swapped is not None and list(warnings.filters) == mine
        warnfilters.swap_out(swapped)


def test_a_small_batch_with_a_large_reply_keeps_its_outcome_until_sent():
    import cloudpickle

    from picklepool.pickler.base import StdlibPickler
    from picklepool.pickler.buffers import Frames
    from picklepool.wire import Batch, FreedAfterSending
    from picklepool.workers import runner

    pickler = StdlibPickler()
    header = cloudpickle.dumps(pickler)
    fn = (None, pickler.dumps(list), "list", "t")

    def run(n):
        tasks = Frames(pickler.dumps((0, [(range(n),)], None)), (), None, "c")
        return runner.run_batch(Batch(1, None, header, (fn,), tasks, 0, None, None, None))

    assert type(run(3)) is bytes  # a Frames of a small pickle: nothing kept
    large = run(100_000)  # small arguments, a large result: freed after the reply is sent
    assert type(large) is FreedAfterSending and large.keep[2].values[0] == list(range(100_000))


def _receiver(kind, fd):
    """A lane's way of reading messages from *fd*: the parent's (receive), or a worker's loop's."""
    from picklepool.workers import lane

    return (lambda: lane.receive(fd)) if kind == "receive" else lane._Reader(fd).next


@pytest.mark.parametrize("kind", ["receive", "reader"])
@pytest.mark.parametrize("size", [0, 1, 100, 16_383, 16_384, 65_531, 65_532, 70_000, 1 << 20])
def test_the_lanes_framing_is_connections(size, kind):
    from picklepool.workers import lane

    a, b = socket.socketpair()
    parent, worker = Connection(a.detach()), Connection(b.detach())
    try:
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        sender = threading.Thread(target=parent.send_bytes, args=(payload,))
        sender.start()  # (a large message fills the socket: read while it is written)
        assert _receiver(kind, worker.fileno())() == payload
        sender.join()
        replier = threading.Thread(target=lane._send, args=(worker.fileno(), lane.STAYING, payload))
        replier.start()
        assert parent.recv_bytes() == lane.STAYING + payload
        replier.join()
    finally:
        parent.close()
        worker.close()


@pytest.mark.parametrize("kind", ["receive", "reader"])
def test_the_lane_reads_a_message_written_in_pieces(kind):
    a, b = socket.socketpair()
    try:
        receive = _receiver(kind, b.fileno())
        whole = (5).to_bytes(4, "big") + b"hello"
        out = []
        reader = threading.Thread(target=lambda: out.append(receive()))
        reader.start()
        for i in range(len(whole)):
            a.sendall(whole[i : i + 1])
        reader.join()
        assert out == [b"hello"]
        a.close()
        with pytest.raises(EOFError):
            receive()
    finally:
        b.close()


def test_a_workers_loop_keeps_what_one_read_brought_past_its_message():
    # the parent's next message (or its stop) read with one: each comes out whole, in order
    from picklepool.workers import lane

    a, b = socket.socketpair()
    parent = Connection(a.detach())
    try:
        messages = [b"one", b"", b"x" * 70_000, b"two", b"three" * 9, b""]
        sender = threading.Thread(target=lambda: [parent.send_bytes(m) for m in messages])
        sender.start()
        receive = lane._Reader(b.fileno()).next
        assert [receive() for _ in messages] == messages
        sender.join()
        parent.close()
        with pytest.raises(EOFError):
            receive()
    finally:
        b.close()


def test_the_end_of_a_parents_change_gives_back_the_tasks_value_of_before_it(restored):
    # In a loop, the end of a block (np.errstate, decimal.localcontext) puts back what was set
    # before it, a task's included: the parent's own value went over the task's in the worker
    first = parent_state(2)
    limit = first.recursion_limit
    mirror.apply(first)
    sys.setrecursionlimit(limit + 500)  # a task's one-time setup
    mirror.apply(first)  # the parent's unchanged: the task's stays
    assert sys.getrecursionlimit() == limit + 500
    mirror.apply(first._replace(recursion_limit=limit + 7))  # a change of the parent's: its value
    assert sys.getrecursionlimit() == limit + 7
    sys.setrecursionlimit(limit + 9)  # a task's, inside the parent's block
    mirror.apply(first)  # the block ended: the task's of before it
    assert sys.getrecursionlimit() == limit + 500
    mirror.apply(first._replace(recursion_limit=limit + 3))
    mirror.apply(first._replace(recursion_limit=limit + 4))  # nested: the inner one
    mirror.apply(first)  # both ended before this batch
    assert sys.getrecursionlimit() == limit + 500


def test_the_settings_are_followed_again_unless_they_are_the_last_batchs_with_none_set_since(
    restored, monkeypatch
):
    """apply() skips following.follow for the settings (sys.path, the working folder, the
    umask...) only when they are the last batch's values and none was set otherwise since."""
    calls = []
    follow = following.follow
    monkeypatch.setattr(following, "follow", lambda key, *rest: (calls.append(key), follow(key, *rest)))
    state = parent_state(2)
    mirror.apply(state)
    assert calls
    calls.clear()
    mirror.apply(pickle.loads(pickle.dumps(state)))  # an equal state: nothing to follow
    assert calls == []
    raised = state._replace(recursion_limit=state.recursion_limit + 77)  # a parent's change
    mirror.apply(raised)
    assert "recursion_limit" in calls and sys.getrecursionlimit() == state.recursion_limit + 77
    calls.clear()
    mirror.apply(raised)
    assert calls == []
    following.own_from_now("umask")  # (an initializer's value: its own from now)
    mirror.apply(raised)
    assert "umask" in calls
    calls.clear()
    following.seen_as("cwd", state.cwd)
    mirror.apply(raised)
    assert "cwd" in calls
    calls.clear()
    monkeypatch.setattr(following, "_seen", {})  # a table of seen values made anew: all again
    mirror.apply(raised)
    assert "cwd" in calls and "umask" in calls
    calls.clear()
    # a value whose == is no truth value (an array among numpy's print options): all again
    np = pytest.importorskip("numpy")
    options = dict(state.numeric[2] or {}, formatter={"float": np.array([1.0, 2.0])})
    odd = raised._replace(numeric=(*raised.numeric[:2], options, *raised.numeric[3:]))
    monkeypatch.setattr(mirror, "_followed", (following._seen, following.generation, mirror._FOLLOWED(odd)))
    monkeypatch.setattr(following, "follow", lambda key, *rest: calls.append(key))
    mirror.apply(pickle.loads(pickle.dumps(odd)))
    assert "cwd" in calls and "numeric.2" in calls
