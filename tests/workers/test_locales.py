"""The parent's locale reaches the warm workers (workers.locales)."""

from __future__ import annotations

import locale

import pytest

from ..conftest import run_python


def _has(name):
    old = locale.setlocale(locale.LC_NUMERIC)
    try:
        locale.setlocale(locale.LC_NUMERIC, name)
    except locale.Error:
        return False
    locale.setlocale(locale.LC_NUMERIC, old)
    return True


@pytest.mark.skipif(not (_has("C.UTF-8") and _has("C")), reason="needs the C and C.UTF-8 locales")
def test_a_task_runs_under_the_locale_the_script_set_since_as_in_the_loop():
    # locale.setlocale(...) after the workers started: a warm worker kept the locale an
    # interpreter starts with (as under joblib), so a task formatted and encoded otherwise
    proc = run_python(
        """
        import locale
        from picklepool import Parallel, delayed

        def task(_):
            return locale.setlocale(locale.LC_NUMERIC), locale.getpreferredencoding(False)

        def show():
            loop = [task(i) for i in range(2)]
            print(loop[0], Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)) == loop)

        locale.setlocale(locale.LC_ALL, "C.UTF-8")
        show()
        locale.setlocale(locale.LC_NUMERIC, "C")
        locale.setlocale(locale.LC_CTYPE, "C")
        show()
        locale.setlocale(locale.LC_ALL, "C.UTF-8")  # back to the first one
        show()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "('C.UTF-8', 'UTF-8') True",
        "('C', 'ANSI_X3.4-1968') True",
        "('C.UTF-8', 'UTF-8') True",
    ]
