"""``SharedState``: a value guarded by an RLock, sent to workers as one snapshot.

The seed's advice — don't pickle the lock, pickle the state it guards and
rebuild the lock on the other side — as a library feature::

    parent   with state as v: ...          RLock held; the version moves on
    call     the pickler meets the state ──▶ under its lock, once per (state,
             version) for the whole call: frames.pack(value) ──▶ put_blob
             ──▶ every task carries (pickler, id, version, blob reference, size)
    worker   _rebuild_state ──▶ workers.snapshots: map the blob (loky) or take
             the bytes delivered with the batch (dask), unpickle once, cache
             under (id, version) ──▶ a SharedState with a fresh RLock
    task     first touch of the value ──▶ WorkerCopy.enter_task: an earlier task
             changed it? (workers.changes) ──▶ rebuilt in place from the kept frame
    disk     state.save(path) ──▶ pickler.checkpoint (atomic, signed) ──▶ load

With the threading and sequential backends nothing is pickled: tasks receive
the very same object. Outside a call (``pickle.dumps(state)``, ``copy.deepcopy``)
the snapshot travels inline in the pickle and every load makes a new state.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import uuid
import weakref
from typing import Any, Generic, TypeVar

from . import settings
from .errors import PicklingError
from .pickler import checkpoint, context, frames, locks
from .pickler.registry import get_pickler
from .workers import snapshots
from .workers.cache import DEFAULT_MAX_BYTES

T = TypeVar("T")

log = logging.getLogger("picklepool")

_MEMO = "picklepool.SharedState"
_LOCK_POLL = 0.05  # seconds between looks at the version while remaking a snapshot (``_maker``)


def _worker_cache_bytes() -> int:
    """The worker cache bound: ``PICKLEPOOL_WORKER_CACHE_BYTES``, else 1 GiB."""
    value, source = settings.resolve("worker_cache_bytes", None, DEFAULT_MAX_BYTES)
    bound = settings.parse_bytes(value, "worker_cache_bytes", source)
    return DEFAULT_MAX_BYTES if bound is None else bound


class SharedState(Generic[T]):
    """A value guarded by an ``RLock``, sent to workers as a consistent snapshot.

    >>> state = SharedState({"a": 0, "b": 0})
    >>> with state as v:            # holds the lock; counts as a change
    ...     v["a"] = v["b"] = 1
    >>> state.version
    1

    Pass the state itself to tasks (``delayed(f)(state, i)``), anywhere in their
    arguments. A call to worker processes serialises it once per version for the
    whole call, while holding its lock, so no task ever sees a half-applied
    change even while other threads keep changing it; each task carries only a
    small reference. Each worker rebuilds it once per version, with a fresh lock,
    and keeps it in a cache bounded in bytes (``PICKLEPOOL_WORKER_CACHE_BYTES``,
    default 1 GiB per worker; least recently used goes first, and a newer version
    replaces the older one at once).

    In a worker every task starts from the parent's version. A task may read it,
    under the lock or not (in a worker ``with state as v`` is not a change), and
    may change its copy — under ``with``, through ``state.value``, in place in
    an array or a nested container, or with ``set`` — and then sees its own
    change until it returns; no other task ever sees it, not even the next task
    of the same batch, and it never reaches the parent or other workers. Return
    results from tasks instead. The first time a task reaches the value
    (``with``, ``value``, ``version``, ``set``) the worker checks, exactly and
    without copying anything, whether an earlier task changed it
    (``workers.changes``: the identities of the items of every list, dict and
    set; the shape, dtype and data of every numpy array — written pages of the
    snapshot's copy-on-write map, which the kernel reports), and rebuilds a
    changed copy in place from the snapshot the worker already holds
    (``workers.snapshots.WorkerCopy``); nothing is sent again. So a task that
    only reads pays that check — about 0.03 ms for a 48 MB array with a list of
    500,000 ints where the kernel tracks writes to large lists and scans page
    tables for us (Linux 6.7+, ``workers.writewatch``), else time in proportion
    to the items of the value's lists (~0.4 ms for that value); dicts and sets
    always in proportion to their items — a task that does not touch the state
    pays nothing, and the task after a change pays one rebuild. The check also
    inspects tuples and namedtuples, deques, bytearrays, ``array.array``, dict
    subclasses (``defaultdict``, ``OrderedDict``, ``Counter``) and instances of
    slot-free classes of Python code (through their ``__dict__``; the README
    lists them all). A value holding anything it cannot inspect (an instance with
    ``__slots__`` or of a C type, torch tensors, a large array where the platform
    has no page map) is never trusted as unchanged: after any access by a task
    the next task that reaches it gets a rebuilt copy — correct, at the cost of
    one rebuild per task that touches it. A reference to the value that a task
    keeps past its end (in a global) is not covered.
    With the ``threading`` and ``sequential`` backends (and ``n_jobs=1``) tasks
    receive this very object: there a change under ``with`` (or ``set``) is a
    change of the parent's state, seen by later tasks and by the parent, and
    moves the version on; change it only inside ``with state``.

    A snapshot taken while the same thread is inside ``with state`` (a call made
    inside the block) moves the version on afterwards, since the block may still
    change the value: such a call serialises the state again for every batch.
    Start calls outside the block.

    ``state.value`` reads the value without the lock: it is a reference to the
    live object, which may be in the middle of a change made by another thread.
    In the parent, change the value only with ``with state as v`` or
    ``state.set(new)``: changes made through ``state.value`` do not move the
    version on, so workers may keep an older copy, while one without a copy (a new
    worker) rebuilds the value as the next call serialises it: the tasks of one call
    may then see either.

    ``state.save(path, key=...)`` / ``SharedState.load(path, key=...)`` write and
    read atomic, optionally signed checkpoints. A save killed midway leaves its
    temporary file; the next save to the same path removes it.
    """

    __slots__ = (
        "_value",
        "_lock",
        "_version",
        "_depth",
        "_uid",
        "_packing",
        "_copy",
        "_watched",
        "_nested",
        "__weakref__",
    )

    def __init__(self, value: T) -> None:
        self._value = value
        self._lock = threading.RLock()
        self._version = 0
        self._depth = 0  # nesting of ``with`` blocks of the thread holding the lock
        self._uid = uuid.uuid4().hex  # names this state in worker caches and blobs
        self._packing = 0  # the ident of the thread writing its snapshot (0: none)
        # A worker's cached copy: how it gives each task the parent's version
        # (``workers.snapshots.WorkerCopy``); None in the parent and for plain loads.
        self._copy: snapshots.WorkerCopy | None = None
        self._watched = False  # whether its end is noted for the workers (:func:`gone`)
        # the states its value held at its last snapshot for a call, with their versions
        self._nested: list[tuple[weakref.ref[SharedState[Any]], int]] = []

    @classmethod
    def _restored(cls, value: T, version: int) -> SharedState[T]:
        state = cls(value)
        state._version = version
        return state

    # -- the value and its lock ------------------------------------------------------

    @property
    def value(self) -> T:
        """The value, read WITHOUT the lock (see the class docstring)."""
        if self._copy is not None:
            self._copy.enter_task(self)
        return self._value

    @value.setter
    def value(self, new: T) -> None:
        raise AttributeError(
            "SharedState.value cannot be assigned (that would skip the lock and the version): "
            "call state.set(new_value), or change the value inside `with state as value:`"
        )

    @property
    def version(self) -> int:
        """How many changes the value has had (``with`` blocks and ``set`` calls)."""
        if self._copy is not None:
            self._copy.enter_task(self)
        return self._version

    def __enter__(self) -> T:
        self._lock.acquire()
        self._depth += 1
        copy = self._copy
        if copy is None:
            self._version += 1
        else:  # a worker's copy: not a change (the next task's first access checks)
            copy.enter_task(self)
        return self._value

    def __exit__(self, *exc_info: object) -> None:
        if not self._lock._is_owned():  # type: ignore[attr-defined]
            # (before the count: a stray exit lowered it, and a later save() read it wrongly)
            raise RuntimeError(
                "SharedState.__exit__ called without a `with state:` block entered in this "
                "thread: use `with state as value:`, not __exit__ (or __enter__) by hand"
            )
        self._depth -= 1
        self._lock.release()

    def set(self, value: T) -> int:
        """Replace the value under the lock; return the new version.

        In a worker this replaces the task's copy only, like a change made under
        ``with``: the parent never sees it, and the worker's next task sees the
        parent's version again.
        """
        with self._lock:
            if self._copy is not None:
                self._copy.enter_task(self)
            self._value = value
            self._version += 1
            return self._version

    def __repr__(self) -> str:
        return f"<SharedState version={self._version} value type={type(self._value).__qualname__}>"

    # -- snapshots ---------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        ctx = context.current()
        # Not taken when the thread that made the call holds it (an Executor's manager
        # thread pickles its calls: a submitter inside ``with state`` waiting for the
        # result would wait for ever); the snapshot is then made under that thread's hold,
        # as Parallel makes it in the calling thread (pickler.locks.snapshots_for).
        # An enclosing object's lock held for its snapshot: waited for SNAPSHOT_TIMEOUT only
        # (a thread holding this one and waiting for that one would wait for ever).
        wait = locks.snapshot_timeout() if locks.holds_for_snapshot() else -1
        taken = locks.acquire_unless_caller(self._lock, wait, what="a SharedState")
        if taken is False:
            raise locks.lock_order_error(
                "a SharedState (its lock)",
                wait,
                "Send the state separately, or send it while no thread holds its lock.",
            )
        if taken:
            locks.note_hold(1)  # the locks its value holds are waited for a bounded time too
        try:
            if self._copy is not None:  # a worker's copy sent on (a nested call): the task's view
                self._copy.enter_task(self)
            me = threading.get_ident()
            if self._packing == me:
                raise PicklingError(
                    "a SharedState cannot contain itself (its value refers back to the "
                    "state); keep the state out of its own value"
                )
            packing, self._packing = self._packing, me
            try:
                args = self._inline(get_pickler()) if ctx is None else self._for_call(ctx)
            finally:
                self._packing = packing
            for held in getattr(_enclosing, "stack", ()):  # in a state's value: noted there
                held.append((weakref.ref(self), self._version))
            if self._depth:
                # Taken inside this thread's own ``with`` block: the value may still
                # change before the block ends, so that content needs a new version.
                self._version += 1
        finally:
            if taken:
                self._lock.release()
                locks.note_hold(-1)
        return (_rebuild_state, args)

    def _moved_on_from(self, version: int) -> bool:
        """Whether the value changed since *version*: its own version moved on, or that of a
        state its value holds (as noted at its last snapshot for a call)."""
        return self._version != version or (bool(self._nested) and _nested_moved(self._nested))

    def _inline(self, pickler: Any) -> tuple[Any, ...]:
        data = b"".join(frames.pack(pickler, self._value))
        return (pickler, None, self._version, data, len(data), None)

    def _for_call(self, ctx: Any) -> tuple[Any, ...]:
        """Once per (state, version) for the call: a blob (kept across calls where the
        backend can: dask), or inline bytes; the reference is memoized for the call."""
        if self._nested and self._copy is None and _nested_moved(self._nested):
            # a state its value holds changed since: so did this value (a worker's copy of
            # this version holds the older one, and its snapshot a reference to its blob)
            self._version += 1
        key = (_MEMO, self._uid, self._version)
        pickler = ctx.pickler
        # the pickler is part of the key: bytes one pickler wrote are never read by another
        name = getattr(pickler, "name", None) or type(pickler).__qualname__
        blob = f"state-{self._uid}-{self._version}-{name}"
        args = ctx.memo.get(key)
        if args is not None:
            if args[3] is not None and not isinstance(args[3], bytes):
                ctx.uses_kept(blob)  # this batch reads it too: kept while it is in flight
            return args  # type: ignore[no-any-return]
        if not self._watched:  # once gone, the workers' copies go too (gone())
            self._watched = True
            weakref.finalize(self, _note_gone, self._uid)
        make = _maker(weakref.ref(self), self._version, pickler)
        kept: tuple[Any, int] | None
        try:  # pieces written one by one (no 50 MB join), or nothing when already kept
            kept = ctx.keep_blob(blob, self._uid, self, make)
        except OSError as exc:
            log.debug("picklepool: SharedState blob not written (%s); sending it inline", exc)
            kept = None
        if kept is None:  # no blob store (in-process backends) or it failed
            source: Any = b"".join(_pack_noting(self, pickler))
            nbytes = len(source)
        else:
            source, nbytes = kept
        args = ctx.memo[key] = (pickler, self._uid, self._version, source, nbytes, _worker_cache_bytes())
        if ctx.per_batch:  # a lasting call (an Executor): the older version's entry goes
            older = ctx.memo.pop((_MEMO, self._uid), None)
            if older is not None and older != self._version:
                ctx.memo.pop((_MEMO, self._uid, older), None)
            ctx.memo[(_MEMO, self._uid)] = self._version
        return args

    # -- checkpoints -------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, key: str | bytes | None = None) -> int:
        """Write the value to *path* atomically; return the version written.

        The snapshot is taken under the lock; the file is written to a temporary
        file in the same folder, fsynced and moved over *path*, so a crash leaves
        the old file or the new one, never a torn one, and a failed save leaves
        no temporary file. With a key (``key=`` or ``PICKLEPOOL_STATE_KEY``) the
        file is signed with HMAC-SHA256 and ``load`` verifies it before unpickling.
        """
        signing_key = checkpoint.resolve_key(key, signing=True)
        pickler = get_pickler()
        with checkpoint.atomic_file(path) as f:
            with self._lock:
                if self._copy is not None:
                    self._copy.enter_task(self)
                try:
                    pieces = frames.pack(pickler, self._value)
                except Exception as exc:
                    from .pickler.diagnose import explain

                    raise PicklingError(
                        f"SharedState.save({os.fspath(path)!r}): "
                        + explain(pickler, self._value, exc, root="state.value")
                    ) from exc
                version = self._version
                checkpoint.write_frame(f, pieces, version, signing_key)
                del pieces
                if self._depth:
                    self._version += 1
        return version

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, key: str | bytes | None = None) -> SharedState[Any]:
        """Read a checkpoint written by :meth:`save`; a new state with a fresh lock.

        Raises ``StateFileError`` (a ``ValueError``) for a foreign, newer, truncated
        or damaged file and ``StateSignatureError`` for a missing, unexpected or
        wrong signature — in every case before anything in the file is unpickled.
        Only load unsigned files you trust: unpickling can run code.
        """
        frame, version = checkpoint.read_frame(path, checkpoint.resolve_key(key))
        return cls._restored(frames.unpack(get_pickler(), frame), version)


# The states sent to workers that were garbage-collected since: (this process, how many, the
# uids of the last _GONE_KEPT). Each batch carries it (wire.Batch.states_gone), and the worker
# drops its copies of them (workers.snapshots.forget), which held their snapshot's file
# (memory in /dev/shm, or a dask worker's) and rebuilt value until the cache's bound (1 GiB)
# pushed them out. The process is named since a cluster's workers serve other ones too.
_GONE_KEPT = 64
_SENDER = uuid.uuid4().hex
_gone: tuple[str, int, tuple[str, ...]] | None = None
# uids of the states gone not yet counted in _gone: a state's finalizer only appends here (an
# atomic step). It runs where a collection happens, also inside another one's noting (at an
# allocation there) or in another thread at the same time: when each read and rewrote _gone,
# one's count and uid were lost, and the workers kept that state's copy to their cache's bound
_pending: collections.deque[str] = collections.deque()
_gone_lock = threading.Lock()  # taken by gone() only (never waited for), never by a finalizer


def gone() -> tuple[str, int, tuple[str, ...]] | None:
    """``(sender, count, uids)``: this process, how many states it sent to workers are gone,
    and the last ones' uids."""
    global _gone
    # (not waiting: a thread taking them in now, or this one below a collection inside the
    # block, takes them in; this batch carries the count as it was)
    if _pending and _gone_lock.acquire(blocking=False):
        try:
            taken: list[str] = []
            while True:  # (a finalizer appending meanwhile: taken now or at the next look)
                try:
                    taken.append(_pending.popleft())
                except IndexError:
                    break
            if taken:
                _, count, uids = _gone or (_SENDER, 0, ())
                _gone = (_SENDER, count + len(taken), (*uids, *taken)[-_GONE_KEPT:])
        finally:
            _gone_lock.release()
    return _gone


def _note_gone(uid: str) -> None:
    _pending.append(uid)


def _forked() -> None:
    """A forked child (a worker forked from the forkserver, ``os.fork``) is a sender of its own:
    its pools' workers (or a cluster) count the states it lets go apart from its parent's."""
    global _SENDER, _gone, _gone_lock
    _SENDER, _gone, _gone_lock = uuid.uuid4().hex, None, threading.Lock()
    _pending.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _maker(ref: weakref.ref[SharedState[Any]], version: int, pickler: Any) -> Any:
    """A function packing the state's value at *version* again: frame pieces, or None.

    None once the state is gone or its version moved on (the snapshot of an older
    version cannot be made any more). Called again when a cluster lost the copy,
    from dask's callback thread: it must never wait for a ``with`` block, which may
    itself wait for that thread (a call made inside the block). Entering a block
    moves the version on right after taking the lock, so while the lock is busy
    the version is looked at again every ``_LOCK_POLL`` seconds: a ``with`` block
    gives None at once, a snapshot or ``save`` in progress is waited for.
    """

    def make() -> list[Any] | None:
        state = ref()
        if state is None:
            return None
        while state._version == version:
            taken = locks.acquire_unless_caller(state._lock, _LOCK_POLL)
            if taken is False:
                continue
            try:  # taken, or held by the thread the call is pickled for (SharedState.__reduce__)
                if state._version != version:
                    return None
                return _pack_noting(state, pickler)
            finally:
                if taken:
                    state._lock.release()
        return None

    return make


_enclosing = threading.local()  # .stack: per state being packed for a call, the states met in it


def _pack_noting(state: SharedState[Any], pickler: Any) -> list[Any]:
    """``frames.pack`` of *state*'s value for a call, noting the states met in it (its
    ``_nested``: a change of one of them is a change of this value)."""
    stack = _enclosing.__dict__.setdefault("stack", [])
    met: list[tuple[weakref.ref[SharedState[Any]], int]] = []
    stack.append(met)
    try:
        pieces = frames.pack(pickler, state._value)
    finally:
        stack.pop()
    state._nested = met
    return pieces


def _nested_moved(nested: list[tuple[weakref.ref[SharedState[Any]], int]]) -> bool:
    """Whether a state of *nested* (as noted) is at another version now."""
    for ref, version in nested:
        held = ref()
        if held is not None and held._version != version:
            return True
    return False


def _rebuild_state(
    pickler: Any,
    uid: str | None,
    version: int,
    source: Any,
    nbytes: int,
    cache_bytes: int | None,
) -> SharedState[Any]:
    """Unpickling side of ``SharedState.__reduce__``: a new state, a fresh lock.

    Inside a call (*uid* given) the state comes from the worker's cache, rebuilt
    at most once per version; otherwise every load makes a new state.
    """

    if uid is None:
        return SharedState._restored(snapshots.load(pickler, source), version)

    def build() -> SharedState[Any]:
        copy = snapshots.WorkerCopy(pickler, version, snapshots.Pristine.of(source))
        state = SharedState._restored(copy.build(), version)
        state._copy = copy
        return state

    return snapshots.rebuild(uid, version, nbytes, cache_bytes, build)  # type: ignore[no-any-return]
