"""Progress: the callback, the bar (tqdm and plain), verbose lines, and when they show."""

from __future__ import annotations

import io
import re
import sys

import pytest

from picklepool import Parallel, delayed, parallel_config
from picklepool.executor import progress


def square(x):
    return x * x


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


def _assert_well_formed(seen, n):
    dones = [d for d, _ in seen]
    assert dones == sorted(set(dones)), "done counts must strictly increase"
    assert seen[-1] == (n, n)


@pytest.mark.parametrize("backend", ["loky", "threading", "sequential"])
@pytest.mark.parametrize("return_as", ["list", "generator", "generator_unordered"])
def test_callback_gets_done_and_known_total(backend, return_as):
    seen = []
    out = Parallel(n_jobs=2, backend=backend, return_as=return_as, progress=lambda d, t: seen.append((d, t)))(
        [delayed(square)(i) for i in range(40)]
    )
    assert sorted(out) == [i * i for i in range(40)]
    _assert_well_formed(seen, 40)
    assert {t for _, t in seen} == {40}


@pytest.mark.parametrize("return_as", ["list", "generator", "generator_unordered"])
def test_callback_with_a_generator_of_unknown_length(return_as):
    seen = []
    out = Parallel(n_jobs=2, batch_size=1, return_as=return_as, progress=lambda d, t: seen.append((d, t)))(
        delayed(square)(i) for i in range(20)
    )
    assert sorted(out) == [i * i for i in range(20)]
    _assert_well_formed(seen, 20)
    totals = [t for _, t in seen]
    assert totals[0] is None  # not known before the generator is exhausted
    first_known = totals.index(20)
    assert set(totals[:first_known]) == {None} and set(totals[first_known:]) == {20}


def test_bar_hidden_when_stderr_is_not_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    Parallel(n_jobs=2, progress=True)(delayed(square)(i) for i in range(30))
    assert stream.getvalue() == ""
    assert progress.make_reporter(True, 0, 2) is None


def test_tqdm_bar_on_a_terminal(monkeypatch):
    stream = Terminal()
    monkeypatch.setattr("sys.stderr", stream)
    Parallel(n_jobs=2, progress=True)([delayed(square)(i) for i in range(30)])
    text = stream.getvalue()
    assert "30/30" in text and "task/s" in text


def test_always_draws_without_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    Parallel(n_jobs=2, progress="always")([delayed(square)(i) for i in range(30)])
    assert "30/30" in stream.getvalue()


@pytest.mark.parametrize(("value", "shown"), [("always", True), ("1", False), ("0", False)])
def test_env_var_sets_the_default(monkeypatch, value, shown):
    monkeypatch.setenv("PICKLEPOOL_PROGRESS", value)
    stream = io.StringIO()  # not a terminal: only "always" draws here
    monkeypatch.setattr("sys.stderr", stream)
    Parallel(n_jobs=2)([delayed(square)(i) for i in range(10)])
    assert ("10/10" in stream.getvalue()) is shown


def test_argument_beats_the_env_var(monkeypatch):
    monkeypatch.setenv("PICKLEPOOL_PROGRESS", "always")
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    Parallel(n_jobs=2, progress=False)([delayed(square)(i) for i in range(10)])
    assert stream.getvalue() == ""


def test_invalid_progress_names_the_source(monkeypatch):
    with pytest.raises(ValueError, match="progress='sometimes' .from argument"):
        Parallel(progress="sometimes")
    monkeypatch.setenv("PICKLEPOOL_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="PICKLEPOOL_PROGRESS"):
        Parallel()


def test_a_progress_callable_that_cannot_take_done_and_total_is_refused_where_given():
    # It was taken, and the call failed once its first batch was done, with Python's own
    # "<lambda>() takes 0 positional arguments but 2 were given", naming no setting.
    ran = []

    def task(x):
        ran.append(x)
        return x

    for bad in (lambda: None, lambda done: None, lambda done, total, extra: None):
        with pytest.raises(
            TypeError,
            match=r"\(from argument\) is a callable that cannot be called as progress\(done, total_or_None\)",
        ):
            Parallel(n_jobs=1, progress=bad)
        with pytest.raises(TypeError, match=r"from parallel_config"):
            with parallel_config(progress=bad):
                Parallel(n_jobs=1)([delayed(task)(1)])
    assert ran == []

    class Report:
        def __call__(self, done, total=None):
            pass

    # taken: two parameters, *args, a callable object, one whose signature cannot be read
    for good in (lambda d, t: None, lambda *args: None, Report(), print):
        assert Parallel(n_jobs=1, progress=good)([delayed(square)(i) for i in range(3)]) == [0, 1, 4]


def test_plain_bar_when_tqdm_is_missing(monkeypatch):
    monkeypatch.setattr(progress, "_tqdm_class", lambda: None)
    stream = Terminal()
    monkeypatch.setattr("sys.stderr", stream)
    Parallel(n_jobs=2, progress=True)([delayed(square)(i) for i in range(50)])
    text = stream.getvalue()
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("[" + "#" * progress.BAR_WIDTH + "] 50/50 100%")
    assert "tasks/s" in last and "eta" in last
    assert text.endswith("\n") and text.count("\n") == 1  # one line, redrawn in place


def test_plain_bar_with_unknown_total_counts_tasks():
    stream = io.StringIO()
    bar = progress.PlainBar(stream)
    bar.update(5, None)
    bar.close()
    assert re.match(r"\r5 tasks \| [\d.e+]+ tasks/s \| elapsed \d", stream.getvalue())


def test_plain_bar_throttles_but_draws_the_last_state():
    stream = io.StringIO()
    bar = progress.PlainBar(stream)
    for done in range(1, 1001):
        bar.update(done, None)
    assert stream.getvalue().count("\r") < 1000
    bar.close()
    assert "1000 tasks" in stream.getvalue().split("\r")[-1]


def test_closing_a_generator_early_ends_the_bar(monkeypatch):
    monkeypatch.setattr(progress, "_tqdm_class", lambda: None)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    gen = Parallel(n_jobs=2, progress="always", return_as="generator", batch_size=1)(
        delayed(square)(i) for i in range(100)
    )
    assert [next(gen) for _ in range(3)] == [0, 1, 4]
    gen.close()
    assert stream.getvalue().endswith("\n")


def test_verbose_above_10_prints_a_line_per_batch(capsys):
    Parallel(n_jobs=2, verbose=11, batch_size=5)([delayed(square)(i) for i in range(50)])
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[Parallel(n_jobs=2)]: Using backend LokyBackend with 2 concurrent workers."
    lines = lines[1:]
    assert len(lines) == 10
    assert all(line.startswith("[Parallel(n_jobs=2)]: Done ") for line in lines)
    assert re.search(r"Done 50 out of 50 \| elapsed: +\d+\.\ds finished$", lines[-1])
    assert "remaining:" in lines[0]


@pytest.mark.parametrize(
    "options",
    [
        {"n_jobs": 1},
        {"n_jobs": 2, "pre_dispatch": 1},
        {"n_jobs": 2, "pre_dispatch": 1, "backend": "threading"},
    ],
)
def test_a_generator_found_exhausted_after_its_last_batch_still_ends_finished(capsys, options):
    # n_jobs=1 (or pre_dispatch=1) runs each batch before pulling the next task, so the
    # generator's end is found once the last batch was reported: its "Done 4 tasks" line
    # was the last one, where joblib ends with "Done 4 out of 4 | ... finished", and a
    # progress callback never got the total.
    seen = []
    out = Parallel(batch_size=1, verbose=10, progress=lambda d, t: seen.append((d, t)), **options)(
        delayed(square)(i) for i in range(4)
    )
    assert out == [0, 1, 4, 9]
    assert seen[-1] == (4, 4) and seen[-2][0] == 4
    last = capsys.readouterr().err.splitlines()[-1]
    prefix = f"[Parallel(n_jobs={options['n_jobs']})]: "
    assert re.fullmatch(re.escape(prefix) + r"Done   4 out of   4 \| elapsed: +\d+\.\ds finished", last), last


def test_verbose_lines_thin_out_as_batches_grow():
    stream = io.StringIO()
    lines = progress.VerboseLines(1, 4, stream, None)
    for batch in range(1, 1001):
        lines(batch, None)
    printed = stream.getvalue().splitlines()
    assert 5 <= len(printed) <= 12  # about log2(1000), never one per batch
    assert "Done   1 tasks      | elapsed:    0.0s" in printed[0]  # joblib's widths
    more = io.StringIO()
    lines = progress.VerboseLines(10, 4, more, None)
    for batch in range(1, 1001):
        lines(batch, None)
    assert len(printed) < len(more.getvalue().splitlines()) < 1000


def test_verbose_reports_recycled_workers():
    stream = io.StringIO()
    count = iter([2, 5])
    lines = progress.VerboseLines(1, 2, stream, lambda: next(count))
    lines(10, 10)
    assert stream.getvalue().splitlines()[-1] == (
        "[Parallel(n_jobs=2)]: 3 workers recycled during this call (RSS over max_worker_memory)"
    )


def test_callback_errors_propagate():
    def boom(done, total):
        raise RuntimeError("ui failed")

    with pytest.raises(RuntimeError, match="ui failed"):
        Parallel(n_jobs=2, progress=boom)([delayed(square)(i) for i in range(10)])


def test_nothing_to_report_costs_nothing():
    assert progress.make_reporter(False, 0, 2) is None


@pytest.mark.parametrize(("seconds", "text"), [(4.25, "4.2s"), (90, "1.5min"), (7200, "2.0h")])
def test_format_seconds(seconds, text):
    assert progress.format_seconds(seconds) == text


def test_tqdm_class_is_none_when_tqdm_is_not_installed(monkeypatch):
    assert progress._tqdm_class() is not None
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert progress._tqdm_class() is None
    assert isinstance(progress._make_bar(io.StringIO()), progress.PlainBar)


def test_the_plain_bar_draws_on_a_stream_with_only_a_write():
    # sys.stderr may be any object with a write (print needs no more): flush() failed the call
    from ..workers.test_output import WriteOnly

    stream = WriteOnly()
    bar = progress.PlainBar(stream)  # type: ignore[arg-type]
    bar.update(2, 2)
    bar.close()
    assert "2/2 100%" in "".join(stream.parts)
    assert "".join(stream.parts).endswith("\n")
