"""Worker side of the shared-memory buffers (``pickler.buffers`` explains both ways).

:func:`load` maps a batch's argument files (or copies its blobs, on a cluster) and
unpickles it;
:func:`dump_reply` writes large result buffers to files in the call's folder.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
from typing import Any

from ..pickler import arrays
from ..pickler.buffers import SHM_RESERVE, Frames, Ref, free_space, unlink, write_file
from ..pickler.plain import dumps as dumps_plain
from ..pickler.stream import StreamRef
from . import streams
from .blobs import BlobRef, read_blob

log = logging.getLogger("picklepool.buffers")

_result_names = itertools.count()
_REPLY = arrays.Scope(mode=None, max_nbytes=0, reply=True)  # results: plain arrays, user memmaps by reference


def load(pickler: Any, payload: Any) -> Any:
    """Unpickle a batch or function spec, mapping its buffer files with the call's mmap_mode.

    Each file is mapped once per batch: tasks of one batch given the same array share
    it, as they share a small one (pickle's memo), while every batch gets a fresh
    copy-on-write mapping under "c".
    """
    if not isinstance(payload, Frames):
        return pickler.loads(payload)
    data = payload.data
    if isinstance(data, StreamRef):  # unpickled as the parent pickles it
        return streams.load(pickler, payload)
    if not isinstance(data, bytes):  # a blob reference: a large function spec
        data = read_blob(data)
    maps: dict[Any, Any] = {}
    buffers = []
    for ref in payload.refs:
        mapped = maps.get(ref)
        if mapped is None:
            if isinstance(ref, BlobRef):  # a cluster's blob: this batch's own writable copy
                blob = read_blob(ref)  # (with mmap_mode="r", the bytes themselves: read-only)
                mapped = maps[ref] = blob if payload.mode == "r" else bytearray(blob)
                if payload.mode == "r":
                    arrays.read_only_by_mode(blob)
            else:
                mapped = maps[ref] = arrays.open_shared(ref[0], ref[1], payload.mode)
        buffers.append(mapped)
    return pickler.loads(data, buffers=buffers)


def explain_error(error: BaseException, tasks: Any) -> None:
    """Add a note naming ``mmap_mode`` to a "read-only" ValueError of a task that got
    arguments mapped read-only (``mmap_mode="r"``): numpy's message does not say why."""
    if (
        isinstance(tasks, Frames)
        and tasks.mode == "r"
        and (tasks.refs or (isinstance(tasks.data, StreamRef) and tasks.data.refs))
        and isinstance(error, ValueError)
        and "read-only" in str(error)
        and hasattr(error, "add_note")  # Python >= 3.11
    ):
        limit = f" ({tasks.results[1]} bytes)" if tasks.results else ""  # (none on a cluster)
        error.add_note(
            f"picklepool: array arguments of at least max_nbytes{limit} reach tasks "
            "mapped read-only because mmap_mode='r' is in force. Use mmap_mode='c' (the "
            "default: each task may change its own copy), mmap_mode='r+' (changes shared "
            "through the file), or copy the array in the task (x = x.copy())"
        )


def dump_reply(pickler: Any, outcome: Any, tasks: Any, plain: bool = True) -> bytes | Frames:
    """Pickle a batch's outcome; large result buffers go to files in the call folder.

    *plain*: whether it may be a few plain values, pickled the short way (False: the
    caller found it is not).
    """
    try:
        return _dump_reply(pickler, outcome, tasks, plain)
    finally:
        arrays.reply_sent()


def _dump_reply(pickler: Any, outcome: Any, tasks: Any, plain: bool) -> bytes | Frames:
    if plain:
        data = dumps_plain(pickler, outcome)  # a few plain values: no buffer to look for
        if data is not None:
            return data
    target = tasks.results if isinstance(tasks, Frames) else None
    if target is None:
        with arrays.sharing(_REPLY):  # a memmap of the user's goes back by reference
            return pickler.dumps(outcome)  # type: ignore[no-any-return]
    folder, limit = target
    written: list[Ref] = []

    def out_of_band(pb: pickle.PickleBuffer) -> bool:
        try:
            raw = pb.raw()
        except BufferError:
            return True
        with raw:
            nbytes = raw.nbytes
            if nbytes < limit or nbytes == 0:
                return True
            path = os.path.join(folder, f"r-{os.getpid()}-{next(_result_names)}")
            try:
                if free_space(folder) < nbytes + SHM_RESERVE:
                    log.debug("picklepool: no room in %s for a %d-byte result; sent in band", folder, nbytes)
                    return True
                write_file(path, raw)
            except OSError:  # the call is over (folder gone) or the disk is full
                return True
        written.append((path, nbytes))
        return False

    try:
        with arrays.sharing(_REPLY):
            data = pickler.dumps(outcome, buffer_callback=out_of_band)
    except BaseException:
        for path, _ in written:
            unlink(path)
        raise
    return Frames(data, tuple(written)) if written else data
