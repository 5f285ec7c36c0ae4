"""Progress of a ``Parallel`` call: a bar, joblib-style lines, or a callback.

The dispatcher (``dispatch.Call.run``) reports ``(done, total)`` once per
completed *batch*, never per task, so progress costs the same whether a batch
holds one task or ten thousand. ``total`` is the number of tasks when it is
known: ``len(iterable)``, or, for a generator, the number dispatched once it is
exhausted; before that it is None.

What ``Parallel`` shows, from its ``progress`` and ``verbose`` settings:

- ``progress=True``: a bar of completed tasks with rate and ETA on stderr, drawn
  by tqdm when it is installed (``pip install picklepool[progress]``), else a
  plain single line redrawn in place. Nothing is drawn when stderr is not a
  terminal (a log file, a CI job, a pipe), so logs stay clean.
- ``progress="always"``: the same bar, drawn even when stderr is not a terminal.
  The environment variable ``PICKLEPOOL_PROGRESS`` gives the default when neither
  the argument nor ``parallel_config`` sets it: ``1``/``true`` is ``True``,
  ``always`` forces the bar, ``0``/``false`` turns it off.
- ``progress=callable``: ``callable(done, total_or_None)`` after every batch, in
  the thread that consumes the results, for people who drive their own UI.
- ``verbose=N``: joblib-style lines on stderr (stdout from verbose=50, as joblib)
  (``[Parallel(n_jobs=2)]: Done  40 out of 100 | elapsed:    1.2s remaining:    1.8s``,
  joblib's format, after joblib's ``Using backend LokyBackend with 2 concurrent workers.``),
  written through ``Parallel._print(msg)`` (joblib's hook) by
  ``Parallel.print_progress()`` (joblib's hook too), so subclasses that override
  either see them.
  Above 10 a line per batch; from 1 to 10 lines come at a spacing that grows
  geometrically with the number of batches (more often for larger N), so a long
  call prints a few dozen lines, not thousands. The last line says ``finished``
  and, when ``max_worker_memory`` recycled workers during the call, how many.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO, Any

ProgressCallback = Callable[[int, "int | None"], None]

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1  # the plain bar redraws at most this often (tqdm has its own)


def make_reporter(
    progress: Any,
    verbose: int,
    n_workers: int,
    recycled: Callable[[], int] | None = None,
    stream: IO[str] | None = None,
    hook: Callable[[int, int | None], None] | None = None,
) -> Reporter | None:
    """The reporter for one call, or None when nothing is to be reported.

    *recycled*, when given, returns how many workers were recycled for memory so
    far in this process; the last verbose line reports the difference. *hook*,
    when given, is called after each batch in place of the verbose lines (it makes
    them itself: ``Parallel`` passes its ``print_progress`` path here).
    """
    stream = sys.stderr if stream is None else stream
    sinks: list[Callable[[int, int | None], None]] = []
    closers: list[Callable[[], None]] = []
    if callable(progress) and not isinstance(progress, (bool, str)):
        sinks.append(progress)
    elif progress == "always" or (progress is True and _interactive(stream)):
        bar = _make_bar(stream)
        sinks.append(bar.update)
        closers.append(bar.close)
    if hook is not None:
        sinks.append(hook)
    elif verbose:
        sinks.append(VerboseLines(verbose, n_workers, stream, recycled))
    if not sinks:
        return None
    return Reporter(sinks, closers)


class Reporter:
    """Calls each sink with ``(done, total)``; ``close()`` ends bars (idempotent)."""

    __slots__ = ("_sinks", "_closers")

    def __init__(
        self, sinks: list[Callable[[int, int | None], None]], closers: list[Callable[[], None]]
    ) -> None:
        self._sinks = sinks
        self._closers = closers

    def __call__(self, done: int, total: int | None) -> None:
        for sink in self._sinks:
            sink(done, total)

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for close in closers:
            close()


def _interactive(stream: IO[str]) -> bool:
    """True when *stream* is a terminal, or a Jupyter kernel's output stream."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # closed or file-like without isatty
        return False
    return type(stream).__module__.startswith("ipykernel")


def _tqdm_class() -> Any:
    """tqdm's class for this environment (widgets in Jupyter), or None if not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def _make_bar(stream: IO[str]) -> TqdmBar | PlainBar:
    tqdm = _tqdm_class()
    if tqdm is not None:
        return TqdmBar(tqdm, stream)
    return PlainBar(stream)


class TqdmBar:
    """A tqdm bar fed with batch completions; tqdm computes rate and ETA."""

    def __init__(self, tqdm: Any, stream: IO[str]) -> None:
        # disable=False: whether to draw was decided already (terminal or forced).
        self._bar = tqdm(total=None, unit="task", file=stream, disable=False, dynamic_ncols=True)
        self._total: int | None = None

    def update(self, done: int, total: int | None) -> None:
        bar = self._bar
        if total != self._total:
            self._total = bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    def close(self) -> None:
        self._bar.close()


class PlainBar:
    """A single line redrawn in place with ``\\r``: bar, counts, rate and ETA."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.start = time.perf_counter()
        self.last_draw = -math.inf
        self.drawn = False
        self.pending: tuple[int, int | None] | None = None

    def update(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now - self.last_draw < REDRAW_SECONDS and done != total:
            self.pending = (done, total)
            return
        self.last_draw = now
        self._draw(done, total, now)

    def _draw(self, done: int, total: int | None, now: float) -> None:
        self.pending = None
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        if total:
            fill = min(BAR_WIDTH, BAR_WIDTH * done // total)
            eta = format_seconds((total - done) / rate) if rate else "?"
            line = (
                f"[{'#' * fill}{'.' * (BAR_WIDTH - fill)}] {done}/{total} "
                f"{100 * done // total}% | {rate:.4g} tasks/s | eta {eta}"
            )
        else:
            line = f"{done} tasks | {rate:.4g} tasks/s | elapsed {format_seconds(elapsed)}"
        self.stream.write(f"\r{line}\x1b[K")  # \x1b[K: erase what a longer line left
        self._flush()
        self.drawn = True

    def _flush(self) -> None:
        flush = getattr(self.stream, "flush", None)  # sys.stderr may be an object with only a write
        if flush is not None:
            flush()

    def close(self) -> None:
        if self.pending is not None:
            self._draw(*self.pending, time.perf_counter())
        if self.drawn:
            self.stream.write("\n")
            self._flush()
            self.drawn = False


class VerboseLines:
    """joblib-style ``[Parallel(n_jobs=N)]: Done ...`` lines, at growing spacing.

    Each line goes to *write* without the ``[Parallel(n_jobs=N)]:`` prefix when it is
    given (``Parallel._print``, joblib's hook, adds it), else to *stream* with it.
    The counts are right-aligned to *width* digits (joblib's: those of
    ``len(iterable)``, else 3), so the ``Done  N out of M |`` part keeps one width
    within a call, as joblib's does.
    """

    def __init__(
        self,
        verbose: int,
        n_workers: int,
        stream: IO[str],
        recycled: Callable[[], int] | None,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.verbose = verbose
        self.prefix = f"[Parallel(n_jobs={n_workers})]:"
        self.stream = stream
        self.write = write
        self.start = time.perf_counter()
        self.batches = 0
        self.next_line = 1  # the batch count at which the next line is printed
        self.recycled = recycled
        self.recycled_before = recycled() if recycled is not None else 0
        self.width = 3  # of the counts: joblib's, the digits of len(iterable) (else 3)

    def _out(self, text: str) -> None:
        if self.write is not None:
            self.write(text)
        else:
            print(self.prefix, text, file=self.stream)

    def __call__(self, done: int, total: int | None) -> None:
        self.batches += 1
        finished = total is not None and done >= total
        if not finished and self.batches < self.next_line:
            return
        self.next_line = self.batches + self._spacing(self.batches)
        elapsed = time.perf_counter() - self.start
        w = self.width  # joblib's: the digits of len(iterable), else 3
        if finished:
            text = f"Done {done:{w}d} out of {total:{w}d} | elapsed: {joblib_time(elapsed)} finished"
        elif total is not None:
            remaining = elapsed / done * (total - done) if done else 0.0
            text = (
                f"Done {done:{w}d} out of {total:{w}d} | elapsed: {joblib_time(elapsed)} "
                f"remaining: {joblib_time(remaining)}"
            )
        else:
            text = f"Done {done:{w}d} tasks      | elapsed: {joblib_time(elapsed)}"
        self._out(text)
        if finished and self.recycled is not None:
            n = self.recycled() - self.recycled_before
            if n:
                s = "" if n == 1 else "s"
                self._out(f"{n} worker{s} recycled during this call (RSS over max_worker_memory)")

    def _spacing(self, batches: int) -> int:
        """Batches until the next line: 1 above verbose=10, else ~batches * (11-v)/10."""
        if self.verbose > 10:
            return 1
        return max(1, batches * (11 - self.verbose) // 10)


def joblib_time(seconds: float) -> str:
    """A duration as joblib's ``verbose`` lines show it: ``   4.2s``, `` 3.5min``."""
    if seconds > 60:
        return f"{seconds / 60:4.1f}min"
    return f" {seconds:5.1f}s"


def format_seconds(seconds: float) -> str:
    """``4.2s``, ``3.5min`` or ``2.0h``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"
