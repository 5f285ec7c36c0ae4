"""A worker runs the parent's code of the modules the parent reloaded.

After ``importlib.reload(mod)`` in the parent (IPython's ``%autoreload`` as the file
is edited), a warm worker that imported ``mod`` at an earlier call kept the old code:
a task function of it, a class of an argument, a ``__main__`` function calling
``mod.f()`` ran it there while the parent ran the new one (joblib issue #1085;
joblib's workers do the same). Two ways, each for what the other cannot see:

- :func:`apply`, before each batch: the parent counts its reloads of the user's
  own modules (``executor.reloaded``) and the worker reloads each one it imported
  before the count it has. Every way of reaching the module, on a local pool.
- :class:`ByName`: a task function of an importable module travels by name with the
  digests of its code (and of what it wraps, ``__wrapped__``). Unpickled
  (:func:`resolve`), a copy whose code has other digests is looked for in the
  module's source file as it is now: when the file holds the parent's code, the
  module is reloaded here and the function found again. Any module, a dask worker's
  too. When the file holds neither (edited since the parent imported it, without a
  reload there; another version of a library on a cluster's worker), the task runs
  the worker's copy with a ``RuntimeWarning`` that says so. Only the task functions of
  a call, with the ``hybrid`` and ``cloudpickle`` picklers, of modules the import
  system's own loader compiled from their file (:func:`checkable`: not pytest's
  rewritten test modules, whose code no compile of the file gives).
"""

from __future__ import annotations
import __future__

import importlib
import os
import site
import sys
import tokenize
import types
import warnings
from collections.abc import Iterator
from importlib.machinery import SourceFileLoader
from typing import Any

from .. import signalhold
from .cache import objects

try:  # hashlib's own blake2b, without hashlib, whose import loads OpenSSL
    from _blake2 import blake2b
except ImportError:  # an interpreter without CPython's module
    from hashlib import blake2b

WRAPPED_DEPTH = 8  # __wrapped__ links followed from a task function
# the flags `from __future__ import ...` sets on code: its file's, not the function's own
# doing (a function compiled alone, as %autoreload does, has none)
_FUTURE_FLAGS = 0
for _name in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _name).compiler_flag


class ByName:
    """A function of an importable module, pickled by name with its code's digests."""

    __slots__ = ("func", "digests")

    def __init__(self, func: types.FunctionType) -> None:
        self.func = func
        self.digests = digests(func)

    def __reduce__(self) -> tuple[Any, ...]:
        # with the level the parent compiles at (python -O): a worker's differs (as joblib's)
        return resolve, (self.func, self.digests, sys.flags.optimize)


def checkable(func: Any) -> bool:
    """Whether *func*'s module was compiled from its source file as it reads (the import
    system's own loader): a loader that rewrites the code (pytest's assertion rewriting, a
    type checker's import hook) makes code that no plain compile of the file gives."""
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    return type(getattr(getattr(module, "__spec__", None), "loader", None)) is SourceFileLoader


def digests(func: Any) -> tuple[str, ...]:
    """The digests of *func*'s code and of each function it wraps (``__wrapped__``)."""
    return tuple(code_digest(code) for code in codes(func))


def codes(func: Any) -> tuple[types.CodeType, ...]:
    """*func*'s code object and that of each function it wraps (``__wrapped__``): what its
    digests are of. IPython's ``%autoreload`` sets a function's ``__code__`` in place."""
    out = []
    for _ in range(WRAPPED_DEPTH):
        code = getattr(func, "__code__", None)
        if isinstance(code, types.CodeType):
            out.append(code)
        func = getattr(func, "__wrapped__", None)
        if func is None:
            break
    return tuple(out)


def reload_here(module: types.ModuleType) -> None:
    """``importlib.reload(module)``, and forget what this worker rebuilt before it.

    The functions kept from earlier batches (``workers.runner``) and the shared values
    (``workers.snapshots``) were rebuilt from the same bytes the parent sends again: they
    hold the old module's functions and classes (a partial of ``mod.f``, an instance of
    ``mod.C``, a ``__main__`` function's global ``f`` of ``from mod import f``), which
    would run the old code. Rebuilt at their next batch, they find the new ones."""
    try:
        importlib.reload(module)
    finally:  # a reload that failed half-way may have replaced some of them
        objects.clear()


def code_digest(code: types.CodeType) -> str:
    """A digest of what *code* does, the same in every process that compiled the same source.

    Not of where it stands: its first line, its class, its file's ``__future__``
    imports. IPython's ``%autoreload`` (deduperreload, IPython 9) compiles an edited
    function alone, from its source unparsed (line 1; a method in a class of its own),
    and sets the old function's ``__code__`` to it: the file compiled in a worker gives
    the same digest."""
    h = blake2b(digest_size=12)
    for part in _parts(code):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()


def _parts(obj: Any) -> Iterator[bytes]:
    if isinstance(obj, types.CodeType):
        yield b"code"
        yield obj.co_code
        yield repr(
            (
                obj.co_name,
                obj.co_names,
                obj.co_varnames,
                obj.co_freevars,
                obj.co_cellvars,
                obj.co_argcount,
                obj.co_posonlyargcount,
                obj.co_kwonlyargcount,
                obj.co_flags & ~_FUTURE_FLAGS,
            )
        ).encode()
        for const in obj.co_consts:
            yield from _parts(const)
    elif type(obj) is tuple:
        yield b"("
        for item in obj:
            yield from _parts(item)
        yield b")"
    elif type(obj) is frozenset:  # its order is the hash seed's: each process has its own
        yield b"{" + b"|".join(sorted(b"".join(_parts(item)) for item in obj)) + b"}"
    else:
        yield f"{type(obj).__name__}:{obj!r}".encode()


def resolve(func: Any, sent: tuple[str, ...], optimize: int | None = None) -> Any:
    """*func* (found by name here) when its code is the parent's (*sent* digests, compiled
    at the parent's *optimize* level), else the module reloaded when its file holds the
    parent's code (module docstring)."""
    if digests(func) == sent:
        return func
    found = _reloaded(func, sent, sys.flags.optimize if optimize is None else optimize)
    return func if found is None else found


_warned: set[tuple[str, tuple[str, ...]]] = set()


def _reloaded(func: Any, sent: tuple[str, ...], optimize: int) -> Any:
    """The function reloaded from its module's file, or None (warned once) when that cannot
    give the parent's code."""
    name, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    module = sys.modules.get(name) if isinstance(name, str) else None
    found, why = _reload(func, module, qualname, sent, optimize)
    if found is None and (f"{name}.{qualname}", sent) not in _warned:
        _warned.add((f"{name}.{qualname}", sent))
        path = getattr(getattr(module, "__spec__", None), "origin", None)
        if isinstance(path, str) and library(path):
            todo = "Run the same version of it in the parent and the workers (restart them)."
        else:
            todo = (
                "Reload the module in the parent (importlib.reload) once its file is as it "
                "should be, then call again."
            )
        warnings.warn(
            f"picklepool: the task function {name}.{qualname} in this worker (pid {os.getpid()}) "
            "is not the code the parent runs (its module was reloaded in the parent, or its "
            f"file changed since the parent imported it), and {why}: the tasks run this "
            f"worker's copy. {todo}",
            RuntimeWarning,
            stacklevel=2,
        )
    return found


def _reload(func: Any, module: Any, qualname: Any, sent: tuple[str, ...], optimize: int) -> tuple[Any, str]:
    """(the function of *module* reloaded, "") when its file holds the parent's code, else
    (None, why not). A parent run with ``python -O`` compiles the same source to other
    code than its workers (they run without it, as joblib's): *func* is the parent's
    code when it is the file's compiled here."""
    path = getattr(getattr(module, "__spec__", None), "origin", None)
    if module is None or not isinstance(qualname, str) or not str(path).endswith(".py"):
        return None, "its module has no source file to reload it from"
    try:
        on_disk = _file_digests(str(path), optimize)
        here = on_disk if optimize == sys.flags.optimize else _file_digests(str(path), sys.flags.optimize)
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"{path} could not be compiled ({type(exc).__name__}: {exc})"
    mine = set(digests(func))
    if not all(d in on_disk or d in mine for d in sent):
        held = "this worker's copy" if mine <= on_disk else "other code"
        return None, f"{path} does not hold the parent's code: it holds {held}"
    if library(str(path)):  # a library reloaded in part, under the others' feet: never
        return None, f"{path} is an installed library's, which picklepool does not reload"
    if here is not on_disk and mine <= here:  # the file's code, as this worker compiles it
        return func, ""
    try:
        reload_here(module)
    except Exception as exc:  # noqa: BLE001 - said in the warning
        return None, f"reloading it here failed ({type(exc).__name__}: {exc})"
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not None and (digests(found) == sent or here is not on_disk and set(digests(found)) <= here):
        return found, ""
    return None, f"{path} reloaded here does not define it as the parent has it"


def users(module: Any) -> bool:
    """Whether *module* is one of the user's: from a ``.py`` file outside the interpreter's
    own folders (standard library, site-packages) and picklepool's (:func:`library`).
    False for any object in ``sys.modules`` whose attributes raise when read (a lazy
    module's ``__getattr__`` raising ImportError): looking must never fail a call."""
    try:
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
    except Exception as exc:  # noqa: BLE001 - whatever the object's own __getattr__ raises
        if signalhold.from_handler(exc):  # (an alarm's deadline, in the parent)
            raise
        return False
    origin = origin or file_of(module)
    return isinstance(origin, str) and origin.endswith(".py") and not library(origin)


def file_of(module: Any) -> Any:
    """*module*'s ``__file__``, or None: also when asking raises (a lazy module's
    ``__getattr__`` raising ImportError, any object put in ``sys.modules``), which would
    fail the call where the loop, which never looks, goes on."""
    try:
        return getattr(module, "__file__", None)
    except Exception:  # noqa: BLE001 - whatever the object's own __getattr__ raises
        return None


def library(path: str) -> bool:
    """Whether the file *path* is an installed library's: in the interpreter's own folders
    (standard library, site-packages) or picklepool's. Never reloaded."""
    return path.startswith(_roots or _find_roots())


_roots: tuple[str, ...] | None = None


def _find_roots() -> tuple[str, ...]:
    global _roots
    # the standard library's folder, and site-packages': not sysconfig.get_paths(), whose
    # first use imports a module (_sysconfigdata) during a first call, after the imports a
    # fork waits for (lokycompat.load)
    roots = {os.path.dirname(os.path.abspath(os.__file__))}
    try:
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # picklepool's
    _roots = tuple(os.path.join(r, "") for r in roots if r)
    return _roots


def _file_digests(path: str, optimize: int) -> set[str]:
    """The digests of every code object compiled (at the *optimize* level) from the source
    file *path* as it is now."""
    with tokenize.open(path) as f:  # its declared encoding, as the import system reads it
        source = f.read()
    top = compile(source, path, "exec", dont_inherit=True, optimize=optimize)
    out: set[str] = set()
    todo = [top]
    while todo:
        code = todo.pop()
        out.add(code_digest(code))
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return out


_generations: dict[str, int] = {}  # module name -> the parent's reloads of it this worker has
_last: tuple[tuple[str, int], ...] = ()


def apply(sent: tuple[tuple[str, int], ...]) -> None:
    """Reload the modules the parent reloaded since this worker imported them.

    *sent*: ``(module name, reloads seen in the parent)`` (``executor.reloaded``). A
    module not imported here yet is noted only: importing it later reads its file as it
    is then. A reload that fails warns, and the worker keeps its copy.
    """
    global _last
    if sent == _last:
        return
    for name, n in sent:
        if _generations.get(name, 0) >= n:
            continue
        _generations[name] = n
        module = sys.modules.get(name)
        if module is None:
            continue
        try:
            reload_here(module)
        except Exception as exc:  # noqa: BLE001 - said, and the worker goes on with its copy
            warnings.warn(
                f"picklepool: module {name} was reloaded in the parent; reloading it in this "
                f"worker (pid {os.getpid()}) failed ({type(exc).__name__}: {exc}): its tasks "
                "run the worker's copy. Fix the module, reload it in the parent, and call again.",
                RuntimeWarning,
                stacklevel=2,
            )
    _last = sent
