"""What killed workers leave behind, removed as soon as they are killed.

A worker killed with SIGKILL (Ctrl-C in the parent, a worker past its exit
deadline, see ``executor.reaper``) runs no cleanup of its own. Its nested calls'
folders (``picklepool-<pid>-*`` in ``/dev/shm`` or the temp folder) and its nested
loky pools' named semaphores (``/dev/shm/sem.loky-<pid>-*``), and those of the
processes below it, would stay until the parent exits, when loky's resource
tracker removes them with a "leaked" warning: a long session (a notebook) would
collect them. :func:`remove` takes them away at once, and off the tracker.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable

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
    for root in dict.fromkeys((shm, tempfile.gettempdir())):
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
