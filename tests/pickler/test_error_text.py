"""An exception inside a longer message reads as one clause: no doubled period, no ': .'."""

from __future__ import annotations

import os

import pytest

from picklepool import Parallel, PicklingError, delayed
from picklepool.errors import UnpicklingError, error_text


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (KeyboardInterrupt(), "KeyboardInterrupt"),
        (ValueError("bad row."), "ValueError: bad row"),
        (ValueError("wait..."), "ValueError: wait..."),
        (SystemExit(0), "SystemExit: 0"),
    ],
)
def test_an_exception_as_a_clause(exc, expected):
    assert error_text(exc) == expected


def deep(n: int) -> list:
    nested: list = []
    for _ in range(n):
        nested = [nested]
    return nested


def kind(x: object) -> str:
    return type(x).__name__


def make_deep(i: int) -> object:
    return deep(100_000) if i == 1 else i


def test_an_argument_too_deep_to_pickle_names_its_outermost_level_and_the_fix_for_depth():
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2)(delayed(kind)(deep(100_000) if i == 1 else i) for i in range(3))
    text = str(info.value)
    assert "task 1: kind(" in text and "cannot pickle args[0] (type builtins.list)" in text, text
    assert "flatten it" in text and ".." not in text.replace("...", ""), text


def test_a_result_too_deep_to_pickle_is_named_as_the_result():
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2)(delayed(make_deep)(i) for i in range(3))
    text = str(info.value)
    assert "task 1: make_deep(1)" in text and "cannot pickle result (type builtins.list)" in text, text
    assert "flatten it" in text, text


class InterruptsOnLoad:
    def __init__(self) -> None:
        self.x = 1

    def __setstate__(self, state: dict) -> None:
        raise KeyboardInterrupt


def test_an_exception_with_no_text_is_named_alone():
    with pytest.raises(UnpicklingError) as info:
        Parallel(n_jobs=2)(delayed(kind)(InterruptsOnLoad() if i == 1 else i) for i in range(3))
    text = str(info.value)
    assert "task 1: kind(" in text and "KeyboardInterrupt. " in text and ": ." not in text, text


class FailsInParent:
    def __init__(self) -> None:
        self.pid = os.getpid()

    def __setstate__(self, state: dict) -> None:
        if state["pid"] != os.getpid() and os.getpid() == PARENT:
            raise RuntimeError("not here")
        self.__dict__.update(state)


PARENT = os.getpid()


def send_back(i: int) -> object:
    return FailsInParent() if i == 1 else i


def test_a_result_that_fails_to_load_for_another_reason_than_an_import_gets_no_import_advice():
    with pytest.raises(UnpicklingError) as info:
        Parallel(n_jobs=2)(delayed(send_back)(i) for i in range(3))
    text = str(info.value)
    assert "task 1: send_back(1)" in text and "RuntimeError: not here." in text, text
    assert "importable" not in text and "__setstate__" in text, text
