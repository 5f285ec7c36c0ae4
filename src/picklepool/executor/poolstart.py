"""The parent's settings as it makes a pool or an executor with an initializer.

They travel with the initializer (``workers.prologue``): a new worker takes them before
the initializer runs, as a forked child has them, and what the initializer sets of them
stays while the parent's are those (``workers.following``), in every worker alike, one
started after a crash or as the pool grew included.
"""

from __future__ import annotations

from typing import Any


def settings() -> dict[str, Any]:
    """``workers.mirror.note_own()`` and the pickled warnings filters (``"warning_filters"``),
    keyed by ``wire.MIRRORED_SETTINGS``: the values a ``ParentState`` would hold now."""
    from ..workers import warnfilters
    from ..workers.mirror import note_own

    return {**note_own(), "warning_filters": warnfilters.pickled()}
