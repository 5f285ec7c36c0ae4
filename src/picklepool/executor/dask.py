"""The dask.distributed backend: the same batches, run on a dask cluster.

    Call ──run_batch(header, function specs, task bytes, blobs)──▶ client.submit
      ──scheduler──▶ dask worker thread: workers.runner.run_batch ──▶ reply bytes
      ──dask future──▶ _BatchFuture (a concurrent.futures.Future) ──▶ Call

Tasks cross as the bytes the call's pickler made, exactly as with loky; dask only
moves them (it pickles ``run_batch`` by reference, so picklepool must be
importable on every worker, like the modules of the functions pickled by
reference). Data a call sends once (functions larger than
``dispatch.INLINE_LIMIT``, and anything a reducer puts with
``CallContext.put_blob``) is scattered to the cluster once per call
(:class:`ScatterStore`); every batch carries the call's scattered futures, dask
hands their bytes to the worker that runs it, and the worker rebuilds each
object once (``workers.blobs``, ``workers.cache``).

What differs from loky, and why:

- There is no session folder shared across machines, so no cancel flags and no
  worker status files: a failed call cancels the batches dask has not started
  (batches already running finish), and a crash names the batch's tasks rather
  than the one task that was running.
- ``timeout``: dask runs tasks in worker threads, where SIGALRM cannot reach, so
  the runner waits for each task with a deadline and interrupts a late one
  with an asynchronous exception (``workers.runner._execute_watched``).
- A worker that dies: dask reschedules its batch on another worker, up to
  ``distributed.scheduler.allowed-failures`` times (3 by default), then gives up
  with ``KilledWorker``, which is raised here as ``WorkerCrashedError``.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any

from ..errors import WorkerCrashedError
from ..workers.blobs import BlobRef
from .backends import Backend

NO_CLUSTER = (
    "backend='dask' found no dask cluster: no distributed.Client is current and no "
    "scheduler_address was given. Start one in this process, e.g. "
    "`from distributed import Client, LocalCluster; client = Client(LocalCluster())`, "
    "or point picklepool at a running scheduler with "
    "parallel_config(backend='dask', scheduler_address='tcp://HOST:8786') "
    "(started with `dask scheduler`, plus `dask worker tcp://HOST:8786` on each machine)."
)

# Clients picklepool opened itself (scheduler_address), by address; closed by shutdown().
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


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
            raise RuntimeError(NO_CLUSTER)
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


def close_clients() -> None:
    """Close the clients picklepool opened (never the user's own client)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def total_threads(client: Any) -> int:
    """Worker threads in the cluster right now (0 while an adaptive cluster is empty)."""
    return sum(client.nthreads().values())


class ScatterStore:
    """A call's once-sent data, scattered to the cluster (a ``pickler.context.BlobStore``).

    ``put`` sends the bytes to one worker (``scatter(broadcast=False)``); the other
    workers fetch them from there when a batch that carries them lands on them.
    The data lives as long as the call: ``drop`` releases it.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.futures: dict[str, Any] = {}

    def put(self, key: str, data: bytes) -> BlobRef:
        if key not in self.futures:
            [self.futures[key]] = self.client.scatter([data], hash=False)
        return BlobRef(key, len(data))

    def drop(self, key: str) -> None:
        future = self.futures.pop(key, None)
        if future is not None:
            future.release()

    def attachment(self) -> dict[str, Any] | None:
        """The call's scattered futures: dask replaces them by their bytes on the worker."""
        return dict(self.futures) if self.futures else None


def _killed(exc: BaseException) -> WorkerCrashedError:
    retries = getattr(exc, "allowed_failures", None)
    ran_on = f"the {retries + 1} workers it ran on" if isinstance(retries, int) else "its workers"
    return WorkerCrashedError(
        f"dask gave up on this batch (KilledWorker) because {ran_on} died while running it; "
        f"dask reruns a batch whose worker died up to distributed.scheduler.allowed-failures="
        f"{retries if retries is not None else '?'} times, and the dask worker logs say why "
        "each one died"
    )


def _lost(detail: str) -> WorkerCrashedError:
    return WorkerCrashedError(
        f"dask dropped this batch before it finished ({detail}): a worker holding this "
        "call's scattered data died, or the client lost its scheduler or was closed"
    )


class _BatchFuture(Future):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` that follows one dask future.

    ``cancel()`` releases the dask future: the scheduler drops the batch if it has
    not started (a running batch finishes and its reply is discarded).
    """

    def __init__(self, dask_future: Any) -> None:
        super().__init__()
        self._dask_future: Any = dask_future
        dask_future.add_done_callback(self._settle)

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._release()
        return True

    def _release(self) -> None:
        dask_future, self._dask_future = self._dask_future, None
        if dask_future is not None:
            dask_future.release()

    def _settle(self, dask_future: Any) -> None:
        """Called by dask (in its callback thread) when the batch is over."""
        if self.cancelled():
            return
        value: Any = None
        error: BaseException | None = None
        try:
            if dask_future.status == "finished":
                value = dask_future.result()
            elif dask_future.status == "error":
                error = _translate(dask_future.exception())
            else:
                try:
                    dask_future.result()
                except BaseException as exc:  # the reason dask gives
                    error = _lost(f"{type(exc).__name__}: {exc}")
                else:
                    error = _lost(f"status {dask_future.status!r}")
        except BaseException as exc:  # fetching the reply failed
            error = exc
        finally:
            self._release()
        if isinstance(error, CancelledError):  # not by us: never let it pass for a cancel
            error = _lost(f"{type(error).__name__}: {error}")
        try:
            if error is None:
                self.set_result(value)
            else:
                self.set_exception(error)
        except InvalidStateError:  # cancelled meanwhile
            pass


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


class DaskBackend(Backend):
    """Batches on a dask.distributed cluster, through the current or a named scheduler.

    *n_workers* is how many batches to keep running at once; a negative number
    counts from the cluster's total threads (-1: all of them), as ``n_jobs`` does
    with local cores.
    """

    name = "dask"
    moves_bytes = True

    def __init__(self, n_workers: int, scheduler_address: str | None = None) -> None:
        self.client = get_client(scheduler_address)
        if n_workers < 0:
            n_workers = max(1, total_threads(self.client) + 1 + n_workers)
        super().__init__(n_workers)
        self._inflight: weakref.WeakSet[_BatchFuture] = weakref.WeakSet()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        key = f"picklepool-batch-{uuid.uuid4().hex}"
        future = _BatchFuture(self.client.submit(fn, *args, key=key, pure=False))
        self._inflight.add(future)
        return future

    def session_path(self) -> str | None:
        return None  # no folder shared across machines

    def blob_store(self) -> ScatterStore:
        return ScatterStore(self.client)

    def shutdown(self, kill: bool = False) -> None:
        """Drop this backend's batches still on the cluster; the cluster keeps running."""
        for future in list(self._inflight):
            future.cancel()
