"""The dask backend beyond the conformance suite: finding the cluster, n_jobs,
data sent once per call, lost workers and timeouts in worker threads.

Runs on a real LocalCluster with worker processes (the ``dask_client`` fixture
in tests/conftest.py); skipped when dask.distributed is not installed.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import picklepool
from picklepool import Parallel, TaskTimeoutError, WorkerCrashedError, delayed, parallel_config
from picklepool.executor import functions as dispatch
from tests.conftest import run_python

pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install 'picklepool[dask]')"
)


def square(x):
    return x * x


# -- finding the cluster -------------------------------------------------------------


def test_without_a_cluster_the_error_says_how_to_start_one():
    res = run_python(
        """
        from picklepool import Parallel, delayed
        try:
            Parallel(backend="dask")([delayed(abs)(-1)])
        except RuntimeError as exc:
            print("ERROR:", exc)
        """
    )
    assert "ERROR: backend='dask' found no dask cluster" in res.stdout, res.stderr
    assert "Client(LocalCluster())" in res.stdout
    assert "scheduler_address=" in res.stdout


def test_without_a_cluster_it_is_joblibs_value_error_also_for_effective_n_jobs():
    # joblib's dask backend raises ValueError ("first create a Dask Client"): code written
    # for it catches that. picklepool raised a RuntimeError, and its effective_n_jobs()
    # and Parallel()._effective_n_jobs() counted local cores instead of failing.
    res = run_python(
        """
        from picklepool import Parallel, delayed, effective_n_jobs, parallel_config
        for what in ("call", "with block", "effective_n_jobs", "_effective_n_jobs"):
            try:
                with parallel_config(backend="dask"):
                    if what == "call":
                        Parallel()([delayed(abs)(-1)])
                    elif what == "with block":
                        with Parallel() as p:
                            p([delayed(abs)(-1)])
                    elif what == "effective_n_jobs":
                        print(effective_n_jobs())
                    else:
                        print(Parallel()._effective_n_jobs())
            except ValueError as exc:
                print(what, "ValueError", isinstance(exc, RuntimeError), "found no dask cluster" in str(exc))
        """
    )
    assert res.stdout.splitlines() == [
        f"{what} ValueError True True"
        for what in ("call", "with block", "effective_n_jobs", "_effective_n_jobs")
    ], res.stdout + res.stderr


def test_a_scheduler_address_of_no_known_scheme_fails_at_once_naming_the_setting():
    # distributed.Client("nonsense://x") raised its ValueError from a half-made client whose
    # __del__ then held the program's exit for 60 s ("Exception ignored in: Client.__del__
    # ... TimeoutError: timed out after 60 s."), and the error did not name the setting
    res = run_python(
        """
        import time
        from picklepool import Parallel, delayed, parallel_config
        try:
            with parallel_config(backend="dask", scheduler_address="nonsense://x"):
                Parallel(n_jobs=2)([delayed(abs)(-1)])
        except ValueError as exc:
            print("ERROR:", exc)
        """,
        timeout=40,
    )
    assert "ERROR: scheduler_address='nonsense://x' (from parallel_config)" in res.stdout, (
        res.stdout + res.stderr
    )
    assert "unknown address scheme 'nonsense'" in res.stdout and "tcp://HOST:8786" in res.stdout, res.stdout
    assert "Client.__del__" not in res.stderr and res.returncode == 0, res.stderr


def test_without_distributed_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    with pytest.raises(ImportError, match=r"pip install 'picklepool\[dask\]'"):
        Parallel(backend="dask")([delayed(abs)(-1)])


class FakeClient:
    """Answers ``get_versions`` as dask does, with the picklepool version of each worker."""

    def __init__(self, versions):
        self.versions = versions

    def get_versions(self, packages):
        return {"workers": {w: {"packages": {"picklepool": v}} for w, v in self.versions.items()}}


def test_workers_without_this_picklepool_are_refused_with_the_fix():
    from picklepool.executor.dask import check_workers

    ok = {"tcp://a:1": picklepool.__version__}
    check_workers(FakeClient(ok), ok)  # no error
    client = FakeClient({**ok, "tcp://b:1": None})
    with pytest.raises(RuntimeError, match=r"cannot be imported on the dask worker\(s\) \['tcp://b:1'\]"):
        check_workers(client, client.versions)
    client = FakeClient({**ok, "tcp://c:1": "0.0.1"})
    with pytest.raises(RuntimeError, match="tcp://c:1 has 0.0.1. Install the same version everywhere"):
        check_workers(client, client.versions)


def test_uses_the_current_client(dask_client):
    with Parallel(backend="dask") as p:
        assert p._backend.client is dask_client
        assert p(delayed(square)(i) for i in range(5)) == [0, 1, 4, 9, 16]


def test_scheduler_address_connects_and_shutdown_closes_only_that_client(dask_client):
    port = dask_client.scheduler.address.rsplit(":", 1)[1]
    address = f"tcp://localhost:{port}"  # same scheduler, not the current client's address
    with parallel_config(backend="dask", scheduler_address=address):
        with Parallel() as p:
            own = p._backend.client
            assert own is not dask_client
            assert p(delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]
    picklepool.shutdown()
    assert own.status == "closed"
    assert dask_client.status == "running"
    assert Parallel(backend="dask")(delayed(square)(i) for i in range(3)) == [0, 1, 4]


def test_n_jobs_defaults_to_the_cluster_threads_not_local_cores(dask_client, monkeypatch):
    from picklepool import settings

    monkeypatch.setattr(settings, "cpu_count", lambda: 7)  # local cores must not matter
    threads = sum(dask_client.nthreads().values())
    assert threads == 2
    for n_jobs, expected in [(None, threads), (-1, threads), (-2, threads - 1), (3, 3)]:
        with Parallel(backend="dask", n_jobs=n_jobs) as p:
            assert p._backend.n_workers == expected, n_jobs


def test_effective_n_jobs_counts_the_cluster_threads_as_a_call_does(dask_client, monkeypatch):
    # As joblib's dask backend: effective_n_jobs() there is the cluster's threads. It
    # counted this machine's cores (code sizing its chunks by it made too few or too many).
    from picklepool import settings

    monkeypatch.setattr(settings, "cpu_count", lambda: 7)  # local cores must not matter
    threads = sum(dask_client.nthreads().values())
    with parallel_config(backend="dask"):
        for n_jobs, expected in [(None, threads), (-1, threads), (-2, threads - 1), (3, 3)]:
            assert picklepool.effective_n_jobs(n_jobs) == expected, n_jobs
            assert Parallel(n_jobs=n_jobs)._effective_n_jobs() == expected, n_jobs


# -- data sent once per call -------------------------------------------------------

REBUILDS = 0  # in each worker: how often a Rebuilt marker was unpickled there


def _rebuilt():
    global REBUILDS
    REBUILDS += 1
    return Rebuilt()


def rebuild_count():
    return REBUILDS


class Rebuilt:
    """Pickles as a call to ``_rebuilt``, so workers count their unpickles."""

    def __reduce__(self):
        return (_rebuilt, ())


def make_big_function():
    payload = os.urandom(2 * dispatch.INLINE_LIMIT)  # unique, so no worker has it cached
    marker = Rebuilt()

    def big(i):
        assert marker is not None
        return len(payload) + i

    return big, len(payload)


def _bytes_in(value):
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, (tuple, list)):
        return sum(map(_bytes_in, value))
    return 0


def count_traffic(client, monkeypatch):
    """Lists that fill with the bytes of each scatter, and of each batch submitted."""
    scattered, submitted = [], []
    real_scatter, real_submit = client.scatter, client.submit

    def scatter(data, **kwargs):
        scattered.append(sum(map(len, data)))
        return real_scatter(data, **kwargs)

    def submit(fn, *args, **kwargs):
        submitted.append(_bytes_in(args))
        return real_submit(fn, *args, **kwargs)

    monkeypatch.setattr(client, "scatter", scatter)
    monkeypatch.setattr(client, "submit", submit)
    return scattered, submitted


def test_a_large_function_goes_to_the_cluster_once_per_call(dask_client, monkeypatch):
    scattered, submitted = count_traffic(dask_client, monkeypatch)
    big, size = make_big_function()
    before = dask_client.run(rebuild_count)
    run = Parallel(backend="dask", n_jobs=2, batch_size=1, pickler="cloudpickle")
    assert run(delayed(big)(i) for i in range(12)) == [size + i for i in range(12)]
    assert len(scattered) == 1 and scattered[0] > size  # the function, once
    assert len(submitted) == 12 and max(submitted) < dispatch.INLINE_LIMIT  # batches without it
    middle = dask_client.run(rebuild_count)
    assert run(delayed(big)(i) for i in range(4)) == [size + i for i in range(4)]
    assert len(scattered) == 2  # once per call
    after = dask_client.run(rebuild_count)
    for start, end, first in ((before, middle, True), (middle, after, False)):
        rebuilt = {w: end[w] - start.get(w, 0) for w in end}
        assert all(n <= 1 for n in rebuilt.values()), rebuilt  # once per worker per call at most
        if first:  # a new function: rebuilt somewhere; the next call may find it kept (by content)
            assert sum(rebuilt.values()) >= 1


def blob_sizes(batch):
    return {key: len(data) for key, data in batch.attachment.items()}


def _carrying(attachment):
    from picklepool.wire import Batch

    return Batch(0, None, b"", (), b"", 0, None, None, None, attachment)


def test_data_lost_with_its_worker_is_scattered_again(dask_client):
    from picklepool.executor.dask import DaskBackend

    backend = DaskBackend(-1)
    store = backend.blob_store()
    store.put("blob", b"data" * 1000)
    stale = store.attachment()
    [holder] = dask_client.who_has([stale["blob"]])[stale["blob"].key]
    dask_client.restart_workers([holder])  # the only copy is gone; dask cannot recompute it
    # A batch sent with the lost data is dropped by dask, then sent again with a new copy.
    assert backend.submit(blob_sizes, _carrying(stale)).result(timeout=60) == {"blob": 4000}
    assert store.futures["blob"] is not stale["blob"]
    assert backend.submit(blob_sizes, _carrying(store.attachment())).result(timeout=60) == {"blob": 4000}
    store.drop("blob")


# -- lost workers ------------------------------------------------------------------


def crash_once(i, marker):
    if i == 1 and not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(7)
    return i


def test_a_batch_whose_worker_died_is_rerun_by_dask(dask_client, tmp_path):
    marker = str(tmp_path / "crashed")
    out = Parallel(backend="dask", n_jobs=2, batch_size=1)(delayed(crash_once)(i, marker) for i in range(4))
    assert out == [0, 1, 2, 3]
    assert os.path.exists(marker)  # the worker did die; dask ran the batch again elsewhere
    dask_client.wait_for_workers(2, timeout=60)


def kill_worker(i):
    if i == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return i


def test_a_batch_that_kills_every_worker_raises_worker_crashed_error(dask_client):
    # the killing batch alone: a batch finished on a worker it killed may be read first,
    # and that one is "dropped before it finished" (its result died with the worker)
    with pytest.raises(WorkerCrashedError) as info:
        Parallel(backend="dask", n_jobs=2, batch_size=1)(delayed(kill_worker)(1) for _ in range(1))
    msg = str(info.value)
    assert "KilledWorker" in msg
    assert "allowed-failures=1" in msg  # the fixture's setting: one rerun, then give up
    assert re.search(r"while task \d: kill_worker\(\d\) was queued or running", msg), msg  # one a batch
    dask_client.wait_for_workers(2, timeout=60)
    assert Parallel(backend="dask")(delayed(square)(i) for i in range(3)) == [0, 1, 4]


def wait_in_task(i, started, release):
    if i == 0:
        with open(started, "w"):  # the test's open() for reading returns: the task runs
            pass
        with open(release) as f:  # blocks until the test lets it go
            f.read()
    return i


def _cut_under_a_call(
    scheduler_address: str, tmp_path: Any, cut: Callable[[Any], None]
) -> BaseException | None:
    """What a call on a client of its own raises when *cut(client)* runs while its task 0
    runs on the cluster (held there by a FIFO until the cut is done)."""
    distributed = pytest.importorskip("distributed")
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    os.mkfifo(started)
    os.mkfifo(release)
    client = distributed.Client(scheduler_address, set_as_default=False)
    outcome = {}

    def call():
        with client.as_current():
            try:
                outcome["value"] = Parallel(backend="dask", n_jobs=2, batch_size=1)(
                    delayed(wait_in_task)(i, started, release) for i in range(4)
                )
            except BaseException as exc:  # noqa: BLE001 - the test looks at it
                outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    try:
        with open(started) as f:  # task 0 runs on the cluster
            f.read()
        cut(client)
        caller.join(60)
        assert not caller.is_alive()
    finally:
        with open(release, "w"):  # task 0 ends (its worker thread is free again)
            pass
        client.close()
    assert "value" not in outcome, outcome
    return outcome.get("error")


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs")
def test_a_client_closed_during_a_call_is_named_not_taken_for_a_crash(dask_client, tmp_path):
    error = _cut_under_a_call(dask_client.scheduler.address, tmp_path, lambda client: client.close())
    assert isinstance(error, WorkerCrashedError), error
    msg = str(error)
    assert "the dask Client this call ran on was closed" in msg, msg
    assert re.search(r"task \d: wait_in_task\(\d", msg), msg
    assert "segfault" not in msg and "worker process died" not in msg, msg
    assert Parallel(backend="dask")(delayed(square)(i) for i in range(3)) == [0, 1, 4]


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs")
def test_a_client_that_lost_its_scheduler_during_a_call_is_named_not_taken_for_a_crash(dask_client, tmp_path):
    # dask cancels a client's futures ("scheduler-connection-lost") when its connection to
    # the scheduler drops: the error said "a worker process died ... usually a segfault".
    def drop(client: Any) -> None:
        client.loop.add_callback(client.scheduler_comm.comm.abort)  # the connection drops

    error = _cut_under_a_call(dask_client.scheduler.address, tmp_path, drop)
    assert isinstance(error, WorkerCrashedError), error
    msg = str(error)
    assert "lost its connection to the scheduler at " + dask_client.scheduler.address in msg, msg
    assert re.search(r"task \d: wait_in_task\(\d", msg), msg
    assert "no worker died" in msg and "run the call again" in msg, msg
    assert "segfault" not in msg and "worker process died" not in msg, msg


def test_a_call_on_a_client_whose_scheduler_is_gone_says_so_and_what_to_do():
    # The client reconnects for a while; a call made meanwhile failed with dask's bare
    # "CommClosedError: ConnectionPool closing" (or "Timed out trying to connect ...").
    distributed = pytest.importorskip("distributed")
    dask = pytest.importorskip("dask")
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
            with distributed.Client(cluster):
                address = cluster.scheduler.address
                cluster.sync(cluster.scheduler.close)
                with pytest.raises(OSError) as info:
                    Parallel(backend="dask", n_jobs=2)(delayed(square)(i) for i in range(2))
    msg = str(info.value)
    assert f"could not reach the dask scheduler at {address}" in msg, msg
    assert "check that it is running and reachable" in msg and "make a new Client" in msg, msg


def test_a_call_on_a_cluster_with_no_workers_says_it_waits_for_one_and_runs_when_one_joins():
    # dask holds the batches until a worker joins: the call waited, silently, for ever.
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            with pytest.warns(UserWarning, match="has no workers, so this call waits") as caught:
                results = Parallel(backend="dask", n_jobs=2, return_as="generator")(
                    delayed(square)(i) for i in range(3)
                )
            cluster.scale(1)
            assert list(results) == [0, 1, 4]
    [warning] = [w for w in caught if "has no workers" in str(w.message)]
    assert warning.filename == __file__, warning.filename
    msg = str(warning.message)
    assert f"dask worker {cluster.scheduler_address}" in msg and "LocalCluster(n_workers=" in msg, msg


def test_a_with_block_whose_client_was_closed_runs_its_next_call_on_the_current_one(dask_client):
    distributed = pytest.importorskip("distributed")
    client = distributed.Client(dask_client.scheduler.address, set_as_default=False)
    with contextlib.ExitStack() as block:
        with client.as_current():
            p = block.enter_context(Parallel(backend="dask"))
            assert p._backend.client is client
            assert p(delayed(square)(i) for i in range(3)) == [0, 1, 4]
        client.close()  # was: distributed's ClosedClientError, naming no task, at the next call
        assert p(delayed(square)(i) for i in range(3)) == [0, 1, 4]
        assert p._backend.client is dask_client


# -- timeouts in worker threads ----------------------------------------------------


def late_in_python(i, fifo):
    if i == 2:
        while True:  # pure Python: interrupted at once
            pass
    return i


def late_in_c(i, fifo):
    if i == 2:
        with open(fifo) as f:  # blocks in C until the test opens the FIFO for writing
            f.read()
    return i


def picklepool_threads_after_join(seconds):
    """In a worker: wait (bounded) for timed-out task threads to end; those still alive."""
    for t in threading.enumerate():
        if t.name.startswith("picklepool-task"):
            t.join(seconds)
    return [t.name for t in threading.enumerate() if t.name.startswith("picklepool-task")]


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs")
@pytest.mark.parametrize("task", [late_in_python, late_in_c])
def test_timeout_interrupts_a_task_in_a_worker_thread(dask_client, tmp_path, task):
    fifo = str(tmp_path / "release")
    os.mkfifo(fifo)
    with pytest.raises(
        TaskTimeoutError, match=r"task 2: late_in_(python|c)\(2, .*\) ran longer than timeout=0.3s"
    ):
        Parallel(backend="dask", n_jobs=2, batch_size=1, timeout=0.3)(
            delayed(task)(i, fifo) for i in range(4)
        )
    if task is late_in_c:  # the parent got its error; now let the C call return
        with open(fifo, "w"):  # returns once the task's open() has returned too
            pass
    assert dask_client.run(picklepool_threads_after_join, 30) == {w: [] for w in dask_client.nthreads()}
    assert Parallel(backend="dask", timeout=5)(delayed(square)(i) for i in range(3)) == [0, 1, 4]


def nested_dask_sum(i):
    return sum(Parallel(backend="dask", n_jobs=2)(delayed(abs)(-j) for j in range(3))) + i


def test_a_dask_call_inside_dask_tasks_on_every_thread_finishes(dask_client):
    """Each task's thread leaves the worker's pool while its call runs (joblib's secede)."""
    n_threads = sum(dask_client.nthreads().values())
    out = Parallel(backend="dask", batch_size=1)(delayed(nested_dask_sum)(i) for i in range(2 * n_threads))
    assert out == [3 + i for i in range(2 * n_threads)]


def _task_key(j):
    from distributed.worker import thread_state

    return j, thread_state.key


def nested_call(i, backend=None):
    import warnings

    from distributed.worker import thread_state

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = Parallel(n_jobs=2, backend=backend)(delayed(_task_key)(j) for j in range(3))
    return out, thread_state.key, [str(w.message) for w in caught]


def test_a_nested_call_in_a_dask_task_runs_on_the_cluster_as_joblibs_does(dask_client):
    [(out, key, messages)] = Parallel(backend="dask")(delayed(nested_call)(0) for _ in range(1))
    assert [j for j, _ in out] == [0, 1, 2]
    assert key not in {k for _, k in out}  # dask tasks of their own, not run inside this one
    assert messages == []


def _inner_fails(i):
    if i == 1:
        raise ValueError(f"bad {i}")
    return i


def _call_failing_inside(j):
    return Parallel(n_jobs=2)(delayed(_inner_fails)(i) for i in range(3))


def test_the_note_of_a_call_made_inside_a_dask_task_says_so(dask_client):
    # It said "of this Parallel call", as if it were the top caller's own
    with pytest.raises(ValueError, match="bad 1") as info:
        Parallel(backend="dask")(delayed(_call_failing_inside)(j) for j in range(1))
    assert info.value.__notes__ == [
        "(raised by task 1: _inner_fails(1) of a Parallel call made inside a task, in a worker of that call)",
        "(raised by task 0: _call_failing_inside(0) of this Parallel call, in a worker)",
    ]


def test_a_nested_loky_call_in_a_dask_task_says_it_runs_in_a_dask_worker(dask_client):
    [(out, key, messages)] = Parallel(backend="dask")(delayed(nested_call)(0, "loky") for _ in range(1))
    assert [j for j, _ in out] == [0, 1, 2] and {k for _, k in out} == {key}  # sequential, here
    assert len(messages) == 1 and "inside a dask worker's task" in messages[0], messages


def test_a_large_list_argument_is_pickled_whole_on_dask_no_local_stream(dask_client, caplog):
    # dask workers may run on other machines: no socket in a local folder reaches them
    caplog.set_level(logging.DEBUG, logger="picklepool.executor.streaming")
    big = list(range(200_000))
    got = Parallel(backend="dask", n_jobs=2)(delayed(len)(big) for _ in range(1))
    assert got == [200_000]
    assert not [r for r in caplog.records if "streamed" in r.getMessage()]


# -- large arrays: once per call, as joblib's dask backend scatters them --------------


def first_plus_sum(a, i):
    return float(a[i]) + float(a.sum())


def writable(a):
    return a.flags.writeable


def bump_first(a):
    a[0] += 1  # this batch's own copy: no other batch, and not the parent, sees it
    return float(a[0])


def test_a_large_array_in_every_task_goes_to_the_cluster_once_per_call(dask_client, monkeypatch):
    np = pytest.importorskip("numpy")
    scattered, submitted = count_traffic(dask_client, monkeypatch)
    a = np.arange(500_000, dtype=np.float64)  # 4 MB: above max_nbytes' default (1M)
    expected = [i + float(a.sum()) for i in range(12)]
    run = Parallel(backend="dask", n_jobs=2, batch_size=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dask's "Sending large graph" would fail the call
        assert run(delayed(first_plus_sum)(a, i) for i in range(12)) == expected
    assert scattered == [a.nbytes]  # the array, once, for 12 batches
    assert len(submitted) == 12 and max(submitted) < 100_000
    assert run(delayed(first_plus_sum)(a, i) for i in range(12)) == expected
    assert scattered == [a.nbytes] * 2  # once per call
    # a second array is a second blob; a small one stays in band
    b, small = a[::-1].copy(), np.ones(10)
    got = run(delayed(first_plus_sum)(x, 0) for x in (a, b, small, a))
    assert got == [a.sum(), b[0] + b.sum(), 11.0, a.sum()]
    assert sorted(scattered[2:]) == [a.nbytes, a.nbytes]


def views(x):
    return x, x[::2], x[:10]


def test_a_large_array_on_dask_keeps_its_flags_and_writes_stay_in_the_batch(dask_client):
    np = pytest.importorskip("numpy")
    a = np.zeros(200_000)  # 1.6 MB
    frozen = a.copy()
    frozen.flags.writeable = False
    run = Parallel(backend="dask", n_jobs=2, batch_size=1)
    assert run(delayed(writable)(x) for x in (a, frozen, a)) == [True, False, True]
    assert run(delayed(bump_first)(a) for _ in range(4)) == [1.0] * 4  # each batch its own copy
    assert a[0] == 0.0  # the parent's array is untouched, as with loky's default mmap_mode="c"
    with pytest.raises(ValueError, match="read-only"):
        run(delayed(bump_first)(frozen) for _ in range(1))
    # mmap_mode="r", as with loky: read-only in the task
    assert Parallel(backend="dask", n_jobs=2, mmap_mode="r")(delayed(writable)(x) for x in (a, a)) == [
        False,
        False,
    ]
    with pytest.raises(ValueError, match="read-only") as info:
        Parallel(backend="dask", n_jobs=2, mmap_mode="r")(delayed(bump_first)(a) for _ in range(1))
    assert "mmap_mode='r' is in force" in "".join(getattr(info.value, "__notes__", []))
    # a result viewing such an argument comes back writable, as with loky, n_jobs=1 and the
    # loop (it came back read-only); one read-only in the parent stays read-only
    for x, flag in ((a, True), (frozen, False)):
        got = Parallel(backend="dask", n_jobs=2, mmap_mode="r")(delayed(views)(x) for _ in range(1))[0]
        assert [r.flags.writeable for r in got] == [flag] * 3
    # max_nbytes=None: everything in band, as before
    assert Parallel(backend="dask", n_jobs=2, max_nbytes=None)(delayed(writable)(x) for x in (a, frozen)) == [
        True,
        False,
    ]


def test_a_batch_on_dask_carries_only_its_own_arrays_each_released_once_done_with(dask_client, monkeypatch):
    np = pytest.importorskip("numpy")
    from picklepool.executor.dask import ScatterStore

    carried, dropped = [], []
    real_submit, real_drop = dask_client.submit, ScatterStore.drop

    def submit(fn, *args, **kwargs):
        carried.append(sorted(key for key in args[2] or () if key.startswith("arg-")))
        return real_submit(fn, *args, **kwargs)

    def drop(store, key):
        dropped.append(key)
        real_drop(store, key)

    monkeypatch.setattr(dask_client, "submit", submit)
    monkeypatch.setattr(ScatterStore, "drop", drop)
    run = Parallel(backend="dask", n_jobs=2, batch_size=1, return_as="generator")
    results = run(delayed(first_plus_sum)(np.full(200_000, float(i)), 0) for i in range(8))  # 1.6 MB each
    assert next(results) == 0.0
    # Each batch carried its own array, not every array of the call so far (dask would copy
    # them all to the worker running it); the first one, read and no longer held, is gone.
    assert len(carried) >= 2 and all(len(keys) == 1 for keys in carried)
    assert len({keys[0] for keys in carried}) == len(carried)
    assert carried[0][0] in dropped
    assert list(results) == [i * 200_001.0 for i in range(1, 8)]
    assert sorted(dropped) == sorted(keys[0] for keys in carried)


class Model:
    def __init__(self, k):
        self.weights = list(range(120_000))  # pickled: above dispatch.INLINE_LIMIT, a blob
        self.k = k

    def predict(self, x):
        return self.k + x


def test_a_batch_on_dask_carries_only_its_own_large_functions(dask_client, monkeypatch):
    carried = []
    real_submit = dask_client.submit

    def submit(fn, *args, **kwargs):
        carried.append(len(args[2] or ()))
        return real_submit(fn, *args, **kwargs)

    monkeypatch.setattr(dask_client, "submit", submit)
    models = [Model(k) for k in range(6)]
    run = Parallel(backend="dask", n_jobs=2, batch_size=1)
    assert run(delayed(m.predict)(1) for m in models) == [1, 2, 3, 4, 5, 6]
    # each batch carried its model, not every model of the call so far
    assert carried == [1] * 6


# -- the calling thread's numeric settings ------------------------------------------------


def third(_):
    import decimal

    return str(decimal.Decimal(1) / decimal.Decimal(3))


def divide_by_zero(_):
    import numpy as np

    return float(np.float64(1.0) / np.float64(0.0))


def test_tasks_round_and_raise_with_the_callers_numeric_settings_and_then_put_them_back(dask_client):
    # a dask worker's threads are shared: only what can be put back is applied, around the batch
    import decimal

    np = pytest.importorskip("numpy")
    dask = parallel_config(backend="dask", n_jobs=2)
    with dask, decimal.localcontext(prec=5):
        assert Parallel()(delayed(third)(i) for i in range(4)) == ["0.33333"] * 4
    with dask, np.errstate(divide="raise"), pytest.raises(FloatingPointError):
        Parallel()(delayed(divide_by_zero)(i) for i in range(4))
    with dask:  # the same worker threads, the defaults again
        assert Parallel()(delayed(third)(i) for i in range(4)) == ["0." + "3" * 28] * 4
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            assert Parallel()(delayed(divide_by_zero)(i) for i in range(4)) == [float("inf")] * 4


def working_memory(_):
    import sklearn

    return sklearn.get_config()["working_memory"]


_request = contextvars.ContextVar("_request", default="none")


def _request_seen(_):
    return _request.get()


def test_tasks_run_with_the_callers_context_variables_and_leave_them_to_no_other_task(dask_client):
    dask = parallel_config(backend="dask", n_jobs=2)
    token = _request.set("abc")
    try:
        with dask:
            assert Parallel()(delayed(_request_seen)(i) for i in range(4)) == ["abc"] * 4
    finally:
        _request.reset(token)
    with dask:  # the same worker threads: the default again
        assert Parallel()(delayed(_request_seen)(i) for i in range(4)) == ["none"] * 4


def test_tasks_run_with_the_callers_scikit_learn_settings_and_then_put_them_back(dask_client):
    sklearn = pytest.importorskip("sklearn")
    dask = parallel_config(backend="dask", n_jobs=2)
    with dask, sklearn.config_context(working_memory=9):
        assert Parallel()(delayed(working_memory)(i) for i in range(4)) == [9] * 4
    with dask:  # the same worker threads, the defaults again
        assert Parallel()(delayed(working_memory)(i) for i in range(4)) == [1024] * 4


def test_a_module_on_a_folder_only_this_process_has_on_sys_path_gets_the_clusters_fix(
    dask_client, tmp_path, monkeypatch
):
    # dask workers do not mirror the parent's sys.path: the advice said the folder "is not on
    # sys.path ..., which workers mirror at each call" and to "put its folder on sys.path
    # before the call" (it was), or, under 'pickle', to use 'hybrid' (which sends it by name too)
    (tmp_path / "onlyhere_s39.py").write_text("def twice(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "onlyhere_s39", raising=False)
    import onlyhere_s39

    for pickler in ("hybrid", "pickle"):
        with pytest.raises(picklepool.errors.UnpicklingError) as info:
            Parallel(n_jobs=2, backend="dask", pickler=pickler)(
                delayed(onlyhere_s39.twice)(i) for i in range(2)
            )
        msg = str(info.value)
        assert "No module named 'onlyhere_s39'" in msg, msg
        assert "mirror" not in msg and "put its folder on sys.path" not in msg, msg
        assert "dask workers do not share this process's sys.path" in msg, msg
        assert "cloudpickle.register_pickle_by_value(onlyhere_s39)" in msg, msg
        assert "client.upload_file(" in msg, msg
        assert ("pickler='hybrid'" in msg) == (pickler == "pickle"), msg
    sys.modules.pop("onlyhere_s39", None)


def _imports_onlyhere(i):
    import onlyhere_task_s39

    return onlyhere_task_s39.VALUE + i


def _runtime_module(i):
    import made_at_run_time_s39  # noqa: F401

    return i


def _added_builtin(i):
    return HELPER_S39(i) + LEVEL_S39  # noqa: F821 - (this process's builtins)


def test_a_tasks_miss_of_what_this_process_has_gets_the_clusters_fix_not_a_local_workers(
    dask_client, tmp_path, monkeypatch
):
    # a local worker mirrors sys.path and the callables added to builtins, and has an
    # initializer; the cluster's do not: a task's own import of a module whose folder is on
    # this process's sys.path, and its use of a callable added to builtins, raised a bare
    # ModuleNotFoundError / NameError, and a value in builtins or a module made at run time
    # got "set it in the workers with an initializer", which the dask backend refuses
    import builtins
    import types

    (tmp_path / "onlyhere_task_s39.py").write_text("VALUE = 10\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "onlyhere_task_s39", raising=False)
    import onlyhere_task_s39  # noqa: F401

    monkeypatch.setitem(sys.modules, "made_at_run_time_s39", types.ModuleType("made_at_run_time_s39"))
    monkeypatch.setattr(builtins, "HELPER_S39", square, raising=False)
    monkeypatch.setattr(builtins, "LEVEL_S39", 3, raising=False)
    with pytest.raises(ModuleNotFoundError) as info:
        Parallel(n_jobs=2, backend="dask")(delayed(_imports_onlyhere)(i) for i in range(2))
    note = "\n".join(info.value.__notes__)
    assert "dask workers do not share this process's sys.path" in note, note
    assert f"client.run(site.addsitedir, {str(tmp_path)!r})" in note, note
    assert "client.upload_file(" in note, note
    with pytest.raises(ModuleNotFoundError) as info:
        Parallel(n_jobs=2, backend="dask")(delayed(_runtime_module)(i) for i in range(2))
    note = "\n".join(info.value.__notes__)
    assert "made at run time" in note and "client.run(" in note and "initializer=" not in note, note
    try:
        for name in ("HELPER_S39", "LEVEL_S39"):  # a callable, then a value
            with pytest.raises(NameError) as info:
                Parallel(n_jobs=2, backend="dask")(delayed(_added_builtin)(i) for i in range(2))
            note = "\n".join(info.value.__notes__)
            assert f"builtins.{name} is set in this process, but the dask workers do not get" in note, note
            assert "client.run(" in note and "initializer=" not in note, note
            dask_client.run(setattr, builtins, "HELPER_S39", square)  # (the fix: the next miss is the value)
    finally:
        dask_client.run(lambda: vars(builtins).pop("HELPER_S39", None))
    sys.modules.pop("onlyhere_task_s39", None)


def test_a_pickler_class_only_this_process_can_import_gets_the_clusters_fix(
    dask_client, tmp_path, monkeypatch
):
    # the workers import the pickler's class themselves: registering its module to travel by
    # value (the advice for a function sent by name) does nothing for it
    (tmp_path / "onlyhere_pickler_s39.py").write_text("import pickle\nclass P(pickle.Pickler):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "onlyhere_pickler_s39", raising=False)
    with pytest.raises(picklepool.errors.UnpicklingError) as info:
        Parallel(n_jobs=2, backend="dask", pickler="onlyhere_pickler_s39:P")(
            delayed(abs)(-i) for i in range(2)
        )
    msg = str(info.value)
    assert "could not rebuild the pickler 'onlyhere_pickler_s39:P' itself" in msg, msg
    assert "dask workers do not share this process's sys.path" in msg, msg
    assert f"client.run(site.addsitedir, {str(tmp_path)!r})" in msg, msg
    assert "register_pickle_by_value" not in msg, msg
    sys.modules.pop("onlyhere_pickler_s39", None)
