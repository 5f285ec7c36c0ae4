"""What tasks print reaches a parent whose sys.stdout / sys.stderr is redirected (workers.output)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings

import pytest

from picklepool import Executor, Parallel, delayed

from ..conftest import run_python


def chatty(i):
    print(f"out {i}")
    print(f"err {i}", file=sys.stderr)
    sys.stdout.buffer.write(f"bytes {i}\n".encode())  # a stream with a buffer, as a file's
    return i


def print_then_fail(i):
    print(f"before the error {i}")
    raise ValueError(f"task {i} failed")


def swap_stdout(_):
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - left open: the worker's next batch must not use it
    return True


class WriteOnly:
    """A stream that is only a ``write`` (``print`` needs no more): no ``flush``, no ``buffer``."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)


class Cell(WriteOnly):
    """A notebook cell's stream: an object with write() and flush(), no file descriptor."""

    def flush(self) -> None:
        pass


def test_what_tasks_print_reaches_the_parents_redirected_streams():
    # A worker wrote to the file descriptors it inherited: a parent that redirected its
    # streams (a notebook, redirect_stdout) did not get what its tasks printed
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        results = Parallel(n_jobs=2, batch_size=1)(delayed(chatty)(i) for i in range(4))
        with pytest.raises(ValueError, match="task 7 failed"):
            Parallel(n_jobs=2)(delayed(print_then_fail)(i) for i in range(7, 8))
        with Executor(max_workers=2) as ex:
            assert ex.submit(chatty, 9).result() == 9
    assert results == [0, 1, 2, 3]
    lines = out.getvalue().splitlines()
    tasks = (0, 1, 2, 3, 9)
    expected = [f"out {i}" for i in tasks] + [f"bytes {i}" for i in tasks] + ["before the error 7"]
    assert sorted(lines) == sorted(expected)
    assert lines.index("out 0") < lines.index("bytes 0")  # in the order each task wrote them
    assert sorted(err.getvalue().splitlines()) == [f"err {i}" for i in (0, 1, 2, 3, 9)]


def prints(i):
    print(f"out {i}")
    return i


def test_a_stream_with_only_a_write_gets_the_output_and_the_call_its_results():
    # the reply's output was flushed with stream.flush(): AttributeError, and the call's
    # results were lost, where the loop's print() (and joblib) never call it
    stream = WriteOnly()
    saved = sys.stdout
    sys.stdout = stream
    try:
        results = Parallel(n_jobs=2, batch_size=1)(delayed(prints)(i) for i in range(4))
        with Executor(max_workers=1) as ex:
            assert ex.submit(prints, 9).result() == 9
    finally:
        sys.stdout = saved
    assert results == [0, 1, 2, 3]
    assert sorted("".join(stream.parts).splitlines()) == [f"out {i}" for i in (0, 1, 2, 3, 9)]


def test_output_a_callers_stream_refuses_goes_to_the_terminal_with_a_warning(capfd):
    # a bytes-only object as sys.stdout raises TypeError on write(str): the tasks are done,
    # so the call returns, and what they printed goes where a worker writes it
    saved = sys.stdout
    sys.stdout = io.BytesIO()
    try:
        with pytest.warns(RuntimeWarning, match=r"sys.stdout \(BytesIO object\): TypeError"):
            results = Parallel(n_jobs=2)(delayed(prints)(i) for i in range(2))
    finally:
        sys.stdout = saved
    assert results == [0, 1]
    assert sorted(capfd.readouterr().out.splitlines()) == ["out 0", "out 1"]


def test_a_notebook_like_stream_gets_the_output_and_a_tasks_own_stream_does_not_last():
    cell = Cell()
    saved = sys.stdout
    sys.stdout = cell
    try:
        Parallel(n_jobs=2, batch_size=1)(delayed(swap_stdout)(i) for i in range(4))
        Parallel(n_jobs=2, batch_size=1)(delayed(chatty)(i) for i in range(4))
    finally:
        sys.stdout = saved
    assert sorted("".join(cell.parts).splitlines()) == sorted(
        [f"out {i}" for i in range(4)] + [f"bytes {i}" for i in range(4)]
    )


def log_from_a_module_imported_here(name, i):
    import importlib

    importlib.import_module(name).log.warning("logged %s", i)  # its handler: made at its import
    return i


def test_a_handler_made_in_a_task_keeps_writing_to_the_parents_redirected_stream(tmp_path, monkeypatch):
    # A logging.StreamHandler made at the import of a module a task imported held the
    # stream of that batch: everything it logged in later batches and calls was lost
    name = f"logs_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(
        "import logging\n"
        f"log = logging.getLogger({name!r})\n"
        "log.addHandler(logging.StreamHandler())\n"
        "log.propagate = False\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with Parallel(n_jobs=2, batch_size=1) as parallel:
        for _ in range(3):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                got = parallel(delayed(log_from_a_module_imported_here)(name, i) for i in range(4))
            assert got == [0, 1, 2, 3]
            assert sorted(err.getvalue().splitlines()) == [f"logged {i}" for i in range(4)]


def print_and_close(i):
    print(f"before closing {i}")
    sys.stdout.close()
    return i


def undecodable(i):
    sys.stdout.buffer.write(b"\xff\xfe raw %d\n" % i)
    return i


def test_a_task_closing_stdout_and_bytes_that_are_no_text(tmp_path):
    # A task that closed sys.stdout failed the call with a bare "I/O operation on closed
    # file" (no task, no function); bytes no encoding could write were dropped, with all the
    # rest the batch printed, by a parent's file stream in strict utf-8
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert Parallel(n_jobs=2, batch_size=1)(delayed(print_and_close)(i) for i in range(3)) == [0, 1, 2]
        assert Parallel(n_jobs=2, batch_size=1)(delayed(chatty)(i) for i in range(2)) == [0, 1]
    printed = [f"{kind} {i}" for kind in ("out", "bytes") for i in range(2)]
    assert sorted(out.getvalue().splitlines()) == sorted([f"before closing {i}" for i in range(3)] + printed)
    path = tmp_path / "out.txt"
    with open(path, "w", encoding="utf-8") as f, contextlib.redirect_stdout(f):
        Parallel(n_jobs=2, batch_size=1)(delayed(undecodable)(i) for i in range(2))
    assert sorted(path.read_bytes().splitlines()) == [b"\xff\xfe raw 0", b"\xff\xfe raw 1"]


def uses_the_file_descriptor(i):
    import faulthandler
    import subprocess

    faulthandler.enable()  # its file: sys.stderr's descriptor
    faulthandler.disable()
    subprocess.run([sys.executable, "-c", "pass"], stdout=sys.stdout, check=True)
    print(f"done {i}")
    return sys.stdout.fileno() >= 0


def test_a_task_that_needs_its_streams_file_descriptor_gets_the_workers(tmp_path):
    # The parent's stream is a file: its fileno() works, and a task calling faulthandler.enable()
    # or passing sys.stdout to subprocess ran in the parent; in a worker collecting what
    # its tasks print it failed with "fileno" (io.UnsupportedOperation)
    with open(tmp_path / "out.txt", "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        assert uses_the_file_descriptor(0)
        got = Parallel(n_jobs=2, batch_size=1)(delayed(uses_the_file_descriptor)(i) for i in range(1, 3))
    assert got == [True, True]
    assert sorted((tmp_path / "out.txt").read_text().splitlines()) == ["done 0", "done 1", "done 2"]


def test_what_a_tasks_forked_child_prints_is_not_lost():
    # The child inherited the stream collecting the batch's output: what it printed went
    # into its own copy, lost, where a worker's child printed to the terminal before
    proc = run_python(
        """
        import contextlib, io, os
        from picklepool import Parallel, delayed

        def task(i):
            pid = os.fork()
            if pid == 0:
                print(f"child of task {i}", flush=True)
                os._exit(0)
            os.waitpid(pid, 0)
            print(f"task {i}")
            return i

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert Parallel(n_jobs=2, batch_size=1)(delayed(task)(i) for i in range(2)) == [0, 1]
        print("collected", sorted(out.getvalue().splitlines()))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "collected ['task 0', 'task 1']" in lines, proc.stdout
    children = sorted(line for line in lines if line.startswith("child"))
    assert children == ["child of task 0", "child of task 1"]


LOG_SCRIPT = """
from picklepool import Executor, Parallel, delayed

def task(i):
    print(f"task {i} working")
    return i

print("1. loading")
Parallel(n_jobs=2)(delayed(task)(i) for i in range(2))
print("2. called")
with Executor(max_workers=2) as ex:
    ex.submit(task, 2).result()
print("3. submitted")
"""


def test_what_tasks_print_to_a_log_file_lands_in_the_loops_order(tmp_path):
    # python script.py > log (nohup, a batch system): a file's stream is buffered by blocks,
    # and the workers' lines reached the file as they exited, after the script's last line
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED" and not k.startswith("PICKLEPOOL_")}
    log = tmp_path / "log.txt"
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-c", LOG_SCRIPT], stdout=out, stderr=subprocess.PIPE, env=env, timeout=120
        )
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "1. loading" and sorted(lines[1:3]) == ["task 0 working", "task 1 working"], lines
    assert lines[3:] == ["2. called", "task 2 working", "3. submitted"], lines


@pytest.mark.parametrize("death", ["os._exit", "SIGKILL", "SIGSEGV"])
def test_what_a_task_printed_before_its_worker_died_reaches_the_redirected_stream_once(death):
    # What tasks print to a redirected stream travels with the batch's reply: a worker that
    # died before it took along the last lines, those that say where it crashed (a notebook's
    # cell, redirect_stdout), where the loop printed them. They are written from the worker's
    # journal (workers.journal) before the crash's error, in the order they were written
    # among its log records, and only once; so are the warnings a recording parent gets.
    proc = run_python(
        f"""
        import contextlib, ctypes, io, logging, os, signal, sys, warnings
        from picklepool import Parallel, WorkerCrashedError, delayed

        log = logging.getLogger("app")

        def task(i):
            if i >= 10:  # the silent other half of the pull (the second batch)
                return i
            print("before", i)
            if i == 1:
                log.warning("logged %d", i)
                warnings.warn(f"warned {{i}}", RuntimeWarning)
                print("about to die", file=sys.stderr)
                print("last words")
                if {death!r} == "os._exit":
                    os._exit(3)
                if {death!r} == "SIGKILL":
                    os.kill(os.getpid(), signal.SIGKILL)
                ctypes.string_at(0)
            return i

        if __name__ == "__main__":
            out, err = io.StringIO(), io.StringIO()
            logging.basicConfig(stream=out, format="LOGGED %(message)s")
            recording = warnings.catch_warnings(record=True)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), recording as w:
                warnings.simplefilter("always")
                try:
                    # one full pull of batch_size * n_jobs: tasks 0-2 are one batch
                    Parallel(n_jobs=2, batch_size=3)(delayed(task)(i) for i in (0, 1, 2, 10, 11, 12))
                except WorkerCrashedError:
                    print("crashed")
                print(Parallel(n_jobs=2)(delayed(task)(i) for i in (0, 2)))
            sys.__stdout__.write(repr(out.getvalue().splitlines()) + "\\n")
            sys.__stdout__.write(repr(err.getvalue().splitlines()) + "\\n")
            sys.__stdout__.write(repr([(x.category.__name__, str(x.message)) for x in w]) + "\\n")
        """
    )
    assert proc.returncode == 0, proc.stderr
    out, err, warned = (eval(line) for line in proc.stdout.splitlines()[-3:])  # noqa: S307 - our own repr
    assert out[:5] == ["before 0", "before 1", "LOGGED logged 1", "last words", "crashed"], proc.stdout
    assert sorted(out[5:7]) == ["before 0", "before 2"] and out[7:] == ["[0, 2]"], proc.stdout
    assert err == ["about to die"], proc.stdout
    assert warned == [("RuntimeWarning", "warned 1")], proc.stdout


def _print_log_and_warn(i):
    print(f"print {i}")
    logging.getLogger("picklepool.tests.output").warning("record %d", i)
    print(f"to stderr {i}", file=sys.stderr)
    warnings.warn(f"warning {i}", UserWarning, stacklevel=1)
    print("é\udcff", i)  # (bytes that are no text keep their place too)
    logging.getLogger("picklepool.tests.output").warning("last %d", i)
    return i


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_notebooks_cell_gets_the_prints_records_and_warnings_in_the_order_given(n_jobs):
    # one output area for both streams and the log handler (a notebook's cell): a worker's
    # batch gave all it printed to stdout, then to stderr, then the warnings, then the records
    cell = io.StringIO()
    handler = logging.StreamHandler(cell)
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    named, warned = logging.getLogger("picklepool.tests.output"), logging.getLogger("py.warnings")
    named.addHandler(handler)
    warned.addHandler(handler)  # (pytest records the warnings shown: through logging here)
    logging.captureWarnings(True)
    try:
        with contextlib.redirect_stdout(cell), contextlib.redirect_stderr(cell), warnings.catch_warnings():
            warnings.simplefilter("always")
            assert Parallel(n_jobs=n_jobs)([delayed(_print_log_and_warn)(0)]) == [0]
            with Executor(max_workers=2) as ex:
                assert ex.submit(_print_log_and_warn, 1).result() == 1
    finally:
        logging.captureWarnings(False)
        named.removeHandler(handler)
        warned.removeHandler(handler)
    lines = [line for line in cell.getvalue().splitlines() if line.strip() and not line.startswith(" ")]
    assert [line.rsplit(": ", 1)[-1] for line in lines] == [
        text.format(i)
        for i in (0, 1)
        for text in ("print {}", "LOG record {}", "to stderr {}", "warning {}", "é\udcff {}", "LOG last {}")
    ]


def test_an_unbuffered_workers_print_reaches_its_stream_as_one_whole_line():
    # PYTHONUNBUFFERED=1 (python -u, as Docker images set): a worker's print() wrote its
    # text and its end apart, straight to the descriptor the workers share, so two tasks'
    # lines came cut and mixed in the log ("task 5 line 0task 6 line 0", then two ends)
    proc = run_python(
        """
        import os, sys
        from picklepool import Parallel, delayed

        def part_then_end():
            r, w = os.pipe()
            saved = os.dup(1)
            sys.stdout.flush()
            os.dup2(w, 1)
            try:
                sys.stdout.write("part")
                os.set_blocking(r, False)
                try:
                    early = os.read(r, 100)
                except BlockingIOError:
                    early = b""
                sys.stdout.write(" end\\n")
                late = os.read(r, 100)
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
                for fd in (saved, w, r):
                    os.close(fd)
            return early, late

        print(Parallel(n_jobs=2)(delayed(part_then_end)() for _ in range(2)))
        """,
        env={"PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str([(b"", b"part end\n")] * 2)
