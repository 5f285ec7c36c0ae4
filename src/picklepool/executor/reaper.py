"""Stopping loky pools with a deadline: nothing waits without bound for a worker.

loky joins a worker without a timeout when it retires it (a task timed out, memory
recycling), when it idles out and when its executor shuts down. A worker whose exit
hangs (an ``atexit`` function of a task's that waits, a child it waits for; the
non-daemon threads its tasks left get 1 s, ``workers.leaving``) would stall every later
call and the interpreter's exit. Three rules, applied here:

- **A worker's exit does not depend on its children.** In a process that is itself
  a loky worker, the pools picklepool started (nested ``Parallel`` calls) are
  killed at once when the process exits, before ``multiprocessing`` joins the
  children and before loky joins its manager thread (``lokycompat.before_loky_exit``).
- **Every join has a deadline.** :func:`stop` (``picklepool.shutdown``, Ctrl-C, the
  interpreter's exit) waits ``EXIT_DEADLINE`` seconds for a pool to stop, then
  kills its processes (and their children) and says so on stderr.
  :func:`check`, run by a waiting call, kills a worker that left its pool but has
  not exited ``EXIT_DEADLINE`` seconds later; the call warns about it.
- **No progress is an error.** A call whose pool cannot deliver its replies any
  more (loky's manager thread is gone while the call waits) fails with
  ``WorkerCrashedError`` instead of waiting forever. A slow task is not "no
  progress": use ``timeout=`` for that.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from .. import lokycompat, signalhold
from . import forkserver, interrupts, lanes, leftovers, ongoing, session

if TYPE_CHECKING:
    import psutil

EXIT_DEADLINE = 5.0  # seconds a worker may take to exit once told to
UNNOTICED_DEATH = 10.0  # seconds a dead worker may stay in its pool before the pool counts as stuck
NESTED_EXIT_JOIN = 1.0  # seconds a worker's exit waits for the threads of the pools it killed
ENDER_EXIT_JOIN = 1.0  # seconds the exit waits for the threads ending stopped pools' call queues


_executors: weakref.WeakSet[Any] = weakref.WeakSet()  # the loky executors this process used
# the threads that end the call queues of pools stopped without waiting (_end_queue): the
# queue's semaphores are unlinked there, and the exit waits for them (_at_exit)
_enders: list[threading.Thread] = []
# executor -> who killed its workers on purpose (``stop(why=...)``), for the calls still on it
_stopped_by: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_leaving: dict[int, float] = {}  # pid of a worker that left its pool -> when first seen so
# executor -> {pid of a dead worker it still lists: when first seen so} (_unnoticed_death)
_dead: weakref.WeakKeyDictionary[Any, dict[int, float]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _forget_in_child() -> None:
    """In a forked child: the parent's pools are not this process's to stop or reap."""
    global _executors, _lock
    _lock = threading.Lock()  # held by another thread at the fork: held for ever in the child
    _executors = weakref.WeakSet()
    _enders.clear()
    _leaving.clear()
    _dead.clear()
    _stopped_by.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def track(executor: Any) -> None:
    """Watch *executor* (a loky executor this process uses) from now on."""
    with _lock:
        _executors.add(executor)
    lokycompat.before_loky_exit(_at_exit)


def _working() -> set[int]:
    with _lock:
        executors = list(_executors)
    return {pid for executor in executors for pid in lokycompat.worker_processes(executor)}


def _running(proc: Any) -> bool:
    """True while *proc*, a worker this process started, has not exited.

    A zombie has exited (it is not reaped here). So has a process that is no longer
    this process's child: once a worker is reaped, its pid may be reused by any
    process, which must not be taken for the worker (and killed).
    """
    import psutil  # (imported as used: a first call's import overlaps its forkserver's start)

    try:
        found = psutil.Process(proc.pid)
        return _ours(found) and found.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _ours(proc: psutil.Process) -> bool:
    """Whether *proc* is a child of this process or of its forkserver (psutil.Error if gone)."""
    ppid = proc.ppid()
    return ppid == os.getpid() or forkserver.started(ppid)


def kill_tree(pid: int) -> None:
    """SIGKILL *pid* and every process below it (its own pools first).

    What they made and can no longer remove (their nested calls' folders, their
    pools' semaphores) is removed now (``executor.leftovers``), not at the
    parent's exit.
    """
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:  # gone already (loky kills the rest of a broken pool itself)
        leftovers.remove([pid])
        return
    except psutil.Error:
        return
    try:
        if not _ours(root):
            # not this process's child: its pid was reused, or it is a worker of the
            # process this one was forked from (that process's to stop)
            return
    except psutil.Error:
        return
    try:
        procs = root.children(recursive=True) + [root]
    except psutil.Error:  # it ended meanwhile: the processes below it are init's now
        procs = [root]
    killed = []
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            if psutil.pid_exists(proc.pid):
                continue  # its pid is another process's now (psutil saw it reused): not its leftovers
            # gone already: what it left is left all the same
        except psutil.Error:
            continue
        killed.append(proc.pid)
    leftovers.remove(killed)


def check(executor: Any) -> tuple[list[str], str | None]:
    """One look at *executor*'s pool: ``(notes, stalled)``.

    *notes* name the retiring workers killed just now, past ``EXIT_DEADLINE``;
    *stalled* says why the pool cannot deliver replies any more, or is None.
    """
    notes = reap_retiring()
    thread = lokycompat.manager_thread(executor)
    stalled = None
    if thread is not None and not thread.is_alive():
        stalled = (
            "the worker pool stopped delivering results: loky's manager thread ended while tasks were pending"
        )
    elif thread is not None and _unnoticed_death(executor):
        stalled = (
            "the worker pool stopped delivering results: a worker died in the middle of sending "
            "a result back, and loky's manager thread waits for the rest of it"
        )
    return notes, stalled


def _unnoticed_death(executor: Any, now: float | None = None) -> bool:
    """True when a worker of *executor* has been dead ``UNNOTICED_DEATH`` seconds and loky
    still lists it: its manager thread, which drops a worker within moments of its death
    (or breaks the pool), is stuck. A worker that died while writing a result (the OOM
    killer, a kill) left half a message in the result pipe, and the thread waits in
    ``recv`` for the rest, which never comes: the call waited for ever (as under joblib).
    """
    now = time.monotonic() if now is None else now
    # gone or a zombie (leftovers.exited), not _running: a worker whose forkserver was killed
    # is no child of ours any more, and works on
    dead = {pid for pid in lokycompat.worker_processes(executor) if leftovers.exited(pid)}
    with _lock:
        seen = _dead.setdefault(executor, {})
        for pid in set(seen) - dead:
            del seen[pid]
        for pid in dead:
            seen.setdefault(pid, now)
        return any(now - seen[pid] >= UNNOTICED_DEATH for pid in dead)


def reap_retiring(now: float | None = None) -> list[str]:
    """Kill the workers that left their pool ``EXIT_DEADLINE`` seconds ago and still run."""
    now = time.monotonic() if now is None else now
    notes = []
    working = _working()
    alive = set()
    for proc in lokycompat.started_workers():
        if proc.pid is None or proc.pid in working or not _running(proc):
            continue
        alive.add(proc.pid)
        with _lock:
            since = _leaving.setdefault(proc.pid, now)
        if now - since >= EXIT_DEADLINE:
            kill_tree(proc.pid)
            notes.append(
                f"worker pid {proc.pid} had not exited {EXIT_DEADLINE:g} s after it left its pool "
                "(retired after a timeout or for memory, or idle): it was killed. A task left "
                "something that blocks a process's exit, such as a non-daemon thread."
            )
    with _lock:
        for pid in set(_leaving) - alive:
            del _leaving[pid]
    return notes


def stopped_by(executor: Any) -> str:
    """Who killed *executor*'s workers on purpose (``stop(why=...)``), or ``""``."""
    return _stopped_by.get(executor, "") if executor is not None else ""


def stop(
    executor: Any, wait: bool = True, kill: bool = False, deadline: float | None = None, why: str = ""
) -> list[str]:
    """Shut *executor* down; with *wait*, for at most *deadline* seconds, then kill.

    *deadline* defaults to ``EXIT_DEADLINE``.
    *kill* kills the workers at once (Ctrl-C, a worker's own exit); *why* names who
    asked (``picklepool.shutdown(kill=True)``), for the error of a call still running
    there (:func:`stopped_by`); without *kill*, it names who killed the workers still
    running a task at the deadline (``picklepool.shutdown()``: a generator's tasks).
    Returns notes on the processes that had to be killed (also printed on stderr).
    """
    deadline = EXIT_DEADLINE if deadline is None else deadline
    until = time.monotonic() + deadline
    thread = lokycompat.manager_thread(executor)
    mine = list(lokycompat.worker_processes(executor))
    # this pool's workers there are now, its retiring ones among them: those of a pool
    # another thread starts while this waits (a call after picklepool.shutdown) are not
    # ours to kill, even before that pool is tracked; nor those another pool is retiring
    # (another thread's call ending on a pool of its own), which loky no longer lists
    queue = lokycompat.call_queue(executor)
    before = [p for p in lokycompat.started_workers() if lokycompat.started_for(p, queue)]
    if kill and why:
        _stopped_by[executor] = why
    lanes.release(executor)  # a lane is a job: the workers would not stop while it runs
    writer = lokycompat.result_writer(executor)  # loky's shutdown drops it
    if kill:
        with _lock:
            others = [e for e in _executors if e is not executor]
        busy = {pid for e in others for pid in lokycompat.worker_processes(e)}
        # and those started for it that it does not list yet, or retires
        for pid in dict.fromkeys([*mine, *(p.pid for p in before if p.pid not in busy)]):
            kill_tree(pid)
        lokycompat.end_result_pipe(writer)  # one killed as it wrote a result: see there
    lokycompat.shutdown(executor, kill)
    _forget(mine)
    if not wait:
        if thread is not None and thread is not threading.current_thread():
            ender = threading.Thread(
                target=_end_queue, args=(thread, queue, writer), name="picklepool-end-queue", daemon=True
            )
            ender.start()
            with _lock:
                _enders[:] = [t for t in _enders if t.is_alive()] + [ender]
        return []
    if thread is not None and thread is not threading.current_thread():
        thread.join(deadline)
    lanes.release_and_wait(executor, deadline)  # their thread and sockets: ended with the pool
    with _lock:
        others = [e for e in _executors if e is not executor]
    busy = {pid for e in others for pid in lokycompat.worker_processes(e)}  # other pools' workers
    ours = [p for p in before if p.pid not in busy]
    # told to stop (not killed): each has until the deadline, also when the manager thread
    # ended before (it had nothing to wait for: the workers stop by themselves)
    ended = set() if kill else _exited_by(ours, until)
    late = [p.pid for p in ours if p.pid not in ended and _running(p)]
    if late and why and not kill:  # the calls still running there: who killed their workers
        _stopped_by[executor] = f"{why} after {deadline:g} s"
    for pid in late:
        kill_tree(pid)
    stuck = thread is not None and thread is not threading.current_thread() and thread.is_alive()
    if late or stuck:  # stuck: waiting for the rest of a result a dead worker began (see there)
        lokycompat.end_result_pipe(writer)
    if thread is not None and thread is not threading.current_thread():
        thread.join(deadline)
    if thread is None or not thread.is_alive():
        lokycompat.end_call_queue(queue)  # jobs it could not write to killed workers: freed
    # workers that died before (loky killed the rest of a pool one of them broke): their leftovers
    leftovers.sweep(session.current_session(), mine + [p.pid for p in before])
    # killed on purpose (Ctrl-C, a failed call's stop): nothing to say; those still there are
    # the ones just killed, not dead yet
    notes = [
        f"picklepool: worker pid {pid} did not stop within {deadline:g} s of shutdown and was "
        "killed (still running a task, or held by something that blocks a process's exit, such "
        "as an atexit function a task registered that waits)"
        for pid in ([] if kill else late)
    ]
    for note in notes:
        print(note, file=sys.stderr)
    return notes


def _exited_by(procs: list[Any], until: float) -> set[int]:
    """The pids of *procs* (worker processes) that end by *until* (``time.monotonic``):
    their sentinel is ready (they are exiting, or have exited)."""
    from multiprocessing.connection import wait

    waiting = {}
    done = set()
    for proc in procs:
        try:
            waiting[proc.sentinel] = proc.pid
        except (ValueError, AttributeError):  # not started, or closed: reaped already
            done.add(proc.pid)
    while waiting:
        ready = wait(list(waiting), max(0.0, until - time.monotonic()))
        if not ready:
            break
        for sentinel in ready:
            done.add(waiting.pop(sentinel))
    return done


def _end_queue(thread: threading.Thread, queue: Any, writer: Any) -> None:
    """Once the manager *thread* of a pool stopped without waiting has ended: its call queue's end.

    A thread still there after ``EXIT_DEADLINE`` may wait for the rest of a result a dead
    worker began: the result pipe's last writer here is closed (the interpreter's exit
    joins that thread)."""
    thread.join(EXIT_DEADLINE)
    if thread.is_alive():
        lokycompat.end_result_pipe(writer)
        thread.join(EXIT_DEADLINE)
    if not thread.is_alive():
        lokycompat.end_call_queue(queue)


def _forget(pids: list[int]) -> None:
    """Remove the status files the session folder holds for these (stopping) workers; their
    last statuses stay in ``Session.ended``, for a call the stop breaks to name its task."""
    current = session.current_session()
    if current is not None:
        for pid in pids:
            current.forget_worker(pid, current.worker_status(pid))


_first: list[Any] = []  # run at exit before any pool is stopped: see before_stop_at_exit
# what stops the pools under a call still running at exit (for its error): the calls of
# non-daemon threads are waited for first (ongoing.wait_at_exit), unless Ctrl-C ended the program
AT_EXIT = (
    "the main thread ended while this call ran in a daemon thread, which Python's exit does not wait for"
)
AT_EXIT_CTRL_C = "Ctrl-C ended the program while this call ran in another thread"
AT_EXIT_ADVICE = (
    "join() the threads that make calls before the main thread ends, or make them non-daemon "
    "threads (Python's exit lets their running calls end)"
)


def exit_cause() -> str:
    """Why the interpreter's exit stops the pools under a call still running (:data:`AT_EXIT`)."""
    return AT_EXIT_CTRL_C if interrupts.exiting_on_ctrl_c() else AT_EXIT


def stopped_at_exit(why: str) -> bool:
    """Whether *why* (:func:`stopped_by`) is the interpreter's exit (:func:`exit_cause`)."""
    return AT_EXIT in why or AT_EXIT_CTRL_C in why


def exit_advice(why: str) -> str:
    """What to do about the exit *why* (:func:`stopped_at_exit`) that stopped a call."""
    if AT_EXIT_CTRL_C in why:  # (not waited for: a program Ctrl-C ends does not wait for its calls)
        return (
            "join() such a thread in the main thread (catching KeyboardInterrupt there) to let its "
            "call end: a program Ctrl-C ends does not wait for its calls"
        )
    return AT_EXIT_ADVICE


def before_stop_at_exit(hook: Any) -> None:
    """Run *hook* at this process's exit before the pools are stopped (not in a worker).

    For ``picklepool.Executor``: what was submitted to one not shut down still runs.
    """
    if hook not in _first:
        _first.append(hook)


def _at_exit() -> None:
    """This process exits: stop every pool, at once when this process is itself a worker."""
    nested = lokycompat.depth() >= 1
    if not nested:
        ongoing.wait_at_exit()  # the calls non-daemon threads still run end first
    for hook in [] if nested else list(_first):
        try:
            hook()
        except Exception:  # noqa: BLE001 - at exit: stop the pools anyway
            pass
    with _lock:
        executors = list(_executors)
    threads = [t for executor in executors for t in lokycompat.pool_threads(executor)]  # stop forgets them
    # A (second) Ctrl-C landing while the pools were stopped left workers alive, which
    # multiprocessing's own exit then waited for until their idle timeout (300 s): the
    # stops are held (signalhold), and a KeyboardInterrupt raised at the hold's end is
    # dropped, the program ending anyway.
    with contextlib.suppress(KeyboardInterrupt), signalhold.held():
        _stop_all(executors, nested)
    if not nested:
        _join_enders(time.monotonic() + ENDER_EXIT_JOIN)
        return
    for proc in lokycompat.started_workers():  # retiring inner workers too: not waited for
        if proc.pid is not None:
            kill_tree(proc.pid)
    # loky's manager thread and the call queue's feeder thread of a killed pool end it, and
    # drop the last references to the pool's semaphores: their finalizers run in those
    # threads, each unlinking a semaphore and taking it off loky's resource tracker. This
    # worker leaves with os._exit, which cut one short now and then (the file left, or
    # gone but still tracked: the tracker warned of a "leaked" semaphore at the parent's exit).
    until = time.monotonic() + NESTED_EXIT_JOIN
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join(max(0.0, until - time.monotonic()))
    _join_enders(until)


def _stop_all(executors: list[Any], nested: bool) -> None:
    """At exit: stop every pool (*nested*: in a worker, at once), then the forkserver."""
    for executor in executors:
        try:
            # still running tasks once what Executors were given has run (the hooks above):
            # a closed or unread generator's, a failed call's; nothing will read their
            # results, so they are not waited for (joblib kills its workers there too)
            kill = nested or lanes.busy(executor)
            why = "" if nested or not kill else f"the interpreter's exit ({exit_cause()})"
            # (killed, it is still waited for: its threads end, unlinking its semaphores)
            stop(executor, wait=not nested, kill=kill, why=why)
        except Exception:  # noqa: BLE001 - at exit: stop the others anyway
            pass
    forkserver.at_exit()


def _join_enders(until: float) -> None:
    """Wait until *until* (``time.monotonic``) for the threads ending stopped pools' call queues.

    They are daemon threads: the interpreter's exit (a worker's ``os._exit``) would cut
    one short between unlinking a semaphore and taking it off loky's resource tracker,
    which then warned at the parent's exit of a "leaked" semaphore already gone.
    """
    with _lock:
        enders = list(_enders)
    for thread in enders:
        if thread is not threading.current_thread():
            thread.join(max(0.0, until - time.monotonic()))
