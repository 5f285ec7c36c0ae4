"""The threading backend's pool of daemon threads (``ThreadingBackend``), as joblib's.

A ``ThreadPoolExecutor``'s threads are joined at the interpreter's exit; joblib's
(``multiprocessing.pool.ThreadPool``) are daemon threads, which a program's end
does not wait for. Tasks still queued when the main thread ends never start.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from . import ongoing


class DaemonThreads:
    """The threading backend's pool: at most *n_workers* daemon threads, as joblib's.

    A ``ThreadPoolExecutor``'s threads are joined at the interpreter's exit, each once it
    has run its task to the end: after Ctrl-C in a call (or with a generator dropped),
    the program went on for as long as the tasks still running did (30 s where joblib's
    ended at once: its ``multiprocessing.pool.ThreadPool`` threads are daemon threads).
    A thread is started for a task when none is idle. Once the main thread has ended and
    the calls of non-daemon threads have (:func:`_cancel_queued_at_exit`), new tasks are
    refused (as the standard library's pools refuse them then), and those still queued
    never start.
    """

    def __init__(self, n_workers: int) -> None:
        self._n_workers = n_workers
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False
        # dropped without shutdown (a `with Parallel()` block never left): its threads end
        # after the tasks queued, as a collected ThreadPoolExecutor's do
        weakref.finalize(self, _end_threads, self._queue, self._threads)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if _closed_at_exit == os.getpid():
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            future: Future[Any] = Future()
            self._queue.put((future, fn, args))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._n_workers:
                thread = threading.Thread(
                    target=_run_queued,
                    args=(self._queue, self._idle),
                    name=f"picklepool_{len(self._threads)}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            threads = list(self._threads)
            _end_threads(self._queue, threads)  # one None each: a thread ends after the tasks before it
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()


def _end_threads(tasks: queue.SimpleQueue[Any], threads: list[threading.Thread]) -> None:
    for _ in threads:
        tasks.put(None)


def _run_queued(tasks: queue.SimpleQueue[Any], idle: threading.Semaphore) -> None:
    """A :class:`DaemonThreads` thread: run the queued tasks until the pool's end (None)."""
    while True:
        item = tasks.get()
        if item is None:
            return
        future, fn, args = item
        del item
        if future.set_running_or_notify_cancel():
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - the future carries it, as a pool's does
                future.set_exception(exc)
                del exc
            else:
                future.set_result(result)
                del result
        del future, fn, args  # (a finished task's arguments and result are not kept)
        idle.release()


_thread_pools: weakref.WeakSet[DaemonThreads] = weakref.WeakSet()
_thread_exit_hooked = 0  # the pid that registered _cancel_queued_at_exit
_closed_at_exit = 0  # the pid whose _cancel_queued_at_exit ran: its pools take no more tasks


def thread_pool(n_workers: int) -> DaemonThreads:
    """A threading backend's pool; its queued tasks are dropped when the main thread ends."""
    global _thread_exit_hooked
    threads = DaemonThreads(n_workers)
    _thread_pools.add(threads)
    register = getattr(threading, "_register_atexit", None)
    if _thread_exit_hooked != os.getpid() and register is not None:
        _thread_exit_hooked = os.getpid()
        with contextlib.suppress(RuntimeError):  # the interpreter is already exiting
            register(_cancel_queued_at_exit)
    return threads


def _cancel_queued_at_exit() -> None:
    """The main thread ended: once the calls of non-daemon threads have ended (they run
    to their end, as Python waits for those threads: ``ongoing.wait_at_exit``), the
    tasks still queued on threading pools never start, and the pools take no more.

    Those of an unread or abandoned ``return_as="generator"`` (in a global) started
    after the program's end (as loky's workers still busy at exit are killed); those
    running go on in their daemon threads until the interpreter ends. A call still
    running in a daemon thread fails, naming its tasks (``replies.ReplyReader.read``).
    """
    global _closed_at_exit
    ongoing.wait_at_exit()
    _closed_at_exit = os.getpid()
    for threads in list(_thread_pools):
        with contextlib.suppress(Exception):  # at exit: the others all the same
            threads.shutdown(wait=False, cancel_futures=True)
