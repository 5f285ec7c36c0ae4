"""A call's function is serialised once in the parent and rebuilt once per worker."""

from __future__ import annotations

import pytest

from picklepool import Parallel, delayed

from ..conftest import run_python

SCRIPT = """
    import os
    from collections import defaultdict

    from picklepool import Parallel, delayed
    from picklepool.pickler.hybrid import HybridPickler

    DATA = list(range(1_000_000))  # read by the function: travels with it, by value

    def total(i):
        from picklepool.workers.cache import objects

        return os.getpid(), objects.builds, len(DATA) + i

    class Counting(HybridPickler):
        dumped = 0

        def dumps(self, obj, buffer_callback=None):
            if obj is total:
                type(self).dumped += 1
            return super().dumps(obj, buffer_callback)

    out = Parallel(n_jobs=2, pickler=Counting(), batch_size={batch_size})(
        delayed(total)(i) for i in range(200)
    )
    assert [r[2] for r in out] == [1_000_000 + i for i in range(200)]
    builds = defaultdict(set)
    for pid, n, _ in out:
        builds[pid].add(n)
    print(Counting.dumped, sorted(len(b) for b in builds.values()))
"""


def _run(batch_size):
    proc = run_python(SCRIPT.format(batch_size=batch_size))
    assert proc.returncode == 0, proc.stderr
    dumped, per_worker = proc.stdout.split(" ", 1)
    return int(dumped), per_worker.strip()


def test_main_function_with_a_large_global_is_sent_once_per_call():
    # 200 batches of one task: the function (and the 1M-element list it reads) is
    # pickled once, and each worker's cache count never moves after its first batch.
    dumped, per_worker = _run(batch_size=1)
    assert dumped == 1
    assert per_worker in ("[1]", "[1, 1]")


def test_same_with_automatic_batching():
    dumped, per_worker = _run(batch_size='"auto"')
    assert dumped == 1
    assert per_worker in ("[1]", "[1, 1]")


LAMBDA_SCRIPT = """
    from picklepool import Parallel, delayed
    from picklepool.pickler.hybrid import HybridPickler

    DATA = list(range(1_000_000))

    class Counting(HybridPickler):
        functions = 0

        def dumps(self, obj, buffer_callback=None):
            if callable(obj):
                type(self).functions += 1
            return super().dumps(obj, buffer_callback)

    # a new lambda object for every task, reading a large global, and one whose
    # default differs per task: the first kind is pickled once, the second per task
    out = Parallel(n_jobs=2, pickler=Counting())(delayed(lambda i: len(DATA) + i)(i) for i in range(50))
    assert out == [1_000_000 + i for i in range(50)]
    print(Counting.functions)
    Counting.functions = 0
    out = Parallel(n_jobs=2, pickler=Counting())(delayed(lambda k=i: k * 2)() for i in range(50))
    assert out == [2 * i for i in range(50)]
    print(Counting.functions)
"""


def test_a_lambda_made_anew_for_each_task_is_pickled_once():
    proc = run_python(LAMBDA_SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "50"]


METHOD_SCRIPT = """
    import types

    from picklepool import Parallel, delayed
    from picklepool.pickler.hybrid import HybridPickler

    class Counting(HybridPickler):
        methods = 0

        def dumps(self, obj, buffer_callback=None):
            if type(obj) is types.MethodType:
                type(self).methods += 1
            return super().dumps(obj, buffer_callback)

    class Model:
        def __init__(self, k):
            self.k = k
            self.weights = list(range(100_000))  # travels with each bound method

        def __eq__(self, other):  # every Model is "equal": must not merge their methods
            return isinstance(other, Model)

        __hash__ = object.__hash__

        def score(self, x):
            return x + self.k

    a, b = Model(1), Model(100)
    # obj.method is a new object for every task: still one function per object
    out = Parallel(n_jobs=2, pickler=Counting())(delayed(a.score)(i) for i in range(20_000))
    assert out == [i + 1 for i in range(20_000)]
    print(Counting.methods)
    Counting.methods = 0
    out = Parallel(n_jobs=2, pickler=Counting())(
        delayed((a if i % 2 else b).score)(i) for i in range(2_000)
    )
    assert out == [i + (1 if i % 2 else 100) for i in range(2_000)]
    print(Counting.methods)
"""


def test_a_bound_method_taken_anew_for_each_task_is_pickled_once_per_object():
    # delayed(self.method)(x) takes a new bound-method object per task; pickling each
    # (with its object) made 10k tasks take seconds instead of milliseconds.
    proc = run_python(METHOD_SCRIPT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "2"]


class Counter:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return self.n


class Acc:
    def __init__(self):
        self.items = []

    def add(self, x):
        self.items.append(x)
        return len(self.items)


def test_callable_objects_do_not_share_state_across_calls():
    for _ in range(3):
        out = Parallel(n_jobs=2, batch_size=1)(delayed(Counter())() for _ in range(4))
        assert out == [1, 1, 1, 1]


def test_bound_methods_of_fresh_objects_start_fresh():
    first = Parallel(n_jobs=2, batch_size=1)(delayed(Acc().add)(i) for i in range(5))
    second = Parallel(n_jobs=2, batch_size=1)(delayed(Acc().add)(i) for i in range(5))
    assert first == second == [1] * 5


def _make_counter():
    count = 0

    def bump():
        nonlocal count
        count += 1
        return count

    return bump


@pytest.mark.parametrize("backend", ["sequential", "threading"])
def test_in_process_closures_alike_in_content_stay_distinct(backend):
    # six: one full pull of batch_size * n_jobs, two batches of three alike closures
    counters = [_make_counter() for _ in range(6)]
    out = Parallel(n_jobs=2, backend=backend, batch_size=3)([delayed(c)() for c in counters])
    assert out == [1] * 6
    assert [c.__closure__[0].cell_contents for c in counters] == [1] * 6


class _Named:
    def __init__(self, name):
        self.name = name

    def __eq__(self, other):  # equal to everything: must not stand in for another
        return True

    __hash__ = object.__hash__

    def __call__(self, owner, x):
        return self.name


@pytest.mark.parametrize("backend", ["loky", "sequential"])
def test_methods_equal_by_value_are_not_merged(backend):
    import types

    owner = _Named("owner")
    first, second = types.MethodType(_Named("first"), owner), types.MethodType(_Named("second"), owner)
    # twice: one full pull of batch_size * n_jobs, each batch holds both methods
    out = Parallel(n_jobs=2, backend=backend, batch_size=2)([delayed(first)(1), delayed(second)(2)] * 2)
    assert out == ["first", "second"] * 2


def test_an_unchanged_function_is_rebuilt_once_per_worker_across_calls():
    out = run_python(
        """
        import os
        from picklepool import Parallel, delayed

        BIG = list(range(100_000))

        def read(i):
            from picklepool.workers.cache import objects
            return os.getpid(), objects.builds, BIG[i]

        seen = {}
        for call in range(4):
            for pid, builds, value in Parallel(n_jobs=2, batch_size=1)(delayed(read)(i) for i in range(6)):
                assert value == BIG[value]
                seen.setdefault(pid, []).append((call, builds))
        for pid, calls in seen.items():
            first = min(c for c, _ in calls)
            # builds done before the worker's first batch of a call, and never after
            later = {b for c, b in calls if c > first}
            assert len(later) <= 1 and later <= {max(b for c, b in calls if c == first)}, calls
        print("ok")
        """
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_a_global_changed_in_the_parent_is_seen_by_the_next_call():
    out = run_python(
        """
        from picklepool import Parallel, delayed

        DATA = [0] * 10

        def read(i):
            return DATA[i]

        for value in (1, 2, 3):
            DATA[:] = [value] * 10
            assert Parallel(n_jobs=2)(delayed(read)(i) for i in range(10)) == [value] * 10
        print("ok")
        """
    )
    assert out.stdout.strip() == "ok", out.stderr


def test_one_item_changed_in_a_large_global_is_seen_by_the_next_call():
    # Pickled, the global is megabytes: its content key comes from the large-data hash
    # (executor.digests); one item changed in its middle must still make a new key.
    out = run_python(
        """
        from picklepool import Parallel, delayed
        from picklepool.executor.digests import LARGE

        DATA = list(range(1_000_000))

        def read(i):
            return DATA[500_000] + i

        got = []
        for value in (7, 8, 8, 9):
            DATA[500_000] = value
            got.append(Parallel(n_jobs=2)(delayed(read)(i) for i in range(4)))
        assert len(__import__("pickle").dumps(DATA)) > LARGE
        print(got)
        """
    )
    assert out.stdout.strip() == str([[v + i for i in range(4)] for v in (7, 8, 8, 9)]), out.stderr


def test_a_global_changed_by_a_task_in_a_worker_does_not_reach_the_next_call():
    out = run_python(
        """
        from picklepool import Parallel, delayed

        SEEN = []

        def remember(i):
            SEEN.append(i)
            return len(SEEN)

        # Four one-task calls on two workers: a worker runs at least two of them.
        print([Parallel(n_jobs=2)(delayed(remember)(i) for i in range(1))[0] for _ in range(4)])
        """
    )
    assert out.stdout.strip() == "[1, 1, 1, 1]", out.stderr


def test_an_attribute_a_task_sets_on_its_function_does_not_reach_the_next_call():
    out = run_python(
        """
        from picklepool import Parallel, delayed

        def count(i):
            count.calls = getattr(count, "calls", 0) + 1
            return count.calls

        # Six one-task calls on two workers: a worker runs at least three of them.
        print([Parallel(n_jobs=2)(delayed(count)(i) for i in range(1))[0] for _ in range(6)])
        """
    )
    assert out.stdout.strip() == "[1, 1, 1, 1, 1, 1]", out.stderr


def test_what_a_task_rebinds_on_its_function_does_not_reach_the_next_call():
    # The worker's copy was kept across calls while the values it carried were unchanged,
    # but a rebound closure variable (nonlocal), __defaults__ or __kwdefaults__ replaced
    # whole, or a new __code__ went unseen: the next call continued from the task's values
    out = run_python(
        """
        from picklepool import Parallel, delayed

        def counter():
            n = 0
            def count(i):
                nonlocal n
                n += 1
                return n
            return count

        count = counter()

        def by_default(i, n=0):
            by_default.__defaults__ = (n + 1,)
            return n + 1

        def by_keyword(i, *, n=0):
            by_keyword.__kwdefaults__ = {"n": n + 1}
            return n + 1

        def recode(i):
            recode.__code__ = (lambda i: 2).__code__
            return 1

        # Six one-task calls on two workers: a worker runs at least three of them.
        for f in (count, by_default, by_keyword, recode):
            print([Parallel(n_jobs=2)(delayed(f)(i) for i in range(1))[0] for _ in range(6)])
        """
    )
    assert out.stdout.splitlines() == ["[1, 1, 1, 1, 1, 1]"] * 4, out.stderr


def test_an_argument_the_function_holds_too_is_one_object_as_in_joblib():
    # The function is pickled once per call, the arguments per batch: an object reached both
    # ways (a sentinel global passed as an argument) arrived as two copies, "is" False
    out = run_python(
        """
        import numpy as np
        from picklepool import Executor, Parallel, delayed

        MISSING = object()
        CONFIG = {"scale": 2}
        WEIGHTS = np.zeros(300_000)  # through shared memory

        class Mode:
            pass

        FAST = Mode()

        def same(x, fill=MISSING):
            return x is MISSING, x is CONFIG, x is WEIGHTS, x is FAST, fill is MISSING

        def closure():
            held = [1]
            def f(x):
                return x is held
            return f, held

        f, held = closure()
        calls = [((MISSING,), {}), ((CONFIG,), {"fill": MISSING}), ((WEIGHTS,), {}), ((FAST,), {})]
        here = [same(*a, **k) for a, k in calls]
        print(Parallel(n_jobs=2)(delayed(same)(*a, **k) for a, k in calls) == here)
        print(Parallel(n_jobs=2, pickler="cloudpickle")(delayed(same)(*a, **k) for a, k in calls) == here)
        print(Parallel(n_jobs=2)(delayed(f)(held) for _ in range(2)))
        print(Parallel(n_jobs=2)(delayed(same)(x) for x in [MISSING, CONFIG, 1]))
        with Executor(max_workers=2) as ex:
            print(ex.submit(same, MISSING).result() == here[0], list(ex.map(f, [held])))
        """
    )
    assert out.stdout.splitlines() == [
        "True",
        "True",
        "[True, True]",
        "[(True, False, False, False, True), (False, True, False, False, True),"
        " (False, False, False, False, True)]",
        "True [True]",
    ], out.stderr


def test_an_argument_that_is_a_function_the_function_holds_too_is_one_function():
    # The same for a function of __main__ (sent by value) that the task's function names and
    # that is passed as an argument (a strategy, a callback): it arrived as a second copy, so
    # `step is fast_step` was False, and a task choosing by it took the wrong branch silently,
    # where the loop and joblib (one pickle) give one function. Importable functions go by
    # name (one object anyway).
    out = run_python(
        """
        import math
        from picklepool import Executor, Parallel, delayed

        def fast_step(x):
            return x + 1

        def slow_step(x):
            return x + 2

        def run(step, x, *, fallback=slow_step):
            kind = "fast" if step is fast_step else "slow" if step is slow_step else "other"
            return kind, fallback is slow_step, step is math.floor

        def closure():
            def inner(x):
                return x
            def f(g):
                return g is inner
            return f, inner

        calls = [((fast_step, 1), {}), ((slow_step, 2), {"fallback": slow_step}), ((math.floor, 3), {})]
        here = [run(*a, **k) for a, k in calls]
        print(here)
        print(Parallel(n_jobs=2)(delayed(run)(*a, **k) for a, k in calls) == here)
        f, inner = closure()
        print(Parallel(n_jobs=2)(delayed(f)(inner) for _ in range(2)))
        for _ in range(2):  # a warm call, whose function's bytes are recalled (executor.unchanged)
            print(Parallel(n_jobs=2)(delayed(run)(*a, **k) for a, k in calls) == here)
        with Executor(max_workers=2) as ex:
            print(ex.submit(run, fast_step, 0).result() == here[0], list(ex.map(f, [inner])))
        """
    )
    assert out.stdout.splitlines() == [
        "[('fast', True, False), ('slow', True, False), ('other', True, True)]",
        "True",
        "[True, True]",
        "True",
        "True",
        "True [True]",
    ], out.stderr


def test_an_argument_named_like_an_attribute_the_function_reads_is_sent_as_itself():
    # A global named like an attribute the function's code reads (`ma` beside `np.ma`, `path`
    # beside `os.path`) is in co_names but not sent with the function: passed as an argument it
    # was sent as "the function's global ma", which the worker's copy has not (KeyError: 'ma')
    out = run_python(
        """
        import os
        import numpy as np
        from picklepool import Executor, Parallel, delayed

        ma = np.ma.masked_array(np.arange(5.0), mask=[0, 1, 0, 0, 0])
        path = ["a", "b"]

        def count(m):
            m[2] = np.ma.masked
            return int(m.mask.sum())

        def first(p):
            return os.path.join(*p)

        here = [count(ma.copy()), first(path)]
        print(Parallel(n_jobs=2)(delayed(count)(ma) for _ in range(2)), int(ma.mask.sum()))
        print(Parallel(n_jobs=2, pickler="cloudpickle")(delayed(first)(path) for _ in range(2)))
        with Executor(max_workers=2) as ex:
            print(ex.submit(count, ma).result(), ex.submit(first, path).result(), here)
        """
    )
    assert out.stdout.splitlines() == ["[2, 2] 1", "['a/b', 'a/b']", "2 a/b [2, 'a/b']"], out.stderr


def test_an_argument_a_partial_or_a_bound_method_holds_too_is_one_object_as_in_joblib():
    # delayed(model.fit)(model.X), delayed(partial(f, X))(X), delayed(model)(model.X): the
    # callable was pickled apart from the arguments, so the argument arrived as a second
    # copy ("is" False, a write through one not seen through the other), where joblib, and
    # the parent, have one object
    out = run_python(
        """
        import functools
        import numpy as np
        from picklepool import Executor, Parallel, delayed

        class Model:
            def __init__(self, X):
                self.X = X

            def fit(self, X):
                return X is self.X

            def me(self, other):
                return other is self

            def __call__(self, X):
                return X is self.X

        class Cached(Model):  # its copy has no cache: the argument is sent as itself
            def __getstate__(self):
                return {"X": self.X}

            def hit(self, cache):
                return cache == {"k": 1} and not hasattr(self, "cache")

        def same(a, b, *, c=None):
            b[0] = 7.0  # seen through a and c when they are b
            return a is b, c is b, float(a[0])

        for n in (10, 300_000):  # in the batch's pickle, and through shared memory
            X = np.zeros(n)
            m = Model(X)
            c = Cached(X)
            c.cache = {"k": 1}
            print(
                Parallel(n_jobs=2)(delayed(m.fit)(m.X) for _ in range(2)),
                Parallel(n_jobs=2)(delayed(m.me)(m) for _ in range(1)),
                Parallel(n_jobs=2)(delayed(m)(X) for _ in range(1)),
                Parallel(n_jobs=2)(delayed(c.hit)(c.cache) for _ in range(1)),
                Parallel(n_jobs=2)(delayed(functools.partial(same, X, c=X))(X) for _ in range(1)),
                Parallel(n_jobs=2, mmap_mode="r+")(delayed(functools.partial(same, X))(X) for _ in range(1)),
            )
            with Executor(max_workers=2) as ex:
                mapped = list(ex.map(functools.partial(same, X, c=X), [X]))
                print(ex.submit(m.fit, X).result(), ex.submit(m, X).result(), mapped)
        """
    )
    line = "[True, True] [True] [True] [True] [(True, True, 7.0)] [(True, False, 7.0)]"
    assert out.stdout.splitlines() == [line, "True True [(True, True, 7.0)]"] * 2, out.stderr


def test_an_argument_the_function_holds_too_is_as_the_parent_sent_it_at_each_batch_and_submit():
    # The argument became the worker's copy of the function's own, kept across the batches
    # of a call and an Executor's submits: a task's change to it reached the next batches
    # (x.append(i): lengths 1, 2, 3...), and a later submit got it as it was at the first
    out = run_python(
        """
        from picklepool import Executor, Parallel, delayed

        LOG = []

        def add(x, i):
            x.append(i)
            return len(x), len(LOG), x is LOG

        print(Parallel(n_jobs=2, batch_size=1)(delayed(add)(LOG, i) for i in range(8)))
        with Executor(max_workers=1) as ex:
            print([ex.submit(add, LOG, i).result() for i in range(3)])
            LOG.append("parent")
            print([ex.submit(add, LOG, i).result() for i in range(2)])
        """
    )
    assert out.stdout.splitlines() == [
        str([(1, 1, True)] * 8),
        str([(1, 1, True)] * 3),
        str([(2, 2, True)] * 2),
    ], out.stderr


def test_an_importable_function_is_pickled_once_per_process_while_it_goes_by_reference():
    import cloudpickle

    from picklepool.executor.functions import by_reference
    from picklepool.pickler.base import StdlibPickler
    from picklepool.pickler.hybrid import HybridPickler

    from . import crash_cases

    pickler = HybridPickler()
    first = by_reference(pickler, crash_cases.identity_task)
    assert first is not None and by_reference(pickler, crash_cases.identity_task) == first
    assert pickler.loads(first[1]) is crash_cases.identity_task  # by name (and its code's digests)
    assert by_reference(pickler, lambda x: x) is None  # by value: pickled at every call
    assert by_reference(StdlibPickler(), crash_cases.identity_task) is None  # other picklers: the usual road
    cloudpickle.register_pickle_by_value(crash_cases)
    try:
        assert by_reference(pickler, crash_cases.identity_task) is None  # its module goes by value now
    finally:
        cloudpickle.unregister_pickle_by_value(crash_cases)


def test_the_globals_a_function_carries_are_cloudpickles_with_or_without_its_helper():
    from picklepool.pickler.codeglobals import global_ops, sent_globals

    def f(x):
        global _SET_BY_F
        _SET_BY_F = len(x.path)  # (path: an attribute, not a global)

        def inner():
            return pytest.approx(1)

        return inner

    assert set(sent_globals(f.__code__)) == set(global_ops(f.__code__)) == {"_SET_BY_F", "len", "pytest"}


_VERSIONS_SCRIPT = """
    import gc, os, sys

    from picklepool import Parallel, delayed

    def task(i):
        from picklepool.workers.cache import objects

        gc.collect()
        copies = sum(1 for key in list(objects._data) if key[0] == "func")
        alive = sum(1 for o in gc.get_objects() if type(o) is type and o.__name__.startswith("Model"))
        return len(TABLE) + CURRENT.k, copies, alive

    def make(k):
        return type(f"Model{{k}}", (), {{"k": k}})

    with Parallel(n_jobs=2, pickler={pickler!r}) as p:
        for k in range(30):  # a script rebinding a large global and a class before each call
            TABLE = {{i: str(i) for i in range(20_000 + k)}}
            CURRENT = make(k)
            out = p(delayed(task)(i) for i in range(2))
        assert [o[0] for o in out] == [20_029 + 29] * 2, out
        print(max(o[1] for o in out), max(o[2] for o in out))
"""


@pytest.mark.parametrize("pickler", ["hybrid", "cloudpickle"])
def test_a_workers_copies_of_a_function_from_earlier_calls_go(pickler):
    # helper-131: every call's copy of a function whose globals changed (a large dict rebound
    # before each call) stayed in the worker's cache, bounded by 1 GiB of their pickles, many
    # times that in memory (14 MB a call); under cloudpickle, each call's class made by a
    # factory was held for good. A loop and loky keep the last one.
    out = run_python(_VERSIONS_SCRIPT.format(pickler=pickler))
    assert out.returncode == 0, out.stderr
    copies, classes = map(int, out.stdout.split())
    assert copies == 1 and classes <= 2


def test_a_seeded_generator_a_function_sent_by_value_holds_is_warned_of():
    # a script's task function drawing from a generator it holds (a global, a closure's, a
    # default): each worker got a copy at the same state, so tasks drew the same numbers
    # (4 distinct of 6 on 2 workers) where the loop drew each once, without a word; a
    # module's generator set by the script is warned of already (workers.moduleglobals)
    proc = run_python(
        """
        import random, warnings
        import numpy as np
        from picklepool import Executor, Parallel, delayed

        rng = np.random.default_rng(0)

        def draw(i):
            return float(rng.random())

        def make(seed):
            mine = random.Random(seed)
            def draw_mine(i):
                return mine.random()
            return draw_mine

        def draw_default(i, r=np.random.RandomState(1)):
            return float(r.rand())

        def plain(i, seed=3):
            return float(np.random.default_rng(seed + i).random())

        for f in (draw, make(2), draw_default, plain):
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter("always")
                Parallel(n_jobs=2)(delayed(f)(i) for i in range(4))
            print(f.__name__, [str(w.message) for w in rec if w.category is RuntimeWarning])
        with warnings.catch_warnings(record=True) as rec, Executor(max_workers=2) as ex:
            warnings.simplefilter("always")
            ex.submit(draw, 0).result()
        print("executor", [str(w.message) for w in rec if w.category is RuntimeWarning])
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines["plain"] == "[]"
    for name, where, kind in (
        ("draw", "its global 'rng'", "numpy.random.Generator"),
        ("draw_mine", "its closure's 'mine'", "random.Random"),
        ("draw_default", "its default 'r'", "numpy.random.RandomState"),
        ("executor", "its global 'rng'", "numpy.random.Generator"),
    ):
        assert f"holds a seeded random number generator ({kind}) in {where}" in lines[name], lines[name]
        assert "the same numbers" in lines[name] and "SeedSequence" in lines[name], lines[name]
