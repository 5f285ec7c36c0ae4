"""Which item of a pickled list does not unpickle: the task an error about a reply names.

A batch's results travel as one pickle, ``(values, seconds)`` (``wire.pack_results``).
When the parent cannot unpickle it, :func:`first_failing_item` finds which value
fails: it reads the pickle's opcodes (``pickletools.genops``), marks where each
item of the list ends, and unpickles shorter and shorter prefixes of the list
(each closed as a pickle of its own: memo references only point backwards), a
binary search. Only on an error path; a pickle of another shape gives None.
"""

from __future__ import annotations

import pickletools
from collections.abc import Callable
from typing import Any

_MARK = pickletools.markobject
_APPENDS, _STOP = b"e", b"."


def _ops(data: bytes) -> list[tuple[Any, Any, int]] | None:
    """*data*'s opcodes, arguments and offsets (``pickletools.genops``), or None if it is not a pickle."""
    try:
        return [(op, arg, pos or 0) for op, arg, pos in pickletools.genops(data)]
    except Exception:  # noqa: BLE001 - not a pickle this module can read: cannot tell
        return None


def item_ends(data: bytes, ops: list[tuple[Any, Any, int]] | None = None) -> list[tuple[int, bool]] | None:
    """For each item of the list *data* starts with (its first object), the offset where the
    item's opcodes end, and whether it is appended by ``APPENDS`` (a group after a mark)
    rather than ``APPEND``; None if *data* does not start so, or is not a pickle."""
    ops = _ops(data) if ops is None else ops  # (read once by first_failing_item)
    if ops is None:
        return None
    ends: list[tuple[int, bool]] = []
    levels = [0]  # objects on the stack, per mark level
    found = False
    group: list[tuple[int, int]] = []  # (count at the group's level after the op, op's end)
    grouping = False  # inside a group of the list's items (after its MARK)
    for k, (op, _arg, _pos) in enumerate(ops):
        end = ops[k + 1][2] if k + 1 < len(ops) else len(data)
        if not found:
            if op.name in ("PROTO", "FRAME"):
                continue
            if op.name != "EMPTY_LIST" or levels != [0]:
                return None
            found = True
            levels[0] = 1
            continue
        opens = op.name == "MARK" and levels == [1]  # a group of the list's own items begins
        before, after = op.stack_before, op.stack_after
        if _MARK in before:
            levels.pop()
            levels[-1] -= before.index(_MARK)
        else:
            levels[-1] -= len(before)
        if after == [_MARK]:
            levels.append(0)
        else:
            levels[-1] += len(after)
        if not levels or levels[0] < 1:  # the list was consumed (the reply's tuple): done
            break
        if opens:
            group, grouping = [], True
        if grouping and len(levels) == 1:  # the group's end (an inner list's leaves two levels)
            if op.name == "APPENDS":  # else the mark was a lone item's own (a tuple of 4)
                _close_group(group, ends)
            group, grouping = [], False
        elif grouping:
            group.append((levels[1] + (len(levels) > 2), end))
        elif op.name == "APPEND" and levels == [1]:  # one item, appended alone
            ends.append((end, False))
    return ends or None


def _close_group(group: list[tuple[int, int]], ends: list[tuple[int, bool]]) -> None:
    """The end of each item of a group: an op belongs to the item its group's count ends at
    (the smallest count from that op to the group's end), as later items only add to it."""
    owner_end: dict[int, int] = {}
    low = None
    for count, end in reversed(group):
        low = count if low is None or count < low else low
        owner_end.setdefault(low, end)  # walking back: the first seen is the item's last op
    for count in sorted(owner_end):
        if count >= 1:
            ends.append((owner_end[count], True))


def first_failing_item(loads: Callable[[bytes], Any], data: bytes) -> int | None:
    """The index of the first item of the list at the start of *data* that *loads* cannot
    unpickle (the items before it do), or None when it cannot be told."""
    ops = _ops(data)
    if ops is None:
        return None
    ends = item_ends(data, ops)
    if not ends:
        return None
    body = _without_frames(data, ops)

    def fails(i: int) -> bool:
        end, grouped = ends[i]
        prefix = body(end) + (_APPENDS if grouped else b"") + _STOP
        try:
            loads(prefix)
        except Exception:  # noqa: BLE001 - whatever the item raises
            return True
        return False

    if not fails(len(ends) - 1):
        return None
    lo, hi = 0, len(ends) - 1  # fails(hi) holds
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _without_frames(data: bytes, ops: list[tuple[Any, Any, int]]) -> Callable[[int], bytes]:
    """A function giving *data* up to an offset with its ``FRAME`` opcodes left out
    (a frame announces its length: a prefix cut inside one would read as truncated)."""
    frames = [(pos, pos + 9) for op, _arg, pos in ops if op.name == "FRAME"]  # opcode and 8-byte size

    def upto(end: int) -> bytes:
        parts, at = [], 0
        for start, stop in frames:
            if start >= end:
                break
            parts.append(data[at:start])
            at = stop
        parts.append(data[at:end])
        return b"".join(parts)

    return upto
