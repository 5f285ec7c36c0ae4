"""Nesting as joblib does it: cores shared, depth bounded, config reaching pool threads."""

from __future__ import annotations

import os
import threading
import warnings

import psutil
import pytest

from picklepool import Parallel, cpu_count, delayed, parallel_config
from picklepool.settings import MAX_DEPTH

_HELPERS = ("resource_tracker", "semaphore_tracker")


def _busy_processes(root: int) -> int:
    """Worker processes below *root* now (loky's and picklepool's helpers left out)."""
    n = 0
    for proc in psutil.Process(root).children(recursive=True):
        try:
            if not any(h in " ".join(proc.cmdline()) for h in _HELPERS):
                n += 1
        except psutil.Error:
            continue
    return n


def _leaf(root: int) -> int:
    return _busy_processes(root)


def _middle(root: int) -> list[int]:
    return Parallel(n_jobs=-1)(delayed(_leaf)(root) for _ in range(4))


def test_nested_minus_one_never_runs_more_processes_than_cores(monkeypatch):
    monkeypatch.setenv("LOKY_MAX_CPU_COUNT", "2")  # at most 2 cores, whatever the machine
    cores = cpu_count()
    counts = Parallel(n_jobs=-1)(delayed(_middle)(os.getpid()) for _ in range(cores))
    # each of the `cores` workers gets cores // cores = 1 core: its inner -1 call runs
    # in it (without the share: cores + cores**2 processes)
    assert 1 <= max(max(c) for c in counts) <= cores


def _levels(level: int) -> list:
    here = threading.get_ident()
    s = Parallel()._settings()
    if level == 3:
        return [(s.backend, s.n_workers)]
    inner = Parallel()(delayed(_ran_in)(level + 1) for _ in range(1))[0]
    return [(s.backend, s.n_workers, inner[0] == here)] + inner[1]


def _ran_in(level: int):
    return threading.get_ident(), _levels(level)


def test_depth_is_bounded_and_config_reaches_pool_threads():
    assert MAX_DEPTH == 1
    with parallel_config(backend="threading", n_jobs=2):
        out = _levels(0)
    # depth 0 and 1: threading pools of 2 (the config reached the threads); deeper: sequential
    assert out == [("threading", 2, False), ("threading", 2, False), ("threading", 1, True), ("threading", 1)]


def _recurse():
    return Parallel()(delayed(_recurse)() for _ in range(2))


def test_unbounded_recursion_ends_in_recursion_error_not_a_thread_bomb():
    threads = threading.active_count()
    with parallel_config(backend="threading", n_jobs=2), pytest.raises(RecursionError):
        _recurse()
    assert threading.active_count() <= threads + 2 + 4  # at most the two bounded levels' pools


def _inner_loky():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = Parallel(n_jobs=2, backend="loky")(delayed(os.getpid)() for _ in range(2))
    return out, [str(w.message) for w in seen]


def test_process_backend_below_threads_runs_in_the_thread_with_a_warning():
    results = Parallel(n_jobs=2, backend="threading")(delayed(_inner_loky)() for _ in range(2))
    for pids, messages in results:
        assert pids == [os.getpid()] * 2
        assert (
            len(messages) == 1 and "Loky-backed parallel loops cannot be nested below threads" in messages[0]
        )
