"""Failure injection for the failure matrix (loky's ``crash_cases``): importable by workers.

Each *kind* of failure is done by :func:`act`; objects below do it at one *stage*
of a task's trip: pickled in the parent, unpickled in the worker, run, its result
pickled in the worker, unpickled in the parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

KINDS = ("raise", "unrebuildable", "os_exit", "sigkill", "segfault", "sys_exit", "interrupt")
PROCESS_KILLERS = ("os_exit", "sigkill", "segfault")


class LedgerMismatch(Exception):
    """An exception whose ``__init__`` does not take its own ``args`` back."""

    def __init__(self, account: str, expected: int, found: int) -> None:
        super().__init__(f"{account}: {expected} != {found}")
        self.account = account


def act(kind: str) -> None:
    if kind == "raise":
        raise ValueError("boom")
    if kind == "unrebuildable":
        raise LedgerMismatch("acct-7", 10, 12)
    if kind == "os_exit":
        os._exit(3)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "segfault":
        ctypes.string_at(0)
    if kind == "sys_exit":
        sys.exit(0)
    if kind == "interrupt":
        raise KeyboardInterrupt
    raise AssertionError(kind)


def crash_task(kind: str, i: int) -> int:
    if kind in KINDS:
        act(kind)
    return i


def identity_task(x: object) -> object:
    return x


def pair(a: object, b: object) -> tuple[object, object]:
    return a, b


def _act_unless_in(pid: int, kind: str) -> str:
    if os.getpid() != pid:
        act(kind)
    return "loaded"


def _act_in(pid: int, kind: str) -> str:
    if os.getpid() == pid:
        act(kind)
    return "loaded"


class FailsOnLoad:
    """Unpickles in the worker by doing *kind* (the parent never unpickles arguments)."""

    def __init__(self, kind: str) -> None:
        self.kind, self.parent = kind, os.getpid()

    def __reduce__(self) -> object:
        return _act_unless_in, (self.parent, self.kind)

    def __repr__(self) -> str:
        return f"FailsOnLoad({self.kind!r})"


class FailsOnDump:
    """A result that does *kind* when it is pickled (in the worker)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __reduce__(self) -> object:
        act(self.kind)
        return str, ()


def make_fails_on_dump(kind: str) -> FailsOnDump:
    return FailsOnDump(kind)


class FailsInParent:
    """A result that unpickles by doing *kind* in the parent whose pid it carries."""

    def __init__(self, kind: str, parent: int) -> None:
        self.kind, self.parent = kind, parent

    def __reduce__(self) -> object:
        return _act_in, (self.parent, self.kind)


def make_fails_in_parent(kind: str, parent: int) -> FailsInParent:
    return FailsInParent(kind, parent)


class FailsToPickle:
    """An argument the parent cannot pickle."""

    def __reduce__(self) -> object:
        raise ValueError("this argument refuses to be pickled")

    def __repr__(self) -> str:
        return "FailsToPickle()"


def _cannot_rebuild() -> None:
    raise RuntimeError("cannot rebuild")


class FailsToRebuild:
    """An argument whose rebuild raises, in the worker and in the parent alike."""

    def __reduce__(self) -> object:
        return _cannot_rebuild, ()

    def __repr__(self) -> str:
        return "FailsToRebuild()"


def half_a_result_then_die(i: int) -> None:
    """Write half a result into loky's result pipe, then die (as a worker the OOM killer
    ends while it sends a large result): loky's manager thread waits for the rest."""
    import gc
    import struct

    from loky.backend.queues import SimpleQueue

    results = next(o for o in gc.get_objects() if isinstance(o, SimpleQueue))
    os.write(results._writer.fileno(), struct.pack("!i", 1 << 20) + b"x" * 100)
    os._exit(9)
