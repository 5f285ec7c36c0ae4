"""Fair timing: warm-up, repetitions, interleaving, pair-by-pair ratios, peak memory.

How one workload is measured (``interleave``):

1. every implementation runs ``warmup`` times untimed (pools started, caches and
   imports warm, code paths compiled);
2. then ``reps`` rounds; in each round every implementation runs once, in turn:
   A B C in even rounds, C B A in odd ones, so slow drift of the machine (other
   processes, thermal state) hits every implementation alike;
3. a garbage collection runs before each timed run, outside the timing.

Each implementation's times are summarised by their median, min and max
(:class:`Stat`). A ratio between two implementations is computed *pair by pair*:
the ratio inside each round, then the median (and min/max) of those ratios
(:func:`pair_ratios`), so that a noisy round cannot skew one side only.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import psutil


@dataclass
class Stat:
    """Median, min and max of some samples (seconds, ratios, bytes...)."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat | None:
        kept = [v for v in values if v is not None]
        if not kept:
            return None
        return cls(statistics.median(kept), min(kept), max(kept), len(kept))

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}


@dataclass
class Samples:
    """What one implementation produced in a workload: one time per round, or an error."""

    times: list[float | None] = field(default_factory=list)
    error: str | None = None

    def stat(self) -> Stat | None:
        return Stat.of(self.times)


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, shortened: what a table cell can show."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """Seconds one call of ``fn(*args, **kwargs)`` takes."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


Step = Callable[[str], None]


def interleave(
    impls: Mapping[str, Callable[[], float]],
    reps: int,
    warmup: int = 1,
    warm: Mapping[str, Callable[[], Any]] | None = None,
    on_step: Step | None = None,
    budget: float | None = None,
    min_reps: int = 3,
) -> dict[str, Samples]:
    """Run every implementation ``reps`` times, interleaved; see the module docstring.

    Each callable performs one run and returns its duration in seconds (so that it
    can leave its own setup out of the timing). ``warm`` optionally replaces the
    warm-up run of an implementation by a cheaper call. An implementation that
    raises is recorded with its error and not run again; the others go on.

    ``budget`` (seconds) bounds a slow workload: further warm-up rounds are
    skipped once one takes more than a quarter of it, and rounds stop (after
    ``min_reps``) when the next one would end past it. Every implementation
    always gets the same rounds, so ratios stay paired.
    """
    names = list(impls)
    out = {name: Samples() for name in names}
    for i in range(warmup):
        started = time.perf_counter()
        for name in names:
            if on_step:
                on_step(f"warm-up {i + 1}/{warmup} {name}")
            fn = (warm or {}).get(name, impls[name])
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - recorded as the implementation's result
                out[name].error = describe_error(exc)
        if budget is not None and time.perf_counter() - started > budget / 4:
            break
    started = time.perf_counter()
    for rep in range(reps):
        order = names if rep % 2 == 0 else names[::-1]
        times: dict[str, float | None] = {}
        for name in order:
            if out[name].error is not None:
                times[name] = None
                continue
            if on_step:
                on_step(f"run {rep + 1}/{reps} {name}")
            gc.collect()
            try:
                times[name] = impls[name]()
            except Exception as exc:  # noqa: BLE001 - recorded as the implementation's result
                out[name].error = describe_error(exc)
                times[name] = None
        for name in names:
            out[name].times.append(times[name])
        done = rep + 1
        elapsed = time.perf_counter() - started
        if budget is not None and done >= min_reps and elapsed * (done + 1) / done > budget:
            break
    return out


def pair_ratios(numerator: Sequence[float | None], denominator: Sequence[float | None]) -> Stat | None:
    """Median/min/max of ``numerator[i] / denominator[i]`` over rounds where both ran."""
    return Stat.of(a / b for a, b in zip(numerator, denominator, strict=True) if a is not None and b)


class PeakRSS:
    """Sample the resident memory of some processes in a thread; keep each one's peak.

    ``pids`` is called once at entry (the processes to watch; the calling
    process when None). The space used in ``/dev/shm`` is sampled too (files
    there are memory, but not in anybody's RSS until mapped; other programs on
    the machine can move it as well). Sampling every ``interval`` seconds misses
    short spikes, so peaks are lower bounds. Use it around an untimed run: the
    sampling thread takes the GIL now and then.
    """

    SHM = "/dev/shm"

    def __init__(self, pids: Callable[[], Sequence[int]] | None = None, interval: float = 0.005) -> None:
        self._pids = pids
        self.interval = interval
        self.start: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self.shm_start = self.shm_peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: list[psutil.Process] = []

    def _sample(self) -> None:
        for proc in self._procs:
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            if rss > self.peak.get(proc.pid, 0):
                self.peak[proc.pid] = rss
        if os.path.isdir(self.SHM):
            self.shm_peak = max(self.shm_peak, shutil.disk_usage(self.SHM).used)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakRSS:
        pids = list(self._pids()) if self._pids else [os.getpid()]
        self._procs = [psutil.Process(pid) for pid in pids]
        self._sample()
        self.start = dict(self.peak)
        self.shm_start = self.shm_peak
        self._thread = threading.Thread(target=self._loop, name="picklepool-bench-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @property
    def max_peak(self) -> int:
        return max(self.peak.values(), default=0)

    @property
    def max_growth(self) -> int:
        """The largest rise of one process's RSS above its value at entry."""
        return max((self.peak[p] - self.start.get(p, self.peak[p]) for p in self.peak), default=0)

    @property
    def shm_growth(self) -> int:
        """The peak rise of the space used in /dev/shm above its value at entry."""
        return max(0, self.shm_peak - self.shm_start)


class Progress:
    """A progress line on stderr: ``[3/11] tiny_tasks: run 2/5 joblib``.

    On a terminal the line is rewritten in place; otherwise (a log, a pipe) only
    the start and end of each workload are printed, one line each.
    """

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.index = 0
        self.name = ""
        self.started = 0.0
        self._width = 0

    def _write(self, text: str, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            self._width = 0 if final else len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def begin(self, name: str) -> None:
        self.index += 1
        self.name = name
        self.started = time.perf_counter()
        self._write(f"[{self.index}/{self.total}] {name} ...")

    def step(self, detail: str) -> None:
        if self.tty:
            elapsed = time.perf_counter() - self.started
            self._write(f"[{self.index}/{self.total}] {self.name}: {detail} ({elapsed:.0f}s)")

    def end(self, status: str) -> None:
        elapsed = time.perf_counter() - self.started
        self._write(f"[{self.index}/{self.total}] {self.name}: {status} in {elapsed:.1f}s", final=True)
