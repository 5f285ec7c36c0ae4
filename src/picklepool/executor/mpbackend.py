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
process (the pool's ``_pool`` list of processes, read here only), and the call
fails with ``WorkerCrashedError`` (or ``TaskTimeoutError``) naming the task
instead of waiting forever.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .backend import Backend
from .session import session


class MultiprocessingBackend(Backend):
    """A ``multiprocessing.Pool`` of *context*'s start method (default: the platform's)."""

    name = "multiprocessing"
    mirrors_parent = True
    per_parallel = True
    inline_single = True

    def __init__(
        self,
        n_workers: int,
        context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(n_workers)
        self.context = context if context is not None else multiprocessing.get_context()
        self._pool = self.context.Pool(n_workers, initializer, initargs)
        self._seen: set[Any] = set()  # every worker process seen: a dead one stays visible
        self._look()

    def _look(self) -> None:
        self._seen.update(getattr(self._pool, "_pool", ()) or ())

    def check(self) -> tuple[list[str], str | None]:
        """A worker that died took its task with it: say so (the call then fails)."""
        self._look()
        for proc in self._seen:
            code = proc.exitcode
            if code is not None and code != 0:
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                return [], (
                    f"a worker process of backend='multiprocessing' (pid {proc.pid}) died ({how}); "
                    "multiprocessing.Pool replaced it and lost its task"
                )
        return [], None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()  # already queued in the pool: cannot be cancelled
        self._look()
        try:
            self._pool.apply_async(fn, args, callback=future.set_result, error_callback=future.set_exception)
        except ValueError as exc:  # "Pool not running"
            raise RuntimeError(
                "this multiprocessing pool was closed while the call still had tasks to send "
                "(for example a return_as='generator' read after its `with Parallel(...)` "
                "block ended). Consume the generator inside the block."
            ) from exc
        return future

    def session_path(self) -> str | None:
        return session().path

    def shutdown(self, kill: bool = False) -> None:
        self._pool.terminate()
        self._pool.join()
