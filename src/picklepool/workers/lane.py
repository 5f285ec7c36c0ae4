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
import time
from multiprocessing.connection import Connection
from typing import Any

import psutil

from .. import lokycompat
from .packed import run_packed

STAYING, LEAVING = b"s", b"L"  # an answer's first byte: whether the lane goes on after it


def serve(address: str, number: int) -> int:
    """Answer the parent's batches on the socket at *address*; return how many were run."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(address)
    except OSError:  # the parent gave up on this lane (closed, or another call came first)
        sock.close()
        return 0
    conn = Connection(sock.detach())
    served = 0
    memory = _Growth()
    try:
        conn.send_bytes(b"%d" % number)
        while True:
            data = conn.recv_bytes()
            if not data:  # stop: the parent needs this worker for loky's own jobs
                break
            served += 1
            answer, outcome = _answer(data)
            del data
            leaving = memory.too_much()
            conn.send_bytes((LEAVING if leaving else STAYING) + answer)
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


class _Growth:
    """loky's memory-leak check, between a lane's batches (module docstring)."""

    def __init__(self) -> None:
        self.process = psutil.Process(os.getpid())
        self.reference = self.process.memory_info().rss
        self.last = time.monotonic()

    def too_much(self) -> bool:
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
