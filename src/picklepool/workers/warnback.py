"""Warnings a batch's tasks gave, sent back to a parent that records or redirects them.

A task's ``warnings.warn`` in a worker is shown by the worker: printed to its stderr
(or to what ``workers.output`` collects for the parent's redirected stream). A parent
that handles warnings itself did not get them, as it does when it runs the tasks in
its own loop: a ``warnings.catch_warnings(record=True)`` block around the call (pytest's
``pytest.warns``, ``recwarn`` and its per-test warnings summary) recorded none, and
``logging.captureWarnings(True)`` logged none (the worker printed them to the terminal).

When the parent's warnings are shown by something else than the ``warnings`` module's
own printing (:func:`redirected`, read when the call is made), the worker records what
the tasks warn while they run (:func:`recorded`: after the parent's filters, mirrored by
``workers.warnfilters``, decided which are shown) and sends them with the batch's reply,
pickled by the call's pickler (a warning class of ``__main__`` travels by value); the
parent shows each through its own machinery (:func:`show`), as ``warnings.warn`` would
have after its filters: into the recording block's list, to the logging handler. A
warning shown once per location (the ``"default"`` action) is shown once per worker, as
the workers print them otherwise. Not on dask (a cluster's workers are shared).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any


def redirected() -> bool:
    """Whether this process's warnings are shown by something else than the ``warnings``
    module's own printing (a ``catch_warnings(record=True)`` block, ``logging.captureWarnings``,
    a ``warnings.showwarning`` of the program's own)."""
    if warnings.showwarning is not getattr(warnings, "_showwarning_orig", warnings.showwarning):
        return True
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    if impl is None:
        return False
    name = (getattr(impl, "__module__", None), getattr(impl, "__name__", None))
    return name != ("warnings", "_showwarnmsg_impl")


@contextlib.contextmanager
def recorded(record: bool) -> Iterator[list[Any]]:
    """Inside, with *record*, the warnings shown are kept in the list it yields (as
    ``warnings.WarningMessage`` objects), not printed; the filters stay as they are."""
    if not record:
        yield []
        return
    with warnings.catch_warnings(record=True) as log:
        yield log  # type: ignore[misc]


def dumps(pickler: Any, log: list[Any]) -> bytes | None:
    """The warnings of *log* as bytes of the call's *pickler*; None when there are none.

    Each is ``(message, category, filename, lineno, line)``; a message or category that
    cannot be pickled goes as its text, as a ``UserWarning`` (the parent still sees it).
    """
    if not log:
        return None
    kept = []
    for w in log:
        item = (w.message, w.category, w.filename, w.lineno, w.line)
        try:
            pickler.loads(pickler.dumps(item))
        except Exception:  # noqa: BLE001 - the task's own warning class: its text goes instead
            item = (f"{w.category.__name__}: {w.message}", UserWarning, w.filename, w.lineno, w.line)
        kept.append(item)
    try:
        return bytes(pickler.dumps(kept))
    except Exception:  # noqa: BLE001 - as above, whatever the pickler does
        return None


def show(pickler: Any, data: bytes | None) -> None:
    """Show the warnings a batch sent back (:func:`dumps`) as this process shows its own
    once its filters let them through: into a recording block's list, a logging handler."""
    if not data:
        return
    try:
        items = pickler.loads(data)
    except Exception:  # noqa: BLE001 - a class the parent cannot load (an odd pickler's): not shown
        return
    show_message = getattr(warnings, "_showwarnmsg", None)
    for message, category, filename, lineno, line in items:
        if show_message is not None:
            show_message(warnings.WarningMessage(message, category, filename, lineno, None, line))
        else:  # (no private hook: the public one)
            warnings.showwarning(message, category, filename, lineno, None, line)
