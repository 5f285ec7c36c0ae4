"""A worker's direct lane to its parent: batches without loky's queues (``executor.lanes``).

:func:`serve` runs as one loky job in a warm worker. It connects to the parent's
socket in the session folder and answers batches there, one at a time, each
exactly as loky would run it (``workers.packed.run_packed``), until the parent
sends the empty message (stop) or closes the socket. Then the job returns and the
worker is loky's again. The parent stops a lane idle too long: were the worker to
leave on its own, a batch the parent wrote meanwhile would be lost.

Each message from the parent is the packed ``(fn, args)`` of one batch; each
answer is one byte, ``STAYING`` or ``LEAVING``, then ``pickle.dumps((True,
result))``, or ``(False, exception)`` for an exception that escaped the batch
runner (loky would have set it on the job's future). The first message from the
worker is its lane number.

loky's memory-leak protection runs between its jobs: at most every
``_MEMORY_LEAK_CHECK_DELAY`` seconds it measures the worker's memory, and a worker
grown by ``_MAX_MEMORY_LEAK_SIZE`` (300 MB, ``LOKY_MAX_MEMORY_LEAK_SIZE``) since
its first job is replaced. A lane is one job: it makes the same check between its
batches (growth since the lane began), and a worker over the limit answers its
batch with ``LEAVING`` and ends the lane, having set loky's check to replace it
at once (``lokycompat.recycle_after_batch``: also when the lane was the worker's
first job, which loky's check skips). The parent gives such a lane no more batches.
"""

from __future__ import annotations

import gc
import os
import pickle
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from .. import lokycompat
from .packed import run_packed
from .sockets import blocking

STAYING, LEAVING = b"s", b"L"  # an answer's first byte: whether the lane goes on after it


def serve(address: str, number: int) -> int:
    """Answer the parent's batches on the socket at *address*; return how many were run."""
    sock = blocking(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    try:
        sock.connect(address)
    except OSError:  # the parent gave up on this lane (closed, or another call came first)
        sock.close()
        return 0
    conn = Connection(sock.detach())
    fd = conn.fileno()
    served = 0
    memory = _Growth()
    messages = _Reader(fd)
    try:
        conn.send_bytes(b"%d" % number)
        while True:
            data = messages.next()
            if not data:  # stop: the parent needs this worker for loky's own jobs
                break
            served += 1
            answer, outcome = _answer(data)
            del data
            leaving = memory.too_much()
            _send(fd, LEAVING if leaving else STAYING, answer)
            # as loky: the batch's arguments and results go once its answer is on its way
            # (wire.FreedAfterSending), and nothing of it stays while the lane waits
            del answer, outcome
            if leaving:
                lokycompat.recycle_after_batch()  # loky's own check skips a worker's first job
                break
    except (EOFError, OSError):  # the parent closed the lane, or went away
        pass
    finally:
        _end(conn)
    return served


# Messages are framed as multiprocessing.connection.Connection frames them (the parent's
# end is one): a 4-byte big-endian length, or -1 and an 8-byte one past 2 GiB. Read and
# written here with os.read and os.write: a third of the Connection methods' cost per batch.
_SIZE, _LARGE_SIZE = struct.Struct("!i"), struct.Struct("!Q")
_JOIN_BELOW = 16384  # as Connection: a small message goes in one write with its header


def _read(fd: int, n: int, before: bytes = b"") -> bytes:
    """*before* and the next *n* bytes from *fd*, joined in one copy."""
    data = os.read(fd, n)
    if len(data) == n and not before:
        return data
    parts = [before, data]
    left = n - len(data)
    while left:
        if not data:
            raise EOFError
        data = os.read(fd, left)
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def receive(fd: int) -> bytes:
    """One message from the other end of a lane (``Connection.recv_bytes``), in a worker or the parent."""
    (size,) = _SIZE.unpack(_read(fd, 4))
    if size == -1:
        (size,) = _LARGE_SIZE.unpack(_read(fd, 8))
    return _read(fd, size) if size else b""


class _Reader:
    """:func:`receive` for a worker's loop: a message and its header in one ``os.read``.

    The parent writes a small batch in one piece and waits for its answer: one read
    of up to ``_CHUNK`` bytes takes it whole, where :func:`receive` makes two (the
    header, then the message). What a read brings past the message (the parent's next
    one, its stop) is kept for the next call.
    """

    __slots__ = ("fd", "pending")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def next(self) -> bytes:
        data = self.pending or os.read(self.fd, _CHUNK)
        if len(data) >= 4:
            (size,) = _SIZE.unpack_from(data)
            end = 4 + size
            if size >= 0 and len(data) >= end:  # (-1: a message past 2 GiB, header and all below)
                self.pending = data[end:]
                return data[4:end]
        self.pending = b""
        return self._rest(data)

    def _rest(self, data: bytes) -> bytes:
        """The message that *data* begins, read to its end (a large one, or one cut short)."""
        if not data:
            raise EOFError
        head = 4
        if len(data) < head:
            data += _read(self.fd, head - len(data))
        (size,) = _SIZE.unpack_from(data)
        if size == -1:
            head = 12
            if len(data) < head:
                data += _read(self.fd, head - len(data))
            (size,) = _LARGE_SIZE.unpack_from(data, 4)
        end = head + size
        if len(data) >= end:
            self.pending = data[end:]
            return data[head:end]
        return _read(self.fd, end - len(data), data[head:])


_CHUNK = 1 << 16  # bytes one read asks for: a small batch whole


def send(fd: int, data: bytes) -> None:
    """``Connection.send_bytes(data)`` on a lane's descriptor (the parent's batches): the
    same frame, without the Connection methods' checks and calls (a few us of a cold call)."""
    _send(fd, b"", data)


def _send(fd: int, first: bytes, rest: bytes) -> None:
    """``Connection.send_bytes(first + rest)``, without copying *rest* when it is large."""
    n = len(first) + len(rest)
    header = _SIZE.pack(n) if n <= 0x7FFFFFFF else _SIZE.pack(-1) + _LARGE_SIZE.pack(n)
    if n < _JOIN_BELOW:
        data = header + first + rest
        done = os.write(fd, data)  # (_write's first step, without its call)
        if done < len(data):
            _write_rest(fd, data, done)
    else:
        _write(fd, header + first)
        _write(fd, rest)


def _write(fd: int, data: bytes) -> None:
    done = os.write(fd, data)
    if done < len(data):
        _write_rest(fd, data, done)


def _write_rest(fd: int, data: bytes, done: int) -> None:
    view = memoryview(data)
    while done < len(data):
        done += os.write(fd, view[done:])


_DELAY = "_MEMORY_LEAK_CHECK_DELAY"


class _Growth:
    """loky's memory-leak check, between a lane's batches (module docstring)."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process(os.getpid())
        self.reference = self.process.memory_info().rss
        self.last = time.monotonic()
        # loky's module, whose delay is read at each batch (a task may change it; so does
        # lokycompat.recycle_after_batch): without lokycompat.leak_check's calls while it has not passed
        self.loky = sys.modules.get("loky.process_executor")

    def too_much(self) -> bool:
        loky = self.loky
        if loky is not None and time.monotonic() - self.last <= getattr(loky, _DELAY, 1.0):
            return False
        delay, limit = lokycompat.leak_check()
        if time.monotonic() - self.last <= delay:
            return False
        self.last = time.monotonic()
        if self.process.memory_info().rss - self.reference < limit:
            return False
        gc.collect()  # as loky: cycles first
        self.last = time.monotonic()
        return self.process.memory_info().rss - self.reference >= limit


def _end(conn: Connection) -> None:
    """Close the lane for the parent too: a process a task forked may hold a copy of it."""
    try:
        sock = socket.socket(fileno=conn.fileno())
    except OSError:  # a task closed it already
        pass
    else:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.detach()  # the Connection closes it
    try:
        conn.close()
    except OSError:  # a task closed its file descriptor
        pass


def _answer(data: bytes) -> tuple[bytes, Any]:
    """The answer to a packed batch, and the outcome it was made from (freed after sending)."""
    outcome: tuple[bool, Any]
    try:
        outcome = (True, run_packed(data))
    except BaseException as exc:  # noqa: BLE001 - sent back, as loky sends a job's exception
        outcome = (False, exc)
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL), outcome
    except Exception as exc:  # noqa: BLE001 - an exception that cannot be pickled: say what it was
        error = RuntimeError(f"a batch failed in the worker and its error could not be sent back: {exc!r}")
        return pickle.dumps((False, error), protocol=pickle.HIGHEST_PROTOCOL), outcome
