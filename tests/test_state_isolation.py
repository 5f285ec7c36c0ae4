"""SharedState isolation: in a worker each task sees the parent's version, never another task's change.

A batch runs several tasks on one worker's copy of the state. A task may change
that copy (under ``with``, through ``state.value``, with ``set``); the next task,
in the same batch or a later one, must see what the parent sent, and tasks that
only read must not make the worker rebuild anything.
"""

from __future__ import annotations

import array
import collections
import os

import numpy as np
import pytest

from picklepool import Executor, Parallel, SharedState, delayed
from picklepool.pickler import frames
from picklepool.pickler.base import CloudPickler
from picklepool.workers import snapshots
from picklepool.workers.tasks import current_task

MB = 1 << 20


def value() -> dict:
    return {
        "arr": np.arange(2 * MB // 8, dtype=np.float64),  # out of band: a view of the map
        "small": np.zeros(4),
        "list": [1, 2, 3],
        "nested": {"rows": [{"x": 1, "tags": {"a"}}, (1.0, [2, 3])]},
        "step": 0,
    }


def pristine(v: dict) -> bool:
    sent = value()
    return bool(
        v.keys() == sent.keys()
        and np.array_equal(v["arr"], sent["arr"])
        and np.array_equal(v["small"], sent["small"])
        and v["list"] == sent["list"]
        and v["nested"] == sent["nested"]
        and v["step"] == 0
    )


# Each changes the value a task got in place, one way.
CHANGES = {
    "dict item": lambda v: v.__setitem__("step", 9),
    "dict key added": lambda v: v.__setitem__("new", 1),
    "list append": lambda v: v["list"].append(4),
    "nested list": lambda v: v["nested"]["rows"][1][1].append(4),
    "nested dict": lambda v: v["nested"]["rows"][0].__setitem__("x", 2),
    "nested set": lambda v: v["nested"]["rows"][0]["tags"].add("b"),
    "ndarray element": lambda v: v["arr"].__setitem__(0, 9.0),
    "small ndarray in place": lambda v: v["small"].__iadd__(1.0),
}


def change(state: SharedState, how: str, through: str) -> tuple[int, int, bool, bool]:
    """Change the task's copy; report (pid, batch, saw the parent's value, sees its own change)."""
    if through == "with":
        with state as v:
            seen = pristine(v)
            CHANGES[how](v)
    else:
        v = state.value
        seen = pristine(v)
        CHANGES[how](v)
    with state as again:  # the same task keeps its own change
        own = not pristine(again)
    return os.getpid(), current_task()[0], seen, own


def look(state: SharedState, how: str = "", through: str = "") -> tuple[int, int, bool, bool]:
    with state as v:
        return os.getpid(), current_task()[0], pristine(v), True


def same_batch_pairs(out: list) -> int:
    return sum(1 for a, b in zip(out[:-1], out[1:], strict=True) if a[:2] == b[:2])


@pytest.mark.parametrize("through", ["with", "value"])
@pytest.mark.parametrize("how", list(CHANGES))
def test_the_next_task_of_the_batch_sees_the_parents_value(how, through):
    state = SharedState(value())
    calls = [delayed(change if k % 2 == 0 else look)(state, how, through) for k in range(12)]
    out = Parallel(n_jobs=2, batch_size=6)(calls)
    assert same_batch_pairs(out) == 10  # two batches of six: task k+1 ran right after task k
    assert all(seen for _, _, seen, _ in out)  # every task saw what the parent sent
    assert all(own for _, _, _, own in out)  # and a changing task saw its own change
    assert pristine(state.value) and state.version == 0


def test_with_a_timeout_too():
    """With a timeout the worker runs the batch in its other loop (SIGALRM per task)."""
    state = SharedState(value())
    calls = [delayed(change if k % 2 == 0 else look)(state, "list append", "with") for k in range(8)]
    out = Parallel(n_jobs=2, batch_size=4, timeout=60)(calls)
    assert same_batch_pairs(out) == 6 and all(seen for _, _, seen, _ in out)


def replace(state: SharedState) -> tuple[int, int, bool, int, int]:
    version = state.version
    with state as v:
        seen = pristine(v)
    new = state.set({"step": 1})
    return os.getpid(), current_task()[0], seen, version, new - state.version


def test_set_in_a_worker_changes_only_that_task_s_copy():
    state = SharedState(value())
    out = Parallel(n_jobs=2, batch_size=5)(delayed(replace)(state) for _ in range(10))
    assert same_batch_pairs(out) == 8
    # Each task saw the parent's value and version, and its own set moved its copy's version.
    assert [(seen, version, moved) for _, _, seen, version, moved in out] == [(True, 0, 0)] * 10
    assert pristine(state.value) and state.version == 0


def change_or_look(state: SharedState, k: int) -> tuple[int, int, bool, bool]:
    return (change if k % 2 == 0 else look)(state, "nested list", "with")


def test_executor_map_chunks_see_the_parents_value():
    """``Executor.map`` with a chunksize runs a chunk as one batch (every task, independently)."""
    state = SharedState(value())
    with Executor(max_workers=2) as ex:
        out = list(ex.map(change_or_look, [state] * 8, range(8), chunksize=4))
    assert same_batch_pairs(out) == 6 and all(seen for _, _, seen, _ in out)


class Opaque:
    """A user object: the check watches its ``__dict__``, so a change of ``hits`` shows."""

    def __init__(self) -> None:
        self.hits = 0


def poke(state: SharedState) -> tuple[int, int, int]:
    with state as v:
        seen = v["obj"].hits
        v["obj"].hits += 1
    return os.getpid(), current_task()[0], seen


def test_a_value_that_cannot_be_watched_is_rebuilt_for_the_next_task():
    state = SharedState({"obj": Opaque()})
    out = Parallel(n_jobs=2, batch_size=5)(delayed(poke)(state) for _ in range(10))
    assert same_batch_pairs(out) == 8
    assert [seen for _, _, seen in out] == [0] * 10


def count_rebuilds(state: SharedState, write: bool) -> tuple[int, int, int]:
    """Reach the value (the check runs there), report the worker's rebuild count, maybe change it."""
    with state as v:
        seen = snapshots.rebuilds
        if write:
            v["list"].append(0)
    return os.getpid(), current_task()[0], seen


def test_reads_rebuild_once_per_version_per_worker_and_each_change_once():
    state = SharedState(value())
    writes = [False, False, True, False, False, True, True, False]
    with Parallel(n_jobs=2, batch_size=8) as parallel:
        for _ in range(2):  # the second call finds the copies built by the first
            out = parallel(delayed(count_rebuilds)(state, w) for _ in range(4) for w in writes)
            for batch in range(4):
                counts = [seen for _, _, seen in out[8 * batch : 8 * batch + 8]]
                assert len({pid_serial[:2] for pid_serial in out[8 * batch : 8 * batch + 8]}) == 1
                # A task after a change pays one rebuild; reads pay none.
                base = counts[0]
                assert [c - base for c in counts] == [0, 0, 0, 1, 1, 1, 2, 3]
    with state as v:  # a new version: one more rebuild per worker, then reads are free
        v["step"] = 0
    out = Parallel(n_jobs=2, batch_size=5)(delayed(count_rebuilds)(state, False) for _ in range(40))
    by_worker: dict[int, set[int]] = {}
    for pid, _, seen in out:
        by_worker.setdefault(pid, set()).add(seen)
    assert all(len(seen) == 1 for seen in by_worker.values())


# -- in the calling process: the state is the parent's own -----------------------------------


def bump(state: SharedState, i: int) -> int:
    with state as v:
        v["list"].append(i)
        return len(v["list"])


@pytest.mark.parametrize("backend", ["threading", "sequential"])
def test_in_process_backends_change_the_parent_s_state(backend):
    """There tasks get the very object: a change under ``with`` is a change of the parent's state."""
    state = SharedState({"list": []})
    out = Parallel(n_jobs=2, backend=backend, batch_size=3)(delayed(bump)(state, i) for i in range(12))
    assert sorted(out) == list(range(1, 13))  # each task saw the changes before it
    assert sorted(state.value["list"]) == list(range(12)) and state.version == 12
    if backend == "sequential":
        assert out == list(range(1, 13))


# -- the frame the worker keeps ---------------------------------------------------------------


def test_the_kept_frame_outlives_its_blob_file(tmp_path):
    """A loky blob is removed when its call ends; a later change is still undone from the open file."""
    path = tmp_path / "blob"
    path.write_bytes(b"".join(frames.pack(CloudPickler(), value())))
    kept = snapshots.Pristine.of(str(path))
    assert kept.fd is not None  # large: kept as an open file, not as bytes
    path.unlink()
    first, _ = kept.load(CloudPickler())
    first["arr"][0] = 5.0
    again, region = kept.load(CloudPickler())
    assert pristine(again) and region is not None
    kept.close()


def test_small_frames_are_kept_as_bytes(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"".join(frames.pack(CloudPickler(), {"a": [1]})))
    kept = snapshots.Pristine.of(str(path))
    assert kept.fd is None and kept.data is not None
    assert kept.load(CloudPickler())[0] == {"a": [1]}


def save_copy(state: SharedState, path: str) -> tuple[int, int]:
    state.save(path)  # the first touch of the value in this task
    return os.getpid(), current_task()[0]


def change_list(state: SharedState, path: str) -> tuple[int, int]:
    with state as v:
        v["list"].append(4)
    return os.getpid(), current_task()[0]


def test_a_task_saving_its_copy_saves_the_parent_s_version(tmp_path):
    state = SharedState(value())
    paths = [str(tmp_path / f"{k}.pp") for k in range(12)]
    calls = [delayed(change_list if k % 2 == 0 else save_copy)(state, paths[k]) for k in range(12)]
    out = Parallel(n_jobs=2, batch_size=6)(calls)
    assert same_batch_pairs(out) == 10  # two batches of six: task k+1 ran right after task k
    assert all(pristine(SharedState.load(paths[k]).value) for k in range(1, 12, 2))


# -- values the check cannot inspect, or could not before --------------------------------------

NT = collections.namedtuple("NT", "a b")


def append_through_value(state: SharedState, i: int) -> tuple[int, int]:
    v = state.value
    seen = (len(v["cfg"].b), v["n"])
    v["cfg"].b.append(i)
    v["n"] += 1
    return seen


def read_cfg(state: SharedState, i: int) -> tuple[int, int]:
    with state as v:
        return (len(v["cfg"].b), v["n"])


def test_a_namedtuple_in_the_value_lets_no_change_leak():
    """The tester's script: changes through ``.value`` leaked to later tasks and later calls."""
    state = SharedState({"cfg": NT("v1", []), "n": 0})
    with Parallel(n_jobs=2) as parallel:
        for _ in range(2):  # a second call must not start from a changed copy either
            assert parallel(delayed(append_through_value)(state, i) for i in range(4)) == [(0, 0)] * 4
        assert parallel(delayed(read_cfg)(state, i) for i in range(4)) == [(0, 0)] * 4
    # The same again with fresh pools (the tester's exact calls).
    assert Parallel(n_jobs=2)(delayed(append_through_value)(state, i) for i in range(4)) == [(0, 0)] * 4
    assert Parallel(n_jobs=2)(delayed(append_through_value)(state, i) for i in range(4)) == [(0, 0)] * 4
    assert Parallel(n_jobs=2)(delayed(read_cfg)(state, i) for i in range(4)) == [(0, 0)] * 4
    assert state.value == {"cfg": NT("v1", []), "n": 0} and state.version == 0


def append_once(state: SharedState, how: str) -> tuple[int, int, int]:
    """Append once to the task's copy of the container; report how many items it saw after."""
    v = state.value
    CONTAINER_APPEND[how](v["x"])
    return os.getpid(), current_task()[0], CONTAINER_LEN[how](v["x"])


CONTAINERS = {
    "defaultdict": lambda: collections.defaultdict(list),
    "deque": collections.deque,
    "bytearray": bytearray,
    "array": lambda: array.array("i"),
    "OrderedDict": collections.OrderedDict,
    "Counter": collections.Counter,
}
CONTAINER_APPEND = {
    "defaultdict": lambda x: x["k"].append(1),
    "deque": lambda x: x.append(1),
    "bytearray": lambda x: x.append(1),
    "array": lambda x: x.append(1),
    "OrderedDict": lambda x: x.setdefault("k", []).append(1),
    "Counter": lambda x: x.update("k"),
}
CONTAINER_LEN = {
    "defaultdict": lambda x: len(x["k"]),
    "deque": len,
    "bytearray": len,
    "array": len,
    "OrderedDict": lambda x: len(x["k"]),
    "Counter": lambda x: x["k"],
}


@pytest.mark.parametrize("how", list(CONTAINERS))
def test_stdlib_containers_never_leak_to_the_next_task(how):
    state = SharedState({"x": CONTAINERS[how]()})
    out = Parallel(n_jobs=2, batch_size=5)(delayed(append_once)(state, how) for _ in range(10))
    assert same_batch_pairs(out) == 8
    assert [seen for _, _, seen in out] == [1] * 10  # each task saw the parent's empty container
    assert state.value == {"x": CONTAINERS[how]()} and state.version == 0


class Box:
    """A user class whose state is its ``__dict__``: checked like a dict."""

    def __init__(self) -> None:
        self.items: list[int] = []


class SlottedBox:
    """A user class with ``__slots__``: the check cannot inspect it, so it is rebuilt per task."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[int] = []


def fill_box(state: SharedState, write: bool) -> tuple[int, int, int, int]:
    v = state.value
    seen = len(v["box"].items)
    if write:
        v["box"].items.append(1)
        v["n"] += 1
    return os.getpid(), current_task()[0], seen, snapshots.rebuilds


@pytest.mark.parametrize("kind", [Box, SlottedBox])
def test_user_objects_in_the_value(kind):
    state = SharedState({"box": kind(), "n": 0})
    calls = [delayed(fill_box)(state, k % 3 == 0) for k in range(10)]
    with Parallel(n_jobs=2, batch_size=5) as parallel:
        for _ in range(2):  # the second call reuses the copies: it must not see the first's changes
            out = parallel(calls)
            assert same_batch_pairs(out) == 8
            assert [seen for _, _, seen, _ in out] == [0] * 10
            for start in (0, 5):
                counts = [count for *_, count in out[start : start + 5]]
                rebuilt = [count - counts[0] for count in counts]
                if kind is SlottedBox:  # not inspectable: every task after the first pays a rebuild
                    assert rebuilt == [0, 1, 2, 3, 4]
                else:  # inspected: only the task after a change pays one
                    writes = [(start + k) % 3 == 0 for k in range(5)]
                    assert rebuilt == [sum(writes[:k]) for k in range(5)]
    assert state.value["box"].items == [] and state.value["n"] == 0


def read_only(state: SharedState) -> tuple[int, int]:
    with state as v:
        len(v["nt"]), len(v["dd"]), len(v["dq"]), len(v["ba"]), len(v["arr"]), len(v["box"].items)
    _ = state.value
    return os.getpid(), snapshots.rebuilds


def inspectable_value(step: int) -> dict:
    return {
        "nt": NT("v1", [1, 2]),
        "dd": collections.defaultdict(list, k=[1]),
        "od": collections.OrderedDict(a=1),
        "ctr": collections.Counter("abc"),
        "dq": collections.deque([1, 2]),
        "ba": bytearray(b"xy"),
        "arr": array.array("d", [1.0]),
        "box": Box(),
        "fixed": (frozenset({1}), "s", b"b", 1.5, 2j, range(3)),
        "step": step,
    }


def test_inspectable_read_only_values_rebuild_once_per_version_per_worker():
    state = SharedState(inspectable_value(0))
    for version in range(2):
        if version:
            state.set(inspectable_value(1))  # a new version: one more rebuild per worker
        out = Parallel(n_jobs=2, batch_size=5)(delayed(read_only)(state) for _ in range(40))
        by_worker: dict[int, set[int]] = {}
        for pid, count in out:
            by_worker.setdefault(pid, set()).add(count)
        assert all(len(counts) == 1 for counts in by_worker.values())  # no rebuild after the first build


def _count_after_a_nested_call(state, i, inner_n_jobs):
    if i % 5 == 0:  # a call in the worker's own thread, then this task's change
        Parallel(n_jobs=inner_n_jobs)(delayed(abs)(j) for j in range(2))
    with state as v:
        seen = v["count"]
        v["count"] += 1
    return seen


@pytest.mark.parametrize("inner_n_jobs", [1, None])
def test_a_nested_call_in_a_task_does_not_let_later_tasks_see_its_change(inner_n_jobs):
    state = SharedState({"count": 0})
    out = Parallel(n_jobs=2, batch_size=5)(
        delayed(_count_after_a_nested_call)(state, i, inner_n_jobs) for i in range(20)
    )
    assert out == [0] * 20
    assert state.value == {"count": 0}


def _own_change_seen_by_its_threads(state, i):
    import threading

    with state as v:
        v["count"] += 100
    box = []
    t = threading.Thread(target=lambda: box.append(state.value["count"]))
    t.start()
    t.join()
    inner = Parallel(n_jobs=2, backend="threading")(
        delayed(lambda s: s.value["count"])(state) for _ in range(2)
    )
    return box[0], inner, state.value["count"]


def test_a_tasks_own_threads_and_nested_threads_see_its_change():
    state = SharedState({"count": 0})
    out = Parallel(n_jobs=2, batch_size=3)(
        delayed(_own_change_seen_by_its_threads)(state, i) for i in range(6)
    )
    assert out == [(100, [100, 100], 100)] * 6
    assert state.value == {"count": 0}
