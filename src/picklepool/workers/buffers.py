"""Worker side of the shared-memory buffers (``pickler.buffers`` explains both ways).

:func:`load` maps a batch's argument files read-only and unpickles it;
:func:`dump_reply` writes large result buffers to files in the call's folder.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
from typing import Any

from ..pickler.buffers import SHM_RESERVE, Frames, Ref, free_space, map_file, unlink, write_file
from .blobs import read_blob

log = logging.getLogger("picklepool.buffers")

_result_names = itertools.count()


def load(pickler: Any, payload: Any) -> Any:
    """Unpickle a batch or function spec, mapping its buffer files read-only."""
    if not isinstance(payload, Frames):
        return pickler.loads(payload)
    data = payload.data
    if not isinstance(data, bytes):  # a blob reference: a large function spec
        data = read_blob(data)
    maps: dict[str, memoryview] = {}
    buffers = []
    for path, nbytes in payload.refs:
        view = maps.get(path)
        if view is None:
            view = maps[path] = map_file(path, nbytes, writable=False)
        buffers.append(view)
    return pickler.loads(data, buffers=buffers)


def dump_reply(pickler: Any, outcome: Any, tasks: Any) -> bytes | Frames:
    """Pickle a batch's outcome; large result buffers go to files in the call folder."""
    target = tasks.results if isinstance(tasks, Frames) else None
    if target is None:
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
        data = pickler.dumps(outcome, buffer_callback=out_of_band)
    except BaseException:
        for path, _ in written:
            unlink(path)
        raise
    return Frames(data, tuple(written)) if written else data
