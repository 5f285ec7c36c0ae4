"""Modules loaded here from a file that the import system does not find by their name.

A plugin loader's module (``importlib.util.spec_from_file_location("plugin", path)``,
``SourceFileLoader(name, path)``, pytest's ``--import-mode=importlib``; or one made by hand,
``types.ModuleType(name)`` with its ``__file__`` set and the file's code run in it, as
``runpy.run_path`` makes its ``<run_path>`` module) is in
``sys.modules`` and came from a ``.py`` file, but ``import plugin`` finds nothing
on ``sys.path`` (or another file). cloudpickle sends its functions and classes by
name, as those of any module in ``sys.modules``, and a worker, whose ``sys.path``
is the parent's, could not import them (``ModuleNotFoundError: No module named
'plugin'``), where the loop the call replaces ran them. hybrid sends those by value,
as it sends the functions and classes of ``__main__``.

Only modules of a source or bytecode file: a module made at run time (no file, such
as the submodules a compiled package registers as it is imported) may well exist in
the worker once its package is imported there, and an extension module's classes
cannot travel by value.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_found: dict[str, tuple[tuple[str, ...], bool]] = {}  # module name -> (sys.path then, found)
_SOURCES = (".py", ".pyc")


def not_found_by_name(obj: Any) -> bool:
    """True when *obj* (a function or class) is of a module loaded from a source file that
    importing its name would not load (see the module docstring)."""
    name = getattr(obj, "__module__", None)
    if not isinstance(name, str) or name == "__main__":
        return False
    # (whatever made it: by name the worker could not find it anyway; and a class of a
    # source file's module is a Python class)
    return module_not_found(sys.modules.get(name))


def module_not_found(module: Any) -> bool:
    """True when *module*, in ``sys.modules`` under its name, came from a source file that
    importing that name would not load."""
    name = getattr(module, "__name__", None)
    origin = source_file(module)
    if (
        not isinstance(name, str)
        or name == "__main__"
        or sys.modules.get(name) is not module
        or origin is None
        or getattr(getattr(module, "__spec__", None), "name", name) != name
    ):
        return False
    path = tuple(sys.path)
    known = _found.get(name)
    if known is None or known[0] != path:
        known = _found[name] = (path, _found_by_name(name, origin))
    return not known[1]


def source_file(module: Any) -> str | None:
    """The source or bytecode file *module* was loaded from: its spec's origin, or, for a
    module made by hand (no spec: ``types.ModuleType`` given a ``__file__``, ``runpy``'s),
    its ``__file__``; None for anything else (built in, an extension, made at run time)."""
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) if spec is not None else getattr(module, "__file__", None)
    return origin if isinstance(origin, str) and origin.endswith(_SOURCES) else None


def _found_by_name(name: str, origin: str) -> bool:
    """Whether importing *name* (and each package above it) would load the file *origin*."""
    parent = name.rpartition(".")[0]
    if parent:
        package = sys.modules.get(parent)
        if package is None:
            # (a loader's dotted name, "plugins.alpha", with no "plugins" loaded: importing the
            # name imports that package first, found as any import finds it, or not at all)
            search = _unloaded_package_path(parent)
            if search is None:
                return False
        else:
            search = getattr(package, "__path__", None)
            package_origin = source_file(package)
            if search is None:
                return True  # not a package's submodule as the import system makes them: not ours to judge
            if package_origin is not None:
                if not _found_by_name(parent, package_origin):
                    return False
    else:
        search = None
    spec = _find_spec(name, search)
    found = getattr(spec, "origin", None)
    return isinstance(found, str) and _same_file(found, origin)


def _find_spec(name: str, search: Any) -> Any:
    """The spec the import system's finders give for *name* (in *search*, its package's
    ``__path__``), without importing anything; None when none finds it."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, search, None)
        except Exception:  # noqa: BLE001 - a finder of its own that fails: ask the next one
            continue
        if spec is not None:
            return spec
    return None


def _unloaded_package_path(name: str) -> list[str] | None:
    """Where the package *name*, not in ``sys.modules``, would look for its submodules if it
    were imported (its spec's search locations), without importing it; None when importing
    it would fail: no finder finds it, it is not a package, or a package above it is not."""
    parent = name.rpartition(".")[0]
    search = None
    if parent:
        package = sys.modules.get(parent)
        search = _unloaded_package_path(parent) if package is None else getattr(package, "__path__", None)
        if search is None:
            return None
    locations = getattr(_find_spec(name, search), "submodule_search_locations", None)
    return None if locations is None else list(locations)


def _same_file(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def import_advice(error: BaseException) -> str | None:
    """What to do when a task's *error* is a ``ModuleNotFoundError`` for a module that this
    process loaded from its file and no import finds by its name (a plugin's, imported
    inside a function sent by value: ``from .other import f``, ``import plugin``), or
    None."""
    name = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    if not isinstance(name, str):
        return None
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        module = sys.modules.get(".".join(parts[:end]))
        if module is not None and module_not_found(module):
            origin = str(source_file(module))  # a source file's path (module_not_found)
            folder = os.path.dirname(origin)
            if getattr(module, "__path__", None) is not None:
                folder = os.path.dirname(folder)  # a package: the folder that holds it
            return (
                f"(module {module.__name__!r} was loaded here from its file {origin}, which "
                f"no import by its name finds: a worker cannot import it. Its functions "
                f"and classes go by value, but an import of it inside them runs in the "
                f"worker: put its folder on sys.path before the call "
                f"(sys.path.insert(0, {folder!r})), or import it at the module's top level)"
            )
    return None
