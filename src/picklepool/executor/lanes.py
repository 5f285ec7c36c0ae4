"""Direct lanes to warm loky workers: small calls without loky's queue threads.

A batch sent through loky goes through four threads of this process (the caller,
loky's manager thread, its queue feeder thread, the thread reading the result)
and loky's queues in the worker: most of a warm one-task call's latency. After a
small call (a batch per worker at most, ``dispatch.Call``), when the pool is
idle, each worker is lent one long loky job (``workers.lane.serve``) that
connects back to a socket of this process; the next batches are written to an
idle worker's socket by the calling thread, and one reader thread here completes
their futures; a call with one batch out reads its reply itself (``LaneFuture.read_here``:
the lane is taken from the reader thread's epoll while the call waits, and given back).
loky still starts, watches and stops the workers: a lane is only a job that loky sees
running.

- **Anything else gives the workers back.** A batch that finds no idle lane
  (a call of more batches than workers, calls from other threads), any other
  submission to the executor (``Executor``, a call with a timeout or a memory
  limit, a streamed batch), a resize or a shutdown first :func:`release` the
  lanes: each ends after the batch it is running, and loky's jobs queued
  meanwhile run as soon as it has. The next small call opens them again.
- **A lane idle for** ``LANE_IDLE`` seconds (at most half the pool's idle timeout) ends:
  this process stops it, under the lock :meth:`Lanes.submit` takes an idle lane
  with, so a batch is never written to a lane whose worker is leaving it.
- **A worker that dies** breaks the executor as before (loky fails every job);
  the batch in its lane fails with the same error loky gave the lane's job,
  ``TerminatedWorkerError`` with the exit code.
- **The socket** is an abstract one on Linux, accepted only from this user's
  processes (``SO_PEERCRED``); elsewhere a file in the 0700 session folder.
"""

from __future__ import annotations

import math
import os
import pickle
import select
import socket
import struct
import sys
import threading
import time
import weakref
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from .. import lokycompat, signalhold
from ..errors import WorkerCrashedError
from ..workers.lane import LEAVING, receive, send, serve
from ..workers.sockets import blocking

LANE_IDLE = 10.0  # seconds without a batch after which a lane gives its worker back to loky
CONNECT_DEADLINE = 2.0  # seconds the lanes' jobs have to connect, else they are given up
FIRST_LANE_WAIT = 0.05  # seconds a batch waits for the first lane of opening ones to connect
DEATH_REPORT_WAIT = 5.0  # seconds to wait for loky's error on a lane whose worker died
# Seconds a call with one batch out looks for its reply without sleeping before it waits
# in poll() (LaneFuture.read_here). A warm one-task call's reply comes within it, and the
# call is not woken from sleep (by the kernel, and on a VM by the hypervisor): a raw
# round trip to a forked child took 0.35 ms after a collection and 0.14 ms back to back
# here, 0.29 and 0.03 ms when the parent looked without sleeping. A longer task costs
# the calling thread this much CPU time, once per call.
SPIN = 0.0005

_by_executor: weakref.WeakKeyDictionary[Any, Lanes] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
_names = iter(range(1 << 62))


# Who reads a lane's next message: the reader thread (watching it, or reading it now), or
# the thread whose call waits for the lane's batch (LaneFuture.read_here).
_WATCHED, _READING, _CALLER = "watched", "reading", "caller"


class _Lane:
    __slots__ = ("conn", "job", "future", "since", "reader", "wait")

    def __init__(self, conn: Connection, job: Future[Any]) -> None:
        self.conn = conn
        self.job = job  # loky's future of the serve job: its error is the worker's death
        self.future: LaneFuture | None = None  # the batch in this lane
        self.since = time.monotonic()  # idle since (when it is in Lanes._idle)
        self.reader = _WATCHED  # changed under Lanes._cond only
        self.wait: Any = None  # the calling thread's poll object on this lane, made once


class LaneFuture(Future[Any]):
    """The future of a batch written to a lane; its caller may read the reply itself."""

    def __init__(self, lanes: Lanes, lane: _Lane) -> None:
        super().__init__()
        self._lanes, self._lane = lanes, lane
        self._here = False  # completed by read_here: in the calling thread

    def _invoke_callbacks(self) -> None:
        """Run the done-callbacks; in the calling thread (read_here), let their exceptions out.

        ``Future`` logs and drops a callback's exception. Run by the reader thread that is
        right for users' callbacks; run by the calling thread, the callbacks are picklepool's
        own (the call's queue of done batches), and an exception there is a signal handler's
        (an alarm's ``TimeoutError``, Ctrl-C): dropped, the batch would never reach its
        call, which would wait for it for ever. Every callback still runs; the first
        exception is then raised to the caller.
        """
        if not self._here:
            super()._invoke_callbacks()  # type: ignore[misc]
            return
        error: BaseException | None = None
        for callback in self._done_callbacks:  # type: ignore[attr-defined]
            try:
                callback(self)
            except BaseException as exc:  # noqa: BLE001 - raised below, after the others ran
                error = error or exc
        if error is not None:
            raise error

    def read_here(self, timeout: float) -> bool:
        """Wait up to *timeout* seconds for the reply in this thread, and complete the future.

        Skips the reader thread's hand-over (a thread woken, then this one): about a
        tenth of a warm one-task call; the first ``SPIN`` seconds it looks without
        sleeping, so that a quick reply does not wait for this thread to wake. False
        when the reader thread has the lane (it is reading, or lanes cannot be taken
        from it here): wait on the future then.
        """
        return self._lanes._read_here(self._lane, self, timeout)


class Lanes:
    """One lane per worker of a loky *executor*, opened at construction (:func:`open_for`)."""

    def __init__(self, executor: Any, n_workers: int, folder: str, idle: float) -> None:
        # weakly: _by_executor's value must not hold its own key (the pool a crash replaced,
        # its queues and semaphore, stayed alive for ever)
        self._executor = weakref.ref(executor)
        self.idle = idle
        self._cond = threading.Condition()
        self._idle: list[_Lane] = []
        self._lanes: list[_Lane] = []
        self._open = True  # taking batches (until release)
        self._connecting = n_workers
        name = f"lane-{os.getpid()}-{next(_names)}-{os.urandom(6).hex()}"
        # Linux: an abstract socket, no file (peers checked by uid); else one in the 0700 session folder
        self.address = f"\0picklepool-{name}" if _PEERCRED else os.path.join(folder, name)
        self._server = blocking(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        try:
            self._server.bind(self.address)
            self._server.listen(n_workers)
        except OSError:
            self._server.close()
            raise
        self._poller = _Poller()  # the reader thread's
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # written under the lock: never waits for the reader
        self._jobs: list[Future[Any]] = []
        try:
            for k in range(n_workers):
                self._jobs.append(executor.submit(serve, self.address, k))
        except BaseException:  # the pool shut down meanwhile: its jobs connect to no one
            self._server.close()
            _unlink(self.address)
            self._close_wake()
            raise
        self._thread = threading.Thread(target=self._run, name="picklepool-lanes", daemon=True)
        self._thread.start()

    # -- the calling threads --------------------------------------------------------------

    def submit(self, packed: bytes) -> Future[Any] | None:
        """Send a packed batch to an idle lane; its future, or None when no lane takes it."""
        with self._cond:
            if not self._idle and self._open and self._connecting:
                self._cond.wait_for(lambda: self._idle or not self._open, FIRST_LANE_WAIT)
            if not self._open or not self._idle:
                return None
            lane = self._idle.pop()
            fut = LaneFuture(self, lane)
            fut.set_running_or_notify_cancel()  # as a job a loky worker took: cannot be cancelled
            lane.future = fut
        try:
            send(lane.conn.fileno(), packed)
        except OSError:  # the worker just died: the reader thread sees it; loky's path reports it
            with self._cond:
                lane.future = None
            return None
        return fut

    def release(self) -> None:
        """Give every worker back to loky: idle lanes now, busy ones after their batch."""
        with self._cond:
            if not self._open:
                return
            self._open = False
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for lane in idle:
            _stop(lane)
        self._wake()

    def busy(self) -> bool:
        """True while a lane runs a batch."""
        with self._cond:
            return any(lane.future is not None for lane in self._lanes)

    def jobs(self) -> int:
        """How many of loky's jobs are this object's lanes (not finished yet)."""
        return sum(not job.done() for job in self._jobs)

    # -- the reader thread ---------------------------------------------------------------

    def _wake(self) -> None:
        with self._cond:
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"x")
                except BlockingIOError:  # wakes already pending: the reader will look
                    pass

    def _close_wake(self) -> None:
        """Close the wake pipe once (its numbers may be another file's afterwards)."""
        with self._cond:
            fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            with self._cond:
                self._open = False
                self._connecting = 0
                self._idle = []
                left, self._lanes = self._lanes, []
                self._cond.notify_all()
            self._server.close()
            _unlink(self.address)
            self._close_wake()
            with self._cond:
                self._poller.close()
            for lane in left:  # only if this thread failed: their batches must not wait forever
                _stop(lane)
                if lane.reader is _CALLER:  # its calling thread reads it, and closes it at its end
                    continue
                lane.conn.close()
                if lane.future is not None and not lane.future.done():
                    lane.future.set_exception(BrokenProcessPool("picklepool's lane reader thread failed"))

    def _serve(self) -> None:
        """Accept the lanes as their jobs start (until release or the deadline), read their answers,
        stop those idle for ``idle`` seconds; until every lane has ended."""
        deadline = time.monotonic() + CONNECT_DEADLINE
        listening = True
        poller = self._poller
        poller.add(self._wake_r, _WAKE)
        poller.add(self._server.fileno(), self._server)
        while True:
            now = time.monotonic()
            with self._cond:
                if listening and (not self._connecting or not self._open or now >= deadline):
                    listening = False
                    self._connecting = 0
                    if not self._lanes:
                        self._open = False
                    self._cond.notify_all()
                expired = [lane for lane in self._idle if now - lane.since >= self.idle]
                for lane in expired:
                    self._idle.remove(lane)
                any_lanes = bool(self._lanes)
                waits = [lane.since + self.idle - now for lane in self._idle]
            if not listening and self._server.fileno() >= 0:
                poller.remove(self._server.fileno())
                self._server.close()  # jobs that start later find no one and return at once
                _unlink(self.address)
            for lane in expired:
                _stop(lane)  # its worker answers it with its EOF: _lost
            if not listening and not any_lanes:
                return
            if listening:
                waits.append(deadline - now)
            for ready in poller.ready(max(0.0, min(waits)) if waits else None):
                if ready is _WAKE:
                    os.read(self._wake_r, 512)
                elif ready is self._server:
                    self._accept()
                else:
                    self._read(ready)

    def _accept(self) -> None:
        """Take one lane's connection."""
        try:
            sock, _ = self._server.accept()
        except OSError:  # no file descriptor left, the peer gone already: it is not served
            return
        blocking(sock)
        if _PEERCRED and _peer_uid(sock) != os.getuid():  # not one of our workers
            sock.close()
            return
        conn = Connection(sock.detach())
        try:
            number = int(conn.recv_bytes())
        except (EOFError, OSError, ValueError):
            conn.close()
            return
        lane = _Lane(conn, self._jobs[number])
        self._poller.add(conn.fileno(), lane)
        with self._cond:
            self._connecting -= 1
            self._lanes.append(lane)
            if self._open:
                self._idle.append(lane)
                self._cond.notify_all()
                return
        _stop(lane)

    def _read(self, lane: _Lane) -> None:
        with self._cond:
            if lane.reader is _CALLER:  # reported ready just before its caller took it
                return
            lane.reader = _READING
        try:
            data = receive(lane.conn.fileno())
        except (EOFError, OSError):
            self._lost(lane)
            return
        self._answered(lane, data)

    def _read_here(self, lane: _Lane, fut: LaneFuture, timeout: float) -> bool:
        """:meth:`LaneFuture.read_here`: take *lane* from the reader thread, wait, read, give it back."""
        fd = -1
        reading = False
        try:
            # In a try from the start: an exception a signal handler raises anywhere here gives
            # the lane back (finally), or closes it when a message was being read.
            with self._cond:
                # the lane lost already (its worker closed it; the reader thread waits for
                # loky's report, then fails the future): its connection is closed
                if lane.future is not fut or lane.reader is not _WATCHED:
                    return False
                fd = lane.conn.fileno()  # (under the lock: _lost closes it under it)
                lane.reader = _CALLER
                if not self._poller.detach(fd):
                    lane.reader = _WATCHED
                    return False
            if lane.wait is None:
                lane.wait = select.poll()
                lane.wait.register(fd, select.POLLIN)
            if not _spin(lane.wait, min(SPIN, timeout)) and not lane.wait.poll(
                max(0, math.ceil(timeout * 1000))
            ):
                return True  # nothing yet: the reader thread watches it again (finally)
            reading = True
            data = receive(fd)
        except (EOFError, OSError):
            self._lost(lane)
            return True
        except BaseException:
            if reading:  # interrupted (Ctrl-C, a signal handler) in the middle of a message
                self._lost(lane, interrupted=True)
            raise
        finally:
            if not reading:
                with self._cond:
                    if lane.reader is _CALLER and lane.future is fut:  # taken above: give it back
                        self._poller.attach(fd)
                        lane.reader = _WATCHED
        fut._here = True  # its callbacks run in this thread: their exceptions are the caller's
        self._answered(lane, data)
        return True

    def _answered(self, lane: _Lane, data: bytes) -> None:
        """*lane*'s answer *data* came: the lane goes back to the idle ones, its future completes."""
        leaving = data[:1] == LEAVING  # its worker ends the lane (workers.lane: memory growth)
        with self._cond:
            if lane.reader is _CALLER:
                self._poller.attach(lane.conn.fileno())
            lane.reader = _WATCHED
            fut, lane.future = lane.future, None
            keep = self._open and not leaving
            if keep:
                lane.since = time.monotonic()
                self._idle.append(lane)
                self._cond.notify_all()
        if not keep and not leaving:
            _stop(lane)
        if fut is None:
            return
        try:
            ok, value = pickle.loads(memoryview(data)[1:])
        except Exception as exc:  # noqa: BLE001 - reported on the batch, not lost
            fut.set_exception(exc)
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def _lost(self, lane: _Lane, interrupted: bool = False) -> None:
        """*lane*'s worker closed it: its job ended (stop, idle) or the worker died.

        *interrupted*: the calling thread stopped reading it in the middle of a
        message; closing it ends the lane's job in its worker.
        """
        with self._cond:
            if lane in self._lanes:
                self._lanes.remove(lane)
            if lane in self._idle:
                self._idle.remove(lane)
            fut, lane.future = lane.future, None
            if not self._lanes and self._open:
                self._open = False  # every lane gone: the next batch goes through loky
            self._cond.notify_all()
            self._poller.remove(lane.conn.fileno())
            lane.conn.close()
        self._wake()  # the reader thread may have no lane left to wait for
        if fut is None or fut.done():  # done: the reader thread failed meanwhile
            return
        if interrupted:
            fut.set_exception(
                BrokenProcessPool("the call reading this batch's reply was interrupted in the middle of it")
            )
            return
        try:
            error = lane.job.exception(timeout=DEATH_REPORT_WAIT)
        except FutureTimeout:
            # loky did not see the worker end: its manager thread is stuck (a worker that died
            # in the middle of sending a result back through loky's pipe left half a message,
            # and the thread waits for the rest). Nothing more comes from this pool.
            error = WorkerCrashedError(
                f"the worker running this batch ended, and its pool did not notice within "
                f"{DEATH_REPORT_WAIT:g} s (its manager thread is stuck, as when a worker dies while "
                "sending a result back): this pool is replaced on the next call"
            )
            executor = self._executor()
            if executor is not None:
                lokycompat.flag_broken(executor, error)
        except Exception as exc:  # noqa: BLE001 - the job was cancelled
            error = exc
        if not isinstance(error, BaseException):
            error = BrokenProcessPool(
                "the worker running this batch closed its connection to the parent without "
                "answering (it exited, or a task closed the worker's file descriptors)"
            )
        fut.set_exception(error)

    def forget(self) -> None:
        """In a forked child: close this process's copies of the sockets, tell nobody.

        The lanes are the parent's: a batch the child wrote there would be answered
        to the parent's reader thread, as if it were the parent's own.
        """
        self._open = False
        for lane in self._lanes:
            lane.conn.close()  # once: a Connection closed before is left alone
        self._idle, self._lanes = [], []
        self._poller.close()  # this process's copy: the parent's epoll is unchanged
        fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        self._server.close()


def _forget_all_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # held by another thread at the fork: held for ever in the child
    for lanes in list(_by_executor.values()):
        lanes.forget()
    _by_executor.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_in_child)


_WAKE = object()  # what the reader thread's wake pipe stands for in its _Poller


class _Poller:
    """The reader thread's file descriptors and what each stands for, watched together.

    One ``select.epoll`` (or ``select.poll``) object kept across waits, changed as lanes
    come and go: ``multiprocessing.connection.wait`` builds and fills a selector at every
    call, about 10 µs of every reply (its fallback where neither exists). With epoll, a
    calling thread can take a lane from the watch while the reader thread waits
    (:meth:`detach`), which ``poll`` does not see until its wait ends.
    """

    def __init__(self) -> None:
        self._objs: dict[int, Any] = {}
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._poll = select.poll() if self._epoll is None and hasattr(select, "poll") else None

    def add(self, fd: int, obj: Any) -> None:
        self._objs[fd] = obj
        if self._epoll is not None:
            self._epoll.register(fd, select.EPOLLIN)
        elif self._poll is not None:
            self._poll.register(fd, select.POLLIN)

    def remove(self, fd: int) -> None:
        if self._objs.pop(fd, self) is self:
            return
        if self._epoll is not None:
            self.detach(fd)
        elif self._poll is not None:
            self._poll.unregister(fd)

    def detach(self, fd: int) -> bool:
        """Stop watching *fd* for now, even during a wait; False where that cannot be done."""
        if self._epoll is None:
            return False
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):  # not watched (detached already), or the poller closed
            return False
        return True

    def attach(self, fd: int) -> None:
        """Watch *fd* again after :meth:`detach`."""
        if self._epoll is not None and fd in self._objs:
            try:
                self._epoll.register(fd, select.EPOLLIN)
            except (OSError, ValueError):  # the poller closed: its thread has ended
                pass

    def ready(self, timeout: float | None) -> list[Any]:
        """What stands for each descriptor ready to read (or closed), waiting *timeout* seconds at most."""
        fds: list[int]
        if self._epoll is not None:
            fds = [fd for fd, _ in self._epoll.poll(-1 if timeout is None else timeout)]
        elif self._poll is not None:
            fds = [fd for fd, _ in self._poll.poll(None if timeout is None else math.ceil(timeout * 1000))]
        else:
            fds = cast(list[int], wait(list(self._objs), timeout))  # the objects given: numbers
        found = [self._objs.get(fd) for fd in fds]  # a calling thread may remove one meanwhile
        return [obj for obj in found if obj is not None]

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()


def _spin(waiter: select.poll, seconds: float) -> bool:
    """Look at *waiter* (a poll object of one descriptor) for up to *seconds* without
    sleeping: True once it is ready. ``poll(0)`` lets go of the GIL each time."""
    end = time.perf_counter() + seconds
    while not waiter.poll(0):
        if time.perf_counter() >= end:
            return False
    return True


def _stop(lane: _Lane) -> None:
    try:
        lane.conn.send_bytes(b"")
    except OSError:
        pass


def _unlink(path: str) -> None:
    if path.startswith("\0"):  # abstract: nothing to remove
        return
    try:
        os.unlink(path)
    except OSError:
        pass


_PEERCRED = sys.platform.startswith("linux") and hasattr(socket, "SO_PEERCRED")
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _peer_uid(sock: socket.socket) -> int:
    try:
        return int(_CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))[1])
    except OSError:
        return -1


# -- what the backend and the pool call ---------------------------------------------------


def submit(executor: Any, packed: bytes) -> Future[Any] | None:
    """Send a packed batch through a lane of *executor*, or return None (use loky's path)."""
    lanes = _by_executor.get(executor)
    return lanes.submit(packed) if lanes is not None else None


def release(executor: Any) -> None:
    """Give *executor*'s workers back to loky (before anything else uses them)."""
    lanes = _by_executor.get(executor)
    if lanes is not None:
        lanes.release()


def release_and_wait(executor: Any, timeout: float = DEATH_REPORT_WAIT) -> None:
    """:func:`release`, then wait until the lanes' jobs and reader thread have ended.

    Idle lanes end at once; a busy one after its batch. Waits *timeout* seconds at most.
    """
    lanes = _by_executor.get(executor)
    if lanes is not None:
        lanes.release()
        futures_wait(lanes._jobs, timeout)
        if lanes._thread is not threading.current_thread():
            lanes._thread.join(timeout)


def settle(timeout: float = DEATH_REPORT_WAIT) -> None:
    """:func:`release_and_wait` for every executor: no lane, socket or lane thread is left."""
    for executor in list(_by_executor):
        release_and_wait(executor, timeout)


def loky_submit(executor: Any, fn: Any, *args: Any) -> Future[Any]:
    """``executor.submit(fn, *args)`` once its lanes are released.

    Under the lock :func:`open_for` holds: lanes opened by another thread between
    the release and the submission would hold the workers this job waits for.
    """
    with _lock:
        release(executor)
        return executor.submit(fn, *args)  # type: ignore[no-any-return]


def is_open(executor: Any) -> bool:
    """True while *executor* has lanes taking batches."""
    lanes = _by_executor.get(executor)
    return lanes is not None and lanes._open


def open_for(executor: Any, folder: str | None, idle_timeout: float) -> None:
    """After a small call: open lanes to *executor*'s workers if it is idle and has them all.

    *folder*: the session folder, for the socket where abstract ones do not exist.
    """
    if folder is None or not lokycompat.usable(executor):
        return
    with _lock:
        lanes = _by_executor.get(executor)
        if lanes is not None and (lanes._open or lanes.jobs()):
            return  # open, or its jobs are still ending
        n = lokycompat.size(executor)
        if lokycompat.pending(executor) or len(lokycompat.worker_processes(executor)) < n:
            return
        try:
            # held: lanes opened and not listed would hold the workers, unseen (an alarm's exception)
            with signalhold.held():
                _by_executor[executor] = Lanes(executor, n, folder, min(LANE_IDLE, idle_timeout / 2))
        except (OSError, RuntimeError):  # a socket path too long, a pool shut down meanwhile
            pass


def lane_jobs(executor: Any) -> int:
    """How many of *executor*'s pending jobs are lanes (not the users' work)."""
    lanes = _by_executor.get(executor)
    return lanes.jobs() if lanes is not None else 0


def busy(executor: Any) -> bool:
    """True while *executor* runs users' work: loky jobs other than lanes, or a lane's batch."""
    lanes = _by_executor.get(executor)
    if lanes is None:
        return lokycompat.busy(executor)
    return lanes.busy() or lokycompat.pending(executor) > lanes.jobs()
