"""Pickling errors say where: path, type, pickler and fix."""

from __future__ import annotations

import asyncio
import functools
import socket
import sqlite3
import sys
import threading
import types

import pytest

from picklepool import Executor, Parallel, PicklingError, delayed
from picklepool.errors import UnpicklingError
from picklepool.pickler import get_pickler, locks
from picklepool.pickler.diagnose import class_rebuilding, explain, find_culprit

from ..conftest import run_python


class Optimizer:
    def __init__(self):
        self._lock = threading.RLock()
        self.lr = 0.01


class Model:
    def __init__(self):
        self.weights = [0.5, 0.25]
        self.optimizer = Optimizer()


class Slotted:
    __slots__ = ("gen", "x")

    def __init__(self):
        self.x = 1
        self.gen = (i for i in range(2))


def identity(*args, **kwargs):
    return args, kwargs


def message_for(obj, pickler="pickle", root="args"):
    p = get_pickler(pickler)
    try:
        p.dumps(obj)
    except Exception as exc:
        return explain(p, obj, exc, root=root)
    raise AssertionError("expected a pickling failure")


@pytest.mark.parametrize("pickler", ["pickle", "cloudpickle"])
def test_lock_deep_in_args_names_path_type_pickler_and_fix(pickler):
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2, pickler=pickler)(delayed(identity)(i, {"model": Model()}) for i in range(3))
    msg = str(info.value)
    assert msg.startswith("task 0: identity(0, {'model': ")
    assert ": cannot pickle args[1]['model'].optimizer._lock (type _thread.RLock)" in msg
    assert f"with pickler {pickler!r}" in msg
    assert "Fix: use pickler='hybrid' (the default)" in msg


def test_path_through_kwargs():
    with pytest.raises(
        PicklingError,
        match=r"task 2: identity\(cfg=\[1, .*\]\): cannot pickle kwargs\['cfg'\]\[1\] \(type _thread.lock\)",
    ):
        Parallel(n_jobs=2, pickler="pickle")(
            delayed(identity)(cfg=[1, threading.Lock()] if i == 2 else [1]) for i in range(3)
        )


def test_lambda_under_pickle_names_the_function_and_the_wrapper():
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2, pickler="pickle")(delayed(lambda x: x)(i) for i in range(2))
    msg = str(info.value)
    assert "cannot pickle function" in msg and "<lambda>" in msg and "with pickler 'pickle'" in msg
    assert "by reference" in msg and "wrap_non_picklable_objects" in msg


def test_closure_cell_under_hybrid():
    gen = (i for i in range(3))

    def uses_gen(x):
        return next(gen) + x

    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2)(delayed(uses_gen)(i) for i in range(2))
    msg = str(info.value)
    assert ".uses_gen.<closure gen> (type builtins.generator) with pickler 'hybrid'" in msg
    assert "pass list(generator) instead" in msg


def _takes(x):
    return 1


def test_a_lambda_or_local_under_pickle_is_named_inside_the_task_with_its_own_fix():
    def local(x):
        return x

    class Local:
        pass

    for arg, made in ((lambda: 1, "a lambda"), (local, "defined inside a function")):
        with pytest.raises(PicklingError) as info:
            Parallel(n_jobs=2, pickler="pickle")(delayed(_takes)(arg) for _ in range(2))
        msg = str(info.value)
        assert "task 0: _takes(" in msg
        assert "cannot pickle args[0] (type builtins.function) with pickler 'pickle'" in msg, msg
        assert f"it is {made}" in msg and "pickler='hybrid' (the default) or 'cloudpickle'" in msg, msg
        assert "__reduce__" not in msg, msg
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2, pickler="pickle")(delayed(_takes)(x=[0, Local()]) for _ in range(2))
    msg = str(info.value)
    assert "cannot pickle kwargs['x'][1] (type " in msg and "Local) with pickler 'pickle'" in msg, msg
    assert "is defined inside a function" in msg and "__reduce__" not in msg, msg


@pytest.mark.parametrize("spec", ["byname", "tests.custom_picklers:ByName"])
def test_a_lambda_or_local_under_a_by_name_pickler_of_ones_own_gets_the_same_fix(spec):
    # a pickle.Pickler subclass, registered or named "module:attr", sends functions by name
    # as 'pickle' does: it got the generic "pass something picklable instead" for a lambda
    from picklepool import register_pickler
    from picklepool.pickler.registry import unregister_pickler

    from ..custom_picklers import ByName

    def local(x):
        return x

    class Local:
        pass

    register_pickler("byname", ByName)
    try:
        for arg, made in ((lambda: 1, "a lambda"), (local, "defined inside a function")):
            with pytest.raises(PicklingError) as info:
                Parallel(n_jobs=2, pickler=spec)(delayed(_takes)(arg) for _ in range(2))
            msg = str(info.value)
            assert f"cannot pickle args[0] (type builtins.function) with pickler {spec!r}" in msg, msg
            assert f"it is {made}, which pickler {spec!r} cannot send" in msg, msg
            assert "pickler='hybrid' (the default) or 'cloudpickle'" in msg, msg
            assert "something picklable" not in msg, msg
        with pytest.raises(PicklingError) as info:
            Parallel(n_jobs=2, pickler=spec)(delayed(_takes)(x=[0, Local()]) for _ in range(2))
        msg = str(info.value)
        assert f"is defined inside a function, so pickler {spec!r} cannot find it" in msg, msg
    finally:
        unregister_pickler("byname")


def _gen_result(i):
    return {"ok": i, "gen": (j for j in range(i))}


def test_result_that_cannot_be_sent_back():
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2)(delayed(_gen_result)(i) for i in range(3))
    msg = str(info.value)
    assert "could not be sent back" in msg
    assert "cannot pickle result['gen'] (type builtins.generator) with pickler 'hybrid'" in msg
    assert "return list(generator) instead" in msg


async def _an_async_task(i):
    return i


def test_an_async_def_task_says_to_run_its_coroutine():
    # the generic fix ("return something picklable ... give its class a __reduce__") did
    # not say that an `async def` function's call only makes a coroutine
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2)(delayed(_an_async_task)(i) for i in range(2))
    msg = str(info.value)
    assert "cannot pickle result (type builtins.coroutine)" in msg
    assert "an `async def` function" in msg
    assert "asyncio.run(_an_async_task(*args))" in msg


def test_an_async_def_task_of_an_executor_or_asyncio_is_told_how_to_submit_its_runner():
    # the fix said "then delayed(run)(...)" to a user of Executor.submit and run_in_executor
    with Executor(max_workers=2) as ex:
        with pytest.raises(PicklingError) as info:
            ex.submit(_an_async_task, 1).result()

        async def main():
            return await asyncio.get_running_loop().run_in_executor(ex, _an_async_task, 2)

        with pytest.raises(PicklingError) as in_asyncio:
            asyncio.run(main())
    for msg in (str(info.value), str(in_asyncio.value)):
        assert "an `async def` function" in msg
        assert "def run(*args): return asyncio.run(_an_async_task(*args))" in msg
        assert "executor.submit(run, ...)" in msg
        assert "loop.run_in_executor(executor, run, ...)" in msg
    with Executor(max_workers=2) as ex, pytest.raises(PicklingError) as info:
        ex.submit(_a_generator_task, 2).result()
    assert "def run(*args): return list(_a_generator_task(*args))" in str(info.value)
    assert "executor.submit(run, ...)" in str(info.value)


def _a_generator_task(n):
    yield from range(n)


def _a_task_returning_a_genexpr(n):
    return (i for i in range(n))


def test_a_generator_function_task_says_to_collect_what_it_yields():
    # the fix named only "a generator cannot be pickled", not that the task's own call
    # made it (its function has a `yield`) nor how to run it in the worker
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2)(delayed(_a_generator_task)(i) for i in range(2))
    msg = str(info.value)
    assert "cannot pickle result (type builtins.generator)" in msg
    assert "_a_generator_task is a generator function (it uses yield)" in msg
    assert "def run(*args): return list(_a_generator_task(*args))" in msg
    with pytest.raises(PicklingError) as info:  # a generator expression: the general fix
        Parallel(n_jobs=2)(delayed(_a_task_returning_a_genexpr)(i) for i in range(2))
    assert "return list(generator) instead" in str(info.value)


def test_main_function_under_pickle_is_explained_from_the_worker():
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        def square(x):
            return x * x

        try:
            Parallel(n_jobs=2, pickler="pickle")(delayed(square)(i) for i in range(4))
        except Exception as exc:
            print(type(exc).__name__)
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    kind, msg = proc.stdout.split("\n", 1)
    assert kind == "UnpicklingError"
    assert "could not rebuild the function __main__.square" in msg
    assert "Can't get attribute 'square'" in msg
    assert "'square' is defined in __main__ (your script), which workers do not import" in msg
    assert "sends functions and classes by reference" in msg and "pickler='hybrid'" in msg


def test_a_main_class_called_as_the_task_under_pickle_is_named_a_class():
    # delayed(Model)(x): the worker could not rebuild a class, which the message called "the
    # function __main__.Model" (and the parent's pickling error: "cannot pickle function")
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        class Model:
            def __init__(self, x):
                self.x = x

        class Holder:
            rows = (i for i in range(3))

        try:
            Parallel(n_jobs=2, pickler="pickle")([delayed(Model)(1)])
        except Exception as exc:
            print(exc)
        try:
            Parallel(n_jobs=2)([delayed(Holder)()])
        except Exception as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("a worker could not rebuild the class __main__.Model of task 0: Model(1)")
    assert "'Model' is defined in __main__ (your script), which workers do not import" in lines[0]
    # and the parent's pickling error for such a class's attribute
    head = "task 0: Holder(): cannot pickle class __main__.Holder.rows (type builtins.generator)"
    assert lines[1].startswith(head)


def test_main_class_in_args_under_pickle():
    proc = run_python(
        """
        from picklepool import Parallel, delayed

        class Point:
            def __init__(self, x):
                self.x = x

        try:
            Parallel(n_jobs=2, pickler="pickle")(delayed(repr)(Point(i)) for i in range(2))
        except Exception as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "could not rebuild the arguments of task" in proc.stdout
    assert "'Point' is defined in __main__" in proc.stdout


def test_main_function_global_under_cloudpickle():
    proc = run_python(
        """
        import threading
        from picklepool import Parallel, delayed

        LOCK = threading.Lock()

        def locked(x):
            with LOCK:
                return x

        try:
            Parallel(n_jobs=2, pickler="cloudpickle")(delayed(locked)(i) for i in range(2))
        except Exception as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "cannot pickle function __main__.locked.<global LOCK> (type _thread.lock)" in proc.stdout
    assert "with pickler 'cloudpickle'" in proc.stdout and "pickler='hybrid'" in proc.stdout


def test_a_global_named_like_an_attribute_the_function_reads_is_not_blamed():
    # co_names holds attribute names too: the error blamed f.<global path> (a lock the
    # function never sends: it reads os.path) instead of the socket it does send
    proc = run_python(
        """
        import os, socket, threading
        from picklepool import Parallel, delayed

        path = threading.Lock()
        conn = socket.socket()

        def f(x):
            return os.path.join(str(x), str(conn.fileno()))

        try:
            Parallel(n_jobs=2, pickler="cloudpickle")(delayed(f)(i) for i in range(2))
        except Exception as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "cannot pickle function __main__.f.<global conn> (type socket.socket)" in proc.stdout, proc.stdout


def test_unpickling_error_is_a_pickling_error():
    assert issubclass(UnpicklingError, PicklingError)


def test_bound_method_partial_and_slots_paths():
    model = Model()
    msg = message_for(functools.partial(identity, 1, model), pickler="cloudpickle", root="function f")
    assert "function f.args[1].optimizer._lock" in msg
    method = Optimizer().__init__
    assert "args.__self__._lock" in message_for(method, pickler="cloudpickle")
    assert "args.gen (type builtins.generator)" in message_for(Slotted(), pickler="hybrid")


def test_fix_texts_per_kind(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    with open(path, "rb") as f:
        assert "pass its path and open it inside the task" in message_for([f], pickler="hybrid")
    with socket.socket() as s:
        assert "pass the address and connect inside the task" in message_for({"s": s}, pickler="hybrid")
    conn = sqlite3.connect(":memory:")
    try:
        generic = message_for([conn], pickler="hybrid")
    finally:
        conn.close()
    assert "args[0] (type sqlite3.Connection)" in generic and "pass something picklable" in generic
    assert "__reduce__" not in generic  # sqlite3.Connection is not a class of the user's
    assert "pickler='hybrid'" not in generic  # already in use: not suggested again


def test_the_culprit_is_the_deepest_failing_child():
    found = find_culprit(get_pickler("pickle"), {"a": [1, {"b": threading.Lock()}]}, root="x")
    assert found is not None and found[0] == "x['a'][1]['b']"


def test_the_culprit_is_found_in_containers_of_any_size_and_in_dict_keys():
    # The walk looked at the first 10,000 items of a container and stopped there: a
    # generator at item 45,000 of a list argument was reported as "args[0] (type
    # builtins.list)" with the generic fix, and a dict's keys were never looked at.
    big = list(range(60_000))
    big[45_000] = (x for x in ())
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2)(delayed(identity)(big) for _ in range(1))
    assert "cannot pickle args[0][45000] (type builtins.generator)" in str(info.value)
    assert "a generator cannot be pickled" in str(info.value)
    pickler = get_pickler("pickle")
    nested = {"k": [0] * 20_000 + [{"deep": threading.Lock()}]}
    assert find_culprit(pickler, nested, "x")[0] == "x['k'][20000]['deep']"
    assert find_culprit(pickler, {1: "a", threading.Lock(): "b"}, "x")[0] == "x{key 1}"
    assert find_culprit(pickler, frozenset([1, threading.Lock()]), "x")[0].startswith("x{item ")


class Counted:
    """Counts its picklings: items that each pickle slowly cost the search by their count."""

    made = 0

    def __reduce__(self):
        Counted.made += 1
        return (Counted, ())


def test_the_search_pickles_a_container_about_twice_not_three_times():
    # Both halves were probed at each step: a culprit at the end of a list of items that
    # each pickle slowly cost three picklings of the list (the error, then 2n); the second
    # half needs no probe once the first passes (the item found is checked alone).
    n = 1024
    items = [Counted() for _ in range(n - 1)] + [threading.Lock()]
    Counted.made = 0
    found = find_culprit(get_pickler("pickle"), items, "x")
    assert found is not None and found[0] == f"x[{n - 1}]"
    assert Counted.made == 2 * (n - 1)  # the error's own pickling, then the first halves
    pair = [Counted(), Counted()]  # fails as a whole only (as a list subclass's own state)
    assert find_culprit(get_pickler("pickle"), Unpicklable(pair), "x")[0] == "x"


class Unpicklable(list):
    def __reduce__(self):
        raise TypeError("not this list")


class Interrupted:
    """Refused at the call's pickling and the task's look; Ctrl-C comes in the search below."""

    seen = 0

    def __reduce__(self):
        Interrupted.seen += 1
        if Interrupted.seen <= 2:
            raise TypeError("cannot pickle this")
        raise KeyboardInterrupt


def test_ctrl_c_while_the_culprit_is_searched_interrupts_the_call():
    # The search took it for the probed object's failure: the call went on (for as long
    # as the search of a large container of slow items takes) and raised PicklingError.
    Interrupted.seen = 0
    with pytest.raises(KeyboardInterrupt):
        Parallel(n_jobs=2)(delayed(identity)([1, Interrupted()]) for _ in range(1))
    assert Interrupted.seen == 3


def test_snapshot_errors_are_passed_on_without_walking(monkeypatch):
    monkeypatch.setattr(locks, "SNAPSHOT_TIMEOUT", 0.01)
    import queue

    q = queue.Queue()
    with q.mutex:
        msg = message_for([q], pickler="hybrid")
    assert msg.startswith("cannot pickle args with pickler 'hybrid': could not snapshot a Queue")


def _takes_two(a, b):
    return 1


def test_finding_the_culprit_copies_no_large_array():
    # Every task of the batch shares a 20 MB array; looking for the argument that fails
    # used to pickle it in band once per task before it (here 7 copies, 60 MB at a time).
    np = pytest.importorskip("numpy")
    import tracemalloc

    shared = np.ones(2_500_000)
    # 20 tasks: one full pull of batch_size * n_jobs, so tasks 0-9 are one batch (joblib's
    # rule splits a short last pull finer: task 7 would go alone)
    items = [delayed(_takes_two)(shared, (x for x in ()) if i == 7 else i) for i in range(20)]
    tracemalloc.start()
    try:
        with pytest.raises(PicklingError, match=r"task 7: .*args\[1\]"):
            Parallel(n_jobs=2, batch_size=10)(items)
        for pickler in ("pickle", "cloudpickle", "hybrid"):
            path, _obj, _err = find_culprit(get_pickler(pickler), {"a": shared, "g": (x for x in ())}, "args")
            assert path == "args['g']"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < shared.nbytes // 2


def test_a_global_of_a_function_sent_by_value_gets_the_fix_for_a_global():
    # The fix offered was for an argument ("pass something picklable instead ... give
    # its class a __reduce__"), which the user never passed: a script's function drags
    # its globals along. The fix says so, and how: make it in the function, or import it.
    proc = run_python(
        """
        import sqlite3, threading
        from picklepool import Parallel, delayed

        DB = sqlite3.connect(":memory:")
        WATCHER = threading.Thread(target=print)

        def query(x):
            if x < 0:
                DB.execute("select 1")
            return x

        def watch(x):
            if x < 0:
                WATCHER.start()
            return x

        for f in (query, watch):
            try:
                Parallel(n_jobs=2)(delayed(f)(i) for i in range(2))
            except Exception as exc:
                print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    db, watcher = proc.stdout.splitlines()
    assert "cannot pickle function __main__.query.<global DB> (type sqlite3.Connection)" in db
    assert "Fix: it is the global 'DB' of a function sent by value" in db
    assert "define the function in a module the workers import" in db
    assert "give its class a __reduce__" not in db
    assert "cannot pickle function __main__.watch.<global WATCHER> (type threading.Thread)" in watcher
    assert "Here it is the global 'WATCHER' of a function sent by value" in watcher


@pytest.mark.parametrize("pickler", ["pickle", "cloudpickle"])
def test_a_lock_inside_an_object_hybrid_refuses_gets_hybrids_reason_not_use_hybrid(pickler, tmp_path):
    """breakit36: a Thread's (or FileHandler's) inner lock said "Fix: use pickler='hybrid'",
    which refuses the thread itself; the message names the thread and hybrid's reason."""
    import logging
    import multiprocessing

    handler = logging.FileHandler(tmp_path / "log.txt", delay=True)
    cases = {
        "threading.Thread": threading.Thread(name="worker-thread"),
        "logging.FileHandler": handler,
        "multiprocessing.synchronize.Lock": multiprocessing.get_context("spawn").Lock(),
    }
    try:
        for kind, obj in cases.items():
            msg = message_for({"k": [obj]}, pickler=pickler)
            head = f"cannot pickle args['k'][0] (type {kind}) with pickler {pickler!r}: cannot send a "
            assert msg.startswith(head)
            assert "Fix: use pickler='hybrid'" not in msg
            assert "Fix: " in msg
    finally:
        handler.close()
    # a lock hybrid does send keeps its fix
    assert "Fix: use pickler='hybrid'" in message_for({"k": [Model()]}, pickler=pickler)


class SendsItsOwnState:
    def __init__(self, conn, extra):
        self.conn, self.extra = conn, extra

    def __getstate__(self):  # leaves its connection out, but not what else it holds
        return {"extra": self.extra}


class RebuiltFrom:
    def __init__(self, *parts):
        self.parts = parts

    def __reduce__(self):
        return (RebuiltFrom, self.parts)


def test_the_path_goes_into_what_an_objects_own_pickling_sends_and_into_a_class():
    # A class with __getstate__ or __reduce__ of its own was named as the culprit itself
    # ("args[0] (type SendsItsOwnState)", the generic fix), and a class sent by value with
    # an unpicklable class attribute as the class ("<global Cls> (type builtins.type)"):
    # the part that fails is named now, with its own fix
    with socket.socket() as s, socket.socket() as other:
        msg = message_for([SendsItsOwnState(s, {"k": [1, other]})], pickler="hybrid")
        assert "args[0].__getstate__()['extra']['k'][1] (type socket.socket)" in msg
        assert "pass the address and connect inside the task" in msg
        msg = message_for({"r": RebuiltFrom(1, s)}, pickler="cloudpickle")
        assert "args['r'].__reduce__()[1][1] (type socket.socket)" in msg

        class HoldsAConnection:  # local: sent by value
            conn = s

        msg = message_for(HoldsAConnection, pickler="hybrid", root="function f.<global Holder>")
        assert "function f.<global Holder>.conn (type socket.socket)" in msg
        assert (
            "the attribute 'conn' of the class " in msg and "<locals>.HoldsAConnection, which travels" in msg
        )


def test_a_class_attribute_of_a_class_sent_by_value_is_named_with_its_fix():
    proc = run_python(
        """
        import socket
        from picklepool import Parallel, delayed

        class Client:
            __slots__ = ("n",)
            conn = socket.socket()

            def __init__(self):
                self.n = 1

        def ping(i):
            return Client().n

        try:
            Parallel(n_jobs=2)(delayed(ping)(i) for i in range(2))
        except Exception as e:
            print(e)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "task 0: ping(0): cannot pickle function __main__.ping.<global Client>.conn (type socket.socket)"
        in (proc.stdout)
    )
    assert "the attribute 'conn' of the class Client" in proc.stdout


@pytest.mark.parametrize("pickler", ["hybrid", "cloudpickle", "pickle"])
def test_a_function_or_class_of_a_module_no_import_finds_by_its_name_gets_that_fix(pickler, monkeypatch):
    # A module made at run time under a dotted name ("dyn.mod", no "dyn" package): pickle
    # cannot import the name to send its functions and classes by it. The search walked
    # into a function's globals as if it went by value, and the fix spoke of a class
    # attribute to make in a method ("the attribute '__init__' of the class T"); an
    # instance's, of passing something else.
    module = types.ModuleType("pp_made_at_run_time.mod")
    exec(  # noqa: S102 - the module's code, as a loader runs it
        "class T:\n    def __init__(self, v):\n        self.v = v\ndef make(x):\n    return T(x)\n",
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, module.__name__, module)
    fix = "Fix: its module 'pp_made_at_run_time.mod' is loaded here, but importing it by that name fails"
    register = "cloudpickle.register_pickle_by_value(sys.modules['pp_made_at_run_time.mod'])"
    for tasks, path in (
        (
            [delayed(module.make)(1)],
            "cannot pickle function pp_made_at_run_time.mod.make (type builtins.function)",
        ),
        ([delayed(identity)(module.T(1))], "cannot pickle args[0] (type pp_made_at_run_time.mod.T)"),
    ):
        with pytest.raises(PicklingError) as info:
            Parallel(n_jobs=2, pickler=pickler)(tasks)
        msg = str(info.value)
        assert path in msg and "import of module 'pp_made_at_run_time.mod' failed" in msg
        assert fix in msg and register in msg


def test_the_fix_for_an_object_no_pickler_takes_suggests_only_what_works():
    # cloudpickle's fix suggested pickler='hybrid' for a connection, which hybrid refuses
    # too, and a __reduce__ for a class the user cannot change
    import sqlite3

    conn = sqlite3.connect(":memory:")
    try:
        for name in ("cloudpickle", "hybrid", "pickle"):
            with pytest.raises(PicklingError) as info:
                Parallel(n_jobs=2, pickler=name)(delayed(len)(conn) for _ in range(1))
            text = str(info.value)
            assert "Fix: pass something picklable instead" in text, text
            assert "hybrid" not in text.partition("Fix:")[2] and "__reduce__" not in text, text
    finally:
        conn.close()


class _HoldsAConnection:
    def __init__(self):
        import sqlite3

        self.conn = sqlite3.connect(":memory:")


def test_the_fix_for_a_users_class_suggests_a_reduce():
    from picklepool.pickler.diagnose import fix

    held = _HoldsAConnection()
    try:
        assert "give its class a __reduce__" in fix("hybrid", held)
        assert "__reduce__" not in fix("hybrid", held.conn)
    finally:
        held.conn.close()


def test_the_fix_names_the_users_class_that_holds_what_cannot_be_pickled():
    held = _HoldsAConnection()
    try:
        with pytest.raises(PicklingError) as info:
            Parallel(n_jobs=2, pickler="cloudpickle")(delayed(id)(held) for _ in range(1))
    finally:
        held.conn.close()
    text = str(info.value)
    assert "cannot pickle args[0].conn (type sqlite3.Connection)" in text, text
    assert "give _HoldsAConnection a __getstate__ that leaves conn out" in text, text


def test_a_class_of_a_script_run_from_stdin_is_the_users_own():
    out = run_python(
        """
        from picklepool.pickler.diagnose import _users_class

        class Mine:
            pass

        print(_users_class(Mine), _users_class(dict))
        """
    )
    assert out.stdout.split() == ["True", "False"], out.stderr


def test_a_failure_inside_cloudpickles_own_rebuilding_of_a_class_is_told_from_the_users_code():
    # cloudpickle sets a copy's attributes on the class it already has for that class's id:
    # an enum refuses its alias member (RW = R | W) there, and the advice was to fix a
    # __setstate__ or __reduce__ the user never wrote
    import enum
    import os

    import cloudpickle

    class Perm(enum.Flag):
        R = 4
        W = 2
        RW = R | W

    with pytest.raises(AttributeError) as info:
        cloudpickle.loads(cloudpickle.dumps(Perm.RW))  # (its class by value: a local one)
    name = f"{__name__}.{Perm.__qualname__}"
    assert class_rebuilding(info.value) == ("_class_setstate", f"the enum {name}", Perm.__qualname__)

    # a worker's traceback, as text: the class is not known there
    setstate = os.path.join(os.path.dirname(cloudpickle.__file__), "cloudpickle.py")
    text = (
        "Traceback (most recent call last):\n"
        f'  File "{setstate}", line 1197, in _class_setstate\n'
        "    setattr(obj, attrname, attr)\n"
        f'  File "{enum.__file__}", line 836, in __setattr__\n'
        "    raise AttributeError('cannot reassign member %r' % (name, ))\n"
        "AttributeError: cannot reassign member 'RW'\n"
    )
    assert class_rebuilding(text) == ("_class_setstate", "a class", "it")
    # the user's own code failing under it (a metaclass's __setattr__) is the user's
    assert class_rebuilding(text.replace(enum.__file__, "/home/me/script.py")) is None
    assert class_rebuilding("") is None


class _Guarded:
    def __init__(self):
        self.lock = threading.Lock()
        self.n = 2


def _reads_state(state, i):
    return i


@pytest.mark.parametrize("pickler", ["pickle", "cloudpickle"])
def test_what_a_shared_state_cannot_send_is_named_by_its_public_value(pickler):
    # the path went through the state's private slot, args[0]._value.lock, where its own
    # save() names it state.value
    from picklepool import SharedState

    state = SharedState({"model": _Guarded()})
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2, pickler=pickler)(delayed(_reads_state)(state, i) for i in range(2))
    msg = str(info.value)
    assert "cannot pickle args[0].value['model'].lock (type _thread.lock)" in msg, msg


def test_a_class_attribute_reached_through_an_instance_is_named_with_its_fix():
    # an instance of a class sent by value takes its class along: the walk stopped at the
    # instance, "cannot pickle args[0] (type __main__.Client)", and named no attribute
    proc = run_python(
        """
        import socket
        from picklepool import Parallel, SharedState, delayed

        class Client:
            conn = socket.socket()

            def __init__(self):
                self.n = 1

            def ping(self, i):
                return self.n

        def ping(client, i):
            return client.n

        for call in (
            lambda: Parallel(n_jobs=2)(delayed(ping)([0, Client()], i) for i in range(2)),
            lambda: Parallel(n_jobs=2)(delayed(Client().ping)(i) for i in range(2)),
            lambda: Parallel(n_jobs=2)(delayed(ping)(SharedState(Client()), i) for i in range(2)),
        ):
            try:
                call()
            except Exception as e:
                print(e)
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout
    assert "cannot pickle args[0][1].__class__.conn (type socket.socket)" in lines[0], lines[0]
    assert "cannot pickle function __main__.Client.ping.__self__.__class__.conn (type" in lines[1], lines[1]
    assert "cannot pickle args[0].value.__class__.conn (type socket.socket)" in lines[2], lines[2]
    for line in lines:
        assert "the attribute 'conn' of the class Client" in line, line


def test_an_item_of_a_numpy_object_array_is_named_by_its_index():
    # the path went through what the array's __reduce__ sends: args[0].__reduce__()[2][4][1]
    np = pytest.importorskip("numpy")
    lock = threading.Lock()
    for arg, where in (
        (np.array([1, lock, 3], dtype=object), "args[0][1]"),
        (np.array([[1, 2], [3, lock]], dtype=object), "args[0][1, 1]"),
        (np.array([[1, 2], [3, lock]], dtype=object).T, "args[0][1, 1]"),
    ):
        with pytest.raises(PicklingError) as info:
            Parallel(n_jobs=2, pickler="cloudpickle")(delayed(_takes)(arg) for _ in range(2))
        assert f"cannot pickle {where} (type _thread.lock)" in str(info.value), str(info.value)


class ExitsWhenPickled:
    """A result whose ``__reduce__`` raises a ``BaseException`` that is not an ``Exception``."""

    def __init__(self, kind):
        self.kind = kind

    def __reduce__(self):
        raise self.kind()


def _returns_exiting(i, kind):
    return ExitsWhenPickled(kind) if i == 1 else i


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt, GeneratorExit])
@pytest.mark.parametrize("pickler", ["hybrid", "cloudpickle"])
def test_a_result_whose_reducer_raises_a_base_exception_is_a_pickling_error_naming_the_task(pickler, kind):
    # Under hybrid: PicklingError naming the task. Under any other pickler, the advice's
    # look at whether hybrid takes the culprit (diagnose._hybrid_takes) caught Exception
    # only: the reducer's SystemExit / KeyboardInterrupt / GeneratorExit escaped the
    # worker's explanation, and the caller got it bare, naming no task (a bare SystemExit
    # ends a script quietly; a bare KeyboardInterrupt reads as a Ctrl-C).
    named = r"^task 1: _returns_exiting\(1, .*the result could not be sent back"
    with pytest.raises(PicklingError, match=named):
        Parallel(n_jobs=2, pickler=pickler, batch_size=1)(
            delayed(_returns_exiting)(i, kind) for i in range(3)
        )


def test_the_advice_look_at_hybrid_lets_ctrl_c_through_unless_the_culprit_raised_one():
    from picklepool.pickler import diagnose

    class CtrlC:
        def __reduce__(self):
            raise KeyboardInterrupt  # as a Ctrl-C arriving while hybrid is tried

    assert diagnose.fix("cloudpickle", ExitsWhenPickled(SystemExit), failure=SystemExit())
    with pytest.raises(KeyboardInterrupt):
        diagnose.fix("cloudpickle", CtrlC(), failure=TypeError("cannot pickle"))
    assert diagnose.fix("cloudpickle", CtrlC(), failure=KeyboardInterrupt())
