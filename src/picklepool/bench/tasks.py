"""The functions and classes the workloads run in workers.

They live in an importable module so that every implementation (stdlib pickle
included) can send them by reference; the ``__main__`` cases are in
``picklepool.bench.main_script``. numpy is imported inside the functions that
need it, so that this module imports without numpy.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def square(x: int) -> int:
    return x * x


def identity(x: Any) -> Any:
    return x


def burn(n: int) -> int:
    """Pure-Python work: ``n`` loop turns (no I/O, holds the GIL)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate_burn(seconds: float) -> int:
    """The ``n`` for which ``burn(n)`` takes about *seconds* here (best of 3)."""
    n = 20_000
    while True:
        best = min(_time_burn(n) for _ in range(3))
        if best > 0.005:
            return max(1, int(n * seconds / best))
        n *= 4


def _time_burn(n: int) -> float:
    start = time.perf_counter()
    burn(n)
    return time.perf_counter() - start


def read_element(arr: Any, i: int) -> float:
    """Read one element of a (large) array: the cost is all in getting the array."""
    return float(arr[i % len(arr)])


def read_state_element(state: Any, i: int) -> float:
    """:func:`read_element` on an array inside a ``picklepool.SharedState``, under its lock."""
    with state as arr:
        return read_element(arr, i)


def fresh_array(n_items: int, value: float) -> Any:
    """A new float64 array, every page written (so it cannot be a lazy zero page)."""
    import numpy as np

    return np.full(n_items, value, dtype=np.float64)


def array_flags(arr: Any) -> tuple[bool, str]:
    """(writeable, type of the object that finally owns the memory) of an array."""
    owner = base_owner(arr)
    return bool(arr.flags.writeable), type(owner).__name__


def base_owner(arr: Any) -> Any:
    """Follow ``.base`` / ``memoryview.obj`` to the object owning an array's memory."""
    import numpy as np

    obj = arr
    while True:
        if isinstance(obj, np.ndarray) and obj.base is not None:
            obj = obj.base
        elif isinstance(obj, memoryview):
            obj = obj.obj
        else:
            return obj


def make_state_value(nbytes: int, seed: int = 0) -> dict[str, Any]:
    """The shared_state payload: a float64 array of ~96% of *nbytes*, a list of Python ints.

    At the full size (50 MB) that is issue 5's value: a 48 MB array and a list of
    500,000 ints (2.5 MB pickled, ~18 MB in memory as objects).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n_array = max(1, nbytes * 24 // 25 // 8)
    n_list = max(1, nbytes // 100)
    return {"weights": rng.random(n_array), "history": list(range(1000, 1000 + n_list)), "step": seed}


def value_nbytes(value: dict[str, Any]) -> int:
    """About how much memory the shared_state value takes (array + list of ints)."""
    history = value["history"]
    return int(value["weights"].nbytes) + sys.getsizeof(history) + sum(sys.getsizeof(x) for x in history)


def score_value(value: dict[str, Any], i: int) -> float:
    """A task reading the shared_state value (passed plainly)."""
    weights, history = value["weights"], value["history"]
    return float(weights[i % len(weights)]) + history[i % len(history)]


def score_state(state: Any, i: int) -> float:
    """The same task, given the value inside a ``picklepool.SharedState``: read under its lock."""
    with state as value:
        return score_value(value, i)


class LockedModel:
    """The seed's scenario: weights guarded by an RLock, in a user's class.

    Plain pickle and cloudpickle refuse it (``cannot pickle '_thread.RLock'``);
    picklepool's ``hybrid`` pickler sends it as a snapshot with a fresh lock.
    """

    def __init__(self, n_layers: int, layer_size: int) -> None:
        import numpy as np

        rng = np.random.default_rng(0)
        self._lock = threading.RLock()
        self.weights = {f"layer{i}": rng.random(layer_size) for i in range(n_layers)}
        self.version = 0

    def predict(self, i: int) -> float:
        with self._lock:
            layer = self.weights[f"layer{i % len(self.weights)}"]
            return float(layer[i % len(layer)])


class LockedModelManual(LockedModel):
    """The same class with the hand-written workaround the seed recommends.

    ``__getstate__`` drops the lock, ``__setstate__`` makes a new one: what a user
    must write for joblib, multiprocessing or concurrent.futures.
    """

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()


def predict(model: LockedModel, i: int) -> float:
    return model.predict(i)


def payloads(scale: float = 1.0) -> dict[str, Callable[[], Any]]:
    """Builders of the pickler_micro payloads (issue 3), sizes multiplied by *scale*."""
    import numpy as np

    n = int(1_000_000 * scale)
    n_dict, n_dicts = int(200_000 * scale), int(100_000 * scale)
    n_floats = int(100_000_000 * scale) // 8
    return {
        f"list(range({n:_}))": lambda: list(range(n)),
        f"dict of {n_dict:_} str -> (int, float)": lambda: {f"key{i}": (i, i * 0.5) for i in range(n_dict)},
        f"list of {n_dicts:_} small dicts": lambda: [
            {"id": i, "name": f"n{i}", "score": i * 0.1} for i in range(n_dicts)
        ],
        f"float64 array, {n_floats * 8 // 1_000_000} MB": lambda: np.arange(n_floats, dtype=np.float64),
    }
