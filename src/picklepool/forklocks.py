"""Module locks a forked child gets anew.

A process forked while another thread holds a lock (``os.fork()``, a fork-started
``multiprocessing.Process``) gets a copy of the lock that stays held for ever: the
child's first use of it waits for ever. :func:`renew_in_child` replaces a module's lock
with a new one in every forked child (``os.register_at_fork``), for modules whose fork
hook has nothing else to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def renew_in_child(namespace: dict[str, Any], name: str, make: Callable[[], Any]) -> None:
    """In every child forked from now on, set ``namespace[name]`` (a module's ``globals()``)
    to ``make()``, a new lock."""
    if not hasattr(os, "register_at_fork"):
        return

    def renew() -> None:
        namespace[name] = make()

    os.register_at_fork(after_in_child=renew)


# This process's id, kept: ``os.getpid()`` is a system call each time (glibc keeps no copy since
# 2.25), ~0.7 us on a VM, and a warm call asked it 11 times (whether it runs in a forked child of
# the process that made its pool, its channel, its tokens). Set anew in every forked child by
# the hook below, as picklepool's other per-process state is (its pools, lanes and session are
# forgotten there by such hooks too: a child forked without them, by C code that skips
# ``PyOS_AfterFork_Child``, was never one picklepool's fork handling covered).
_pid = os.getpid()


def getpid() -> int:
    """``os.getpid()``, without its system call."""
    return _pid


def _new_pid() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_pid)
