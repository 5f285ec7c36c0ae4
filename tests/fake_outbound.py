"""A stand-in for ``executor.streaming.Outbound`` over a socket pair, for the stream tests."""

from __future__ import annotations

import socket
import threading

from picklepool.executor import streaming


class FakeOutbound:
    """The worker's end is the other socket of a pair; it "connects" at the *k*-th look.

    ``released`` is set when the stream ends (by the caller or the sender thread).
    """

    path = "fake-stream"

    def __init__(self, sock: socket.socket, k: int = 1) -> None:
        sock.setblocking(False)
        self.sock, self.k, self.looks = sock, k, 0
        self.connection: socket.socket | None = None
        self.owner = None
        self.released = threading.Event()
        self.log: list[str] = []

    def accept(self, look, wait):
        self.looks += 1
        if self.looks >= self.k or wait is None:
            self.connection = self.sock
            return self.sock
        return None

    def streamed(self, nbytes: int, held: int) -> None:
        self.log.append(f"streamed {nbytes} {held}")

    def broken(self, exc: BaseException) -> None:
        self.log.append(f"broken {exc}")

    def release(self) -> None:
        self.sock.close()
        self.released.set()


def write_all(writer: streaming.Writer, fake: FakeOutbound) -> None:
    """What ``Outbound.send`` does after the pickler: finish, and end the stream when done."""
    if writer.finish():
        fake.release()
    fake.released.wait()
