"""Shared fixtures: every test must leave no worker process and no shared-memory file behind."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Iterator

import psutil
import pytest

import picklepool

# A run started in the background by a shell without job control (`cmd &`, nohup) inherits
# SIGINT ignored, and so would every child: the Ctrl-C tests, which send SIGINT to their
# scripts, would wait for an interrupt that never comes. Handled here, it is the default
# again in every process these tests start.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_HELPER_MARKERS = ("resource_tracker", "semaphore_tracker")
_FORKSERVER = "picklepool.workers.forkserver"


def helper(proc: psutil.Process) -> bool:
    """Whether *proc* is no pool's worker: a resource tracker, or picklepool's forkserver.

    The forkserver (``workers.forkserver``) lives until ``picklepool.shutdown()``,
    which the check after each test calls, or the process's end. The workers it
    forks keep its command line: it is the one whose parent is not a forkserver.
    psutil.Error if *proc* is gone.
    """
    cmd = " ".join(proc.cmdline())
    if any(m in cmd for m in _HELPER_MARKERS):
        return True
    if _FORKSERVER not in cmd:
        return False
    parent = proc.parent()
    return parent is None or _FORKSERVER not in " ".join(parent.cmdline())


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


# Processes owned by a fixture wider than one test (a module's dask cluster): functions
# that return the pids such a fixture owns now. The per-test check skips them.
_long_lived: list[Callable[[], Iterable[int]]] = []


def _fail_if_left(before: set[int], who: str) -> None:
    def left() -> list[psutil.Process]:
        skip = {pid for pids in _long_lived for pid in pids()}
        return [p for pid, p in _children().items() if pid not in before and pid not in skip]

    _, alive = psutil.wait_procs(left(), timeout=10)
    alive = [p for p in alive if p in left()]  # a long-lived fixture may have replaced it meanwhile
    if alive:
        for proc in alive:
            proc.kill()
        pytest.fail(f"processes left behind by {who}: {[p.pid for p in alive]}")


def _call_files() -> set[str]:
    """This process's call folders in /dev/shm and spilled-buffer folders in the temp folder,
    but the empty ones the session keeps for the next calls (``Session.spare_folders``)."""
    pid = os.getpid()
    found = set(glob.glob(f"/dev/shm/picklepool-{pid}-*/call-*")) | set(
        glob.glob(os.path.join(tempfile.gettempdir(), f"picklepool-{pid}-spill-*"))
    )
    return found - set(spare_folders())


def spare_folders() -> list[str]:
    """The call folders the session keeps for the next calls; each must be empty."""
    from picklepool.executor.session import current_session

    session = current_session()
    spare = list(session.spare_folders) if session is not None else []
    for folder in spare:
        assert os.listdir(folder) == [], f"a spare call folder is not empty: {folder}"
    return spare


@pytest.fixture(autouse=True)
def no_leftover_workers():
    """Fail the test if a process it started is still running after it, or a call folder it made is left."""
    before = set(_children())
    files_before = _call_files()
    yield
    picklepool.shutdown(wait=True)
    _fail_if_left(before, "this test")
    left = _call_files() - files_before
    if left:
        pytest.fail(f"shared-memory or spill folders left behind by this test: {sorted(left)}")


@contextlib.contextmanager
def long_lived_processes(who: str) -> Iterator[Callable[[Callable[[], Iterable[int]]], None]]:
    """For a fixture wider than one test that starts processes (a dask cluster).

    Yields ``own(pids)``: the fixture passes a function returning the pids it owns
    at any moment (they change when a worker is restarted); tests do not count
    them as left behind. When the block ends, every process started inside it
    must be gone.
    """
    before = set(_children())
    owned: list[Callable[[], Iterable[int]]] = []

    def own(pids: Callable[[], Iterable[int]]) -> None:
        owned.append(pids)
        _long_lived.append(pids)

    try:
        yield own
    finally:
        for pids in owned:
            _long_lived.remove(pids)
        _fail_if_left(before, who)


def running(pid: int) -> bool:
    """Whether process *pid* exists and is not a zombie (False too when it goes while asked:
    ``psutil.pid_exists`` then ``psutil.Process(pid)`` raced with its reaping)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def outcome(fn: Callable[[], object]) -> object:
    """``fn()``, or the name of the exception it raised: what a task gets from a call that may
    fail, compared between the parent's loop and a worker."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the error is the answer
        return type(exc).__name__


def prints_ok(code: str, timeout: float = 120) -> None:
    """Run *code* as a real ``__main__`` script (:func:`run_python`); it must end printing
    only "ok" (its asserts passed)."""
    proc = run_python(code, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok", proc.stdout


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
