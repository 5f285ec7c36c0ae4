"""A task's log records reach the parent's handlers, as in the loop the call replaces."""

from __future__ import annotations

import logging

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
                1 / 0
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
        import logging, sys, threading
        from picklepool import Executor, Parallel, delayed
        from picklepool.workers import logback

        log = logging.getLogger("myapp")
        logging.getLogger("somelib").addHandler(logging.NullHandler())
        assert logback.floor() is None

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


def test_the_floor_read_in_the_parent_follows_every_level_change():
    from picklepool.workers import logback

    root = logging.getLogger()
    handler = logging.NullHandler()
    saved = root.level
    logger = logging.getLogger("picklepool.tests.logback.floor")
    try:
        root.setLevel(logging.WARNING)
        root.addHandler(handler)
        base = logback.floor()  # (another logger of this process may be set lower)
        assert base is not None and base <= logging.WARNING
        logger.setLevel(5)  # after a read: the cached floor is not kept
        assert logback.floor() == 5
        logger.setLevel(logging.NOTSET)
        assert logback.floor() == base
        root.setLevel(logging.NOTSET)  # the root at NOTSET handles every record
        assert logback.floor() == logging.NOTSET
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
        logger.setLevel(logging.NOTSET)


def test_a_workers_root_level_is_set_once_for_batches_of_the_same_floor(monkeypatch):
    # setLevel empties every logger's level cache: twice a batch was 20 us of a call's
    # path in a worker with a hundred loggers (basicConfig(level=INFO) in the parent). The
    # level stays between batches; a batch wanting none gives the root its own back.
    from picklepool.workers import logback

    root = logging.getLogger()
    calls = []
    real = logging.Logger.setLevel

    def counted(self, level):
        calls.append(level)
        real(self, level)

    monkeypatch.setattr(logging.Logger, "setLevel", counted)
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(logback, "_kept", None)
    saved = root.level
    try:
        real(root, logging.WARNING)
        for _ in range(3):
            with logback.collected(logging.INFO) as records:
                logging.getLogger("picklepool.tests.logback.once").info("kept")
            assert [r["msg"] for r in records] == ["kept"]
            assert logback._spare is not None and logback._spare.records == []  # not kept there
        assert calls == [logging.INFO]
        with logback.collected(None):
            pass
        assert root.level == logging.WARNING  # its own, back
        with logback.collected(logging.INFO):
            root.setLevel(logging.ERROR)  # a task's own: stays, as in the loop
        with logback.collected(None):
            pass
        assert root.level == logging.ERROR
    finally:
        real(root, saved)


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
