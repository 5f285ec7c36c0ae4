"""A model and its optimizer, guarded by an RLock, trained further in parallel.

The seed's third scenario checkpoints ``optimizer.state_dict()`` and builds a new
optimizer and lock after loading, because the lock cannot be pickled. With
picklepool, the object holding model, optimizer and lock is passed as it is:
the ``hybrid`` pickler snapshots it under its RLock, and the model and optimizer
travel in one stream, so in the worker the rebuilt optimizer still drives the
rebuilt model's own parameters. Each worker continues training the snapshot
with a different learning rate; the parent's trainer is unchanged.

Needs PyTorch; without it the script says so and exits 0.

Run: ``python examples/model_optimizer.py``
"""

from __future__ import annotations

import sys
import threading

try:
    import torch
except ImportError:
    print("skipped: this example needs PyTorch (pip install torch); picklepool itself does not")
    sys.exit(0)

from picklepool import Parallel, delayed


class Trainer:
    """Model, optimizer and step count, changed only under the lock."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self._lock = threading.RLock()
        self.model = torch.nn.Linear(10, 2)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.01)
        self.steps = 0

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        with self._lock:
            self.optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            self.steps += 1
            return float(loss.item())


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 10, generator=g), torch.randn(64, 2, generator=g)


def try_learning_rate(trainer: Trainer, lr: float) -> tuple[float, int, float, bool]:
    """In a worker: continue training this snapshot with another learning rate."""
    torch.set_num_threads(1)
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
    x, y = batch(1)
    losses = [trainer.train_step(x, y) for _ in range(20)]
    tied = trainer.optimizer.param_groups[0]["params"][0] is trainer.model.weight
    return lr, trainer.steps, losses[-1], tied


def main() -> None:
    trainer = Trainer()
    x, y = batch(1)
    for _ in range(5):
        trainer.train_step(x, y)
    before = trainer.model.weight.detach().clone()

    results = Parallel(n_jobs=2)(delayed(try_learning_rate)(trainer, lr) for lr in (0.001, 0.01, 0.1))
    for lr, steps, loss, tied in results:
        print(f"lr={lr:<6} steps={steps} final loss={loss:.4f} optimizer tied to model: {tied}")
        assert tied and steps == 25
    assert torch.equal(trainer.model.weight, before) and trainer.steps == 5
    print("parent's trainer unchanged: 5 steps")


if __name__ == "__main__":
    main()
