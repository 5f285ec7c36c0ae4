"""The modules picklepool and its dependencies loaded stay the ones it uses.

picklepool imports most of what a call needs at the first call (its own submodules,
loky, cloudpickle, psutil, ``multiprocessing``'s...). Code that snapshots
``sys.modules`` and restores it later (``mock.patch.dict(sys.modules, ...)``, a test
fixture, a plugin, an ``importlib`` sandbox), or deletes the entries that appeared
meanwhile, drops them when that first call ran inside: the next call then imported
fresh copies next to the ones in use, and the process had two of each: two loky
resource trackers' registries (``KeyError`` and "leaked folder" warnings at exit), two
copies of picklepool's module state, and classes of the first copies that pickle no
longer found by name (the next call's task failed to pickle, a ``RecursionError`` in
cloudpickle). joblib imports all that as it is imported, outside such a block.

So what appeared in ``sys.modules`` under picklepool's own calls is noted
(:func:`note`: the modules of picklepool, its dependencies and the standard library,
as they were imported; a stand-in a test put there is not a module of a spec of its
name, and not noted), and each call first checks (:func:`check`: one look-up) that
the latest noted module is still there: if not, ``sys.modules`` was restored, and
every noted module is put back, the very same objects, before the call imports
anything. A block entered once those modules were loaded keeps them (it restores
them itself), and stand-ins it puts in their place stay while it lasts.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

from .forklocks import renew_in_child

# the top-level packages whose modules are kept, besides the standard library's
_OURS = frozenset({"picklepool", "loky", "cloudpickle", "psutil", "threadpoolctl"})
_STDLIB: frozenset[str] = frozenset(getattr(sys, "stdlib_module_names", ()))

_lock = threading.Lock()
renew_in_child(globals(), "_lock", threading.Lock)  # (held at a fork: held for ever in the child)
_kept: dict[str, ModuleType] = {}  # name -> the module noted under it
_seen: set[str] = set()  # the names of sys.modules looked at by note()
_count = -1  # len(sys.modules) when note() last looked
# the latest noted module of picklepool's or a dependency's and its name: gone or replaced
# when sys.modules was restored to what it was before it was imported
_probe_name = ""
_probe: ModuleType | None = None


def check() -> None:
    """Put back the noted modules if ``sys.modules`` lost them (at a call's start)."""
    if sys.modules.get(_probe_name) is not _probe:
        _restore()


def note() -> None:
    """Note the modules imported since the last look (once a call has imported what it needs)."""
    if len(sys.modules) != _count:
        _note()


def _note() -> None:
    global _count, _probe_name, _probe
    with _lock:
        modules = sys.modules
        probe = None
        for name, module in list(modules.items()):  # in the order imported
            if name in _seen:
                continue
            _seen.add(name)
            top = name.partition(".")[0]
            if (
                issubclass(type(module), ModuleType)  # (not its __class__: a stand-in may raise)
                and (top in _OURS or top in _STDLIB)
                and _spec_name(module) == name
            ):
                kept = _kept.setdefault(name, module)
                if top in _OURS and kept is module:
                    probe = name  # the last imported: dropped by any restore that dropped another
        _count = len(modules)
        if probe is not None:
            _probe_name, _probe = probe, _kept[probe]


def _spec_name(module: ModuleType) -> object:
    try:
        return module.__spec__.name  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - a lazy module's __getattr__, whatever it raises
        return None


def _restore() -> None:
    with _lock:
        if _probe is None:
            return
        modules = sys.modules
        for name, module in _kept.items():
            if modules.get(name) is not module:
                modules[name] = module
                package, _, child = name.rpartition(".")
                parent = _kept.get(package)
                if parent is not None and getattr(parent, child, None) is not module:
                    setattr(parent, child, module)  # (a fresh import of it set the fresh copy there)
