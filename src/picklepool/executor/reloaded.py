"""Which of this process's own modules were reloaded: their workers reload them too.

Code that reaches a module by name in a worker (a task function of it, a class of
an argument, a ``__main__`` function calling ``mod.f()``) finds the module the worker
imported, maybe at an earlier call. After ``importlib.reload(mod)`` here (IPython's
``%autoreload`` does it as the file is edited), that copy is the old code, and
tasks ran it while the parent ran the new one (joblib issue #1085).

:func:`generations` counts, per module, the reloads seen here: a module's
``__spec__`` is found anew at each reload (or import after ``del sys.modules[name]``).
It goes with every batch (``wire.ParentState.reloads``), and a worker reloads each
module it imported before the count it has of it (``workers.reloads.apply``). Only the
user's modules are watched: those of a source file outside the standard library,
site-packages and picklepool. Per call, a look at the modules imported since the last
call, and at those the import system was asked for again: a finder first in
``sys.meta_path`` (:class:`_Watch`, which finds nothing) notes them, as reload asks it
with the module as target; when something else went first since the last call, every
watched module is looked at (an editable install of a large package is a thousand of
them: 0.4 ms a call). A module replaced in ``sys.modules`` by hand, bypassing the
import system (``importlib.util.module_from_spec``), is not seen.

IPython's ``%autoreload 2`` (IPython 9's deduperreload) does not reload a module: it
runs the edited definitions in it and sets the old functions' ``__code__``. The time it
notes for each module it updated (:func:`_autoreload_marks`) changes then: that counts
as a reload of it.
"""

from __future__ import annotations

import sys
from typing import Any

from ..workers.reloads import users

_seen: dict[str, tuple[Any, Any, int]] = {}  # name -> (module, its __spec__ when last seen, reloads)
_scanned: set[str] = set()  # names in sys.modules already looked at
_count = -1  # len(sys.modules) at the last look
_out: tuple[tuple[str, int], ...] = ()  # (name, reloads) of the modules reloaded at least once
_asked: set[str] = set()  # watched names the import system was asked for since the last look
_marks: dict[str, Any] = {}  # name -> IPython %autoreload's mark of it at the last look
# reloads seen so far: what was decided before one about a module's objects may be wrong now
# (an old function or class, still held under another name, is no longer its module's)
epoch = 0


def moved(mark: list[int]) -> bool:
    """Whether a reload was seen since *mark* (a one-item list of ``epoch`` values, kept by
    a cache of decisions about modules' objects), which then moves to now."""
    if mark[0] == epoch:
        return False
    mark[0] = epoch
    return True


class _Watch:
    """First in ``sys.meta_path``, finds nothing: notes the watched modules looked for again
    (``importlib.reload`` asks for its module as *target*; an import after
    ``del sys.modules[name]`` asks for the name)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if target is not None or name in _seen:
            _asked.add(name)
        return None


_watch = _Watch()


def generations() -> tuple[tuple[str, int], ...]:
    """``(module name, reloads seen)`` of the user's modules reloaded since first seen here."""
    global _count, _out, epoch
    modules = sys.modules
    meta = sys.meta_path
    everything = not meta or meta[0] is not _watch  # a reload may have gone past it
    if everything:
        if _watch in meta:
            meta.remove(_watch)
        meta.insert(0, _watch)
    if len(modules) != _count:
        _count = len(modules)
        for name in modules.keys() - _scanned:
            _scanned.add(name)
            module = modules.get(name)
            if name != "__main__" and users(module):
                _seen.setdefault(name, (module, getattr(module, "__spec__", None), 0))
    if everything:
        names = list(_seen)  # (another thread may add to it)
        _asked.clear()
    else:
        names = []
        while _asked:
            names.append(_asked.pop())
    marks = _autoreload_marks() if "IPython.extensions.autoreload" in modules else None
    changed = False
    for name in () if marks is None else _patched(marks):
        module, spec, n = _seen[name]
        _seen[name] = (module, spec, n + 1)
        changed = True
    for name in names:
        seen = _seen.get(name)
        if seen is None:
            continue
        module, spec, n = seen
        now = modules.get(name)
        if now is module and getattr(now, "__spec__", None) is spec:
            continue
        if now is None:  # removed: if it is imported again, that import is a reload
            continue
        _seen[name] = (now, getattr(now, "__spec__", None), n + 1)
        changed = True
    if changed:
        epoch += 1
        _out = tuple((name, n) for name, (_m, _s, n) in _seen.items() if n)
    return _out


def forget() -> None:
    """Drop the modules held (the interpreter's exit, once no call runs): a module held here
    outlived its removal from ``sys.modules`` and the collection that follows, and the cycles
    through its namespace (``__main__``'s: its objects, their ``__del__``) then were never
    collected."""
    global _count, _out
    _seen.clear()
    _scanned.clear()
    _marks.clear()
    _count, _out = -1, ()


def _autoreload_marks() -> dict[str, Any] | None:
    """IPython's ``%autoreload``: module name -> the file's time when it last updated it."""
    try:
        shell = sys.modules["IPython"].get_ipython()
        marks = shell.magics_manager.registry["AutoreloadMagics"]._reloader.modules_mtimes
    except Exception:  # noqa: BLE001 - not in IPython, the extension not loaded, another IPython
        return None
    return marks if isinstance(marks, dict) else None


def _patched(marks: dict[str, Any]) -> list[str]:
    """The watched modules whose ``%autoreload`` mark changed since the last look (a first
    mark is the time it saw the module, no update)."""
    out = []
    for name in list(_seen):
        mark = marks.get(name)
        old = _marks.get(name)
        if mark is not old:
            _marks[name] = mark
            if old is not None and mark is not None and old != mark:
                out.append(name)
    return out
