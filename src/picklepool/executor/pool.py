"""The process's one warm loky executor, shared by calls from every thread.

loky's ``get_reusable_executor`` keeps one executor per *thread* (loky 3.7), so calls
made from three new threads would start three pools. picklepool keeps one for the
whole process, behind a lock, and lends it to each call (:func:`acquire`, then
:func:`release` when the call, or its ``with Parallel()`` block, ends):

- same settings (idle timeout, worker environment, initializer): the call shares
  it; an idle executor is first resized to the call's ``n_jobs``, a busy one is
  shared as it is when it has at least that many workers;
- other settings (or more workers) while another call is using it: this call
  gets an executor of its own, shut down at its release, so neither call waits
  for the other and the running one is not disturbed;
- an ``Executor`` with an initializer (``workers.prologue.own_pool``): always an
  executor of its own, held for the executor's life; the shared one is left as it is
  (taking its place made every call of other settings meanwhile, each ``Parallel``
  call included, start and stop a pool of its own);
- broken (a worker died) or shut down: replaced by a fresh one;
- no call holds it but it still runs jobs (left by a call that was cancelled: an
  error, a generator closed early): its workers are killed and a fresh one
  starts, instead of waiting for tasks nobody will read (joblib's abort kills its
  workers too).

``picklepool.shutdown()`` stops them all (:func:`shutdown_all`): first it lets the calls
other threads run end on them, and no executor is taken while it stops them
(``executor.ongoing``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import weakref
from typing import Any

from .. import lokycompat
from ..workers.prologue import own_pool, start_loky_worker
from . import forkserver, lanes, ongoing, poolstart, reaper
from .session import announce_child, session, sweep_children

# Re-entrant: starting or checking a pool allocates, so a collection may start in this
# thread while it holds the lock, and a generator dropped in a reference cycle that it
# collects gives its pool back here (release): a plain lock waited for ever
_lock = threading.RLock()
_shared: Any = None  # the shared executor, or None
_key: Any = None  # the settings it was started with
_users = 0  # calls (or with-blocks) holding it now

# Every executor picklepool started, for shutdown().
started: weakref.WeakSet[Any] = weakref.WeakSet()


def _forget_in_child() -> None:
    """In a forked child: the parent's executors are not this process's (its calls start their own)."""
    global _shared, _key, _users, started, _lock, _created
    # another thread may have held the lock at the fork (stopping a pool under it takes a
    # while): the child's copy would stay held, and its first call wait for ever
    _lock = threading.RLock()
    _shared, _key, _users, _created = None, None, 0, None
    started = weakref.WeakSet()
    lokycompat.forget_parent_children()  # its exit must not join the parent's workers


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays in initargs: compare by identity
        return a is b


def acquire(
    n_workers: int,
    idle_timeout: float,
    env: dict[str, str] | None,
    initializer: Any = None,
    initargs: tuple[Any, ...] = (),
) -> tuple[Any, bool]:
    """An executor for one call: ``(executor, shared)``; give it back with :func:`release`.

    Waits while ``picklepool.shutdown()`` stops the pools (``executor.ongoing``).
    """
    with ongoing.taking():
        return _take(n_workers, idle_timeout, env, initializer, initargs)


def _take(
    n_workers: int,
    idle_timeout: float,
    env: dict[str, str] | None,
    initializer: Any,
    initargs: tuple[Any, ...],
) -> tuple[Any, bool]:
    """:func:`acquire`'s choice of an executor (the rules in this module's docstring)."""
    global _shared, _key, _users
    key = (idle_timeout, tuple(sorted(env.items())) if env else (), initializer, initargs)
    if initializer is own_pool:  # an Executor's initializer's workers: never the shared pool
        return _new(n_workers, idle_timeout, env, initializer, initargs), False
    with _lock:
        executor = _shared
        if executor is not None and not lokycompat.usable(executor):
            # its own calls have seen the error; loky ends it (and the workers it killed:
            # what they left goes with them, see leftovers.sweep). Killed: a pool flagged
            # broken by picklepool (lanes: a death loky did not see) has a stuck manager
            # thread, which would not tell its workers to leave
            reaper.stop(executor, kill=True)
            executor, _shared, _users = None, None, 0
        if executor is not None:
            same = _same(_key, key)
            if same and _users and lokycompat.size(executor) >= n_workers:
                _users += 1
                return executor, True
            if not _users:
                if lanes.busy(executor):  # only leftovers of cancelled calls run there
                    reaper.stop(executor, wait=False, kill=True)
                elif same:
                    if lokycompat.size(executor) != n_workers:
                        lanes.release_and_wait(executor)  # loky would wait for its jobs, and warn
                    lokycompat.resize(executor, n_workers)
                    _users = 1
                    return executor, True
                else:
                    reaper.stop(executor)
                executor = _shared = None
        if executor is None:
            _shared = _new(n_workers, idle_timeout, env, initializer, initargs, _start_settings(key))
            _key, _users = key, 1
            return _shared, True
    return _new(n_workers, idle_timeout, env, initializer, initargs), False


def prepare() -> None:
    """Start the forkserver the next pool's workers are forked from (``executor.forkserver``).

    Only when no warm pool is there (read without the lock: a hint; ``_new`` makes sure).
    Not while ``picklepool.shutdown()`` stops the forkserver (it waits for its end).
    """
    if _shared is None:
        with ongoing.taking():
            forkserver.use()


# (the shared pool's key, the parent's settings as the first pool of that key was made)
_created: tuple[Any, dict[str, Any]] | None = None


def _start_settings(key: Any) -> dict[str, Any] | None:
    """The parent's settings for the shared pool of *key* with an initializer
    (``executor.poolstart``): those of the first pool made for that key, also for the one
    made after it broke (a task's crash), so that what the initializer set stays or goes
    in its workers as in the first pool's, whatever crashed in between."""
    global _created
    initializer = key[2]
    if initializer is None or initializer is own_pool:
        return None
    if _created is None or not _same(_created[0], key):
        _created = (key, poolstart.settings())
    return _created[1]


def _new(
    n_workers: int,
    idle_timeout: float,
    env: dict[str, str] | None,
    initializer: Any,
    initargs: tuple[Any, ...],
    created: dict[str, Any] | None = None,
) -> Any:
    """A new loky executor whose workers watch this process from their start
    (``start_loky_worker``), tracked by the reaper: the shared pool, or one call's (or one
    ``Executor``'s) own, stopped at its release. *created*: the parent's settings its
    initializer starts from (None: now's)."""
    forkserver.use()
    announce_child()  # a forked child: before its pool's semaphores (session.sweep_children)
    made: list[Any] = []

    def before_start(executor: Any) -> None:
        made.append(executor)
        reaper.track(executor)  # before its workers start: a shutdown in another thread meanwhile knows them

    try:
        executor = lokycompat.new_executor(
            n_workers,
            idle_timeout,
            env,
            start_loky_worker,
            # the pid: a worker may boot after this process died; the start method: workers.mirror
            (
                initializer,
                initargs,
                os.getpid(),
                multiprocessing.get_start_method(allow_none=True),
                # where a failing initializer leaves its exception (executor.replies names it)
                session().path if initializer is not None and initializer is not own_pool else None,
                # the settings now: what the initializer sets of them stays until the parent's change
                None
                if initializer is None or initializer is own_pool
                else created
                if created is not None
                else poolstart.settings(),
            ),
            before_start=before_start,
        )
    except BaseException:
        # its start cut (Ctrl-C during the forkserver's reply): the workers started stop now
        for half in made:
            reaper.stop(half, kill=True)
        raise
    started.add(executor)
    reaper.track(executor)
    return executor


def release(executor: Any, shared: bool) -> None:
    """The call that acquired *executor* is done with it."""
    global _shared, _users
    if not shared:
        busy = lanes.busy(executor)  # leftovers of a cancelled call: not waited for
        reaper.stop(executor, wait=not busy, kill=busy)
        return
    with _lock:
        if executor is _shared and _users > 0:
            _users -= 1
        if (
            executor is _shared
            and not _users
            and lokycompat.broken(executor)
            and not lokycompat.interpreter_exiting()
        ):
            reaper.stop(executor, kill=True)  # ended now, not at the next call (acquire); at exit, by reaper
            _shared = None


def shutdown_all(wait: bool = True, kill: bool = False) -> None:
    """Stop every executor picklepool started, then the forkserver (a new one starts at the next call).

    *wait* (without *kill*): the calls other threads run end first, on their workers. No
    pool starts while they are stopped: a call needing one waits (``executor.ongoing``).
    """
    if wait and not kill:
        ongoing.wait_for_others()
    with ongoing.stopping():
        _stop_all(wait, kill)


def _stop_all(wait: bool, kill: bool) -> None:
    """Stop every executor in :data:`started`, then the forkserver, whose last workers they ran."""
    global _shared, _users
    with _lock:
        executors = list(started)  # strong references first: the WeakSet would drop _shared
        # the shared pool no call holds, still running tasks: those of a cancelled call (an
        # error, a closed generator), whose results nobody reads: killed at once, as at the
        # next call (_take) and at exit (they were given 5 s, then killed, each with a note
        # on stderr of a worker that "did not stop")
        leftovers = _shared if _shared is not None and not _users and lanes.busy(_shared) else None
        _shared, _users = None, 0
    before = lokycompat.started_workers()
    # without kill: named if a worker still runs a task at the deadline (a generator's,
    # which it does not wait for: ongoing), in that call's error (it blamed the OOM killer)
    why = "picklepool.shutdown(kill=True)" if kill else "picklepool.shutdown()"
    for executor in executors:
        cut = kill or executor is leftovers
        # a deadline, then the workers are killed
        reaper.stop(executor, wait=wait, kill=cut, why=why if kill or not cut else "")
        started.discard(executor)
    forkserver.stop(wait=wait)
    sweep_children()  # what this process's ended forked children left
    if wait:
        # the workers killed (here, by a failed call, a closed generator): multiprocessing's
        # list of children held them, and each one's semaphore (loky's exit lock) stayed in
        # /dev/shm until the next pool's start or the exit
        lokycompat.reap_workers(before, reaper.EXIT_DEADLINE)
