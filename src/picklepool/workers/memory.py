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

loky takes its reference size after the first job a worker runs and checks
memory only from the second on; a worker found over the limit in its first batch
is made to check after it anyway (``lokycompat.recycle_after_batch``: a no-op job
comes next), so it takes no second batch.

Accounting: a worker that retires writes ``recycled-<pid>`` (its RSS and the
limit) into the session folder; the parent reads those records when it reports
(``executor.memory``). While workers are recycled on purpose, loky's generic
warning about a worker restarted for a memory leak (which names loky's own
300 MB threshold, not this limit) is silenced by one narrow warnings filter,
installed when a call first uses ``max_worker_memory``.
"""

from __future__ import annotations

import gc
import os
from typing import Any

from .. import lokycompat
from ..wire import WorkerLimits

RECORD_PREFIX = "recycled-"

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


def retire() -> bool:
    """Ask loky to replace this worker once its current batch has been answered.

    Used after a task was interrupted by its timeout: the interrupted code may have
    left the process in a bad state, so the worker is not trusted with more work.
    """
    return _ask_loky_to_recycle()


def _ask_loky_to_recycle() -> bool:
    global _retiring
    if not lokycompat.recycle_after_batch():
        return False
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
