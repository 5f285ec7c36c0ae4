"""What tasks print reaches a parent whose sys.stdout / sys.stderr is redirected (workers.output)."""

from __future__ import annotations

import contextlib
import io
import os
import sys

import pytest

from picklepool import Executor, Parallel, delayed


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


class Cell:
    """A notebook cell's stream: an object with write() and flush(), no file descriptor."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

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
