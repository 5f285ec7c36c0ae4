"""Workloads about the cost of a call itself: many tiny tasks, latency, CPU-bound work.

tiny_tasks    100,000 calls of ``x * x`` (issue 2: at least 4x faster than joblib)
warm_latency  a one-task call on warm workers, median of 50 (issue 2: under 2 ms); and a
              detail table: calls back to back, 20 a round, per call
cpu_bound     40 tasks of ~25 ms of pure-Python work: wall time and parallel
              efficiency (serial loop time / (n_jobs x time))
"""

from __future__ import annotations

from .common import Context, expect, measure_row
from .measure import Stat
from .peers import opened_peers
from .results import LOOP, Table, WorkloadResult
from .tasks import burn, calibrate_burn, square


def tiny_tasks(ctx: Context) -> WorkloadResult:
    n = 100_000
    res = WorkloadResult("tiny_tasks", f"{n:,} calls of x*x, n_jobs={ctx.n_jobs}", {"n_tasks": n})
    xs = range(n)
    expected = [x * x for x in xs]
    with opened_peers(ctx.n_jobs) as (peers, missing):
        row = measure_row(ctx, "tiny_tasks", peers, missing, lambda p: p.map(square, xs), expect(expected))
    res.rows.append(row)
    return res


BURST = 20  # one-task calls a round of warm_latency's back-to-back table


def warm_latency(ctx: Context) -> WorkloadResult:
    """A one-task call on warm workers; the row times single calls, a collection before each
    (the bench's rule: ``measure.interleave``), which evicts the call's code and data from the
    CPU caches. The detail table times ``BURST`` calls back to back (caches warm, as in a loop
    of calls), per call: the same peers, interleaved the same way."""
    n = 50
    res = WorkloadResult(
        "warm_latency",
        f"one call of one task on warm workers, median of {n} calls",
        {"calls": n, "burst": BURST},
    )
    with opened_peers(ctx.n_jobs) as (peers, missing):
        row = measure_row(
            ctx, "warm_latency", peers, missing, lambda p: p.map(square, [3]), expect([9]), reps=n, warmup=3
        )
        burst = measure_row(
            ctx,
            "warm_latency back to back",
            peers,
            missing,
            lambda p: [p.map(square, [3]) for _ in range(BURST)],
            expect([[9]] * BURST),
            reps=max(3, n // 5),
            warmup=1,
        )
    res.rows.append(row)
    table = Table(
        f"warm_latency back to back: {BURST} calls a round, no collection between them; per call, "
        "median (min-max) over the rounds",
        ["implementation", "per call"],
        [],
    )
    for name, cell in burst.cells.items():
        if cell.status != "ok" or cell.stat is None:
            continue
        per = Stat(cell.stat.median / BURST, cell.stat.min / BURST, cell.stat.max / BURST, cell.stat.n)
        if name in row.cells:
            row.cells[name].extra["back_to_back"] = per.as_dict()
        table.rows.append([name, f"{per.median * 1e3:.3g} ms ({per.min * 1e3:.3g}-{per.max * 1e3:.3g})"])
    if table.rows:
        res.tables.append(table)
    return res


def cpu_bound(ctx: Context) -> WorkloadResult:
    n_tasks = 40
    task_s = ctx.size(0.005, 0.025)
    ctx.step("calibrating the task")
    n = calibrate_burn(task_s)
    res = WorkloadResult(
        "cpu_bound",
        f"{n_tasks} tasks of ~{task_s * 1000:.0f} ms of pure-Python work",
        {"n_tasks": n_tasks, "task_s": task_s, "loop_turns": n},
    )
    expected = [burn(n)] * n_tasks
    with opened_peers(ctx.n_jobs) as (peers, missing):
        row = measure_row(
            ctx,
            "cpu_bound",
            peers,
            missing,
            lambda p: p.map(burn, [n] * n_tasks),
            expect(expected),
            warm=lambda p: p.map(burn, [n // 10] * 4),
        )
    res.rows.append(row)
    loop = row.cells.get(LOOP)
    table = Table(
        "cpu_bound: parallel efficiency = loop time / (n_jobs x time), per round, median (min-max)",
        ["implementation", "efficiency"],
        [],
    )
    for name, cell in row.cells.items():
        if name == LOOP or cell.status != "ok" or loop is None or loop.status != "ok":
            continue
        eff = Stat.of(
            lt / (ctx.n_jobs * t)
            for lt, t in zip(loop.times, cell.times, strict=True)
            if lt is not None and t is not None
        )
        if eff is not None:
            cell.extra["efficiency"] = eff.as_dict()
            table.rows.append([name, f"{eff.median:.0%} ({eff.min:.0%}-{eff.max:.0%})"])
    if table.rows:
        res.tables.append(table)
    return res
