"""One seeded random generator given as an argument to several tasks of a call is warned of.

``delayed(simulate)(rng, i) for i in range(n)``: each worker rebuilt a copy of ``rng`` at the
state the parent's had, so the tasks drew the same numbers, where the loop they replace drew
each number once; nothing said so (joblib does the same, in silence). A generator a task
function holds is warned of already (``test_function_once.py``).
"""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

from picklepool import Parallel, delayed


def draw(r: object, i: int = 0) -> float:
    return float(r.random())  # type: ignore[attr-defined]


def draw_kw(i: int, rng: object = None) -> float:
    return float(rng.random())  # type: ignore[attr-defined]


def _warned(run: object) -> tuple[list[float], list[str]]:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = run()  # type: ignore[operator]
    return out, [str(w.message) for w in rec if w.category is RuntimeWarning and "seeded" in str(w.message)]


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: np.random.default_rng(0), "numpy.random.Generator"),
        (lambda: np.random.RandomState(0), "numpy.random.RandomState"),
        (lambda: random.Random(0), "random.Random"),
    ],
)
def test_one_generator_given_to_several_tasks_is_warned_of(make: object, kind: str) -> None:
    rng = make()  # type: ignore[operator]
    out, messages = _warned(lambda: Parallel(n_jobs=2, batch_size=1)(delayed(draw)(rng, i) for i in range(4)))
    assert len(set(out)) == 1  # what the warning is about: every task drew the same number
    assert len(messages) == 1, messages
    assert messages[0].startswith("picklepool: task 1: draw(")
    assert f"its args[0] is the seeded random number generator ({kind}) that task 0: draw(" in messages[0]
    assert "SeedSequence(seed).spawn(n_tasks)" in messages[0]


def test_a_generator_given_by_keyword_or_as_the_only_argument_is_warned_of() -> None:
    rng = np.random.default_rng(0)
    _, by_keyword = _warned(lambda: Parallel(n_jobs=2)(delayed(draw_kw)(i, rng=rng) for i in range(4)))
    assert len(by_keyword) == 1 and "its kwargs['rng'] is the seeded" in by_keyword[0], by_keyword
    _, single = _warned(lambda: Parallel(n_jobs=2)(delayed(draw)(rng) for i in range(4)))
    assert len(single) == 1 and "its args[0] is the seeded" in single[0], single


def test_a_generator_of_its_own_per_task_one_task_or_an_in_process_call_is_not_warned_of() -> None:
    rng = np.random.default_rng(0)
    own = rng.spawn(4)
    out, spawned = _warned(lambda: Parallel(n_jobs=2)(delayed(draw)(r, i) for i, r in enumerate(own)))
    assert spawned == [] and len(set(out)) == 4
    _, one = _warned(lambda: Parallel(n_jobs=2)(delayed(draw)(rng, 0) for _ in range(1)))
    assert one == []
    # in the calling process the tasks draw from the parent's own generator, as the loop
    threading = Parallel(n_jobs=2, backend="threading")
    out, threads = _warned(lambda: threading(delayed(draw)(rng, i) for i in range(4)))
    assert threads == [] and len(set(out)) == 4


def test_the_joblib_backend_does_not_warn_of_a_librarys_calls() -> None:
    # scikit-learn's own calls give each task the random_state the user set (a RandomState
    # instance, in LogisticRegressionCV's folds): a warning there would name code the user
    # cannot change (and fail test suites that turn warnings into errors)
    joblib = pytest.importorskip("joblib")
    from picklepool.joblib import register

    register()
    rng = np.random.default_rng(0)

    def run() -> list[float]:
        with joblib.parallel_config(backend="picklepool", n_jobs=2):
            return joblib.Parallel(batch_size=1)(joblib.delayed(draw)(rng, i) for i in range(4))  # type: ignore[no-any-return]

    _, messages = _warned(run)
    assert messages == []


def identity(x: object) -> object:
    return type(x).__name__


def test_the_look_holds_no_class_of_the_program_past_its_call() -> None:
    # The look kept each argument class it found not to be a generator, for good: a class a
    # program made for a call (and registered in an ABC) lived on here, and its copies in the
    # workers with it (20 calls, 20 classes in a worker).
    import gc
    import weakref

    def make() -> type:
        class Local:
            pass

        return Local

    Local = make()
    gone = weakref.ref(Local)
    assert Parallel(n_jobs=2)(delayed(identity)(Local()) for _ in range(4)) == ["Local"] * 4
    del Local
    gc.collect()
    assert gone() is None
