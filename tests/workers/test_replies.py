"""The reply of a batch whose reply itself could not be made (``workers.replies.unsent``)."""

from __future__ import annotations

from picklepool.wire import Results, TaskFailed, decode_failure
from picklepool.workers import replies


class _Odd(ValueError):
    pass


def test_a_task_failure_whose_reply_raised_past_exception_is_the_tasks_error_framed():
    # Making a reply runs the tasks' code again (an exception's __repr__ or __str__, a
    # result's reducer): what that raised beyond Exception left the worker's reply code,
    # and the caller got it bare from loky (a SystemExit, ending a script quietly).
    failure = decode_failure(
        replies.unsent(TaskFailed(3, _Odd("bad row"), "Traceback ..."), 2, SystemExit(4))
    )
    assert failure is not None and failure.kind == "error" and failure.task == 3
    assert failure.mro[0].endswith(":_Odd") and "builtins:ValueError" in failure.mro
    assert "making the reply raised builtins.SystemExit" in failure.message
    assert failure.traceback == "Traceback ..."


def test_results_whose_reply_raised_past_exception_are_not_sent_back_naming_the_first_task():
    failure = decode_failure(replies.unsent(Results([1, 2], 0.0), 5, KeyboardInterrupt()))
    assert failure is not None and failure.kind == "dump" and failure.task == 5
    assert "making the reply raised builtins.KeyboardInterrupt" in failure.message
