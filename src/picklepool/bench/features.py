"""Checks that picklepool's features behave as the workloads assume; they raise when not.

Some workloads time a picklepool feature whose absence would not show in the
time alone: with shared memory off, a large array still arrives, only copied.
Before timing, such a workload runs the feature's check: a small real call that
looks at what a worker received. A check that fails raises
:class:`FeatureBroken`, the workload fails with it, and ``picklepool bench``
reports the error and exits non-zero. A missing optional dependency (numpy) is
not a failure: :func:`numpy_missing` gives the reason the workload is skipped.
"""

from __future__ import annotations

from typing import Any

from .measure import describe_error
from .tasks import array_flags, base_owner, fresh_array, score_state

_COPIED_OWNERS = ("bytes", "bytearray", "NoneType")


class FeatureBroken(AssertionError):
    """A picklepool feature a workload measures does not work: the workload is an error."""


def numpy_missing() -> str | None:
    """Why workloads that need numpy are skipped here, or None."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        return "numpy is not installed (pip install 'picklepool[bench]')"
    return None


def _call(what: str, run: Any) -> Any:
    try:
        return run()
    except Exception as exc:
        raise FeatureBroken(f"{what} failed: {describe_error(exc)}") from exc


def check_shm_arguments(n_jobs: int) -> None:
    """Large array arguments must reach workers through shared memory (issue 4)."""
    import numpy as np

    from picklepool import Parallel, delayed

    arr = np.arange(2 * 1024 * 1024 // 8, dtype=np.float64)  # 2 MB: above the 1M default
    seen = _call(
        "a call with a 2 MB array argument",
        lambda: Parallel(n_jobs=n_jobs)(delayed(array_flags)(arr) for _ in range(2)),
    )
    writeable, owner = seen[0]
    if writeable and owner in _COPIED_OWNERS:
        raise FeatureBroken(
            "shared-memory array arguments (issue 4, max_nbytes) do not work: a 2 MB array "
            f"reached the worker as a writeable copy (owned by {owner})"
        )


def check_shm_results(n_jobs: int) -> None:
    """Large arrays returned by tasks must come back through shared memory (issue 4)."""
    from picklepool import Parallel, delayed

    out = _call(
        "a call returning a 2 MB array",
        lambda: Parallel(n_jobs=n_jobs)(delayed(fresh_array)(2 * 1024 * 1024 // 8, 1.0) for _ in range(2)),
    )
    owner = type(base_owner(out[0])).__name__
    if owner in _COPIED_OWNERS:
        raise FeatureBroken(
            "shared-memory results (issue 4) do not work: a returned 2 MB array came back "
            f"as a copy (owned by {owner})"
        )


def shared_state(n_jobs: int) -> str | None:
    """``SharedState`` must give tasks its value (issue 5): None if it does, else raises.

    (The ``shared_state`` workload reads the return value as its reason to skip;
    there is none: a broken ``SharedState`` is an error.)
    """
    from picklepool import Parallel, SharedState, delayed

    state = SharedState({"weights": [0.5, 1.5], "history": [1.0], "step": 0})
    out = _call(
        "a call with a SharedState argument",
        lambda: Parallel(n_jobs=n_jobs)(delayed(score_state)(state, i) for i in range(2)),
    )
    if out != [1.5, 2.5]:
        raise FeatureBroken(f"SharedState gave wrong results in a call: {out!r} instead of [1.5, 2.5]")
    return None
