"""Standard library values that pickle refuses, sent as what rebuilds them (``hybrid``).

struct.Struct     -> ``struct.Struct(format)``: the same object (it holds only its
                     format; a module-level ``HEADER = struct.Struct("<II")`` read by a
                     function of ``__main__`` failed every task: "cannot pickle
                     '_struct.Struct' object", as under ``pickle``, ``cloudpickle`` and joblib);
                     a subclass's object as its class, format and attributes
os.DirEntry       -> a :class:`DirEntry` with the same ``name`` and ``path``, and the
                     answers of ``is_dir()``, ``is_file()``, ``is_symlink()`` and
                     ``inode()`` the parent's entry had (from the folder's listing, as
                     ``os.scandir`` gives them); ``stat()`` asks the file system, where
                     the worker is, as the entry's first ``stat()`` does. It is a path
                     (``os.fspath``, ``open``), and ``isinstance(entry, os.DirEntry)`` is
                     False (no class can derive from it). ``delayed(f)(entry) for entry in
                     os.scandir(folder)`` failed: "cannot pickle 'posix.DirEntry' object"
    re.Match          -> the same match, found again in its string by its pattern: from
                         its ``pos`` (as ``search`` or ``match`` found it), else at its
                         start (``finditer``'s later matches: ``pos`` is then its start), else
                         over its span (``fullmatch``: ``endpos`` is then its end); its groups,
                         spans, ``lastindex`` and ``groupdict()`` are the parent's. A task
                         ``delayed(pattern.search)(line)`` (or one returning a match)
                         failed: "cannot pickle 're.Match' object"
"""

from __future__ import annotations

import copyreg
import os
import re
import struct
from typing import Any


def _reduce_struct(obj: struct.Struct) -> tuple[Any, tuple[Any, ...]]:
    return struct.Struct, (obj.format,)


def reduce_struct_subclass(obj: struct.Struct) -> tuple[Any, tuple[Any, ...]]:
    """A ``struct.Struct`` subclass's object (``class Header(struct.Struct)`` with an
    ``__init__`` of its own): its class, format and attributes (its ``__dict__``, and its
    slots: a subclass with ``__slots__`` lost theirs)."""
    slots = {name: getattr(obj, name) for name in _slotnames(type(obj)) if hasattr(obj, name)}
    return _rebuild_struct, (type(obj), obj.format, getattr(obj, "__dict__", None) or None, slots or None)


_slotnames: Any = copyreg._slotnames  # type: ignore[attr-defined]  # (its slots' names, mangled)


def _rebuild_struct(
    cls: Any, fmt: str, attrs: dict[str, Any] | None, slots: dict[str, Any] | None = None
) -> struct.Struct:
    obj = struct.Struct.__new__(cls, fmt)  # type: ignore[call-arg]
    struct.Struct.__init__(obj, fmt)  # (not the subclass's: it may take other arguments)
    if attrs:
        obj.__dict__.update(attrs)
    for name, value in (slots or {}).items():
        setattr(obj, name, value)
    return obj  # type: ignore[no-any-return]


class DirEntry:
    """An ``os.DirEntry`` of another process: its name, path and what its listing said."""

    __slots__ = ("name", "path", "_dir", "_file", "_link", "_inode", "_stat", "_lstat")

    def __init__(self, name: Any, path: Any, answers: tuple[bool, bool, bool, bool, bool, int]) -> None:
        self.name, self.path = name, path
        self._dir, self._file, self._link, self._inode = answers[0:2], answers[2:4], answers[4], answers[5]
        self._stat: os.stat_result | None = None
        self._lstat: os.stat_result | None = None

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._dir[0 if follow_symlinks else 1]

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return self._file[0 if follow_symlinks else 1]

    def is_symlink(self) -> bool:
        return self._link

    def inode(self) -> int:
        return self._inode

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        if follow_symlinks and self._link:
            if self._stat is None:
                self._stat = os.stat(self.path)
            return self._stat
        if self._lstat is None:
            self._lstat = os.lstat(self.path)
        return self._lstat

    def is_junction(self) -> bool:  # (Python 3.12's; False off Windows)
        return False

    def __fspath__(self) -> Any:
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        answers = (*self._dir, *self._file, self._link, self._inode)
        return DirEntry, (self.name, self.path, answers)


def _reduce_dir_entry(entry: Any) -> tuple[Any, tuple[Any, ...]]:
    answers = (
        entry.is_dir(),
        entry.is_dir(follow_symlinks=False),
        entry.is_file(),
        entry.is_file(follow_symlinks=False),
        entry.is_symlink(),
        entry.inode(),
    )
    return DirEntry, (entry.name, entry.path, answers)


def _reduce_match(match: re.Match[Any]) -> tuple[Any, tuple[Any, ...]]:
    pattern, string, regs = match.re, match.string, match.regs
    start, end = match.span()
    for how, args in (
        ("search", (string, match.pos, match.endpos)),
        ("match", (string, start, match.endpos)),
        ("fullmatch", (string, start, end)),
    ):
        again = getattr(pattern, how)(*args)
        if again is not None and again.regs == regs:
            return _rebuild_match, (pattern, how, args)
    raise TypeError("cannot pickle 're.Match' object")  # (not found again: send its groups)


def _rebuild_match(pattern: re.Pattern[Any], how: str, args: tuple[Any, ...]) -> Any:
    return getattr(pattern, how)(*args)


REDUCERS: dict[type, Any] = {
    struct.Struct: _reduce_struct,
    os.DirEntry: _reduce_dir_entry,
    re.Match: _reduce_match,
}
