"""Plain ``object()`` instances (the sentinel idiom) keep their identity across the trip and back.

``MISSING = object()`` exists to be told apart with ``is``: ``CACHE.get(k, MISSING)``
in a task, then ``[r for r in results if r is not MISSING]`` in the parent. Pickled,
it became a new object at each trip: a task's ``x is MISSING`` compared copies made by
two pickles (the function's, the batch's), and each result that *was* the sentinel
came back as yet another object, so the parent's filter kept them all, silently.

hybrid sends such an object as a token: this process's nonce and a serial number given
to the object (kept alive for it). Where the token is not this process's own, it stands for
one object per token (a worker's copy, the same through every pickle); sent back, that
copy is the token again, and the process it came from gets its very object. A plain
``object()`` has no state, so one object per token is all a copy can be.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

LIMIT = 4096  # objects remembered each way before the tables start afresh (a fresh object then)

_nonce = os.urandom(8)  # this process's; a forked child draws its own
_serials = itertools.count()  # never reused: a token of a forgotten object names no other
_own: dict[int, object] = {}  # serial -> an object this process sent (kept alive for its token)
_serial_of: dict[int, int] = {}  # id(an object of _own) -> its serial
_copies: dict[tuple[bytes, int], object] = {}  # another process's token -> the object standing for it
_token_of: dict[int, tuple[bytes, int]] = {}  # id(an object of _copies) -> its token


def nonce() -> bytes:
    """This process's nonce (a forked child draws its own): the first part of its tokens."""
    return _nonce


def reduce_object(obj: object) -> tuple[Any, tuple[tuple[bytes, int]]]:
    """A plain ``object()`` as its token: the one it stands for, or one of this process."""
    return rebuild_object, (token_of(obj),)


def token_of(obj: object) -> tuple[bytes, int]:
    """*obj*'s token: the one it stands for (a copy made here), or one of this process."""
    token = _token_of.get(id(obj))
    if token is None or _copies.get(token) is not obj:
        serial = _serial_of.get(id(obj))
        if serial is None or _own.get(serial) is not obj:
            if len(_own) >= LIMIT:
                _own.clear()
                _serial_of.clear()
            serial = next(_serials)
            _own[serial] = obj
            _serial_of[id(obj)] = serial
        token = (_nonce, serial)
    return token


def known_token(obj: object) -> tuple[bytes, int] | None:
    """The token of another process's object that *obj* stands for here, or None."""
    token = _token_of.get(id(obj))
    return token if token is not None and _copies.get(token) is obj else None


def rebuild_object(token: tuple[bytes, int]) -> object:
    """The object *token* names: this process's own, or the one standing for another's."""
    return stand_in(token, object)


def stand_in(
    token: tuple[bytes, int], make: Callable[[], object], refresh: Callable[[object], None] | None = None
) -> object:
    """The object *token* names: this process's own, or the one standing for another's,
    made by *make()* the first time that token is met here (and given to *refresh* when
    met again: the sender's object may have changed since, or a task its copy)."""
    nonce, serial = token
    if nonce == _nonce:
        found = _own.get(serial)
        if found is not None:
            return found
        return make()
    made = _copies.get(token)
    if made is not None and refresh is not None:
        refresh(made)
    elif made is None:
        made = make()
        if len(_copies) >= LIMIT:
            _copies.clear()
            _token_of.clear()
        _copies[token] = made
        _token_of[id(made)] = token
    return made


def _forget_in_child() -> None:
    """A forked child is another process: its own nonce, and none of its parent's objects."""
    global _nonce
    _nonce = os.urandom(8)
    _own.clear()
    _serial_of.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
