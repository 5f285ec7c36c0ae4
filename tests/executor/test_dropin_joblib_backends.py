"""joblib's backend objects as ``backend=``, ``_effective_n_jobs()``, joblib's n_jobs messages (issue 13)."""

from __future__ import annotations

import enum
import multiprocessing
import subprocess
import sys

import pytest

import picklepool
from picklepool import Parallel, delayed, parallel_backend, parallel_config

jpb = pytest.importorskip("joblib._parallel_backends")

KINDS = [
    (jpb.LokyBackend, "loky"),
    (jpb.ThreadingBackend, "threading"),
    (jpb.SequentialBackend, "sequential"),
    (jpb.MultiprocessingBackend, "multiprocessing"),
]


def square(x):
    return x * x


@pytest.mark.parametrize(("cls", "name"), KINDS)
def test_an_instance_of_a_joblib_backend_is_that_backend(cls, name):
    p = Parallel(n_jobs=2, backend=cls())
    assert p._settings().backend == name
    assert p(delayed(square)(x) for x in range(5)) == [0, 1, 4, 9, 16]


@pytest.mark.parametrize(("cls", "name"), KINDS)
@pytest.mark.parametrize("context", [parallel_config, parallel_backend])
def test_parallel_config_takes_a_joblib_backend_instance(cls, name, context):
    with context(cls(), n_jobs=2):
        p = Parallel()
        assert p._settings().backend == name
        assert p(delayed(square)(x) for x in range(4)) == [0, 1, 4, 9]


def test_what_the_instance_carries_is_carried_over_unless_given():
    loky = jpb.LokyBackend(inner_max_num_threads=2, idle_worker_timeout=7)
    s = Parallel(n_jobs=2, backend=loky)._settings()
    assert (s.backend, s.inner_max_num_threads, s.idle_worker_timeout) == ("loky", 2, 7.0)
    s = Parallel(n_jobs=2, backend=loky, inner_max_num_threads=1)._settings()
    assert s.inner_max_num_threads == 1  # the argument wins
    with parallel_config(backend=loky):
        s = Parallel(n_jobs=2)._settings()
        assert (s.inner_max_num_threads, s.idle_worker_timeout) == (2, 7.0)
    spawn = multiprocessing.get_context("spawn")
    s = Parallel(n_jobs=2, backend=jpb.MultiprocessingBackend(context=spawn))._settings()
    assert (s.backend, s.context) == ("multiprocessing", spawn)


class MyLoky(jpb.LokyBackend):
    def effective_n_jobs(self, n_jobs):
        return 1


class MyBackend(jpb.ParallelBackendBase):
    def configure(self, n_jobs=1, parallel=None, **kwargs):
        return 1

    def effective_n_jobs(self, n_jobs):
        return 1

    def apply_async(self, func, callback=None):
        raise AssertionError("never run")


@pytest.mark.parametrize("bad", [MyLoky(), MyBackend(), jpb.LokyBackend])
@pytest.mark.parametrize("where", ["Parallel", "parallel_config", "parallel_backend"])
def test_any_other_joblib_backend_is_refused_at_construction(bad, where):
    make = {"Parallel": Parallel, "parallel_config": parallel_config, "parallel_backend": parallel_backend}
    with pytest.raises(ValueError) as info:
        make[where](backend=bad)
    text = str(info.value)
    assert repr(bad) in text and "cannot run joblib custom backends" in text
    assert "Use a backend name" in text and "register_joblib_backend" in text


def test_keywords_a_joblib_backend_was_made_with_that_picklepool_does_not_use_are_ignored_saying_so():
    # joblib's LokyBackend swallows them: code making one ran there, and was a ValueError here
    with pytest.warns(
        UserWarning, match=r"LokyBackend\(\.\.\.\) \(from argument\): not_a_setting=1 .*ignores"
    ):
        p = Parallel(n_jobs=2, backend=jpb.LokyBackend(not_a_setting=1))
    assert p(delayed(square)(i) for i in range(3)) == [0, 1, 4]


def test_joblib_is_not_imported_to_check_a_backend():
    code = (
        "import sys, picklepool\n"
        "try:\n    picklepool.Parallel(backend=object())\nexcept ValueError as e:\n"
        "    assert 'Invalid backend' in str(e), e\n"
        "assert 'joblib' not in sys.modules, sorted(m for m in sys.modules if 'joblib' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_backend_name_says_invalid_backend_as_joblib():
    with pytest.raises(ValueError, match="^Invalid backend: backend='unit-testing' "):
        Parallel(backend="unit-testing")


@pytest.mark.parametrize(("n_jobs", "expected"), [(2, 2), ("2", 2), (2.3, 2), (-1.5, None), (1, 1)])
def test_effective_n_jobs_is_the_workers_a_call_would_use(n_jobs, expected):
    from picklepool import cpu_count

    assert Parallel(n_jobs=n_jobs)._effective_n_jobs() == (expected or cpu_count())
    with parallel_config(n_jobs=3):
        assert Parallel()._effective_n_jobs() == 3
    with Parallel(n_jobs=2, backend="threading") as p:
        assert p._effective_n_jobs() == 2


@pytest.mark.parametrize("n_jobs", [0, 0.5, -0.9])
def test_n_jobs_zero_has_joblibs_message_and_ours(n_jobs):
    with pytest.raises(ValueError) as info:
        Parallel(n_jobs=n_jobs)
    text = str(info.value)
    assert "n_jobs == 0 in Parallel has no meaning" in text
    assert f"n_jobs={n_jobs!r} (from argument)" in text and "-1 for all usable cores" in text


@pytest.mark.parametrize("n_jobs", ["2.3", "invalid_str", float("nan")])
def test_n_jobs_not_an_int_has_joblibs_message_and_ours(n_jobs):
    with pytest.raises(ValueError) as info:
        Parallel(n_jobs=n_jobs)
    text = str(info.value)
    assert "n_jobs could not be converted to int" in text
    assert f"n_jobs={n_jobs!r} (from argument)" in text


def test_numpy_and_enum_numbers_are_taken_as_joblib_and_the_stdlib_take_them():
    # joblib's int(n_jobs) takes a numpy integer (a setting read from an array or a
    # config library): it was "n_jobs could not be converted to int" here
    np = pytest.importorskip("numpy")

    class Two(enum.IntEnum):
        TWO = 2

    for n_jobs in (np.int64(2), np.int32(2), np.float32(2.0), Two.TWO):
        assert Parallel(n_jobs=n_jobs).n_jobs == 2
        assert Parallel(n_jobs=n_jobs)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    assert Parallel(n_jobs=np.int16(-1)).n_jobs == -1
    out = Parallel(
        n_jobs=2,
        batch_size=np.int64(2),
        pre_dispatch=np.int64(3),
        timeout=np.float32(30),
        max_nbytes=np.int64(1000),
        verbose=np.int64(0),
        inner_max_num_threads=np.uint8(1),
    )(delayed(abs)(-i) for i in range(5))
    assert out == [0, 1, 2, 3, 4]
    with parallel_config(n_jobs=np.int64(2)):
        assert Parallel().n_jobs == 2
    with picklepool.Executor(max_workers=np.int64(2)) as ex:
        assert ex.submit(abs, -3).result(timeout=60) == 3


@pytest.mark.parametrize("n_jobs", [[2], {}, object()], ids=["list", "dict", "object"])
def test_n_jobs_of_another_type_is_a_type_error_as_in_joblib(n_jobs):
    with pytest.raises(TypeError, match=r"n_jobs=.* \(from argument\) is not valid: n_jobs must be a number"):
        Parallel(n_jobs=n_jobs)


def test_n_jobs_zero_from_parallel_config_names_its_source():
    with pytest.raises(ValueError, match=r"config\).*has no meaning"):
        parallel_config(n_jobs=0)  # where it is written (joblib: at a call in the block)
