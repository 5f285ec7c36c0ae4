"""joblib's subclass hooks: ``print_progress()`` with live counts, ``_print(msg)`` (issue 13, item 2).

The tqdm recipe people copy subclasses ``Parallel``, opens a bar in ``__call__`` and
moves it in ``print_progress``; a fake bar stands in for tqdm here.
"""

from __future__ import annotations

import re
import threading

import pytest

from picklepool import Parallel, delayed
from picklepool.executor import progress

BACKENDS = [("loky", 2), ("threading", 2), ("sequential", 1), ("multiprocessing", 2)]


def square(x):
    return x * x


class FakeBar:
    """What the recipe uses of tqdm: a context manager with total, n and refresh()."""

    def __init__(self, total=None):
        self.total, self.n, self.drawn, self.closed = total, 0, [], False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True

    def refresh(self):
        self.drawn.append((self.n, self.total))


class ProgressParallel(Parallel):
    """The recipe, as found in the wild (plus a record of what print_progress saw)."""

    def __init__(self, *args, total=None, **kwargs):
        self._total = total
        self.seen = []
        super().__init__(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        with FakeBar(total=self._total) as self._pbar:
            return Parallel.__call__(self, *args, **kwargs)

    def print_progress(self):
        counts = (self.n_completed_tasks, self.n_dispatched_tasks, self.n_dispatched_batches)
        self.seen.append((*counts, threading.get_ident()))
        if self._total is None:
            self._pbar.total = self.n_dispatched_tasks
        self._pbar.n = self.n_completed_tasks
        self._pbar.refresh()


@pytest.mark.parametrize(("backend", "n_jobs"), BACKENDS)
def test_the_tqdm_recipe_sees_every_batch_with_its_counts(backend, n_jobs):
    p = ProgressParallel(n_jobs=n_jobs, backend=backend, batch_size=2)
    # 12 tasks: three full pulls of batch_size * n_jobs, so every batch holds 2 (joblib's rule
    # splits a short last pull finer)
    assert p(delayed(square)(i) for i in range(12)) == [i * i for i in range(12)]
    completed = [done for done, _, _, _ in p.seen]
    # once per completed batch, in the caller's thread; with n_jobs=1, as joblib's sequential
    # path, once per task (each runs as its item is pulled: batch_size does not apply), and
    # the generator's end is found after the last one ran: once more then, with the total
    # (joblib's also calls it once more at its end, for its "finished" line)
    per_batch = 1 if n_jobs == 1 else 2
    assert completed == list(range(per_batch, 13, per_batch)) + ([12] if n_jobs == 1 else [])
    assert {tid for *_, tid in p.seen} == {threading.get_ident()}
    for done, dispatched, batches, _ in p.seen:
        assert done <= dispatched <= 12 and dispatched == per_batch * batches
    assert p.seen[-1][:3] == (12, 12, 12 // per_batch)
    assert p._pbar.drawn[-1] == (12, 12) and p._pbar.closed


def test_the_counts_start_again_at_each_call():
    p = ProgressParallel(n_jobs=2, batch_size=1, total=3)
    p(delayed(square)(i) for i in range(3))
    p(delayed(square)(i) for i in range(3))
    assert [done for done, *_ in p.seen] == [1, 2, 3, 1, 2, 3]
    assert p._pbar.drawn[-1] == (3, 3)


@pytest.mark.parametrize("return_as", ["generator", "generator_unordered"])
def test_the_recipe_with_a_generator_moves_as_results_are_read(return_as):
    p = ProgressParallel(n_jobs=2, batch_size=1, return_as=return_as, pre_dispatch="1*n_jobs")
    gen = p(delayed(square)(i) for i in range(6))
    first = next(gen)
    assert first in {0, 1}
    # the bar was opened and closed by __call__; print_progress runs as results are read
    assert sorted([first, *gen]) == [0, 1, 4, 9, 16, 25]
    assert [done for done, *_ in p.seen][-1] == 6
    assert p.seen[-1][1:3] == (6, 6)
    assert {tid for *_, tid in p.seen} == {threading.get_ident()}


class ParallelLog(Parallel):
    def __init__(self, *args, **kwargs):
        self.messages = []
        super().__init__(*args, **kwargs)

    def _print(self, msg):
        self.messages.append(msg)


@pytest.mark.parametrize(("backend", "n_jobs"), BACKENDS)
def test_verbose_lines_go_through_print_with_one_width(backend, n_jobs, capsys):
    p = ParallelLog(n_jobs=n_jobs, backend=backend, verbose=10000, batch_size=7)
    p([delayed(square)(i) for i in range(100)])
    done = [m for m in p.messages if re.search(r"Done\s+\d+ out of \d+ \|", m)]
    # a line per batch above verbose=10; with n_jobs=1 a line per task, as joblib's (each task
    # runs as its item is pulled: batch_size does not apply). With two workers, joblib's
    # batches: seven pulls of 14 go out as 14 batches of 7, the short last pull of 2 as two
    # batches of one
    assert len(done) == (100 if n_jobs == 1 else 16)
    assert len({len(re.search(r"Done\s+\d+ out of \d+ \|", m).group()) for m in done}) == 1
    assert done[-1].startswith("Done 100 out of 100 | elapsed: ") and done[-1].endswith("finished")
    assert capsys.readouterr() == ("", "")  # nothing printed past the override


def test_width_follows_the_totals_digits():
    out = []
    lines = progress.VerboseLines(10000, 2, None, None, out.append)
    lines.width = 5  # as Parallel sets it for an iterable of 12345 tasks
    for done in (1, 500, 12345):
        lines(done, 12345)
    assert out[0].startswith("Done     1 out of 12345 |") and out[2].startswith("Done 12345 out of 12345 |")


@pytest.mark.parametrize(("verbose", "stream"), [(5, "err"), (49, "err"), (50, "out"), (100, "out")])
def test_default_print_writes_stderr_then_stdout_from_verbose_50(verbose, stream, capsys):
    Parallel(n_jobs=2, verbose=verbose, batch_size=5)([delayed(square)(i) for i in range(10)])
    captured = capsys.readouterr()
    text, other = (captured.err, captured.out) if stream == "err" else (captured.out, captured.err)
    assert other == ""
    assert text.splitlines()[-1].startswith("[Parallel(n_jobs=2)]: Done 10 out of 10 | elapsed: ")


def test_a_subclass_name_shows_in_the_prefix_as_in_joblib(capsys):
    class MyParallel(Parallel):
        pass

    MyParallel(n_jobs=2, verbose=11, batch_size=5)([delayed(square)(i) for i in range(10)])
    assert capsys.readouterr().err.splitlines()[-1].startswith("[MyParallel(n_jobs=2)]: Done ")


def test_without_overrides_or_verbose_no_hook_is_installed():
    p = Parallel(n_jobs=2)
    p(delayed(square)(i) for i in range(4))
    assert p.n_completed_tasks == 0 and p._call_now is None  # nothing kept, nothing paid


@pytest.mark.parametrize(("backend", "n_jobs"), [("loky", 2), ("threading", 2), ("sequential", 1)])
def test_verbose_lines_read_as_joblibs(backend, n_jobs, capsys):
    joblib = pytest.importorskip("joblib")

    def lines(parallel, delayed_):
        parallel(n_jobs=n_jobs, backend=backend, verbose=5)(delayed_(square)(i) for i in range(10))
        text = capsys.readouterr().err
        return [re.sub(r"\d+\.\d", "T", line) for line in text.splitlines()]

    ours, theirs = lines(Parallel, delayed), lines(joblib.Parallel, joblib.delayed)
    if backend == "loky":  # joblib's own workers: not this test's to leave behind
        joblib.externals.loky.get_reusable_executor().shutdown(wait=True)
    # "[Parallel(n_jobs=2)]: Using backend LokyBackend with 2 concurrent workers." (not for n_jobs=1)
    assert ours[0].startswith("[Parallel(n_jobs=1)]: Done") if n_jobs == 1 else ours[0] == theirs[0]
    finished = f"[Parallel(n_jobs={n_jobs})]: Done  10 out of  10 | elapsed:    Ts finished"
    assert ours[-1] == theirs[-1] == finished
    sized = [re.sub(r"\d+\.\d", "T", line) for line in _verbose_lines(n_jobs, backend, list)]
    assert sized[-1] == f"[Parallel(n_jobs={n_jobs})]: Done 10 out of 10 | elapsed:    Ts finished"


def _verbose_lines(n_jobs, backend, make):
    p = ParallelLog(n_jobs=n_jobs, backend=backend, verbose=5)
    p(make(delayed(square)(i) for i in range(10)))
    return [f"[Parallel(n_jobs={n_jobs})]: {m}" for m in p.messages]


@pytest.mark.parametrize(("backend", "n_jobs"), [("loky", -1), ("threading", -1), ("sequential", 3)])
def test_the_verbose_prefix_shows_n_jobs_as_given_as_joblibs(backend, n_jobs, capsys):
    # joblib's prefix is repr(self): Parallel(n_jobs=-1), not the count of workers
    joblib = pytest.importorskip("joblib")

    def lines(parallel, delayed_):
        parallel(n_jobs=n_jobs, backend=backend, verbose=5)(delayed_(square)(i) for i in range(10))
        return [re.sub(r"\d+\.\d", "T", line) for line in capsys.readouterr().err.splitlines()]

    ours, theirs = lines(Parallel, delayed), lines(joblib.Parallel, joblib.delayed)
    if backend == "loky":
        joblib.externals.loky.get_reusable_executor().shutdown(wait=True)
    finished = f"[Parallel(n_jobs={n_jobs})]: Done  10 out of  10 | elapsed:    Ts finished"
    assert ours[-1] == theirs[-1] == finished
    assert ours[0].split("]")[0] == theirs[0].split("]")[0]
    if backend != "sequential":
        assert ours[0] == theirs[0]  # "... Using backend LokyBackend with 2 concurrent workers."
