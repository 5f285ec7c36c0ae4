"""SharedState: the lock, the version, and snapshots sent to workers once per version."""

from __future__ import annotations

import copy
import os
import pickle
import threading

import numpy as np
import pytest

from picklepool import Parallel, PicklingError, SharedState, delayed
from tests.mutator import mutating

# -- task functions (module level: workers import them from here) -------------------


def read_ab(state: SharedState) -> tuple[int, int, int]:
    v = state.value
    return v["a"], v["b"], state.version


def where(state: SharedState) -> tuple[int, int, int]:
    """Which worker, which rebuilt object, which version."""
    return os.getpid(), id(state), state.version


def bump_copy(state: SharedState) -> int:
    with state as v:
        v["n"] += 1
        return int(v["n"])


def nested_sum(box: dict, obj: Holder, *, kw: SharedState) -> float:
    return float(box["s"].value["x"].sum() + obj.state.value["x"].sum() + kw.value["x"].sum())


def lock_is_fresh(state: SharedState) -> bool:
    # A fresh RLock in the worker: another thread can take it at once.
    got = []
    t = threading.Thread(target=lambda: got.append(state._lock.acquire(blocking=False)))
    t.start()
    t.join()
    return got == [True]


class Holder:
    def __init__(self, state: SharedState) -> None:
        self.state = state


_serialised: list[int] = []


class Counted:
    """Part of a state's value; records each time the parent serialises it."""

    def __reduce__(self):
        _serialised.append(1)
        return (Counted, ())


# -- the value, the lock, the version -----------------------------------------------


def test_with_holds_the_lock_and_moves_the_version():
    state = SharedState({"a": 1})
    assert state.version == 0
    with state as v:
        v["a"] = 2
        taken = []
        t = threading.Thread(target=lambda: taken.append(state._lock.acquire(blocking=False)))
        t.start()
        t.join()
        assert taken == [False]  # another thread cannot take it meanwhile
        with state:  # re-entrant in the same thread
            pass
    assert state.version == 2
    assert state.value == {"a": 2}
    assert state.set({"a": 3}) == 3
    assert state.value == {"a": 3}


def test_assigning_the_value_says_to_call_set():
    # was Python's bare "property 'value' of 'SharedState' object has no setter"
    state = SharedState({"w": 1})
    with pytest.raises(AttributeError, match=r"call state.set\(new_value\), or change the value inside"):
        state.value = {"w": 2}
    assert state.value == {"w": 1} and state.version == 0
    assert state.set({"w": 2}) == 1 and state.value == {"w": 2}


def test_an_exit_without_an_enter_raises_and_leaves_the_state_as_it_was(tmp_path):
    # was "cannot release un-acquired lock" after lowering the block count to -1: the next
    # save() then counted itself inside a block and moved the version on
    state = SharedState({"w": 1})
    with pytest.raises(RuntimeError, match=r"without a `with state:` block entered in this thread"):
        state.__exit__(None, None, None)
    assert state.save(tmp_path / "s.pp") == 0 and state.version == 0
    with state:
        pass
    assert state.version == 1


def test_plain_pickle_gives_an_independent_copy_with_a_fresh_lock():
    state = SharedState({"a": [1, 2], "w": np.arange(4.0)})
    with state as v:
        v["a"].append(3)
    data = pickle.dumps(state)
    one, two = pickle.loads(data), pickle.loads(data)
    assert one is not two and one._lock is not state._lock
    assert one.value["a"] == [1, 2, 3] and one.version == state.version
    one.value["w"][0] = 99.0  # writable, and private to the copy
    assert two.value["w"][0] == 0.0 and state.value["w"][0] == 0.0
    assert copy.deepcopy(state).value["a"] == [1, 2, 3]


def test_snapshot_taken_inside_the_own_with_block_gets_its_own_version():
    state = SharedState({"a": 0})
    with state as v:
        v["a"] = 1
        data = pickle.dumps(state)
        v["a"] = 2
    snap = pickle.loads(data)
    assert snap.value["a"] == 1
    # The content of the snapshot's version number never changes afterwards.
    assert state.version > snap.version


def test_a_state_cannot_contain_itself():
    box: dict = {}
    state = SharedState(box)
    box["me"] = state
    with pytest.raises(PicklingError, match="cannot contain itself"):
        pickle.dumps(state)


# -- in-process backends use the object itself --------------------------------------


@pytest.mark.parametrize("backend", ["threading", "sequential"])
def test_in_process_backends_pass_the_same_object(backend):
    state = SharedState({"a": 1})
    ids = Parallel(n_jobs=2, backend=backend)(delayed(id)(state) for _ in range(10))
    assert set(ids) == {id(state)}


# -- process workers ----------------------------------------------------------------


def test_workers_get_the_value_with_a_fresh_lock():
    state = SharedState({"a": 5, "b": 5})
    with state:  # the parent holds its lock while the call runs: workers get their own
        out = Parallel(n_jobs=2)(delayed(lock_is_fresh)(state) for _ in range(4))
    assert out == [True] * 4
    out = Parallel(n_jobs=2)(delayed(read_ab)(state) for _ in range(3))
    assert out == [(5, 5, state.version)] * 3


def test_serialised_once_per_version_and_rebuilt_once_per_worker():
    _serialised.clear()
    state = SharedState({"c": Counted(), "x": np.zeros(100_000)})
    out = Parallel(n_jobs=2, batch_size=2)(delayed(where)(state) for _ in range(200))
    assert len(_serialised) == 1  # 100 batches, one serialisation
    by_worker = {}
    for pid, ident, version in out:
        by_worker.setdefault(pid, set()).add(ident)
        assert version == 0
    assert all(len(ids) == 1 for ids in by_worker.values())  # one rebuild per worker

    # Unchanged: the next call serialises again (once), but workers keep their copy.
    again = Parallel(n_jobs=2, batch_size=2)(delayed(where)(state) for _ in range(200))
    assert len(_serialised) == 2
    common = set(by_worker) & {pid for pid, _, _ in again}
    assert common
    for pid, ident, _ in again:
        if pid in by_worker:
            assert {ident} == by_worker[pid]

    # A change in the middle of a call: exactly one more serialisation.
    def tasks():
        for i in range(200):
            if i == 100:
                state.set({"c": Counted(), "x": np.ones(10)})
            yield delayed(where)(state)

    out = Parallel(n_jobs=2, batch_size=2)(tasks())
    assert len(_serialised) == 4
    assert [v for _, _, v in out] == [0] * 100 + [1] * 100


def test_the_snapshot_is_written_once_per_call(monkeypatch):
    from picklepool.pickler import frames
    from picklepool.pickler.context import SessionStore

    writes = []
    real = SessionStore.put

    def counting(self, key, data):
        writes.append(frames.size(data) if isinstance(data, list) else len(data))
        return real(self, key, data)

    monkeypatch.setattr(SessionStore, "put", counting)
    state = SharedState({"x": np.ones(1_000_000)})  # 8 MB
    out = Parallel(n_jobs=2, batch_size=1)(delayed(where)(state) for _ in range(50))
    assert len(out) == 50
    assert len(writes) == 1 and writes[0] > 8_000_000


def test_concurrent_changes_are_never_seen_half_done():
    """A thread keeps setting a and b to the same new value under the lock."""
    state = SharedState({"a": 0, "b": 0})

    with mutating(state) as wait_for_a_change:

        def tasks():
            for k in range(400):
                if k % 10 == 0:  # wait for a fresh change: several versions are sent
                    wait_for_a_change()
                yield delayed(read_ab)(state)

        out = Parallel(n_jobs=2, batch_size=5)(tasks())
    assert len(out) == 400
    torn = [(a, b) for a, b, _ in out if a != b]
    assert torn == []
    assert len({version for _, _, version in out}) >= 10


def test_state_inside_containers_objects_and_keywords():
    _serialised.clear()
    state = SharedState({"x": np.arange(10.0), "c": Counted()})
    out = Parallel(n_jobs=2, batch_size=3)(
        delayed(nested_sum)({"s": state}, Holder(state), kw=state) for _ in range(30)
    )
    assert out == [135.0] * 30
    assert len(_serialised) == 1


def read_inner(outer: SharedState) -> tuple[int, int]:
    inner = outer.value["inner"]
    with inner as v:
        return v["n"], inner.version


def read_deeper(outer: SharedState) -> tuple[int, int]:
    return read_inner(outer.value["inner"])


def test_a_state_inside_another_state_is_seen_at_each_of_its_versions():
    # a worker kept its copy of the outer state per (state, version): a change of a state
    # its value holds (inner.set(...)) did not move the outer's version, so warm workers'
    # tasks read the inner's first version, silently, where the loop read each one (and
    # a copy rebuilt from its held snapshot opened the inner's blob of a call since ended)
    inner = SharedState({"n": 1})
    outer = SharedState({"inner": inner})
    with Parallel(n_jobs=2, batch_size=1) as p:
        for n in (1, 100, 200, 300):
            inner.set({"n": n})
            assert p(delayed(read_inner)(outer) for _ in range(4)) == [(n, inner.version)] * 4
        middle = SharedState({"inner": SharedState({"inner": inner})})  # two levels down
        for n in (400, 500):
            inner.set({"n": n})
            assert p(delayed(read_deeper)(middle) for _ in range(4)) == [(n, inner.version)] * 4


def test_changes_in_a_worker_stay_in_that_worker():
    state = SharedState({"n": 10})
    out = Parallel(n_jobs=2, batch_size=1)(delayed(bump_copy)(state) for _ in range(20))
    # Each batch starts from the parent's snapshot: a changed copy is rebuilt.
    assert out == [11] * 20
    assert state.value == {"n": 10} and state.version == 0


def test_a_failed_blob_write_falls_back_to_sending_the_snapshot_inline(monkeypatch):
    from picklepool.pickler.context import CallContext

    def full(self, key, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(CallContext, "put_blob", full)
    state = SharedState({"a": 3, "b": 3})
    assert Parallel(n_jobs=2, batch_size=2)(delayed(read_ab)(state) for _ in range(6)) == [(3, 3, 0)] * 6


def test_each_task_carries_a_small_reference():
    from picklepool.executor.session import Session
    from picklepool.pickler.base import CloudPickler
    from picklepool.pickler.context import CallContext, active

    state = SharedState({"x": np.ones(1_000_000)})
    session = Session()
    try:
        pickler = CloudPickler()
        with active(CallContext(pickler, session)):
            first = pickler.dumps([state])
            batch = pickler.dumps([[state] for _ in range(100)])
    finally:
        session.close()
    assert len(first) < 500 and len(batch) < 1000


def test_without_a_blob_store_the_snapshot_goes_inline_once_per_call():
    """No blob store (put_blob gives None): bytes in the task, still packed once per call."""
    from picklepool.pickler.base import CloudPickler
    from picklepool.pickler.context import CallContext, active
    from picklepool.workers import snapshots
    from picklepool.workers.cache import ByteLRU

    _serialised.clear()
    state = SharedState({"x": np.arange(5.0), "c": Counted()})
    ctx = CallContext(CloudPickler(), None)
    pickler = CloudPickler()
    with active(ctx):
        batches = [pickler.dumps([state, state]) for _ in range(3)]
    assert len(_serialised) == 1
    cache = ByteLRU()
    original = snapshots.objects
    snapshots.objects = cache  # stand in for a worker's cache
    try:
        first, _ = pickler.loads(batches[0])
        second, _ = pickler.loads(batches[1])
    finally:
        snapshots.objects = original
    assert first is second and cache.builds == 1
    assert first._lock is not state._lock
    first.value["x"][0] = 7.0  # rebuilt arrays are writable copies
    assert state.value["x"][0] == 0.0


# -- deep-learning use (the seed's scenarios) ---------------------------------------


def evaluate(state: SharedState, i: int) -> float:
    w = state.value
    x = np.full(10, float(i))
    return float((x @ w["layer1"] @ w["layer2"]).sum())


def perturb_and_score(state: SharedState) -> float:
    w = state.value
    w["layer1"] += 1.0  # the worker's own copy
    return float(w["layer1"].sum())


def test_model_weights_as_numpy_arrays():
    rng = np.random.default_rng(0)
    state = SharedState({"layer1": rng.random((10, 10)), "layer2": rng.random((10, 2))})
    for _ in range(3):
        with state as w:
            w["layer1"] += 0.1
    expected = [evaluate(state, i) for i in range(40)]
    assert Parallel(n_jobs=2)(delayed(evaluate)(state, i) for i in range(40)) == expected
    before = state.value["layer1"].copy()
    Parallel(n_jobs=2)(delayed(perturb_and_score)(state) for _ in range(4))
    np.testing.assert_array_equal(state.value["layer1"], before)


def restore_and_check(state: SharedState) -> tuple[bool, bool]:
    import torch

    torch.manual_seed(1)
    model = torch.nn.Linear(10, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.load_state_dict(state.value["model"])
    optimizer.load_state_dict(state.value["optimizer"])
    sent = state.value["model"]
    same_weights = all(torch.equal(a, sent[name]) for name, a in model.state_dict().items())
    steps = [s["step"] for s in optimizer.state_dict()["state"].values()]
    return same_weights, all(float(s) == 1.0 for s in steps)


def test_torch_model_and_optimizer_state_dicts():
    torch = pytest.importorskip(
        "torch", reason="torch is not installed; the torch state_dict scenario needs it"
    )
    model = torch.nn.Linear(10, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(4, 10)).sum().backward()
    optimizer.step()
    state = SharedState({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    assert Parallel(n_jobs=2)(delayed(restore_and_check)(state) for _ in range(4)) == [(True, True)] * 4


def test_remaking_a_kept_snapshot_never_waits_for_a_with_block():
    """A cluster that lost a kept snapshot has it made again from dask's callback thread."""
    import weakref

    from picklepool.pickler import frames
    from picklepool.pickler.base import CloudPickler
    from picklepool.state import _maker

    pickler = CloudPickler()
    state = SharedState({"a": 1})
    make = _maker(weakref.ref(state), state.version, pickler)
    assert frames.unpack(pickler, b"".join(make())) == {"a": 1}

    with state._lock:  # a snapshot or a save in progress: same version, waited for
        out: list = []
        t = threading.Thread(target=lambda: out.append(make()))
        t.start()
    t.join()
    assert frames.unpack(pickler, b"".join(out[0])) == {"a": 1}

    entered, leave = threading.Event(), threading.Event()

    def block() -> None:
        with state:
            entered.set()
            leave.wait()

    holder = threading.Thread(target=block)
    holder.start()
    entered.wait()
    try:
        assert make() is None  # the block moved the version on: that snapshot is gone
    finally:
        leave.set()
        holder.join()
    gone = SharedState({"a": 1})
    make_gone = _maker(weakref.ref(gone), gone.version, pickler)
    del gone
    assert make_gone() is None


def _read_state(state):
    with state as value:
        return list(value["w"][:2])  # (the whole of an array: 300,000 numpy scalars, seconds to pickle)


def test_an_executor_keeps_one_snapshot_file_per_state_not_one_per_version():
    # An Executor is one long call: each version of a SharedState it sent stayed in
    # /dev/shm (a file of the snapshot's size) until its shutdown. A version is now
    # removed once a newer one is sent and no batch in flight still reads it
    # (pickler.context.CallContext.per_batch; tests/pickler/test_buffers.py has the
    # batches in flight).
    import glob

    from picklepool import Executor
    from picklepool.executor.session import current_session

    state = SharedState({"w": list(range(1000))})
    with Executor(max_workers=1) as ex:
        for i in range(5):
            with state as value:
                value["w"][0] = i
            assert ex.submit(_read_state, state).result()[0] == i
            assert ex.submit(_read_state, state).result()[0] == i  # the memoized version
        blobs = glob.glob(os.path.join(current_session().path, "blob-state-*"))
        assert len(blobs) == 1, blobs  # the last version's only


def test_an_executor_removes_a_state_s_snapshot_file_once_the_state_is_gone():
    # A state's last version stayed in /dev/shm until the Executor's shutdown: one file per
    # SharedState ever submitted (a long-lived Executor given a new state per request grew
    # /dev/shm without bound). Its owner's end now drops it once no batch in flight reads it.
    import gc
    import glob

    from picklepool import Executor
    from picklepool.executor.session import current_session

    with Executor(max_workers=1) as ex:
        for i in range(3):
            state = SharedState({"w": list(range(i, i + 1000))})
            assert ex.submit(_read_state, state).result()[0] == i
            del state
        gc.collect()
        assert ex.submit(int, "7").result() == 7  # (the batches before it are done with theirs)
        assert glob.glob(os.path.join(current_session().path, "blob-state-*")) == []


@pytest.mark.parametrize("how", ["parallel", "executor"])
def test_a_bad_worker_cache_bound_is_a_setting_error_not_a_pickling_error(monkeypatch, how):
    # PICKLEPOOL_WORKER_CACHE_BYTES is read as a call pickles the state: its error came
    # back as a PicklingError of the task, whose fix was to give the class a __reduce__
    from picklepool import Executor
    from picklepool.errors import SettingValueError

    monkeypatch.setenv("PICKLEPOOL_WORKER_CACHE_BYTES", "lots")
    state = SharedState({"a": 1, "b": 2})
    with pytest.raises(
        SettingValueError,
        match=r"^worker_cache_bytes='lots' \(from env var PICKLEPOOL_WORKER_CACHE_BYTES\) is not a size",
    ) as info:
        if how == "parallel":
            Parallel(n_jobs=2)(delayed(read_ab)(state) for _ in range(2))
        else:
            with Executor(max_workers=2) as ex:
                ex.submit(read_ab, state).result()
    assert isinstance(info.value, ValueError) and not isinstance(info.value, PicklingError)
    monkeypatch.delenv("PICKLEPOOL_WORKER_CACHE_BYTES")
    assert Parallel(n_jobs=2)(delayed(read_ab)(state) for _ in range(2)) == [(1, 2, 0)] * 2


def _state_plus(state, k):
    return state.value["w"][0] + k


def test_a_call_submitted_inside_the_state_s_own_with_block_does_not_wait_for_it():
    # An Executor (and the joblib backend on it) pickles its calls in its manager thread,
    # which took the state's lock for the snapshot while the submitter, inside ``with
    # state``, waited for the result: both waited for ever. The snapshot is now made under
    # the submitter's hold, as Parallel makes it in the calling thread.
    from picklepool import Executor

    state = SharedState({"w": [0] * 10})
    with Executor(max_workers=2) as ex:
        with state as value:
            value["w"][0] = 5
            assert ex.submit(_state_plus, state, 1).result(timeout=30) == 6  # TimeoutError before
            futures = [ex.submit(_state_plus, state, k) for k in range(4)]
            assert [f.result(timeout=30) for f in futures] == [5, 6, 7, 8]
        assert ex.submit(_state_plus, state, 0).result(timeout=30) == 5


def _held_copies(uids):
    from picklepool.workers import snapshots
    from picklepool.workers.cache import objects

    cached = {k[1] for k in objects.keys() if type(k) is tuple and len(k) == 3 and k[0] == "state"}
    return sorted(cached & set(uids)), sorted(set(snapshots._newest) & set(uids))


def test_the_workers_drop_their_copies_of_a_state_the_parent_let_go():
    # A worker kept each state's copy (its snapshot's open file in /dev/shm, unseen by ls,
    # and the rebuilt value) after the parent's state was gone, until its 1 GiB cache bound:
    # a loop making a new SharedState per step pinned up to 1 GiB of shared memory per worker
    import gc

    uids = []
    for i in range(3):
        state = SharedState({"w": np.full(300_000, float(i))})
        uids.append(state._uid)
        assert [r[0] for r in Parallel(n_jobs=2)(delayed(_read_state)(state) for _ in range(4))] == [i] * 4
        del state
    gc.collect()
    # each batch tells its worker which states are gone, before its tasks run
    assert Parallel(n_jobs=2)(delayed(_held_copies)(uids) for _ in range(4)) == [([], [])] * 4


def test_a_forked_child_counts_the_states_it_lets_go_on_its_own():
    # Workers forked from the forkserver (or an os.fork) named themselves as their parent to
    # the pools and clusters they send to (state.gone), whose counts then mixed
    from tests.conftest import run_python

    out = run_python(
        """
        import os
        from picklepool import state

        state._note_gone("a")
        parent = state.gone()
        pid = os.fork()
        if pid == 0:
            state._note_gone("b")
            child = state.gone()
            os._exit(0 if child[0] != parent[0] and child[1:] == (1, ("b",)) else 1)
        print(os.waitpid(pid, 0)[1], state.gone() == parent)
        """
    )
    assert out.stdout.split() == ["0", "True"], out.stderr


def test_states_gone_inside_another_state_s_noting_or_at_once_in_threads_are_all_counted():
    # A state's finalizer runs where a collection happens: inside another state's noting
    # (at an allocation there) it read and rewrote the count and uids too, and the outer
    # noting overwrote them: 4000 states gone counted as about 2700, and the workers kept
    # the copies of those lost to their cache's bound
    from tests.conftest import run_python

    out = run_python(
        """
        import gc, threading, weakref
        from picklepool import state

        class Cyclic:
            pass

        for k in range(2000):
            c = Cyclic()
            c.me = c  # (collected by the GC: at some allocation, wherever it is)
            weakref.finalize(c, state._note_gone, f"cyclic-{k}")
            del c
            state._note_gone(f"plain-{k}")
        gc.collect()

        def note(t):
            for i in range(5000):
                state._note_gone(f"thread-{t}-{i}")

        threads = [threading.Thread(target=note, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sender, count, uids = state.gone()
        print(count, len(uids), uids[-1].startswith("thread-"))
        """
    )
    assert out.stdout.split() == ["24000", "64", "True"], out.stderr


def test_an_executors_tasks_see_each_version_of_a_state_their_function_holds():
    # STATE = SharedState(model) read by a function of __main__ (a global, a default, a
    # closure): an Executor sends the function once, and with it the state's version of
    # its first submit, so every later task read that version, silently, after the parent
    # had changed the state; a state passed as an argument was seen at each version
    from tests.conftest import run_python

    proc = run_python(
        """
        from picklepool import Executor, SharedState

        STATE = SharedState({"step": 0})

        def read_global(_):
            with STATE as v:
                return v["step"]

        def make_reader(state):
            def read_closure(_):
                return state.value["step"]
            return read_closure

        def read_default(_, state=STATE):
            return state.value["step"]

        STATES = {"main": STATE}

        def read_held(_):
            return STATES["main"].value["step"]

        read_closure = make_reader(STATE)
        seen = []
        with Executor(max_workers=2) as ex:
            for _ in range(3):
                with STATE as v:
                    v["step"] += 1
                for f in (read_global, read_closure, read_default, read_held):
                    seen.append([fut.result() for fut in [ex.submit(f, i) for i in range(3)]])
                    seen.append(list(ex.map(f, range(4), chunksize=2)))
        print(seen == [[n] * k for n in (1, 2, 3) for _f in range(4) for k in (3, 4)], seen)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("True"), proc.stdout


def test_an_executors_tasks_see_each_version_of_a_state_inside_a_state_their_function_holds():
    # OUTER = SharedState({"inner": INNER}) read by a function of __main__: the Executor
    # pickled the function again only once OUTER's own version moved on, so INNER.set(...)
    # went unseen by every later task, silently
    from tests.conftest import run_python

    proc = run_python(
        """
        from picklepool import Executor, SharedState

        INNER = SharedState({"n": 0})
        OUTER = SharedState({"inner": INNER})

        def read(_):
            return OUTER.value["inner"].value["n"]

        with Executor(max_workers=2) as ex:
            seen = []
            for n in (1, 100, 200):
                INNER.set({"n": n})
                seen.append([fut.result() for fut in [ex.submit(read, i) for i in range(3)]])
        print(seen)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[[1, 1, 1], [100, 100, 100], [200, 200, 200]]"]
