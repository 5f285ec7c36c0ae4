"""Worker memory: recycle a worker whose RSS passes ``max_worker_memory``.

Long runs leak: a C extension that never frees, a cache that only grows, a
fragmented heap. With ``max_worker_memory`` set (e.g. ``"2G"``; default off),
each loky worker measures its resident set size (RSS, with psutil) after every
batch, in :func:`after_batch`. Over the limit, it collects garbage and measures
again; still over, it asks loky to retire it. The worker has already built the
batch's reply, so no task is lost, and it takes no further batch, so none is
repeated.

How the worker retires: through loky's own graceful recycling path, not by
killing it (a killed worker breaks loky's executor and fails every batch in
flight). loky's worker loop (``loky.process_executor._process_worker``) checks
its memory after each call item it runs, at most every
``_MEMORY_LEAK_CHECK_DELAY`` seconds, and when it has grown by more than
``_MAX_MEMORY_LEAK_SIZE`` since its first call, it sends its pid to the parent
as a "recycled" message *after* the call's result, waits for the parent to
acknowledge and returns; the parent's manager thread joins it and starts a
replacement while work is pending, without marking the executor broken. Both
thresholds are module globals read by that loop on every check, in the worker
process. To retire a worker, :func:`after_batch` sets them, *in that worker
only*, so that loky's next check fails: the delay to -1 (check now) and the
allowed growth to a large negative number (any size is too much). loky then
recycles the worker right after the current batch returns. Other workers and
the parent are not touched.

One limit of this mechanism: loky takes its reference size after the first call
a worker ever runs and does not check memory on that call, so a fresh worker
found over the limit after its first batch runs one more batch before it is
recycled.

Accounting: a worker that retires writes ``recycled-<pid>`` (its RSS and the
limit) into the session folder; the parent reads those records when it reports
(:func:`recycled_total`, the last ``verbose`` line of a call, :func:`info` for
``picklepool info``). While workers are recycled on purpose, loky's generic
warning about a worker restarted for a memory leak (which names loky's own
300 MB threshold, not this limit) is silenced by one narrow warnings filter,
installed when a call first uses ``max_worker_memory``.
"""

from __future__ import annotations

import gc
import os
import threading
import warnings
from collections import deque
from typing import TYPE_CHECKING, Any

from .limits import WorkerLimits

if TYPE_CHECKING:
    from .control import Session

RECORD_PREFIX = "recycled-"
_NEVER_ENOUGH = -(1 << 62)  # loky's allowed growth when this worker must retire

# -- worker side ------------------------------------------------------------------------

_process: Any = None  # psutil.Process() of this worker, made on first use
_retiring = False  # set once this worker has asked loky to recycle it


def rss() -> int:
    """This process's resident set size in bytes."""
    global _process
    if _process is None or _process.pid != os.getpid():
        import psutil

        _process = psutil.Process()
    return int(_process.memory_info().rss)


def after_batch(limits: WorkerLimits, session: str | None) -> bool:
    """Called by the runner after each batch; True when this worker will be recycled."""
    limit = limits.max_memory
    if limit is None or _retiring:
        return _retiring
    size = rss()
    if size <= limit:
        return False
    gc.collect()
    size = rss()
    if size <= limit or not _ask_loky_to_recycle():
        return False
    if session is not None:
        _write_record(session, size, limit)
    return True


def _in_loky_worker() -> Any:
    """loky's process_executor module if this process is one of its workers, else None."""
    import sys

    pe = sys.modules.get("loky.process_executor")
    if pe is None or getattr(pe, "_CURRENT_DEPTH", 0) < 1:
        return None
    return pe


def _loky_supports_recycling(pe: Any) -> bool:
    return bool(
        getattr(pe, "_USE_PSUTIL", False)
        and hasattr(pe, "_MAX_MEMORY_LEAK_SIZE")
        and hasattr(pe, "_MEMORY_LEAK_CHECK_DELAY")
    )


def retire() -> bool:
    """Ask loky to replace this worker once its current batch has been answered.

    Used after a task was interrupted by its timeout: the interrupted code may have
    left the process in a bad state, so the worker is not trusted with more work.
    """
    return _ask_loky_to_recycle()


def _ask_loky_to_recycle() -> bool:
    global _retiring
    pe = _in_loky_worker()
    if pe is None or not _loky_supports_recycling(pe):
        return False
    pe._MEMORY_LEAK_CHECK_DELAY = -1.0
    pe._MAX_MEMORY_LEAK_SIZE = _NEVER_ENOUGH
    _retiring = True
    return True


def _write_record(session: str, size: int, limit: int) -> None:
    path = os.path.join(session, f"{RECORD_PREFIX}{os.getpid()}")
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(f"{size} {limit}\n")
        os.replace(tmp, path)
    except OSError:  # the session folder is gone: the parent has exited
        pass


# -- parent side ------------------------------------------------------------------------


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
    from ..executor import backends

    current = backends._session  # never create a session folder just to look
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
    from .. import config
    from ..executor.parallel import parse_bytes

    value = config.config_value("max_worker_memory")
    if value is config.NOT_SET:
        found = config.env_setting("max_worker_memory")
        value = found[0] if found else None
    import loky.process_executor as pe

    total = recycled_total()
    return {
        "max_worker_memory": parse_bytes(value, "max_worker_memory"),
        "recycling": _loky_supports_recycling(pe),
        "recycled_workers": total,
        "recent": list(recycles.recent),
    }
