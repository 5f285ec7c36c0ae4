"""loky's workers forked from picklepool's forkserver: what they get, and how they end.

A forked worker must behave as one loky exec'd: the parent's standard streams, its
environment and its descriptors at the moment it starts, not those of the moment the
forkserver started; its exit code as the parent's ``Process`` sees it; and nothing
may hang or outlive the parent when the forkserver or the parent dies.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import psutil
import pytest

import picklepool
from picklepool import Parallel, WorkerCrashedError, delayed
from picklepool.executor import forkserver
from tests.conftest import run_python, running

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a POSIX forkserver")


def _origin(_: int) -> tuple[int, int, list[str]]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fds.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            continue
    return os.getpid(), os.getppid(), fds


def _server_pid() -> int:
    server = forkserver._server
    assert server is not None, "no forkserver runs"
    return server.pid


def test_workers_are_forked_by_the_forkserver_with_no_descriptor_of_it():
    got = Parallel(n_jobs=2, batch_size=1)(delayed(_origin)(i) for i in range(4))
    server = _server_pid()
    assert "picklepool.workers.forkserver" in " ".join(psutil.Process(server).cmdline())
    assert {ppid for _, ppid, _ in got} == {server}
    for _, _, fds in got:  # its socket is the server's only: a worker holds pipes and files
        assert not [fd for fd in fds if fd.startswith("socket:")], fds


def _env(name: str) -> str | None:
    return os.environ.get(name)


def test_a_worker_gets_the_environment_of_its_start_not_the_servers(monkeypatch):
    Parallel(n_jobs=2)(delayed(abs)(1) for _ in range(2))
    server = _server_pid()
    monkeypatch.setenv("PICKLEPOOL_TEST_LATE", "set after the server started")
    got = Parallel(n_jobs=2, idle_worker_timeout=123)(  # another pool: new workers, with the pool's env
        delayed(_env)(name) for name in ("PICKLEPOOL_TEST_LATE", "OMP_NUM_THREADS")
    )
    assert _server_pid() == server
    assert got == ["set after the server started", "1"]


def _write(text: str) -> int:
    os.write(1, text.encode())
    return os.getppid()


def test_a_worker_writes_to_the_parents_stdout_of_its_start(tmp_path):
    Parallel(n_jobs=2)(delayed(abs)(1) for _ in range(2))
    server = _server_pid()
    out = tmp_path / "out"
    saved = os.dup(1)
    try:
        with open(out, "wb") as f:
            os.dup2(f.fileno(), 1)  # as pytest's capture does, after the server started
        got = Parallel(n_jobs=2, idle_worker_timeout=123)(
            delayed(_write)("from the worker\n") for _ in range(1)
        )
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    assert got == [server]
    assert out.read_text() == "from the worker\n"


def _hash_of(text: str) -> tuple[int, int]:
    return hash(text), os.getppid()


def test_a_changed_interpreter_variable_starts_the_worker_as_loky_does(monkeypatch):
    # PYTHONHASHSEED acts when an interpreter starts: the server's has started
    Parallel(n_jobs=2)(delayed(abs)(1) for _ in range(2))
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    ((h, ppid),) = Parallel(n_jobs=2, idle_worker_timeout=123)(delayed(_hash_of)("abc") for _ in range(1))
    expected = run_python("print(hash('abc'))", env={"PYTHONHASHSEED": "123"}).stdout.strip()
    assert ppid == os.getpid()
    assert h == int(expected)


def _die(code: int) -> None:
    if code < 0:
        os.kill(os.getpid(), -code)
    os._exit(code)


@pytest.mark.parametrize("code", [3, -signal.SIGKILL, -signal.SIGSEGV])
def test_a_forked_workers_exit_code_reaches_the_parent(code):
    with pytest.raises(WorkerCrashedError) as err:
        Parallel(n_jobs=2, batch_size=1)(delayed(_die)(code) for _ in range(1))
    assert f"exit code {code}" in str(err.value) or str(code) in str(err.value), str(err.value)
    assert "_die" in str(err.value)
    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


def test_a_killed_forkserver_breaks_no_call_and_is_started_again():
    with Parallel(n_jobs=2, batch_size=1) as parallel:
        workers = {pid for pid, _, _ in parallel(delayed(_origin)(i) for i in range(4))}
        first = _server_pid()
        psutil.Process(first).kill()
        psutil.Process(first).wait(10)
        # the running workers go on: they were forked already
        assert {pid for pid, _, _ in parallel(delayed(_origin)(i) for i in range(4))} <= workers
        # another pool's workers: the request finds the server dead, and starts another
        assert Parallel(n_jobs=2, idle_worker_timeout=123)(delayed(_origin)(i) for i in range(2))
        assert _server_pid() != first
        # the first pool's workers still go on: replacing their server did not end them
        assert {pid for pid, _, _ in parallel(delayed(_origin)(i) for i in range(4))} <= workers
        assert all(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in workers)


def test_a_worker_whose_forkserver_died_is_seen_dead():
    pids = {pid for pid, _, _ in Parallel(n_jobs=2, batch_size=1)(delayed(_origin)(i) for i in range(4))}
    psutil.Process(_server_pid()).kill()
    with pytest.raises(WorkerCrashedError):  # not a hang: the sentinel, not the lost exit code
        Parallel(n_jobs=2, batch_size=1)(delayed(_die)(3) for _ in range(1))
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
    assert not alive


def test_the_server_and_its_workers_end_with_a_killed_parent():
    result = run_python(
        """
        import json, os, signal
        from picklepool import Parallel, delayed
        from picklepool.executor import forkserver

        pids = Parallel(n_jobs=2, batch_size=1)(delayed(os.getpid)() for _ in range(4))
        print(json.dumps({"server": forkserver._server.pid, "workers": sorted(set(pids))}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    got = json.loads(result.stdout.strip().splitlines()[-1])
    procs = []
    for pid in [got["server"], *got["workers"]]:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=10)  # workers watch their parent every 0.5 s
    assert not alive, alive


def test_shutdown_stops_the_server():
    Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4))
    server = psutil.Process(_server_pid())
    picklepool.shutdown()
    assert forkserver._server is None
    assert not running(server.pid)


def test_the_server_imports_what_a_worker_needs_for_its_first_batch():
    # a worker forked from the server starts in ~5 ms; a module it still has to import
    # costs it that time again at each start (a regression of the preload list)
    result = run_python(
        """
        import json, subprocess, sys
        from picklepool import Parallel, delayed

        def modules():
            import sys
            return sorted(sys.modules)

        worker = Parallel(n_jobs=2)(delayed(modules)() for _ in range(2))[0]
        preloaded = subprocess.run(
            [sys.executable, "-c", "import sys; from picklepool.workers.forkserver import _preload; "
             "_preload(); print(' '.join(sys.modules))"],
            capture_output=True, text=True, check=True).stdout.split()
        print(json.dumps(sorted(set(worker) - set(preloaded))))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def _process_state(_: int) -> tuple[int, tuple[int, int], bool, int]:
    import resource

    mask = os.umask(0)
    os.umask(mask)
    return (
        mask,
        resource.getrlimit(resource.RLIMIT_CORE),
        signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN,
        os.getppid(),
    )


def test_a_worker_inherits_the_process_state_of_its_start():
    # as an exec'd worker would: the mask, the limits and the ignored signals the parent
    # has when the worker starts, not those it had when the server started
    import resource

    Parallel(n_jobs=2)(delayed(abs)(1) for _ in range(2))
    server = _server_pid()
    core = resource.getrlimit(resource.RLIMIT_CORE)
    old_mask = os.umask(0o027)
    old_usr1 = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, core[1]))
        got = Parallel(n_jobs=2, idle_worker_timeout=123)(delayed(_process_state)(i) for i in range(2))
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, core)
        os.umask(old_mask)
        signal.signal(signal.SIGUSR1, old_usr1)
    assert got == [(0o027, (0, core[1]), True, server)] * 2


def test_a_server_that_cannot_start_leaves_the_workers_to_loky(monkeypatch):
    # its import fails here (a broken environment): the pool starts as loky starts it,
    # and no other server is tried in this process
    picklepool.shutdown()
    monkeypatch.setattr(forkserver, "_command", lambda sock, alive: "import sys; sys.exit(3)")
    monkeypatch.setattr(forkserver, "_failed", False)
    got = Parallel(n_jobs=2, batch_size=1)(delayed(_origin)(i) for i in range(4))
    assert {ppid for _, ppid, _ in got} == {os.getpid()}
    assert forkserver._failed
    assert Parallel(n_jobs=2, idle_worker_timeout=123)(delayed(_origin)(i) for i in range(2))
    assert forkserver._server is None or forkserver._server.broken


def test_a_parent_with_descriptors_over_1023_gets_forked_workers():
    # the server's descriptors (its socket, the parent's pipe) and a worker's keep the
    # parent's numbers: select() cannot watch one over 1023
    result = run_python(
        """
        import json, os, resource
        import picklepool
        from picklepool import Parallel, delayed
        from picklepool.executor import forkserver

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
        held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
        ppids = Parallel(n_jobs=2, batch_size=1)(delayed(os.getppid)() for _ in range(4))
        server = forkserver._server.pid
        picklepool.shutdown()
        print(json.dumps({"ppids": sorted(set(ppids)), "server": server}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["ppids"] == [got["server"]]


def test_a_parent_near_its_descriptor_limit_gets_forked_workers():
    # a program holding most of its descriptors (files, sockets) leaves picklepool the
    # highest numbers: a worker's pipes keep them, and the worker moved each above them all
    # first, past the limit it shares (EMFILE): it died at its start, and every call failed
    # with a WorkerCrashedError blaming the task, where joblib's workers started
    result = run_python(
        """
        import json, os, resource
        import picklepool
        from picklepool import Parallel, delayed
        from picklepool.executor import forkserver

        resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for fd in held[-24:]:  # the highest numbers are free, the others held
            os.close(fd)
        ppids = Parallel(n_jobs=2, batch_size=1)(delayed(os.getppid)() for _ in range(4))
        server = forkserver._server.pid
        picklepool.shutdown()
        print(json.dumps({"ppids": sorted(set(ppids)), "server": server}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["ppids"] == [got["server"]]


def test_a_parent_with_a_path_object_in_sys_path_gets_forked_workers():
    # the server's command carried the repr of sys.path: PosixPath('/tmp') is no name
    # there (NameError), the server died and workers started as loky starts them
    result = run_python(
        """
        import json, os, pathlib, sys
        sys.path.append(pathlib.Path("/nonexistent/as/a/path"))
        sys.path.append(b"/nonexistent/as/bytes")
        import picklepool
        from picklepool import Parallel, delayed
        from picklepool.executor import forkserver

        ppids = Parallel(n_jobs=2, batch_size=1)(delayed(os.getppid)() for _ in range(4))
        def kinds():
            return [type(p).__name__ for p in sys.path if not isinstance(p, str)]

        kinds = Parallel(n_jobs=2)(delayed(kinds)() for _ in range(2))
        server = forkserver._server.pid
        picklepool.shutdown()
        print(json.dumps({"ppids": sorted(set(ppids)), "server": server, "kinds": kinds}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["ppids"] == [got["server"]]
    assert got["kinds"] == [[], []]  # the entries imports read, str ones, are what the workers get


def test_a_worker_gets_no_standard_stream_the_parent_closed():
    # the parent closed stdin: the next descriptor it opened (the server's socket) took 0.
    # An exec'd worker gets no such descriptor (it is close-on-exec), and sys.stdin is None;
    # a worker reading its stdin must not read, and wait on, the server's socket
    result = run_python(
        """
        import json, os, sys
        import picklepool
        from picklepool import Parallel, delayed

        def streams(_):
            links = []
            for name in os.listdir("/proc/self/fd"):
                try:
                    links.append(os.readlink(f"/proc/self/fd/{name}"))
                except OSError:
                    pass
            return sys.stdin is None, sys.stdout is not None, [n for n in links if n.startswith("socket:")]

        os.close(0)
        got = Parallel(n_jobs=2, batch_size=1)(delayed(streams)(i) for i in range(2))
        picklepool.shutdown()
        print(json.dumps(got))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [[True, True, []]] * 2


def test_the_server_is_stopped_at_exit_with_no_unclosed_resource():
    # a script that never calls picklepool.shutdown(): the server's socket is closed at
    # its exit, not found unclosed by the interpreter (-X dev shows ResourceWarnings)
    result = run_python(
        """
        from picklepool import Parallel, delayed

        print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)))
        """,
        env={"PYTHONDEVMODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 1, 2, 3]"
    assert "Warning" not in result.stderr, result.stderr


def test_a_call_refused_at_exit_starts_no_forkserver():
    # the first call's forkserver is started before its backend is made: a call the
    # interpreter's exit refuses started one all the same (a process for nothing, and its
    # socket found unclosed at the end: a ResourceWarning under -X dev)
    result = run_python(
        """
        import atexit, os
        from picklepool import Parallel, delayed
        from picklepool.executor import forkserver

        def at_exit():
            try:
                Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4))
            except RuntimeError as exc:
                print("refused" if "interpreter is exiting" in str(exc) else exc)
            with open(f"/proc/self/task/{os.getpid()}/children") as f:  # the main thread's children
                print(forkserver._server, f.read().split())

        atexit.register(at_exit)
        """,
        env={"PYTHONDEVMODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["refused", "None []"], result.stdout + result.stderr
    assert result.stderr == "", result.stderr


def _loky_import_time_settings(_: int) -> tuple[int, str, int]:
    from loky import process_executor
    from loky.backend import reduction

    return process_executor.MAX_DEPTH, reduction.ENV_LOKY_PICKLER, os.getppid()


def test_a_changed_loky_variable_starts_the_worker_as_loky_does(monkeypatch):
    # loky reads LOKY_MAX_DEPTH and LOKY_PICKLER as its modules are imported: the
    # server imported them with the variables it started with
    Parallel(n_jobs=2)(delayed(abs)(1) for _ in range(2))
    monkeypatch.setenv("LOKY_MAX_DEPTH", "7")
    monkeypatch.setenv("LOKY_PICKLER", "cloudpickle")
    got = Parallel(n_jobs=2, idle_worker_timeout=123)(
        delayed(_loky_import_time_settings)(i) for i in range(2)
    )
    assert got == [(7, "cloudpickle", os.getpid())] * 2


def test_a_dead_server_does_not_kill_a_parent_that_takes_sigpipe():
    # a command-line tool restores SIGPIPE's default (to end quietly in `... | head`): a
    # request to a server that died must fail (a worker started as loky does), not kill it
    result = run_python(
        """
        import signal
        import psutil
        import picklepool
        from picklepool import Parallel, delayed
        from picklepool.executor import forkserver

        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        print(Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(2)), flush=True)
        server = psutil.Process(forkserver._server.pid)
        server.kill()
        server.wait(10)
        print(Parallel(n_jobs=2, idle_worker_timeout=123)(delayed(abs)(-i) for i in range(2)), flush=True)
        picklepool.shutdown()
        """
    )
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.split() == ["[0,", "1]", "[0,", "1]"]


def test_a_worker_reads_the_time_zone_of_its_start():
    # the C library read TZ in the server: a worker whose parent changed it since gave
    # local times of the old zone (time.localtime, datetime.fromtimestamp), silently
    result = run_python(
        """
        import json, os, time
        import picklepool
        from picklepool import Parallel, delayed

        def local(_):
            return time.tzname[0], time.localtime(0).tm_hour

        Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(2))
        os.environ["TZ"] = "JST-9"
        time.tzset()
        got = Parallel(n_jobs=2, idle_worker_timeout=123)(delayed(local)(i) for i in range(2))
        picklepool.shutdown()
        print(json.dumps([local(0), got]))
        """,
        env={"TZ": "UTC0"},
    )
    assert result.returncode == 0, result.stderr
    parent, workers = json.loads(result.stdout.strip().splitlines()[-1])
    assert parent == ["JST", 9]
    assert workers == [parent] * 2


def _ctype(_: int) -> tuple[str | None, int]:
    import locale

    return locale.setlocale(locale.LC_CTYPE), os.getppid()


def test_a_changed_locale_variable_starts_the_worker_as_loky_does(monkeypatch):
    # a new interpreter reads LC_ALL, LC_CTYPE and LANG as it starts (its standard streams'
    # encoding, its UTF-8 mode): loky starts the worker, not the server
    import locale

    Parallel(n_jobs=2)(delayed(abs)(1) for _ in range(2))
    monkeypatch.setenv("LC_ALL", "POSIX")
    got = Parallel(n_jobs=2, idle_worker_timeout=123)(delayed(_ctype)(i) for i in range(2))
    assert [ppid for _, ppid in got] == [os.getpid()] * 2
    # the task's locale is the parent's, as in the loop (workers.locales): the variable changes
    # what a new interpreter sets, not this process's locale
    assert [ctype for ctype, _ in got] == [locale.setlocale(locale.LC_CTYPE)] * 2


def _meet(i: int, fifo: str) -> tuple[int, int]:
    """Task 0 waits for task 1 on the FIFO: the two run in two workers, both of the pool."""
    with open(fifo, "rb" if i == 0 else "wb") as f:
        f.read() if i == 0 else f.write(b"here")
    return i, os.getppid()


def test_a_stopped_forkserver_leaves_the_next_workers_to_loky(monkeypatch, tmp_path):
    # a server that does not answer (stopped, hung) is given REPLY_WAIT, then loky starts
    # the worker; the request it answers later finds nobody waiting, and its child ends quietly
    monkeypatch.setattr(forkserver, "REPLY_WAIT", 0.5)
    fifo = str(tmp_path / "meet")
    os.mkfifo(fifo)
    with Parallel(n_jobs=2) as parallel:  # (its workers, the server's, are not stopped meanwhile)
        parallel(delayed(abs)(1) for _ in range(2))
        server = psutil.Process(_server_pid())
        server.suspend()
        try:
            other = Parallel(n_jobs=2, batch_size=1, idle_worker_timeout=124)  # new workers
            # (each of its two workers runs a task: the one loky starts, slower to start than
            # one a new server forks, would otherwise find no task left)
            got = other(delayed(_meet)(i, fifo) for i in range(2))
        finally:
            server.resume()
    parents = {ppid for _, ppid in got}
    assert os.getpid() in parents  # the worker it did not answer for: loky's
    assert server.pid not in parents
    assert server.is_running() and server.status() != psutil.STATUS_ZOMBIE  # it goes on, unharmed


def test_a_server_stopped_without_waiting_is_reaped_as_it_exits():
    # picklepool.shutdown(wait=False) left the server a zombie until the next pool's start
    Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4))
    pid = _server_pid()
    pidfd = os.pidfd_open(pid)
    try:
        picklepool.shutdown(wait=False)
        from multiprocessing.connection import wait

        assert wait([pidfd], 30), "the server did not exit after its workers"
    finally:
        os.close(pidfd)
    for thread in threading.enumerate():
        if thread.name == "picklepool-forkserver-reap":
            thread.join(10)
    try:
        zombie = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        zombie = False
    assert not zombie, "the stopped server is a zombie"
    assert pid not in forkserver._ended


def test_a_server_stopped_as_a_worker_is_requested_is_not_taken_for_one_that_failed(monkeypatch):
    # picklepool.shutdown() in another thread between spawn's _running() and its request:
    # the closed socket's send failed, and a server that had not forked yet was taken for
    # one that cannot start here: no forked worker for the rest of the process
    picklepool.shutdown()
    monkeypatch.setattr(forkserver, "_failed", False)
    real = forkserver._running
    stopped = []

    def stopped_meanwhile():
        server = real()
        if server is not None and not stopped and sys._getframe(1).f_code.co_name == "spawn":
            stopped.append(server.pid)
            forkserver.stop(wait=False)  # as another thread's picklepool.shutdown() would
        return server

    monkeypatch.setattr(forkserver, "_running", stopped_meanwhile)
    got = Parallel(n_jobs=2, batch_size=1)(delayed(_origin)(i) for i in range(4))
    assert stopped and len(got) == 4
    assert not forkserver._failed
    got = Parallel(n_jobs=2, batch_size=1, idle_worker_timeout=123)(delayed(_origin)(i) for i in range(2))
    assert {ppid for _, ppid, _ in got} == {_server_pid()}


def test_a_first_call_starts_the_forkserver_before_it_imports_loky():
    # its start (about 70 ms of imports) overlaps the parent's own imports of loky,
    # cloudpickle and psutil, which `from picklepool import Parallel` leaves to the call
    result = run_python(
        """
        import json, sys
        from picklepool import Parallel, delayed
        heavy = ("loky", "cloudpickle", "psutil")
        after_import = [m for m in heavy if m in sys.modules]
        from picklepool.executor import forkserver
        start = forkserver._Server.__init__
        at_start = []
        def spy(self):
            at_start.extend(m for m in heavy if m in sys.modules)
            start(self)
        forkserver._Server.__init__ = spy
        out = Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4))
        print(json.dumps([after_import, at_start, out]))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[], [], [0, 1, 2, 3]]


def test_first_calls_from_threads_one_forking_a_worker_leave_nothing_behind():
    # loky and the dispatch are imported by the first call: a thread's fork
    # (backend="multiprocessing") while another imported them gave its worker
    # half-imported modules: it hung, or loky's semaphores leaked (its tracker said so at
    # exit). A race: each fresh process gives it another chance.
    for _ in range(4):
        _first_calls_from_threads()


def _first_calls_from_threads() -> None:
    result = run_python(
        """
        import threading
        from picklepool import Parallel, delayed

        def call(backend):
            Parallel(n_jobs=2, backend=backend)(delayed(abs)(-i) for i in range(20))

        backends = ["multiprocessing", "loky", "loky", "multiprocessing", "threading"]
        threads = [threading.Thread(target=call, args=(b,)) for b in backends]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("done")
        """,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "leaked" not in result.stderr, result.stderr


def test_workers_run_with_the_interpreter_options_of_the_parent():
    # python -O: a task's assert in a module the worker compiles ran there, not in the
    # loop; -X utf8: open()'s default encoding differed. The server now starts with the
    # parent's options, as multiprocessing's spawn gives them, but -W (warnfilters' job).
    import subprocess
    import textwrap

    code = textwrap.dedent(
        """
        import sys, warnings
        from picklepool import Parallel, delayed

        def flags(_i):
            return sys.flags.optimize, sys.flags.utf8_mode, eval("__debug__"), sys.warnoptions

        print(Parallel(n_jobs=2)(delayed(flags)(i) for i in range(2)))
        """
    )
    flags = ("PYTHONOPTIMIZE", "PYTHONUTF8", "PYTHONWARNINGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICKLEPOOL_") and k not in flags}
    proc = subprocess.run(
        [sys.executable, "-O", "-X", "utf8", "-W", "ignore::UserWarning", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    # sys.warnoptions as the parent's, set once the server's imports are done
    assert proc.stdout.strip() == str([(1, 1, False, ["ignore::UserWarning"])] * 2)
    assert forkserver.interpreter_flags() == [
        a for a in subprocess._args_from_interpreter_flags() if not a.startswith("-W")
    ]


def test_every_interpreter_option_a_task_can_read_is_the_parents(tmp_path):
    # -X warn_default_encoding: an open() without encoding= warned in the loop only, the
    # workers' sys.flags.warn_default_encoding was 0; the other -X options the standard
    # library's _args_from_interpreter_flags() leaves out were not passed on either:
    # sys.flags.int_max_str_digits read -1, code had columns under -X no_debug_ranges,
    # sys.pycache_prefix was None, and sys._xoptions, sys.warnoptions, what a task's own
    # subprocess would get, and --check-hash-based-pycs differed
    import subprocess
    import textwrap

    code = textwrap.dedent(
        """
        import _imp, os, subprocess, sys, warnings
        from picklepool import Executor, Parallel, delayed

        def options(_i):
            with warnings.catch_warnings(record=True) as got:
                warnings.simplefilter("always")
                with open(os.devnull) as f:
                    f.read()
            return (
                tuple(sys.flags), [w.category.__name__ for w in got], sys.get_int_max_str_digits(),
                list(compile("x + 1", "<s>", "eval").co_positions()), sys.pycache_prefix,
                sys._xoptions, sys.warnoptions, subprocess._args_from_interpreter_flags(),
                _imp.check_hash_based_pycs,
            )

        loop = [options(i) for i in range(2)]
        assert sys.flags.warn_default_encoding == 1 and loop[0][1] == ["EncodingWarning"], loop
        assert Parallel(n_jobs=2)(delayed(options)(i) for i in range(2)) == loop
        with Executor(2) as ex:
            assert list(ex.map(options, range(2))) == loop
        print("ok")
        """
    )
    names = ("PYTHONWARNINGS", "PYTHONWARNDEFAULTENCODING", "PYTHONINTMAXSTRDIGITS", "PYTHONPYCACHEPREFIX")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICKLEPOOL_") and k not in names}
    options = ["-X", "warn_default_encoding", "-X", "int_max_str_digits=5000", "-X", "no_debug_ranges"]
    options += ["-X", f"pycache_prefix={tmp_path}", "-X", "picklepool_test=1", "-W", "ignore::UserWarning"]
    options += ["--check-hash-based-pycs", "always"]
    proc = subprocess.run(
        [sys.executable, *options, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_a_script_function_is_sent_under_python_bb():
    # python -bb (bytes compared with str raise BytesWarning as an error): the hybrid
    # pickler's look for cloudpickle's "<dynamic-code>" among a code object's arguments
    # compared it with their bytes, so no function of the script could be sent; the
    # workers, which now get -bb too, run the tasks as the loop does
    import subprocess
    import textwrap

    code = textwrap.dedent(
        """
        import sys
        from picklepool import Parallel, delayed

        def flag(_i):
            return sys.flags.bytes_warning

        print(flag(0), Parallel(n_jobs=2)(delayed(flag)(i) for i in range(2)))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICKLEPOOL_")}
    proc = subprocess.run(
        [sys.executable, "-bb", "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2 [2, 2]"
