"""A task's log records reach the parent's handlers, as in the loop the call replaces."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import warnings

import pytest

from picklepool import Executor, Parallel, delayed

from ..conftest import run_python


def test_a_tasks_records_go_to_the_handlers_the_script_configured(tmp_path):
    # logging.basicConfig(filename=..., level=INFO) in a script: the loop wrote its tasks'
    # records to the file; a worker has no handler, so an INFO record was lost and a
    # WARNING printed to the terminal without the script's format (as under joblib)
    log_file = tmp_path / "run.log"
    proc = run_python(
        f"""
        import logging
        from picklepool import Parallel, delayed

        log = logging.getLogger("myapp.core")

        def task(i):
            log.debug("debug %d", i)
            log.info("info %d", i)
            log.warning("warning %d", i)
            logging.getLogger("noisy").warning("noisy %d", i)
            return i

        logging.basicConfig(
            filename={str(log_file)!r}, level=logging.INFO, format="%(name)s %(levelname)s %(message)s"
        )
        logging.getLogger("noisy").setLevel(logging.ERROR)
        assert Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)) == [0, 1]
        assert Parallel(n_jobs=2)(delayed(task)(i) for i in range(2, 3)) == [2]
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    lines = log_file.read_text().splitlines()
    levels = (("INFO", "info"), ("WARNING", "warning"))
    expected = [f"myapp.core {level} {word} {i}" for i in range(3) for level, word in levels]
    assert sorted(lines) == sorted(expected)


def test_a_logger_the_script_set_lower_than_the_root_gets_its_records_and_tracebacks():
    proc = run_python(
        """
        import logging
        from picklepool import Parallel, delayed

        def task(i):
            logging.getLogger("myapp").debug("debug %d", i)
            try:
                raise ZeroDivisionError("division by zero")
            except ZeroDivisionError:
                logging.getLogger("myapp.db").exception("failed %d", i)
            return i

        logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
        logging.getLogger("myapp").setLevel(logging.DEBUG)
        Parallel(n_jobs=2)(delayed(task)(i) for i in range(1))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[:2] == ["myapp DEBUG debug 0", "myapp.db ERROR failed 0"]
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: division by zero"


def test_a_named_loggers_handler_gets_the_records_as_in_the_loop():
    # the common module-logger recipe: a handler on getLogger("myapp"), none on the root;
    # the loop printed the task's records (and those of a thread it started), a worker lost
    # them all (they were sent back only when the root logger had handlers). A library's
    # NullHandler alone is no configuration: nothing is sent then.
    proc = run_python(
        """
        import logging, pickle, sys, threading
        from picklepool import Executor, Parallel, delayed
        from picklepool.workers import logback

        log = logging.getLogger("myapp")
        logging.getLogger("somelib").addHandler(logging.NullHandler())
        assert not logback.Parent(pickle.loads(logback.levels())).shows

        def task(i):
            log.info("task %d", i)
            t = threading.Thread(target=log.warning, args=("thread %d", i))
            t.start()
            t.join()
            return i

        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        print("loop")
        [task(i) for i in range(2)]
        print("pool")
        assert Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)) == [0, 1]
        print("executor")
        with Executor(max_workers=2) as ex:
            assert ex.submit(task, 2).result() == 2
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.split("pool\n")
    loop = out[0].splitlines()[1:]
    assert loop == [
        f"myapp {level} {word} {i}"
        for i in range(2)
        for level, word in (("INFO", "task"), ("WARNING", "thread"))
    ]
    pool, executor = out[1].split("executor\n")
    assert sorted(pool.splitlines()) == sorted(loop)
    assert executor.splitlines() == ["myapp INFO task 2", "myapp WARNING thread 2"]


def test_a_worker_whose_logging_an_initializer_configured_keeps_it():
    # the usual recipe before: an initializer sets up the worker's own logging; its records
    # are not sent to the parent too (they would be logged twice)
    proc = run_python(
        """
        import logging, sys
        from picklepool import Parallel, delayed

        def setup():
            logging.basicConfig(stream=sys.stdout, format="worker %(message)s", level=logging.INFO)

        def task(i):
            logging.getLogger("myapp").info("info %d", i)
            return i

        logging.basicConfig(level=logging.INFO, format="parent %(message)s")
        Parallel(n_jobs=2, initializer=setup)(delayed(task)(i) for i in range(1))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["worker info 0"], proc.stdout
    assert "parent" not in proc.stderr, proc.stderr


def log_info(i):
    logging.getLogger("picklepool.tests.logback").info("task %d", i)
    return i


def test_caplog_records_what_the_tasks_log(caplog):
    with caplog.at_level(logging.INFO, logger="picklepool.tests.logback"):
        assert Parallel(n_jobs=2)(delayed(log_info)(i) for i in range(4)) == [0, 1, 2, 3]
        with Executor(max_workers=2) as ex:
            assert ex.submit(log_info, 4).result() == 4
    got = sorted(r.getMessage() for r in caplog.records if r.name == "picklepool.tests.logback")
    assert got == [f"task {i}" for i in range(5)]


def _read_here():
    """This process's configuration as a worker gets it (logback.levels, read by Parent)."""
    from picklepool.workers import logback

    return logback.Parent(pickle.loads(logback.levels()))


def test_the_parents_configuration_is_read_again_when_any_part_of_it_changed(monkeypatch):
    # read at every call: the bytes read before while nothing changed (a few us), read again
    # when a level, a handler, a flag, logging.disable or logging.lastResort changed (a record
    # the parent shows since would have been dropped in the worker)
    from picklepool.workers import logback
    from picklepool.workers.logback import DISABLED, HANDLED, LEVEL, PROPAGATE, SHOWS

    name = "picklepool.tests.logback.read"
    logger = logging.getLogger(name)
    handler = logging.StreamHandler(io.StringIO())  # made before it is added
    try:
        data = logback.levels()
        assert logback.levels() is data
        logger.setLevel(5)
        assert _read_here().loggers[name][LEVEL] == 5
        logger.addHandler(handler)
        assert _read_here().loggers[name][SHOWS] == logging.NOTSET
        handler.setLevel(logging.ERROR)
        assert _read_here().loggers[name][SHOWS] == logging.ERROR
        logger.propagate = False
        assert _read_here().loggers[name][PROPAGATE] is False
        logger.disabled = True
        assert _read_here().loggers[name][DISABLED] is True
        logger.removeHandler(handler)
        assert _read_here().loggers[name][HANDLED] is False
        monkeypatch.setattr(logging, "lastResort", None)
        assert _read_here().last_resort is None
        monkeypatch.undo()
        logging.disable(logging.INFO)
        assert _read_here().disable == logging.INFO
        logging.disable(logging.NOTSET)
        data = logback.levels()
        assert logback.levels() is data
    finally:
        logging.disable(logging.NOTSET)
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate, logger.disabled = True, False


def test_a_worker_follows_each_change_of_the_parents_levels_and_keeps_a_tasks_own(monkeypatch):
    # a warm worker: the parent's levels as they are at each call, set once per change
    # (setLevel empties every logger's cache); a level a task set stays while the parent's
    # of that logger stays the same, and comes back when a change of the parent's ends
    # (caplog.at_level's block), as in the loop (workers.following)
    from picklepool.workers import following, logback

    name = "picklepool.tests.logback.follow"
    logger = logging.getLogger(name)
    root = logging.getLogger()
    calls = []
    real = logging.Logger.setLevel

    def counted(self, level):
        calls.append((self.name, level))
        real(self, level)

    def parent_with(level):  # the bytes a parent whose logger has *level* sends
        real(logger, level)
        data = logback.levels()
        real(logger, logging.NOTSET)  # (the worker's own, before its first batch)
        return data

    monkeypatch.setattr(root, "handlers", [])  # (pytest's: a worker has none)
    monkeypatch.setattr(logback, "_followed", None)
    monkeypatch.setattr(following, "_seen", {})
    monkeypatch.setattr(following, "_before", {})
    try:
        debug, info, unset = parent_with(logging.DEBUG), parent_with(logging.INFO), parent_with(0)
        monkeypatch.setattr(logging.Logger, "setLevel", counted)
        logback.follow(debug)
        assert logger.level == logging.DEBUG and logger.isEnabledFor(logging.DEBUG)
        logback.follow(debug)
        assert calls == [(name, logging.DEBUG)]
        logger.setLevel(logging.ERROR)  # a task's own
        logback.follow(debug)
        assert logger.level == logging.ERROR
        logback.follow(info)  # a block in the parent
        assert logger.level == logging.INFO
        logback.follow(debug)  # its end: the task's own back
        assert logger.level == logging.ERROR
        logback.follow(unset)
        assert logger.level == logging.NOTSET
        assert logger.getEffectiveLevel() == root.getEffectiveLevel()
    finally:
        real(logger, logging.NOTSET)


def test_a_record_comes_back_with_every_attribute_and_shares_what_repeats(monkeypatch):
    # a row per record, the message formatted and the traceback as text, as QueueHandler
    # prepares them; the file, line, thread and process of the row before are one object
    # (~350 bytes a record in the worker, where a dict of its attributes was ~800)
    from picklepool.workers import logback

    name = "picklepool.tests.logback.rows"
    logger = logging.getLogger(name)
    made = []

    def keep(record):
        made.append(record)
        return True

    logger.setLevel(logging.DEBUG)
    parent = _read_here()
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    logger.addFilter(keep)
    try:
        with logback.collected(parent) as rows:
            for i in range(2):
                logger.info("row %d of %s", i, "two", extra={"job": i})
            try:
                raise ZeroDivisionError("division by zero")
            except ZeroDivisionError:
                logger.exception("failed")
        logger.removeFilter(keep)
        shown = []
        handler = logging.Handler()
        handler.emit = shown.append
        logger.addHandler(handler)
        logger.propagate = False
        logback.show(pickle, logback.dumps(pickle, rows))
    finally:
        logger.removeFilter(keep)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    assert [r.getMessage() for r in shown] == ["row 0 of two", "row 1 of two", "failed"]
    same = ("name", "levelno", "levelname", "pathname", "filename", "module", "lineno", "funcName")
    same += ("created", "msecs", "relativeCreated", "thread", "threadName", "processName", "process")
    for before, after in zip(made, shown, strict=True):
        assert {k: getattr(after, k) for k in same} == {k: getattr(before, k) for k in same}
        assert after.args is None and after.exc_info is None
    assert [r.job for r in shown[:2]] == [0, 1]
    assert shown[2].exc_text.startswith("Traceback") and shown[2].exc_text.endswith("division by zero")
    keys = logback._KEYS
    for key in ("filename", "module", "thread", "process"):
        assert rows[1][keys.index(key)] is rows[0][keys.index(key)]


@pytest.mark.parametrize(
    ("setup", "answers", "sent"),
    [
        # what `import dask.distributed` does: its logger at INFO, with a handler of its own
        (
            "d = logging.getLogger('distributed'); d.setLevel(logging.INFO); "
            "d.addHandler(logging.StreamHandler())",
            [False, False, logging.WARNING],
            {},
        ),
        # basicConfig at INFO, one subsystem debugged: the INFO records are shown, only they
        (
            "logging.basicConfig(level=logging.INFO, filename=os.devnull); "
            "logging.getLogger('myapp.db').setLevel(logging.DEBUG)",
            [True, False, logging.INFO],
            {"20": 2000},
        ),
    ],
)
def test_records_below_the_parents_level_of_their_logger_are_not_made_in_the_worker(setup, answers, sent):
    # any logger of the parent set below the root's level made the worker's root take that
    # level: every task's INFO (DEBUG) record of any logger was made, kept and sent back, to
    # be dropped by the parent (40x slower, hundreds of MB a worker, nothing shown)
    proc = run_python(
        f"""
        import collections, json, logging, os
        from picklepool import Parallel, delayed

        {setup}
        received = collections.Counter()
        made = logging.makeLogRecord

        def counted(attrs):  # (what the parent got back, before its loggers decide)
            received[attrs["levelno"]] += 1
            return made(attrs)

        logging.makeLogRecord = counted

        def task(i):
            log = logging.getLogger("etl")
            for k in range(1000):
                log.info("row %d", k)
                log.debug("row %d", k)
            return [log.isEnabledFor(logging.INFO), log.isEnabledFor(logging.DEBUG), log.getEffectiveLevel()]

        print(json.dumps([Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)), received]))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[answers, answers], sent]


TASK_LOGS = """
import io, logging, sys
from picklepool import Parallel, delayed

NAMES = ["root", "etl", "myapp", "myapp.db", "myapp.db.sub", "myapp.other", "quiet", "quiet.child",
         "filtered", "off", "lib", "lib.x", "deep.a.b"]
LEVELS = [5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]


def task(i):
    answers = []
    for name in NAMES:
        log = logging.getLogger() if name == "root" else logging.getLogger(name)
        answers.append((name, log.getEffectiveLevel(), [log.isEnabledFor(level) for level in LEVELS]))
        for level in LEVELS:
            log.log(level, "%s %d %d", name, level, i)
    return answers


emitted, rejected, received = [], [], []


class Seen(logging.Filter):
    def __init__(self, where):
        super().__init__()
        self.where = where

    def filter(self, record):
        emitted.append((self.where, record.getMessage()))
        return self.where != "lastResort"  # (not printed)


def only_task_0(record):  # the "filtered" logger's own filter
    if record.getMessage().endswith(" 0"):
        return True
    rejected.append(record.getMessage())
    return False


made = logging.makeLogRecord


def counted(attrs):  # what the parent got back, before its loggers decide
    record = made(attrs)
    received.append(record.getMessage())
    return record


logging.makeLogRecord = counted


def handler(where, level=logging.NOTSET):
    h = logging.StreamHandler(io.StringIO())
    h.setLevel(level)
    h.addFilter(Seen(where))
    return h


def run(phase, kept_exactly=True):
    del emitted[:], rejected[:], received[:]
    pool = Parallel(n_jobs=2)(delayed(task)(i) for i in range(2))
    shown_pool, kept, dropped_by_filter = sorted(emitted), sorted(received), list(rejected)
    del emitted[:], rejected[:]
    loop = [task(i) for i in range(2)]
    assert pool == loop, (phase, [(p, q) for p, q in zip(pool[0], loop[0]) if p != q])
    assert shown_pool == sorted(emitted), (phase, sorted(set(shown_pool) ^ set(emitted)))
    if kept_exactly:
        shown = {message for _, message in shown_pool} | set(dropped_by_filter)
        assert kept == sorted(shown), (phase, sorted(set(kept) ^ shown))
    print(phase, len(kept), len(shown_pool))


logging.lastResort.addFilter(Seen("lastResort"))
on_root = handler("root")
logging.basicConfig(level=logging.INFO, handlers=[on_root])
logging.getLogger("myapp").addHandler(handler("myapp", logging.ERROR))
logging.getLogger("myapp.db").setLevel(logging.DEBUG)
logging.getLogger("myapp.other")
quiet = logging.getLogger("quiet")
quiet.setLevel(logging.DEBUG)
quiet.propagate = False  # no handler: logging.lastResort's, WARNING and above
logging.getLogger("filtered").setLevel(logging.DEBUG)
logging.getLogger("filtered").addFilter(only_task_0)
off = logging.getLogger("off")
off.setLevel(logging.DEBUG)
off.disabled = True
lib = logging.getLogger("lib")
lib.setLevel(logging.DEBUG)
lib.addHandler(logging.NullHandler())
lib.propagate = False  # shown nowhere
logging.getLogger("deep").setLevel(5)
logging.getLogger("deep.a")
"""


def test_a_worker_keeps_exactly_the_records_the_parent_shows_and_answers_isenabledfor_as_it():
    # both ways, against the loop in the parent: the records a worker keeps are those the
    # parent's handlers (or logging.lastResort) show, but those its logger's own filter drops;
    # the parent's handlers show what they showed in the loop; a task's isEnabledFor and
    # getEffectiveLevel answer as in the loop, for loggers the parent made or not, with
    # propagate=False, disabled, a NullHandler, logging.disable, and changes between calls
    proc = run_python(
        TASK_LOGS
        + """
run("configured")
on_root.setLevel(logging.INFO)
logging.getLogger().setLevel(logging.WARNING)
logging.getLogger("myapp.db").setLevel(logging.NOTSET)
logging.getLogger("etl").setLevel(logging.DEBUG)
quiet.propagate = True
off.disabled = False
logging.disable(logging.DEBUG)
run("changed")
logging.disable(logging.NOTSET)
loose = handler("loose")
run("a handler made", kept_exactly=False)  # (it may be added anywhere: its level is kept)
logging.getLogger("deep.a").addHandler(loose)  # nothing made: the configuration read before holds
run("a handler made before added to a logger that had none", kept_exactly=False)
"""
    )
    assert proc.returncode == 0, proc.stderr
    phases = [line.rsplit(" ", 2) for line in proc.stdout.splitlines()]
    assert [p[0] for p in phases] == [
        "configured",
        "changed",
        "a handler made",
        "a handler made before added to a logger that had none",
    ]
    assert all(int(p[1]) > 0 and int(p[2]) > 0 for p in phases), phases


def test_a_level_the_script_named_keeps_its_name():
    # logging.addLevelName(25, "NOTICE") in the parent: a worker named the level of its
    # records itself, "Level 25" in the parent's output where the loop wrote NOTICE
    proc = run_python(
        """
        import logging, sys
        from picklepool import Parallel, delayed

        logging.addLevelName(25, "NOTICE")
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")

        def task(i):
            logging.getLogger("app").log(25, "notice %d", i)
            return i

        task(0)
        Parallel(n_jobs=2)(delayed(task)(i) for i in range(1, 3))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["NOTICE notice 0", "NOTICE notice 1", "NOTICE notice 2"]


LIBX = """
import logging, sys

log = logging.getLogger("libx")
_handler = logging.StreamHandler(sys.stdout)
_handler.setFormatter(logging.Formatter("LIBX %(message)s"))
log.addHandler(_handler)  # a library that shows its own records, set at its import
log.setLevel(logging.INFO)

def work(i):
    log.info("working %d", i)
    return i
"""


@pytest.mark.parametrize("root_configured", [False, True])
def test_a_librarys_own_handler_shows_a_record_once_as_in_the_loop(tmp_path, root_configured):
    # a library that adds a handler to its logger at import has it in the worker too: the
    # worker showed the record, and the parent's copy of that handler showed it again
    (tmp_path / "libx.py").write_text(LIBX)
    basic = "logging.basicConfig(stream=sys.stdout, format='ROOT %(message)s')" if root_configured else ""
    proc = run_python(
        f"""
        import logging, sys
        sys.path.insert(0, {str(tmp_path)!r})
        import libx
        from picklepool import Parallel, delayed
        {basic}
        libx.work(0)
        print("pool", flush=True)
        assert Parallel(n_jobs=2)(delayed(libx.work)(i) for i in range(1, 3)) == [1, 2]
        """
    )
    assert proc.returncode == 0, proc.stderr
    loop, pool = proc.stdout.split("pool\n")
    loop_lines = loop.splitlines()
    assert loop_lines == (["LIBX working 0", "ROOT working 0"] if root_configured else ["LIBX working 0"])
    expected = sorted(line.replace("0", str(i)) for i in (1, 2) for line in loop_lines)
    assert sorted(pool.splitlines()) == expected


def test_logging_disable_in_the_parent_holds_in_the_workers_as_in_the_loop():
    # logging.disable(CRITICAL) in a script (to silence everything): the loop printed
    # nothing, a worker printed its tasks' warnings through logging.lastResort and answered
    # isEnabledFor(WARNING) True; lifted again, the warnings print as in the loop
    proc = run_python(
        """
        import logging
        from picklepool import Parallel, delayed

        log = logging.getLogger("myapp")

        def task(i):
            log.warning("warning %d", i)
            return log.isEnabledFor(logging.WARNING), log.isEnabledFor(logging.CRITICAL + 1)

        logging.disable(logging.CRITICAL)
        print(Parallel(n_jobs=2)(delayed(task)(i) for i in range(2)))
        logging.disable(logging.NOTSET)
        print(Parallel(n_jobs=2)(delayed(task)(i) for i in range(2, 4)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[(False, True), (False, True)]", "[(True, True), (True, True)]"]
    assert sorted(proc.stderr.splitlines()) == ["warning 2", "warning 3"]


@pytest.mark.parametrize("how", ["Parallel", "Executor"])
def test_a_fork_started_workers_records_reach_the_parents_in_memory_handlers(caplog, how):
    # backend="multiprocessing" (or Executor(mp_context="fork")) forks its workers, which
    # inherit the parent's handlers: a worker took its root logger's handlers for its own (as
    # an initializer's) and showed the records there, into its copy of caplog's list or of a
    # StringIO: lost, where the loop (and the loky workers) gave them to the parent's handlers
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    named = logging.getLogger("picklepool.tests.logback")
    named.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="picklepool.tests.logback"):
            if how == "Parallel":
                results = Parallel(n_jobs=2, backend=fork)(delayed(log_info)(i) for i in range(4))
                assert results == [0, 1, 2, 3]
            else:
                with Executor(max_workers=2, mp_context=fork) as ex:
                    assert list(ex.map(log_info, range(4))) == [0, 1, 2, 3]
    finally:
        named.removeHandler(handler)
    got = sorted(r.getMessage() for r in caplog.records if r.name == "picklepool.tests.logback")
    assert got == [f"task {i}" for i in range(4)]
    assert sorted(stream.getvalue().splitlines()) == [f"task {i}" for i in range(4)]


class _BuiltOnlyInWorkers:
    """An object that this process (the parent) cannot rebuild: as one of a module only the
    worker imports."""

    def __init__(self, parent):
        self.parent = parent

    def __repr__(self):
        return "<BuiltOnlyInWorkers>"

    def __reduce__(self):
        return _rebuild_in_workers_only, (self.parent,)


def _rebuild_in_workers_only(parent):
    if os.getpid() == parent:
        raise ModuleNotFoundError("No module named 'plugin_only_in_the_worker'")
    return _BuiltOnlyInWorkers(parent)


def _log_an_extra_the_parent_cannot_rebuild(parent):
    named = logging.getLogger("picklepool.tests.logback")
    named.info("plain %d", 1, extra={"job": 7})
    named.info("with an odd extra", extra={"job": 8, "odd": _BuiltOnlyInWorkers(parent)})
    return 1


def test_a_batchs_records_whose_extra_the_parent_cannot_rebuild_come_with_its_text(caplog):
    # one record's extra= object that the parent cannot unpickle (its class's module only the
    # worker imports) lost every record of the batch, without a word
    with caplog.at_level(logging.INFO, logger="picklepool.tests.logback"):
        assert Parallel(n_jobs=2)([delayed(_log_an_extra_the_parent_cannot_rebuild)(os.getpid())]) == [1]
    got = [r for r in caplog.records if r.name == "picklepool.tests.logback"]
    assert [r.getMessage() for r in got] == ["plain 1", "with an odd extra"]
    assert [r.job for r in got] == [7, 8]
    assert got[1].odd == "<BuiltOnlyInWorkers>"


def _effective_level(name):
    return logging.getLogger(name).getEffectiveLevel()


def test_a_fork_started_worker_follows_a_level_the_parent_set_before_the_fork_and_took_back():
    # a fork-started Executor's worker took the levels it inherited (the parent's at the
    # fork) for its own, and went back to them when the parent took its level back: DEBUG
    # for ever there, where the loop's logger was back at WARNING
    import multiprocessing

    logger = logging.getLogger("picklepool.tests.logback.forked")
    logger.setLevel(logging.DEBUG)
    try:
        with Executor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as ex:
            assert ex.submit(_effective_level, logger.name).result() == logging.DEBUG
            logger.setLevel(logging.NOTSET)
            assert ex.submit(_effective_level, logger.name).result() == logging.root.getEffectiveLevel()
    finally:
        logger.setLevel(logging.NOTSET)


@pytest.mark.parametrize("death", ["os._exit", "SIGKILL", "SIGSEGV"])
def test_what_a_task_logged_before_its_worker_died_is_shown_once(death):
    # the records travel with the batch's reply: a worker that died before it took them along
    # (the last lines before a crash, those that say where it happened), where the loop, or a
    # script without logging configured (the worker prints them itself), shows them
    proc = run_python(
        f"""
        import ctypes, logging, os, signal, sys
        from picklepool import Parallel, WorkerCrashedError, delayed

        log = logging.getLogger("app")

        def task(i):
            log.warning("before %d", i)
            if i == 1:
                log.warning("about to die")
                if {death!r} == "os._exit":
                    os._exit(3)
                if {death!r} == "SIGKILL":  # (as the OOM killer does)
                    os.kill(os.getpid(), signal.SIGKILL)
                ctypes.string_at(0)
            return i

        if __name__ == "__main__":
            logging.basicConfig(stream=sys.stdout, format="LOGGED %(name)s %(message)s")
            print(Parallel(n_jobs=2, batch_size=1)(delayed(task)(i) for i in (0, 2)))
            try:
                Parallel(n_jobs=2, batch_size=2)(delayed(task)(i) for i in (0, 1, 2, 3))
            except WorkerCrashedError as exc:
                print("crashed")
            print(Parallel(n_jobs=2, batch_size=1)(delayed(task)(i) for i in (0, 2)))
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines.count("LOGGED app about to die") == 1, proc.stdout
    assert lines.index("LOGGED app about to die") < lines.index("crashed")  # (before the error)
    # its batch's first task's record too (task 0, done before it died); the others of the
    # calls once each, as before (the other batch, 2 and 3, may have run before the crash)
    assert lines.count("LOGGED app before 1") == 1, proc.stdout
    assert lines.count("LOGGED app before 0") == 3, proc.stdout
    assert lines.count("LOGGED app before 2") in (2, 3) and lines.count("LOGGED app before 3") <= 1


def _log_and_warn(i):
    named = logging.getLogger("picklepool.tests.logback")
    named.info("first %d", i)
    warnings.warn(f"then a warning {i}", UserWarning, stacklevel=1)
    named.info("after the warning %d", i)
    named.info("and another %d", i)
    warnings.warn(f"last a warning {i}", UserWarning, stacklevel=1)
    return i


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_tasks_warnings_reach_a_log_that_gets_both_in_the_order_they_were_given(n_jobs):
    # with logging.captureWarnings(True), a task's warnings and its log records go to the same
    # handlers: a worker's batch sent both back, and the parent showed all the warnings first
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            got.append(record.getMessage().splitlines()[0].rsplit(": ", 1)[-1])

    handler = Keep()
    root, named = logging.getLogger(), logging.getLogger("picklepool.tests.logback")
    root.addHandler(handler)
    old = named.level
    named.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            assert Parallel(n_jobs=n_jobs)([delayed(_log_and_warn)(0)]) == [0]
            with Executor(max_workers=2) as ex:
                assert ex.submit(_log_and_warn, 1).result() == 1
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        named.setLevel(old)
    assert got == [
        f"{text} {i}"
        for i in (0, 1)
        for text in ("first", "then a warning", "after the warning", "and another", "last a warning")
    ]
