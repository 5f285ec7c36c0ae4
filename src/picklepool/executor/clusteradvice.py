"""What to do when a task on a dask cluster misses what this process has and a local
worker would have had: the cluster's processes do not mirror this process's ``sys.path``
or ``builtins``, and the dask backend has no ``initializer`` (``executor.dask``).

The advice for a local worker (``executor.replies``) says "put its folder on sys.path
before the call" (it is there: the cluster does not see it) or "an initializer" (refused
on dask): on dask the fix is the cluster's own, ``client.upload_file``, ``client.run`` or a
``WorkerPlugin``, or sending it by value.
"""

from __future__ import annotations

import builtins
import os
import sys
from typing import Any

from ..pickler.homes import source_file
from ..workers import builtinnames

# how to do *something* on every worker of the cluster, where a local pool has an initializer
_ON_WORKERS = (
    "do it on the dask workers with client.run(func), or for workers that join later too a "
    "distributed.WorkerPlugin whose setup() does it (client.register_plugin(plugin)): the dask "
    "backend has no initializer"
)


def on_workers(what: str) -> str:
    """The fix that does *what* in every worker: an initializer on a local pool, the
    cluster's own on dask (``"set builtins.LEVEL"`` -> "... client.run(func) ...")."""
    return f"{what}: {_ON_WORKERS}"


def shared_path_fix(module: str, where: str, pickler_name: str | None = None) -> str:
    """What to do when the dask workers cannot import *module*, which this process imports
    by its name from *where* (its folder is on this process's ``sys.path``, not theirs).
    *pickler_name*: the pickler that sent it by name (None: a task's own ``import``)."""
    top = module.partition(".")[0]
    package = "." in module or os.path.basename(where).startswith("__init__.")
    upload = (
        "install the package where the workers run"
        if package
        else f"send its file to the workers with client.upload_file({where!r}), or install it there"
    )
    text = (
        f"module {module!r} is imported in this process (from {where}) but the dask workers "
        "cannot import it by its name: dask workers do not share this process's sys.path (the "
        "cluster's processes are shared and may run on other machines), so a folder put on it "
        f"here does not reach them. Fix: {upload}"
    )
    if pickler_name is None:  # the task imports it itself: only the workers' own import works
        folder = os.path.dirname(where)
        for _ in range(module.count(".") + os.path.basename(where).startswith("__init__.")):
            folder = os.path.dirname(folder)  # (a package's: the folder that holds it)
        # (site.addsitedir goes by name: sys.path.insert would insert into a pickled copy)
        return f"{text}; or put that folder on the workers' sys.path: client.run(site.addsitedir, {folder!r})"
    by_value = f"cloudpickle.register_pickle_by_value({top}) before the call" + (
        ""
        if pickler_name in ("hybrid", "cloudpickle")
        else ", with pickler='hybrid' (the default) or 'cloudpickle'"
    )
    return f"{text}; or register it to travel by value: {by_value}"


def task_import(error: BaseException) -> str | None:
    """A task's ``ModuleNotFoundError`` on dask for a module this process imported by its
    name from a file (its folder is on this process's ``sys.path``, and so a local worker,
    which mirrors it, imports it too), or None."""
    name = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    if not isinstance(name, str):
        return None
    module = sys.modules.get(name)
    where = source_file(module) if module is not None else None
    if where is None or getattr(getattr(module, "__spec__", None), "name", name) != name:
        return None
    return f"({shared_path_fix(name, str(where))}.)"


def builtin_name(name: str) -> str | None:
    """Why *name*, which this process added to ``builtins`` (a callable or a value), is not
    there in a dask worker; None when it is not one this process added."""
    if (
        name not in builtinnames.added({name: vars(builtins).get(name)})
        and builtinnames.not_callable(name) is None
    ):
        return None
    return (
        f"(builtins.{name} is set in this process, but the dask workers do not get this process's "
        "builtins (picklepool sends the callables added there to its local workers only: the "
        "cluster's processes are shared). Fix: pass it to the tasks as an argument, or "
        f"{on_workers(f'set builtins.{name} there')}.)"
    )


def is_dask(backend: Any) -> bool:
    """Whether *backend* runs the call's tasks on a dask cluster."""
    return getattr(backend, "name", "") == "dask"
