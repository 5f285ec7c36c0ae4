"""What every workload gets (the run's settings) and the usual way to fill one row."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .measure import interleave
from .peers import Peer
from .results import Cell, Row


@dataclass
class Context:
    """The settings of one ``picklepool bench`` run."""

    quick: bool
    n_jobs: int
    reps: int  # timed rounds per workload (some workloads use more, e.g. warm_latency)
    warmup: int
    step: Callable[[str], None]
    budget: float = 60.0  # seconds of timed rounds per row, at most (after min_reps rounds)

    def size(self, quick: Any, full: Any) -> Any:
        """Pick the quick or the full size of a workload parameter."""
        return quick if self.quick else full


def measure_row(
    ctx: Context,
    label: str,
    peers: dict[str, Peer],
    missing: dict[str, str],
    call: Callable[[Peer], Any],
    check: Callable[[Any], None] | None = None,
    *,
    reps: int | None = None,
    warmup: int | None = None,
    warm: Callable[[Peer], Any] | None = None,
    skip: dict[str, str] | None = None,
) -> Row:
    """Time ``call(peer)`` for every peer, interleaved; one row of cells.

    ``check(result)`` runs after each timed call, outside the timing: a wrong
    answer fails the cell instead of counting as fast. ``skip`` maps peer names
    to the reason they do not take part in this row.
    """
    skip = {**missing, **(skip or {})}
    impls: dict[str, Callable[[], float]] = {}
    for name, peer in peers.items():
        if name in skip:
            continue
        impls[name] = _timed_call(peer, call, check)
    warm_calls = {name: (lambda p=peers[name]: warm(p)) for name in impls} if warm else None
    samples = interleave(
        impls,
        reps=ctx.reps if reps is None else reps,
        warmup=ctx.warmup if warmup is None else warmup,
        warm=warm_calls,
        on_step=ctx.step,
        budget=ctx.budget,
    )
    row = Row(label)
    for name in list(peers) + list(missing):
        if name in samples:
            row.cells[name] = Cell.from_samples(samples[name])
        elif name in skip:
            row.cells[name] = Cell.skipped(skip[name])
    return row


def _timed_call(
    peer: Peer, call: Callable[[Peer], Any], check: Callable[[Any], None] | None
) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        result = call(peer)
        elapsed = time.perf_counter() - start
        if check is not None:
            check(result)
        return elapsed

    return run


def expect(expected: Any) -> Callable[[Any], None]:
    """A ``check`` comparing the result with *expected*."""

    def check(result: Any) -> None:
        if result != expected:
            shown = repr(result)
            raise AssertionError(f"wrong result: {shown[:80]}{'...' if len(shown) > 80 else ''}")

    return check
