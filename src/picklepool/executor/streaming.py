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
  with ``max_nbytes=None``) and one of them is idle now (``Backend.idle_workers``,
  loky only): a batch queued behind busy workers is better pickled ahead.

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
from ..pickler.stream import BUFFER, DATA, HEADER, StreamRef, encode_buffer

# Measured here (one task, a list of ints, streamed vs pickled whole, interleaved):
# 10,000 items 1.19x the time, 20,000 1.1x, 50,000 0.87-1.0x, 100,000 0.76-0.88x,
# 200,000 0.53-0.64x, 1,000,000 0.6-0.7x. Below ~50,000, the socket and the hand-over
# cost about what the overlap saves.
MIN_ITEMS = 50_000
MAX_TASKS = 4  # batches of more tasks are pipelined by batching already
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
    if isinstance(value, (tuple, list)) and len(value) <= 16:
        return value
    if isinstance(value, dict) and len(value) <= 16:
        return value.values()
    return ()


def worth_streaming(args: Any, kwargs: Any, single_arg: bool = False) -> bool:
    """True when a task of the batch has a large container argument (module docstring).

    *args*: the batch's column of argument tuples (of single arguments with
    *single_arg*); *kwargs*: its column of keyword dicts, or None.
    """
    if len(args) > MAX_TASKS:
        return False
    # (items that are not calls are reported by the worker: skipped here)
    values: list[Any]
    values = list(args) if single_arg else [a for task in args if type(task) is tuple for a in task]
    if kwargs is not None:
        values.extend(v for kw in kwargs if type(kw) is dict for v in kw.values())
    return any(_large(v) or any(map(_large, _shallow(v))) for v in values)


def wait_out(fut: Future[Any], look: Callable[[], str | None]) -> None:
    """Wait until *fut* is done, or *look* says the pool stopped delivering."""
    while not fut.done():
        futures.wait([fut], timeout=POLL)
        if not fut.done() and look() is not None:
            return


class StreamBroken(ConnectionError):
    """The worker's end of the stream closed: it died, or it stopped reading after an error."""


class Writer:
    """The file a pickler writes a streamed batch into: each ``write`` is a DATA message.

    The pickler does not wait for the worker: until it connects, messages wait in
    memory, and go as soon as it has (at worst, when the worker comes late, the whole
    batch is pickled first, as an unstreamed one is). :meth:`finish` sends what is
    left once the pickler is done. *look*: called when the socket stays full for
    ``POLL`` seconds; returns why the pool cannot deliver any more (then the send
    stops with ``StreamBroken``), or None to keep waiting.
    """

    def __init__(self, outbound: Outbound, look: Callable[[], str | None]) -> None:
        self._out = outbound
        self._look = look
        self._sock: socket.socket | None = None
        self._held: list[Any] = []  # messages made before the worker connected
        self.nbytes = 0  # pickle bytes written
        self.held = 0  # of which made before the worker connected

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._message([HEADER.pack(DATA, view.nbytes), view])
        self.nbytes += view.nbytes
        return view.nbytes

    def buffer(self, path: str, nbytes: int) -> None:
        """Announce the file holding the next out-of-band buffer (``CallBuffers.dump_stream``)."""
        payload = encode_buffer(path, nbytes)
        self._message([HEADER.pack(BUFFER, len(payload)), payload])

    def connect(self, wait: float) -> None:
        """Wait at most *wait* seconds for the worker to connect, before any pickling."""
        self._sock = self._out.accept(self._look, wait=wait)

    def finish(self) -> None:
        """The pickler is done: wait for the worker if it has not connected yet, send the rest."""
        if self._sock is None:
            self._sock = self._out.accept(self._look, wait=None)
            self._send(self._held)
            self._held = []

    def _message(self, parts: list[Any]) -> None:
        if self._sock is None:
            self._sock = self._out.accept(self._look, wait=0)
            if self._sock is None:
                self._held.extend(parts)
                self.held += memoryview(parts[-1]).nbytes
                return
            parts, self._held = self._held + parts, []
        self._send(parts)

    def _send(self, parts: list[Any]) -> None:
        assert self._sock is not None
        while parts:
            try:
                # MSG_NOSIGNAL: a dead reader is an error here, not SIGPIPE (if the program
                # restored its default action, SIGPIPE would kill this process)
                sent = self._sock.sendmsg(parts[:_IOV_MAX], (), socket.MSG_NOSIGNAL)
            except TimeoutError:
                stalled = self._look()
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


class Outbound:
    """One streamed batch, parent side: its socket, from submission to the end of the send.

    Raises ``OSError`` when the socket cannot be made (then the batch is not streamed).
    Always :meth:`close` it: that removes the socket file.
    """

    def __init__(self, folder: str, max_nbytes: int, mmap_mode: str) -> None:
        self.path = os.path.join(folder, f"s-{os.getpid()}-{next(_names)}")
        self.payload = Frames(StreamRef(self.path), (), (folder, max_nbytes), mmap_mode)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
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
        self._conn: socket.socket | None = None

    def send(
        self, fut: Future[Any], dump: Callable[[Writer], list[Any]], look: Callable[[], str | None]
    ) -> list[Any]:
        """``dump(writer)`` for the worker running the batch of *fut*: its result.

        Returns ``dump``'s result (the shared-memory files it used), or [] when the
        worker left mid-stream: the batch's future then tells what happened. Errors of
        *dump* itself (an argument that cannot be pickled) propagate.
        """
        self._fut = fut
        fut.add_done_callback(self._wake)
        writer = Writer(self, look)
        entries: list[Any] = []
        try:
            # Pickling holds the GIL, which loky's threads need to hand the batch to the
            # worker: wait for the worker first (the GIL released), for a while.
            writer.connect(CONNECT_WAIT)
            entries = dump(writer)  # (its files are released when it fails)
            writer.finish()
        except StreamBroken as exc:
            if self._conn is not None:
                sent = writer.nbytes
                log.debug("picklepool: stream to %s broken after %d bytes (%s)", self.path, sent, exc)
            else:  # the batch ended, or the pool stalled, before the worker came
                log.debug("picklepool: stream to %s not read (%s)", self.path, exc)
            return entries  # released with the batch's future (CallBuffers.sent)
        log.debug(
            "picklepool: batch streamed to its worker (%d bytes, %d of them pickled before it connected)",
            writer.nbytes,
            writer.held,
        )
        return entries

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
                self._conn, _ = self._listener.accept()
                self._conn.settimeout(POLL)
                self._unlink()  # nobody else may connect
                return self._conn
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if not ready:
                stalled = look()
                if stalled is not None:
                    raise StreamBroken(stalled)

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
        """End the stream: the worker reads to the end of what was sent, then EOF."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)
        if self._conn is not None:
            self._conn.close()
        self._listener.close()
        self._unlink()
