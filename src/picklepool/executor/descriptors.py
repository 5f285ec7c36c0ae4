"""A process out of file descriptors: say so, and what to do, instead of a bare errno.

A program that holds most of its descriptors (files it never closes, many sockets, a low
``ulimit -n``) makes picklepool's own work fail: starting its workers (their pipes, loky's
resource tracker), its shared-memory session, a worker started to replace one. What came out
was ``OSError: [Errno 24] Too many open files`` from deep in loky or ``multiprocessing``,
which says neither who needed them nor what to do (joblib's the same). :func:`explained`
gives the error that says it; the callers raise it *from* the original (its traceback kept).
A task's own error of that kind is its own (it names its task, ``executor.replies``): left.
"""

from __future__ import annotations

import errno
import os

from ..errors import RemoteTraceback

PER_WORKER = 8  # about as many as a worker takes in this process (its pipes, lane, status)


def explained(exc: BaseException, n_workers: int | None = None) -> OSError | None:
    """An ``OSError`` saying this process ran out of descriptors, for *exc* when it is
    picklepool's own (not a task's) EMFILE or ENFILE; else None."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.EMFILE, errno.ENFILE):
        return None
    if isinstance(exc.__cause__, RemoteTraceback) or getattr(exc, "__notes__", None):
        return None  # a task's (its traceback attached, its task named): not ours to explain
    if getattr(exc, "_picklepool_explained", False):
        return None
    if exc.errno == errno.ENFILE:
        what = "the system ran out of open files (ENFILE: its limit for all processes)"
        fix = "Close files and sockets other programs, or this one, no longer use."
    else:
        what = f"this process ran out of file descriptors ({_counts()})"
        fix = (
            "Close the files and sockets the program no longer uses, or raise the limit: "
            "`ulimit -n 4096` in the shell before starting it, or in the script "
            "`resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))` with "
            "`soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)`."
        )
    pool = f" (n_jobs={n_workers}: about {PER_WORKER * n_workers} for its workers)" if n_workers else ""
    new = OSError(
        exc.errno,
        f"{what}: picklepool could not start its workers or send the call, which need "
        f"descriptors of their own{pool}: {exc.strerror}. {fix}",
    )
    new._picklepool_explained = True  # type: ignore[attr-defined]
    return new


def _counts() -> str:
    """ "N open, limit M", as far as this platform tells."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        limit = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    except (ImportError, OSError, ValueError):
        limit = "?"
    try:
        opened = str(len(os.listdir("/proc/self/fd")))
    except OSError:  # (needs one itself: none left)
        opened = "all"
    return f"{opened} open, RLIMIT_NOFILE {limit}"
