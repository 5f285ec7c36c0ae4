"""Soak test: picklepool under a few minutes of mixed abuse (issue 14). Not run in CI.

What it measures: whether picklepool ever hangs, returns a wrong result or leaves
something behind, while one process keeps making calls that mix

- normal calls (results checked),
- crashes (a task raises, calls ``sys.exit``, ``os._exit``, is SIGKILLed or segfaults),
- timeouts (a task sleeps past ``timeout``, or swallows the interruption and returns),
- memory recycling (``max_worker_memory`` small enough to retire workers all the time),
- nested calls (tasks that run a ``Parallel`` of their own, retired or timed out too),
- abandoned generators (``return_as="generator"`` read twice, then dropped),
- child scripts that run calls with a 20 MB argument in flight and are SIGINTed or
  SIGKILLed mid-call (their workers and ``/dev/shm`` files must go with them).

Each call runs under a watchdog deadline (``--deadline``, 60 s): a call past it is a
hang, reported with every thread's stack, and the soak stops. Expected errors are
counted by type; an unexpected error type or a wrong value counts as a wrong result.
At the end: leftover processes (children of this process and of the child scripts)
and ``/dev/shm`` entries (this process's call folders, the child scripts' session
folders and loky semaphores). Exit status 0 only if wrong results, hangs and
leftovers are all 0.

    python benchmarks/soak.py                 # about 3 minutes
    python benchmarks/soak.py --seconds 30    # a quick look
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import faulthandler
import glob
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import psutil

import picklepool
from picklepool import Parallel, TaskExitError, TaskTimeoutError, WorkerCrashedError, delayed

# -- tasks (importable by the workers: this module is sent by value, as __main__) ----


def square(x):
    return x * x


def crash(kind, i, bad):
    if i == bad:
        if kind == "raise":
            raise ValueError(f"bad {i}")
        if kind == "sys_exit":
            sys.exit(3)
        if kind == "os_exit":
            os._exit(7)
        if kind == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "segfault":
            ctypes.string_at(0)
    return i


def sleepy(d, swallow):
    try:
        time.sleep(d)
    except BaseException:  # noqa: BLE001 - the swallowing case
        if not swallow:
            raise
    return d


def nested(i, sleep=0.0):
    total = sum(Parallel(n_jobs=2, backend="loky")(delayed(square)(j) for j in range(5)))
    if sleep:
        time.sleep(sleep)
    return total + i


def grow(i):
    junk = bytearray(i % 3 * 1024)  # noqa: F841 - a little memory per task
    return i


# -- scenarios: each returns the expected error type (None: must succeed) and checks ---


def s_normal(rng):
    n = rng.choice([10, 200, 5000])
    out = Parallel(n_jobs=2)(delayed(square)(i) for i in range(n))
    assert out == [i * i for i in range(n)], "normal: wrong results"


CRASH_TYPES = {
    "raise": ValueError,
    "sys_exit": TaskExitError,
    "os_exit": WorkerCrashedError,
    "sigkill": WorkerCrashedError,
    "segfault": WorkerCrashedError,
}


def s_crash(rng):
    kind = rng.choice(list(CRASH_TYPES))
    bad = rng.randrange(8)
    try:
        Parallel(n_jobs=2, batch_size=1)(delayed(crash)(kind, i, bad) for i in range(8))
    except CRASH_TYPES[kind] as exc:
        if f"task {bad}" not in str(exc) + " ".join(getattr(exc, "__notes__", [])):
            raise AssertionError(f"crash {kind}: the error does not name task {bad}: {exc}") from exc
        return type(exc).__name__
    raise AssertionError(f"crash {kind}: no error")


def s_timeout(rng):
    swallow = rng.random() < 0.5
    try:
        Parallel(n_jobs=2, batch_size=1, timeout=0.5)(delayed(sleepy)(d, swallow) for d in [0, 30, 0, 0])
    except TaskTimeoutError as exc:
        return type(exc).__name__
    raise AssertionError(f"timeout (swallow={swallow}): no error")


def s_recycle(rng):
    out = Parallel(n_jobs=2, batch_size=1, max_worker_memory="1")(delayed(grow)(i) for i in range(8))
    assert out == list(range(8)), "recycle: wrong results"


def s_nested(rng):
    how = rng.choice(["plain", "recycled", "timeout"])
    if how == "timeout":
        try:
            Parallel(n_jobs=2, batch_size=1, timeout=5)(delayed(nested)(i, 30 * (i == 1)) for i in range(3))
        except TaskTimeoutError as exc:
            return type(exc).__name__
        raise AssertionError("nested timeout: no error")
    memory = "1" if how == "recycled" else None
    out = Parallel(n_jobs=2, batch_size=1, max_worker_memory=memory)(delayed(nested)(i) for i in range(4))
    assert out == [30 + i for i in range(4)], f"nested {how}: wrong results"


def s_generator(rng):
    gen = Parallel(n_jobs=2, batch_size=1, return_as=rng.choice(["generator", "generator_unordered"]))(
        delayed(square)(i) for i in range(200)
    )
    first = [next(gen), next(gen)]
    assert all(v in {i * i for i in range(200)} for v in first), "generator: wrong results"
    del gen


CHILD = """
import sys
import numpy as np
from picklepool import Parallel, delayed

def hold(a, i):
    import time
    time.sleep(60)
    return i

if __name__ == "__main__":
    big = np.ones(20 * 2**20 // 8)
    print(sum(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(10))), flush=True)
    Parallel(n_jobs=2, batch_size=1)(delayed(hold)(big, i) for i in range(4))
"""

_child_pids: list[int] = []
_child_workers: set[int] = set()


def s_child(rng):
    sig = rng.choice([signal.SIGINT, signal.SIGKILL])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICKLEPOOL_")}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    _child_pids.append(child.pid)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "45", "child: wrong first result"
    # the second call is under way once its session holds a call folder
    end = time.monotonic() + 30
    while not glob.glob(f"/dev/shm/picklepool-{child.pid}-*/call-*") and time.monotonic() < end:
        time.sleep(0.05)
    try:
        _child_workers.update(p.pid for p in psutil.Process(child.pid).children(recursive=True))
    except psutil.Error:
        pass
    child.send_signal(sig)
    try:
        child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise AssertionError(f"child: did not exit within 30 s of {sig.name}") from None
    child.stdout.close()
    return f"child {sig.name}"


SCENARIOS = {
    "normal": (s_normal, 5),
    "crash": (s_crash, 3),
    "timeout": (s_timeout, 2),
    "recycle": (s_recycle, 2),
    "nested": (s_nested, 2),
    "generator": (s_generator, 2),
    "child": (s_child, 1),
}


def run_with_deadline(fn, rng, deadline):
    """``(outcome, error)`` of ``fn(rng)`` in a thread; ``("hang", None)`` past *deadline*."""
    box: dict[str, object] = {}

    def target():
        try:
            box["value"] = fn(rng)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        return "hang", None
    return box.get("value"), box.get("error")


def leftovers(own_calls_before: set[str]) -> dict[str, list]:
    me = psutil.Process()
    helpers = ("resource_tracker", "semaphore_tracker")
    procs = []
    for p in me.children(recursive=True):
        try:
            if not any(h in " ".join(p.cmdline()) for h in helpers):
                procs.append(p.pid)
        except psutil.Error:
            pass
    orphans = [pid for pid in _child_workers if psutil.pid_exists(pid) and _not_zombie(pid)]
    shm = sorted(set(glob.glob(f"/dev/shm/picklepool-{os.getpid()}-*/call-*")) - own_calls_before)
    for pid in _child_pids:
        shm += glob.glob(f"/dev/shm/picklepool-{pid}-*") + glob.glob(f"/dev/shm/sem.loky-{pid}-*")
    return {"processes": procs, "child workers": orphans, "/dev/shm": shm}


def _not_zombie(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="how long to soak (default 180)")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds before a call is a hang")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--trace", action="store_true", help="print each call's scenario and outcome")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    names = [n for n, (_, w) in SCENARIOS.items() for _ in range(w)]
    warnings.simplefilter("ignore")  # loky's and ours about recycled workers: counted below instead
    own_before = set(glob.glob(f"/dev/shm/picklepool-{os.getpid()}-*/call-*"))
    runs: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    wrong: list[str] = []
    hangs = 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        name = rng.choice(names)
        fn = SCENARIOS[name][0]
        value, error = run_with_deadline(fn, rng, args.deadline)
        runs[name] += 1
        if args.trace:
            print(
                f"  ran {name}: {value if error is None else repr(error)[:80]}", file=sys.stderr, flush=True
            )
        if value == "hang":
            hangs += 1
            print(f"HANG in scenario {name!r}; stacks:", file=sys.stderr)
            faulthandler.dump_traceback(all_threads=True)
            break
        if error is not None:
            wrong.append(f"{name}: {type(error).__name__}: {error}"[:300])
        elif isinstance(value, str):
            errors[value] += 1
    elapsed = time.monotonic() - start
    picklepool.shutdown(wait=True)
    # bounded wait for the child scripts' workers and files (their exits are asynchronous)
    end = time.monotonic() + 30
    left = leftovers(own_before)
    while any(left.values()) and time.monotonic() < end:
        time.sleep(0.2)
        left = leftovers(own_before)
    print(f"soak: {sum(runs.values())} calls in {elapsed:.0f} s (seed {args.seed})")
    print("  calls by scenario: " + ", ".join(f"{k} {v}" for k, v in sorted(runs.items())))
    print(
        "  expected errors by type: " + (", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none")
    )
    print(f"  wrong results: {len(wrong)}")
    for w in wrong[:10]:
        print(f"    {w}")
    print(f"  hangs: {hangs}")
    for what, items in left.items():
        print(f"  leftover {what}: {len(items)} {items[:5] if items else ''}")
    ok = not wrong and not hangs and not any(left.values())
    print("soak: OK" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
