"""The parent's ``warnings`` filters, mirrored in a worker before each batch.

A filter can decide a task's outcome: ``warnings.simplefilter("error")`` (or pytest's
``-W error``, ``filterwarnings = error``) turns a warning into an exception that the
task raises in the parent; ``"ignore"`` keeps a loop of tasks quiet. A warm worker kept
the filters it started with: a task that raised in the parent returned in a worker, and
warnings the parent silenced were printed by every worker (joblib's loky workers do the
same; scikit-learn >= 1.7 passes the filters with each of its own tasks for that reason).

:func:`pickled` reads the filters in the parent (``warnings.filters``, as they are when
the call is made, ``catch_warnings`` blocks included): pickled once, and again only when
they change. :func:`apply` makes the worker's filters those; ``workers.mirror`` calls it when
the parent's changed since the worker's last batch (a filter a task added, or a library it
imported, stays until then, as in a loop).
They are pickled with hybrid, each apart: a category a worker cannot import (a class of
``__main__``) is sent by value, as the one class the call's functions use there; a filter
whose category cannot be sent or loaded is left out, not all of them.
Filters an ``initializer`` added in the worker (:func:`keep_own`) stay ahead of the
parent's: it was run to set them.

They are the tasks' filters, not the worker's own machinery's: while a worker loads a
batch (:func:`loading`), it imports the modules of the functions and arguments, which the
parent had imported already; a warning such an import gives (a ``DeprecationWarning`` of a
dependency) is no warning the parent could see, and under the parent's ``"error"`` filter
it failed the function's unpickling. The worker's own filters apply there (swapped only
when the parent's have an ``"error"``).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import sys
import warnings
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

# parent: (the filters read last, their pickle)
_read: tuple[tuple[Any, ...] | None, bytes | None] = (None, None)

# worker: (the pickle applied last, the filters it makes)
_applied: tuple[bytes | None, tuple[Any, ...] | None] = (None, None)
# worker: filters its initializer added, kept ahead of the parent's
_own: tuple[Any, ...] = ()
# worker: its filters before the parent's were first applied (None: never applied)
_base: tuple[Any, ...] | None = None
# worker: (the filters applied, whether one of them is an "error")
_erring: tuple[tuple[Any, ...] | None, bool] = (None, False)


# worker: {module name: the warnings registry its functions rebuilt by value share}
_registries: dict[str, dict[Any, Any]] = {}
#: the ids of those registries: not a function's state (``workers.changes`` skips them)
registry_ids: set[int] = set()


def share_registry(globals_: dict[str, Any]) -> None:
    """Give the globals of a function rebuilt by value (a ``__main__`` one's) the warnings
    registry of its module in this worker, shared by every copy of its functions.

    ``warnings.warn`` keeps, in the globals of the code that warns, which warnings were
    shown (``__warningregistry__``): a copy made for each call began with none, so a
    task's ``"default"`` warning was printed again at every call, by every worker (where
    the loop prints it once), and the registry that warn added made the function look
    changed by its task, so that it was unpickled again at every call.
    """
    if "__warningregistry__" in globals_:
        return
    name = globals_.get("__name__")
    if not isinstance(name, str):
        return
    registry = _registries.get(name)
    if registry is None:
        registry = _registries[name] = {}
        registry_ids.add(id(registry))
    globals_["__warningregistry__"] = registry


def pickled() -> bytes | None:
    """The calling process's warnings filters, pickled (kept while they are unchanged).

    Each filter is pickled apart (a tuple of pickles): one whose category cannot be sent
    (no pickler can) is left out here, one a worker cannot load (its module is not
    importable there) is left out there, and the others apply; a single pickle of them
    all made the workers keep their own filters, an ``"error"`` of the parent's ignored.
    """
    global _read
    now = tuple(warnings.filters)
    seen, data = _read
    if now == seen:
        return data
    from ..pickler.hybrid import HybridPickler

    each = []
    pickler = HybridPickler()
    for f in now:
        try:
            each.append(pickler.dumps(f))
        except Exception as exc:  # noqa: BLE001 - this filter is not sent: it cannot decide there
            log.debug("picklepool: a warnings filter cannot be sent to workers (%r): %r", f, exc)
    data = pickle.dumps(tuple(each))
    _read = (now, data)
    return data


def _loaded(each: tuple[bytes, ...]) -> tuple[Any, ...]:
    """The filters pickled in *each* that this process can load."""
    out = []
    for one in each:
        try:
            out.append(pickle.loads(one))
        except Exception as exc:  # noqa: BLE001 - a category this worker cannot import: no match here
            log.debug("picklepool: a warnings filter of the parent cannot be read here (%r)", exc)
    return tuple(out)


def apply(data: bytes | None) -> None:
    """Make this process's warnings filters those pickled in *data* (None: leave them)."""
    global _applied, _base
    if data is None:
        return
    global _parents
    last, filters = _applied
    if data != last:
        new = _behind_own(_loaded(pickle.loads(data)))
        old = _parents
        filters = new if filters is None or old is None else _merged(new, old, filters)
        _applied, _parents = (data, filters), new
    elif _parents is not None:  # changed and back while another worker ran the batches (a
        # catch_warnings block of the parent's began and ended): what tasks added ends, as in a loop
        filters = _parents
        _applied = (data, filters)
    if filters is None or tuple(warnings.filters) == filters:
        return
    if _base is None:
        _base = tuple(f for f in warnings.filters if f not in _own)
    _set(filters)


def _merged(new: tuple[Any, ...], old: tuple[Any, ...], applied: tuple[Any, ...]) -> tuple[Any, ...]:
    """The parent's *new* filters with what the worker's own code did since the parent's *old*
    were applied (as *applied*, with what it did before), ordered as in a loop: the filters the
    parent added or moved ahead since go first, then those the worker's code added or moved
    ahead (a library a task imported: "ignore" for its own warning), then the rest of the
    parent's but those the worker's code removed (``resetwarnings()`` in a task)."""
    current = tuple(warnings.filters)
    # a list grows at its front (filterwarnings, simplefilter: an existing filter moves
    # there): its front is what comes before its longest end that is in the list before, in order
    front = new[: _front(new, old)]
    ours = current[: _front(current, applied)] + tuple(f for f in current if f not in old)
    ours = tuple(dict.fromkeys(f for f in ours if f not in front))
    rest = tuple(f for f in new[len(front) :] if f in current and f not in ours)
    return front + ours + rest


def _front(now: tuple[Any, ...], before: tuple[Any, ...]) -> int:
    """How many filters at *now*'s front come before its longest end found in *before*, in order."""
    return next(j for j in range(len(now) + 1) if _in_order(now[j:], before))


def _in_order(part: tuple[Any, ...], whole: tuple[Any, ...]) -> bool:
    """Whether *part*'s filters are all in *whole*, in the same order."""
    it = iter(whole)
    return all(any(f == g for g in it) for f in part)


_parents: tuple[Any, ...] | None = None  # the parent's filters as last applied (behind _own)


def _behind_own(filters: tuple[Any, ...]) -> tuple[Any, ...]:
    """*filters* behind those the worker's initializer added (:func:`keep_own`)."""
    return _own + tuple(f for f in filters if f not in _own)


def _set(filters: tuple[Any, ...]) -> None:
    warnings.filters[:] = filters  # type: ignore[index]  # (a list; typeshed says Sequence)
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is not None:  # the "once"/"default" registries are out of date
        mutated()


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """The worker's own filters inside, if the parent's (applied) turn a warning into an error.

    Swapped without resetting the registries of the warnings already shown (a reset at
    each batch printed a ``"default"`` warning of a task at every batch, not once per
    worker), unless the loading imported a module: its warnings, ignored or shown under
    the worker's filters, must not be taken for ones the parent's have already decided.
    """
    swapped = swap_in()
    try:
        yield
    finally:
        swap_out(swapped)


def swap_in() -> tuple[tuple[Any, ...], int] | None:
    """:func:`loading`'s start, for the batch runner (no generator per batch): the token
    for :func:`swap_out`, None when the filters stay (the usual case: no ``"error"``)."""
    global _erring
    if _base is None or _applied[1] is None:
        return None
    parents = tuple(warnings.filters)  # (the parent's, and what the worker's code added since)
    if _erring[0] != parents:  # (looked at once per set of filters)
        _erring = (parents, any(f[0] == "error" for f in parents))
    if not _erring[1]:
        return None
    modules = len(sys.modules)
    warnings.filters[:] = _behind_own(_base)  # type: ignore[index]
    return parents, modules


def swap_out(swapped: tuple[tuple[Any, ...], int] | None) -> None:
    """:func:`loading`'s end: the parent's filters again."""
    if swapped is None:
        return
    parents, modules = swapped
    if len(sys.modules) != modules:
        _set(parents)
    else:
        warnings.filters[:] = parents  # type: ignore[index]


def keep_own(before: list[Any]) -> None:
    """An ``initializer`` ran: the filters it added to *before* (the filters then) go
    ahead of the parent's in every later batch."""
    global _own, _applied
    added = tuple(f for f in warnings.filters if f not in before)
    if added:
        _own = added + tuple(f for f in _own if f not in added)
        _applied = (None, None)  # made again with them at the next batch
