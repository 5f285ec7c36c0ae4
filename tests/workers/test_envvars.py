"""Environment variables the parent sets between calls reach the warm workers (workers.envvars)."""

from __future__ import annotations

import os

from picklepool import Executor
from picklepool.workers import envvars

from ..conftest import run_python


def test_a_task_sees_the_variables_the_script_set_since_as_in_the_loop():
    # os.environ["DATA_DIR"] = ... between two calls: a warm worker kept the value it started
    # with (as under joblib), for the task and for a program it ran
    proc = run_python(
        """
        import os, subprocess, sys
        from picklepool import Parallel, delayed

        def task(_):
            child = subprocess.run(
                [sys.executable, "-c", "import os; print(os.environ.get('DATA_DIR'))"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            env = os.environ
            return env.get("DATA_DIR"), env.get("GONE"), child, env.get("OMP_NUM_THREADS")

        def show():
            loop = [task(i) for i in range(2)]
            pool = Parallel(n_jobs=2)(delayed(task)(i) for i in range(2))
            print(loop[0][:3], [p[:3] for p in pool] == [l[:3] for l in loop], pool[0][3])

        os.environ["DATA_DIR"], os.environ["GONE"] = "/a", "here"
        show()
        os.environ["DATA_DIR"] = "/b"
        del os.environ["GONE"]
        os.environ["OMP_NUM_THREADS"] = "7"  # a thread limit: the pool's (executor.limits), not mirrored
        show()
        os.environ["DATA_DIR"], os.environ["GONE"] = "/a", "here"  # back to the first values
        show()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "('/a', 'here', '/a') True 1",
        "('/b', None, '/b') True 7",
        "('/a', 'here', '/a') True 7",
    ]


def _set_and_read(value):
    before = os.environ.get("PICKLEPOOL_TEST_ENVVAR")
    os.environ["PICKLEPOOL_TEST_ENVVAR"] = value
    return before


def test_a_tasks_own_setting_is_its_batchs_the_next_one_sees_the_parents(monkeypatch):
    envvars.pickled()  # (the first read: what the workers start with)
    monkeypatch.setenv("PICKLEPOOL_TEST_ENVVAR", "parent")
    with Executor(max_workers=1) as ex:
        assert ex.submit(_set_and_read, "task").result() == "parent"
        assert ex.submit(_set_and_read, "task").result() == "parent"
        monkeypatch.setenv("PICKLEPOOL_TEST_ENVVAR", "parent2")
        assert ex.submit(_set_and_read, "task").result() == "parent2"


def test_pickled_sends_every_variable_that_differed_once(monkeypatch):
    envvars.pickled()
    monkeypatch.setenv("PICKLEPOOL_TEST_ENVVAR_2", "x")
    first = envvars.pickled()
    assert first is not None and envvars.pickled() is first  # (kept while unchanged)
    monkeypatch.delenv("PICKLEPOOL_TEST_ENVVAR_2")
    import pickle

    assert pickle.loads(envvars.pickled())["PICKLEPOOL_TEST_ENVVAR_2"] is None
    monkeypatch.setenv("OMP_NUM_THREADS", "9")
    assert "OMP_NUM_THREADS" not in pickle.loads(envvars.pickled())


def test_with_pythonhashseed_set_a_tasks_string_hashes_are_the_parents():
    # (without it each interpreter draws its own secret: README, "How it works")
    res = run_python(
        """
        from picklepool import Parallel, delayed

        def hashes(_):
            return hash("abc"), tuple({"a", "b", "c", "d"})

        if __name__ == "__main__":
            print(Parallel(n_jobs=2)(delayed(hashes)(i) for i in range(4)) == [hashes(0)] * 4)
        """,
        env={"PYTHONHASHSEED": "7"},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True"]
