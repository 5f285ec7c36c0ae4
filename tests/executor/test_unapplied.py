"""Settings for loky's warm workers given to a backend that has none to apply them to
(``executor.unapplied``): a warning naming the setting and what does that there, where they
were ignored without a word (joblib's ``parallel_config`` refuses ``inner_max_num_threads``
for those backends)."""

from __future__ import annotations

import warnings

import pytest

from picklepool import Parallel, delayed, parallel_config

SETTINGS = {"inner_max_num_threads": 3, "max_worker_memory": "50M", "idle_worker_timeout": 5}
INSTEAD = {
    ("inner_max_num_threads", "dask"): "OMP_NUM_THREADS",
    ("inner_max_num_threads", "threading"): "threadpool_limits",
    ("inner_max_num_threads", "multiprocessing"): "OMP_NUM_THREADS",
    ("max_worker_memory", "dask"): "memory_limit",
    ("max_worker_memory", "threading"): "backend='loky'",
    ("max_worker_memory", "multiprocessing"): "maxtasksperchild",
    ("idle_worker_timeout", "dask"): "cluster.adapt",
    ("idle_worker_timeout", "threading"): "leave it out",
    ("idle_worker_timeout", "multiprocessing"): "lives for one call",
}


@pytest.mark.parametrize("backend", ["dask", "threading", "multiprocessing"])
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_loky_worker_setting_given_to_another_backend_warns_saying_what_to_use(backend, name):
    value = SETTINGS[name]
    with pytest.warns(UserWarning) as caught:
        Parallel(n_jobs=2, backend=backend, **{name: value})
    texts = [str(w.message) for w in caught]
    assert len(texts) == 1 and texts[0].startswith(f"{name}="), texts
    assert f" (from argument) is ignored on backend={backend!r}: only the loky backend's" in texts[0]
    assert INSTEAD[name, backend] in texts[0], texts
    assert caught[0].filename == __file__  # (at the user's line)
    with pytest.warns(UserWarning, match=f"{name}=.* \\(from parallel_config\\) is ignored"):
        with parallel_config(backend=backend, **{name: value}):
            Parallel(n_jobs=2)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_where_they_apply_or_from_the_environment_nothing_is_said(name, monkeypatch):
    value = SETTINGS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Parallel(n_jobs=2, **{name: value})(delayed(abs)(-i) for i in range(2)) == [0, 1]
        Parallel(n_jobs=1, backend="threading", **{name: value})  # (one worker: runs here, as n_jobs=1)
        Parallel(n_jobs=2, backend="sequential", **{name: value})
        monkeypatch.setenv(f"PICKLEPOOL_{name.upper()}", str(value))
        Parallel(n_jobs=2, backend="threading")  # a default for the calls that can use it
