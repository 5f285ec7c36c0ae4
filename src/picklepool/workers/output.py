"""What a batch's tasks print, sent back to the parent when its streams are redirected.

A worker's ``sys.stdout`` and ``sys.stderr`` write to the file descriptors it
inherited: the terminal, where the parent's own output goes too. A parent whose
stream is another object (a Jupyter notebook's cell, ``contextlib.redirect_stdout``
into a buffer, a GUI's console, pytest's ``capsys``) did not get what its tasks
printed, as it does when it runs them itself: it went to the terminal the notebook
server runs in, or nowhere. For such a stream (``ParentState.capture``), the worker
collects what the tasks write to ``sys.stdout`` / ``sys.stderr`` (warnings and
tracebacks printed there included) and sends it with the batch's reply
(``wire.Captured``); the parent writes it to its stream as it reads the reply. It
comes once the batch is done, not as it is printed; what a worker that dies
printed, the parent writes from its journal (``workers.journal``) before the crash's
error; writes to the file descriptors themselves (C code, child processes) go where
they went.

The stream a batch's tasks see is one object per worker and stream, kept between
batches: an object that holds it (a ``logging.StreamHandler`` made by a module the
task imported, a progress bar) writes into the batch that is running, and between
batches to the stream the worker had (its file descriptor), never into a buffer no one
reads. A task that closes it loses nothing written before. A child a task forks
(``os.fork``, a ``multiprocessing`` pool with "fork") writes to the worker's own stream:
what it collected would stay in the child's copy, lost. Its ``fileno()`` is the worker's
own stream's.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import Any

from .journal import STDERR, STDOUT, journal, mark


def write_text(stream: Any, text: str) -> None:
    """Write *text* to *stream*; bytes in it that are no text (surrogates, from
    ``sys.stdout.buffer.write(b"\\xff")``) go as bytes to its ``buffer`` (a file's, as in
    the task), or replaced where it has none, not failing the whole write on its encoding."""
    try:
        stream.write(text)
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        flush = getattr(stream, "flush", None)  # (a stream may be any object with a write)
        if flush is not None:
            flush()
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            buffer.write(raw)
        else:
            stream.write(raw.decode("utf-8", "replace"))


class _Sink(io.RawIOBase):
    """Bytes written: into the running batch's buffer, else to the worker's own stream."""

    def __init__(self, fallback: Any, kind: int) -> None:
        super().__init__()
        self.kind = kind  # its entries' in the worker's journal (STDOUT, STDERR)
        self.fallback = fallback  # the stream the worker had when this one was made
        self.collected: bytearray | None = None  # the running batch's, while capturing
        self.journaled = 0  # how much of it is in the worker's journal
        self.pid = os.getpid()  # the process collecting: a forked child's copy would be lost
        self.pending = bytearray()  # the start of a line for the worker's stream (write)

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        """The worker's own stream's: what is written to it goes where it went (the terminal),
        as C code's and child processes' output; ``faulthandler.enable()``,
        ``subprocess.run(..., stdout=sys.stdout)`` work as in a worker that collects nothing."""
        if self.fallback is None:
            raise io.UnsupportedOperation("fileno")
        return int(self.fallback.fileno())

    def _collecting(self) -> bool:
        return self.collected is not None and os.getpid() == self.pid

    def write(self, data: Any) -> int:
        data = bytes(data)
        if self._collecting():
            collected = self.collected
            collected += data  # type: ignore[operator]
            mark(self.kind, len(collected))  # type: ignore[arg-type] # (its place among the batch's records and warnings)
            if journal.path is not None and b"\n" in data:
                # for the parent, should this worker die before its reply: whole lines, one
                # write each (print() writes its text and its end apart)
                journal.write(self.kind, bytes(collected[self.journaled :]))  # type: ignore[index]
                self.journaled = len(collected)  # type: ignore[arg-type]
        elif self.fallback is not None:
            # Whole lines at once, as print() to the worker's stream writes them: print()
            # writes its text and its end apart, and the lines of two processes (a task's
            # forked children) were interleaved between the two.
            self.pending += data
            end = self.pending.rfind(b"\n") + 1
            if end:
                lines, self.pending = self.pending[:end], self.pending[end:]
                self._out(bytes(lines))
        return len(data)

    def _out(self, data: bytes) -> None:
        try:
            write_text(self.fallback, data.decode("utf-8", "surrogateescape"))
            self.fallback.flush()
        except (OSError, ValueError):  # closed: as a print would
            pass

    def flush(self) -> None:
        if self.fallback is not None and not self._collecting():
            if self.pending:
                data, self.pending = bytes(self.pending), bytearray()
                self._out(data)
            else:
                with contextlib.suppress(OSError, ValueError):
                    self.fallback.flush()


class _Stream(io.TextIOWrapper):
    """A text stream into a :class:`_Sink`, with a ``buffer`` (``sys.stdout.buffer.write`` works)."""

    def __init__(self, fallback: Any, kind: int) -> None:
        self.sink = _Sink(fallback, kind)
        super().__init__(self.sink, encoding="utf-8", errors="surrogateescape", write_through=True)  # type: ignore[arg-type]

    def isatty(self) -> bool:
        return False


# this worker's streams, made at the first batch that collects (stdout, stderr)
_streams: list[_Stream | None] = [None, None]


def _stream(k: int, current: Any) -> _Stream:
    stream = _streams[k]
    if stream is None or stream.closed:  # (a task closed it: the next batch has a new one)
        stream = _streams[k] = _Stream(current, (STDOUT, STDERR)[k])
    return stream


@contextlib.contextmanager
def captured(capture: tuple[bool, bool], folder: str | None = None) -> Iterator[list[str]]:
    """``sys.stdout`` / ``sys.stderr`` (as *capture* says) collected inside; the list it
    yields holds ``[stdout, stderr]`` text at the exit. *folder*: the session folder, where
    what is collected is also written as it is (``workers.journal``)."""
    out: list[str] = ["", ""]
    if capture[0] or capture[1]:
        journal.use(folder)
    saved = sys.stdout, sys.stderr
    streams = [_stream(k, saved[k]) if capture[k] else None for k in (0, 1)]
    for stream in streams:
        if stream is not None:
            if stream.sink.pending:  # a line begun between batches goes out before the batch's
                stream.sink.flush()
            stream.sink.collected, stream.sink.pid, stream.sink.journaled = bytearray(), os.getpid(), 0
    if streams[0] is not None:
        sys.stdout = streams[0]
    if streams[1] is not None:
        sys.stderr = streams[1]
    try:
        yield out
    finally:
        if streams[0] is not None:
            sys.stdout = saved[0]  # (also if a task set another one: the next batch has its own)
        if streams[1] is not None:
            sys.stderr = saved[1]
        for k, stream in enumerate(streams):
            if stream is not None:
                with contextlib.suppress(ValueError):  # closed by a task: written through already
                    stream.flush()
                data, stream.sink.collected = stream.sink.collected or b"", None
                out[k] = bytes(data).decode("utf-8", "surrogateescape")
        journal.clear()
