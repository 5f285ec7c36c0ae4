"""Model weights guarded by an RLock, evaluated in parallel while a thread keeps training.

The seed's first scenario: a dict of numpy weights protected by ``_thread.RLock``.
Plain ``pickle`` refuses the lock (``cannot pickle '_thread.RLock' object``), so
the usual advice is to pickle the weights alone and make a new lock by hand.

With picklepool the object that owns the lock is passed as it is. The default
``hybrid`` pickler takes the object's own RLock while it writes the snapshot, so
a worker never sees an update half applied, and rebuilds it in the worker with a
fresh, released RLock. Here a training thread updates every layer under the
lock while the tasks are sent; each worker checks that all layers moved by the
same number of steps.

Run: ``python examples/weights_rlock.py``
"""

from __future__ import annotations

import sys
import threading

try:
    import numpy as np
except ImportError:
    print("skipped: this example needs numpy (pip install numpy)")
    sys.exit(0)

from picklepool import Parallel, delayed


class Weights:
    """Layers and the number of training steps applied, changed only under the lock."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self.step = 0
        self.layers = {"layer1": rng.random((10, 10)), "layer2": rng.random((10, 2))}

    def update(self) -> None:
        with self._lock:
            for w in self.layers.values():
                w += 0.1  # one layer at a time: a snapshot without the lock could see half
            self.step += 1


def evaluate(weights: Weights, initial: dict, seed: int) -> tuple[int, bool, float]:
    """In a worker: is the snapshot consistent, and what does the model output?"""
    with weights._lock:  # a fresh lock, usable in the worker
        consistent = all(
            np.allclose(w, initial[name] + 0.1 * weights.step) for name, w in weights.layers.items()
        )
        x = np.random.default_rng(seed).random(10)
        out = x @ weights.layers["layer1"] @ weights.layers["layer2"]
    return weights.step, consistent, float(out.sum())


def main() -> None:
    weights = Weights(seed=0)
    initial = {name: w.copy() for name, w in weights.layers.items()}
    for _ in range(5):
        weights.update()

    stop = threading.Event()

    def train() -> None:
        while not stop.is_set():
            weights.update()

    trainer = threading.Thread(target=train)
    trainer.start()
    try:
        results = Parallel(n_jobs=2, batch_size=1)(delayed(evaluate)(weights, initial, i) for i in range(20))
    finally:
        stop.set()
        trainer.join()

    steps = [step for step, _, _ in results]
    print(f"20 evaluations of snapshots taken at training steps {min(steps)}..{max(steps)}")
    print(f"every snapshot consistent: {all(ok for _, ok, _ in results)}")
    assert all(ok for _, ok, _ in results), "a worker saw a half-applied update"


if __name__ == "__main__":
    main()
