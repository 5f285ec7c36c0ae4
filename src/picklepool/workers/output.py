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
printed is lost; writes to the file descriptors themselves (C code, child
processes) go where they went.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator


class _Stream(io.TextIOWrapper):
    """A text stream into memory, with a ``buffer`` (``sys.stdout.buffer.write`` works)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors="surrogateescape", write_through=True)

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]


@contextlib.contextmanager
def captured(capture: tuple[bool, bool]) -> Iterator[list[str]]:
    """``sys.stdout`` / ``sys.stderr`` (as *capture* says) collected inside; the list it
    yields holds ``[stdout, stderr]`` text at the exit."""
    out: list[str] = ["", ""]
    streams = [_Stream() if capture[0] else None, _Stream() if capture[1] else None]
    saved = sys.stdout, sys.stderr
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
                out[k] = stream.text()
