"""numpy arrays between processes: memory-mapped files by reference, large arrays as ``np.memmap``.

While a call pickles its tasks (``pickler.buffers.CallBuffers``) or a worker its
results (``workers.buffers.dump_reply``), a *sharing scope* is active, and every
pickler built on ``pickle.Pickler`` (pickle, cloudpickle, hybrid, the classes
users register) reduces numpy arrays with :func:`reduce_array`, through its
``dispatch_table`` (:func:`pickler_class`, :func:`dispatch_table`)::

    np.memmap, or any view of one     ──▶ a reference to its file: the worker opens the
      (any size, as joblib does)          same file with the same mode, offset, shape,
                                          strides, dtype and order, so "r+"/"w+" writes
                                          reach it; "r" stays read-only and "c" writes stay
                                          private (numpy's own semantics for those modes)
    ndarray >= max_nbytes              ──▶ PickleBuffer ──buffer_callback──▶ a file of the
      (tasks only; a strided view as a    call; the worker maps it with the call's
      C-contiguous copy, made once per    ``mmap_mode`` and rebuilds an ``np.memmap`` of it
      view and call, as joblib does)      (``.filename``, ``.mode``), see :func:`open_shared`
    anything else                      ──▶ numpy's own reduction (a copy)

Outside a scope (``pickle.dumps``, checkpoints, in-process backends) nothing
changes: a memmap is pickled as numpy pickles it, by value.

The arrays picklepool itself mapped in a worker (its call's argument files) never
travel by reference: they go back (or into a nested call) as copies, since their
files only live as long as the call. Without a shared file system (dask), "r" and
"c" memmaps go by value (the same semantics: no write of a worker is seen), "r+" and
"w+" ones by reference; a worker that cannot open the file says so and how to
send a copy instead. Picklers with their own ``dumps`` (a ``BasePickler`` subclass
that does not use ``pickler_class``) get no scope: numpy's own reduction applies.
"""

from __future__ import annotations

import contextlib
import contextvars
import copyreg
import mmap
import os
import pickle
import socket
import sys
import threading
import weakref
from collections import ChainMap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import PicklingError

PROTOCOL = 5
_ACCESS = {"r": mmap.ACCESS_READ, "c": mmap.ACCESS_COPY, "r+": mmap.ACCESS_WRITE, "w+": mmap.ACCESS_WRITE}


@dataclass(frozen=True)
class Scope:
    """How arrays travel in the current dump.

    mode: the ``mmap_mode`` workers map large arguments with; None for replies
      (large results go back as plain arrays). max_nbytes: what counts as large
      (0: nothing). files_shared: the receiving process sees this machine's files.
      copies: the call's contiguous copies of large strided views (``contiguous_copy``),
      by the memory and layout they view; None: such views are copied in band, as numpy
      pickles them. reply: the dump is a worker's reply (its results), not a batch.
    """

    mode: str | None
    max_nbytes: int
    files_shared: bool = True
    copies: dict[Any, Any] | None = field(default=None, compare=False)
    reply: bool = False


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("picklepool_arrays", default=None)


@contextlib.contextmanager
def sharing(scope: Scope) -> Iterator[None]:
    """Reduce numpy arrays as *scope* says while the block pickles."""
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)


# -- worker side: the files of a call, mapped -----------------------------------------------


class SharedFile(mmap.mmap):
    """A mapping of one of picklepool's argument files, knowing its path and mode."""

    path: str
    mode: str


def open_shared(path: str, nbytes: int, mode: str) -> SharedFile:
    """Map *nbytes* of *path* as ``mmap_mode`` *mode* says ("c": copy-on-write)."""
    access = _ACCESS[mode]
    fd = os.open(path, os.O_RDWR if access == mmap.ACCESS_WRITE else os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size < nbytes:
            raise OSError(f"shared-memory file {path} holds {size} bytes, {nbytes} expected")
        mapped = SharedFile(fd, nbytes, access=access)
    finally:
        os.close(fd)
    mapped.path, mapped.mode = path, "r+" if mode == "w+" else mode
    return mapped


class _ByMode(threading.local):
    """The bytes objects a cluster's batch got its large arguments in, read-only because of
    ``mmap_mode="r"`` only (ids; this thread's batch, from its load to its reply), and the
    arrays made of them that were read-only in the parent (ids of those ``rebuild_shared``
    made: one blob may carry a writable array and a read-only view of the same memory)."""

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.user_read_only: set[int] = set()


_by_mode = _ByMode()


def read_only_by_mode(blob: Any) -> None:
    """*blob* (a cluster's argument bytes) is read-only in the tasks because of
    ``mmap_mode="r"`` alone: a result viewing it goes back writable (``reduce_array``)."""
    _by_mode.ids.add(id(blob))


def reply_sent() -> None:
    """The batch's reply is made: forget its :func:`read_only_by_mode` blobs."""
    _by_mode.ids.clear()
    _by_mode.user_read_only.clear()


def _numpy() -> Any:
    import numpy

    return numpy


def rebuild_shared(buf: Any, dtype: Any, shape: tuple[int, ...], order: str, read_only: bool = False) -> Any:
    """An argument array from its buffer: an ``np.memmap`` when the buffer is a mapped file.

    *read_only*: the parent's array was, so this one is too, whatever ``mmap_mode``
    (a write raises in the task as it would in the parent).
    """
    np = _numpy()
    src = buf.obj if isinstance(buf, memoryview) else buf
    if not isinstance(src, SharedFile):  # pickled in band, or mapped by an older worker
        arr = np.frombuffer(buf, dtype).reshape(shape, order=order)
    else:
        # What np.memmap.__new__ does once it has its mmap, without opening the file again.
        arr = np.ndarray.__new__(np.memmap, shape, dtype=dtype, buffer=src, offset=0, order=order)
        arr._mmap, arr.filename, arr.offset, arr.mode = src, src.path, 0, src.mode
    if read_only:
        # (not only mmap_mode="r"'s doing: see reduce_array). Marked on this array, not on
        # its file or blob: a writable argument and a read-only view of the same memory
        # travel in one, and the writable one's results came back read-only too
        arr.flags.writeable = False
        if isinstance(src, SharedFile):
            arr._picklepool_read_only = True
        else:
            _by_mode.user_read_only.add(id(_root(arr, np)))
    return arr


def _root(a: Any, np: Any) -> Any:
    """The array at the bottom of *a*'s chain of views (whose base is not an array)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def rebuild_read_only(func: Any, args: tuple[Any, ...], state: Any = None) -> Any:
    """A read-only array rebuilt by numpy's own reduction (*func*, *args*, *state*), read-only.

    numpy's pickling keeps the flag only for contiguous arrays (their buffer); a
    strided one would arrive writable, so a task could write where the parent's
    array forbids it.
    """
    arr = func(*args)
    if state is not None:
        arr.__setstate__(state)
    arr.flags.writeable = False
    return arr


def open_memmap(
    filename: str,
    dtype: Any,
    mode: str,
    offset: int,
    shape: tuple[int, ...],
    strides: tuple[int, ...] | None,
    order: str,
    span: int,
    start: int,
) -> Any:
    """The array a memmap-backed argument was in the parent: the same file, mode and layout.

    Contiguous views are an ``np.memmap`` of exactly their bytes; strided ones map the
    *span* bytes they reach (from *offset*) and take a strided view, *start* bytes in.
    """
    np = _numpy()
    mode = "r+" if mode == "w+" else mode  # "w+" would create the file anew: zeros
    try:
        if strides is None:
            return np.memmap(filename, dtype=dtype, mode=mode, offset=offset, shape=shape, order=order)
        base = np.memmap(filename, dtype=np.uint8, mode=mode, offset=offset, shape=(span,))
        view = np.ndarray.__new__(np.memmap, shape, dtype=dtype, buffer=base, offset=start, strides=strides)
        view._mmap, view.filename, view.offset, view.mode = base._mmap, base.filename, base.offset, mode
        return view
    except OSError as exc:
        raise type(exc)(
            exc.errno,
            f"a np.memmap argument (mode {mode!r}) travels as a reference to its file, and this "
            f"process (pid {os.getpid()} on {socket.gethostname()}) cannot open it: {exc}. "
            "Run the workers where the file is reachable, or pass np.array(x) to send a copy",
            filename,
        ) from exc


# -- parent side (and replies): the reducer -------------------------------------------------


def _backing_memmap(a: Any, np: Any) -> Any:
    """The ``np.memmap`` that owns *a*'s memory (the array whose base is the mmap), or None."""
    while True:
        base = a.base
        if base is None:
            return None
        if isinstance(base, mmap.mmap):
            return a if isinstance(a, np.memmap) or isinstance(base, SharedFile) else None
        if not isinstance(base, np.ndarray):
            return None
        a = base


def _byte_bounds(np: Any) -> Any:
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # numpy < 2
        byte_bounds = np.byte_bounds
    return byte_bounds


def _reduce_by_file(a: Any, m: Any, np: Any) -> Any:
    lo, hi = _byte_bounds(np)(a)
    m_lo = _byte_bounds(np)(m)[0]
    offset = m.offset + (lo - m_lo)
    data = a.__array_interface__["data"][0]
    contiguous = a.flags.c_contiguous or a.flags.f_contiguous
    order = "C" if a.flags.c_contiguous or not contiguous else "F"
    strides = None if contiguous else a.strides
    return open_memmap, (m.filename, a.dtype, m.mode, offset, a.shape, strides, order, hi - lo, data - lo)


def reduce_array(a: Any) -> Any:
    """Reduce an ``np.ndarray`` or ``np.memmap`` as the sharing scope says (module docstring)."""
    scope = _scope.get()
    if scope is None:
        return a.__reduce_ex__(PROTOCOL)
    np = sys.modules["numpy"]
    m = _backing_memmap(a, np) if a.base is not None else None
    by_mode = False  # read-only only because the call mapped its file so (mmap_mode="r")
    if m is not None:
        if isinstance(m.base, SharedFile):  # a file of picklepool's own call: a copy
            a = a.view(np.ndarray)
            by_mode = scope.reply and m.base.mode == "r" and not getattr(m, "_picklepool_read_only", False)
        elif a.size and _may_refer(m, scope):
            return _reduce_by_file(a, m, np)
    elif scope.reply and _by_mode.ids and a.base is not None:  # a cluster's argument bytes?
        root = _root(a, np)
        by_mode = id(root.base) in _by_mode.ids and id(root) not in _by_mode.user_read_only
    if type(a) is not np.ndarray:  # an np.memmap that no file backs any more (a copy)
        a = a.view(np.ndarray)
    large = (
        scope.mode is not None and scope.max_nbytes and a.nbytes >= scope.max_nbytes and not a.dtype.hasobject
    )
    if large:
        shared = a
        if not (a.flags.c_contiguous or a.flags.f_contiguous):
            if scope.copies is None:
                return a.__reduce_ex__(PROTOCOL)
            shared = contiguous_copy(a, scope.copies, np)
        try:
            buf = pickle.PickleBuffer(shared)
        except (BufferError, ValueError, TypeError):
            # datetime64/timedelta64 (also as fields of a structured dtype) export no buffer:
            # their bytes do, seen as opaque items of the same size (rebuilt with a.dtype)
            try:
                buf = pickle.PickleBuffer(shared.view(np.dtype((np.void, a.dtype.itemsize))))
            except (BufferError, ValueError, TypeError):
                return a.__reduce_ex__(PROTOCOL)
        order = "C" if shared.flags.c_contiguous else "F"
        if not a.flags.writeable:
            return rebuild_shared, (buf, a.dtype, a.shape, order, True)
        return rebuild_shared, (buf, a.dtype, a.shape, order)
    if by_mode:
        # A result viewing an argument that the call mapped read-only (x[::2], x[:10], x
        # itself) goes back writable, as in the loop in the parent, joblib and n_jobs=1: the
        # parent's array was writable, and the parent gets a copy anyway
        a = a.copy(order="K")
    rv = a.__reduce_ex__(PROTOCOL)
    if not a.flags.writeable and type(rv) is tuple and 2 <= len(rv) <= 3:
        return rebuild_read_only, (rv[0], rv[1], rv[2] if len(rv) == 3 else None)
    return rv


class _Copy:
    """The contiguous copy of a strided view, and the live views it stands for."""

    __slots__ = ("owner", "copy", "views")

    def __init__(self, owner: Any, copy: Any) -> None:
        self.owner, self.copy = owner, copy  # *owner*: held anyway by each of the views
        self.views: dict[int, Any] = {}  # id of a view -> a weak reference to it


def contiguous_copy(a: Any, copies: dict[Any, Any], np: Any) -> Any:
    """A C-contiguous copy of the strided view *a*, made once while such a view lives (*copies*).

    A strided view (``X[:, :k]``, ``X[::2]``) exports no buffer: numpy pickles a copy
    in band, into every batch. joblib writes such an array to one file, and a task
    gets a contiguous ``np.memmap`` of it: so here, through one copy per view, found
    again for every batch that sends the same view (the file's dedupe is by the
    copy), and dropped with the view (the file is then unlinked as for any array).
    "The same view" is the same memory seen the same way (the memory's owner, address,
    shape, strides, dtype), not the same view object: ``delayed(f)(X[::2]) for ...``
    makes a new one per task, which would otherwise be copied and written once each.
    The copy lives while any of those views does.
    """
    owner = a
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if owner.base is not None:  # an array over another object's memory (bytes, mmap, ...)
        owner = owner.base
    key = (id(owner), a.__array_interface__["data"][0], a.shape, a.strides, a.dtype)
    found = copies.get(key)
    if found is None or found.owner is not owner:
        found = copies[key] = _Copy(owner, np.ascontiguousarray(a))
    view = id(a)
    if view not in found.views:

        def gone(_ref: Any) -> None:
            found.views.pop(view, None)
            if not found.views and copies.get(key) is found:
                copies.pop(key, None)

        found.views[view] = weakref.ref(a, gone)
    return found.copy


def _may_refer(m: Any, scope: Scope) -> bool:
    """Whether memmap *m* can go by reference; raise when it must and cannot."""
    writes_shared = m.mode in ("r+", "w+")
    if not scope.files_shared and not writes_shared:
        return False  # "r"/"c": a copy has the same semantics
    if m.filename is not None and os.path.exists(m.filename):
        return True
    if not writes_shared:
        return False
    if scope.reply:  # the task made or opened the memmap, and its file went before it returned
        raise PicklingError(
            f"a np.memmap with mode {m.mode!r} returned by a task goes back as a reference to its "
            f"file, so that the parent's writes reach it, but its file {m.filename!r} no longer "
            "exists (removed before the task returned: a `with tempfile.TemporaryDirectory()` "
            "around the return?). Keep the file until the task has returned, or return "
            "np.array(x) to send a copy"
        )
    raise PicklingError(
        f"a np.memmap with mode {m.mode!r} travels to workers as a reference to its file, so that "
        f"their writes reach it, but its file {m.filename!r} no longer exists. Keep the file until "
        "the call ends, or pass np.array(x) to send a copy (the workers' writes are then lost)"
    )


# -- how the picklers use the reducer -------------------------------------------------------

_TABLE: dict[type, Any] = {}  # np.ndarray and np.memmap -> reduce_array, once numpy is imported
_EXTENDED: dict[type, type] = {}  # a Pickler class -> its subclass with the array reducers


def _table() -> dict[type, Any] | None:
    """The array reducers when a scope is active and numpy is loaded, else None."""
    if _scope.get() is None:
        return None
    if not _TABLE:
        np = sys.modules.get("numpy")
        if np is None:
            return None
        _TABLE.update({np.ndarray: reduce_array, np.memmap: reduce_array})
    return _TABLE


def active() -> bool:
    """Whether picklers should reduce numpy arrays with :func:`reduce_array` now."""
    return _table() is not None


def dispatch_table() -> dict[type, Any] | None:
    """For a plain ``pickle.Pickler``: copyreg's table plus the array reducers, or None.

    A plain dict, made per dump, so that the C pickler's lookups stay in C.
    """
    table = _table()
    if table is None:
        return None
    return {**copyreg.dispatch_table, **table}


def pickler_class(cls: type[pickle.Pickler]) -> type[pickle.Pickler]:
    """*cls*, or, while a scope is active, its subclass whose dispatch table adds the array
    reducers (a reducer of the class's own table for the same type wins)."""
    table = _table()
    if table is None:
        return cls
    sub = _EXTENDED.get(cls)
    if sub is None:
        own: Any = getattr(cls, "dispatch_table", None)
        if not hasattr(own, "__getitem__"):  # the C Pickler's member: copyreg's table
            own = copyreg.dispatch_table
        sub = type(
            cls.__name__, (cls,), {"dispatch_table": ChainMap(own, table), "__module__": cls.__module__}
        )
        _EXTENDED[cls] = sub
    return sub
