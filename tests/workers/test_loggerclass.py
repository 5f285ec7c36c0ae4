"""The logger class and level names the parent set in logging reach the workers (workers.loggerclass)."""

from __future__ import annotations

import logging

from picklepool import Executor
from picklepool.workers import loggerclass

from ..conftest import prints_ok

SCRIPT = """
import logging, sys
from picklepool import Executor, Parallel, delayed

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

class TraceLogger(logging.Logger):  # the usual recipe for a TRACE level
    def trace(self, msg, *args, **kwargs):
        if self.isEnabledFor(TRACE):
            self._log(TRACE, msg, args, **kwargs)
        return "traced"

logging.setLoggerClass(TraceLogger)
log = logging.getLogger("app")  # (travels by name: made again in the worker)

def task(i):
    return log.trace("step %d", i), type(logging.getLogger("app.sub")).__name__, logging.getLevelName(TRACE)

if __name__ == "__main__":
    loop = [task(i) for i in range(2)]
    assert loop[0] == ("traced", "TraceLogger", "TRACE"), loop
    assert Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)) == loop
    with Executor(max_workers=1) as ex:
        assert list(ex.map(task, range(2))) == loop
    print("ok")
"""


def test_a_tasks_logger_is_of_the_class_the_script_set_with_its_level_names():
    # a warm worker made the script's logger a plain Logger: AttributeError: 'Logger' object
    # has no attribute 'trace' (under joblib too), and getLevelName(5) was "Level 5"
    prints_ok(SCRIPT)


def _level_name(level):
    return logging.getLevelName(level)


def test_a_level_name_the_parent_drops_is_taken_back():
    with Executor(max_workers=1) as ex:
        logging.addLevelName(7, "PICKLEPOOL_FINE")
        try:
            assert ex.submit(_level_name, 7).result() == "PICKLEPOOL_FINE"
        finally:
            del logging._levelToName[7], logging._nameToLevel["PICKLEPOOL_FINE"]
        assert loggerclass.pickled() is None
        assert ex.submit(_level_name, 7).result() == "Level 7"
