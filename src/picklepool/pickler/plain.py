"""Plain data: small values every built-in pickler writes exactly as ``pickle`` does.

Numbers, strings, bytes, ``None`` and exact tuples, lists and dicts of them pickle
to the same bytes with the stdlib, cloudpickle and hybrid picklers: the C pickler
never asks a ``reducer_override`` about them. For such a value (a one-task batch,
its reply) :func:`dumps` skips building a ``Pickler`` subclass, a stream and the
out-of-band buffer hooks, which cost more than the pickling itself. A registered
pickler, with a format of its own, always gets the value.
"""

from __future__ import annotations

import pickle
from typing import Any

PROTOCOL = 5  # every built-in pickler's (pickler.base)

# Exact pickler classes whose output for plain data is the stdlib's (base, hybrid add theirs).
SAME_AS_STDLIB: set[type] = set()

_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})
BUDGET = 256  # items looked at before giving up: a large batch takes the usual road
MAX_TEXT = 1024  # characters or bytes of one string: so a plain value stays under ~256 KB


def is_plain(obj: Any, budget: int = BUDGET) -> bool:
    """*obj* holds only atoms in exact tuples, lists and dicts, within *budget* items.

    Strings and bytes longer than ``MAX_TEXT`` are not plain: a large pickle stream
    goes through a file (``pickler.buffers.PAYLOAD_FILE_MIN``), not through the pipe.
    """
    stack = [obj]
    pop, push = stack.pop, stack.extend
    while stack:
        o = pop()
        t = type(o)
        if t in _ATOMS:
            if (t is str or t is bytes) and len(o) > MAX_TEXT:
                return False  # large: the usual road sends it through a file, not the pipe
            continue
        if t is tuple or t is list:
            budget -= len(o) + 1  # +1: a list that holds itself still runs out
        elif t is dict:
            budget -= 2 * len(o) + 1
            push(o.values())
            o = o.keys()
        else:
            return False
        if budget < 0:
            return False
        push(o)
    return True


def dumps(pickler: Any, obj: Any) -> bytes | None:
    """``pickler.dumps(obj)`` made the short way, or None when *obj* or *pickler* does not allow it."""
    if type(pickler) not in SAME_AS_STDLIB or not is_plain(obj):
        return None
    return pickle.dumps(obj, protocol=PROTOCOL)
