"""Parent side of a streamed batch: its worker unpickles it while this process pickles it.

``pickler.stream`` draws the whole path. A batch is streamed when all of these hold
(:func:`worth_streaming`, ``dispatch.Channel``); otherwise it is pickled whole first:

- it has at most :data:`MAX_TASKS` tasks, and one of them has an argument (or an item
  of a small tuple, list or dict argument) that is a list, tuple, dict, set or
  frozenset of at least :data:`MIN_ITEMS` items: the case where pickling and
  unpickling dominate the call;
- the call's pickler writes pickle's format as it goes (``BasePickler.streams``:
  pickle, cloudpickle, hybrid, ``pickle.Pickler`` subclasses; not a registered
  pickler with a ``dumps`` of its own);
- the workers share this machine (a session folder, shared memory not turned off
  with ``max_nbytes=None``), one of them is idle now, and the cores are not all taken
  by busy workers (:func:`room_for_one`; loky only): a batch queued behind busy
  workers, or competing with them for the cores, is better pickled ahead.

The calling thread submits the batch, waits up to :data:`CONNECT_WAIT` for the worker
to connect (pickling holds the GIL, which loky's threads need to hand the batch over),
then pickles it into the socket (:class:`Writer`), holding what it pickles in memory
until the worker has connected if it has not yet (:meth:`Outbound.accept`). While it
waits on the worker (for its connection, or for room in the socket), it looks at the
pool every :data:`POLL` seconds, and stops when the batch's future ends first (the
worker failed before it read anything) or the pool stopped delivering. A broken
connection (the worker died or gave up) ends the send quietly: the batch's future
reports what happened, naming the task, as for any batch.
An argument that cannot be pickled stops the stream; the worker fails on the
truncated stream and replies, and the call raises the ``PicklingError`` once it has
(:func:`wait_out`), so no batch is left running as none is when pickling fails first.
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from concurrent.futures import Future
from typing import Any

from ..pickler.buffers import Frames
from ..pickler.stream import (
    BUFFER,
    DATA,
    HEADER,
    MAX_TASKS,
    MIN_ITEMS,
    StreamRef,
    argument_values,
    encode_buffer,
)
from ..workers.sockets import blocking

# Measured here (one task, a list of ints, streamed vs pickled whole, interleaved):
# 10,000 items 1.19x the time, 20,000 1.1x, 50,000 0.87-1.0x, 100,000 0.76-0.88x,
# 200,000 0.53-0.64x, 1,000,000 0.6-0.7x. Below ~50,000, the socket and the hand-over
# cost about what the overlap saves.
POLL = 0.5  # seconds between two looks at the pool while waiting for the worker
# Seconds the parent waits for an idle worker to connect before it pickles anyway
# (holding what it makes until the worker comes). An idle worker connects within
# about 1 ms here (a few under load); this bounds what a wrong guess costs.
CONNECT_WAIT = 0.02
_IOV_MAX = 512  # parts per sendmsg (Linux takes up to 1024)
SUPPORTED = hasattr(socket, "AF_UNIX") and hasattr(select, "poll")  # not on Windows

log = logging.getLogger(__name__)

_CONTAINERS = (list, tuple, dict, set, frozenset)
_names = itertools.count()


def _large(value: Any) -> bool:
    if not isinstance(value, _CONTAINERS):
        return False
    try:
        return len(value) >= MIN_ITEMS
    except Exception:  # noqa: BLE001 - a subclass's own __len__: not for us to report
        return False


def _shallow(value: Any) -> Iterable[Any]:
    """The items of a small tuple, list or dict argument (one level down), else nothing."""
    kind = type(value)
    if (kind is tuple or kind is list) and len(value) <= 16:
        return value  # type: ignore[no-any-return]
    if kind is dict and len(value) <= 16:
        return value.values()  # type: ignore[no-any-return]
    return ()


def worth_streaming(args: Any, kwargs: Any, single_arg: bool = False) -> bool:
    """True when a task of the batch has a large container argument (module docstring).

    *args*: the batch's column of argument tuples (of single arguments with
    *single_arg*); *kwargs*: its column of keyword dicts, or None.
    """
    if len(args) > MAX_TASKS:
        return False
    values = argument_values(args, kwargs, single_arg)
    return any(_large(v) or any(map(_large, _shallow(v))) for v in values)


def room_for_one(load: tuple[int, int] | None, cores: int) -> bool:
    """True when a worker is idle and both it and this process can have a core of their own.

    *load*: ``(workers started, jobs queued or running)`` (``Backend.pool_load``), None
    when unknown. The overlap needs two cores at once; when the others are busy
    unpickling or running earlier batches, pickling a batch whole ahead loses nothing
    (measured: several streamed batches on 2 cores were 1.04x-1.4x slower).
    """
    if load is None:
        return False
    started, pending = load
    return pending < started and pending + 2 <= cores


def wait_out(fut: Future[Any], look: Callable[[], str | None]) -> None:
    """Wait until *fut* is done, or *look* says the pool stopped delivering."""
    while not fut.done():
        futures.wait([fut], timeout=POLL)
        if not fut.done() and look() is not None:
            return


class StreamBroken(ConnectionError):
    """The worker's end of the stream closed: it died, or it stopped reading after an error."""


def _sendable(data: Any) -> Any:
    """*data* as a part that may be sent later: bytes as they are, anything else copied.

    The pickler writes its frames as new bytes, but a large ``bytearray`` (or an
    in-band buffer) goes as the object itself, which its owner may change once the
    call has returned.
    """
    return data if type(data) is bytes else bytes(memoryview(data).cast("B"))


def _send(sock: socket.socket, parts: list[Any], look: Callable[[], str | None], block: bool) -> list[Any]:
    """Send *parts* in order on the non-blocking *sock*; return what is left (nothing when *block*).

    Not blocking, sends what the socket takes now. Blocking, waits for room, looking at
    the pool every ``POLL`` seconds. Raises ``StreamBroken`` when the worker's end is
    closed or *look* says the pool stopped delivering.
    """
    poller = None
    while parts:
        try:
            # MSG_NOSIGNAL: a dead reader is an error here, not SIGPIPE (if the program
            # restored its default action, SIGPIPE would kill this process)
            sent = sock.sendmsg(parts[:_IOV_MAX], (), socket.MSG_NOSIGNAL)
        except BlockingIOError:
            if not block:
                return parts
            if poller is None:
                poller = select.poll()
                poller.register(sock.fileno(), select.POLLOUT)
            if not poller.poll(POLL * 1000):  # (an error or hang-up counts: sendmsg then says)
                stalled = look()
                if stalled is not None:
                    raise StreamBroken(stalled) from None
            continue
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise StreamBroken(f"the worker closed the stream: {exc}") from exc
        k = 0
        while sent:
            first = memoryview(parts[k]).cast("B")
            if sent >= first.nbytes:
                sent -= first.nbytes
                k += 1
            else:
                parts[k], sent = first[sent:], 0
        del parts[:k]
    return parts


class Writer:
    """The file a pickler writes a streamed batch into: each ``write`` is a DATA message.

    The pickler never waits for the worker: each message goes at once as far as the
    socket has room, the rest waits in memory, in order, and is pushed at the next
    write (until the worker connects, everything waits; when it comes late, the whole
    batch is pickled first, as an unstreamed one is). So the worker is fed at every
    frame while the pickler runs, with no thread competing for the GIL; what is left
    when the pickler is done goes from a sender thread (:meth:`finish`), and the caller
    goes on. *look*: called while a wait on the worker lasts ``POLL`` seconds; returns
    why the pool cannot deliver any more (then the stream stops with
    ``StreamBroken``), or None to keep waiting.
    """

    def __init__(self, outbound: Outbound, look: Callable[[], str | None]) -> None:
        self._out = outbound
        self._look = look
        self._sock: socket.socket | None = None
        self._pending: list[Any] = []  # messages not sent yet, in order
        self.nbytes = 0  # pickle bytes written
        self.held = 0  # of which made before the worker connected

    def connect(self, wait: float) -> None:
        """Wait at most *wait* seconds for the worker to connect, before any pickling."""
        self._sock = self._out.accept(self._look, wait=wait)

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self._message([HEADER.pack(DATA, n), _sendable(data)])
        self.nbytes += n
        return n

    def buffer(self, path: str, nbytes: int) -> None:
        """Announce the file holding the next out-of-band buffer (``CallBuffers.dump_stream``)."""
        payload = encode_buffer(path, nbytes)
        self._message([HEADER.pack(BUFFER, len(payload)), payload])

    def finish(self) -> bool:
        """The pickler is done: True when all was sent, else a sender thread sends the rest."""
        if self._sock is not None and not self._pending:
            return True
        _Sender(self._out, self._look, self._pending, self.nbytes, self.held)
        self._pending = []
        return False

    def _message(self, parts: list[Any]) -> None:
        self._pending.extend(parts)
        if self._sock is None:
            self._sock = self._out.accept(self._look, wait=0)
            if self._sock is None:
                self.held += memoryview(parts[-1]).nbytes
                return
        self._pending = _send(self._sock, self._pending, self._look, block=False)


class _Sender:
    """A thread that sends what is left of a stream as its worker reads it, then ends it.

    Started when the pickler is done and the socket could not take everything (or the
    worker has not connected yet), so that the caller goes on (pickles the next batch,
    reads results) instead of waiting on the worker. It owns the stream from then on
    and ends it (``Outbound.release``) once everything is sent or the stream broke.
    """

    def __init__(
        self, outbound: Outbound, look: Callable[[], str | None], parts: list[Any], nbytes: int, held: int
    ) -> None:
        self._out = outbound
        self._look = look
        self._parts = parts
        self._stats = (nbytes, held)
        outbound.owner = self
        name = f"picklepool-stream-{next(_names)}"
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        out = self._out
        try:
            sock = out.connection or out.accept(self._look, wait=None)
            assert sock is not None  # (accept waits as long as it takes)
            _send(sock, self._parts, self._look, block=True)
            out.streamed(*self._stats)
        except StreamBroken as exc:
            out.broken(exc)
        except BaseException:  # noqa: BLE001 - a thread: say it; the batch's future tells the rest
            log.debug("picklepool: stream to %s failed", out.path, exc_info=True)
        finally:
            out.release()


class Outbound:
    """One streamed batch, parent side: its socket, from submission to the end of the send.

    Raises ``OSError`` when the socket cannot be made (then the batch is not streamed).
    Always :meth:`close` it once :meth:`send` returned: that removes the socket file,
    unless a sender thread still sends (it removes it when done).
    """

    def __init__(self, folder: str, max_nbytes: int, mmap_mode: str) -> None:
        self.path = os.path.join(folder, f"s-{os.getpid()}-{next(_names)}")
        self.payload = Frames(StreamRef(self.path), (), (folder, max_nbytes), mmap_mode)
        self._listener = blocking(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        try:
            self._listener.bind(self.path)
            self._listener.listen(1)
        except OSError:
            self._listener.close()
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._lock = threading.Lock()  # the wake pipe is not written once closed
        self._closed = False
        self._fut: Future[Any] | None = None
        self.connection: socket.socket | None = None
        self.owner: _Sender | None = None  # the thread that finishes the stream, if any

    def send(
        self, fut: Future[Any], dump: Callable[[Writer], list[Any]], look: Callable[[], str | None]
    ) -> list[Any]:
        """``dump(writer)`` for the worker running the batch of *fut*: its result.

        Returns ``dump``'s result (the shared-memory files it used), or [] when the
        worker left mid-stream: the batch's future then tells what happened. Errors of
        *dump* itself (an argument that cannot be pickled) propagate, and the worker
        gets a truncated stream.
        """
        self._fut = fut
        fut.add_done_callback(self._wake)
        writer = Writer(self, look)
        try:
            # Pickling holds the GIL, which loky's threads need to hand the batch to the
            # worker: wait for the worker first (the GIL released), for a while.
            writer.connect(CONNECT_WAIT)
            entries = dump(writer)  # (its files are released when it fails)
        except StreamBroken as exc:
            self.broken(exc)
            return []
        if writer.finish():
            self.streamed(writer.nbytes, writer.held)
        return entries  # released with the batch's future (CallBuffers.sent)

    def accept(self, look: Callable[[], str | None], wait: float | None) -> socket.socket | None:
        """The worker's connection, waiting for it at most *wait* seconds (None: as long
        as it takes); None if it has not connected by then.

        Raises ``StreamBroken`` when the batch's future ends first (the worker replied
        without reading its arguments: an error, a cancelled call) or, while waiting,
        *look* says the pool stopped delivering.
        """
        listener = self._listener.fileno()
        poller = select.poll()  # (select() refuses descriptors past 1023)
        poller.register(listener, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            if self._fut is not None and self._fut.done():
                raise StreamBroken("the batch ended before its worker read it")
            left = POLL if deadline is None else min(POLL, max(0.0, deadline - time.monotonic()))
            ready = [fd for fd, _events in poller.poll(left * 1000)]
            if listener in ready:
                self.connection, _ = self._listener.accept()
                self.connection.setblocking(False)  # (the sender waits with poll, see _send)
                self._unlink()  # nobody else may connect
                return self.connection
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if not ready:
                stalled = look()
                if stalled is not None:
                    raise StreamBroken(stalled)

    def streamed(self, nbytes: int, held: int) -> None:
        log.debug(
            "picklepool: batch streamed to its worker (%d bytes, %d of them pickled before it connected)",
            nbytes,
            held,
        )

    def broken(self, exc: StreamBroken) -> None:
        if self.connection is not None:
            log.debug("picklepool: stream to %s broken (%s)", self.path, exc)
        else:  # the batch ended, or the pool stalled, before the worker came
            log.debug("picklepool: stream to %s not read (%s)", self.path, exc)

    def _wake(self, _fut: Future[Any]) -> None:
        with self._lock:
            if not self._closed:
                os.write(self._wake_w, b"x")

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """The caller is done: end the stream now, unless a sender thread still sends."""
        if self.owner is None:
            self.release()

    def release(self) -> None:
        """End the stream: the worker reads to the end of what was sent, then EOF."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)
        # the batch's future holds this stream (its callback, _wake): a cycle, which kept the
        # future and its reply (the task's result) until the GC ran
        self._fut = None
        if self.connection is not None:
            self.connection.close()
        self._listener.close()
        self._unlink()
