"""The parent's side of ``workers.forkserver``: loky's workers forked from a warm process.

A pool's workers are forked by the forkserver (started at the first pool, then kept
until ``picklepool.shutdown()`` or the process's end) instead of each starting a new
interpreter (``lokycompat.use_spawner``). What a forked worker gets, and how it
ends, is in ``workers.forkserver``. A worker is started as loky starts it (a new
interpreter) when the forkserver cannot start it:

- in a worker (a nested call's pool): only the main process keeps a forkserver;
- when a ``PYTHON*`` variable of the environment (``PYTHONPATH``,
  ``PYTHONHASHSEED``, ...) differs from the forkserver's: those act when an
  interpreter starts, and the forkserver's has; so does a ``LOKY_*`` one
  (``LOKY_PICKLER``, ``LOKY_MAX_DEPTH``, ...): loky reads them as its modules are
  imported, and the forkserver imported them; and so does a locale one
  (``LC_*``, ``LANG``): the interpreter sets its locale, and its standard
  streams' and file names' encodings, from them as it starts;
- when it failed to start or died (it is started again at the next pool).
"""

from __future__ import annotations

import array
import os
import pickle
import socket
import sys
import threading
from typing import Any

from .. import lokycompat, signalhold
from ..wire import import_path
from ..workers import mirror
from ..workers.forkserver import CODE, HEADER, SIGNALS
from ..workers.sockets import blocking

# a dead server's socket fails the send (EPIPE), and does not kill a process that
# takes SIGPIPE's default action (a command-line tool piped into `head`)
_NO_SIGPIPE = getattr(socket, "MSG_NOSIGNAL", 0)
STOP_WAIT = 5.0  # seconds picklepool.shutdown() waits for the forkserver's last workers to end
# seconds a request waits for the server's reply: the first one waits for its imports; past
# that, the server is taken for broken (stopped, hung) and loky starts the worker itself
FIRST_REPLY_WAIT = 60.0
REPLY_WAIT = 10.0


class _Server:
    """A running forkserver: its pid, the socket of its requests, the pipe it watches."""

    def __init__(self) -> None:
        from multiprocessing import util

        ours, theirs = (blocking(end) for end in socket.socketpair())
        alive = _alive_pipe()
        try:
            self.pid = util.spawnv_passfds(
                os.fsencode(sys.executable),
                [sys.executable, *interpreter_flags(), "-c", _command(theirs.fileno(), alive)],
                [theirs.fileno(), alive],
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.startup = _startup_env(os.environ)
        self.lock = threading.Lock()  # one request at a time on the socket
        self.broken = False
        self.served = False  # it has forked a worker
        self.closed = False  # stopped: its socket is closed, no request is sent any more

    def close(self) -> None:
        """Serve no more: it exits after its last worker.

        Under the request lock: a request another thread is sending (a pool's start
        while ``picklepool.shutdown()`` runs) is sent whole first, never cut, nor its
        rest sent to whatever file takes the socket's number once closed.
        """
        with self.lock:
            self.closed = True
            self.sock.close()


# The pipe every server and worker watches: its writing end is only this process's (not
# inheritable, closed in a forked child), so it ends when this process does. One for the
# process, never closed before: a stopped or replaced server's workers may still work.
_alive: tuple[int, int] | None = None


def _alive_pipe() -> int:
    """The reading end of the pipe that ends with this process (made at the first server)."""
    global _alive
    if _alive is None:
        _alive = os.pipe()
    return _alive[0]


def interpreter_flags() -> list[str]:
    """The options this interpreter was started with that its children get too: those
    ``multiprocessing``'s spawn gives them (``-O``, ``-B``, ``-s``, ``-I``, ``-X utf8``,
    ``-X dev``...) and every other ``-X`` option (``warn_default_encoding``,
    ``int_max_str_digits``, ``pycache_prefix``, ``no_debug_ranges``..., which the standard
    library's list leaves out, and the script's own, in ``sys._xoptions``): with ``python -O``,
    a task's ``assert`` in a module the worker imports ran in the worker and not in the loop;
    with ``-X utf8``, ``open()``'s default encoding differed; with ``-X warn_default_encoding``
    an ``open()`` without ``encoding=`` warned in the loop only. Not the ``-W`` warning filters:
    the parent's filters reach the tasks with each batch (``workers.warnfilters``), and the
    server's own imports must not fail under ``-W error``; ``sys.warnoptions`` is set after them
    (:func:`_command`)."""
    import subprocess

    out: list[str] = []
    args = iter(subprocess._args_from_interpreter_flags())  # type: ignore[attr-defined]
    given = set()
    for arg in args:
        if arg == "-W":
            next(args, None)
        elif arg == "-X":
            value = next(args, "")
            given.add(value.partition("=")[0])
            out += (arg, value)
        elif not arg.startswith("-W"):
            out.append(arg)
    for name, value in sys._xoptions.items():
        if name in given:
            continue
        if name == "pycache_prefix" and sys.pycache_prefix:
            value = sys.pycache_prefix  # (absolute: the server's folder may differ)
        out += ("-X", name if value is True else f"{name}={value}")
    import _imp

    checks = getattr(_imp, "check_hash_based_pycs", "default")  # --check-hash-based-pycs
    if checks != "default":
        out += ("--check-hash-based-pycs", checks)
    return out


def _command(sock: int, alive: int) -> str:
    # the parent's sys.path, as loky gives its workers (a checkout added to it at run time):
    # the entries imports use (a pathlib.Path, which they skip, has a repr the server
    # cannot evaluate: it died, and workers started as loky starts them)
    path = [p or os.getcwd() for p in import_path()]
    return (
        f"import sys; sys.path[:] = {path!r}; "
        f"from picklepool.workers.forkserver import main; main({sock}, {alive}, {sys.warnoptions!r})"
    )


_lock = threading.Lock()
_server: _Server | None = None
_failed = False  # a server died before its first worker: workers start as loky starts them
_exiting = False  # this process exits (at_exit): no server is started any more
_ended: list[int] = []  # stopped servers not reaped yet


# variables read once, as the interpreter starts (its own, the locale's) or as the modules
# the server imports (workers.forkserver.PRELOAD) are imported: loky's
_STARTUP_PREFIXES = ("PYTHON", "LOKY_", "LC_", "LANG")


def _startup_env(env: Any) -> dict[str, str]:
    """The variables an interpreter reads as it starts, or the server's imports as they run."""
    return {k: v for k, v in env.items() if k.startswith(_STARTUP_PREFIXES)}


def use() -> None:
    """Fork this process's loky workers from the forkserver, started now (a pool's start calls it).

    Started before loky's resource trackers and the workers' requests, its imports
    begin as early as they can.
    """
    if lokycompat.depth() == 0 and hasattr(socket, "SCM_RIGHTS"):  # (POSIX: descriptors sent)
        lokycompat.use_spawner(spawn)
        _running()


def _running() -> _Server | None:
    global _server
    with _lock:
        if _server is not None and _server.broken:
            _stop(_server, wait=False)
            _server = None
        for pid in list(_ended):
            _reap(pid)
        if _server is None and not _failed and not _exiting:
            try:
                _server = _Server()
            except OSError:
                return None
        return _server


def spawn(fds: list[int], env: dict[str, str], pipe: int) -> tuple[int, int] | None:
    """Fork a worker from the forkserver: ``(pid, status pipe)``, or None (loky starts it).

    Waits for the server's reply: the first worker of a new server waits for its
    imports (~80 ms here).
    """
    server = _running()
    if server is None or _startup_env(env) != server.startup:
        return None
    stdio = [fd for fd in (0, 1, 2) if _inherited(fd)]
    request = {"stdio": stdio, "targets": fds, "env": env, "pipe": pipe, "process": _process_state()}
    body = pickle.dumps(request)
    status_r, status_w = os.pipe()
    sent = False
    try:
        # whole: a request cut between its header and its body (an alarm's exception, Ctrl-C)
        # made the server read the next request's bytes as its rest, and die
        with signalhold.held(), server.lock:
            # stopped since _running returned it (picklepool.shutdown() in another
            # thread): this worker starts as loky starts it; the server did not fail
            if not server.closed:
                # (socket.send_fds ignores its flags before Python 3.12)
                rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [status_w, *stdio, *fds]))
                server.sock.sendmsg([HEADER.pack(len(body))], [rights], _NO_SIGPIPE)
                server.sock.sendall(body, _NO_SIGPIPE)
                sent = True
    except OSError:
        _broken(server)
    finally:
        os.close(status_w)
    if not sent:
        os.close(status_r)
        return None
    from multiprocessing.connection import wait

    patience = REPLY_WAIT if server.served else FIRST_REPLY_WAIT
    try:
        # a worker start is held (lokycompat.hold_worker_starts) but for this wait, which
        # may be long: cut, the caller closes the worker's pipes, and it ends at once
        # (EOFError in workers.forkserver), as when this gives up waiting
        with signalhold.let_through():
            got = os.read(status_r, CODE.size) if wait([status_r], patience) else b""
    except BaseException:
        os.close(status_r)
        raise
    if len(got) != CODE.size:  # the server died, or hangs
        _broken(server)
        os.close(status_r)
        return None
    server.served = True
    return CODE.unpack(got)[0], status_r


def _broken(server: _Server) -> None:
    global _failed
    server.broken = True
    if not server.served:
        _failed = True  # it cannot start here (an import error, said on stderr): no more tries


def started(pid: int) -> bool:
    """Whether *pid* is a forkserver this process started and has not reaped: its children are ours."""
    server = _server
    return server is not None and server.pid == pid or pid in _ended


def _process_state() -> dict[str, Any]:
    """What a new interpreter inherits from this process beyond descriptors and environment.

    The file mode creation mask, the niceness, the resource limits, the CPU affinity
    and the signals this process ignores, as they are now (``workers.forkserver``
    sets them in the worker where they differ from the server's).
    """
    import resource
    import signal

    state: dict[str, Any] = {
        "umask": mirror.umask(),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "rlimits": {limit: resource.getrlimit(limit) for limit in _RLIMITS},
        "ignored": [sig for sig in SIGNALS if signal.getsignal(sig) == signal.SIG_IGN],
    }
    if hasattr(os, "sched_getaffinity"):
        state["affinity"] = os.sched_getaffinity(0)
    return state


def _rlimits() -> tuple[int, ...]:
    import resource

    return tuple({getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")})


_RLIMITS = _rlimits()  # every resource limit this platform has


def _inherited(fd: int) -> bool:
    """Whether a new interpreter would get the descriptor *fd*: open, and not close-on-exec.

    A standard descriptor this process closed is taken by the next file it opens (the
    forkserver's socket, a pool's pipe), close-on-exec: not the worker's standard stream.
    """
    try:
        return os.get_inheritable(fd)
    except OSError:
        return False


def stop(wait: bool = True) -> None:
    """Stop the forkserver; *wait*: until it has exited (after its last workers, up to ``STOP_WAIT``).

    A server that has not exited by then is reaped as it exits (:func:`_reap_when_ended`),
    not left a zombie until the next pool. *wait* also waits for the servers stopped
    before without waiting and reaped by no thread (the interpreter's exit stops its
    server so, :func:`at_exit`): a ``picklepool.shutdown()`` from an ``atexit`` handler
    returned with that server still running, or a zombie.
    """
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        _stop(server, wait, later=not _exiting)
    if wait:
        with _lock:  # (a reaping thread forgets its pid under it: none is reaped there meanwhile)
            others = [(pid, _pidfd(pid)) for pid in _ended if pid not in _watched]
        for pid, fd in others:
            _wait_exit(fd)
            _reap(pid)


def at_exit() -> None:
    """This process exits, its pools stopped: stop the server now, and start no other.

    Its socket is closed by this process, not left to the interpreter's end (a
    ``ResourceWarning`` under ``-X dev``); a worker still started is started as loky does.
    """
    global _exiting
    _exiting = True
    stop(wait=False)


def _stop(server: _Server, wait: bool, later: bool = True) -> None:
    """Stop *server*, reap it if it has exited; else, *later*: as it exits."""
    server.close()
    _ended.append(server.pid)
    if wait:
        _wait_exit(_pidfd(server.pid))
    _reap(server.pid)
    if later and server.pid in _ended:
        _reap_when_ended(server.pid)


def _pidfd(pid: int) -> int | None:
    """A pidfd of *pid*, a stopped server not reaped yet (None without pidfds)."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _wait_exit(fd: int | None) -> None:
    """Wait up to ``STOP_WAIT`` seconds for the process of the pidfd *fd* to exit; close *fd*."""
    if fd is None:
        return
    from multiprocessing.connection import wait as wait_for  # (poll: fd may be over 1023)

    try:
        wait_for([fd], STOP_WAIT)
    finally:
        os.close(fd)


def _reap(pid: int) -> None:
    try:
        done = os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        done = True
    if done:
        _forget(pid)


def _forget(pid: int) -> None:
    try:
        _ended.remove(pid)
    except ValueError:
        pass  # reaped by another thread


def _reap_when_ended(pid: int) -> None:
    """Reap the stopped server *pid* as it exits (after its last workers), in a daemon thread.

    Without it, a server stopped without waiting (``picklepool.shutdown(wait=False)``),
    or still serving workers at the end of the wait, stayed a zombie until the next
    pool's start, for ever if none started. Waits on a pidfd (``waitid``), which names
    that process only, never a later one given its pid. Without pidfds, it is reaped at
    the next pool's start, as before.
    """
    if not hasattr(os, "P_PIDFD"):
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    _reaping.add(fd)
    _watched.add(pid)

    def reap() -> None:
        try:
            os.waitid(os.P_PIDFD, fd, os.WEXITED)
        except OSError:
            pass  # reaped already (_running, stop)
        finally:
            _reaping.discard(fd)
            os.close(fd)
        with _lock:
            _forget(pid)
            _watched.discard(pid)

    try:
        threading.Thread(target=reap, name="picklepool-forkserver-reap", daemon=True).start()
    except RuntimeError:  # the interpreter exits: the server ends with this process
        _reaping.discard(fd)
        _watched.discard(pid)
        os.close(fd)


_reaping: set[int] = set()  # the pidfds of _reap_when_ended's threads
# the pids those threads reap: stop() does not wait for them (once reaped there, a pid may be
# another process's before the thread forgets it)
_watched: set[int] = set()


def _forget_in_child() -> None:
    """In a forked child: the forkserver is the parent's."""
    global _server, _lock, _failed, _exiting, _alive
    _lock = threading.Lock()
    _ended.clear()
    _watched.clear()
    for fd in list(_reaping):  # the parent's threads that wait on them are not here
        _reaping.discard(fd)
        os.close(fd)
    _failed = _exiting = False
    if _server is not None:
        _server.sock.close()
        _server = None
    if _alive is not None:  # the servers must see the parent's death, not wait for this child's
        for fd in _alive:
            os.close(fd)
        _alive = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
