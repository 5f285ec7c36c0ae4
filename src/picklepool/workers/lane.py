"""A worker's direct lane to its parent: batches without loky's queues (``executor.lanes``).

:func:`serve` runs as one loky job in a warm worker. It connects to the parent's
socket in the session folder and answers batches there, one at a time, each
exactly as loky would run it (``workers.packed.run_packed``), until the parent
sends the empty message (stop) or closes the socket. Then the job returns and the
worker is loky's again. The parent stops a lane idle too long: were the worker to
leave on its own, a batch the parent wrote meanwhile would be lost.

Each message from the parent is the packed ``(fn, args)`` of one batch; each
answer is ``pickle.dumps((True, result))``, or ``(False, exception)`` for an
exception that escaped the batch runner (loky would have set it on the job's
future). The first message from the worker is its lane number.
"""

from __future__ import annotations

import pickle
import socket
from multiprocessing.connection import Connection
from typing import Any

from .packed import run_packed


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
    try:
        conn.send_bytes(b"%d" % number)
        while True:
            data = conn.recv_bytes()
            if not data:  # stop: the parent needs this worker for loky's own jobs
                break
            served += 1
            conn.send_bytes(_answer(data))
    except (EOFError, OSError):  # the parent closed the lane, or went away
        pass
    finally:
        _end(conn)
    return served


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


def _answer(data: bytes) -> bytes:
    outcome: tuple[bool, Any]
    try:
        outcome = (True, run_packed(data))
    except BaseException as exc:  # noqa: BLE001 - sent back, as loky sends a job's exception
        outcome = (False, exc)
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - an exception that cannot be pickled: say what it was
        error = RuntimeError(f"a batch failed in the worker and its error could not be sent back: {exc!r}")
        return pickle.dumps((False, error), protocol=pickle.HIGHEST_PROTOCOL)
