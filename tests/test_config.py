"""parallel_config: scoped, nested, restored, per thread; argument validation."""

from __future__ import annotations

import os
import re
import sys
import threading
import warnings

import pytest

from picklepool import Parallel, cpu_count, delayed, parallel_config
from picklepool.config import config_value
from tests.conftest import run_python


def test_nesting_and_restoring():
    assert config_value("n_jobs") is not None
    with parallel_config(n_jobs=3, backend="threading"):
        assert config_value("n_jobs") == 3
        with parallel_config(n_jobs=1):
            assert config_value("n_jobs") == 1
            assert config_value("backend") == "threading"
        assert config_value("n_jobs") == 3
    with pytest.raises(KeyError), parallel_config(n_jobs=2):
        raise KeyError("restored on error too")
    assert repr(config_value("n_jobs")) == "NOT_SET"


def test_config_is_private_to_each_thread():
    seen = {}
    inside = threading.Event()
    release = threading.Event()

    def other():
        inside.wait(10)
        seen["other"] = config_value("n_jobs")
        release.set()

    t = threading.Thread(target=other)
    t.start()
    with parallel_config(n_jobs=5):
        inside.set()
        release.wait(10)
    t.join()
    assert repr(seen["other"]) == "NOT_SET"


def test_a_config_never_entered_says_it_changed_nothing():
    # joblib applies parallel_config and parallel_backend when they are made (a bare
    # statement changes its defaults until .unregister()); here only a `with` block
    # does, and a bare statement changed nothing without a word.
    from picklepool import parallel_backend

    with pytest.warns(RuntimeWarning, match=r"never entered, so it changed nothing") as record:
        parallel_backend("threading", n_jobs=2)
    assert record[0].filename == __file__  # the line that made it
    assert "parallel_backend(backend='threading', n_jobs=2)" in str(record[0].message)
    assert repr(config_value("backend")) == "NOT_SET"


def test_a_config_kept_in_a_variable_and_never_entered_warns_at_the_call_it_misses():
    # joblib's idiom `cfg = parallel_backend("loky", n_jobs=2)`, calls, then
    # `cfg.unregister()`: joblib ran the calls with it; here they ran without it, silently
    # (the warning came only when the object was dropped: never, while a variable held it).
    from picklepool import Parallel, delayed, parallel_backend

    cfg = parallel_backend("threading", n_jobs=2)
    made = sys._getframe().f_lineno - 1
    with pytest.warns(RuntimeWarning, match=r"never entered, so it changed nothing") as record:
        assert Parallel()(delayed(abs)(-1) for _ in range(2)) == [1, 1]
    assert len(record) == 1
    assert (record[0].filename, record[0].lineno) == (__file__, made)  # the line that made it
    assert "parallel_backend(backend='threading', n_jobs=2)" in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: not again at the next call, nor at unregister
        Parallel()(delayed(abs)(-1) for _ in range(2))
        cfg.unregister()
        del cfg


def test_unregister_of_a_config_never_entered_says_it_changed_nothing():
    cfg = parallel_config(n_jobs=3)
    made = sys._getframe().f_lineno - 1
    with pytest.warns(RuntimeWarning, match=r"never entered, so it changed nothing") as record:
        cfg.unregister()
    assert (record[0].filename, record[0].lineno) == (__file__, made)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del cfg


def test_a_config_kept_for_a_later_with_block_does_not_warn_from_another_thread():
    # joblib's config is the thread's own: a call of another thread is not one it missed
    from picklepool import Parallel, delayed

    cfg = parallel_config(n_jobs=2)
    seen = []

    def other():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Parallel(n_jobs=1)(delayed(abs)(-1) for _ in range(2))
        seen.extend(caught)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with cfg:
            assert config_value("n_jobs") == 2
        del cfg


def test_configs_made_ahead_and_entered_in_turn_do_not_warn():
    from picklepool import Parallel, delayed

    configs = [parallel_config(n_jobs=1), parallel_config(n_jobs=2, backend="threading")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for config in configs:
            with config:
                Parallel()(delayed(abs)(-1) for _ in range(2))


def test_unregister_leaves_the_block_as_in_joblib():
    config = parallel_config(n_jobs=3)
    config.__enter__()
    assert config_value("n_jobs") == 3
    config.unregister()
    assert repr(config_value("n_jobs")) == "NOT_SET"
    config.unregister()  # nothing left to leave


def test_unknown_setting():
    with pytest.raises(TypeError, match="unknown setting"):
        parallel_config(n_job=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_jobs": 0}, "n_jobs=0"),
        ({"n_jobs": float("nan")}, "n_jobs=nan"),
        ({"timeout": float("nan")}, "timeout=nan"),
        ({"timeout": float("-inf")}, "timeout=-inf"),
        ({"timeout": True}, "timeout=True"),
        ({"max_nbytes": "1e308G"}, "max_nbytes='1e308G'"),
        ({"idle_worker_timeout": -1}, "idle_worker_timeout=-1"),
        ({"backend": "spark"}, "backend='spark'"),
        ({"return_as": "dict"}, "return_as='dict'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"timeout": -1}, "timeout=-1"),
        ({"pre_dispatch": "n_jobs*"}, "pre_dispatch"),
        ({"max_nbytes": "lots"}, "max_nbytes='lots'"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("*", r"\*")):
        Parallel(**kwargs)


def test_float_n_jobs_is_truncated_as_in_joblib():
    assert Parallel(n_jobs=2.3)._settings().n_workers == 2
    assert Parallel(n_jobs=-1.0)._settings().n_workers == cpu_count()


def test_negative_n_jobs_counts_from_the_cores():
    from picklepool.executor.parallel import effective_n_jobs

    assert effective_n_jobs(-1) == cpu_count()
    assert effective_n_jobs(-2) == max(1, cpu_count() - 1)
    assert effective_n_jobs(-1000) == 1


def test_n_jobs_one_runs_in_the_calling_process():
    import os

    assert Parallel(n_jobs=1)(delayed(os.getpid)() for _ in range(3)) == [os.getpid()] * 3


@pytest.mark.parametrize(
    "value", ["n_jobs", "n_jobs*2", "3*n_jobs", 5, "n_jobs+1", "1.5*n_jobs", "2 * n_jobs + 4"]
)
def test_pre_dispatch_accepts_joblibs_forms(value):
    # joblib evaluates any arithmetic expression of n_jobs ('n_jobs+1' was refused here)
    assert Parallel(n_jobs=2, pre_dispatch=value)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


@pytest.mark.parametrize("value", ["-n_jobs", "2**1000", "9**9**9", "__import__('os')"])
def test_pre_dispatch_expressions_below_zero_too_large_or_not_arithmetic_are_refused(value):
    with pytest.raises(ValueError, match="pre_dispatch"):
        Parallel(n_jobs=2, pre_dispatch=value)(delayed(abs)(-i) for i in range(3))


@pytest.mark.parametrize("value", ["infM", "nanK", True])
def test_bad_sizes_are_value_errors(value):
    with pytest.raises(ValueError, match="max_nbytes"):
        Parallel(max_nbytes=value)


def test_a_negative_size_is_a_value_error_but_for_max_nbytes():
    # max_nbytes="-1M" shares every array, as joblib's memstr_to_bytes gives -1048576 (see
    # test_dropin_settings); a memory limit below zero means nothing
    with pytest.raises(ValueError, match="max_worker_memory='-1M'"):
        Parallel(max_worker_memory="-1M")._settings()


@pytest.mark.parametrize("value", [1e6, 2.5e6, 1048576.0])
def test_sizes_given_as_floats_are_taken_as_joblib_takes_them(value):
    # joblib compares array sizes with max_nbytes as given: max_nbytes=1e6 works there,
    # and was a ValueError ("is not a size") here.
    assert Parallel(max_nbytes=value)._settings().max_nbytes == int(value)
    assert Parallel(max_worker_memory=value)._settings().max_worker_memory == int(value)


# Every setting, through each of its doors, with values that used to slip through:
# each is a ValueError naming the setting (and, for the environment, the variable).
_ABSURD = [float("nan"), float("inf"), 1e12, 10**30, "1e308G", "abc", [1]]
_SETTINGS_AND_BAD = {
    "n_jobs": _ABSURD,
    "batch_size": [*_ABSURD, 0, 1 << 62],
    # a float is joblib's int(pre_dispatch), as an int up to settings.MAX_BATCH (2**40)
    "pre_dispatch": [*(v for v in _ABSURD if v != 1e12), 1e13],
    # (math.inf and past 1e9 s: no limit, as joblib's; see test_dropin_settings)
    "timeout": [float("nan"), "1e308G", "abc", [1], 0, -1, float("-inf"), True],
    "max_nbytes": [float("nan"), "1e308G", "abc", True],
    "inner_max_num_threads": [float("nan"), 10**30, "abc", 0],
    "max_worker_memory": [float("nan"), "1e308G", "abc", -1],
    "idle_worker_timeout": [float("nan"), float("inf"), 1e12, "abc", 0],
    "mmap_mode": ["x", 1],
    "prefer": ["gpu"],
    "require": ["nothing"],
    "progress": ["sometimes", 2.5],
    "verbose": [float("nan"), "abc", -1],
}


@pytest.mark.parametrize(
    "setting, value", [(k, v) for k, values in _SETTINGS_AND_BAD.items() for v in values], ids=repr
)
def test_every_setting_is_checked_where_it_is_given(setting, value):
    with pytest.raises(ValueError, match=rf"{setting}=.*\(from argument\)"):
        Parallel(**{setting: value})._settings()
    with pytest.raises(ValueError, match=rf"{setting}=.*\(from parallel_config\)"):
        parallel_config(**{setting: value})  # where it is written, not at a later call in it


@pytest.mark.parametrize(
    "var, value",
    [
        ("PICKLEPOOL_N_JOBS", "1e12"),
        ("PICKLEPOOL_N_JOBS", "10000000000000000000000000000000"),
        ("PICKLEPOOL_N_JOBS", "nan"),
        ("PICKLEPOOL_BACKEND", "spark"),
        ("PICKLEPOOL_PICKLER", "nope"),
        ("PICKLEPOOL_PROGRESS", "sometimes"),
        ("PICKLEPOOL_MAX_WORKER_MEMORY", "1e308G"),
        ("PICKLEPOOL_IDLE_WORKER_TIMEOUT", "inf"),
    ],
)
def test_every_environment_variable_is_checked_and_named(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    n_jobs = None if var == "PICKLEPOOL_N_JOBS" else 2  # else a call on processes: it reads them all
    with pytest.raises(ValueError, match=var):
        Parallel(n_jobs=n_jobs)(delayed(abs)(-1) for _ in range(2))


def test_max_nbytes_none_turns_shared_memory_off_at_every_level():
    assert Parallel(max_nbytes=None)._settings().max_nbytes is None
    with parallel_config(max_nbytes="2M"):
        assert Parallel(max_nbytes=None)._settings().max_nbytes is None
        assert Parallel()._settings().max_nbytes == 2 << 20
    with parallel_config(max_nbytes=None):
        assert Parallel()._settings().max_nbytes is None
    assert Parallel()._settings().max_nbytes == 1 << 20


def test_settings_resolved_for_one_parallel_are_not_reused_for_a_different_value():
    assert Parallel(n_jobs=1)._settings().n_workers == 1
    with pytest.raises(ValueError, match="n_jobs=True"):
        Parallel(n_jobs=True)
    assert Parallel(n_jobs=2.0)._settings().n_workers == 2


@pytest.mark.parametrize("value, meant", [(True, "write 1"), (False, "joblib reads False as 0")])
def test_a_bool_n_jobs_says_it_is_a_bool_not_that_it_cannot_be_converted(value, meant):
    # int(True) is 1: "n_jobs could not be converted to int" said what is not so, and
    # nothing of what was meant (joblib runs n_jobs=True in the calling process).
    for source, make in (
        ("argument", lambda: Parallel(n_jobs=value)),
        ("parallel_config", lambda: parallel_config(n_jobs=value)),
    ):
        with pytest.raises(ValueError) as info:
            make()
        message = str(info.value)
        assert message.startswith(f"n_jobs={value!r} (from {source}) is not valid: a bool is not a number")
        assert "could not be converted" not in message and meant in message


@pytest.mark.timeout(30)
def test_n_jobs_minus_one_follows_loky_max_cpu_count_changed_after_a_call(monkeypatch):
    # the settings a Parallel resolved are kept while the environment stays the same:
    # LOKY_MAX_CPU_COUNT is part of it (n_jobs=-1 kept the count of before)
    monkeypatch.delenv("LOKY_MAX_CPU_COUNT", raising=False)
    for value in (None, "1", "2", None):
        if value is None:
            monkeypatch.delenv("LOKY_MAX_CPU_COUNT", raising=False)
        else:
            monkeypatch.setenv("LOKY_MAX_CPU_COUNT", value)
        assert Parallel(n_jobs=-1)._effective_n_jobs() == cpu_count()
        assert Parallel(n_jobs=-2)._effective_n_jobs() == max(1, cpu_count() - 1)


@pytest.mark.parametrize("value", ["abc", "1.5", " "])
def test_a_bad_loky_max_cpu_count_is_named_with_what_to_use(monkeypatch, value):
    # loky's own int() failed bare ("invalid literal for int() with base 10: 'abc'"),
    # naming neither the variable nor what to write
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", value)
    expected = f"LOKY_MAX_CPU_COUNT={value!r} .*env var.*whole number of cores"
    with pytest.raises(ValueError, match=expected):
        cpu_count()
    for n_jobs in (-1, 2):  # (the workers' thread limits count the cores too)
        with pytest.raises(ValueError, match=expected):
            Parallel(n_jobs=n_jobs)(delayed(abs)(i) for i in range(2))
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "2")
    assert Parallel(n_jobs=-1)(delayed(abs)(i) for i in range(2)) == [0, 1]


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="one core"
)
def test_n_jobs_minus_one_follows_the_cpu_affinity_changed_after_a_call():
    # loky counts the usable cores at every call (taskset, a container's cpuset)
    cores = os.sched_getaffinity(0)
    p = Parallel(n_jobs=-1)
    assert p._effective_n_jobs() == cpu_count() == min(len(cores), cpu_count())
    try:
        os.sched_setaffinity(0, {min(cores)})
        assert p._effective_n_jobs() == Parallel(n_jobs=-1)._effective_n_jobs() == 1
    finally:
        os.sched_setaffinity(0, cores)
    assert p._effective_n_jobs() == cpu_count()


def test_a_misspelt_picklepool_variable_warns_naming_the_one_meant():
    # PICKLEPOOL_PICKLR=cloudpickle was ignored in silence: the call ran with hybrid
    out = run_python(
        """
        import warnings
        warnings.simplefilter("always")
        from picklepool import Parallel, delayed
        print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)))
        """,
        env={"PICKLEPOOL_PICKLR": "cloudpickle", "PICKLEPOOL_ZZZZZZZZ": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 1, 2]"
    assert out.stderr.count("RuntimeWarning") == 2, out.stderr  # once each, not from the workers
    assert (
        "RuntimeWarning: the environment variable PICKLEPOOL_PICKLR is not one picklepool reads, so it "
        "changes nothing; did you mean PICKLEPOOL_PICKLER? picklepool reads PICKLEPOOL_BACKEND, "
    ) in out.stderr
    assert (
        "PICKLEPOOL_ZZZZZZZZ is not one picklepool reads, so it changes nothing; picklepool reads"
        in out.stderr
    )


def test_a_misspelt_state_key_variable_warns_before_an_unsigned_save(tmp_path):
    out = run_python(
        f"""
        from picklepool import SharedState
        SharedState(1).save({str(tmp_path / "s.pp")!r})
        """,
        env={"PICKLEPOOL_STATEKEY": "a 16-byte secret"},
    )
    assert out.returncode == 0, out.stderr
    assert (
        "PICKLEPOOL_STATEKEY is not one picklepool reads, so it changes nothing; "
        "did you mean PICKLEPOOL_STATE_KEY?"
    ) in out.stderr


def test_known_variables_do_not_warn():
    from picklepool import settings

    assert (
        settings.unknown_variables({"PICKLEPOOL_PICKLER": "pickle", "PICKLEPOOL_N_JOBS": "2", "OTHER": "1"})
        == []
    )
    out = run_python(
        """
        import warnings
        warnings.simplefilter("error")
        from picklepool import Parallel, delayed
        print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)))
        """,
        env={"PICKLEPOOL_PICKLER": "cloudpickle", "LOKY_PICKLER": "cloudpickle"},
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr


@pytest.mark.parametrize(
    "setting, value, joblibs_words",
    [
        ("prefer", "thread", "is not a valid backend hint"),
        ("require", "shared", "is not a valid backend constraint"),
        ("batch_size", 0, "batch_size must be 'auto' or a positive integer"),
        ("pre_dispatch", "3*n_job", "is not a valid or supported arithmetic expression"),
        ("return_as", "lst", 'Expected `return_as` parameter to be a string equal to "list"'),
    ],
)
def test_a_bad_setting_s_error_holds_joblib_s_words(setting, value, joblibs_words):
    # code matching joblib's message (pytest.raises(match=...)) goes on matching
    with pytest.raises(ValueError, match=re.escape(joblibs_words)):
        Parallel(n_jobs=2, **{setting: value})([delayed(abs)(1)])


@pytest.mark.parametrize(
    "value, why",
    [
        (-1.5, "it is worth -1.5, below 0"),
        ("n_jobs-3", "it is worth -1 with n_jobs=2, below 0"),
        (float("nan"), "it is not a number"),
        ("2*n_jbos", "it is not a valid or supported arithmetic expression"),
    ],
)
def test_a_refused_pre_dispatch_says_why_it_is_refused(value, why):
    # a value below 1 was said to be "not a valid or supported arithmetic expression"
    with pytest.raises((ValueError, TypeError), match=re.escape(f"({why}")):
        Parallel(n_jobs=2, pre_dispatch=value)


@pytest.mark.parametrize("value", [0, 0.5, "n_jobs/3", "0*n_jobs", "n_jobs-2"])
def test_a_pre_dispatch_worth_less_than_one_batch_dispatches_one(value):
    # refused (joblib dispatches none and returns [] without an error): "n_jobs-2" written
    # on a 4-core machine failed on a 2-core one
    assert Parallel(n_jobs=2, pre_dispatch=value)(delayed(abs)(-i) for i in range(5)) == [0, 1, 2, 3, 4]
