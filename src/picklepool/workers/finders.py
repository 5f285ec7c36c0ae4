"""The import finders the parent's program added to ``sys.meta_path``, added in a worker too.

A program can teach ``import`` new kinds of modules by putting a finder in
``sys.meta_path``: ``pyximport.install()`` (``.pyx`` files compiled at import),
``hy`` (``.hy`` files), a finder of its own serving modules kept in a database or a zip it
unpacked. In the loop the call replaces, a task of such a module ran, and a task's own
``import`` of one worked; a worker never ran the program's ``install()``, so the batch failed
with ``ModuleNotFoundError`` when it unpickled the task's function (by name), or when the task
imported the module (under joblib too).

:func:`pickled` reads, in the parent, the finders of ``sys.meta_path`` but the interpreter's
own (``importlib``'s), picklepool's and pytest's, with their place in it: again only when the
list changed (one comparison of it with a copy while nothing changes, ~0.15 us). Each is
pickled apart (with hybrid: a finder class of the script by value), so one that cannot be
pickled, or pickled larger than :data:`LIMIT`, is left out, not the others. :func:`apply`
puts those whose kind (class) this worker's ``sys.meta_path`` lacks at the parent's place
before each batch (a finder the worker has too, one a ``.pth`` file installed, as
setuptools' editable installs do, stays the worker's own), again if a task took one out, and
takes back those the parent no longer has. Process-wide: not sent to a dask cluster's
shared workers. ``sys.path_hooks`` are not mirrored.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from .overlay import dumps_each, loads_each

log = logging.getLogger(__name__)

WHAT = "an import finder of sys.meta_path"
# the interpreter's finders (every process has them), picklepool's own (each process installs
# those it needs: executor.reloaded's, workers.joblibnest's) and pytest's assertion rewriter
# (it holds the session: it does not pickle, after trying for 70 ms)
_OWN = ("_frozen_importlib", "importlib.", "picklepool.", "_pytest.")
LIMIT = 1 << 20  # a finder pickled larger than this is not sent (it would travel with every batch)

# parent: (a copy of sys.meta_path as read last, the pickle of the program's finders)
_read: tuple[tuple[Any, ...] | None, bytes | None] = (None, None)


def _kind(finder: Any) -> tuple[str, str]:
    """``(module, qualified name)`` of *finder*'s class (of *finder*, for a class put there)."""
    cls = finder if isinstance(finder, type) else type(finder)
    return getattr(cls, "__module__", "") or "", getattr(cls, "__qualname__", "") or ""


def pickled() -> bytes | None:
    """``{place: finder}`` of the finders the program put in ``sys.meta_path``, pickled each
    apart (None: it has the interpreter's only)."""
    global _read
    now = tuple(sys.meta_path)
    seen, data = _read
    if now == seen:  # (compared item by item: by identity first)
        return data
    entries = [(place, finder) for place, finder in enumerate(now) if not _kind(finder)[0].startswith(_OWN)]
    data = dumps_each(entries, WHAT, limit=LIMIT) if entries else None
    _read = (now, data)
    return data


# worker: the pickle applied last; the parent's finders put in sys.meta_path here, with their
# place in the parent's
_applied: bytes | None = None
_added: list[tuple[int, Any]] = []


def apply(data: bytes | None) -> None:
    """Put in this worker's ``sys.meta_path`` the finders pickled in *data* (None: the parent
    has the interpreter's only) that it has no finder of the kind of, and take out those put
    there for an earlier batch that the parent no longer has."""
    global _applied, _added
    if data is None and not _added:  # (the usual case)
        return
    meta = sys.meta_path
    if data != _applied:
        for _place, finder in _added:
            _remove(meta, finder)
        _added = []
        sent = sorted(loads_each(data, WHAT).items())
        # (after loading them: a module that puts its own finder there when imported, as six
        # does, has done so, and keeps it)
        kinds = {_kind(f) for f in meta}
        for place, finder in sent:
            if _kind(finder) not in kinds:
                _added.append((place, finder))
        _applied = data
    for place, finder in _added:
        if not any(f is finder for f in meta):  # (the first time, or a task took it out)
            meta.insert(min(place, len(meta)), finder)


def _remove(meta: list[Any], finder: Any) -> None:
    for i, f in enumerate(meta):
        if f is finder:
            del meta[i]
            return
