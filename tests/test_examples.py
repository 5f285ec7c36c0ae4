"""Every script in examples/ runs as a real program and says what it showed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "weights_rlock.py": ["every snapshot consistent: True"],
    "queue_work_items.py": ["shard 0: [0, 9, 36, 81]", "parent's queue untouched: 12 items"],
    "model_optimizer.py": ["optimizer tied to model: True", "parent's trainer unchanged"],
    "shared_state_training.py": ["100 evaluations saw", "restored with a fresh lock"],
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICKLEPOOL_", "LOKY_PICKLER"))}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    if proc.stdout.startswith("skipped:"):  # an optional dependency (torch) is missing
        assert "pip install" in proc.stdout
        return
    for line in EXPECTED[name]:
        assert line in proc.stdout
