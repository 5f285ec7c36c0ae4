"""Worker side of a streamed batch (``pickler.stream`` draws the path): unpickled as it arrives.

:func:`load` connects to the batch's socket and hands the call's pickler a file
(:class:`Reader`) that serves the pickle bytes as the parent sends them, and the
out-of-band buffer files the stream announces, mapped with the call's
``mmap_mode`` (as ``workers.buffers.load`` maps a whole batch's). When the parent
stops mid-stream (it was interrupted, an argument could not be pickled, it died),
the stream ends early and :func:`load` raises ``EOFError`` saying so.
"""

from __future__ import annotations

import collections
import pickle
import socket
from collections.abc import Iterator
from typing import Any

from ..pickler import arrays
from ..pickler.buffers import Frames
from ..pickler.stream import BUFFER, DATA, HEADER, StreamRef, decode_buffer
from .sockets import blocking


class Reader:
    """The file the pickler reads a streamed batch from: ``read``, ``readinto``, ``readline``.

    DATA messages are served as one byte stream; BUFFER messages queue their file in
    :attr:`refs` for :meth:`buffers`. Blocks until the parent sends or closes.
    """

    def __init__(self, sock: socket.socket, ref: StreamRef) -> None:
        self._sock = sock
        self._ref = ref
        self._left = 0  # bytes of the current DATA message not read yet
        self.refs: collections.deque[tuple[str, int]] = collections.deque()
        self.ended = False  # the parent closed the stream

    def _exact(self, n: int) -> bytes:
        """*n* bytes of the socket (fewer only at its end)."""
        buf = bytearray(n)
        view, done = memoryview(buf), 0
        while done < n:
            k = self._sock.recv_into(view[done:])
            if k == 0:
                self.ended = True
                break
            done += k
        return bytes(buf[:done])

    def _next_data(self) -> bool:
        """Read messages up to the next DATA one; False at the end of the stream."""
        while True:
            head = self._exact(HEADER.size)
            if len(head) < HEADER.size:
                return False
            kind, n = HEADER.unpack(head)
            if kind == DATA:
                self._left = n
                if n:
                    return True
            elif kind == BUFFER:
                path, nbytes = decode_buffer(self._exact(n))
                self.refs.append((path, nbytes))
                self._ref.refs.append((path, nbytes))
            else:
                raise pickle.UnpicklingError(f"unknown message {kind!r} in a picklepool stream")

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        done, total = 0, view.nbytes
        while done < total:
            if self._left == 0 and not self._next_data():
                break
            k = self._sock.recv_into(view[done : done + min(self._left, total - done)])
            if k == 0:
                self.ended = True
                break
            done += k
            self._left -= k
        return done

    def read(self, n: int = -1) -> bytes | bytearray:
        if n < 0:  # everything left
            parts = []
            while self._left or self._next_data():
                parts.append(self.read(self._left))
            return b"".join(parts)
        buf = bytearray(n)
        k = self.readinto(buf)
        if k < n:
            del buf[k:]
        return buf  # the C unpickler takes a bytearray as it is (no copy)

    def readline(self) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n"):
            c = self.read(1)
            if not c:
                break
            line += c
        return bytes(line)

    def buffers(self, mode: str) -> Iterator[Any]:
        """The out-of-band buffers, in order, as the unpickler asks for them.

        Each file is mapped once per batch (tasks given the same array share it).
        """
        maps: dict[str, arrays.SharedFile] = {}
        while self.refs:
            path, nbytes = self.refs.popleft()
            mapped = maps.get(path)
            if mapped is None:
                mapped = maps[path] = arrays.open_shared(path, nbytes, mode)
            yield mapped


def load(pickler: Any, payload: Frames) -> Any:
    """Connect to the parent's stream of *payload* and unpickle the batch as it arrives."""
    ref = payload.data
    sock = blocking(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    try:
        try:
            sock.connect(ref.path)
        except OSError as exc:
            raise EOFError(
                f"the parent stopped streaming these arguments before this worker connected ({exc})"
            ) from exc
        reader = Reader(sock, ref)
        try:
            return pickler.load(reader, buffers=reader.buffers(payload.mode))
        except Exception as exc:
            if reader.ended:
                raise EOFError(
                    "the parent stopped sending these arguments mid-stream (it was interrupted, "
                    f"or an argument could not be pickled there): {type(exc).__name__}: {exc}"
                ) from exc
            raise
    finally:
        sock.close()
