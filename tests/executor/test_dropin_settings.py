"""joblib's parameters and their precedence: signature, prefer/require, None, parallel_config."""

from __future__ import annotations

import inspect
import math
import re

import numpy as np
import pytest

from picklepool import Parallel, delayed, parallel_backend, parallel_config

JOBLIB_ORDER = [
    "n_jobs",
    "backend",
    "return_as",
    "verbose",
    "timeout",
    "pre_dispatch",
    "batch_size",
    "temp_folder",
    "max_nbytes",
    "mmap_mode",
    "prefer",
    "require",
]


def test_positional_parameters_in_joblibs_order():
    params = list(inspect.signature(Parallel).parameters.values())
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == JOBLIB_ORDER
    assert Parallel(2, "threading", "generator").return_as == "generator"


def test_parallel_config_takes_joblibs_names():
    names = inspect.signature(parallel_config).parameters
    for name in (
        "backend",
        "n_jobs",
        "verbose",
        "temp_folder",
        "max_nbytes",
        "mmap_mode",
        "prefer",
        "require",
    ):
        assert name in names
    assert "inner_max_num_threads" in names


@pytest.mark.parametrize(
    ("kwargs", "backend", "n_workers"),
    [
        ({"n_jobs": 2, "prefer": "threads"}, "threading", 2),
        ({"n_jobs": 2, "prefer": "processes"}, "loky", 2),
        ({"n_jobs": 2, "require": "sharedmem"}, "threading", 2),
        ({"n_jobs": 2, "backend": "loky", "prefer": "threads"}, "loky", 2),  # a hint only
    ],
)
def test_prefer_is_a_hint_require_a_constraint(kwargs, backend, n_workers):
    s = Parallel(**kwargs)._settings()
    assert (s.backend, s.n_workers) == (backend, n_workers)


def test_prefer_yields_to_parallel_config_and_require_overrides_it():
    with parallel_config("loky", n_jobs=2):
        s = Parallel(prefer="threads")._settings()
        assert (s.backend, s.n_workers) == ("loky", 2)
        s = Parallel(require="sharedmem")._settings()
        assert (s.backend, s.n_workers) == ("threading", 1)  # joblib: n_jobs=1 unless given
        s = Parallel(n_jobs=3, require="sharedmem")._settings()
        assert (s.backend, s.n_workers) == ("threading", 3)


def test_prefer_threads_in_parallel_config_keeps_the_blocks_n_jobs():
    # joblib resets it to 1 when its hint switches to threads (README: deliberate)
    with parallel_config(prefer="threads", n_jobs=2):
        s = Parallel()._settings()
        assert (s.backend, s.n_workers) == ("threading", 2)


def test_a_require_from_parallel_config_leaves_a_backend_argument_alone():
    # joblib checks a block's require against the block's backend only: library code
    # passing backend="loky" inside parallel_config(require="sharedmem") runs on loky
    with parallel_config(require="sharedmem"):
        s = Parallel(backend="loky", n_jobs=2)._settings()
        assert (s.backend, s.n_workers) == ("loky", 2)
        s = Parallel(n_jobs=2)._settings()  # no backend given: the constraint chooses
        assert (s.backend, s.n_workers) == ("threading", 2)
        with pytest.raises(ValueError, match="does not support shared memory"):
            Parallel(backend="loky", require="sharedmem")  # both given here: joblib raises


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prefer": "invalid"}, "prefer='invalid'"),
        ({"require": "invalid"}, "require='invalid'"),
        ({"prefer": "processes", "require": "sharedmem"}, "inconsistent"),
        ({"backend": "loky", "require": "sharedmem"}, "does not support shared memory"),
        ({"backend": "multiprocessing", "require": "sharedmem"}, "does not support shared memory"),
    ],
)
def test_bad_hints_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Parallel(**kwargs)


def test_none_means_not_given():
    with parallel_config(backend="threading", n_jobs=3):
        s = Parallel(n_jobs=None, backend=None)._settings()
        assert (s.backend, s.n_workers) == ("threading", 3)
        assert Parallel(n_jobs=None)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


def _pid(_: int) -> int:
    import os

    return os.getpid()


def test_n_jobs_not_given_anywhere_is_one_as_in_joblib(monkeypatch):
    import os

    from picklepool import Executor, cpu_count, effective_n_jobs

    monkeypatch.delenv("PICKLEPOOL_N_JOBS", raising=False)
    assert effective_n_jobs(None) == 1
    assert Parallel().n_jobs == 1 and Parallel()._effective_n_jobs() == 1
    assert set(Parallel()(delayed(_pid)(i) for i in range(3))) == {os.getpid()}  # the calling process
    for backend in ("loky", "threading"):
        with parallel_config(backend=backend):
            assert effective_n_jobs(None) == 1
    with parallel_config(n_jobs=-1):
        assert effective_n_jobs(None) == cpu_count()
    monkeypatch.setenv("PICKLEPOOL_N_JOBS", "2")
    assert effective_n_jobs(None) == 2
    monkeypatch.delenv("PICKLEPOOL_N_JOBS")
    # concurrent.futures' default stays the standard library's: every usable core
    assert Executor()._max_workers == cpu_count()


def test_float_n_jobs_is_truncated():
    assert Parallel(n_jobs=2.3)._settings().n_workers == 2


def test_parallel_backend_is_joblibs_older_form():
    with parallel_backend("threading", n_jobs=2) as (backend, n_jobs):
        assert (backend.name, backend.nesting_level, n_jobs) == ("threading", 0, 2)
        assert Parallel()._settings().backend == "threading"
    with pytest.raises(ValueError, match="Invalid backend"):
        parallel_config(backend="no-such-backend")


def _initialized(marker):
    import os

    os.environ["PICKLEPOOL_TEST_INIT"] = marker


def _read_marker(_i):
    import os

    return os.environ.get("PICKLEPOOL_TEST_INIT")


def _failing_initializer():
    raise RuntimeError("no connection")


def test_a_failing_initializer_is_named_not_taken_for_a_segfault():
    # loky prints the initializer's traceback and ends the worker with exit code 0
    from picklepool import WorkerCrashedError

    with pytest.raises(WorkerCrashedError) as info:
        Parallel(n_jobs=2, initializer=_failing_initializer)(delayed(_read_marker)(i) for i in range(4))
    text = str(info.value)
    assert "initializer tests.executor.test_dropin_settings._failing_initializer raised" in text, text
    assert "segfault" not in text, text
    # what it raised, with its traceback (loky only prints them on stderr), as an
    # Executor's initializer's error has them
    assert "raised RuntimeError: no connection" in text, text
    cause = info.value.__cause__
    assert cause is not None and "_failing_initializer" in str(cause), cause
    assert 'raise RuntimeError("no connection")' in str(cause), cause
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def test_a_failing_initializer_of_the_multiprocessing_backend_is_named_with_what_it_raised():
    # multiprocessing.Pool ends such a worker with status 1: the error used to blame the
    # worker's own code ("closed file descriptors, sys.exit(1) in a thread")
    from picklepool import WorkerCrashedError

    with pytest.raises(WorkerCrashedError) as info:
        Parallel(n_jobs=2, backend="multiprocessing", initializer=_failing_initializer)(
            delayed(abs)(-i) for i in range(4)
        )
    text = str(info.value)
    assert "initializer tests.executor.test_dropin_settings._failing_initializer raised" in text, text
    assert "RuntimeError: no connection" in text and "file descriptors" not in text, text
    assert Parallel(n_jobs=2, backend="multiprocessing")(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def test_an_initializer_in_main_sets_globals_the_calls_tasks_see():
    # as picklepool.Executor's (and the standard library executors'): the initializer and
    # the tasks' function travel by value, each with globals of its own; the globals the
    # initializer set are given to the functions of its module, in every call on the pool
    from tests.conftest import run_python
    from tests.executor.initializer_script import CONNECT

    out = run_python(
        """
        from picklepool import Parallel, delayed
        """
        + CONNECT
        + """
        def use_too(i):
            return CONNECTION

        for i in range(2):
            p = Parallel(n_jobs=2, initializer=connect, initargs=("open",))
            both = sorted(set(p(delayed(use)(i) for i in range(6))))
            print(both, set(p(delayed(use_too)(i) for i in range(4))))
        with Parallel(n_jobs=2, initializer=connect, initargs=("block",)) as p:
            print(set(p(delayed(use_too)(i) for i in range(4))))
        print(set(Parallel(n_jobs=2)(delayed(use_too)(i) for i in range(4))))  # a pool without
        """
    )
    assert out.stdout.splitlines() == [
        "[('open', 'from the parent', 'open')] {'open'}",
        "[('open', 'from the parent', 'open')] {'open'}",
        "{'block'}",
        "{None}",
    ], out.stderr


@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_initializer_runs_in_each_worker(backend):
    out = Parallel(n_jobs=2, backend=backend, initializer=_initialized, initargs=("a",))(
        delayed(_read_marker)(i) for i in range(4)
    )
    assert out == ["a"] * 4
    with parallel_config(backend=backend, n_jobs=2, initializer=_initialized, initargs=("b",)):
        assert Parallel()(delayed(_read_marker)(i) for i in range(4)) == ["b"] * 4


@pytest.mark.parametrize(("pre_dispatch", "in_flight"), [(2.5, 2), (1.0, 1), ("2.5", 2)])
def test_a_float_pre_dispatch_is_truncated_as_joblibs_int(pre_dispatch, in_flight):
    # joblib: int(pre_dispatch); a count written as n_jobs * 1.5 is a float
    p = Parallel(n_jobs=2, pre_dispatch=pre_dispatch)
    assert p._settings().max_inflight == in_flight
    assert p(delayed(abs)(-i) for i in range(5)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("pre_dispatch", [float("nan"), float("inf"), -2.0])
def test_a_float_pre_dispatch_below_zero_or_not_finite_is_refused(pre_dispatch):
    with pytest.raises(ValueError, match="pre_dispatch="):
        Parallel(n_jobs=2, pre_dispatch=pre_dispatch)


def test_joblibs_public_attributes_are_there():
    # joblib's Parallel keeps these as attributes; subclasses (progress bars) read them
    p = Parallel(2, None, "generator_unordered", verbose=3, timeout=4, pre_dispatch="all", batch_size=3)
    assert (p.verbose, p.timeout, p.pre_dispatch, p.batch_size) == (3, 4, "all", 3)
    assert (p.return_generator, p.return_ordered) == (True, False)
    p = Parallel()
    assert (p.verbose, p.timeout, p.batch_size) == (0, None, "auto")
    assert (p.return_generator, p.return_ordered) == (False, True)
    with parallel_config(verbose=2, n_jobs=3):
        assert (p.verbose, p.n_jobs) == (2, 3)


def test_joblibs_attributes_can_be_set_between_calls():
    p = Parallel(n_jobs=1)
    p.n_jobs = 2
    p.verbose = 0
    p.batch_size = 2
    assert (p.n_jobs, p._effective_n_jobs(), p.batch_size) == (2, 2, 2)
    assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    with pytest.raises(ValueError, match="batch_size=0"):
        p.batch_size = 0
    assert p.batch_size == 2  # a refused value leaves the setting as it was


def test_a_subclass_may_set_joblibs_attributes_before_calling_init():
    # joblib's __init__ sets them all from its arguments: an earlier value is replaced
    class Early(Parallel):
        def __init__(self, **kwargs):
            self.verbose = 5
            self.n_jobs = 3
            super().__init__(**kwargs)

    p = Early(n_jobs=2)
    assert (p.verbose, p.n_jobs) == (0, 2)
    assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def test_a_copy_of_parallel_has_settings_of_its_own():
    # copy.copy shares the instance's attributes: setting n_jobs on the copy changed the
    # original's (its next call, once its cached settings were redone, ran with it)
    import copy

    p = Parallel(n_jobs=2, verbose=0)
    q = copy.copy(p)
    q.n_jobs = 3
    q.verbose = 4
    p._cached = None  # as a call under another parallel_config or environment redoes them
    assert (p.n_jobs, p.verbose) == (2, 0)
    assert (q.n_jobs, q.verbose) == (3, 4)


def test_a_subclass_class_attribute_does_not_hide_joblibs_settable_attribute():
    # joblib's __init__ sets verbose, n_jobs... on the instance, over a class attribute of
    # a subclass; here the class attribute hid the setting: p.verbose said 5 while calls
    # ran with 0, and p.verbose = 7 went to the instance and reached no call
    class Loud(Parallel):
        verbose = 5
        n_jobs = 3
        timeout = None

    p = Loud(n_jobs=1)
    assert (p.verbose, p.n_jobs) == (0, 1)  # joblib's: the arguments (and defaults)
    p.verbose = 7
    p.timeout = 30
    assert (p._settings().verbose, p._settings().timeout) == (7, 30)
    assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def test_n_jobs_set_inside_a_with_block_is_used_by_its_next_call():
    # joblib's next call uses it; here p.n_jobs said 1 while the block's calls went on
    # running on its two workers (and _effective_n_jobs() said 2)
    import os

    with Parallel(n_jobs=2) as p:
        assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
        p.n_jobs = 1
        assert (p.n_jobs, p._effective_n_jobs()) == (1, 1)
        assert set(p(delayed(os.getpid)() for _ in range(4))) == {os.getpid()}
        p.n_jobs = 2
        assert p._effective_n_jobs() == 2
        assert os.getpid() not in set(p(delayed(os.getpid)() for _ in range(4)))


@pytest.mark.parametrize(
    "setting",
    [
        {"temp_folder": 5},
        {"timeout": "abc"},
        {"timeout": [1]},
        {"pre_dispatch": [1]},
        {"verbose": "x"},
        {"verbose": [1]},
        {"initializer": 5},
        {"initargs": 5},
    ],
)
def test_a_setting_of_the_wrong_type_is_a_type_error_as_in_joblib(setting):
    # joblib (and loky, for initializer=) raise TypeError for these: code catching it
    # kept working on joblib only; picklepool's error is a TypeError and a ValueError
    name, value = next(iter(setting.items()))
    for Error in (TypeError, ValueError):
        with pytest.raises(Error, match=f"{re.escape(f'{name}={value!r}')} .*is not valid; use "):
            Parallel(n_jobs=2, **setting)(delayed(abs)(i) for i in range(2))


def test_an_executors_initargs_that_are_no_tuple_are_named_at_construction():
    from picklepool import Executor

    with pytest.raises(TypeError, match=r"initargs must be a tuple.*Executor\(initargs=5\).*\(value,\)"):
        Executor(max_workers=1, initializer=print, initargs=5)


# -- the values joblib 1.6 accepts, with its meanings (each was refused here) --------------


@pytest.mark.parametrize("value", [math.inf, 1e20, np.float64("inf")])
def test_timeout_inf_or_past_a_billion_seconds_is_no_limit_as_in_joblib(value):
    p = Parallel(n_jobs=2, timeout=value)
    assert p.timeout is None
    assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    with parallel_config(timeout=value):
        assert Parallel(n_jobs=2).timeout is None


@pytest.mark.parametrize(
    ("value", "as_int"), [(2.5, 2), (0.5, 1), (np.float64(2.9), 2), (np.True_, 1), (0.0, 0)]
)
def test_a_float_verbose_prints_as_the_int_below_it_and_any_value_above_zero_prints(value, as_int, capsys):
    p = Parallel(n_jobs=2, verbose=value)
    assert p.verbose == as_int
    assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    assert ("Done   3 out of   3" in capsys.readouterr().err) == bool(as_int)


def test_batch_size_true_is_one_as_joblibs_integral():
    p = Parallel(n_jobs=2, batch_size=True)
    assert p.batch_size == 1
    assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


@pytest.mark.parametrize("value", [True, np.True_, False, -0.5])
def test_pre_dispatch_of_a_bool_or_just_below_zero_is_joblibs_int(value):
    # joblib's int(pre_dispatch): 1 or 0 (0 dispatches one batch here: see test_config)
    p = Parallel(n_jobs=2, pre_dispatch=value)
    assert p._settings().max_inflight == 1
    assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


@pytest.mark.parametrize(("value", "nbytes"), [(math.inf, None), (1e20, None), (-1, 0), (-math.inf, 0)])
def test_max_nbytes_past_any_size_is_off_and_below_zero_shares_every_array_as_in_joblib(value, nbytes):
    # joblib shares an array when a.nbytes > max_nbytes
    assert Parallel(max_nbytes=value)._settings().max_nbytes == nbytes
    with parallel_config(max_nbytes=value):
        assert Parallel()._settings().max_nbytes == nbytes


@pytest.mark.parametrize("setting", [{"timeout": "2"}, {"verbose": "2"}, {"idle_worker_timeout": "5"}])
def test_a_number_written_as_a_string_is_a_type_error_as_in_joblib(setting):
    # joblib: TypeError for timeout="2" and verbose="2" (and a broken pool for
    # idle_worker_timeout="5"); PICKLEPOOL_IDLE_WORKER_TIMEOUT is still read as a number
    name, value = next(iter(setting.items()))
    with pytest.raises(TypeError, match=re.escape(f"{name}={value!r} (from argument) is not valid")):
        Parallel(n_jobs=2, **setting)


def _array_kind(a):
    return type(a).__name__


@pytest.mark.parametrize("value", ["-1M", "-0.5k", "-1"])
def test_a_negative_max_nbytes_size_shares_every_array_as_joblibs_memstr_to_bytes(value):
    # joblib: memstr_to_bytes("-1M") is -1048576, below every array's size; it was a
    # ValueError ("is not a size") here, where max_nbytes=-1 shares every array
    assert Parallel(max_nbytes=value)._settings().max_nbytes == 0
    with parallel_config(max_nbytes=value):
        assert Parallel()._settings().max_nbytes == 0
    small = np.arange(10.0)
    assert Parallel(n_jobs=2, max_nbytes=value)(delayed(_array_kind)(small) for _ in range(2)) == [
        "memmap",
        "memmap",
    ]


# joblib takes these by accident of its checks; each is most likely a mistake, so it stays
# refused (README: kept stricter), the error saying what joblib makes of it and what to write
@pytest.mark.parametrize(
    ("setting", "joblib_does"),
    [
        ({"timeout": 0}, "joblib times out every task not finished at its first check"),
        ({"timeout": -1}, "joblib times out every task not finished at its first check"),
        ({"timeout": math.nan}, "joblib never times out with it"),
        ({"timeout": True}, "joblib reads True as 1 s"),
        ({"verbose": -1}, "joblib prints its progress for a negative one"),
        ({"max_nbytes": math.nan}, "joblib shares no array with it"),
        ({"max_nbytes": True}, "joblib compares sizes with it as 1 byte, sharing every array"),
        ({"max_nbytes": np.False_}, "joblib compares sizes with it as 0 bytes, sharing every array"),
    ],
    ids=repr,
)
def test_a_value_joblib_takes_by_accident_is_refused_saying_what_joblib_makes_of_it(setting, joblib_does):
    name, value = next(iter(setting.items()))
    for make, source in ((Parallel, "argument"), (parallel_config, "parallel_config")):
        with pytest.raises(ValueError) as raised:
            make(**setting)
        text = str(raised.value)
        assert text.startswith(f"{name}={value!r} (from {source}) is not ")
        assert "; use " in text and joblib_does in text
