"""Worker memory: recycling through loky when a worker's RSS passes max_worker_memory."""

from __future__ import annotations

import os
import warnings

import loky.process_executor
import pytest

from picklepool import Parallel, delayed, parallel_config
from picklepool.executor import memory as parent_memory
from picklepool.wire import WorkerLimits
from picklepool.workers import memory

_leaked = []  # grows in each worker process, never freed: the leak


def leak_and_log(i, megabytes, log_path):
    _leaked.append(bytearray(b"\1") * (megabytes << 20))  # written, so resident
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{i}\n".encode())
    finally:
        os.close(fd)
    return i * i, os.getpid()


def worker_rss(_):
    return memory.rss()


def test_leaking_call_recycles_workers_and_loses_no_task(tmp_path, capsys):
    base = max(Parallel(n_jobs=2)(delayed(worker_rss)(i) for i in range(4)))
    limit = base + (24 << 20)
    log = tmp_path / "ran.txt"
    before = parent_memory.recycled_total()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = Parallel(n_jobs=2, batch_size=4, max_worker_memory=limit, verbose=1)(
            delayed(leak_and_log)(i, 1, str(log)) for i in range(200)
        )
    assert [square for square, _ in out] == [i * i for i in range(200)]
    assert sorted(int(line) for line in log.read_text().split()) == list(range(200))  # once each
    recycled = parent_memory.recycled_total() - before
    pids = {pid for _, pid in out}
    assert recycled >= 2, "200 MB leaked against a 24 MB margin: workers must have been recycled"
    assert len(pids) - 2 <= recycled <= len(pids)  # at most 2 workers are left at the end
    assert all(r["rss"] > r["limit"] == limit for r in list(parent_memory.recycles.recent)[-recycled:])
    assert f"{recycled} workers recycled during this call" in capsys.readouterr().err
    assert not [w for w in caught if "restarted" in str(w.message)], "loky's generic warning leaked"


def test_a_fresh_worker_over_the_limit_takes_no_second_batch(tmp_path):
    # loky checks a worker's memory from its second job on: a worker over the limit after
    # its first batch ran one more batch before it was recycled
    before = parent_memory.recycled_total()
    log = str(tmp_path / "log")
    out = [
        Parallel(n_jobs=2, max_worker_memory="1M")(delayed(leak_and_log)(i, 1, log) for _ in [i])
        for i in range(4)
    ]
    pids = [pid for [(_, pid)] in out]
    assert len(set(pids)) == 4, f"a worker over max_worker_memory ran another batch: {pids}"
    assert parent_memory.recycled_total() - before == 4


def test_no_recycling_under_the_limit(tmp_path):
    before = parent_memory.recycled_total()
    out = Parallel(n_jobs=2, batch_size=4, max_worker_memory="8G")(
        delayed(leak_and_log)(i, 1, str(tmp_path / "log")) for i in range(40)
    )
    assert [square for square, _ in out] == [i * i for i in range(40)]
    assert len({pid for _, pid in out}) <= 2
    assert parent_memory.recycled_total() == before


def test_after_batch_outside_a_loky_worker_changes_nothing():
    saved = (loky.process_executor._MAX_MEMORY_LEAK_SIZE, loky.process_executor._MEMORY_LEAK_CHECK_DELAY)
    assert memory.after_batch(WorkerLimits(None, 1), None) is False
    assert memory._retiring is False
    now = (loky.process_executor._MAX_MEMORY_LEAK_SIZE, loky.process_executor._MEMORY_LEAK_CHECK_DELAY)
    assert now == saved
    assert memory.after_batch(WorkerLimits(None, None), None) is False


def test_in_process_backends_ignore_the_limit_saying_so():
    with pytest.warns(UserWarning, match="max_worker_memory=1 .* is ignored on backend='threading'"):
        p = Parallel(n_jobs=2, backend="threading", max_worker_memory=1)
    out = p(delayed(pow)(i, 2) for i in range(10))
    assert out == [i * i for i in range(10)]


class _FakeSession:
    def __init__(self, path):
        self.path = str(path)
        self.forgotten = []

    def forget_worker(self, pid):
        self.forgotten.append(pid)


def test_recycle_log_reads_and_removes_records(tmp_path):
    dead_pid = 99_999_999  # above any pid_max: never a live process
    (tmp_path / f"recycled-{dead_pid}").write_text("300 200\n")
    (tmp_path / f"recycled-{dead_pid}.tmp").write_text("")  # a record still being written
    (tmp_path / "w123").write_text("")
    log = parent_memory.RecycleLog()
    session = _FakeSession(tmp_path)
    assert log.collect(session) == 1
    assert list(log.recent) == [{"pid": dead_pid, "rss": 300, "limit": 200}]
    assert session.forgotten == [dead_pid]
    assert sorted(os.listdir(tmp_path)) == [f"recycled-{dead_pid}.tmp", "w123"]
    assert log.collect(session) == 1  # records are counted once


def test_info_reports_the_setting_and_counts(monkeypatch):
    monkeypatch.setenv("PICKLEPOOL_MAX_WORKER_MEMORY", "1G")
    report = parent_memory.info()
    assert report["max_worker_memory"] == 1 << 30
    assert report["recycling"] is True
    assert report["recycled_workers"] == parent_memory.recycled_total()
    with parallel_config(max_worker_memory="512M"):
        assert parent_memory.info()["max_worker_memory"] == 512 << 20
    monkeypatch.delenv("PICKLEPOOL_MAX_WORKER_MEMORY")
    assert parent_memory.info()["max_worker_memory"] is None


@pytest.mark.parametrize("bad", ["lots", -5, "1X"])
def test_bad_max_worker_memory(bad):
    with pytest.raises(ValueError, match="max_worker_memory"):
        Parallel(max_worker_memory=bad)
