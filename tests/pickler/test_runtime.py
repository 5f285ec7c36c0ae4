"""Per-process runtime objects under hybrid: rebuilt fresh in the worker, or refused with the fix."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import io
import logging
import multiprocessing
import pickle
import subprocess
import sys
import threading
import time
import weakref

import pytest

from picklepool import Parallel, delayed
from picklepool.pickler import get_pickler
from picklepool.pickler.diagnose import explain
from picklepool.pickler.runtime import RefusedError

from ..conftest import run_python

hybrid = get_pickler("hybrid")


def roundtrip(obj):
    return pickle.loads(hybrid.dumps(obj))


MAIN_SCRIPT = """
    import contextvars, logging, threading
    from picklepool import Parallel, delayed

    LOCAL = threading.local()
    LOCK = threading.Lock()
    VAR = contextvars.ContextVar("var", default=10)
    LOG = logging.getLogger("tasks")

    class Cache(threading.local):
        def __init__(self, size=3):
            self.size = size
            self.items = []

    CACHE = Cache(size=5)

    def task(x):
        with LOCK:
            fresh = not hasattr(LOCAL, "parent_only")
            LOCAL.count = getattr(LOCAL, "count", 0) + 1
            CACHE.items.append(x)
        return (x, fresh, VAR.get(), CACHE.size, type(CACHE).__name__, LOG.name)

    if __name__ == "__main__":
        LOCAL.parent_only = True
        VAR.set(99)  # a value of the calling context: the tasks read it, as in the loop
        for row in Parallel(n_jobs=2)(delayed(task)(i) for i in range(4)):
            print(row)
"""


def test_main_function_using_module_level_thread_local():
    res = run_python(MAIN_SCRIPT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"({i}, True, 99, 3, 'Cache', 'tasks')" for i in range(4)]


# -- threading.local -------------------------------------------------------------------------


class Defaults(threading.local):
    def __init__(self, size=3):
        self.size = size


class NeedsArgs(threading.local):
    def __init__(self, size):
        self.size = size


def test_thread_local_arrives_fresh_and_empty():
    local = threading.local()
    local.value = 1
    copy = roundtrip(local)
    assert type(copy) is threading.local and not hasattr(copy, "value")
    box = roundtrip([local, local])
    assert box[0] is box[1]


def test_thread_local_subclass_is_built_with_its_init_defaults():
    local = Defaults(size=5)  # made with an argument picklepool cannot read back
    local.extra = 1
    copy = roundtrip(local)
    assert type(copy) is Defaults and copy.size == 3 and not hasattr(copy, "extra")
    seen = []
    t = threading.Thread(target=lambda: seen.append(copy.size))  # another thread: same __init__
    t.start()
    t.join()
    assert seen == [3]


def test_thread_local_subclass_needing_arguments_is_refused():
    with pytest.raises(RefusedError, match=r"requires arguments.*give __init__'s parameters defaults"):
        hybrid.dumps(NeedsArgs(4))


# -- contextvars -----------------------------------------------------------------------------


def test_context_var_is_itself_here_and_one_stand_in_with_its_name_and_default_elsewhere():
    var = contextvars.ContextVar("with_default", default=7)
    bare = contextvars.ContextVar("bare")
    token = var.set(1)
    try:
        assert roundtrip([var, bare, var]) == [var, bare, var]  # back in this process: the same
        # another process: one variable stands for it through every pickle, with its name and
        # default; the value is the calling context's (workers.contextvalues), not the variable's
        got = Parallel(n_jobs=2)(delayed(_var_seen)(var, bare, var) for _ in range(2))
    finally:
        var.reset(token)
    assert got == [("with_default", 7, 1, True, "bare", False)] * 2


def _var_seen(a, b, a2):
    has_default = True
    try:
        contextvars.Context().run(b.get)
    except LookupError:
        has_default = False
    return a.name, contextvars.Context().run(a.get), a.get(), a is a2, b.name, has_default


def test_context_arrives_with_its_values():
    np = pytest.importorskip("numpy")
    var = contextvars.ContextVar("v", default=0)
    with np.errstate(divide="raise"):  # numpy's variable holds a C pointer: left out
        ctx = contextvars.copy_context()
    ctx.run(var.set, 5)
    var2, ctx2 = roundtrip([var, ctx])
    assert ctx2[var2] == 5 and ctx2.run(var2.get) == 5 and var2.get() == 0


def test_context_token_is_refused():
    var = contextvars.ContextVar("t")
    token = var.set(1)
    try:
        with pytest.raises(RefusedError, match="reset its variable in the context that made it"):
            hybrid.dumps(token)
    finally:
        var.reset(token)  # (the test's context is the next tests')


# -- threading.Barrier, Thread -----------------------------------------------------------------


def test_barrier_arrives_without_waiting_threads():
    def action():
        return None

    barrier = threading.Barrier(2, action=action, timeout=30)
    broken = []

    def wait():
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            broken.append(True)

    t = threading.Thread(target=wait)
    t.start()
    while barrier.n_waiting < 1:  # the thread is inside wait()
        time.sleep(0)
    copy = roundtrip(barrier)
    barrier.abort()
    t.join()
    assert broken == [True]
    assert (copy.parties, copy.n_waiting, copy.broken, copy._timeout) == (2, 0, False, 30)
    assert copy._action.__name__ == "action"
    assert roundtrip(barrier).broken  # a broken barrier stays broken


def test_thread_is_refused_with_the_path_and_fix():
    thread = threading.Thread(target=print, name="worker-1")
    with pytest.raises(RefusedError) as info:
        hybrid.dumps({"t": thread})
    msg = explain(hybrid, {"t": thread}, info.value, root="args[0]")
    assert "args[0]['t'] (type threading.Thread)" in msg
    assert "a thread runs only in the process that started it" in msg and "start a thread inside" in msg
    with pytest.raises(RefusedError):
        hybrid.dumps(threading.Timer(1, print))


# -- weak references ---------------------------------------------------------------------------


class Node:
    def __init__(self, parent=None):
        self.parent = weakref.ref(parent) if parent is not None else None
        self.children = []

    def name(self):
        return "node"


def test_weakref_points_at_the_copy_of_its_referent():
    root = Node()
    root.children.append(Node(root))
    copy = roundtrip(root)
    assert copy.children[0].parent() is copy


def test_weakref_whose_referent_is_not_sent_arrives_dead():
    alone = Node()
    assert roundtrip(weakref.ref(alone))() is None
    dead = weakref.ref(Node())
    assert roundtrip(dead)() is None


def test_weak_method_and_weak_dicts():
    node = Node()
    method, held = roundtrip([weakref.WeakMethod(node.name), node])
    assert type(method) is weakref.WeakMethod and method()() == "node" and method().__self__ is held
    values = weakref.WeakValueDictionary({"a": node})
    keys = weakref.WeakKeyDictionary({node: 1})
    values2, keys2, held = roundtrip([values, keys, node])
    assert values2["a"] is held and keys2[held] == 1
    assert len(roundtrip(values)) == 0  # nothing else held the value: gone, as a weak entry


# -- multiprocessing objects, logging -------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        multiprocessing.Lock,
        multiprocessing.Queue,
        multiprocessing.Event,
        lambda: multiprocessing.Value("i", 3),
        lambda: multiprocessing.Array("d", 4),
    ],
)
def test_multiprocessing_objects_are_refused_with_the_fix(make):
    obj = make()
    with pytest.raises(RefusedError, match=r"through inheritance.*multiprocessing\.Manager") as info:
        hybrid.dumps(obj)
    assert isinstance(info.value, RuntimeError)  # as multiprocessing's own refusal
    if hasattr(obj, "close"):
        obj.close()
        obj.join_thread()


def test_logger_travels_by_name_and_handler_with_a_fresh_lock():
    logger = logging.getLogger("picklepool.test.runtime")
    handler = logging.StreamHandler(io.StringIO())
    handler.setLevel(logging.WARNING)
    handler.acquire()  # held: the copy gets a released lock
    try:
        logger2, handler2 = roundtrip([logger, handler])
    finally:
        handler.release()
    assert logger2 is logger
    assert handler2.level == logging.WARNING and handler2.lock is not handler.lock
    assert handler2.lock.acquire(blocking=False)
    handler2.lock.release()


def test_file_handler_is_refused_with_the_fix(tmp_path):
    handler = logging.FileHandler(tmp_path / "log.txt")
    try:
        with pytest.raises(RefusedError, match=r"log\.txt.*configure logging inside the task"):
            hybrid.dumps(handler)
    finally:
        handler.close()


def test_a_child_process_and_a_pending_future_are_refused_with_the_fix():
    # Their only obstacle to pickling was a lock, which hybrid snapshots: a Popen arrived as
    # a copy whose poll() said "ended, status 0" at once while the child ran, and a pending
    # Future as a copy that never completes (result() waited for ever), where joblib refuses
    # both. A done future still travels with its result.
    import concurrent.futures

    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.DEVNULL)
    try:
        with pytest.raises(RefusedError, match=r"subprocess\.Popen \(pid \d+\).*send its returncode"):
            hybrid.dumps({"job": proc})
    finally:
        proc.wait()
    pending: concurrent.futures.Future[int] = concurrent.futures.Future()
    with pytest.raises(RefusedError, match=r"pending .*Future.*send future\.result\(\)"):
        hybrid.dumps([pending])
    pending.set_result(42)
    assert roundtrip(pending).result(timeout=0) == 42
    failed: concurrent.futures.Future[int] = concurrent.futures.Future()
    failed.set_exception(KeyError("k"))
    assert isinstance(roundtrip(failed).exception(timeout=0), KeyError)


def test_a_pool_of_workers_is_refused_with_the_fix():
    # A pool's copy would have none of its workers: hybrid snapshotted its locks and failed
    # deep inside ("Pickling an AuthenticationString object is disallowed").
    from multiprocessing.pool import ThreadPool

    from picklepool import Executor, Parallel, delayed

    fix = r"cannot send a {}: a pool's workers .* start the pool inside the task"
    with concurrent.futures.ProcessPoolExecutor(1) as ppe:  # (no process until a submit)
        with pytest.raises(RefusedError, match=fix.format(r"concurrent\.futures\..*ProcessPoolExecutor")):
            hybrid.dumps({"pool": ppe})
    with ThreadPool(1) as tp:
        with pytest.raises(RefusedError, match=fix.format(r"multiprocessing\.pool\.ThreadPool")):
            hybrid.dumps([tp])
    # a ThreadPoolExecutor: refused for its threads (a Thread's fix) once it ran a task,
    # sent as a copy (another, empty pool) before; under pickle, "use pickler='hybrid'"
    with concurrent.futures.ThreadPoolExecutor(1) as tpe:
        with pytest.raises(RefusedError, match=fix.format(r"concurrent\.futures\..*ThreadPoolExecutor")):
            hybrid.dumps([tpe])
        for name in ("cloudpickle", "pickle"):  # (explained)
            with pytest.raises(pickle.PicklingError, match=r"task 0: len\(.*start the pool inside the task"):
                Parallel(n_jobs=2, pickler=name)(delayed(len)(tpe) for _ in range(1))
        assert tpe.submit(len, "ab").result() == 2
        with pytest.raises(RefusedError, match=fix.format(r"concurrent\.futures\..*ThreadPoolExecutor")):
            hybrid.dumps({"pool": tpe})
    with Executor(max_workers=1) as ex:
        for name in ("hybrid", "cloudpickle", "pickle"):
            with pytest.raises(Exception, match=fix.format(r"picklepool\.executor\.futures\.Executor")):
                get_pickler(name).dumps(ex)
        with pytest.raises(pickle.PicklingError, match=r"task 0: len\(.*start the pool inside the task"):
            Parallel(n_jobs=2)(delayed(len)(ex) for _ in range(1))
        # copy.copy goes through __reduce__ unless told otherwise: a shallow copy, as the stdlib's
        import copy

        assert copy.copy(ex).submit(abs, -3).result() == 3


# -- asyncio primitives ----------------------------------------------------------------------------


def test_asyncio_primitives_arrive_fresh_and_unbound():
    async def make():
        lock = asyncio.Lock()
        await lock.acquire()  # held and bound to this loop
        event = asyncio.Event()
        event.set()
        sem = asyncio.BoundedSemaphore(3)
        await sem.acquire()
        q: asyncio.Queue[int] = asyncio.Queue()
        q.put_nowait(1)
        q.put_nowait(2)
        return hybrid.dumps([lock, asyncio.Condition(lock), event, sem, q])

    data = asyncio.run(make())

    async def use():
        lock, cond, event, sem, q = pickle.loads(data)  # in another event loop
        assert not lock.locked() and cond._lock is lock
        async with cond:
            cond.notify_all()
        await sem.acquire()
        return event.is_set(), sem._value, [q.get_nowait(), q.get_nowait()]

    assert asyncio.run(use()) == (True, 1, [1, 2])
