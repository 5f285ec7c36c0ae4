"""What killed workers leave behind, removed as soon as they are killed.

A worker killed with SIGKILL (Ctrl-C in the parent, a worker past its exit
deadline, see ``executor.reaper``) runs no cleanup of its own. Its nested calls'
folders (``picklepool-<pid>-*`` in ``/dev/shm`` or the temp folder) and its nested
loky pools' named semaphores (``/dev/shm/sem.loky-<pid>-*``), and those of the
processes below it, would stay until the parent exits, when loky's resource
tracker removes them with a "leaked" warning: a long session (a notebook) would
collect them. :func:`remove` takes them away at once, and off the tracker.

The same holds for a worker that died of its own (a segfault, ``os._exit``, the
OOM killer) and for those loky kills itself when that breaks their pool:
:func:`sweep` finds them among the workers that reported to the session folder.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from typing import Any

from .. import lokycompat
from ..workers.control import shm_root

_FOLDER = re.compile(r"picklepool-(\d+)-")
_SEMAPHORE = re.compile(r"sem\.(loky-(\d+)-.*)")  # /dev/shm's file of loky's "/loky-<pid>-<n>"


def remove(pids: Iterable[int]) -> list[str]:
    """Remove the folders and semaphores processes *pids* (all killed) made; return their paths."""
    dead = set(pids) - {os.getpid()}
    if not dead:
        return []
    removed: list[str] = []
    forget: list[tuple[str, str]] = []
    shm = shm_root()
    for root in dict.fromkeys((shm, lokycompat.temp_root())):
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            path = os.path.join(root, name)
            m = _FOLDER.match(name)
            if m is not None and int(m[1]) in dead and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
                forget.append((path, "folder"))
                continue
            m = _SEMAPHORE.fullmatch(name) if root == shm else None
            if m is not None and int(m[2]) in dead:
                try:
                    os.unlink(path)  # what sem_unlink("/loky-...") does on Linux
                except OSError:
                    continue
                removed.append(path)
                forget.append(("/" + m[1], "semlock"))
    lokycompat.forget_resources(forget)
    return removed


def exited(pid: int) -> bool:
    """True if *pid*, a worker this process started, has exited (gone, or a zombie).

    False while it runs, and for a pid another process holds now (not this
    process's child: the worker was reaped and its pid reused; what is named
    after that pid is the new process's).
    """
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def sweep(session: Any, also: Iterable[int] = ()) -> dict[int, Any]:
    """Remove what the exited workers among *session*'s (and *also*) left; forget them.

    *session* is the parent's ``executor.session.Session`` (or None); its status
    files name every worker that ran a batch. Returns each exited worker's last
    status (``Session.worker_status``, None if it had none), read before its file goes.
    """
    pids = set(also) | set(session.worker_pids() if session is not None else ())
    ending = lokycompat.ending_workers() if pids else set()  # loky may report them dead already
    last = {}
    for pid in pids:
        if pid in ending or exited(pid):
            last[pid] = session.worker_status(pid) if session is not None else None
            if session is not None:
                session.forget_worker(pid, last[pid])
    remove(last)
    return last
