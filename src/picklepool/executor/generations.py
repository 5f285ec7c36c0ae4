"""How many times the parent changed each of ``wire.MIRRORED_SETTINGS``, as calls and pools
saw them (``ParentState.generations``): a worker sets a setting when its count moved since
its last batch (``workers.mirror``), also when the value came back to one it had."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ..wire import MIRRORED_SETTINGS

_seen: list[Any] = [object()] * len(MIRRORED_SETTINGS)  # the values last counted
_counts = [0] * len(MIRRORED_SETTINGS)
_counting = threading.Lock()


def count(values: Sequence[Any]) -> tuple[int, ...]:
    """The counts, once *values* (one per setting, in their order) are counted."""
    with _counting:
        for i, value in enumerate(values):
            if value != _seen[i]:
                _seen[i] = value
                _counts[i] += 1
        return tuple(_counts)


def created() -> dict[str, Any]:
    """The parent's settings now, and their counts (``"generations"``), for a pool or an
    executor with an initializer (``workers.prologue``): what it sets of them stays in its
    workers until the parent changes them."""
    from ..workers import warnfilters
    from ..workers.mirror import note_own

    values = note_own()
    counted = {**values, "warning_filters": warnfilters.pickled()}  # (as ParentState has them)
    values["generations"] = count([counted[key] for key in MIRRORED_SETTINGS])
    return values
