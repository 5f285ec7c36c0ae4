"""The parent's ``warnings`` filters, mirrored in a worker before each batch.

A filter can decide a task's outcome: ``warnings.simplefilter("error")`` (or pytest's
``-W error``, ``filterwarnings = error``) turns a warning into an exception that the
task raises in the parent; ``"ignore"`` keeps a loop of tasks quiet. A warm worker kept
the filters it started with: a task that raised in the parent returned in a worker, and
warnings the parent silenced were printed by every worker (joblib's loky workers do the
same; scikit-learn >= 1.7 passes the filters with each of its own tasks for that reason).

:func:`pickled` reads the filters in the parent (``warnings.filters``, as they are when
the call is made, ``catch_warnings`` blocks included): pickled once, and again only when
they change. A worker follows their changes (``workers.following``): :func:`apply` makes
the parent's change to the worker's filters (a filter a task added, or a library it
imported, stays, as in a loop), :func:`restore` puts back the worker's own filters of
before a change when it ends.
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
import difflib
import logging
import pickle
import sys
import warnings
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

# parent: (the filters list read last, its filters then, their pickles one by one, the pickle sent)
_read: tuple[Any, tuple[Any, ...] | None, tuple[bytes, ...], bytes | None] = (None, None, (), None)
# parent: the last few lists warnings.filters was ([list, its number]), held so that their ids
# are not taken by new lists: a catch_warnings block's copy has a number of its own
_lists: list[list[Any]] = []
_numbered = 0

# worker: the parent's filters as last followed (None: none yet), and the pickle they came in
_parents: tuple[Any, ...] | None = None
_loads: dict[bytes, tuple[Any, ...]] = {}  # a few pickles of the parent's -> their filters
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


def pickled() -> bytes:
    """The calling process's warnings filters, pickled (kept while they are unchanged).

    Each filter is pickled apart (a tuple of pickles): one whose category cannot be sent
    (no pickler can) is left out here, one a worker cannot load (its module is not
    importable there) is left out there, and the others apply; a single pickle of them
    all made the workers keep their own filters, an ``"error"`` of the parent's ignored.
    With them goes the number of the list that holds them (``warnings.catch_warnings``
    puts a copy in place, and the list before it back at its end): the block's start and
    end are changes a worker follows, also where the filters read the same.
    """
    global _read
    current = warnings.filters
    now = tuple(current)
    held, seen, each, data = _read
    if current is held and now == seen and data is not None:
        return data
    if now != seen:
        each = _pickles(now)
    data = pickle.dumps((_number(current), each))
    _read = (current, now, each, data)
    return data


def _pickles(filters: tuple[Any, ...]) -> tuple[bytes, ...]:
    from ..pickler.hybrid import HybridPickler

    each = []
    pickler = HybridPickler()
    for f in filters:
        try:
            each.append(pickler.dumps(f))
        except Exception as exc:  # noqa: BLE001 - this filter is not sent: it cannot decide there
            log.debug("picklepool: a warnings filter cannot be sent to workers (%r): %r", f, exc)
    return tuple(each)


def _number(filters: Any) -> int:
    """The number of the list *filters* (``warnings.filters``): the same while it is that list."""
    global _numbered
    for i, (held, number) in enumerate(_lists):
        if held is filters:
            if i != len(_lists) - 1:
                _lists.append(_lists.pop(i))  # (the last used are kept)
            return number  # type: ignore[no-any-return]
    _numbered += 1
    _lists.append([filters, _numbered])
    if len(_lists) > _LISTS_HELD:
        del _lists[0]
    return _numbered


_LISTS_HELD = 8


def _loaded(data: bytes) -> tuple[Any, ...]:
    """The filters pickled in *data* (:func:`pickled`) that this process can load."""
    hit = _loads.get(data)
    if hit is not None:
        return hit
    out = []
    for one in pickle.loads(data)[1]:
        try:
            out.append(pickle.loads(one))
        except Exception as exc:  # noqa: BLE001 - a category this worker cannot import: no match here
            log.debug("picklepool: a warnings filter of the parent cannot be read here (%r)", exc)
    if len(_loads) >= 4:
        _loads.clear()
    filters = _loads[data] = tuple(out)
    return filters


def own() -> tuple[Any, ...]:
    """This worker's filters now (``workers.following`` notes them before a parent's change)."""
    return tuple(warnings.filters)


def apply(data: bytes | None) -> None:
    """Follow a change of the parent's filters to those pickled in *data* (None: leave them).

    The first time, the worker's filters become the parent's. After, the parent's change
    (from the filters it had at this worker's last batch) is made to the worker's filters,
    as the parent's program would have made it to a loop's: a filter it added at the
    front (``simplefilter``) goes ahead of those the worker's code added (a library a
    task imported: "ignore" for its own warning), one it appended (``append=True``) after
    them, one it removed goes; what the worker's code added or removed stays so.
    """
    global _parents
    if data is None:
        return
    new = _loaded(data)
    old = _parents
    _parents = new
    _make(_behind_own(new if old is None else _replayed(old, new, tuple(warnings.filters))))


def restore(own: tuple[Any, ...], data: bytes) -> None:
    """The parent's filters are those of *data* again (its ``catch_warnings`` block ended):
    the worker's own filters of then, *own*, come back (a filter a task added inside the
    block goes, as in a loop)."""
    global _parents
    _parents = _loaded(data)
    _make(_behind_own(own))


def _make(filters: tuple[Any, ...]) -> None:
    global _base
    if tuple(warnings.filters) == filters:
        return
    if _base is None:
        _base = tuple(f for f in warnings.filters if f not in _own)
    _set(filters)


def _replayed(old: tuple[Any, ...], new: tuple[Any, ...], current: tuple[Any, ...]) -> tuple[Any, ...]:
    """*current* (the worker's filters: the parent's *old* with what the worker's code did)
    with the parent's change from *old* to *new* made to it."""
    # which of old's filters each of current's is (in order), the others the worker's own,
    # each kept just ahead of the parent's filter it came before (the end: after them all)
    ahead: dict[int, list[Any]] = {}
    kept: set[int] = set()
    waiting: list[Any] = []
    k = 0
    for f in current:
        try:
            i = old.index(f, k)
        except ValueError:
            waiting.append(f)
            continue
        if waiting:
            ahead[i], waiting = waiting, []
        kept.add(i)
        k = i + 1
    ahead[len(old)] = waiting
    opcodes = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    if old and not any(tag == "equal" for tag, *_ in opcodes):
        return new  # all of them replaced (resetwarnings() and new ones): the worker's code's too
    out: list[Any] = []
    for tag, i1, i2, j1, j2 in opcodes:
        if tag != "equal":  # the parent's added filters, where it put them: ahead of the
            # worker's that came before its next one (at the front: ahead of them all)
            if i1 == len(old):  # appended: after the worker's that end the list
                out += ahead.pop(len(old), [])
            out += new[j1:j2]
        for i in range(i1, i2):
            out += ahead.pop(i, [])
            if tag == "equal" and i in kept:  # (one the worker's code removed stays removed)
                out.append(old[i])
    out += ahead.pop(len(old), [])
    return tuple(dict.fromkeys(out))  # (a filter added twice: the first, as filterwarnings keeps one)


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
    if _base is None or _parents is None:
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
    global _own
    added = tuple(f for f in warnings.filters if f not in before)
    if added:
        _own = added + tuple(f for f in _own if f not in added)
