"""Parent side of worker memory recycling: the records, the count, ``picklepool info``.

Workers recycle themselves (``workers.memory``, which explains how); each leaves a
``recycled-<pid>`` record in the session folder, which :class:`RecycleLog` reads
when the parent reports (:func:`recycled_total`, the last ``verbose`` line of a
call, :func:`info` for ``picklepool info``).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import deque
from typing import Any

from .. import lokycompat, settings
from ..workers.memory import RECORD_PREFIX
from .session import Session, current_session


class RecycleLog:
    """Parent side: the recycling records workers left in the session folder."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.recent: deque[dict[str, int]] = deque(maxlen=20)

    def collect(self, session: Session) -> int:
        """Move the records found in *session*'s folder into this log; return the count."""
        import psutil

        folder = session.path
        with self._lock:
            try:
                names = [n for n in os.listdir(folder) if n.startswith(RECORD_PREFIX)]
            except OSError:
                names = []
            for name in names:
                pid_text = name[len(RECORD_PREFIX) :]
                if not pid_text.isdigit():
                    continue  # a record still being written (.tmp)
                path = os.path.join(folder, name)
                try:
                    with open(path) as f:
                        size, limit = (int(v) for v in f.read().split())
                    os.unlink(path)
                except (OSError, ValueError):
                    continue
                self.count += 1
                self.recent.append({"pid": int(pid_text), "rss": size, "limit": limit})
                if not psutil.pid_exists(int(pid_text)):  # drop its status file once it exited
                    session.forget_worker(int(pid_text))
            return self.count


recycles = RecycleLog()  # one per parent process


def recycled_total() -> int:
    """How many workers this process's calls recycled for memory, so far."""
    current = current_session()  # never create a session folder just to look
    if current is None:
        return recycles.count
    return recycles.collect(current)


def prepare_parent() -> None:
    """Silence loky's generic recycling warning (picklepool reports recycling itself)."""
    warnings.filterwarnings(
        "ignore",
        message="A worker was restarted while some jobs were given to the executor",
        category=UserWarning,
    )


def info() -> dict[str, Any]:
    """Worker memory for ``picklepool info``: plain values, safe to print.

    Keys: ``max_worker_memory`` (bytes, from ``parallel_config`` or
    ``PICKLEPOOL_MAX_WORKER_MEMORY``; None when off), ``recycling`` (True when
    the installed loky has the recycling path this module uses),
    ``recycled_workers`` (count in this process) and ``recent`` (the last
    records: pid, rss, limit).
    """
    value, source = settings.resolve("max_worker_memory")
    total = recycled_total()
    return {
        "max_worker_memory": settings.parse_bytes(value, "max_worker_memory", source),
        "recycling": lokycompat.supports_recycling(),
        "recycled_workers": total,
        "recent": list(recycles.recent),
    }
