"""The benchmark harness: interleaving, failures, pair-by-pair ratios, progress, RSS peaks."""

from __future__ import annotations

import io

import pytest

from picklepool.bench.measure import PeakRSS, Progress, Stat, describe_error, interleave, pair_ratios


def test_interleave_alternates_the_order_of_rounds_after_the_warm_up():
    calls: list[str] = []

    def impl(name):
        def run():
            calls.append(name)
            return 1.0

        return run

    out = interleave({"a": impl("a"), "b": impl("b"), "c": impl("c")}, reps=3, warmup=1)
    assert calls == list("abcabccbaabc")
    assert all(s.times == [1.0, 1.0, 1.0] and s.error is None for s in out.values())


def test_interleave_uses_the_cheaper_warm_up_call_when_given():
    calls: list[str] = []
    out = interleave(
        {"a": lambda: calls.append("run") or 0.5}, reps=1, warmup=2, warm={"a": lambda: calls.append("warm")}
    )
    assert calls == ["warm", "warm", "run"] and out["a"].times == [0.5]


def test_a_failing_implementation_keeps_its_error_and_the_rounds_stay_aligned():
    state = {"n": 0}

    def flaky():
        state["n"] += 1
        if state["n"] == 3:
            raise ValueError("boom\nsecond line")
        return 2.0

    out = interleave({"ok": lambda: 1.0, "flaky": flaky}, reps=3, warmup=1)
    assert out["flaky"].error == "ValueError: boom second line"
    assert out["flaky"].times == [2.0, None, None]
    assert out["ok"].times == [1.0, 1.0, 1.0]
    assert out["flaky"].stat() == Stat(2.0, 2.0, 2.0, 1)


def test_an_implementation_failing_in_warm_up_is_never_timed():
    out = interleave({"bad": lambda: 1 / 0}, reps=2, warmup=1)
    assert out["bad"].times == [None, None] and out["bad"].error.startswith("ZeroDivisionError")


def test_pair_ratios_are_taken_round_by_round_then_summarised():
    # Round-by-round ratios 2, 4, 3 (median 3); the ratio of medians would be 2.5/1 = 2.5.
    joblib_times = [2.0, 4.0, 6.0]
    picklepool_times = [1.0, 1.0, 2.0]
    assert pair_ratios(joblib_times, picklepool_times) == Stat(3.0, 2.0, 4.0, 3)
    assert pair_ratios([1.0, None], [None, 2.0]) is None
    with pytest.raises(ValueError):
        pair_ratios([1.0], [1.0, 2.0])


def test_stat_of_ignores_missing_values():
    assert Stat.of([3.0, None, 1.0, 2.0]) == Stat(2.0, 1.0, 3.0, 3)
    assert Stat.of([None]) is None


def test_describe_error_is_one_shortened_line():
    text = describe_error(RuntimeError("x" * 500), limit=50)
    assert len(text) == 50 and text.startswith("RuntimeError: xxx") and text.endswith("...")
    assert describe_error(KeyError()) == "KeyError"


def test_progress_prints_one_line_per_workload_start_and_end_when_not_a_terminal():
    stream = io.StringIO()
    bar = Progress(2, stream)
    bar.begin("tiny_tasks")
    bar.step("run 1/3 joblib")  # not a terminal: steps are not printed
    bar.end("done")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/2] tiny_tasks ..."
    assert lines[1].startswith("[1/2] tiny_tasks: done in ")
    assert len(lines) == 2


def test_peak_rss_sees_memory_allocated_inside_the_block():
    with PeakRSS(interval=0.001) as rss:
        block = bytearray(64 << 20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
    del block
    assert rss.max_growth >= 48 << 20


def test_a_budget_stops_rounds_early_but_never_below_the_minimum():
    calls: list[str] = []

    def slow():
        calls.append("x")
        return 1.0

    # Every run "takes" real time below; use a tiny budget so that any round exceeds it.
    out = interleave({"a": slow, "b": slow}, reps=10, warmup=3, budget=1e-9, min_reps=3)
    assert len(out["a"].times) == len(out["b"].times) == 3
    assert len(calls) == 2 * (1 + 3)  # one warm-up round only: it already took over budget / 4
