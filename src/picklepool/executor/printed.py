"""What tasks printed in a worker, written to this process's ``sys.stdout`` / ``sys.stderr``.

Where the caller's streams are redirected (``workers.output``), a batch's reply brings what
its tasks printed (``wire.Captured``: ``replies``), and the journal of a worker that died
before its reply what they printed until then (``workers.journal``: ``session``).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from ..wire import Captured
from ..workers import logback, warnback
from ..workers.journal import LOG, STDERR, STDOUT, WARNING
from ..workers.output import write_text


def show_captured(pickler: Any, captured: Captured) -> None:
    """What a batch's tasks printed (to this process's redirected streams), the warnings they
    gave (shown as here, ``workers.warnback``) and their log records (for this process's
    loggers, ``workers.logback``), in the order the tasks gave them (``captured.order``: a
    notebook's cell showed all the prints, then all the warnings, then the records; a log
    file that gets the warnings, ``logging.captureWarnings(True)``, all of them first)."""
    order = captured.order
    if not order:
        write_back(captured.stdout, captured.stderr)
        warnback.show(pickler, captured.warned)
        logback.show(pickler, captured.logged)
        return
    raw = [
        captured.stdout.encode("utf-8", "surrogateescape"),
        captured.stderr.encode("utf-8", "surrogateescape"),
    ]
    shows = {LOG: logback.each(pickler, captured.logged), WARNING: warnback.each(pickler, captured.warned)}
    done = dict.fromkeys((LOG, STDOUT, STDERR, WARNING), 0)
    for kind, count in [*order, *([k, -1] for k in (STDOUT, STDERR, WARNING, LOG))]:  # (then what is left)
        start = done[kind]
        if kind in shows:
            end = len(shows[kind]) if count < 0 else count
            for show in shows[kind][start:end]:
                show()
        else:
            data = raw[kind == STDERR]
            end = len(data) if count < 0 else count
            if end > start:
                text = data[start:end].decode("utf-8", "surrogateescape")
                if kind == STDOUT:
                    write_back(text, "")
                else:
                    write_back("", text)
        done[kind] = max(start, end)


def write_back(stdout: str, stderr: str) -> None:
    """Write what a batch's tasks printed to this process's ``sys.stdout`` / ``sys.stderr``
    (``workers.output``; bytes that are no text as ``output.write_text`` writes them); a
    stream that fails (closed meanwhile) is passed over.

    The stream may be any object of the caller's with a ``write`` (``print`` needs no
    more): one without ``flush`` is not flushed; one whose methods raise something else
    (a ``TypeError`` of a bytes-only stream) does not fail the call, whose tasks are
    done: the text goes to the process's own stream, where a worker writes it (and
    joblib's do), with a warning naming the error.
    """
    for text, stream, own in ((stdout, sys.stdout, sys.__stdout__), (stderr, sys.stderr, sys.__stderr__)):
        if text and stream is not None:
            try:
                write_text(stream, text)
                flush = getattr(stream, "flush", None)
                if flush is not None:
                    flush()
            except (OSError, ValueError):  # a closed stream: nowhere to write it, as in a worker
                pass
            except Exception as exc:  # noqa: BLE001 - the caller's stream object, whatever it does
                _write_elsewhere(text, stream, own, exc)


def _write_elsewhere(text: str, stream: Any, own: Any, exc: Exception) -> None:
    """What tasks printed, that the caller's *stream* would not take, to the process's *own*."""
    import warnings

    name = "stdout" if own is sys.__stdout__ else "stderr"
    warnings.warn(
        f"what tasks printed could not be written to sys.{name} ({type(stream).__qualname__} "
        f"object): {type(exc).__name__}: {exc}; it went to the process's own {name} instead. "
        f"Give sys.{name} a stream with a write(str) method, or leave it as it is.",
        RuntimeWarning,
        stacklevel=2,
    )
    if own is not None and own is not stream:
        with contextlib.suppress(Exception):  # (no terminal either: nowhere left)
            write_text(own, text)
            own.flush()


def write_journaled(kind: int, data: bytes) -> None:
    """What a dead worker's journal says its tasks printed to a stream (*kind*: ``STDOUT`` or
    ``STDERR``), written as :func:`write_back` writes a reply's."""
    text = data.decode("utf-8", "surrogateescape")
    if kind == STDOUT:
        write_back(text, "")
    elif kind == STDERR:
        write_back("", text)
