"""An initializer that starts a spawned child (tests/workers/test_mirror.py)."""

from __future__ import annotations

import multiprocessing
import time

EXIT_CODE: list[int | None] = []


def remember_exit_code() -> None:
    child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    child.start()
    child.join()
    EXIT_CODE.append(child.exitcode)


def exit_code() -> int | None:
    return EXIT_CODE[0]
