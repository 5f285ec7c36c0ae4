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
site-packages and picklepool; a few identity checks per call, and a look at the
modules imported since the last call.
"""

from __future__ import annotations

import os
import site
import sys
from typing import Any

_seen: dict[str, tuple[Any, Any, int]] = {}  # name -> (module, its __spec__ when last seen, reloads)
_scanned: set[str] = set()  # names in sys.modules already looked at
_count = -1  # len(sys.modules) at the last look
_out: tuple[tuple[str, int], ...] = ()  # (name, reloads) of the modules reloaded at least once
_roots: tuple[str, ...] | None = None


def generations() -> tuple[tuple[str, int], ...]:
    """``(module name, reloads seen)`` of the user's modules reloaded since first seen here."""
    global _count, _out
    modules = sys.modules
    if len(modules) != _count:
        _count = len(modules)
        for name in modules.keys() - _scanned:
            _scanned.add(name)
            module = modules.get(name)
            if name != "__main__" and _own(module):
                _seen.setdefault(name, (module, getattr(module, "__spec__", None), 0))
    changed = False
    for name, (module, spec, n) in list(_seen.items()):  # (another thread may add to it)
        now = modules.get(name)
        if now is module and getattr(now, "__spec__", None) is spec:
            continue
        if now is None:  # removed: if it is imported again, that import is a reload
            continue
        _seen[name] = (now, getattr(now, "__spec__", None), n + 1)
        changed = True
    if changed:
        _out = tuple((name, n) for name, (_m, _s, n) in _seen.items() if n)
    return _out


def _own(module: Any) -> bool:
    """Whether *module* is one of the user's: from a ``.py`` file outside the interpreter's
    own folders (standard library, site-packages) and picklepool's."""
    origin = getattr(getattr(module, "__spec__", None), "origin", None)
    if not isinstance(origin, str) or not origin.endswith(".py"):
        return False
    return not origin.startswith(_roots or _find_roots())


def _find_roots() -> tuple[str, ...]:
    """The folders of the standard library, site-packages and picklepool (``site``'s own
    answers: ``sysconfig`` would import its data module at a call, after the imports a
    fork waits for, ``lokycompat.load``)."""
    global _roots
    roots = {os.path.dirname(os.__file__), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    _roots = tuple(os.path.join(r, "") for r in roots if r)
    return _roots
