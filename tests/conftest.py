"""Shared fixtures: every test must leave no worker process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil
import pytest

import picklepool

_HELPER_MARKERS = ("resource_tracker", "semaphore_tracker")


def _children() -> dict[int, psutil.Process]:
    out = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        if not any(m in cmd for m in _HELPER_MARKERS):
            out[proc.pid] = proc
    return out


@pytest.fixture(autouse=True)
def no_leftover_workers():
    """Fail the test if a process it started is still running after it."""
    before = set(_children())
    yield
    picklepool.shutdown(wait=True)
    left = [p for pid, p in _children().items() if pid not in before]
    _, alive = psutil.wait_procs(left, timeout=10)
    if alive:
        for proc in alive:
            proc.kill()
        pytest.fail(f"processes left behind by this test: {[p.pid for p in alive]}")


def run_python(
    code: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run *code* as a real ``__main__`` script in a clean interpreter."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PICKLEPOOL_", "LOKY_PICKLER"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
