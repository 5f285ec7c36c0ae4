"""How a worker follows the parent's changes of a process setting, and their ends.

In a loop in the parent, a setting is one value that both the program and its tasks
change: what a task sets (a one-time ``np.seterr`` behind a module flag, a library's
``warnings.filterwarnings`` as it is imported) stays until the program sets it again,
and the end of a ``with np.errstate(...)``, ``decimal.localcontext()`` or
``warnings.catch_warnings()`` block puts back what was there before the block: the
task's value, not the program's. A worker has its own copy of each setting: what it
is given of the parent's must read as changes, and a change's end as a return to what
the worker had before it.

So a worker keeps, for each setting (``wire.MIRRORED_SETTINGS``), the parent's value as
of its last batch, and, for each change of the parent's it followed, the parent's value
before it and the worker's own value then. At a batch, for each setting:

- the parent's value is the one seen last: nothing is set (what the worker's own code
  set stays);
- it is one the parent had before a change this worker followed (a block ended, or the
  program set the old value back): the worker's own value of that time comes back;
- else it is a change: the worker's own value is noted, and the parent's set.

A change made and undone while this worker ran nothing is none to it. Every worker
then answers alike: what its own code set before the change. A program that sets a
value back by hand (not with a block) is read the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_NOT_YET = object()  # no value of the parent's seen for this setting yet: the first is set
_TAKE = object()  # the next value of the parent's is taken as seen, not set (an initializer's stays)
FIRST = object()  # fields()' *before* at the first value of the parent's this worker follows
# changes remembered per setting: blocks nested deeper (or changes made one after another
# without an end) lose their oldest end, which is then a plain change
_DEPTH = 64

_seen: dict[str, Any] = {}  # setting -> the parent's value at this worker's last batch
# setting -> [(the parent's value before a change followed here, this worker's own value then)]
_before: dict[str, list[tuple[Any, Any]]] = {}
# moves on whenever a setting's seen value is set other than by follow() (seen_as, own_from_now):
# a worker that followed the same values as the last batch's, with none set so since, has
# nothing to do for them (workers.mirror.apply)
generation = 0


def follow(
    key: str,
    value: Any,
    read: Callable[[], Any],
    write: Callable[[Any], None],
    restore: Callable[[Any, Any], None] | None = None,
    fields: Callable[[Any, Any, Any], Any] | None = None,
) -> None:
    """Follow the parent's *value* of setting *key* (see the module's docstring).

    *read* gives this worker's own value (in the parent's form), *write* sets the
    parent's, *restore(own, value)* puts back an own value read before (default:
    ``write(own)``) as the parent's value is *value* again. *fields(own, before, value)*,
    for a setting of several fields (a decimal context: precision, rounding...), is what
    to write for a change: the fields the parent changed since *before* (:data:`FIRST` at
    the first) set over the worker's *own* (a ``localcontext(prec=5)`` block leaves the
    rounding a task set alone, as in a loop).
    """
    seen = _seen.get(key, _NOT_YET)
    if seen is value or seen == value:
        return
    _seen[key] = value
    if seen is _TAKE:
        return
    stack = _before.get(key)
    if stack:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == value:  # back to a value it had before: the change ended
                own = stack[i][1]
                del stack[i:]
                if restore is None:
                    write(own)
                else:
                    restore(own, value)
                return
    if seen is _NOT_YET:
        if fields is not None:
            value = fields(read(), FIRST, value)
    else:
        own = read()
        if stack is None:
            stack = _before[key] = []
        stack.append((seen, own))
        if len(stack) > _DEPTH:
            del stack[0]
        if fields is not None:
            value = fields(own, seen, value)
    write(value)


def seen_as(key: str, value: Any) -> None:
    """The parent's value of *key* is *value*, as this worker's is now (a new worker given
    the parent's settings of the pool's start, before its initializer runs)."""
    global generation
    generation += 1
    _seen[key] = value
    _before.pop(key, None)


def own_from_now(key: str, parents: Any = _TAKE) -> None:
    """What this worker's code just set of *key* (an initializer) is its own: it stays
    while the parent's value is *parents* (the parent's as the pool or executor was made;
    by default the next one given), and comes back after a change of the parent's ends."""
    global generation
    generation += 1
    _seen[key] = parents
    _before.pop(key, None)


def seen(key: str) -> Any:
    """The parent's value of *key* at this worker's last batch (None: none yet)."""
    value = _seen.get(key)
    return None if value is _NOT_YET or value is _TAKE else value
