"""What a reducer may know about the call it is pickling for.

While the parent serialises a call's tasks, ``current()`` returns the call's
context: its pickler and its *blob store*, where a reducer can put data once per
call (a ``SharedState`` snapshot, a large buffer) and send only a reference in
each task. Outside a call (plain ``pickle.dumps``, or inside a worker) it is
None and reducers fall back to sending everything inline.

    ref = ctx.put_blob(key, data)      parent, while pickling: once per call
    -> tasks carry ref (small)
    workers.blobs.read_blob(ref)       worker, while unpickling: the bytes

    ref, n = ctx.keep_blob(key, family, owner, make)
                                       the same, for data that may outlive the
                                       call (a ``SharedState`` version): dask keeps
                                       it on the cluster while *owner* lives and no
                                       newer *key* of its *family* was kept

The store depends on the backend: loky writes a file in the session folder in
/dev/shm (the reference is its path); dask scatters the bytes to the cluster once
(the reference is a ``workers.blobs.BlobRef``, and each batch carries the call's
scattered futures, which dask resolves on the worker). In-process backends have
no store: ``put_blob`` returns None and the value is pickled inline.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

Make = Callable[[], "list[Any] | None"]  # a frame's pieces, made when needed (None: cannot be)


class BlobStore(Protocol):
    """Where a backend keeps the data a call sends once."""

    def put(self, key: str, data: bytes | list[Any]) -> Any:
        """Store *data* (bytes, or bytes-like pieces to be concatenated) under *key*.

        Once: later puts of the key are free. Returns its reference.
        """

    def keep(self, key: str, family: str, owner: Any, make: Make) -> tuple[Any, int]:
        """Store what *make()* returns (frame pieces) under *key*, possibly beyond this call.

        A store that keeps data across calls makes it only if it does not hold
        *key* already, keeps it while *owner* lives, and drops it once a newer
        key of the same *family* is kept and no call uses the old one. Returns
        the reference and the data's size in bytes.
        """

    def drop(self, key: str) -> None:
        """Forget *key*: the call is over."""

    def attachment(self) -> Any:
        """What every batch carries so that workers can read references (None for files)."""


_calls = itertools.count()  # a session folder is one process's: a count names its calls


class SessionStore:
    """Blobs as files in the parent's session folder; the reference is the path."""

    def __init__(self, session: Any, owner: Any) -> None:
        self.session = session
        self.owner = owner  # the call: calls sending the same content share one file
        self.token = f"c{next(_calls)}"  # kept blobs are written once per call here (its session's)
        self._names: dict[str, str] = {}

    def put(self, key: str, data: bytes | list[Any]) -> str:
        return self.session.write_blob(key, data, self.owner)  # type: ignore[no-any-return]

    def keep(self, key: str, family: str, owner: Any, make: Make) -> tuple[str, int]:
        """Once per call: a file of the call's own (workers keep what they rebuilt from it)."""
        pieces = make()
        if pieces is None:
            raise LookupError(f"the data of {key!r} cannot be made")
        name = self._names.setdefault(key, f"{key}-{self.token}")
        return self.put(name, pieces), sum(memoryview(p).nbytes for p in pieces)

    def drop(self, key: str) -> None:
        self.session.drop_blob(self._names.pop(key, key), self.owner)

    def attachment(self) -> None:
        return None


@dataclass
class CallContext:
    pickler: Any
    session: Any | None  # workers.control.Session, or None (in-process backends, dask)
    store: BlobStore | None = None  # None: the session's files, if there is a session
    blobs: list[str] = field(default_factory=list)  # keys to drop when the call ends
    memo: dict[Any, Any] = field(default_factory=dict)  # per-call cache for reducers
    # A call that lasts (an Executor's): each batch tells which kept blobs it uses
    # (:meth:`begin_batch`, :meth:`sent`), and one superseded by a newer key of its
    # family is dropped once no batch in flight uses it, not at the call's end.
    per_batch: bool = False
    # (thread, what names them): the tasks of the batch a thread is pickling, for what is
    # said meanwhile (a lock waited for: pickler.locks); None outside a batch
    batch: tuple[int, Callable[[], str]] | None = field(default=None, repr=False)
    _kept: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.store is None and self.session is not None:
            self.store = SessionStore(self.session, id(self))
        self._kept = _KeptUse()

    def begin_batch(self, batch: Callable[[], str] | None = None) -> None:
        """A batch is about to be pickled: the kept blobs it uses are noted from now;
        *batch()* names its tasks (:meth:`batch_name`)."""
        self._kept.touched = set()
        self.batch = (threading.get_ident(), batch) if batch is not None else None

    def batch_name(self) -> str | None:
        """The tasks of the batch this thread is pickling (``task 3: f(x)`` ...), or None."""
        batch = self.batch
        if batch is None or batch[0] != threading.get_ident():
            return None
        return batch[1]()

    def sent(self, fut: Any) -> None:
        """The batch is sent as *fut*: the kept blobs it uses stay until *fut* is done."""
        if not self.per_batch:
            return
        keys, ended = self._kept.drain()  # of the owners gone since (_owner_gone)
        self._drop_all(keys)
        if ended:  # their reducers' memo entries too: (tag, family, ...) (a SharedState's)
            ended_set = set(ended)
            for k in [k for k in self.memo if type(k) is tuple and len(k) >= 2 and k[1] in ended_set]:
                del self.memo[k]
        keys = self._kept.hold()
        if keys:
            fut.add_done_callback(lambda _f: self._drop_all(self._kept.release(keys)))

    def uses_kept(self, key: str) -> None:
        """The batch being pickled uses the kept blob *key* (memoized by its reducer)."""
        self._kept.touched.add(key)

    def _drop_all(self, keys: list[str]) -> None:
        for key in keys:
            self.drop_blob(key)

    def put_blob(self, key: str, data: bytes | list[Any]) -> Any:
        """Send *data* (bytes, or pieces to concatenate) once for this call.

        Returns a reference for ``workers.blobs.read_blob``, or None without a store.
        """
        if self.store is None:
            return None
        ref = self.store.put(key, data)
        if key not in self.blobs:
            self.blobs.append(key)
        return ref

    def keep_blob(self, key: str, family: str, owner: Any, make: Make) -> tuple[Any, int] | None:
        """Send the frame pieces *make()* returns once, for this call and maybe later ones.

        See ``BlobStore.keep``. Returns ``(reference, size in bytes)``, or None
        without a store (*make* is not called then).
        """
        if self.store is None:
            return None
        ref, nbytes = self.store.keep(key, family, owner, make)
        if key not in self.blobs:
            self.blobs.append(key)
        if self.per_batch:
            self._drop_all(self._kept.current(key, family))
            if self._kept.watch(family):  # its owner's end drops its last key too
                with contextlib.suppress(TypeError):  # (not weak-referenceable: kept to the end)
                    weakref.finalize(owner, _owner_gone, weakref.ref(self), family)
        return ref, nbytes

    def drop_blob(self, key: str) -> None:
        """Release one blob before the call ends: no batch will read it again."""
        try:
            self.blobs.remove(key)
        except ValueError:  # the call's end dropped it already
            return
        if self.store is not None:
            self.store.drop(key)

    def attachment(self) -> Any:
        """What each batch carries for the workers to read this call's blobs."""
        return self.store.attachment() if self.store is not None else None

    def close(self) -> None:
        """The call is over: drop its blobs."""
        keys, self.blobs = self.blobs, []
        if self.store is not None:
            for key in keys:
                self.store.drop(key)


def _owner_gone(ref: weakref.ref[CallContext], family: str) -> None:
    """The owner of the kept blobs of *family* (a ``SharedState``) was garbage-collected.

    Only noted: a finalizer may run in any thread at any point, also one holding the locks
    dropping a blob takes (the session's, while it writes one); the next batch sent, or
    one ending, drops them.
    """
    ctx = ref()
    if ctx is not None:
        ctx._kept.gone.append(family)


class _KeptUse:
    """Which kept blobs the batches in flight use, and each family's newest (thread-safe).

    A family whose owner is gone (``gone``: a ``SharedState`` garbage-collected) has no
    newest key any more: its last one is dropped too once no batch uses it (it stayed in
    ``/dev/shm`` until an ``Executor``'s shutdown, one file per state it was given).
    """

    def __init__(self) -> None:
        self.touched: set[str] = set()  # used by the batch being pickled
        self._uses: dict[str, int] = {}  # key -> batches in flight using it
        self._family: dict[str, str] = {}  # key -> its family
        self._newest: dict[str, str] = {}  # family -> its newest key
        self._watched: set[str] = set()  # families whose owner's end is watched
        # families whose owner is gone, not yet taken in: appended by a finalizer, which may
        # run in any thread, also one holding the lock (a collection inside the block)
        self.gone: collections.deque[str] = collections.deque()
        self.ended: list[str] = []  # families taken in from *gone*, for ``drain`` to report
        self._lock = threading.Lock()

    def watch(self, family: str) -> bool:
        """Whether *family*'s owner is to be watched now (the first time only)."""
        with self._lock:
            if family in self._watched:
                return False
            self._watched.add(family)
            return True

    def drain(self) -> tuple[list[str], list[str]]:
        """The keys to drop now that owners are gone, and the families whose owner's end was
        taken in since (none when the lock is busy: its holder takes the gone families in)."""
        if not self._lock.acquire(blocking=False):
            return [], []
        try:
            keys = self._unused()
            ended, self.ended = self.ended, []
            return keys, ended
        finally:
            self._lock.release()

    def current(self, key: str, family: str) -> list[str]:
        """*key* is *family*'s newest now: the older ones no batch uses, to drop."""
        with self._lock:
            self.touched.add(key)
            self._family[key] = family
            self._newest[family] = key
            return self._unused()

    def hold(self) -> set[str]:
        with self._lock:
            keys, self.touched = self.touched, set()
            for key in keys:
                self._uses[key] = self._uses.get(key, 0) + 1
            return keys

    def release(self, keys: set[str]) -> list[str]:
        with self._lock:
            for key in keys:
                left = self._uses.get(key, 0) - 1
                if left > 0:
                    self._uses[key] = left
                else:
                    self._uses.pop(key, None)
            return self._unused()

    def _unused(self) -> list[str]:
        """Superseded keys no batch uses nor is being pickled with (forgotten here; lock held)."""
        while self.gone:
            family = self.gone.popleft()
            self._newest.pop(family, None)
            self._watched.discard(family)
            self.ended.append(family)
        old = [
            k
            for k, f in self._family.items()
            if self._newest.get(f) != k and k not in self._uses and k not in self.touched
        ]
        for key in old:
            del self._family[key]
        return old


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar("picklepool_call", default=None)


def current() -> CallContext | None:
    return _current.get()


@contextlib.contextmanager
def active(ctx: CallContext) -> Iterator[CallContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
