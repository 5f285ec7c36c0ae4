"""``backend="multiprocessing"``: a ``multiprocessing.Pool`` running picklepool's batch runner.

For joblib users whose code relies on a start method: with ``fork`` (the default
on Linux before Python 3.14) the workers are forked when the call starts, so they
inherit the parent's globals as they are at that moment. A ``multiprocessing``
context passed as ``backend=`` (``multiprocessing.get_context("spawn")``) picks
the start method, as in joblib.

The data path is the loky backend's: the parent pickles each batch with the call's
pickler and the pool's workers run ``workers.runner.run_batch`` on the bytes, so
errors, cancellation, timeouts and shared-memory buffers behave the same. The
pool belongs to one ``Parallel`` call (or ``with Parallel()`` block) and is
terminated with it: no warm workers. A worker that dies (a crash, or a task
killed past its timeout) is replaced by ``multiprocessing.Pool``, which loses its
task without a word; :meth:`MultiprocessingBackend.check` notices the dead
process, and the call fails with ``WorkerCrashedError`` (or ``TaskTimeoutError``)
naming the task instead of waiting forever. The pool hands every worker process it
starts to the backend as it starts it (:class:`WatchedPool`): the pool's own list of
workers drops a dead one within 0.1 s, so a worker that started and died between
two looks at that list went unseen. A worker that ended with status 0 in the middle
of a batch (``os._exit(0)`` in a task) lost its task too: its status file says so.

A failure that stops the pool (:meth:`~MultiprocessingBackend.shutdown`: a crash, a
task past its timeout, Ctrl-C) leaves a ``with Parallel()`` block's next call a new
pool (:meth:`~MultiprocessingBackend.refresh`); only the end of the call or block
(:meth:`~MultiprocessingBackend.release`) closes the backend for good.

``picklepool.Executor`` uses this backend too, when its ``mp_context`` is "fork" or
it has ``max_tasks_per_child`` (passed to the pool as ``maxtasksperchild``: each
batch is one pool task). It starts the pool lazily, at the first batch (the
standard library forks its workers at the first ``submit``), and after a crash it
restarts it (:meth:`restart`).
"""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.pool
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from .. import signalhold
from ..errors import WorkerCrashedError
from ..workers import forkstart
from ..workers.prologue import INITIALIZER_FIX, initializer_failure, run_pool_initializer
from . import leftovers, poolstart
from .backend import Backend
from .exitcodes import status_name
from .session import current_session, session


class MultiprocessingBackend(Backend):
    """A ``multiprocessing.Pool`` of *context*'s start method (default: the platform's)."""

    name = "multiprocessing"
    mirrors_parent = True
    per_parallel = True
    inline_single = True
    reports_deaths = False  # its pool replaces a dead worker and loses its task: check() finds it

    def __init__(
        self,
        n_workers: int,
        context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        lazy: bool = False,
        names_initializer: bool = False,
    ) -> None:
        super().__init__(n_workers)
        self.context = context if context is not None else multiprocessing.get_context()
        # Parallel(initializer=...): what it raises is left in the session folder, check says it
        self._initializer = initializer if names_initializer else None
        if self._initializer is not None:
            created = poolstart.settings()  # (workers.prologue: what it sets stays until the parent's change)
            initializer, initargs = run_pool_initializer, (initializer, initargs, session().path, created)
        if self.context.get_start_method() == "fork":  # (its workers inherit the parent's log handlers)
            initializer, initargs = forkstart.start, (initializer, initargs)
        self._args = (n_workers, initializer, initargs, max_tasks_per_child)
        self._pool: Any = None
        self._pid = os.getpid()
        self._closed = False  # released (its call or block ended): no pool any more
        self._stopped = False  # stopped by a failure (shutdown): the next call starts a new one
        self._started: list[Any] = []  # the pool's workers as it starts them (WatchedPool)
        self._seen: set[Any] = set()  # every worker process started, until it ended cleanly
        self._running: set[Future[Any]] = set()  # submitted, not answered: failed if terminated
        # (call_id, task_index) the dead worker check() reported was running, if it said
        self.lost: tuple[int, int] | None = None
        if not lazy:
            try:
                self._start()
            except BaseException:  # a signal handler's, at the hold's end: the caller never gets
                self.release()  # this backend; its pool was left to the garbage collector, whose
                raise  # Finalize stopped it later, in whatever the main thread ran then

    def _start(self) -> None:
        """Start the pool, held (``signalhold``): its workers are forked here with "fork".

        A signal handler runs in ``os.fork``'s at-fork hooks (logging's, in every
        program), where what it raises is printed ("Exception ignored in ...") and lost:
        an alarm used as a deadline did not stop the call (nor does it with joblib's
        multiprocessing backend). Held, it runs once the pool is the backend's, which the
        call's end stops.
        """
        self._started = []
        with signalhold.held():
            self._pool = WatchedPool(*self._args, context=self.context.get_context(), started=self._started)
        self._pid = os.getpid()
        self._stopped = False
        self._seen = set()
        self._look()

    def _inherited(self) -> None:
        """In a process forked since the pool started: forget it, unseen (it is the parent's).

        Its threads are not there (a call waited for ever) and its workers are the
        parent's children (``terminate`` would stop them); the next batch starts a pool
        of this process's own.
        """
        if self._pool is not None and self._pid != os.getpid():
            self._pool, self._started, self._seen, self._running = None, [], set(), set()

    def refresh(self) -> None:
        """Before a call on a kept backend (``with Parallel() as p``): a working pool of its own.

        Not a parent's (a fork made since), and not one a failure of the block's previous
        call stopped (a worker's crash, a task past its timeout, Ctrl-C: :meth:`shutdown`):
        that call's error said the pool is replaced on the next call, and the next calls
        failed instead, saying the pool was closed as a generator read after its block.
        """
        self._inherited()
        if self._pool is None and self._stopped and not self._closed:
            self._start()  # (started now, as the block's first: a fork inherits today's globals)

    def _look(self) -> None:
        """Take in the workers the pool started since the last look; forget those that ended cleanly.

        Every worker goes through ``_seen`` until its end is known: one that died stays
        there, for :meth:`check` to report, however soon the pool replaced it.
        """
        started = self._started
        while started:  # (the pool's worker-handler thread appends to it meanwhile)
            self._seen.add(started.pop())
        # workers that ended cleanly (maxtasksperchild) need not be watched any more
        self._seen = {p for p in self._seen if p.exitcode is None or _lost_work(p)}

    def check(self) -> tuple[list[str], str | None]:
        """A worker that died took its task with it: say so (the call then fails)."""
        self._look()
        for proc in self._seen:
            code = proc.exitcode
            if code is not None and _lost_work(proc):
                failed = initializer_failure(session().path) if self._initializer is not None else None
                if failed is not None:
                    from .functions import label  # (imports cloudpickle: not at picklepool's import)

                    return [], (
                        # (no exit status named: its advice, for a worker's own code, is not this)
                        f"a worker process of backend='multiprocessing' (pid {proc.pid}) ended "
                        "because the initializer "
                        f"{label(self._initializer)} raised {failed['error']}: {failed['message']} "
                        f"in it (its traceback is above on stderr). {INITIALIZER_FIX}"
                    )
                during = " in the middle of a batch" if code == 0 else ""  # (its status file said so)
                self.lost = _running_task(proc)
                return [], (
                    f"a worker process of backend='multiprocessing' (pid {proc.pid}) died (exit "
                    f"code {status_name(code)}){during}; "
                    f"multiprocessing.Pool replaced it and lost its task{self._unguarded(code)}"
                )
        return [], None

    def _unguarded(self, code: int) -> str:
        """What a worker's exit status 1 most likely means with a "spawn" or "forkserver"
        context: the script's top level, run again in the new worker, made the call again
        without the ``if __name__ == "__main__":`` guard (multiprocessing's RuntimeError
        "An attempt has been made to start a new process...", on stderr). The advice for a
        status 1 spoke of file descriptors a task closed."""
        method = self.context.get_start_method()
        script = getattr(sys.modules.get("__main__"), "__file__", None)
        if code != 1 or method not in ("spawn", "forkserver") or not script:
            return ""
        return (
            f". With the {method!r} start method each new worker runs the top level of your "
            f"script ({script}) again: a script that starts its work (a Parallel call, an "
            'Executor) outside `if __name__ == "__main__":` ends every new worker so '
            "(multiprocessing's RuntimeError 'An attempt has been made to start a new "
            "process...' above on stderr); put the script's calls under that guard"
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()  # already queued in the pool: cannot be cancelled
        if self._pool is None and not self._closed and not self._stopped:
            self._start()  # lazy: the first batch starts (or forks) the workers
        self._look()
        try:
            if self._pool is None:
                raise ValueError("Pool not running")
            self._running.add(future)
            future.add_done_callback(self._running.discard)
            self._pool.apply_async(fn, args, callback=future.set_result, error_callback=future.set_exception)
        except ValueError as exc:  # "Pool not running"
            raise self._not_running() from exc
        return future

    def _not_running(self) -> RuntimeError:
        """Why a batch found no pool: the call or block ended, or a failure stopped the pool."""
        if self._closed:
            return RuntimeError(
                "this multiprocessing pool was closed while the call still had tasks to send "
                "(for example a return_as='generator' read after its `with Parallel(...)` "
                "block ended). Consume the generator inside the block."
            )
        return RuntimeError(
            "this multiprocessing pool was stopped during the call (a worker died, a task "
            "ran past its timeout, or Ctrl-C: the call's own error says which) while the call "
            "still had tasks to send; they were not run. Make the call again: the next call "
            "starts a new pool."
        )

    def session_path(self) -> str | None:
        return session().path

    def close(self) -> None:
        """Stop when idle: the workers finish and exit as ``multiprocessing`` workers do.

        Their exit hooks run (a nested pool of a worker is shut down and its files
        removed), unlike with :meth:`shutdown`, which terminates them.
        """
        self._inherited()
        pool, self._pool, self._closed = self._pool, None, True
        if pool is not None:
            pool.close()
            pool.join()

    def release(self, wait: bool = True) -> None:
        """The call or ``with Parallel()`` block that made this backend ended: the pool goes, for good.

        A batch sent after this (a generator read after its block ended) is told so;
        a pool stopped by a failure (:meth:`shutdown`) is started again by the block's
        next call instead (:meth:`refresh`).
        """
        self._closed = True
        self.shutdown()

    def restart(self) -> None:
        """After :meth:`shutdown`: the next batch starts a fresh pool."""
        self.shutdown(kill=True)
        self._stopped = False

    def shutdown(self, kill: bool = False) -> None:
        """Terminate the pool now; what it was running fails with ``WorkerCrashedError``.

        Until :meth:`refresh` (a kept block's next call) or :meth:`restart`, no new pool
        starts: the failed call's later batches are not run on one.
        """
        self._inherited()
        pool, self._pool, self._stopped = self._pool, None, True
        if pool is not None:
            if _terminate(pool):
                pool.join()
            self._look()  # (the workers it started until it ended)
            workers = self._seen | set(getattr(pool, "_pool", None) or ())
            # its terminated workers are no deaths for a later check() to report
            self._seen, self._started = set(), []
            # terminated workers run no exit hooks: their status files (and what else they
            # left) stayed in the session folder, one per worker per call, until exit
            leftovers.sweep(current_session(), {p.pid for p in workers if p.pid is not None})
        for future in list(self._running):  # terminate() drops their callbacks: they would hang
            try:
                future.set_exception(WorkerCrashedError("the worker running it was terminated"))
            except InvalidStateError:  # answered meanwhile
                pass


class WatchedPool(multiprocessing.pool.Pool):
    """A ``multiprocessing.Pool`` that appends every worker process it starts to *started*.

    The pool replaces a dead worker by itself (``Pool._maintain_pool``, every 0.1 s)
    and drops it from its list of workers (``Pool._pool``) then: with
    ``maxtasksperchild`` a new worker starts for each task, and one that started and
    died between two looks at that list was never seen. Its task was lost without a
    word, and the call, or an ``Executor``'s ``shutdown()``, waited for ever. Each
    worker is in *started* before it runs a task (before it starts).
    """

    def __init__(self, *args: Any, started: list[Any], **kwargs: Any) -> None:
        # The pool's worker-handler thread calls self.Process: a function holding the list
        # only (a bound method would hold the pool, which must stay collectable, as
        # multiprocessing's own pools are, to warn of one left running)
        self.Process = functools.partial(_start_watched, started)  # type: ignore[method-assign]
        super().__init__(*args, **kwargs)


def _start_watched(started: list[Any], ctx: Any, *args: Any, **kwargs: Any) -> Any:
    """``Pool.Process``: the worker process *ctx* makes, appended to *started* first."""
    proc = ctx.Process(*args, **kwargs)
    started.append(proc)
    return proc


def _running_task(proc: Any) -> tuple[int, int] | None:
    """``(call_id, task_index)`` of the batch *proc*, a dead worker, last said it ran, or None
    (it said nothing, or was between batches)."""
    found = current_session()
    if found is None or proc.pid is None:
        return None
    status = found.worker_status(proc.pid) or found.ended.get(proc.pid)
    return (status[0], status[1]) if status is not None and status[1] >= 0 else None


def _lost_work(proc: Any) -> bool:
    """Whether *proc*, a worker process of a pool, ended with a batch unfinished (its task lost).

    Any status but 0 is a death. Status 0 is also how a worker ends after its
    ``maxtasksperchild`` tasks, having removed its status file (``workers.control``):
    a worker that ends so in the middle of a batch (``os._exit(0)`` in a task) left
    that file saying which task it ran, and the call waited for ever for that task.
    """
    code = proc.exitcode
    if code is None:
        return False
    if code != 0:
        return True
    found = current_session()
    if found is None or proc.pid is None:
        return False
    # (swept meanwhile by another call's crash report: its last status is kept)
    status = found.worker_status(proc.pid) or found.ended.get(proc.pid)
    return status is not None and status[1] >= 0


TERMINATE_WAIT = 2.0  # seconds multiprocessing's Pool.terminate() gets before locks are looked at


def _terminate(pool: Any) -> bool:
    """``pool.terminate()``, not waiting for ever on a queue lock a dead worker held.

    ``multiprocessing.Pool.terminate`` kills the workers, then joins its task thread,
    which puts its end marker on the result queue under the queue's lock: a worker
    killed while it sent a result (the call's other tasks go on when one raised
    ``KeyboardInterrupt``, or times out) held that lock, and terminate waited for ever
    (joblib's multiprocessing backend does the same). Once every worker is dead, no one
    can be using the queues' locks: those still held are released. False if the pool
    still did not end (its threads are left waiting; its workers are dead).
    """
    ender = threading.Thread(target=pool.terminate, name="picklepool-pool-terminate", daemon=True)
    ender.start()
    ender.join(TERMINATE_WAIT)
    if not ender.is_alive():
        return True
    workers = list(getattr(pool, "_pool", None) or ())
    for proc in workers:
        if proc.exitcode is None:
            proc.kill()
    for proc in workers:
        proc.join(TERMINATE_WAIT)
    if all(proc.exitcode is not None for proc in workers):
        for queue, name in (
            (getattr(pool, "_outqueue", None), "_wlock"),
            (getattr(pool, "_inqueue", None), "_rlock"),
        ):
            lock = getattr(queue, name, None)
            if lock is not None and not lock.acquire(False):
                lock.release()  # (a dead worker's: a multiprocessing.Lock is any process's to release)
            elif lock is not None:
                lock.release()
    ender.join(TERMINATE_WAIT)
    return not ender.is_alive()
