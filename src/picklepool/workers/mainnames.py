"""The parent script's names in a warm worker's ``__main__``, for code that looks them up.

A task's functions of ``__main__`` arrive by value, each with the globals it reads,
but a loky worker's ``__main__`` is loky's own module. Code in a task that finds one
of its script's classes or functions through ``__main__`` failed there, where the
parent's loop works (and so does joblib's, which fails the same way):

- ``pickle`` by name: ``pickle.dump(Result(i), f)``, ``joblib.dump(model, path)`` of a
  model whose class the script defines, a ``multiprocessing.Pool`` or
  ``ProcessPoolExecutor`` started in the task with a function of the script, a
  manager queue's ``put``: ``attribute lookup Result on __main__ failed``;
- ``typing.get_type_hints`` (dataclass and annotation tools: ``dacite``, ``cattrs``) on
  a class of a script with ``from __future__ import annotations``: its string
  annotations are evaluated in ``__main__``'s namespace, ``NameError: name 'Point' is
  not defined``.

:func:`enter`, while a batch's tasks run in the worker's main thread, puts in the
worker's ``__main__`` the names that the batch's functions of ``__main__`` see (their
globals, and the function or class itself), the very objects the tasks use, so
``pickle``'s check that the name gives back the same object holds; :func:`leave` takes
them out. A process a task forks (``multiprocessing``'s default start method on Linux)
inherits them. The names the worker's launcher left in its ``__main__`` (the forkserver's
``main`` and ``sys``, loky's ``main``, ``os``...) give way to the script's of the same name
for the tasks and come back after (a script's ``def main()`` pickled by name was "not the
same object as __main__.main"); a name a task or an initializer set there is never
replaced, and dunder names are left out but two: ``__file__`` and ``__spec__`` are the
parent's script's (:data:`script`, ``ParentState.main``), so that a process a task
starts with multiprocessing's "spawn" or "forkserver" (a ``Pool``, a
``ProcessPoolExecutor`` with such a context, a ``Manager``) runs the script as
``__mp_main__``, as the parent's own children do, and finds its functions (it could not:
it died at its first task, and a ``Pool`` started new ones for ever, where the loop ran;
joblib's workers fail to pickle them), and ``inspect.getsource`` of a script's class
reads the script. loky's processes (a nested ``Parallel``) do not run it. Only in loky's
warm workers (:func:`install`):
``backend="multiprocessing"`` and dask workers' ``__main__`` is the script itself.
"""

from __future__ import annotations

import functools
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any

_namespace: dict[str, Any] | None = None  # this worker's __main__'s, once install() ran
_launcher: dict[str, Any] = {}  # the names the worker's launcher had set there, at install()
_main_ident = threading.main_thread().ident
_get_ident = threading.get_ident
_missing = object()
# the script's module: __mp_main__ in a program that multiprocessing's spawn or forkserver
# started (a Process whose target calls Parallel); a worker's __mp_main__ is its __main__
_SCRIPT = ("__main__", "__mp_main__")
_DUNDERS = ("__file__", "__spec__")  # the only dunder names enter() sets (see the module)

# (__file__, __spec__.name) of the parent's script (ParentState.main, set by workers.mirror)
script: tuple[str | None, str | None] = (None, None)
# (script, the dunder names enter() sets for it), made when the parent's script changes
_script_made: tuple[tuple[str | None, str | None], dict[str, Any]] = ((None, None), {})


def install() -> None:
    """Let :func:`enter` fill this process's ``__main__`` (a loky worker's, at its start)."""
    global _namespace, _launcher
    main = sys.modules.get("__main__")
    _namespace = None if main is None else vars(main)
    _launcher = {k: v for k, v in (_namespace or {}).items() if k[:2] != "__" or k in _DUNDERS}


def read_script() -> tuple[str | None, str | None]:
    """In the parent: ``(__main__.__file__, __main__.__spec__.name)``, each None where it
    has none (``python -c``, a notebook; a script run by path has no spec name)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    name = getattr(getattr(main, "__spec__", None), "name", None)
    return (
        path if type(path) is str else None,
        name if type(name) is str else None,
    )


def _script_names() -> dict[str, Any]:
    """``__file__`` and ``__spec__`` for the parent's :data:`script` (one spec per script)."""
    global _script_made
    made_for, out = _script_made
    if made_for != script:
        path, name = script
        out = {}
        if name is not None:
            from importlib.machinery import ModuleSpec

            out["__spec__"] = ModuleSpec(name, None)
        if path is not None:
            out["__file__"] = path
        _script_made = (script, out)
    return out


def enter(fns: Sequence[Any]) -> dict[str, Any] | None:
    """Give the worker's ``__main__`` the names the batch's functions *fns* of ``__main__``
    see, while its tasks run; what was put there, for :func:`leave` (None: nothing).

    Only around the tasks: the batch's functions and arguments were unpickled before, and
    its results are pickled after, without them (a worker's history must not change what a
    pickle finds). A few dict operations per name the functions read (a function of an
    importable module reads none); nothing outside a loky worker's main thread (a nested
    call's threads run inside a batch that already did it).
    """
    ns = _namespace
    if ns is None or _get_ident() != _main_ident:
        return None
    put = {}
    launcher = _launcher
    found = names(fns)
    if script != (None, None):
        found.update(_script_names())
    for k, v in found.items():
        held = ns.get(k, _missing)
        if held is _missing or (held is not v and launcher.get(k, _missing) is held):
            ns[k] = put[k] = v
    return put or None


def leave(put: dict[str, Any]) -> None:
    """Take out of ``__main__`` what :func:`enter` put there (unless a task bound it anew);
    a name of the launcher's gets its value back."""
    ns = _namespace
    if ns is not None:
        launcher = _launcher
        for k, v in put.items():
            if ns.get(k, _missing) is v:
                own = launcher.get(k, _missing)
                if own is _missing:
                    del ns[k]
                else:
                    ns[k] = own


def names(fns: Sequence[Any]) -> dict[str, Any]:
    """The names *fns*' functions and classes of ``__main__`` see: their globals (not the
    dunder ones) and their own names; the first function's value wins."""
    found: dict[str, Any] = {}
    for fn in fns:
        if type(fn) is not types.FunctionType:
            for _ in range(8):  # a partial's, a bound method's function
                if type(fn) is functools.partial:
                    fn = fn.func
                elif type(fn) is types.MethodType:
                    fn = fn.__func__
                else:
                    break
        if type(fn) is types.FunctionType:
            if fn.__module__ not in _SCRIPT:
                continue
            for k, v in fn.__globals__.items():
                if k[:2] != "__":
                    found.setdefault(k, v)
        else:
            if not isinstance(fn, type):
                fn = type(fn)  # a callable object: its class
            _methods_globals(fn, found)
        if getattr(fn, "__module__", None) in _SCRIPT and fn.__qualname__ == fn.__name__:
            found.setdefault(fn.__name__, fn)
    return found


def _methods_globals(cls: type, found: dict[str, Any]) -> None:
    """Add to *found* the globals that the methods of *cls* (and of its bases) of ``__main__``
    see: ``delayed(Job)(i)``, ``delayed(Job())(i)`` run them, not a function of the script."""
    seen: set[int] = set()  # (the methods sent by value in one pickle share their globals)
    for klass in getattr(cls, "__mro__", ())[:-1]:  # (not object)
        if getattr(klass, "__module__", None) not in _SCRIPT:
            continue
        for value in list(vars(klass).values()):
            fn = getattr(value, "__func__", value)  # (a classmethod's, a staticmethod's)
            if type(fn) is types.FunctionType and fn.__module__ in _SCRIPT:
                space = fn.__globals__
                if id(space) in seen:
                    continue
                seen.add(id(space))
                for k, v in space.items():
                    if k[:2] != "__":
                        found.setdefault(k, v)
