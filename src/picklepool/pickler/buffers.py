"""Large buffers through shared memory, both ways (pickle protocol 5 out-of-band).

Parent to workers::

    Call._submit ──CallBuffers.dumps_tasks──▶ pickler.dumps(batch, buffer_callback)
        every contiguous buffer > max_nbytes  ──▶ one file <session>/call-<id>/a-<n>
        (in /dev/shm), written once per call: the same array in 1,000 tasks is one file
        the batch ──▶ Frames(pickle bytes, refs to the files, where results may go)
    worker (``workers.buffers``): load() maps each file as the call's mmap_mode says
        ("c": copy-on-write, "r": read-only, "r+"/"w+": shared writes; no copy)
        ──▶ pickler.loads(data, buffers=mapped) ──▶ np.memmap arrays (``pickler.arrays``)

    With ``temp_folder`` (or in a ``with Parallel()`` block) the argument files go to a
    folder of their own: in temp_folder, one per call or per block (:func:`release`).

Workers to parent::

    worker (``workers.buffers``): dump_reply() writes each large result buffer to <call folder>/r-<pid>-<n>
        ──▶ Frames(reply bytes, refs)
    parent: CallBuffers.loads() maps the files read-write and unlinks them at once;
        the parent owns the mappings, which live exactly as long as the arrays

Nothing is left behind. An argument file is unlinked as soon as no batch in flight
uses it and the parent no longer holds the array it came from (weakref); the call
folder is removed when the call ends (normal end, task error, crash, timeout,
Ctrl-C, early close of a generator), and again when the last batch still running
then finishes, in case it wrote a result file late. The session folder itself is
registered with loky's resource tracker, so even a killed parent leaves nothing.

Dedupe is by identity, like joblib's memmapping: within one call, a buffer is
identified by the object owning its memory, its address and size. An array
changed in place *during* a call, after a task already took it, is not sent
again: later tasks of that call see the first version (pass a copy instead).

On a cluster (dask: no folder both sides see) large argument buffers go once per
call too, as blobs of the call's store (``pickler.context``: scattered to the
cluster, ``CallContext.put_blob``) under the same identity dedupe; the batch's
``Frames`` then lists ``workers.blobs.BlobRef``s instead of files. A worker gives
each batch its own writable copy of a blob (dask hands every batch the same bytes),
so a task's writes stay its batch's own, as under ``mmap_mode="c"``. A batch carries
only its own argument blobs (``CallBuffers.attachment``: carrying them all would copy
every array of the call to every worker), and a blob is released, like a file, once
no batch in flight uses it and the parent no longer holds its array. Results come
back in band.

When ``/dev/shm`` lacks room for a buffer (containers often have 64 MB), the
parent writes it to a memory-mapped file in a temporary folder on disk instead
and logs it at DEBUG level; a worker whose result does not fit sends it back
through the pipe as usual. ``free_space`` is the one probe both sides use.

Only buffers that pickle itself passes out of band take this road: numpy arrays
(C or Fortran contiguous, and large strided views through one contiguous copy each,
``arrays.contiguous_copy``; numpy copies in band object arrays, subclasses, and
datetime64/timedelta64 arrays, whose memory it cannot export as a buffer) and
``pickle.PickleBuffer`` objects. ``np.memmap`` arguments (and views of them) are not
copied at all: they travel as references to their own file (``pickler.arrays``).
``bytes`` and ``bytearray`` are always pickled in band by the stdlib.
"""

from __future__ import annotations

import functools
import itertools
import logging
import mmap
import os
import pickle
import shutil
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, NamedTuple

from .. import lokycompat
from . import arrays
from .plain import dumps as dumps_plain

log = logging.getLogger(__name__)

SHM_RESERVE = 16 << 20  # keep this much of /dev/shm free for everybody else
PAYLOAD_FILE_MIN = 1 << 20  # a batch's pickle stream of this size goes through a file
_MEMO_TAG = "picklepool.buffer"

Ref = tuple[str, int]  # a file's path and the size of the buffer it holds


class TempFolderError(OSError):
    """``temp_folder`` cannot hold a call's argument files (raised as it is, not as a pickling error)."""


class Frames(NamedTuple):
    """Pickle bytes plus the files holding their out-of-band buffers, in order.

    ``data`` is the pickle stream, or a blob reference to it (large function
    specs; see ``workers.blobs``). ``results`` is ``(folder, max_nbytes)`` for task batches:
    where the worker may write large results.
    """

    data: Any  # bytes, or a blob reference (str path)
    refs: tuple[Ref, ...] = ()
    results: tuple[str, int] | None = None
    mode: str = "r"  # the mmap_mode the receiver maps the files with (pickler.arrays)


def free_space(path: str) -> int:
    """Bytes an unprivileged process may still write in the file system of *path*."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def write_file(path: str, buf: memoryview) -> None:
    """Write *buf* into a new file at *path*; no partial file survives an error."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        done, total = 0, buf.nbytes
        while done < total:
            done += os.write(fd, buf[done:])
    except BaseException:
        os.close(fd)
        unlink(path)
        raise
    os.close(fd)


def map_file(path: str, nbytes: int, writable: bool) -> memoryview:
    """Map *nbytes* of the file at *path*; the memoryview keeps the mapping alive."""
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size < nbytes:
            raise OSError(f"shared-memory file {path} holds {size} bytes, {nbytes} expected")
        access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
        return memoryview(mmap.mmap(fd, nbytes, access=access))
    finally:
        os.close(fd)


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _holder(obj: Any) -> Callable[[], Any]:
    """A strong stand-in for ``weakref.ref(obj)``."""
    return lambda: obj


def _owner(obj: Any) -> Any:
    """The object owning the memory a buffer exporter points into (numpy's base chain)."""
    np = sys.modules.get("numpy")
    if np is not None:
        while isinstance(obj, np.ndarray) and isinstance(obj.base, np.ndarray):
            obj = obj.base
    return obj


def _address(raw: memoryview) -> int | None:
    """Start address of a contiguous buffer, or None when it cannot be told."""
    np = sys.modules.get("numpy")
    if np is None:
        return None
    return int(np.frombuffer(raw, np.uint8).__array_interface__["data"][0])


class _Entry:
    """One file of arguments: who uses it, and whether its owner is still alive."""

    __slots__ = ("key", "path", "nbytes", "owner", "users", "dead", "pinned", "ref", "batch")

    def __init__(self, key: Any, path: str, nbytes: int, ref: Any = None) -> None:
        self.key, self.path, self.nbytes = key, path, nbytes
        self.ref = ref  # on a cluster: the blob's reference (*path* is then its key)
        self.owner: Callable[[], Any] = lambda: None
        self.users = 0  # batches in flight (or being pickled) that refer to the file
        self.dead = False  # the parent's object is gone: the file cannot be reused
        self.pinned = False  # a function spec refers to it: kept until the call ends
        self.batch = 0  # the batch that wrote it (CallBuffers.per_batch)


class CallBuffers:
    """Parent side, one per call: writes argument buffers, maps result buffers.

    Disabled (everything in band, exactly as before) when ``max_nbytes`` is None
    or the backend has no session folder (threading, sequential, remote workers).
    """

    def __init__(
        self,
        context: Any,
        call_id: int,
        max_nbytes: int | None,
        mmap_mode: str = "c",
        temp_folder: str | None = None,
        owner: Any = None,
    ) -> None:
        session = getattr(context, "session", None)
        self.mmap_mode, self.temp_folder, self.owner = mmap_mode, temp_folder, owner
        self.enabled = max_nbytes is not None and session is not None
        # joblib shares the arrays *larger* than max_nbytes (``a.nbytes > max_nbytes``);
        # what follows counts in "at least" (arrays.Scope, the buffers' out_of_band, the
        # workers' results): one byte more. An array of exactly max_nbytes (a 1024 x 128
        # float64 one under the default "1M") was shared here, so a task writing to it
        # under mmap_mode="r" failed where joblib's got a copy. The user's 0 means every
        # array, as in joblib (arrays.Scope's 0 means none; empty arrays stay in band).
        self.max_nbytes = max_nbytes + 1 if max_nbytes is not None else 0
        # Workers on this machine (a session folder) can open the user's memmapped files.
        self.files_shared = session is not None
        self.context = context
        self.memo: dict[Any, Any] = context.memo
        # A cluster (dask): no session, but a store whose blobs every batch carries.
        store = getattr(context, "store", None)
        self._cluster = context if max_nbytes is not None and session is None and store is not None else None
        self._token = ""  # names this call's argument blobs, drawn at the first one
        self.session_path = session.path if session is not None else ""
        self.call_id = call_id
        self.folder = os.path.join(session.path, f"call-{call_id}") if session is not None else ""
        self._opened = False
        self._session: Any = session
        # a file of the parent's was made in the folder (an argument, a large stream, a
        # stream's socket): it is removed at the end, not given to the next call
        self._dirty = False
        self._spill: str | None = None
        self._args: str | None = None  # where argument files go (the call folder by default)
        self._own_args: str | None = None  # a folder of this call's alone, removed at its end
        self._files: list[str] = []  # argument files in an owner's folder, removed at the end
        self._names = itertools.count()
        self._by_path: dict[str, _Entry] = {}
        # Re-entrant: a weakref callback may run in this thread while it holds the lock.
        self._lock = threading.RLock()
        self._pending = 0  # batches sent and not finished
        self._closed = False
        # A long-lived channel (picklepool.Executor): each batch sends its arrays as they
        # are then, so a file serves only the batch that wrote it (and goes with it); an
        # array changed between two submissions is sent again, not read from the old file.
        self.per_batch = False
        self._batch = 0  # batches built so far (per_batch: files are reused within one only)
        self._extra: list[_Entry] = []  # files of the batch being built's function specs not kept
        # contiguous copies of the large strided views sent (arrays.contiguous_copy): one per
        # distinct view (memory and layout) while such a view lives (per batch when per_batch)
        self._copies: dict[Any, Any] = {}

    # -- pickling arguments ---------------------------------------------------------

    def dumps_tasks(self, pickler: Any, obj: Any) -> bytes | Frames:
        """Pickle a batch; large buffers go to files, the batch carries references."""
        if not self.enabled or not self._open():
            if self._cluster is not None:
                return self._dumps_to_blobs(pickler, obj)
            with arrays.sharing(arrays.Scope(None, 0, self.files_shared)):  # memmaps by reference
                return pickler.dumps(obj)  # type: ignore[no-any-return]
        plain = dumps_plain(pickler, obj)  # a small batch of plain values: the short way
        if plain is not None:
            return Frames(plain, (), (self.folder, self.max_nbytes), self.mmap_mode)
        data, refs = self._dumps(pickler, obj, pin=False)
        stream: Any = data
        if len(data) >= PAYLOAD_FILE_MIN and free_space(self.folder) >= len(data) + SHM_RESERVE:
            # A large pickle stream (a long list, a big dict) skips the pipe: one write here,
            # one read in the worker, instead of a copy by loky at each end and the pipe.
            self._dirty = True
            stream = os.path.join(self.folder, f"p-{next(self._names)}")
            write_file(stream, memoryview(data))
        return Frames(stream, refs, (self.folder, self.max_nbytes), self.mmap_mode)

    def _dumps_to_blobs(self, pickler: Any, obj: Any) -> bytes | Frames:
        """A batch for a cluster: each large buffer a blob sent once per call (module docstring)."""
        used: list[_Entry] = []

        def out_of_band(pb: pickle.PickleBuffer) -> bool:
            try:
                raw = pb.raw()
            except BufferError:  # not contiguous: pickle copies it in band
                return True
            with raw:
                if raw.nbytes < self.max_nbytes or raw.nbytes == 0:
                    return True
                used.append(self._blob_of(raw))
            return False

        try:
            with arrays.sharing(arrays.Scope("c", self.max_nbytes, False, self._copies)):
                data = pickler.dumps(obj, buffer_callback=out_of_band)
        except BaseException:
            self._release(used)
            raise
        # "r": the worker's bytes as they are (read-only, as a file mapped "r"); else its
        # own writable copy ("r+"/"w+" cannot share writes across a cluster: as "c")
        mode = "r" if self.mmap_mode == "r" else "c"
        return Frames(data, tuple(e.ref for e in used), None, mode) if used else data  # type: ignore[no-any-return]

    def _blob_of(self, raw: memoryview) -> _Entry:
        """The blob holding *raw*'s bytes for this call: found again, or put now (one more user)."""
        owner = _owner(raw.obj)
        address = _address(raw)
        key = (_MEMO_TAG, "blob", id(owner), address, raw.nbytes) if address is not None else None
        with self._lock:
            entry = self.memo.get(key) if key is not None else None
            if entry is not None and entry.owner() is owner:
                entry.users += 1
                return entry  # type: ignore[no-any-return]
            if not self._token:
                self._token = os.urandom(6).hex()
            name = f"{self._blob_prefix()}{next(self._names)}"
        entry = _Entry(key, name, raw.nbytes, self._cluster.put_blob(name, raw.tobytes()))  # type: ignore[union-attr]
        entry.users = 1
        return self._register(entry, owner)

    def _blob_prefix(self) -> str:
        return f"arg-{self._token}-"

    def attachment(self, payload: Any) -> Any:
        """What a batch of *payload* carries to read the call's blobs (``Batch.attachment``).

        The call's blobs but the argument blobs of other batches: dask copies every
        blob a batch carries to the worker that runs it, so carrying them all would
        put every array of the call on every worker, and keep it there until the
        call ends.
        """
        attachment = self.context.attachment()
        if not attachment or not self._token:
            return attachment
        prefix = self._blob_prefix()
        own = {key for key, _ in payload.refs} if isinstance(payload, Frames) else set()
        return {key: f for key, f in attachment.items() if key in own or not key.startswith(prefix)}

    def dumps_function(self, pickler: Any, func: Any, keep: bool = True) -> tuple[bytes, tuple[Ref, ...]]:
        """Pickle a function spec: its bytes and buffer refs.

        *keep*: the spec is sent again by later batches (once per call), so its files
        stay until the call ends; else (a callable object an ``Executor`` pickles at
        each batch) they go with the batch being built, as its arguments' do.
        """
        if not self.enabled or not self._open():
            with arrays.sharing(arrays.Scope(None, 0, self.files_shared)):
                return pickler.dumps(func), ()
        return self._dumps(pickler, func, pin=keep, collect=None if keep else self._extra)

    def _scope(self) -> arrays.Scope:
        """How the arrays of a batch for this machine's workers travel."""
        return arrays.Scope(self.mmap_mode, self.max_nbytes, self.files_shared, self._copies)

    def begin_batch(self) -> None:
        """A batch is about to be built: what a batch that failed to build left goes now."""
        with self._lock:
            self._batch += 1
            if self.per_batch:
                self._copies.clear()
        if self._extra:
            left, self._extra = self._extra, []
            self._release(left)

    def stream_folder(self) -> str | None:
        """The call folder, made now, for a streamed batch's socket; None when buffers are off."""
        if not self.enabled or not self._open():
            return None
        self._dirty = True
        return self.folder

    def _open(self) -> bool:
        if not self._opened:
            spare = self._session.take_folder()
            if spare is not None:  # an empty folder the last clean call left (Session.take_folder)
                self.folder, self._opened = spare, True
                return True
            try:
                os.mkdir(self.folder, 0o700)
            except OSError as exc:
                log.debug("picklepool: no shared memory for this call (%s); buffers go in band", exc)
                self.enabled = False
                return False
            self._opened = True
        return True

    def _dumps(
        self, pickler: Any, obj: Any, pin: bool, collect: list[_Entry] | None = None
    ) -> tuple[bytes, tuple[Ref, ...]]:
        used: list[_Entry] = []
        try:
            with arrays.sharing(self._scope()):
                data = pickler.dumps(obj, buffer_callback=self._out_of_band(used, pin))
        except BaseException:
            self._release(used)
            raise
        if collect is not None:
            collect.extend(used)
        return data, tuple((e.path, e.nbytes) for e in used)

    def dump_stream(self, pickler: Any, obj: Any, writer: Any) -> list[Any]:
        """Pickle a batch into *writer* as it goes (``pickler.stream``), as :meth:`dumps_tasks`
        would into bytes.

        Each buffer larger than ``max_nbytes`` goes to a file (once per call, as there);
        ``writer.buffer(path, nbytes)`` announces it before the pickle data that uses it.
        Returns the files' entries, to hand to :meth:`sent`; on an error, they are
        released and the error propagates.
        """
        used: list[_Entry] = []
        try:
            with arrays.sharing(self._scope()):
                pickler.dump(obj, writer, buffer_callback=self._out_of_band(used, False, writer.buffer))
        except BaseException:
            self._release(used)
            raise
        return used

    def _out_of_band(
        self, used: list[_Entry], pin: bool, announce: Callable[[str, int], None] | None = None
    ) -> Callable[[pickle.PickleBuffer], bool]:
        """The pickler's ``buffer_callback``: large contiguous buffers to files, listed in *used*."""

        def out_of_band(pb: pickle.PickleBuffer) -> bool:
            try:
                raw = pb.raw()
            except BufferError:  # not contiguous: pickle copies it in band (or says why not)
                return True
            with raw:
                if raw.nbytes < self.max_nbytes or raw.nbytes == 0:
                    return True
                entry = self._store(raw, pin)
            used.append(entry)
            if announce is not None:
                announce(entry.path, entry.nbytes)
            return False

        return out_of_band

    def _store(self, raw: memoryview, pin: bool) -> _Entry:
        """The file holding *raw*'s bytes for this call: found again, or written now."""
        owner = _owner(raw.obj)
        address = _address(raw)
        key = (_MEMO_TAG, id(owner), address, raw.nbytes) if address is not None else None
        with self._lock:
            entry = self.memo.get(key) if key is not None else None
            if (
                entry is not None
                and entry.owner() is owner
                and not entry.dead
                and (not self.per_batch or entry.batch == self._batch)  # not as it was then
            ):
                entry.users += 1
                entry.pinned |= pin
                return entry  # type: ignore[no-any-return]
        path = self._write(raw)
        entry = _Entry(key, path, raw.nbytes)
        entry.users, entry.pinned, entry.batch = 1, pin, self._batch
        return self._register(entry, owner)

    def _register(self, entry: _Entry, owner: Any) -> _Entry:
        """Make *entry* (a file, or a blob on a cluster) findable; it dies with *owner*."""
        try:
            entry.owner = weakref.ref(owner, functools.partial(self._owner_died, entry))
        except TypeError:  # not weak-referenceable: held (and its data kept) until the call ends
            entry.owner = _holder(owner)
        with self._lock:
            self._by_path[entry.path] = entry
            if entry.key is not None:
                self.memo[entry.key] = entry
        return entry

    def _write(self, raw: memoryview) -> str:
        nbytes = raw.nbytes
        folder = self._arg_folder()
        self._dirty = True
        name = f"a-{next(self._names)}" if folder == self.folder else f"a-{self.call_id}-{next(self._names)}"
        path = os.path.join(folder, name)
        if self.temp_folder is not None:  # the user's choice of folder: no fallback
            self._write_or_say(path, raw, f"temp_folder={self.temp_folder!r}")
            self._files.append(path)
            return path
        if free_space(folder) >= nbytes + SHM_RESERVE:
            try:
                write_file(path, raw)
                if folder != self.folder:
                    self._files.append(path)
                return path
            except OSError as exc:  # ENOSPC: someone else filled it meanwhile
                log.debug("picklepool: writing %d bytes to %s failed (%s)", nbytes, path, exc)
        path = os.path.join(self._spill_folder(nbytes), name)
        shm = os.path.dirname(os.path.dirname(self.folder))  # /dev/shm, above the session
        self._write_or_say(path, raw, f"the temporary folder, used as {shm} had no room")
        return path

    @staticmethod
    def _write_or_say(path: str, raw: memoryview, where: str) -> None:
        """:func:`write_file`; an ``OSError`` (a full disk) as a :class:`TempFolderError` saying
        where and what to do, not a pickling error naming neither folder nor fix."""
        try:
            write_file(path, raw)
        except OSError as exc:
            try:
                free = f"{free_space(os.path.dirname(path)) / 1e6:.1f} MB free"
            except OSError:
                free = "free space unknown"
            raise TempFolderError(
                exc.errno,
                f"a large argument (an array above max_nbytes, {raw.nbytes / 1e6:.1f} MB) could not "
                f"be written to {where}: {exc.strerror or exc} ({free}). Free space there, point "
                "temp_folder (or PICKLEPOOL_TEMP_FOLDER) to a folder with room, or pass "
                "max_nbytes=None to send arrays through the pipe instead",
                path,
            ) from exc

    def _arg_folder(self) -> str:
        """Where this call writes argument files (joblib's pool temporary folder).

        The call folder, unless ``temp_folder`` is set or the call runs in a ``with
        Parallel()`` block (*owner*): then a folder in ``temp_folder`` (or the session
        folder) of that block, kept until it ends (:func:`release`) and shared by its
        calls, as joblib's is; each call removes its own files when it ends.
        """
        if self._args is None:
            root = self.temp_folder
            try:
                if root is not None:
                    root = os.path.abspath(os.path.expanduser(root))
                    os.makedirs(root, exist_ok=True)
                if self.owner is not None:
                    self._args = _owner_folder(self.owner, root or self.session_path, root is not None)
                elif root is not None:
                    own = tempfile.mkdtemp(prefix=f"picklepool-{os.getpid()}-", dir=root)
                    self._own_args = self._args = own
                    lokycompat.track_folder(self._args)
                else:
                    self._args = self.folder
            except OSError as exc:
                if root is None:
                    raise
                raise TempFolderError(
                    exc.errno,
                    f"temp_folder={self.temp_folder!r} cannot hold this call's large-argument files "
                    f"(arrays larger than max_nbytes): {exc.strerror or exc}. Use a folder you can "
                    "write to, or leave temp_folder unset (None: shared memory in /dev/shm); it is "
                    "set by the temp_folder argument, parallel_config(temp_folder=...), or the "
                    "PICKLEPOOL_TEMP_FOLDER or JOBLIB_TEMP_FOLDER environment variable",
                    exc.filename,
                ) from exc
        return self._args

    def _spill_folder(self, nbytes: int) -> str:
        if self._spill is None:
            self._spill = tempfile.mkdtemp(
                prefix=f"picklepool-{os.getpid()}-spill-", dir=lokycompat.temp_root()
            )
            lokycompat.track_folder(self._spill)
            log.debug(
                "picklepool: %s has %d MB free, less than a %d MB buffer plus the %d MB left "
                "for others; large buffers of this call go to memory-mapped files in %s instead",
                os.path.dirname(os.path.dirname(self.folder)),  # /dev/shm, above the session
                free_space(self.folder) >> 20,
                -(-nbytes >> 20),
                SHM_RESERVE >> 20,
                self._spill,
            )
        return self._spill

    # -- lifetime of argument files -------------------------------------------------

    def sent(
        self, payload: Any, fut: Future[Any], streamed: list[Any] | None = None, specs: Any = ()
    ) -> None:
        """Tie the batch's argument files to its future: released when it is done.

        *streamed*: the entries :meth:`dump_stream` returned, for a streamed batch.
        *specs*: the refs of the files its function specs use, kept for later batches too:
        counted as used by this one, so that :meth:`unpin` leaves them until it is done.
        """
        if not isinstance(payload, Frames) and not self._extra and not specs:
            return
        refs = payload.refs if isinstance(payload, Frames) else ()
        with self._lock:
            # a blob's reference (workers.blobs.BlobRef) is its key and size, as a file's
            entries: list[_Entry] = (
                list(streamed) if streamed is not None else [self._by_path[p] for p, _ in refs]
            )
            for path, _ in specs:
                entry = self._by_path.get(path)
                if entry is not None:
                    entry.users += 1
                    entries.append(entry)
            entries += self._extra  # its function specs' that are not kept
            self._extra = []
            self._pending += 1
            if self.per_batch:  # no later batch reuses these: removed once this one is done
                for e in entries:
                    if not e.pinned:
                        e.dead = True
                        if e.key is not None and self.memo.get(e.key) is e:
                            self.memo.pop(e.key, None)
        stream = payload.data if isinstance(payload, Frames) and isinstance(payload.data, str) else None
        fut.add_done_callback(lambda _f: self._batch_done(entries, stream))

    def unpin(self, refs: Any) -> None:
        """The function spec whose files *refs* are is no longer kept (a long-lived table's
        function died, ``executor.functions``): each goes once no batch in flight uses it,
        where it stayed until the call's end (an ``Executor``'s shutdown)."""
        gone: list[_Entry] = []
        with self._lock:
            for path, _ in refs:
                entry = self._by_path.get(path)  # (None: the call ended, its files went with it)
                if entry is not None and self._unpinned(entry):
                    gone.append(entry)
        for e in gone:
            self._discard(e)

    def _unpinned(self, entry: _Entry) -> bool:
        """Unpin *entry* (lock held); True when it is to go now (no batch in flight uses it)."""
        entry.pinned, entry.dead = False, True
        if entry.key is not None and self.memo.get(entry.key) is entry:
            self.memo.pop(entry.key, None)
        entry.users -= 1  # (this spec's own use, from its pickling; another's may remain)
        return entry.users <= 0 and self._forget(entry)

    def _batch_done(self, entries: list[_Entry], stream: str | None = None) -> None:
        if stream is not None:
            unlink(stream)  # the batch's pickle stream, read by its worker
        with self._lock:
            self._pending -= 1
            late = self._closed and self._pending == 0 and self._opened  # a folder to remove
        self._release(entries)
        if late:  # a batch still running at the end of the call may have written results
            self._remove()

    def _release(self, entries: list[_Entry]) -> None:
        gone = []
        with self._lock:
            for e in entries:
                e.users -= 1
                if e.users == 0 and e.dead and not e.pinned and self._forget(e):
                    gone.append(e)
        for e in gone:
            self._discard(e)

    def _owner_died(self, entry: _Entry, _ref: Any = None) -> None:
        with self._lock:
            entry.dead = True
            if entry.key is not None and self.memo.get(entry.key) is entry:
                self.memo.pop(entry.key, None)
            gone = entry.users == 0 and not entry.pinned and self._forget(entry)
        if gone:
            self._discard(entry)

    def _forget(self, entry: _Entry) -> bool:
        """Drop *entry* (lock held); False if the call's end already dropped it."""
        return self._by_path.pop(entry.path, None) is not None

    def _discard(self, entry: _Entry) -> None:
        """Remove a forgotten entry's file, or release its blob from the cluster."""
        if entry.ref is not None:
            self.context.drop_blob(entry.path)
        else:
            unlink(entry.path)

    # -- results --------------------------------------------------------------------

    def loads(self, pickler: Any, reply: Any) -> Any:
        """Unpickle a reply, mapping (and taking over) its result files.

        The mappings are shared (``MAP_SHARED``) and the files unlinked at once, so
        the parent is their only user: result arrays are writable, freed when
        garbage collected. (A child forked later shares them, as with any shared
        mapping.)
        """
        if not isinstance(reply, Frames):
            return pickler.loads(reply)
        buffers = []
        try:
            for path, nbytes in reply.refs:
                buffers.append(map_file(path, nbytes, writable=True))
        finally:
            for path, _ in reply.refs:  # the mappings stay; the names go now
                unlink(path)
        return pickler.loads(reply.data, buffers=buffers)

    # -- end of the call ------------------------------------------------------------

    def close(self, clean: bool = False) -> None:
        """The call is over: remove its folder now (and again after late batches).

        *clean*: every batch's reply was read (its result files taken over) and none
        is running. Then a folder the parent wrote nothing to is empty, nothing writes
        there any more, and it goes to the next call (``Session.give_back_folder``).
        """
        if self._cluster is not None:  # its blobs go with the call's (CallContext.close)
            with self._lock:
                self._closed = True
                self._by_path.clear()
                self._copies.clear()
        if not self._opened:
            return
        with self._lock:
            self._closed = True
            for key in [k for k in self.memo if isinstance(k, tuple) and k[:1] == (_MEMO_TAG,)]:
                self.memo.pop(key, None)
            self._by_path.clear()
            self._copies.clear()
            # (no batch pending: no _batch_done comes later to remove the folder)
            spare = clean and not self._dirty and self._pending == 0 and self._spill is None
        if spare and self._session.give_back_folder(self.folder):
            return
        self._remove()

    def _remove(self) -> None:
        try:
            os.rmdir(self.folder)  # the usual case: nothing went through files
        except OSError:
            shutil.rmtree(self.folder, ignore_errors=True)
        if self._args is not None and self._args != self.folder:
            for path in self._files:
                unlink(path)
        own, self._own_args = self._own_args, None
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)
            lokycompat.track_folder(own, register=False)
        spill, self._spill = self._spill, None
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
            lokycompat.track_folder(spill, register=False)


# -- argument folders of a ``with Parallel()`` block ----------------------------------------

# owner -> {root: (folder, tracked by loky's resource tracker)}
_owners: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, bool]]] = weakref.WeakKeyDictionary()
_owners_lock = threading.Lock()


def _new_lock_in_child() -> None:
    """In a forked child: a lock of its own (held by another thread at the fork, the child's
    copy would stay held: its calls would hang), and none of the parent's block folders."""
    global _owners_lock
    _owners_lock = threading.Lock()
    # The parent's `with Parallel()` blocks' folders are the parent's: neither the child's
    # end of such a block (a sys.exit inside it) nor the finalizers at its exit remove them
    # (the parent's next call in the block failed: "No such file or directory"). The
    # child's calls in the block make folders of their own.
    for folders in list(_owners.values()):
        folders.clear()
    _owners.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


def _owner_folder(owner: Any, root: str, tracked: bool) -> str:
    """The argument folder in *root* of *owner* (a kept backend), created at first use."""
    with _owners_lock:
        folders = _owners.get(owner)
        if folders is None:
            folders = _owners[owner] = {}
            weakref.finalize(owner, _remove_folders, folders)  # if the block is never closed
        known = folders.get(root)
        if known is None:
            prefix = f"picklepool-{os.getpid()}-args-" if tracked else "args-"
            known = folders[root] = (tempfile.mkdtemp(prefix=prefix, dir=root), tracked)
            if tracked:  # outside the session folder, which is tracked already
                lokycompat.track_folder(known[0])
    return known[0]


def _remove_folders(folders: dict[str, tuple[str, bool]]) -> None:
    with _owners_lock:
        known = list(folders.values())
        folders.clear()
    for path, tracked in known:
        shutil.rmtree(path, ignore_errors=True)
        if tracked:
            lokycompat.track_folder(path, register=False)


def release(owner: Any) -> None:
    """A ``with Parallel()`` block ended: remove its argument folders (``Parallel.__exit__``)."""
    if owner is None:
        return
    with _owners_lock:
        folders = _owners.pop(owner, None)
    if folders:
        _remove_folders(folders)
