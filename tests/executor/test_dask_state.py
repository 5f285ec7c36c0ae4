"""SharedState on the dask backend: scattered once per call, rebuilt once per worker."""

from __future__ import annotations

import numpy as np
import pytest

from picklepool import Parallel, SharedState, delayed
from tests.test_state import Counted, _serialised, read_ab, where
from tests.test_state_isolation import change, look, pristine, same_batch_pairs, value

pytest.importorskip(
    "distributed", reason="dask.distributed is not installed (pip install 'picklepool[dask]')"
)


def test_state_on_dask_is_sent_once_and_rebuilt_once_per_worker(dask_client):
    _serialised.clear()
    state = SharedState({"a": 1, "b": 1, "x": np.ones(500_000), "c": Counted()})
    out = Parallel(backend="dask", batch_size=5)(delayed(where)(state) for _ in range(60))
    assert len(_serialised) == 1
    by_worker: dict[int, set[int]] = {}
    for pid, ident, version in out:
        by_worker.setdefault(pid, set()).add(ident)
        assert version == 0
    assert all(len(ids) == 1 for ids in by_worker.values())
    state.set({"a": 2, "b": 2})
    assert Parallel(backend="dask")(delayed(read_ab)(state) for _ in range(4)) == [(2, 2, 1)] * 4


def test_on_dask_a_change_never_reaches_the_next_task_of_the_batch(dask_client):
    """Bytes delivered with the batch: the worker keeps them in an in-memory file to undo changes."""
    state = SharedState(value())
    calls = [delayed(change if k % 2 == 0 else look)(state, "ndarray element", "with") for k in range(12)]
    out = Parallel(backend="dask", batch_size=6)(calls)
    assert same_batch_pairs(out) == 10
    assert all(seen for _, _, seen, _ in out) and all(own for _, _, _, own in out)
    assert pristine(state.value)
