"""The kernel's write tracking (userfaultfd, asynchronous write-protect) and its fallback."""

from __future__ import annotations

import ctypes
import mmap

import pytest

from picklepool.workers import changes, writewatch


def armed_list(n: int = 100_000) -> tuple[list[int], tuple[int, int]]:
    items = list(range(1000, 1000 + n))
    items_field = id(items) + list.__basicsize__ - 2 * ctypes.sizeof(ctypes.c_void_p)  # ob_item
    pages = writewatch.pages_within(ctypes.c_void_p.from_address(items_field).value or 0, n * 8)
    if not writewatch.arm(*pages):
        pytest.skip("no asynchronous userfaultfd write-protect here (Linux 6.7+, not refused by seccomp)")
    return items, pages


def test_reads_are_not_writes_and_writes_are_seen():
    items, pages = armed_list()
    try:
        assert writewatch.written(*pages) is False
        assert sum(items) and sorted(items, reverse=True)  # reading changes nothing
        assert writewatch.written(*pages) is False
        items[50_000] = 7  # the writer does not wait: the kernel lifts the protection itself
        assert writewatch.written(*pages) is True
        assert writewatch.rearm(*pages) and writewatch.written(*pages) is False
    finally:
        writewatch.disarm(*pages)
    assert writewatch.written(*pages) is None  # no longer armed: cannot tell


def test_pages_within():
    page = mmap.PAGESIZE
    assert writewatch.pages_within(page + 8, 3 * page) == (2 * page, 2 * page)
    assert writewatch.pages_within(page + 8, 100) == (2 * page, 0)


@pytest.fixture(params=["kernel", "compared"])
def tracking(request, monkeypatch):
    """Both ways a large list is watched: the kernel's write tracking, or comparing its items."""
    if request.param == "compared":
        monkeypatch.setattr(writewatch, "arm", lambda start, length: False)
    return request.param


def test_a_large_list_is_watched_either_way(tracking):
    items = list(range(100_000))
    baseline = changes.Baseline.watch({"l": items}, None)
    assert baseline is not None
    assert bool(baseline.tracked) == (tracking == "kernel" and writewatch.available())
    assert not baseline.changed()
    items[0] = items[0]  # written, yet the very same item: no change (and watched again)
    assert not baseline.changed() and not baseline.changed()
    items[-1] = -1  # in the last partial page
    assert baseline.changed()


@pytest.mark.parametrize("how", ["first", "middle", "last", "append", "pop", "sort", "clear"])
def test_every_change_to_a_large_list_is_seen(tracking, how):
    items = list(range(100_000))
    baseline = changes.Baseline.watch([items], None)
    assert baseline is not None and not baseline.changed()
    if how in ("first", "middle", "last"):
        items[{"first": 0, "middle": 50_000, "last": -1}[how]] = object()
    elif how == "append":
        items.append(1)
    elif how == "pop":
        items.pop()
    elif how == "sort":
        items.sort(reverse=True)
    else:
        items.clear()
    assert baseline.changed()


def test_a_dropped_baseline_disarms_its_lists():
    items = list(range(100_000))
    baseline = changes.Baseline.watch({"l": items}, None)
    assert baseline is not None
    ranges = [pages for *_, pages in baseline.tracked]
    del baseline
    assert all(writewatch.written(*pages) is None for pages in ranges)
