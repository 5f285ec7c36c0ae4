"""The parent's backstop for tasks that ignore their timeout.

Workers interrupt a task at ``timeout`` themselves (``workers.tasks``); a task
stuck in compiled code does not notice. While a call with a timeout waits for
replies, :meth:`Watchdog.check` reads the workers' status files and kills a
worker whose task ran ``HARD_TIMEOUT_GRACE`` seconds past the timeout, or that spent
as long loading a batch (an argument's ``__setstate__`` waiting for a server) or pickling
its results, which no interruption covers. loky then reports the worker lost, and the
call fails with ``TaskTimeoutError`` naming the task (``executor.replies``).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

HARD_TIMEOUT_GRACE = 2.0  # seconds past timeout before a stuck worker is killed


class Watchdog:
    def __init__(self, session: Any, call_id: int, timeout: float) -> None:
        self.session, self.call_id, self.timeout = session, call_id, timeout
        # (task, pid, stage: workers.control's RUNNING, LOADING or DUMPING) killed by the backstop
        self.overdue: tuple[int, int, int] | None = None
        self.poll = min(max(timeout / 4, 0.05), 1.0)  # seconds between two checks

    def check(self) -> None:
        """Kill every worker whose task of this call is past timeout + grace."""
        limit = (self.timeout + HARD_TIMEOUT_GRACE) * 1e9
        now = time.monotonic_ns()
        for pid in self.session.worker_pids():
            status = self.session.worker_status(pid)
            if status is None or status[0] != self.call_id or status[1] < 0 or status[2] <= 0:
                continue
            if now - status[2] > limit:
                self.overdue = (status[1], pid, status[3])
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
