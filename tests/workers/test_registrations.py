"""copyreg reducers a script registers for other modules' types, in force in the workers."""

from __future__ import annotations

import pytest

from ..conftest import run_python


@pytest.mark.parametrize("pickler", ["pickle", "cloudpickle", "hybrid"])
def test_a_reducer_the_script_registered_sends_the_tasks_results_back(pickler):
    # copyreg.pickle(sqlite3.Connection, reduce_conn) in a script: the loop returned the
    # connections, but a warm worker had no such registration and failed every task
    # ("cannot pickle 'sqlite3.Connection' object"); a task's own copy.deepcopy too. A
    # reducer the script changes, or drops, is the workers' from the next call on.
    proc = run_python(
        f"""
        import copy, copyreg, sqlite3
        from picklepool import Parallel, delayed

        def reduce_conn(conn):
            return sqlite3.connect, (":memory:",)

        def reduce_to_name(conn):
            return str, ("reduced",)

        copyreg.pickle(sqlite3.Connection, reduce_conn)
        p = Parallel(n_jobs=2, pickler={pickler!r})
        out = p(delayed(sqlite3.connect)(":memory:") for i in range(4))
        print([type(c).__name__ for c in out], out[0].execute("select 2").fetchone())
        out = p(delayed(copy.deepcopy)(c) for c in out)
        print([type(c).__name__ for c in out])
        copyreg.pickle(sqlite3.Connection, reduce_to_name)
        print(p(delayed(sqlite3.connect)(":memory:") for i in range(4)))
        del copyreg.dispatch_table[sqlite3.Connection]
        try:
            p(delayed(sqlite3.connect)(":memory:") for i in range(4))
        except Exception as exc:
            print(type(exc).__name__, "sqlite3.Connection" in str(exc))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "['Connection', 'Connection', 'Connection', 'Connection'] (2,)",
        "['Connection', 'Connection', 'Connection', 'Connection']",
        "['reduced', 'reduced', 'reduced', 'reduced']",
        "PicklingError True",
    ]


def test_a_task_changing_a_registration_does_not_change_the_next_batchs():
    # the parent's reducer is the workers' at every batch, as the parent's state is
    proc = run_python(
        """
        import copyreg, fractions
        from picklepool import Executor

        def as_text(f):
            return str, (f"{f.numerator}/{f.denominator}",)

        def own(_):
            import copyreg, fractions
            copyreg.pickle(fractions.Fraction, lambda f: (float, (float(f),)))
            return fractions.Fraction(1, 2)

        def half(_):
            import fractions
            return fractions.Fraction(1, 2)

        copyreg.pickle(fractions.Fraction, as_text)
        with Executor(max_workers=1) as ex:
            print(ex.submit(own, 0).result(), ex.submit(half, 0).result())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["0.5 1/2"]


def test_a_tasks_own_pickle_of_an_object_whose_reducer_returns_a_script_function_works():
    # the reducer returns rebuild, a function of the script: pickle names it __main__.rebuild,
    # which a worker's __main__ (loky's) did not have while the task ran (workers.mainnames)
    proc = run_python(
        """
        import copyreg, pickle, sqlite3
        from picklepool import Parallel, delayed

        def rebuild(path):
            return sqlite3.connect(path)

        def reduce_conn(conn):
            return rebuild, (":memory:",)

        def round_trip(_i):
            conn = pickle.loads(pickle.dumps(sqlite3.connect(":memory:")))
            return conn.execute("select 3").fetchone()[0]

        copyreg.pickle(sqlite3.Connection, reduce_conn)
        print(round_trip(0), Parallel(n_jobs=2)(delayed(round_trip)(i) for i in range(2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "[3,", "3]"]
