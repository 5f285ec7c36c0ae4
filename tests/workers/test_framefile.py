"""FrameFile: a kept snapshot frame that a dask worker holds as one in-memory file."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from picklepool.pickler import frames
from picklepool.pickler.base import CloudPickler
from picklepool.wire import Batch
from picklepool.workers import framefile, snapshots
from picklepool.workers.blobs import BlobRef, MissingBlobs, attached, read_blob
from picklepool.workers.framefile import FrameFile
from picklepool.workers.runner import run_attached

MB = 1 << 20
needs_memfd = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="no memfd_create here")


def frame_of(value):
    return frames.pack(CloudPickler(), value)


@needs_memfd
def test_sent_as_its_pieces_out_of_band_and_kept_as_a_file():
    value = {"a": np.arange(2 * MB // 8, dtype=np.float64)}
    frame = FrameFile.of_pieces(frame_of(value))
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(frame, protocol=5, buffer_callback=buffers.append)
    assert len(stream) < 4096 and sum(b.raw().nbytes for b in buffers) == frame.nbytes  # no copy in-band
    held = pickle.loads(stream, buffers=buffers)
    assert held.fd is not None and held.pieces is None and held.__sizeof__() == frame.nbytes
    again = pickle.loads(pickle.dumps(held, protocol=5))  # dask moving it on: read from the file
    assert again.fd is not None and again.fd != held.fd and again.nbytes == held.nbytes
    for kept in (held, again):
        rebuilt = snapshots.load(CloudPickler(), kept)
        assert np.array_equal(rebuilt["a"], value["a"])


@needs_memfd
def test_a_worker_maps_the_file_dask_holds_without_copying_it():
    frame = pickle.loads(pickle.dumps(FrameFile.of_pieces(frame_of(np.ones(MB))), protocol=5))
    kept = snapshots.Pristine.of(frame)
    try:
        assert kept.fd is not None and os.path.samestat(os.fstat(kept.fd), os.fstat(frame.fd))
        value, region = kept.load(CloudPickler())
        assert region is not None and value.sum() == MB
    finally:
        kept.close()


def test_small_frames_and_old_protocols_are_bytes():
    small = FrameFile.of_pieces(frame_of([1, 2, 3]))
    held = pickle.loads(pickle.dumps(small, protocol=5))
    assert held.fd is None and held.data is not None and len(held.data) == small.nbytes
    assert snapshots.load(CloudPickler(), held) == [1, 2, 3]
    assert snapshots.load(CloudPickler(), pickle.loads(pickle.dumps(held, protocol=4))) == [1, 2, 3]
    assert framefile.MEMFD_MIN > small.nbytes


def reads_blob(batch: Batch) -> bytes:
    """As the batch runner loading a task's argument: a failure to load becomes its reply."""
    try:
        with attached(batch.attachment):
            return read_blob(BlobRef("state-x-1", 10))  # type: ignore[no-any-return]
    except LookupError:
        return b"load failure"


def test_a_batch_missing_kept_data_answers_which():
    """Outside a dask worker the address is None; the batch runner's failure is replaced."""
    batch = Batch(0, None, b"", (), b"", 0, None, None, None, None)
    assert run_attached(reads_blob, batch, None) == MissingBlobs(("state-x-1",), None)
    assert run_attached(reads_blob, batch, {"state-x-1": b"0123456789"}) == b"0123456789"


def test_settled_copies_the_pieces_for_a_scatter_inside_a_worker():
    """There dask keeps the object itself: it must not hold views of a live value."""
    value = np.zeros(2 * MB // 8)
    frame = FrameFile.of_pieces(frame_of(value))
    settled = frame.settled()
    assert settled.pieces is None and settled.nbytes == frame.nbytes and settled.settled() is settled
    value[0] = 1.0  # a later change of the live value
    assert snapshots.load(CloudPickler(), settled)[0] == 0.0
