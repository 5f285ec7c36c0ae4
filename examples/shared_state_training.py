"""Seed 000 with SharedState: "How can I pickle _thread.RLock objects in a deep learning context?"

The seed's answer is to pickle the state a lock guards, not the lock, and to
rebuild the lock after unpickling. SharedState does exactly that, for you:

- a training thread updates the weights under the state's lock;
- meanwhile, worker processes evaluate consistent snapshots of the weights
  (sent once per version, rebuilt with a fresh lock in each worker);
- the weights are checkpointed atomically, signed, and loaded back.

    python examples/shared_state_training.py
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import numpy as np

from picklepool import Parallel, SharedState, delayed, shutdown


def evaluate(weights: SharedState, batch: int) -> tuple[int, float]:
    """A worker's view: one consistent version of every layer."""
    w = weights.value
    x = np.random.default_rng(batch).random((32, 10))
    loss = float(((x @ w["layer1"] @ w["layer2"]) ** 2).mean())
    return weights.version, loss


def train(weights: SharedState, stop: threading.Event) -> None:
    while not stop.is_set():
        with weights as w:  # the lock is held: no snapshot sees half an update
            w["layer1"] *= 0.999
            w["layer2"] *= 0.999


def main() -> int:
    rng = np.random.default_rng(0)
    weights = SharedState({"layer1": rng.random((10, 10)), "layer2": rng.random((10, 2))})

    stop = threading.Event()
    trainer = threading.Thread(target=train, args=(weights, stop))
    trainer.start()
    try:
        results = Parallel(n_jobs=2, batch_size=4)(delayed(evaluate)(weights, b) for b in range(100))
    finally:
        stop.set()
        trainer.join()
    versions = sorted({v for v, _ in results})
    print(f"100 evaluations saw {len(versions)} weight versions between {versions[0]} and {versions[-1]}")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.pp"
        saved = weights.save(path, key="a secret shared with the loader")
        restored = SharedState.load(path, key="a secret shared with the loader")
        assert restored.version == saved
        for name in ("layer1", "layer2"):
            np.testing.assert_array_equal(restored.value[name], weights.value[name])
        print(f"checkpoint of version {saved} restored with a fresh lock: {restored!r}")
    shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
