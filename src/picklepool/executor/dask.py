"""The dask.distributed backend: the same batches, run on a dask cluster.

    Call ──wire.Batch──▶ client.submit(run_attached, batch, scattered blobs)
      ──scheduler──▶ dask worker thread: workers.runner.run_batch ──▶ reply bytes
      ──dask future──▶ _BatchFuture (a concurrent.futures.Future) ──▶ Call

Tasks cross as the bytes the call's pickler made, exactly as with loky; dask only
moves them (it pickles ``run_batch`` by reference, so picklepool must be
importable on every worker, like the modules of the functions pickled by
reference). Data a call sends once (functions larger than
``dispatch.INLINE_LIMIT``, and anything a reducer puts with
``CallContext.put_blob``, and argument buffers larger than ``max_nbytes``:
``pickler.buffers``) is scattered to the cluster once per call
(:class:`ScatterStore`); every batch carries the call's scattered futures, dask
hands their bytes to the worker that runs it, and the worker rebuilds each
object once (``workers.blobs``, ``workers.cache``). ``SharedState`` snapshots
(``CallContext.keep_blob``) stay on the cluster across calls while their version
does (``executor.kept``): batches do not carry them, and a batch landing on a
worker that has no copy yet answers ``MissingBlobs`` and is sent again with the
data, to that worker.

What differs from loky, and why:

- There is no session folder shared across machines, so no cancel flags and no
  worker status files: a failed call cancels the batches dask has not started
  (batches already running finish), and a crash names the batch's tasks rather
  than the one task that was running.
- ``timeout``: dask runs tasks in worker threads, where SIGALRM cannot reach, so
  the runner waits for each task with a deadline and interrupts a late one
  with an asynchronous exception (``workers.tasks.execute_watched``).
- A worker that dies: dask reschedules its batch on another worker, up to
  ``distributed.scheduler.allowed-failures`` times (3 by default), then gives up
  with ``KilledWorker``, which is raised here as ``WorkerCrashedError``.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any

from ..errors import WorkerCrashedError
from ..forklocks import renew_in_child
from ..wire import Batch
from ..workers.blobs import BlobRef, MissingBlobs
from ..workers.runner import run_attached
from . import kept
from .backend import ClusterBackend

NO_CLUSTER = (
    "backend='dask' found no dask cluster: no distributed.Client is current and no "
    "scheduler_address was given. Start one in this process, e.g. "
    "`from distributed import Client, LocalCluster; client = Client(LocalCluster())`, "
    "or point picklepool at a running scheduler with "
    "parallel_config(backend='dask', scheduler_address='tcp://HOST:8786') "
    "(started with `dask scheduler`, plus `dask worker tcp://HOST:8786` on each machine)."
)


class NoClusterError(ValueError, RuntimeError):
    """No dask cluster to run on: a ``ValueError``, as joblib's dask backend raises then
    ("To use Joblib with Dask first create a Dask Client"), so code written for joblib
    catches it; also the ``RuntimeError`` picklepool raised before."""


MAX_RESENDS = 3  # times a batch is sent again after the cluster lost the data it carries

# Clients picklepool opened itself (scheduler_address), by address; closed by shutdown().
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()
renew_in_child(globals(), "_clients_lock", threading.Lock)  # (held at a fork: held for ever in the child)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            f"backend='dask' needs dask.distributed, which cannot be imported here ({exc}). "
            "Install it with: pip install 'picklepool[dask]'"
        ) from exc
    return distributed


def _usable(client: Any) -> bool:
    return client is not None and client.status not in ("closing", "closed")


def get_client(scheduler_address: str | None = None) -> Any:
    """The client to use: the current one, or one connected to *scheduler_address*."""
    distributed = _distributed()
    try:
        current = distributed.get_client()
    except ValueError:  # no client in this process
        current = None
    if not scheduler_address:
        if not _usable(current):
            raise NoClusterError(NO_CLUSTER)
        return current
    if _usable(current) and current.scheduler.address == scheduler_address:
        return current
    with _clients_lock:
        client = _clients.get(scheduler_address)
        if not _usable(client):
            try:
                client = distributed.Client(scheduler_address, set_as_default=False)
            except OSError as exc:
                raise OSError(
                    f"backend='dask' could not connect to the dask scheduler at "
                    f"scheduler_address={scheduler_address!r}: {exc}. Is `dask scheduler` "
                    "running there, and is its port reachable from this machine?"
                ) from exc
            _clients[scheduler_address] = client
    return client


def cluster_threads(client: Any) -> dict[str, int]:
    """The cluster's threads per worker; an error saying what to do if its scheduler is gone.

    A client whose scheduler stopped (or whose connection dropped) tries to reconnect for
    ``distributed.comm.timeouts.connect``; asking it anything meanwhile fails with dask's
    bare ``OSError`` (``Timed out trying to connect to tcp://...``, ``ConnectionPool closing``).
    """
    try:
        threads: dict[str, int] = client.nthreads()
    except OSError as exc:
        address = getattr(getattr(client, "scheduler", None), "address", None)
        raise OSError(
            f"backend='dask' could not reach the dask scheduler at {address} (the status of "
            f"the dask Client connected to it: {client.status!r}): "
            f"{type(exc).__name__}: {str(exc).rstrip('.')}. The scheduler stopped or the network "
            "dropped: check that it is running and reachable from this machine (its log says "
            "why it stopped), then run the call again, or make a new Client"
        ) from exc
    return threads


def warn_if_no_workers(client: Any, threads: dict[str, int]) -> None:
    """Say so when the cluster has no worker: dask holds the batches until one joins, silently."""
    if threads:
        return
    import warnings

    from ..pickler.locks import callers_level

    address = getattr(getattr(client, "scheduler", None), "address", None) or "tcp://HOST:8786"
    warnings.warn(
        f"backend='dask': the dask cluster at {address} has no workers, so this call waits "
        "until one joins (dask holds its tasks, silently, and timeout= counts only from a "
        "task's start). An adaptive cluster starts them as work comes; otherwise start some: "
        f"`dask worker {address}` on each machine, or LocalCluster(n_workers=...)",
        UserWarning,
        stacklevel=callers_level(),
    )


def close_clients() -> None:
    """Close the clients picklepool opened (never the user's own client).

    Snapshots kept on any cluster (``executor.kept``) are released first, except
    those a running call still uses (released when it ends).
    """
    kept.release_all()
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


# Per client, the workers known to run this version of picklepool.
_checked: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def check_workers(client: Any, workers: Iterable[str]) -> None:
    """Fail now, saying what to install, if a worker cannot import this picklepool.

    A dask worker that cannot import ``run_batch`` cannot even deserialise the
    batch, and dask then waits for it forever. Checked once per worker.
    """
    from .. import __version__

    known = _checked.setdefault(client, set())
    new = set(workers) - known
    if not new:
        return
    found = client.get_versions(packages=["picklepool"])["workers"]
    missing, other = [], []
    for address in sorted(new & set(found)):
        version = found[address].get("packages", {}).get("picklepool")
        if version is None:
            missing.append(address)
        elif version != __version__:
            other.append(f"{address} has {version}")
    if missing:
        raise RuntimeError(
            f"picklepool cannot be imported on the dask worker(s) {missing}: install picklepool "
            f"{__version__} in the Python environment each `dask worker` runs in (with the "
            "modules your tasks' functions and classes are imported from)"
        )
    if other:
        raise RuntimeError(
            f"the dask workers run another picklepool version than this process ({__version__}): "
            f"{', '.join(other)}. Install the same version everywhere."
        )
    known.update(new & set(found))


class ScatterStore:
    """A call's once-sent data, scattered to the cluster (a ``pickler.context.BlobStore``).

    ``put`` sends the bytes to one worker (``scatter(broadcast=False)``); the other
    workers fetch them from there when a batch that carries them lands on them.
    The data lives as long as the call: ``drop`` releases it. The store keeps the
    bytes too, because dask cannot recompute scattered data: if the worker holding
    them dies, :meth:`restore` scatters them again and the batch is sent again.
    Data put with :meth:`keep` outlives the call (``executor.kept``); batches do not
    carry it.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.futures: dict[str, Any] = {}
        self._data: dict[str, bytes] = {}
        self._sent: dict[str, list[Any]] = {}  # every future scattered per key, restores too
        self._kept: dict[str, kept.Kept] = {}  # kept across calls, checked out for this call
        # Re-entrant: an argument array collected inside a block holding it (any allocation
        # there) drops its blob from a weakref callback, in this thread (CallBuffers._owner_died)
        self._lock = threading.RLock()

    def put(self, key: str, data: bytes | list[Any]) -> BlobRef:
        if isinstance(data, list):
            data = b"".join(data)
        with self._lock:
            if key not in self.futures:
                self.futures[key] = self._scatter(data)
                self._data[key] = data
                self._sent[key] = [self.futures[key]]
        return BlobRef(key, len(data))

    def keep(self, key: str, family: str, owner: Any, make: kept.Make) -> tuple[BlobRef, int]:
        """Data that stays on the cluster across calls (``pickler.context.BlobStore.keep``)."""
        with self._lock:
            entry = self._kept.get(key)
        if entry is None:
            entry = kept.kept_for(self.client).checkout(key, family, owner, make)
            with self._lock:
                if key in self._kept:  # put twice by this call: one checkout is enough
                    kept.kept_for(self.client).checkin(entry)
                    entry = self._kept[key]
                else:
                    self._kept[key] = entry
        return BlobRef(key, entry.nbytes), entry.nbytes

    def _scatter(self, data: bytes) -> Any:
        if not _usable(self.client):  # closed during the call: dask's own error names nothing
            raise _closed(self.client)
        [future] = self.client.scatter([data], hash=False)
        return future

    def drop(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)
            self._sent.pop(key, None)
            future = self.futures.pop(key, None)
            entry = self._kept.pop(key, None)
        if future is not None:
            kept.release(future)
        if entry is not None:
            kept.kept_for(self.client).checkin(entry)

    def attachment(self) -> dict[str, Any] | None:
        """The call's scattered futures: dask replaces them by their bytes on the worker."""
        with self._lock:
            current = dict(self.futures)
        if any(future.status != "finished" for future in current.values()):
            current = self.restore(current) or current  # known lost: scatter again first
        return current or None

    def owns(self, attachment: dict[str, Any]) -> bool:
        """Whether *attachment* came from this store (before or after a restore)."""
        with self._lock:
            return any(f is future for key, future in attachment.items() for f in self._sent.get(key, ()))

    def restore(self, attachment: dict[str, Any]) -> dict[str, Any] | None:
        """*attachment* with the data the cluster lost scattered anew; None if none was lost."""
        lost: list[Any] = []
        with self._lock:
            for key, old in attachment.items():
                current = self.futures.get(key)
                if current is None:  # dropped: the call is over
                    continue
                if current is old and old.status != "finished":
                    self.futures[key] = self._scatter(self._data[key])
                    self._sent[key].append(self.futures[key])
                    lost.append(old)
                elif current is not old:
                    lost.append(old)  # another batch restored it already
            fresh = {key: self.futures[key] for key in attachment if key in self.futures}
        for old in lost:
            kept.release(old)
        return fresh if lost else None


def _killed(exc: BaseException) -> WorkerCrashedError:
    retries = getattr(exc, "allowed_failures", None)
    sent_to = f"the {retries + 1} workers" if isinstance(retries, int) else "the workers"
    return WorkerCrashedError(
        f"dask gave up on this batch (KilledWorker): {sent_to} it was sent to died while it "
        "was running or queued there, and dask reruns such a batch only up to "
        f"distributed.scheduler.allowed-failures={retries if retries is not None else '?'} "
        "times. The dask worker logs say why each died; dask's nannies restart the workers"
    )


def _lost(detail: str) -> WorkerCrashedError:
    return WorkerCrashedError(
        f"dask dropped this batch before it finished ({detail}): a worker holding this "
        "call's scattered data died, or the client lost its scheduler or was closed"
    )


CLOSED_ADVICE = (
    "dask cancels a client's batches when it closes. Close the client once the calls "
    "and `with Parallel(backend='dask')` blocks that use it have ended (keep them inside "
    "its `with Client(...)` block)"
)


def _closed(client: Any) -> WorkerCrashedError:
    """The error of a batch dask dropped because its client was closed: no worker died."""
    error = WorkerCrashedError(f"the dask Client this call ran on was closed ({client.status})")
    # read by executor.replies.crash_error and dispatch: the whole story, not a crash's
    error.not_a_crash = CLOSED_ADVICE  # type: ignore[attr-defined]
    return error


LOST_SCHEDULER_ADVICE = (
    "dask cancels a client's batches when it loses its scheduler; no worker died. Check that "
    "the scheduler is still running and reachable from this machine (its log says why it "
    "stopped), then run the call again: the client reconnects by itself while "
    "distributed.comm.timeouts.connect lasts, or make a new Client"
)


def _scheduler_lost(client: Any) -> WorkerCrashedError:
    """The error of a batch dask dropped because its client lost the scheduler: no worker died."""
    address = getattr(getattr(client, "scheduler", None), "address", None)
    error = WorkerCrashedError(
        f"the dask Client this call ran on lost its connection to the scheduler"
        f"{f' at {address}' if address else ''}"
    )
    error.not_a_crash = LOST_SCHEDULER_ADVICE  # type: ignore[attr-defined]
    return error


def _lost_scheduler(error: BaseException | None) -> bool:
    """Whether dask cancelled a batch because its client lost the scheduler."""
    return getattr(error, "reason", None) == "scheduler-connection-lost"


class _BatchFuture(Future):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` that follows a batch on the cluster.

    ``cancel()`` releases the dask future: the scheduler drops the batch if it has
    not started (a running batch finishes and its reply is discarded). If dask
    drops the batch because the data it carries was lost with a worker, the data
    is scattered again and the batch sent again (up to ``MAX_RESENDS`` times).
    """

    def __init__(self, backend: DaskBackend, fn: Callable[[Batch], Any], batch: Batch) -> None:
        super().__init__()
        self._backend = backend
        self._fn: Any = fn
        self._batch: Any = batch
        self._resends = 0
        self._kept: dict[str, Any] = {}  # kept data the batch carries after a MissingBlobs
        self._worker: str | None = None  # ... and the worker that asked for it
        self._dask_future: Any = None
        self._send()

    def _send(self) -> None:
        key = f"picklepool-batch-{uuid.uuid4().hex}"
        # The attachment (a dict of scattered futures) is passed on its own, where dask
        # finds the futures and hands their data to the worker.
        batch = self._batch
        attachment = {**(batch.attachment or {}), **self._kept} if self._kept else batch.attachment
        where: dict[str, Any] = {}
        if self._worker is not None:  # where the data is missing; elsewhere if it has gone
            where = {"workers": [self._worker], "allow_other_workers": True}
        client = self._backend.client
        if not _usable(client):  # closed since the call (or its `with Parallel()` block) began
            self._fn = self._batch = None
            try:
                self.set_exception(_closed(client))
            except InvalidStateError:  # cancelled meanwhile
                pass
            return
        self._dask_future = client.submit(
            run_attached, self._fn, batch._replace(attachment=None), attachment, key=key, pure=False, **where
        )
        self._dask_future.add_done_callback(self._settle)
        if self.cancelled():  # cancelled while being sent again
            self._release()

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._release()
        return True

    def _release(self) -> None:
        dask_future, self._dask_future = self._dask_future, None
        if dask_future is not None:
            kept.release(dask_future)

    def _settle(self, dask_future: Any) -> None:
        """Called by dask (in its callback thread) when the batch is over."""
        if self.cancelled() or dask_future is not self._dask_future:
            return
        value: Any = None
        error: BaseException | None = None
        try:
            status = dask_future.status
            if status == "finished":
                try:
                    value = dask_future.result()
                except CancelledError as exc:  # dropped since: its reply was on a lost worker
                    status, error = "cancelled", exc
                if type(value) is MissingBlobs:
                    if self._send_kept(value):
                        return
                    error = _lost(
                        f"the worker {value.worker} has no copy of {', '.join(value.keys)}, kept on "
                        "the cluster, and it could not be sent again: the worker holding it died "
                        "and the SharedState has changed since"
                    )
                    value = None
            if status == "error":
                error = _translate(dask_future.exception())
            elif status != "finished" and not _usable(self._backend.client):  # closed under the call
                error = _closed(self._backend.client)
            elif status != "finished" and _lost_scheduler(error or _cancel_reason(dask_future)):
                error = _scheduler_lost(self._backend.client)  # resending would wait for it
            elif status != "finished":
                if self._resend():
                    return
                if error is None:
                    try:
                        dask_future.result()
                    except BaseException as exc:  # the reason dask gives
                        error = exc
                error = _lost(f"{type(error).__name__}: {error}" if error else f"status {status!r}")
        except BaseException as exc:  # fetching the reply failed
            # (the client closed as it gathered a finished batch's reply: CommClosedError)
            error = exc if _usable(self._backend.client) else _closed(self._backend.client)
        self._release()
        self._fn = self._batch = None
        if isinstance(error, CancelledError):  # not by us: never let it pass for a cancel
            error = _lost(f"{type(error).__name__}: {error}")
        try:
            if error is None:
                self.set_result(value)
            else:
                self.set_exception(error)
        except InvalidStateError:  # cancelled meanwhile
            pass

    def _resend(self) -> bool:
        """Send the batch again if dask dropped it because the data it carries was lost."""
        if self._resends >= MAX_RESENDS:
            return False
        attachment = self._batch.attachment
        fresh = None
        if isinstance(attachment, dict):
            store = self._backend.store_of(attachment)
            fresh = store.restore(attachment) if store is not None else None
        restored = self._restore_kept()
        if fresh is None and not restored:
            return False
        self._resends += 1
        self._release()
        if fresh is not None:
            self._batch = self._batch._replace(attachment=fresh)
        self._send()
        return True

    def _send_kept(self, missing: MissingBlobs) -> bool:
        """Send the batch again with the kept data its worker had no copy of, to that worker."""
        if any(key in self._kept for key in missing.keys):
            return False  # it carried them already: something else is wrong
        futures = kept.kept_for(self._backend.client).futures(missing.keys)
        if futures is None:
            return False
        self._release()
        self._kept.update(futures)
        self._worker = missing.worker
        self._send()
        return True

    def _restore_kept(self) -> bool:
        """Scatter again the kept data this batch carries that the cluster lost; whether any was."""
        lost = tuple(key for key, future in self._kept.items() if future.status != "finished")
        if not lost:
            return False
        futures = kept.kept_for(self._backend.client).futures(lost)
        if futures is None:
            return False
        self._kept.update(futures)
        return True


def _cancel_reason(dask_future: Any) -> BaseException | None:
    """The exception dask set on a cancelled future (its ``reason``), without a round trip."""
    return getattr(getattr(dask_future, "_state", None), "exception", None)


def _translate(exc: BaseException | None) -> BaseException:
    """An exception dask raised for a batch (not a task's own: those come in the reply)."""
    from distributed.scheduler import KilledWorker

    if exc is None:
        return _lost("no exception given")
    if isinstance(exc, KilledWorker):
        return _killed(exc)
    if isinstance(exc, ImportError) and hasattr(exc, "add_note"):
        exc.add_note(
            "(raised by a dask worker while loading a picklepool batch: picklepool, and the "
            "modules of functions pickled by reference, must be importable on every worker)"
        )
    return exc


def _secede() -> bool:
    """Leave the dask worker's thread pool if this thread runs a dask task; whether it did."""
    from distributed import secede
    from distributed.worker import thread_state

    if getattr(thread_state, "key", None) is None or not kept._in_worker():
        return False  # not a task's thread (a plain client, or a thread the task started)
    secede()
    return True


def cluster_workers(n_jobs: int, threads: dict[str, int]) -> int:
    """Batches at once for *n_jobs* on a cluster of *threads* ({worker: threads}): a
    negative one counts from its total threads (-1: all of them; at least 1, as while
    an adaptive cluster is empty), as ``n_jobs`` does with local cores."""
    return max(1, sum(threads.values()) + 1 + n_jobs) if n_jobs < 0 else n_jobs


def effective_workers(n_jobs: int, scheduler_address: str | None = None) -> int:
    """What :func:`cluster_workers` gives on the cluster a call would run on now
    (``effective_n_jobs``); :class:`NoClusterError` without one, as a call raises."""
    return cluster_workers(n_jobs, cluster_threads(get_client(scheduler_address)))


class DaskBackend(ClusterBackend):
    """Batches on a dask.distributed cluster, through the current or a named scheduler.

    *n_workers* is how many batches to keep running at once; a negative number
    counts from the cluster's total threads (-1: all of them), as ``n_jobs`` does
    with local cores.
    """

    name = "dask"

    def __init__(self, n_workers: int, scheduler_address: str | None = None) -> None:
        self._address = scheduler_address
        self.client = get_client(scheduler_address)
        kept.hook_exit()
        threads = cluster_threads(self.client)  # {worker address: threads}
        warn_if_no_workers(self.client, threads)
        check_workers(self.client, threads)
        super().__init__(cluster_workers(n_workers, threads))
        self._inflight: weakref.WeakSet[_BatchFuture] = weakref.WeakSet()
        self._stores: weakref.WeakSet[ScatterStore] = weakref.WeakSet()
        # A call made inside a dask task: its thread leaves the worker's thread pool
        # while the call runs (as joblib's dask backend does), so the call's own batches
        # can run on that worker instead of waiting for a thread that waits for them.
        self._seceded = _secede()

    def refresh(self) -> None:
        """Before a call of a ``with Parallel()`` block: its client closed since, the current one."""
        if _usable(self.client):
            return
        closed = self.client
        try:
            self.client = get_client(self._address)
        except NoClusterError as exc:
            raise NoClusterError(
                f"the dask Client this `with Parallel(backend='dask')` block began with was closed "
                f"({closed.status}), and {exc}"
            ) from None
        threads = cluster_threads(self.client)
        warn_if_no_workers(self.client, threads)
        check_workers(self.client, threads)

    def release(self, wait: bool = True) -> None:
        """The call (or ``with`` block) is over: a task's thread takes its place back."""
        if self._seceded:
            self._seceded = False
            from distributed import rejoin

            rejoin()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(batch)`` on the cluster for one ``wire.Batch`` (*fn*: ``workers.runner.run_batch``)."""
        (batch,) = args
        future = _BatchFuture(self, fn, batch)
        self._inflight.add(future)
        return future

    def session_path(self) -> str | None:
        return None  # no folder shared across machines

    def blob_store(self) -> ScatterStore:
        store = ScatterStore(self.client)
        self._stores.add(store)
        return store

    def store_of(self, attachment: dict[str, Any]) -> ScatterStore | None:
        return next((store for store in list(self._stores) if store.owns(attachment)), None)

    def shutdown(self, kill: bool = False) -> None:
        """Drop this backend's batches still on the cluster; the cluster keeps running."""
        for future in list(self._inflight):
            future.cancel()
