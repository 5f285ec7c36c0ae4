"""The forkserver: one warm process that forks picklepool's loky workers.

A loky worker is a new interpreter (``python -m loky.backend.popen_loky_posix``) that
imports loky, cloudpickle, psutil and picklepool's worker side: about 80 ms of CPU
each here. A pool of two on two cores, started with loky's two resource trackers,
boots in ~140 ms; forked from one process that imported all that once, in ~80 ms.

The parent starts the server once (``executor.forkserver``), :func:`main` in a new
interpreter (``python -c``, so that this module is not ``__main__``). It imports what a worker
imports (:func:`_preload`), then serves requests on the SOCKET (a Unix socket): a
header (the body's length) carrying the descriptors (SCM_RIGHTS), then the pickled
body. For each, it forks a child that becomes a loky worker as the command above
would (``lokycompat.run_worker``), with:

- the descriptors loky passes to a worker at the numbers they have in the parent,
  and every other descriptor closed (``close_fds``, as loky's ``fork_exec``);
- the parent's standard input, output and error *at the request* (a parent whose
  ``sys.stdout`` was redirected since the server started, such as pytest's capture,
  gets its workers' output as it would from an exec'd worker);
- the environment loky would give it (the parent's ``os.environ`` at the request,
  plus the pool's ``env``), and the time zone read from it (``time.tzset``).

The requester gets the child's pid on its status pipe (the request's first
descriptor), then, once the server reaps the child, its exit code (negative: the
signal that ended it), as ``os.waitstatus_to_exitcode``; both as 8-byte integers.

The server exits when ALIVE (a pipe whose writing end only the parent holds) reaches
end of file: the parent died. Its workers watch the same pipe (``control.watch_parent``),
so they end with the parent, not with the server (a killed server leaves them working).
When its SOCKET reaches end of file (``picklepool.shutdown``) it serves no more
requests, and exits once its last child has exited.

Unlike ``multiprocessing``'s "forkserver", nothing of the parent's ``__main__`` is
imported: a worker starts as loky's own do, from the same preparation data.
"""

from __future__ import annotations

import gc
import itertools
import os
import pickle
import select
import signal
import socket
import struct
import sys
import time
import traceback
from typing import Any

from .. import lokycompat
from . import control

# The signals whose disposition a new interpreter takes from its parent (ignored stays
# ignored across exec) or sets itself (SIGINT, SIGPIPE, SIGXFSZ): set in each worker.
SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGINT",
        "SIGTERM",
        "SIGHUP",
        "SIGQUIT",
        "SIGUSR1",
        "SIGUSR2",
        "SIGALRM",
        "SIGCHLD",
        "SIGPIPE",
        "SIGXFSZ",
    )
    if hasattr(signal, name)
)
HEADER = struct.Struct("Q")  # the body's length
CODE = struct.Struct("q")  # a pid, then an exit code
MAX_FDS = 64  # descriptors one request may carry (loky passes about 8)


# What a loky worker imports before and at its first batch: what run_worker reads the
# preparation data and the process object with, the worker's loop, the pool's initializer,
# the batch runner and the default pickler.
PRELOAD = (
    "concurrent.futures.thread",
    "multiprocessing.resource_tracker",
    "multiprocessing.spawn",
    "loky.backend.popen_loky_posix",
    "loky.backend.resource_tracker",
    "loky.backend.spawn",
    "loky.backend.synchronize",
    "loky.process_executor",
    "picklepool.pickler.hybrid",
    "picklepool.workers.leaving",
    "picklepool.workers.packed",
    "picklepool.workers.prologue",
    "picklepool.workers.runner",
)


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)


def _read_exactly(sock: socket.socket, n: int, into: bytearray) -> bool:
    while len(into) < n:
        chunk = sock.recv(n - len(into))
        if not chunk:
            return False
        into += chunk
    return True


def _receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
    """The next request: (its body, its descriptors), or None at end of file."""
    msg, fds, _flags, _addr = socket.recv_fds(sock, HEADER.size, MAX_FDS)
    header = bytearray(msg)
    body = bytearray()
    if (
        not msg
        or not _read_exactly(sock, HEADER.size, header)
        or not _read_exactly(sock, HEADER.unpack(header)[0], body)
    ):
        for fd in fds:
            os.close(fd)
        return None
    return pickle.loads(body), fds


def _place(wanted: dict[int, int]) -> None:
    """Give each received descriptor its number in the parent (target -> received), close the rest."""
    import fcntl

    # each first to a free number that is no target, so that no placing overwrites one still
    # to place: the lowest such (not one above them all: the parent's numbers may reach its
    # descriptor limit, which this process has too, and a number past it is refused)
    moved, spare = {}, []
    for target, fd in wanted.items():
        copy = fcntl.fcntl(fd, fcntl.F_DUPFD, 0)
        while copy in wanted:
            spare.append(copy)  # (held until the loop ends: the next copy gets another)
            copy = fcntl.fcntl(fd, fcntl.F_DUPFD, 0)
        moved[target] = copy
    for fd in spare:
        os.close(fd)
    for fd in set(wanted.values()):
        os.close(fd)
    for target, fd in moved.items():
        os.dup2(fd, target)  # inheritable, as loky makes them for its exec
        os.close(fd)
    _close_all_but(set(wanted))


def _close_all_but(keep: set[int]) -> None:
    """Close every descriptor not in *keep*, as an exec with ``close_fds`` would."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if int(name) not in keep:
                try:
                    os.close(int(name))
                except OSError:
                    pass  # the listing's own descriptor, closed already
        return
    low = 0
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _become_worker(request: dict[str, Any], fds: list[int], alive_fd: int) -> int:
    """In the forked child: set up as loky's exec would, then run the worker (its exit code)."""
    signal.set_wakeup_fd(-1)
    _inherit(request["process"])
    stdio = request["stdio"]  # the standard descriptors the parent had open
    wanted = dict(zip(stdio, fds[1 : 1 + len(stdio)], strict=True))
    wanted.update(zip(request["targets"], fds[1 + len(stdio) :], strict=True))
    alive = next(fd for fd in itertools.count(3) if fd not in wanted)  # (below the limit)
    wanted[alive] = alive_fd
    os.close(fds[0])  # the status pipe is the server's
    _place(wanted)
    os.set_inheritable(alive, False)
    control.parent_alive = alive  # watched instead of the process's parent: the server may die first
    _standard_streams(set(stdio))
    env = request["env"]
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value  # (what differs only: each is a putenv)
    if hasattr(time, "tzset"):
        time.tzset()  # the C library's time zone, and time.tzname, read from TZ as a new interpreter's
    return lokycompat.run_worker(request["pipe"])


_STREAMS = ("stdin", "stdout", "stderr")


def _standard_streams(opened: set[int]) -> None:
    """``sys.stdin``, ``sys.stdout`` and ``sys.stderr`` as a new interpreter would make them.

    On the descriptors 0, 1 and 2 the parent passes (*opened*), not on those the server
    had: None for one it does not pass (a new interpreter finds it closed), a new
    stream for one the server had no stream for; stdout line-buffered on a terminal.
    """
    for fd, name in enumerate(_STREAMS):
        stream: Any = getattr(sys, name)
        if fd not in opened:
            stream = None
        elif stream is None:
            stream = _new_stream(fd)
        elif fd == 1:
            stream.reconfigure(line_buffering=os.isatty(1))
        if fd and getattr(stream, "write_through", False):
            # unbuffered (python -u, PYTHONUNBUFFERED=1, as Docker images set): print() writes
            # its text and its end apart, straight to the descriptor, and the workers share it:
            # two tasks' lines came cut and mixed ("task 5 line 0task 6 line 0", then two ends).
            # Line-buffered, each line goes out whole as soon as it ends, as the loop's lines
            # reach the log; a partial line at the next line's end, a flush() or the batch's end
            stream.reconfigure(write_through=False, line_buffering=True)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _new_stream(fd: int) -> Any:
    import io
    import locale

    encoding = "utf-8" if sys.flags.utf8_mode else locale.getpreferredencoding(False)
    raw: Any = io.open(fd, "rb" if fd == 0 else "wb", closefd=False)  # noqa: UP020 - a binary stream
    return io.TextIOWrapper(
        raw,
        encoding=encoding,
        errors="backslashreplace" if fd == 2 else "strict",
        line_buffering=fd == 2 or os.isatty(fd),
    )


def _inherit(state: dict[str, Any]) -> None:
    """Take on the parent's process state (``executor.forkserver``), as an exec'd worker would."""
    import resource

    for sig in SIGNALS:
        if sig in state["ignored"]:
            handler: Any = signal.SIG_IGN
        elif sig == signal.SIGINT:
            handler = signal.default_int_handler  # a new interpreter's own
        elif sig in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None)):
            handler = signal.SIG_IGN  # (Python ignores them at its start)
        else:
            handler = signal.SIG_DFL
        signal.signal(sig, handler)
    if state["umask"] >= 0:
        os.umask(state["umask"])
    for limit, value in state["rlimits"].items():
        if resource.getrlimit(limit) != value:
            _try(resource.setrlimit, limit, value)
    if os.getpriority(os.PRIO_PROCESS, 0) != state["nice"]:
        _try(os.setpriority, os.PRIO_PROCESS, 0, state["nice"])
    if "affinity" in state and os.sched_getaffinity(0) != state["affinity"]:
        _try(os.sched_setaffinity, 0, state["affinity"])


def _try(change: Any, *args: Any) -> None:
    try:
        change(*args)
    except (OSError, ValueError):  # not allowed (a lower niceness, a higher hard limit): as the server's
        pass


def _reap(children: dict[int, int]) -> None:
    """Send the exit code of every child that ended to its requester."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = children.pop(pid, None)
        if fd is not None:
            try:
                os.write(fd, CODE.pack(os.waitstatus_to_exitcode(status)))
            except OSError:
                pass  # the requester is gone
            os.close(fd)


def main(sock_fd: int, alive_fd: int, warnoptions: list[str] | None = None) -> None:
    """Serve requests on the socket *sock_fd* until *alive_fd* ends, or the socket and the last child.

    *warnoptions*: the parent's ``sys.warnoptions`` (its ``-W`` options), the workers' once
    the server's imports are done (they must not fail under ``-W error``; the parent's
    filters reach the tasks with each batch, ``workers.warnfilters``).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent and its workers
    _preload()
    if warnoptions is not None:
        sys.warnoptions[:] = warnoptions  # (read by the tasks, and by the subprocesses they start)
    gc.freeze()  # what the imports made is never collected: no child walks it, nor copies its pages
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below (PEP 475 retries it)
    sock = socket.socket(fileno=sock_fd)
    sock.setblocking(True)  # (a descriptor the parent made under a default timeout is non-blocking)
    children: dict[int, int] = {}  # pid -> status pipe
    serving = True
    # poll, not select: the descriptors keep the parent's numbers, which may be over 1023
    poller = select.poll()
    for fd in (alive_fd, wake_r, sock_fd):
        poller.register(fd, select.POLLIN)
    while serving or children:
        ready = {fd for fd, _ in poller.poll()}
        if alive_fd in ready:
            sock.close()
            return  # the parent died
        if wake_r in ready:
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break
        _reap(children)
        if serving and sock_fd in ready:
            got = _receive(sock)
            if got is None:
                serving = False
                poller.unregister(sock_fd)
                sock.close()
                continue
            request, fds = got
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    # detached: the socket object must not close its number at this
                    # process's exit, another descriptor's by then (nor warn it unclosed)
                    for fd in (sock.detach(), wake_r, wake_w, *children.values()):
                        os.close(fd)
                    code = _become_worker(request, fds, alive_fd)
                except EOFError:  # no preparation data: the requester gave up waiting (REPLY_WAIT)
                    code = 0
                except BaseException:  # noqa: BLE001 - a worker that could not start: said on its stderr
                    traceback.print_exc()
                raise SystemExit(code)  # the interpreter's exit, as an exec'd worker's
            try:
                os.write(fds[0], CODE.pack(pid))
            except OSError:  # the requester gave up waiting: the child ends at once (EOFError)
                pass
            children[pid] = fds[0]
            for fd in fds[1:]:
                os.close(fd)
