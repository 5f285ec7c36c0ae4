"""The parent's entries of a table, laid over a worker's own table of the same kind.

Two tables are mirrored this way: the names the parent's program added to ``builtins``
(``workers.builtinnames``) and the ``copyreg`` reducers its script registered
(``workers.registrations``). In the parent, :func:`dumps_each` pickles the entries each
apart (with hybrid: a function of ``__main__`` by value), so that one that cannot be
pickled, or that a worker cannot load (:func:`loads_each`), is left out, not the others.
In a worker, an :class:`Overlay` sets the parent's entries before each batch, takes back
those the parent no longer has (the worker's own value, if it had one, returns) and sets
again one a task changed (a task's own binding is its batch's only).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterable
from typing import Any

from . import warnfilters

log = logging.getLogger(__name__)

_NONE = object()  # no value of the worker's own


def dumps_each(
    entries: Iterable[tuple[Any, Any]],
    what: str,
    limit: int | None = None,
    too_large: Callable[[Any, int], None] | None = None,
    left_out: dict[Any, str] | None = None,
    pickler: Any = None,
) -> bytes | None:
    """*entries* (``(key, value)`` pairs) pickled each apart, then together; None when none
    pickles. *what* names them in the log. One pickled larger than *limit* bytes is left out,
    after ``too_large(key, size)``. Each entry left out is recorded in *left_out* (key ->
    why, in words), when given. *pickler*: a picklepool pickler in place of hybrid."""
    from ..pickler.hybrid import HybridPickler

    each = []
    pickler = HybridPickler() if pickler is None else pickler
    for entry in entries:
        try:
            one = pickler.dumps(entry)
        except Exception as exc:  # noqa: BLE001 - this one is not sent; the others are
            log.debug("picklepool: %s cannot be sent to workers (%r): %r", what, entry, exc)
            if left_out is not None:
                left_out[entry[0]] = f"it cannot be pickled ({type(exc).__name__}: {exc})"
            continue
        if limit is not None and len(one) > limit:
            if left_out is not None:
                left_out[entry[0]] = f"pickled, it takes {len(one) / 2**20:.1f} MiB"
            if too_large is not None:
                too_large(entry[0], len(one))
            continue
        each.append((_key(entry[0]), one))
    return pickle.dumps(tuple(each)) if each else None


def _key(key: Any) -> bytes:
    """*key* pickled by the standard library, to name an entry a worker cannot load (empty
    where it does not pickle so)."""
    try:
        return pickle.dumps(key)
    except Exception:  # noqa: BLE001 - (named "an entry" then)
        return b""


def loads_each(data: bytes | None, what: str, failed: dict[Any, str] | None = None) -> dict[Any, Any]:
    """The entries :func:`dumps_each` pickled in *data*, those this worker can load; each it
    cannot is recorded in *failed* (its key, or None, -> why in words), when given."""
    out: dict[Any, Any] = {}
    if data is None:
        return out
    for key_data, one in pickle.loads(data):
        try:
            with warnfilters.loading():  # (the imports the parent made: under the worker's filters)
                key, value = pickle.loads(one)
        except Exception as exc:  # noqa: BLE001 - one this worker cannot load
            log.debug("picklepool: %s of the parent cannot be read here (%r)", what, exc)
            if failed is not None:
                try:
                    key = pickle.loads(key_data) if key_data else None
                except Exception:  # noqa: BLE001 - (named "an entry" then)
                    key = None
                failed[key] = f"{type(exc).__name__}: {exc}"
            continue
        out[key] = value
    return out


class Overlay:
    """The parent's entries set in one table of this worker."""

    def __init__(self, what: str) -> None:
        self.what = what  # what the entries are, for the log
        self.applied: bytes | None = None  # the pickle applied last
        self.added: dict[Any, Any] = {}  # key -> the parent's value, set here
        self.own: dict[Any, Any] = {}  # key -> the worker's own value (_NONE: it had none)

    def rebase(self, table: dict[Any, Any]) -> None:
        """After an initializer ran (``workers.mirror.rebase``): a value it set over the
        parent's is the worker's own from now on (back when the parent no longer sets it),
        and the parent's is set again, as for every later batch."""
        for key, value in self.added.items():
            current = table.get(key, _NONE)
            if current is not value:
                self.own[key] = current
                table[key] = value

    def withdraw(self, table: dict[Any, Any]) -> None:
        """Give *table* its own values back for the parent's entries (an initializer about to
        run registers what the parent did: a colormap's name taken refused it), keeping them
        to set again (:meth:`rebase`, after it)."""
        for key in self.added:
            mine = self.own.get(key, _NONE)
            if mine is _NONE:
                table.pop(key, None)
            else:
                table[key] = mine

    def apply(self, table: dict[Any, Any], data: bytes | None, failed: dict[Any, str] | None = None) -> None:
        """Make *table* hold the entries pickled in *data* (None: the parent has none), and
        take back those set for an earlier batch that the parent no longer has. The entries
        this worker cannot load are recorded in *failed* (see :func:`loads_each`)."""
        if data is None and not self.added:  # (the usual case: nothing to lay over)
            return
        added, own = self.added, self.own
        if data != self.applied:
            wanted = loads_each(data, self.what, failed)
            for key in [k for k in added if k not in wanted]:
                mine = own.pop(key, _NONE)
                del added[key]
                if mine is _NONE:
                    table.pop(key, None)
                else:
                    table[key] = mine
            for key, value in wanted.items():
                if key not in added:
                    own[key] = table.get(key, _NONE)
                added[key] = value
            self.applied = data
        for key, value in added.items():
            if table.get(key, _NONE) is not value:
                table[key] = value
