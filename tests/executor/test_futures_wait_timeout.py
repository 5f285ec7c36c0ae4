"""A wait for an Executor's result that runs out names the call, as every other error does."""

from __future__ import annotations

import os

import pytest

from picklepool import Executor


def wait_for_line(fifo: str) -> str:
    """Block until a line is written to *fifo* (the test's signal to finish)."""
    with open(fifo) as f:
        return f.readline().strip()


def _release(fifo: str) -> None:
    with open(fifo, "w") as f:
        f.write("go\n")


def test_result_with_a_timeout_names_the_call_and_it_goes_on(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with Executor(2) as ex:
        assert ex.submit(abs, -1).result() == 1
        fut = ex.submit(wait_for_line, fifo)
        try:
            with pytest.raises(TimeoutError) as info:
                fut.result(timeout=0.2)
        finally:
            _release(fifo)
        text = str(info.value)
        assert text.startswith("task 1 (the 2nd call submitted to this Executor): "), text
        assert "wait_for_line(...) was not done 0.2 s after result() was called" in text, text
        assert "Wait longer" in text, text
        assert fut.result() == "go"


def test_a_tasks_own_timeout_error_is_not_renamed():
    with Executor(2) as ex:
        fut = ex.submit(raise_timeout)
        with pytest.raises(TimeoutError, match="^the task's own\\n"):
            fut.result(timeout=30)


def raise_timeout() -> None:
    raise TimeoutError("the task's own")


@pytest.mark.parametrize("chunksize", [1, 2])
def test_map_with_a_timeout_names_the_call_it_waited_for(tmp_path, chunksize):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with Executor(2) as ex:
        results = ex.map(wait_for_line, [fifo], timeout=0.2, chunksize=chunksize)
        try:
            with pytest.raises(TimeoutError) as info:
                list(results)
        finally:
            _release(fifo)
        text = str(info.value)
        assert text.startswith("task 0 (the 1st call submitted to this Executor): "), text
        assert "wait_for_line(...) was not done within map(timeout=0.2)" in text, text
