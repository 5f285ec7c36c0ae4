"""Is a picklepool feature present and working here? Each probe returns None or why not.

Some workloads measure features that land separately (shared-memory arrays,
``SharedState``, the ``hybrid`` pickler's lock snapshots). Rather than time a
placeholder, a workload asks its probe first and is reported as skipped, with
the probe's reason, until the feature works. Probes are small real calls: they
test behaviour (what a worker receives), not the presence of a name.
"""

from __future__ import annotations

from typing import Any

from .measure import describe_error
from .tasks import LockedModel, array_flags, base_owner, fresh_array, score_state

_COPIED_OWNERS = ("bytes", "bytearray", "NoneType")


def numpy_missing() -> str | None:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return "numpy is not installed (pip install 'picklepool[bench]')"
    return None


def shm_arguments(n_jobs: int) -> str | None:
    """Do large array arguments reach workers through shared memory (issue 4)?"""
    if reason := numpy_missing():
        return reason
    import numpy as np

    from picklepool import Parallel, delayed

    arr = np.arange(2 * 1024 * 1024 // 8, dtype=np.float64)  # 2 MB: above the 1M default
    try:
        seen = Parallel(n_jobs=n_jobs)(delayed(array_flags)(arr) for _ in range(2))
    except Exception as exc:  # noqa: BLE001 - the probe reports any failure as its reason
        return f"a call with a 2 MB array argument failed: {describe_error(exc)}"
    writeable, owner = seen[0]
    if writeable and owner in _COPIED_OWNERS:
        return (
            "shared-memory array arguments (issue 4, max_nbytes) are not active in this "
            f"picklepool: a 2 MB array reached the worker as a writeable copy (owned by {owner})"
        )
    return None


def shm_results(n_jobs: int) -> str | None:
    """Do large arrays returned by tasks come back through shared memory (issue 4)?"""
    if reason := numpy_missing():
        return reason
    from picklepool import Parallel, delayed

    try:
        out = Parallel(n_jobs=n_jobs)(delayed(fresh_array)(2 * 1024 * 1024 // 8, 1.0) for _ in range(2))
    except Exception as exc:  # noqa: BLE001
        return f"a call returning a 2 MB array failed: {describe_error(exc)}"
    owner = type(base_owner(out[0])).__name__
    if owner in _COPIED_OWNERS:
        return (
            "shared-memory results (issue 4) are not active in this picklepool: a returned "
            f"2 MB array came back as a copy (owned by {owner})"
        )
    return None


def shared_state(n_jobs: int) -> str | None:
    """Is ``picklepool.SharedState`` importable and usable in a call (issue 5)?"""
    try:
        from picklepool import SharedState  # type: ignore[attr-defined]
    except ImportError as exc:
        return f"SharedState (issue 5) is not in this picklepool yet ({describe_error(exc)})"
    from picklepool import Parallel, delayed

    value: dict[str, Any] = {"weights": [0.5, 1.5], "history": [1.0], "step": 0}
    try:
        state = SharedState(value)
        out = Parallel(n_jobs=n_jobs)(delayed(score_state)(state, i) for i in range(2))
    except Exception as exc:  # noqa: BLE001
        return f"SharedState does not work in a call yet: {describe_error(exc)}"
    if out != [1.5, 2.5]:
        return f"SharedState gave wrong results in a call: {out!r} instead of [1.5, 2.5]"
    return None


def hybrid_locks() -> str | None:
    """Does the ``hybrid`` pickler send lock-holding objects as snapshots (issue 3)?"""
    if reason := numpy_missing():
        return reason
    from picklepool.pickler import get_pickler

    try:
        pickler = get_pickler("hybrid")
        model = pickler.loads(pickler.dumps(LockedModel(1, 4)))
        model.predict(0)
    except Exception as exc:  # noqa: BLE001
        return (
            f"the hybrid pickler cannot send an object holding an RLock yet (issue 3): {describe_error(exc)}"
        )
    return None


def wrap_non_picklable_objects() -> tuple[Any, str | None]:
    """picklepool's ``wrap_non_picklable_objects`` (issue 3), or None and why not."""
    try:
        from picklepool import wrap_non_picklable_objects as wrap  # type: ignore[attr-defined]
    except ImportError as exc:
        return (
            None,
            f"wrap_non_picklable_objects (issue 3) is not in this picklepool yet ({describe_error(exc)})",
        )
    return wrap, None
