"""Workloads about moving data: large arrays, shared state, lock-holding objects, picklers.

big_array_in   20 tasks each receiving the same large float64 array, reading one
               element (issue 4: no slower than joblib's memmapping; parent peak
               memory under 1.5x the array)
big_array_out  20 tasks each returning a fresh large array (issue 4: at least 3x
               faster than joblib)
shared_state   1,000 tasks each receiving the same 50 MB value (48 MB array + a list
               of 500k ints), a new version each call: joblib and the others get
               the plain value, picklepool a SharedState its tasks read under the
               lock (issue 5: at most 0.10x joblib's time; worker peak memory at
               most joblib's)
lock_object    tasks each receiving a user object holding an RLock: picklepool's
               hybrid pickler takes the class as it is, the others need the seed's
               hand-written __getstate__/__setstate__ (issue 3)
pickler_micro  dumps+loads of issue 3's payloads under pickle, cloudpickle and
               hybrid, in the parent (issue 3: hybrid within 1.05x of pickle)

A workload checks first that the picklepool feature it measures works
(``features.py``): a broken feature, like an exception or a wrong result, makes
the workload an error. Only missing numpy skips one.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from typing import Any

from . import features
from .common import Context, expect, measure_row
from .measure import PeakRSS, Stat, describe_error, interleave, pair_ratios
from .peers import Peer, opened_peers
from .results import CF_PPE, JOBLIB, LOOP, PICKLEPOOL, Cell, Row, Table, WorkloadResult
from .tasks import (
    LockedModel,
    LockedModelManual,
    fresh_array,
    make_state_value,
    payloads,
    predict,
    read_element,
    score_state,
    score_value,
    value_nbytes,
)

MB = 1 << 20


def _memory_run(peer: Peer, call: Callable[[Peer], Any], workers: bool) -> PeakRSS:
    """One untimed run of *call* with the RSS of the parent (or of the peer's workers) sampled."""
    with PeakRSS(peer.worker_pids if workers else None) as rss:
        call(peer)
    return rss


def big_array_in(ctx: Context) -> WorkloadResult:
    nbytes, n_tasks = ctx.size(16 * MB, 200 * MB), 20
    res = WorkloadResult(
        "big_array_in",
        f"{n_tasks} tasks each receiving the same {nbytes // MB} MB float64 array, reading one element",
        {"array_mb": nbytes // MB, "n_tasks": n_tasks},
    )
    if reason := features.numpy_missing():
        res.skipped = reason
        return res
    features.check_shm_arguments(ctx.n_jobs)
    import numpy as np

    arr = np.random.default_rng(0).random(nbytes // 8)
    args = [(arr, i) for i in range(n_tasks)]
    small = [(np.arange(4 * MB // 8, dtype=np.float64), i) for i in range(ctx.n_jobs)]

    def call(p: Peer) -> Any:
        return p.starmap(read_element, args)

    with opened_peers(ctx.n_jobs) as (peers, missing):
        row = measure_row(
            ctx,
            "big_array_in",
            peers,
            missing,
            call,
            expect([float(arr[i]) for i in range(n_tasks)]),
            warm=lambda p: p.starmap(read_element, small),  # pools started, code paths warm
        )
        for name in (PICKLEPOOL, JOBLIB):
            cell = row.cells.get(name)
            if cell is not None and cell.status == "ok":
                ctx.step(f"memory run {name}")
                rss = _memory_run(peers[name], call, workers=False)
                cell.extra["parent_peak_growth_mb"] = rss.max_growth / MB
                cell.extra["parent_peak_x_array"] = (nbytes + rss.max_growth) / nbytes
                cell.extra["dev_shm_growth_mb"] = rss.shm_growth / MB
    res.rows.append(row)
    _memory_table(
        res,
        row,
        "big_array_in: parent peak memory (the array + the call's growth of RSS) / array size; "
        "issue 4 target < 1.5 for picklepool. /dev/shm: growth of the space used there",
        "parent_peak_x_array",
    )
    return res


def big_array_out(ctx: Context) -> WorkloadResult:
    nbytes, n_tasks = ctx.size(4 * MB, 50 * MB), 20
    res = WorkloadResult(
        "big_array_out",
        f"{n_tasks} tasks each returning a fresh {nbytes // MB} MB float64 array",
        {"array_mb": nbytes // MB, "n_tasks": n_tasks},
    )
    if reason := features.numpy_missing():
        res.skipped = reason
        return res
    features.check_shm_results(ctx.n_jobs)
    n_items = nbytes // 8
    args = [(n_items, float(i)) for i in range(n_tasks)]

    def check(result: list[Any]) -> None:
        ok = len(result) == n_tasks and all(
            r.shape == (n_items,) and r[-1] == i for i, r in enumerate(result)
        )
        if not ok:
            raise AssertionError("wrong result: the returned arrays differ from the ones the tasks made")

    with opened_peers(ctx.n_jobs) as (peers, missing):
        row = measure_row(
            ctx,
            "big_array_out",
            peers,
            missing,
            lambda p: p.starmap(fresh_array, args),
            check,
            warm=lambda p: p.starmap(fresh_array, [(2 * MB // 8, 0.0)] * ctx.n_jobs),
        )
    res.rows.append(row)
    return res


def _restart_joblib_workers() -> None:
    """Stop joblib's reusable loky workers, so that its memory run starts on fresh ones too."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def shared_state(ctx: Context) -> WorkloadResult:
    # Issue 5: 1,000 tasks of a 50 MB value (a 48 MB array, a list of 500k ints), each task
    # reading it under the state's lock (the seed's pattern), a new version every call.
    nbytes, n_tasks = ctx.size(6 * MB, 50 * MB), ctx.size(200, 1000)
    res = WorkloadResult(
        "shared_state",
        f"{n_tasks} tasks each receiving the same ~{nbytes // MB} MB value (numpy array + list of "
        "ints), a new version each call; picklepool gets it in a SharedState read under its "
        "lock, the others plainly",
        {"value_mb": nbytes // MB, "n_tasks": n_tasks},
    )
    if reason := features.numpy_missing():
        res.skipped = reason
        return res
    features.shared_state(ctx.n_jobs)  # raises FeatureBroken: an error, not a skip
    import picklepool
    from picklepool import SharedState

    value = make_state_value(nbytes)
    pickled_size = len(pickle.dumps(value, 5))
    value_size = value_nbytes(value)
    res.params["value_pickled_mb"] = round(pickled_size / MB, 1)
    res.params["value_in_memory_mb"] = round(value_size / MB, 1)
    state = SharedState(value)
    plain_args = [(value, i) for i in range(n_tasks)]
    state_args = [(state, i) for i in range(n_tasks)]
    expected = [score_value(value, i) for i in range(n_tasks)]

    def call(p: Peer) -> Any:
        # A new version every call: the parent changes the value (not what tasks read).
        if p.name == PICKLEPOOL:
            with state as v:
                v["step"] += 1
            return p.starmap(score_state, state_args)
        value["step"] += 1
        return p.starmap(score_value, plain_args)

    # cf.PPE pickles the whole value for every task (chunksize 1): minutes per round.
    skip = {CF_PPE: "pickles the 50 MB value for each of the 1,000 tasks (minutes a round)"}
    with opened_peers(ctx.n_jobs) as (peers, missing):
        # Worker memory first, on fresh picklepool workers: peak RSS above an idle worker.
        ctx.step("memory run picklepool (fresh workers)")
        picklepool.shutdown(wait=True)
        pp = peers[PICKLEPOOL]
        tiny = make_state_value(1024)
        pp.starmap(score_value, [(tiny, i) for i in range(ctx.n_jobs)])  # numpy imported in workers
        rss = _memory_run(pp, call, workers=True)
        growth = rss.max_growth
        state_tiny = SharedState(tiny)

        def warm(p: Peer) -> Any:  # pools started, code paths warm, without the big value
            func, arg = (score_state, state_tiny) if p.name == PICKLEPOOL else (score_value, tiny)
            return p.starmap(func, [(arg, i) for i in range(4)])

        row = measure_row(ctx, "shared_state", peers, missing, call, expect(expected), warm=warm, skip=skip)
        cell = row.cells[PICKLEPOOL]
        cell.extra.update(worker_peak_growth_mb=growth / MB, worker_peak_x_value=growth / value_size)
        joblib_cell = row.cells.get(JOBLIB)
        if joblib_cell is not None and joblib_cell.status == "ok":
            ctx.step("memory run joblib (fresh workers)")
            _restart_joblib_workers()
            jl_peer = peers[JOBLIB]
            jl_peer.starmap(score_value, [(tiny, i) for i in range(ctx.n_jobs)])  # numpy imported
            jl = _memory_run(jl_peer, call, workers=True)
            joblib_cell.extra.update(
                worker_peak_growth_mb=jl.max_growth / MB, worker_peak_x_value=jl.max_growth / value_size
            )
    res.rows.append(row)
    _memory_table(
        res,
        row,
        "shared_state: worker peak RSS growth during a call / the value's size in memory "
        f"({value_size / MB:.1f} MB; {pickled_size / MB:.1f} MB pickled); issue 5 target: picklepool "
        "at most joblib's (both on fresh workers)",
        "worker_peak_x_value",
    )
    return res


def lock_object(ctx: Context) -> WorkloadResult:
    n_layers, layer_size, n_tasks = 8, 50_000, 200
    res = WorkloadResult(
        "lock_object",
        f"{n_tasks} tasks each receiving a user object holding an RLock and {n_layers} weight arrays "
        f"({n_layers * layer_size * 8 // MB} MB); picklepool takes the class as it is, the others "
        "need a hand-written __getstate__/__setstate__",
        {"n_tasks": n_tasks, "layers": n_layers, "layer_size": layer_size},
    )
    if reason := features.numpy_missing():
        res.skipped = reason
        return res
    model = LockedModel(n_layers, layer_size)
    manual = LockedModelManual(n_layers, layer_size)
    plain_args = [(model, i) for i in range(n_tasks)]
    manual_args = [(manual, i) for i in range(n_tasks)]
    expected = [model.predict(i) for i in range(n_tasks)]

    def call(p: Peer) -> Any:
        return p.starmap(predict, plain_args if p.name in (PICKLEPOOL, LOOP) else manual_args)

    table = Table(
        "lock_object: the peers given the same class without the hand-written __getstate__",
        ["implementation", "outcome"],
        [],
    )
    with opened_peers(ctx.n_jobs, {PICKLEPOOL: {"pickler": "hybrid"}}) as (peers, missing):
        row = measure_row(ctx, "lock_object", peers, missing, call, expect(expected))
        for name, peer in peers.items():
            if name in (PICKLEPOOL, LOOP):
                continue
            ctx.step(f"plain class on {name}")
            try:
                peer.starmap(predict, plain_args[:2])
                outcome = "works"
            except Exception as exc:  # noqa: BLE001 - the failure is the result shown
                outcome = f"cannot run: {describe_error(exc, 160)}"
            table.rows.append([name, outcome])
    res.rows.append(row)
    res.tables.append(table)
    return res


def pickler_micro(ctx: Context) -> WorkloadResult:
    scale = ctx.size(0.2, 1.0)
    res = WorkloadResult(
        "pickler_micro",
        "dumps + loads in the parent of issue 3's payloads, per pickler"
        + (" (sizes x0.2 in --quick)" if ctx.quick else ""),
        {"scale": scale},
    )
    from picklepool.pickler import get_pickler

    if reason := features.numpy_missing():
        res.skipped = reason
        return res
    names = ["pickle", "cloudpickle", "hybrid"]
    picklers = {name: get_pickler(name) for name in names}
    columns = ["payload", *names, "pickle / hybrid", "pickle / cloudpickle"]
    table = Table(
        "pickler_micro: dumps+loads, median (min-max) s; ratios per round, median "
        "(>1: faster than pickle; issue 3 target for hybrid >= 0.95)",
        columns,
        [],
    )
    for label, build in payloads(scale).items():
        ctx.step(f"building {label}")
        payload = build()
        for name, p in picklers.items():
            if reason := _roundtrip_error(p, payload):
                res.failures.append(f"{label}: {name}: {reason}")
        impls = {name: _roundtrip(p, payload) for name, p in picklers.items()}
        samples = interleave(impls, reps=max(9, ctx.reps), warmup=1, on_step=ctx.step, budget=ctx.budget / 4)
        res.failures += [f"{label}: {n} failed: {s.error}" for n, s in samples.items() if s.error]
        cells = {name: Cell.from_samples(s) for name, s in samples.items()}
        line = [label]
        for name in names:
            c = cells[name]
            line.append(f"{c.stat.median:.4f} ({c.stat.min:.4f}-{c.stat.max:.4f})" if c.stat else c.reason)
        for other in ("hybrid", "cloudpickle"):
            line.append(_ratio_text(pair_ratios(samples["pickle"].times, samples[other].times)))
        table.rows.append(line)
        res.data[label] = {
            "cells": {n: c.as_dict() for n, c in cells.items()},
            "pickle_over_hybrid": _stat_dict(pair_ratios(samples["pickle"].times, samples["hybrid"].times)),
            "pickle_over_cloudpickle": _stat_dict(
                pair_ratios(samples["pickle"].times, samples["cloudpickle"].times)
            ),
        }
        del payload
    res.tables.append(table)
    return res


def _roundtrip(pickler: Any, payload: Any) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        pickler.loads(pickler.dumps(payload))
        return time.perf_counter() - start

    return run


def _roundtrip_error(pickler: Any, payload: Any) -> str | None:
    """Why ``loads(dumps(payload))`` does not give *payload* back, or None (untimed)."""
    import numpy as np

    try:
        back = pickler.loads(pickler.dumps(payload))
    except Exception as exc:  # noqa: BLE001 - reported as the workload's failure
        return describe_error(exc)
    same = np.array_equal(back, payload) if isinstance(payload, np.ndarray) else back == payload
    return None if same else "loads(dumps(payload)) differs from the payload"


def _ratio_text(r: Stat | None) -> str:
    return f"{r.median:.2f} ({r.min:.2f}-{r.max:.2f})" if r else "-"


def _stat_dict(s: Stat | None) -> dict[str, Any] | None:
    return s.as_dict() if s else None


def _memory_table(res: WorkloadResult, row: Row, title: str, key: str) -> None:
    shm = any("dev_shm_growth_mb" in c.extra for c in row.cells.values())
    table = Table(
        title, ["implementation", "ratio", "RSS growth (MB)"] + (["/dev/shm (MB)"] if shm else []), []
    )
    for name, cell in row.cells.items():
        if key in cell.extra:
            growth = cell.extra.get("parent_peak_growth_mb", cell.extra.get("worker_peak_growth_mb", 0.0))
            line = [name, f"{cell.extra[key]:.2f}", f"{growth:.0f}"]
            if shm:
                line.append(f"{cell.extra.get('dev_shm_growth_mb', 0.0):.0f}")
            table.rows.append(line)
    if table.rows:
        res.tables.append(table)
