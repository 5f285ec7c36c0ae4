"""``n_jobs=1``: each task runs in the calling thread as soon as its item is pulled.

joblib's sequential path, like the loop the call replaces, runs task *i* before it
pulls item *i + 1* from the caller's iterable, and with ``return_as="generator"`` runs
a task at the ``next()`` that needs it. Batches pulled ahead (1, 2, 4... items, as for
workers) ran tasks before the ``next()`` that needed them and let the caller's
generator run ahead of its tasks: a task saw its closure's variable, or a buffer the
generator reuses, as later items left them (``delayed(lambda: i)()`` for ``i`` in a
generator expression gave ``[0, 2, 2, 6, 6, ...]``), and a generator that reads what
the earlier tasks did (a cache they fill) did not see it yet.

A task's arguments are checked as a batch's (an item that is not ``(args tuple,
kwargs dict)`` goes through ``workers.tasks.execute``, as a batch of one), and its
exception is read as a batch's (``replies.ReplyReader.read``: notes, exits); a real
Ctrl-C landing in a task is told from the task's own ``KeyboardInterrupt`` as in
``backends.SequentialBackend`` (while a task runs, never while the caller's
generator or the code reading the results does). A call with ``timeout=`` runs each
task through ``workers.tasks.run_local``, which times it as a batch's.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from ..wire import Results, TaskFailed
from ..workers import joblibnest, mirror
from ..workers.tasks import execute, run_local
from . import functions
from .backends import unwatch_ctrl_c, watch_ctrl_c
from .batching import FixedBatcher
from .replies import Pending


def pulled(it: Iterator[Any], size: int) -> Iterator[Any]:
    """*it*'s items as joblib's sequential path pulls them: *size* at a time, every item of
    a batch before its first task runs (an explicit ``batch_size``; ``"auto"`` is 1 there,
    ``SequentialBackend.compute_batch_size``). An error of *it* comes after the items it
    gave before it."""
    if size <= 1:
        yield from it
        return
    while True:
        chunk: list[Any] = []
        error: Exception | None = None
        try:
            chunk.extend(itertools.islice(it, size))  # (extend keeps what came before an error)
        except Exception as exc:  # noqa: BLE001 - raised once the tasks before it have run
            error = exc
        yield from chunk
        if error is not None:
            raise error
        if len(chunk) < size:
            return


def _batch_of_one(func: Any, args: Any, kwargs: Any) -> tuple[list[Any], int, tuple[Any], tuple[Any] | None]:
    """``(funcs, fidx, args, kwargs)`` of a batch of this one task (``workers.tasks``' columns)."""
    # (empty keywords of another type than a dict, `[]`, `0`: checked, refused as by joblib)
    return (
        [func],
        0,
        (args,),
        (kwargs,) if kwargs or (kwargs is not None and type(kwargs) is not dict) else None,
    )


def run_here(call: Any, it: Iterator[Any], primed: bool) -> Iterator[list[Any]]:
    """Yield each task's result as a list of one, running the task as its item is pulled
    (a ``batch_size`` given: once its batch is, :func:`pulled`).

    *primed*: yield an empty list first, before any task runs (``Call.start``).
    """
    if primed:
        yield []
    report = call.on_progress
    timeout, interrupt = call.timeout, call.backend.interrupts_late_tasks
    nested = mirror.nesting()[0] > 0  # in a worker: joblib code its tasks run nests (joblibnest)
    i = 0
    reported: int | None = None
    size = call.batcher.size if isinstance(call.batcher, FixedBatcher) else 1
    try:
        for item in pulled(it, size):
            if call.pid != os.getpid():  # resumed in a forked child
                raise call.forked_error()
            try:
                func, args, kwargs = item
            except (TypeError, ValueError):
                func = None
            if func is None or not callable(func):
                functions.split([item], i, False)  # raises the TypeError naming the item
                func, args, kwargs = item
            watching = watch_ctrl_c()  # (Python's default SIGINT handler swapped around each task)
            reply: Any
            nest = joblibnest.enter() if nested and timeout is None else None  # (run_local's own)
            inside = functions.in_caller_task.set(True)
            try:
                if timeout is not None:  # timed as a batch is, in this thread or a helper
                    reply = run_local(*_batch_of_one(func, args, kwargs), i, timeout, None, interrupt)
                elif type(args) is tuple and (kwargs is None or type(kwargs) is dict):
                    try:
                        reply = func(*args, **kwargs) if kwargs else func(*args)
                    except BaseException as exc:  # noqa: BLE001 - read as a batch's failure below
                        reply = TaskFailed(i, exc, "")
                    else:
                        reply = Results([reply], 0.0)
                else:  # a list of arguments, a mapping of keywords, or not an item at all
                    reply = execute(*_batch_of_one(func, args, kwargs), i, format_tb=False, mark=False)
            finally:
                functions.in_caller_task.reset(inside)
                if nest is not None:
                    joblibnest.leave(nest)
                if watching:
                    unwatch_ctrl_c()
            if type(reply) is not Results:
                batch = Pending(i, i, [item])
                done: Future[Any] = Future()
                batch.future = done
                done.set_result(reply)
                call.replies.read(batch)  # raises the task's error, as a batch's
                raise RuntimeError(f"picklepool: unexpected reply for task {i}: {type(reply).__name__}")
            i += 1
            if report is not None:
                call.n_dispatched_tasks = call.n_dispatched_batches = i  # for Parallel.print_progress
                report(i, call.total)
                reported = call.total
            yield reply.values
        if report is not None and i and reported is None:
            # the end of the tasks, found after the last one was reported: once more,
            # with the total, so the last line says "finished" and a bar completes
            report(i, i)
    finally:
        if call.pid == os.getpid():
            call.n_dispatched_tasks = call.n_dispatched_batches = i
