"""A worker's copy of a SharedState: reads (even under its lock) are free, changes never leak."""

from __future__ import annotations

import array
import collections
import os
import types
from collections import Counter

import numpy as np
import pytest

from picklepool import Parallel, SharedState, delayed
from picklepool.pickler import frames
from picklepool.pickler.base import CloudPickler
from picklepool.workers import changes, snapshots

MB = 1 << 20


def value() -> dict:
    return {
        "w": np.arange(2 * MB // 8, dtype=np.float64),  # 2 MB: out of band, in the map
        "small": np.zeros(4),
        "list": list(range(1000, 101_000)),
        "nested": {"rows": [{"x": 1, "tags": {"a", "b"}}, (1.0, [2, 3])]},
        "step": 1,
    }


PRISTINE = value()


def read_under_lock(state: SharedState, i: int) -> tuple[int, int, int]:
    """The seed's pattern: read under the lock."""
    with state as v:
        return os.getpid(), snapshots.rebuilds, int(v["list"][i % 100])


# Each takes the worker's value and changes it in place, one way.
WRITES = {
    "array element": lambda v: v["w"].__setitem__(-1, -1.0),
    "array in place op": lambda v: v["small"].__iadd__(1.0),
    "array shape": lambda v: setattr(v["w"], "shape", (2, -1)),
    "list append": lambda v: v["list"].append(0),
    "list item, equal but another type": lambda v: v["list"].__setitem__(0, 1000.0),
    "dict item, equal but another type": lambda v: v.__setitem__("step", True),
    "dict key added": lambda v: v.__setitem__("new", 0),
    "nested list": lambda v: v["nested"]["rows"][1][1].append(4),
    "nested dict": lambda v: v["nested"]["rows"][0].__setitem__("x", 2),
    "set": lambda v: v["nested"]["rows"][0]["tags"].add("c"),
}


def same_as_sent(v: dict) -> bool:
    return bool(
        np.array_equal(v["w"], PRISTINE["w"])
        and v["w"].shape == PRISTINE["w"].shape
        and np.array_equal(v["small"], PRISTINE["small"])
        and v["list"] == PRISTINE["list"]
        and type(v["list"][0]) is int
        and v["nested"] == PRISTINE["nested"]
        and type(v["step"]) is int
        and set(v) == set(PRISTINE)
    )


def write_then_report(state: SharedState, how: str) -> tuple[int, bool]:
    with state as v:
        seen = same_as_sent(v)
        WRITES[how](v)
    return os.getpid(), seen


def report(state: SharedState) -> tuple[int, bool, int]:
    with state as v:
        return os.getpid(), same_as_sent(v), snapshots.rebuilds


# -- in worker processes ------------------------------------------------------------------


def test_reading_under_the_lock_rebuilds_once_per_worker():
    state = SharedState(value())
    with state as v:  # a new version
        v["step"] = 1
    out = Parallel(n_jobs=2, batch_size=1)(delayed(read_under_lock)(state, i) for i in range(200))
    assert [x for _, _, x in out] == [1000 + i % 100 for i in range(200)]
    counts: dict[int, set[int]] = {}
    for pid, rebuilds, _ in out:
        counts.setdefault(pid, set()).add(rebuilds)
    # Every task on a worker saw the same rebuild count: one rebuild, then none.
    assert all(len(seen) == 1 for seen in counts.values())
    assert state.version == 1  # reads in workers never move the parent's version


@pytest.mark.parametrize("how", list(WRITES))
def test_a_change_in_one_task_never_reaches_the_next(how):
    state = SharedState(value())
    out = Parallel(n_jobs=2, batch_size=1)(delayed(write_then_report)(state, how) for _ in range(12))
    assert all(seen for _, seen in out), how
    assert max(Counter(pid for pid, _ in out).values()) >= 2  # a worker ran several of them
    assert same_as_sent(state.value)


def test_a_changed_copy_is_rebuilt_once_then_reads_are_free_again():
    state = SharedState(value())
    with Parallel(n_jobs=2, batch_size=1) as parallel:
        parallel(delayed(write_then_report)(state, "array element") for _ in range(6))
        out = parallel(delayed(report)(state) for _ in range(40))
    assert all(seen for _, seen, _ in out)
    counts: dict[int, set[int]] = {}
    for pid, _, rebuilds in out:
        counts.setdefault(pid, set()).add(rebuilds)
    assert all(len(seen) == 1 for seen in counts.values())


def test_a_value_that_cannot_be_watched_is_rebuilt_after_each_with():
    state = SharedState({"obj": Opaque(), "n": 1})
    out = Parallel(n_jobs=2, batch_size=1)(delayed(poke_opaque)(state) for _ in range(10))
    assert out == [0] * 10


class Opaque:
    def __init__(self) -> None:
        self.hits = 0


def poke_opaque(state: SharedState) -> int:
    with state as v:
        seen = v["obj"].hits
        v["obj"].hits += 1
    return int(seen)


# -- the check itself, in this process ------------------------------------------------------


def mapped(tmp_path, obj):
    path = tmp_path / "blob"
    path.write_bytes(b"".join(frames.pack(CloudPickler(), obj)))
    return snapshots.load_mapped(CloudPickler(), str(path))


@pytest.mark.parametrize("how", list(WRITES))
def test_every_kind_of_change_is_seen(tmp_path, how):
    got, region = mapped(tmp_path, value())
    baseline = changes.Baseline.watch(got, region)
    assert baseline is not None and not baseline.changed()
    float(got["w"].sum()), list(got["list"]), repr(got["nested"])  # reading changes nothing
    assert not baseline.changed()
    WRITES[how](got)
    assert baseline.changed()


class Slotted:
    __slots__ = ("hits",)

    def __init__(self) -> None:
        self.hits = 0


def test_what_cannot_be_watched(tmp_path):
    assert changes.Baseline.watch({"o": Slotted()}, None) is None  # state outside a __dict__
    assert changes.Baseline.watch({"a": np.empty(2, dtype=object)}, None) is None
    # A large array that is not a view of the map: only its whole content could tell.
    assert changes.Baseline.watch({"a": np.zeros(2 * MB // 8)}, None) is None
    small = changes.Baseline.watch({"a": np.zeros(8), "t": (1, "x", None, b"y", 2j)}, None)
    assert small is not None


def test_shared_and_cyclic_containers(tmp_path):
    inner = [1, 2]
    loop: list = [inner, inner]
    loop.append(loop)
    got, region = mapped(tmp_path, {"loop": loop})
    baseline = changes.Baseline.watch(got, region)
    assert baseline is not None and not baseline.changed()
    got["loop"][2][0].append(3)
    assert baseline.changed()


def test_same_items_is_identity_not_equality():
    a = [1, 2.0, "x"]
    assert changes.same_items(a, a.copy())
    assert not changes.same_items(a, [1, 2, "x"])  # 2 == 2.0, yet another object
    assert not changes.same_items(a, a[:2])
    assert changes.same_items([], [])


class PlainBox:
    def __init__(self) -> None:
        self.items: list[int] = []


@pytest.mark.parametrize(
    "make, write",
    [
        (lambda: {"t": collections.namedtuple("P", "a")([])}, lambda v: v["t"].a.append(1)),
        (lambda: {"d": collections.defaultdict(list)}, lambda v: v["d"]["k"]),
        (lambda: {"d": collections.defaultdict(list)}, lambda v: setattr(v["d"], "default_factory", set)),
        (lambda: {"d": collections.OrderedDict(a=1, b=2)}, lambda v: v["d"].move_to_end("a")),
        (lambda: {"d": Counter("ab")}, lambda v: v["d"].update("a")),
        (lambda: {"q": collections.deque([1, 2])}, lambda v: v["q"].rotate(1)),
        (lambda: {"b": bytearray(b"ab")}, lambda v: v["b"].__setitem__(0, 0)),
        (lambda: {"a": array.array("d", [1.0])}, lambda v: v["a"].__setitem__(0, 2.0)),
        (lambda: {"o": PlainBox()}, lambda v: v["o"].items.append(1)),
        (lambda: {"o": PlainBox()}, lambda v: setattr(v["o"], "new", 1)),
        (lambda: {"o": PlainBox()}, lambda v: setattr(v["o"], "__class__", Opaque)),
        (lambda: {"o": types.SimpleNamespace(a=[])}, lambda v: v["o"].a.append(1)),
    ],
)
def test_stdlib_and_plain_objects_are_inspected(make, write):
    got = make()
    baseline = changes.Baseline.watch(got, None)
    assert baseline is not None and not baseline.changed()
    write(got)
    assert baseline.changed()


def _counter():
    n = 0

    def count(i=0, *, k=0):
        nonlocal n
        n += 1
        return n

    return count


@pytest.mark.parametrize(
    "rebind",
    [
        lambda f: f(),  # nonlocal n: the cell holds another int
        lambda f: setattr(f, "__defaults__", (1,)),
        lambda f: setattr(f, "__kwdefaults__", {"k": 1}),
        lambda f: setattr(f, "__code__", f.__code__.replace(co_name="other")),
        lambda f: setattr(f, "__dict__", {"calls": 1}),
    ],
)
def test_what_a_task_rebinds_on_a_function_rebuilt_by_value_is_seen(rebind):
    import cloudpickle

    got = cloudpickle.loads(cloudpickle.dumps(_counter()))  # by value, as a worker's copy
    baseline = changes.watch_function(got)
    assert baseline is not None and not baseline.changed()
    rebind(got)
    assert baseline.changed()
