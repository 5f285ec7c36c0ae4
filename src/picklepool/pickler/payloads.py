"""The pickler micro-benchmark: plain-data payloads and a dumps+loads timer.

Measures what one task's arguments cost to serialise and rebuild, per pickler,
on the payloads the ``hybrid`` pickler must match stdlib ``pickle`` on:

    list_1M      list(range(1_000_000))
    dict_200k    {str: (int, float)} with 200_000 entries
    dicts_100k   a list of 100_000 small dicts
    array_100MB  a 100 MB float64 numpy array (skipped without numpy)

Used by ``picklepool bench`` and ``benchmarks/``; ``scale`` shrinks every
payload for quick runs. Timings are the best of ``repeat`` rounds, with the
picklers interleaved inside each round (each taking every position in turn: the
one after a large free pays for page faults) so that drift on a busy machine hits
them alike.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

from .registry import get_pickler


def payloads(scale: float = 1.0) -> dict[str, Callable[[], Any]]:
    """Factories of the benchmark payloads, by name (numpy's only when installed)."""

    def n(count: int) -> int:
        return max(1, int(count * scale))

    out: dict[str, Callable[[], Any]] = {
        "list_1M": lambda: list(range(n(1_000_000))),
        "dict_200k": lambda: {f"key{i}": (i, i * 0.5) for i in range(n(200_000))},
        "dicts_100k": lambda: [{"id": i, "x": i * 0.5, "name": str(i)} for i in range(n(100_000))],
    }
    try:
        import numpy as np
    except ImportError:
        return out
    out["array_100MB"] = lambda: np.random.default_rng(0).random(n(100 * 2**20 // 8))
    return out


def roundtrip_seconds(pickler: Any, obj: Any, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds for one ``pickler.dumps`` + ``pickler.loads`` of *obj*.

    Freeing the bytes and the copy happens after the clock stops. Pass
    ``clock=time.process_time`` to count CPU time only, which other processes
    competing for the cores disturb much less than wall time.
    """
    gc.collect()
    start = clock()
    data = pickler.dumps(obj)
    copy = pickler.loads(data)
    seconds = clock() - start
    del data, copy
    return seconds


def compare(
    picklers: Iterable[str] = ("pickle", "cloudpickle", "hybrid"),
    scale: float = 1.0,
    repeat: int = 5,
    names: Iterable[str] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[str, float]]:
    """Best dumps+loads seconds per payload and pickler: ``{payload: {pickler: s}}``."""
    chosen = [get_pickler(p) for p in picklers]
    factories = payloads(scale)
    results: dict[str, dict[str, float]] = {}
    for name in names if names is not None else factories:
        obj = factories[name]()
        best = {p.name: float("inf") for p in chosen}
        for i in range(repeat):
            k = i % len(chosen)
            for p in chosen[k:] + chosen[:k]:
                best[p.name] = min(best[p.name], roundtrip_seconds(p, obj, clock))
        results[name] = best
        del obj
    return results
