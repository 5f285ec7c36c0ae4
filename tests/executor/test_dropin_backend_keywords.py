"""joblib's keywords for its backend (``Parallel(**backend_kwargs)``,
``parallel_config(**backend_params)``, ``MultiprocessingBackend(...)``): taken as joblib takes
them, ``maxtasksperchild`` honoured by ``backend="multiprocessing"``."""

from __future__ import annotations

import os
import re
import warnings

import pytest

from picklepool import Parallel, delayed, parallel_backend, parallel_config


def pid(_):
    return os.getpid()


def _fresh_processes(**kwargs):
    pids = Parallel(n_jobs=2, batch_size=1, **kwargs)(delayed(pid)(i) for i in range(4))
    assert os.getpid() not in pids
    return len(set(pids))


def test_maxtasksperchild_gives_each_batch_a_fresh_process_on_multiprocessing():
    # joblib hands it to multiprocessing.Pool: the usual cure for a task leaking memory in
    # a C extension. It was a TypeError here.
    assert _fresh_processes(backend="multiprocessing", maxtasksperchild=1) == 4
    assert _fresh_processes(backend="multiprocessing", maxtasksperchild=None) <= 2  # (its default)


def test_maxtasksperchild_in_parallel_config_gives_each_batch_a_fresh_process():
    with parallel_config(backend="multiprocessing", maxtasksperchild=1):  # (a TypeError here)
        assert _fresh_processes() == 4


def test_maxtasksperchild_of_joblibs_multiprocessing_backend_gives_each_batch_a_fresh_process():
    jpb = pytest.importorskip("joblib._parallel_backends")
    # (a ValueError here: "which picklepool cannot carry over")
    assert _fresh_processes(backend=jpb.MultiprocessingBackend(maxtasksperchild=1)) == 4


def test_maxtasksperchild_on_loky_is_ignored_saying_what_to_use():
    # joblib's loky backend swallows it without a word; the workers are not replaced
    with pytest.warns(UserWarning) as caught:
        p = Parallel(n_jobs=2, maxtasksperchild=1)
    (warning,) = caught
    text = str(warning.message)
    assert "maxtasksperchild=1 (from argument) is ignored on backend='loky'" in text
    assert "backend='multiprocessing' with batch_size=1" in text and "max_worker_memory=" in text
    assert warning.filename == __file__  # the user's line
    assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


@pytest.mark.parametrize("value", [0, -1, 1.5, "1", True])
def test_a_bad_maxtasksperchild_is_refused_naming_it(value):
    with pytest.raises(
        ValueError, match=re.escape(f"maxtasksperchild={value!r} (from argument) is not valid")
    ):
        Parallel(n_jobs=2, backend="multiprocessing", maxtasksperchild=value)


def test_an_unknown_keyword_is_ignored_as_by_joblibs_loky_backend_naming_the_setting_meant():
    # joblib's loky backend swallows any keyword: a typo ran there, and was a TypeError here
    with pytest.warns(
        UserWarning,
        match=r"Parallel\(\): maxtaskperchild=1 .*ignores it, as joblib's loky backend does; "
        r"did you mean maxtasksperchild=\?",
    ):
        p = Parallel(n_jobs=2, maxtaskperchild=1)
    assert p(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
    with pytest.warns(UserWarning, match=r"parallel_config\(\): verbosity=3 .*did you mean verbose=\?"):
        config = parallel_config(backend="threading", verbosity=3)
    with config:
        assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


def test_joblibs_other_backend_keywords_are_ignored_saying_what_to_use():
    with pytest.warns(UserWarning, match="prewarm=True .*nothing to prewarm"):
        Parallel(n_jobs=2, prewarm=True)
    with pytest.warns(UserWarning, match=r"forward_reducers=\{\} .*copyreg\.pickle"):
        parallel_config(backend="loky", forward_reducers={})


def test_an_unknown_keyword_for_a_multiprocessing_pool_is_a_type_error_as_in_joblib():
    # joblib's multiprocessing pool raises TypeError for it
    with pytest.raises(
        TypeError, match=r"unexpected keyword argument 'maxtaskperchild'.*did you mean maxtasksperchild="
    ):
        Parallel(n_jobs=2, backend="multiprocessing", maxtaskperchild=1)
    with warnings.catch_warnings():  # with n_jobs=1 joblib runs the tasks in the caller: no pool
        warnings.simplefilter("ignore")
        assert Parallel(n_jobs=1, backend="multiprocessing", foo=1)(delayed(abs)(-1) for _ in range(2)) == [
            1,
            1,
        ]


def test_an_unknown_parallel_config_keyword_without_a_backend_is_refused_as_in_joblib():
    # joblib: ValueError ("only supported when backend is not None"); picklepool said TypeError
    for Error in (TypeError, ValueError):
        with pytest.raises(Error, match=r"unknown setting\(s\) \['n_job'\], and no backend="):
            parallel_config(n_job=2)


@pytest.mark.parametrize(
    ("make", "written"),
    [
        (lambda: parallel_config(maxtasksperchild=1), "parallel_config(maxtasksperchild=1)"),
        (lambda: parallel_config(backend=None, maxtasksperchild=1), "parallel_config(maxtasksperchild=1)"),
        (
            lambda: parallel_config(n_jobs=2, inner_max_num_threads=2),
            "parallel_config(inner_max_num_threads=2)",
        ),  # noqa: E501
        (lambda: parallel_backend(None, maxtasksperchild=1), "parallel_backend(maxtasksperchild=1)"),
    ],
    ids=["maxtasksperchild", "backend=None", "inner_max_num_threads", "parallel_backend"],
)
def test_a_backend_keyword_without_a_backend_is_refused_where_given_as_in_joblib(make, written):
    # joblib: ValueError("inner_max_num_threads and other constructor parameters
    # backend_params are only supported when backend is not None"); picklepool took it (and
    # warned at each call that loky ignores maxtasksperchild)
    keyword = written[written.index("(") + 1 : written.index("=")]
    backend = "multiprocessing" if keyword == "maxtasksperchild" else "loky"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused where written, not a warning at a later call
        with pytest.raises(ValueError) as raised:
            make()
    text = str(raised.value)
    assert text.startswith(f"{written} has no backend=: {keyword} is a keyword of the backend")
    assert f"backend={backend!r}, {written[written.index('(') + 1 :]}" in text
    assert f"Parallel(..., {keyword}=" in text


def test_a_backend_keyword_with_a_backend_or_none_is_taken():
    with parallel_config(backend="multiprocessing", maxtasksperchild=1, inner_max_num_threads=1):
        assert Parallel(n_jobs=2)._settings().maxtasksperchild == 1
    with parallel_config(maxtasksperchild=None, inner_max_num_threads=None):  # None: not given
        assert Parallel(n_jobs=2)._settings().maxtasksperchild is None


def test_picklepools_own_settings_are_taken_as_keywords_of_parallel():
    p = Parallel(n_jobs=2, backend="dask", scheduler_address="tcp://127.0.0.1:1")
    assert p._settings().scheduler_address == "tcp://127.0.0.1:1"
