"""``picklepool bench --scaling``: picklepool's time per task as a call grows 1x, 10x, 100x.

What it measures: picklepool alone (no peers), with n_jobs 1 and 2, on

    tiny_tasks    calls of ``x * x``: 10,000 / 100,000 / 1,000,000 tasks
                  (--quick: 1,000 / 10,000 / 100,000)
    shared_state  tasks each reading a SharedState of a fixed ~8 MB value (--quick: 1 MB):
                  200 / 2,000 / 20,000 tasks (--quick: 20 / 200 / 2,000)

and prints the wall time of a call divided by its number of tasks (µs per
task) at each size. Fixed costs make the time per task fall as the call grows;
a cost that grows with the call (anything quadratic in the number of tasks)
makes it rise: the ``100x / 1x`` column is then above 1. Sizes are interleaved
round by round (``measure.interleave``), every result is checked, and a wrong
result or an exception is an error: ``picklepool bench --scaling`` then exits
non-zero. ``--plot`` draws time per task against the number of tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .common import expect
from .measure import Stat, interleave
from .tasks import make_state_value, score_state, score_value, square

FACTORS = (1, 10, 100)
N_JOBS = (1, 2)
MB = 1 << 20

# The 1x number of tasks of each case; quick and full.
QUICK_BASE = {"tiny_tasks": 1_000, "shared_state": 20}
FULL_BASE = {"tiny_tasks": 10_000, "shared_state": 200}
QUICK_STATE_BYTES, FULL_STATE_BYTES = 1 * MB, 8 * MB

# A case: given the number of tasks, the function, its argument tuples and the expected results.
Call = tuple[Callable[..., Any], list[tuple[Any, ...]], list[Any]]


def tiny_tasks(state_bytes: int) -> Callable[[int], Call]:
    def make(n: int) -> Call:
        return square, [(i,) for i in range(n)], [i * i for i in range(n)]

    return make


def shared_state(state_bytes: int) -> Callable[[int], Call]:
    from picklepool import SharedState

    value = make_state_value(state_bytes)
    state = SharedState(value)

    def make(n: int) -> Call:
        return score_state, [(state, i) for i in range(n)], [score_value(value, i) for i in range(n)]

    return make


CASES: dict[str, Callable[[int], Callable[[int], Call]]] = {
    "tiny_tasks": tiny_tasks,
    "shared_state": shared_state,
}


@dataclass
class ScalingRow:
    """One case at one n_jobs: the time per task (seconds) at each number of tasks."""

    case: str
    n_jobs: int
    sizes: list[int]
    per_task: dict[int, Stat] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)

    def growth(self) -> float | None:
        """Time per task at the largest size / at the smallest (>1: a cost grows with the call)."""
        first, last = self.per_task.get(self.sizes[0]), self.per_task.get(self.sizes[-1])
        return last.median / first.median if first and last and first.median else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "n_jobs": self.n_jobs,
            "sizes": self.sizes,
            "seconds_per_task": {str(n): s.as_dict() for n, s in self.per_task.items()},
            "errors": {str(n): e for n, e in self.errors.items()},
            "growth": self.growth(),
        }


def run_scaling(
    quick: bool = False,
    reps: int = 3,
    n_jobs: Sequence[int] = N_JOBS,
    step: Callable[[str], None] | None = None,
) -> list[ScalingRow]:
    """Every case at every n_jobs and size; rows in that order."""
    import picklepool

    base = QUICK_BASE if quick else FULL_BASE
    state_bytes = QUICK_STATE_BYTES if quick else FULL_STATE_BYTES
    rows = []
    try:
        for case, build in CASES.items():
            make = build(state_bytes)
            sizes = [base[case] * f for f in FACTORS]
            calls = {n: make(n) for n in sizes}
            for jobs in n_jobs:
                row = ScalingRow(case, jobs, sizes)
                impls = {n: _timed(jobs, *calls[n]) for n in sizes}
                warm = {n: _timed(jobs, *make(base[case])) for n in sizes}  # pool and caches warm
                on_step = (lambda text, c=case, j=jobs: step(f"{c} n_jobs={j}: {text}")) if step else None
                samples = interleave(
                    {str(n): f for n, f in impls.items()},
                    reps=reps,
                    warmup=1,
                    warm={str(n): f for n, f in warm.items()},
                    on_step=on_step,
                )
                for n in sizes:
                    s = samples[str(n)]
                    if s.error is not None:
                        row.errors[n] = s.error
                    elif (stat := Stat.of(t / n for t in s.times if t is not None)) is not None:
                        row.per_task[n] = stat
                rows.append(row)
    finally:
        picklepool.shutdown(wait=True)
    return rows


def _timed(
    n_jobs: int, func: Callable[..., Any], args: list[tuple[Any, ...]], expected: list[Any]
) -> Callable[[], float]:
    """One run of the call: its wall time; its results checked after the timing."""
    from picklepool import Parallel, delayed

    check = expect(expected)

    def run() -> float:
        start = time.perf_counter()
        out = Parallel(n_jobs=n_jobs)(delayed(func)(*a) for a in args)
        elapsed = time.perf_counter() - start
        check(out)
        return elapsed

    return run


def problems(rows: list[ScalingRow]) -> list[str]:
    """What fails ``picklepool bench --scaling``: ``case n_jobs=J, N tasks: error``."""
    return [f"{r.case} n_jobs={r.n_jobs}, {n:,} tasks: {e}" for r in rows for n, e in r.errors.items()]


def format_scaling(rows: list[ScalingRow], env: dict[str, Any], quick: bool, reps: int) -> str:
    """The text table: µs per task at each size, and the growth from 1x to 100x."""
    head = [
        f"picklepool bench --scaling ({'--quick' if quick else 'full run'}): {env['date']}, Python "
        f"{env['python']}, {env['usable_cores']} usable cores ({env['cpu_model']})",
        f"Time per task: a call's wall time / its number of tasks, in µs; median (min-max) of {reps} "
        "interleaved rounds after a warm-up.",
        f"growth = time per task at {FACTORS[-1]}x / at 1x: below 1, fixed costs are being spread; "
        "above 1, something costs more per task as the call grows.",
        "",
    ]
    header = ["case", "n_jobs", *(f"{f}x" for f in FACTORS), "growth"]
    lines = []
    for r in rows:
        cells = []
        for n in r.sizes:
            if n in r.errors:
                cells.append(f"{n:,} tasks: ERROR")
            elif (s := r.per_task.get(n)) is not None:
                us = 1e6
                cells.append(f"{n:,} tasks: {s.median * us:.3g} ({s.min * us:.3g}-{s.max * us:.3g})")
            else:
                cells.append(f"{n:,} tasks: -")
        g = r.growth()
        lines.append([r.case, str(r.n_jobs), *cells, f"{g:.2f}" if g is not None else "-"])
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    body = [fmt.format(*header).rstrip(), "  ".join("-" * w for w in widths)]
    body += [fmt.format(*x).rstrip() for x in lines]
    errors = problems(rows)
    tail = ["", "Errors:", *(f"- {e}" for e in errors)] if errors else []
    return "\n".join(head + body + tail) + "\n"


def to_json(rows: list[ScalingRow], env: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "picklepool-bench-scaling/1",
        "settings": settings,
        "environment": env,
        "definitions": {"seconds_per_task": "a call's wall time / its number of tasks; median, min, max"},
        "rows": [r.as_dict() for r in rows],
    }


def plot_scaling(rows: list[ScalingRow], path: str) -> int:
    """Time per task (µs) against the number of tasks, log-log, one panel per case; lines drawn."""
    from matplotlib.figure import Figure

    cases = list(dict.fromkeys(r.case for r in rows))
    fig = Figure(figsize=(5 * len(cases), 4))
    lines = 0
    for k, case in enumerate(cases):
        ax = fig.add_subplot(1, len(cases), k + 1)
        for r in (r for r in rows if r.case == case):
            sizes = [n for n in r.sizes if n in r.per_task]
            if not sizes:
                continue
            med = [r.per_task[n].median * 1e6 for n in sizes]
            lo = [m - r.per_task[n].min * 1e6 for m, n in zip(med, sizes, strict=True)]
            hi = [r.per_task[n].max * 1e6 - m for m, n in zip(med, sizes, strict=True)]
            ax.errorbar(sizes, med, yerr=[lo, hi], marker="o", capsize=3, label=f"n_jobs={r.n_jobs}")
            lines += 1
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tasks in the call")
        ax.set_ylabel("time per task (µs)")
        ax.set_title(f"picklepool: {case}", fontsize=10)
        ax.legend(fontsize=8)
    if not lines:
        raise ValueError("nothing to plot: no size has a time")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return lines
