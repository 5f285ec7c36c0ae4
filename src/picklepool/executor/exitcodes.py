"""What a dead worker's exit status says happened, and what to do about it.

loky reports the exit statuses of a broken pool's workers as ``EXIT(3)`` or
``SIGSEGV(-11)``, comma-separated (the culprit's, and those of the workers it
killed after). ``WorkerCrashedError``'s message gives the advice of the most telling
one: a worker that died of its own, rather than one loky killed (SIGKILL).
"""

from __future__ import annotations

import re
import signal

_STATUS = re.compile(r"\b(EXIT|SIG[A-Z0-9]+)\((-?\d+)\)")

# a fault in the process itself: compiled code crashed (faulthandler prints the worker's stack)
_FAULTS = frozenset({"SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT", "SIGSYS", "SIGTRAP"})

GENERIC = (
    "This is usually a segfault in compiled code, a call to os._exit(), or the OOM killer (check memory use)."
)


def _advice(name: str, code: int) -> str:
    if name in _FAULTS:
        return (
            f"{name} is a crash in compiled code (an extension module, ctypes, a C library "
            "the worker called): the stack faulthandler prints on stderr shows the line that "
            "crashed (loky's workers enable it; elsewhere, run with python -X faulthandler)."
        )
    if name == "SIGKILL":
        return (
            "SIGKILL comes from outside the worker: usually the OOM killer, when the workers "
            "use more memory than the machine or container allows (check memory use; "
            "max_worker_memory= retires workers that grow, a smaller n_jobs uses less), "
            "or a `kill -9`."
        )
    if name == "SIGALRM":
        return (
            "SIGALRM ends a process that has no handler for it: the code the worker ran (or a "
            "library it calls) set a timer of its own (signal.alarm or signal.setitimer; with "
            "timeout=, it replaced the call's). Give that code a SIGALRM handler of its own, or "
            "use Parallel(timeout=...) instead of its timer."
        )
    if name == "SIGPIPE":
        return (
            "SIGPIPE: the worker wrote to a pipe or socket whose other end was closed, with "
            "SIGPIPE's default action (a task's signal.signal(signal.SIGPIPE, signal.SIG_DFL)); "
            "leave SIGPIPE ignored, as Python sets it, and handle BrokenPipeError instead."
        )
    if name.startswith("SIG"):
        return (
            f"{name} was sent to the worker by another process, or by the code it ran "
            "(os.kill, signal.raise_signal): find what sends it."
        )
    if code == 1:
        return (
            "Exit status 1: the code the worker ran (or a C or Fortran library it calls, on a "
            "fatal error: its message is above on stderr) ended the process with os._exit(1) "
            "or C's exit(1), or an error in the worker's own code outside any task (its "
            "traceback is above on stderr), such as code that closed the worker's file "
            "descriptors (os.close, os.closerange). Raise an exception instead of exiting."
        )
    return (
        f"Exit status {code}: the code the worker ran (or a library it calls) ended the "
        f"process with os._exit({code}) (or C's exit()); raise an exception instead."
    )


DEFAULT_RECURSION_LIMIT = 1000  # CPython's


def pickling_fault(statuses: str, recursion_limit: int) -> str:
    """Advice for a worker that died of a fault while pickling a batch's results with the
    recursion limit raised (*recursion_limit*, the parent's, which workers mirror), or "".

    The pickler recurses once per level of nesting, each level a few C frames: with the
    limit raised far enough, a deep result (a linked list of 20,000 objects) overflows the
    C stack before it reaches the limit, and the worker dies of SIGSEGV (where with the
    default limit a RecursionError names the task): nothing in compiled code of the user's.
    """
    found = [name for name, _code in _STATUS.findall(statuses) if name != "SIGKILL"]
    if not found or found[0] not in _FAULTS or recursion_limit <= DEFAULT_RECURSION_LIMIT:
        return ""
    return (
        f"The worker died pickling the results with the recursion limit raised to "
        f"{recursion_limit} (sys.setrecursionlimit in this process, which workers mirror): "
        "a result nested deeper than the C stack allows (a long linked list, a deep tree of "
        "objects) overflows it, as the pickler recurses once per level, before the limit "
        "stops it. Return such a result flattened (its nodes as a list, their links as "
        "indices), or lower the recursion limit before the call to get a RecursionError "
        "naming the task instead. "
    )


def status_name(code: int) -> str:
    """A process's exit code as loky writes it: ``EXIT(3)``, ``SIGSEGV(-11)``."""
    if code >= 0:
        return f"EXIT({code})"
    try:
        return f"{signal.Signals(-code).name}({code})"
    except ValueError:
        return f"SIGNAL{-code}({code})"


def status_advice(text: str) -> str:
    """The advice for the exit statuses named in *text*, or "" when it names none."""
    return crash_advice(text) if _STATUS.search(text) else ""


def crash_advice(statuses: str) -> str:
    """The advice for loky's list of exit *statuses* (``"EXIT(3), SIGKILL(-9)"``)."""
    found = _STATUS.findall(statuses)
    own = [(name, int(code)) for name, code in found if name != "SIGKILL"]
    if own:
        return _advice(*own[0])
    if found:
        return _advice("SIGKILL", -9)
    return GENERIC
