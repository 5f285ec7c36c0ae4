"""The program's objects are finalized at its exit after a call, as without picklepool.

The parent's caches (the script's namespace and modules ``workers.moduleglobals`` watches,
the modules ``executor.reloaded`` watches, the functions' bytes ``executor.unchanged`` keeps,
the function ``delayed`` made last) held ``__main__``'s namespace past its module's removal
from ``sys.modules`` and the collection that follows: its objects were never collected at
the exit, their ``__del__`` never ran (a buffer not flushed, a file or folder not removed).
joblib and a plain loop run them. The exit drops those caches once no call runs.
"""

from __future__ import annotations

import pytest

from tests.conftest import run_python

SCRIPT = """
import os
from picklepool import Executor, Parallel, delayed

def square(x):
    return x * x

class Buffer:
    def __init__(self):
        self.lines = []
    def __del__(self, os=os):
        os.write(1, ("flushed %d\\n" % len(self.lines)).encode())

if __name__ == "__main__":
    out = Buffer()
    tasks = [delayed(square)(i) for i in range(4)]
    {call}
    print("called", flush=True)
"""

CALLS = {
    "list": "out.lines.extend(Parallel(2)(tasks))",
    "generator": "out.lines.extend(Parallel(2, return_as='generator')(tasks))",
    "executor": "with Executor(2) as ex: out.lines.extend(ex.map(square, range(4)))",
    "block": "with Parallel(n_jobs=2) as p: out.lines.extend(p(tasks))",
    "multiprocessing": "out.lines.extend(Parallel(2, backend='multiprocessing')(tasks))",
    "n_jobs_1": "out.lines.extend(Parallel(n_jobs=1)(tasks))",
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_the_scripts_objects_are_finalized_at_its_exit_after_a_call(call):
    proc = run_python(SCRIPT.replace("{call}", CALLS[call]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["called", "flushed", "4"], proc.stdout + proc.stderr
