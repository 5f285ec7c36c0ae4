"""What the running batch gave its parent so far, in a file, for a worker that dies before its reply.

A batch's log records (``workers.logback``) and, where the parent redirects them, what its
tasks print (``workers.output``) and the warnings they give (``workers.warnback``) travel
with the batch's reply: a
worker that died before it (a segfault in compiled code, ``os._exit()``, the OOM killer)
took them along, and the program lost the lines its tasks wrote last, those that say
where it crashed, without a word. Each is also appended to a file of the session folder
as it is kept (``j<pid>``, beside the worker's status file ``w<pid>``; one ``os.write``
each), emptied when the batch ends; the parent reads the journal of a worker it finds dead
(:func:`read`, from ``executor.session``) and shows it, in the order it was written,
before the crash's error. A worker that exits removes its own. Opened at the first entry
(a batch that logs, prints and warns nothing writes nothing); not in a child a task forked,
whose entries would be its parent's.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from multiprocessing.util import Finalize

NAME = "j{pid}"
LOG, STDOUT, STDERR, WARNING = 0, 1, 2, 3  # what an entry is: a log row, printed bytes, a warning
_HEAD = struct.Struct("<BI")  # kind, size


class _Journal:
    __slots__ = ("fd", "path", "pid", "written")

    def __init__(self) -> None:
        self.fd, self.pid, self.written = -1, 0, False
        self.path: str | None = None

    def use(self, folder: str | None) -> None:
        """Write to the journal in the session *folder* (None: no journal, as on dask)."""
        path = None if folder is None else os.path.join(folder, NAME.format(pid=os.getpid()))
        if path != self.path or self.pid not in (0, os.getpid()):
            self.close()
            self.path = path

    def write(self, kind: int, data: bytes) -> None:
        """Append an entry (its *kind*, :data:`LOG` or a stream's, and its bytes)."""
        if self.path is None:
            return
        try:
            if self.fd < 0:
                if self.pid not in (0, os.getpid()):
                    return  # (a task's forked child: its copy of the worker's journal)
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
                self.pid = os.getpid()
                Finalize(None, _remove, args=(self.path,), exitpriority=10)  # (at a normal exit)
            elif self.pid != os.getpid():
                return
            os.write(self.fd, _HEAD.pack(kind, len(data)) + data)
            self.written = True
        except Exception:  # noqa: BLE001 - (a full folder: the entries still go with the reply)
            pass

    def clear(self) -> None:
        """The batch's entries went with its reply: a death from now on would show them twice."""
        if self.written and self.pid == os.getpid():
            self.written = False
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)

    def close(self) -> None:
        if self.fd >= 0 and self.pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd, self.path, self.pid, self.written = -1, None, 0, False


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


journal = _Journal()  # this worker's


# the running batch's order of what it gave (:func:`ordered`), while it collects more than one kind
_order: list[list[int]] | None = None


@contextlib.contextmanager
def ordered() -> Iterator[list[list[int]]]:
    """Inside, what the batch's tasks give the parent (printed text, log records, warnings:
    :func:`mark`) is noted in the order they give it, in the list it yields: ``[kind,
    count]`` runs, *count* the number of that kind (bytes of a stream, records, warnings)
    given by the run's end, so that the parent gives them back in that order
    (``executor.printed.show``), not each kind in turn."""
    global _order
    order: list[list[int]] = []
    outer, _order = _order, order
    try:
        yield order
    finally:
        _order = outer  # (a batch run inside another's task: the outer one's again)


def mark(kind: int, count: int) -> None:
    """*count* of *kind* (:data:`LOG`, :data:`STDOUT`, :data:`STDERR`, :data:`WARNING`) were
    given so far in the running batch (:func:`ordered`)."""
    order = _order
    if order is not None:
        if order and order[-1][0] == kind:
            order[-1][1] = count
        else:
            order.append([kind, count])


def read(folder: str, pid: int) -> list[tuple[int, bytes]]:
    """Parent side: the entries ``(kind, data)`` in the journal of the dead worker *pid*, in
    the order they were written (the last one, cut short by the death, left out); the file
    is removed."""
    path = os.path.join(folder, NAME.format(pid=pid))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    _remove(path)
    entries, at = [], 0
    while at + _HEAD.size <= len(data):
        kind, size = _HEAD.unpack_from(data, at)
        at += _HEAD.size
        if at + size > len(data):
            break
        entries.append((kind, data[at : at + size]))
        at += size
    return entries
