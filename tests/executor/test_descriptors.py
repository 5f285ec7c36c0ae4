"""A program out of file descriptors gets an error that says so and what to do.

picklepool's own work needs descriptors (its workers' pipes, loky's resource tracker, the
shared-memory session): a program holding nearly all of its own got a bare ``OSError:
[Errno 24] Too many open files`` from deep in loky or ``multiprocessing`` (joblib's the same),
and the session folder of a failed start stayed in ``/dev/shm`` until the exit, where loky's
tracker warned of a leak.
"""

from __future__ import annotations

import errno
import json
import os
import sys

import pytest

from picklepool import Parallel, delayed
from picklepool.executor import descriptors
from tests.conftest import run_python

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="counts /proc/self/fd")

_SCRIPT = """
    import json, os, resource, sys
    import picklepool
    from picklepool import Executor, Parallel, delayed

    if __name__ == "__main__":
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for _ in range({free}):  # that many left for picklepool
            os.close(held.pop())
        try:
            if {how!r} == "Parallel":
                Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4))
            else:
                with Executor(2) as ex:
                    ex.submit(abs, -1).result()
            error = None
        except OSError as exc:
            error = [exc.errno, str(exc)]
        for fd in held:
            os.close(fd)
        print(json.dumps({{"pid": os.getpid(), "error": error}}))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["Parallel", "Executor"])
@pytest.mark.parametrize("free", [2, 8, 12, 16])  # (the tracker, the pool, the session, a worker)
def test_a_program_out_of_descriptors_is_told_so_and_what_to_do(how, free):
    result = run_python(_SCRIPT.format(free=free, how=how), timeout=100)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["error"] is not None, result.stderr
    code, text = got["error"]
    assert code == errno.EMFILE
    assert "this process ran out of file descriptors" in text, text
    assert "RLIMIT_NOFILE 256" in text and "ulimit -n" in text, text
    # nothing of the failed start is left behind, nor warned of as leaked at the exit
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"picklepool-{got['pid']}-")]
    # nor a semaphore loky made and then failed to register (the tracker could not start)
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"sem.loky-{got['pid']}-")]
    assert "leaked" not in result.stderr, result.stderr


def _exhaust(_: int) -> None:
    files = []
    while True:
        files.append(open(os.devnull))  # noqa: SIM115 - (held until the error)


def test_a_tasks_own_error_of_that_kind_is_left_as_the_tasks():
    # it names its task; the advice is for picklepool's own descriptors
    with pytest.raises(OSError) as info:
        Parallel(n_jobs=2)(delayed(_exhaust)(i) for i in range(2))
    assert info.value.errno == errno.EMFILE
    assert "ran out of file descriptors" not in str(info.value)
    assert descriptors.explained(info.value) is None
