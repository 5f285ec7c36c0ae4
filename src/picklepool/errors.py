"""Every exception picklepool raises on its own account, in one module.

Each extends the stdlib exception a user would already catch: ``PicklingError`` is a
``pickle.PicklingError``, ``WorkerCrashedError`` a ``BrokenProcessPool``,
``TaskTimeoutError`` a ``TimeoutError``, ``TaskExitError`` a ``RuntimeError``
(``TaskInterruptError`` also a ``KeyboardInterrupt``, ``TaskSystemExitError`` also a
``SystemExit``), ``StateFileError`` a ``ValueError``.
Messages say what went wrong, where, and what to do.
"""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures.process import BrokenProcessPool


class PicklingError(pickle.PicklingError):
    """A task, its arguments or its result could not be serialised or rebuilt.

    Raised in the parent. The message names the object's path inside the call
    (``args[1]['model']._lock``), its type, the pickler in use and the fix.
    """


class UnpicklingError(PicklingError, pickle.UnpicklingError):
    """Bytes made by the pickler could not be turned back into objects."""


class WorkerCrashedError(BrokenProcessPool):
    """A worker process died while running a task (segfault, ``os._exit``, kill).

    The message names the task and the exit code or signal. The pool is rebuilt
    on the next call, which works as usual.
    """


class TaskTimeoutError(TimeoutError, multiprocessing.TimeoutError):
    """A task ran longer than ``Parallel(timeout=...)`` allows.

    Also a ``multiprocessing.TimeoutError``, which joblib raises for the same case,
    so ``except multiprocessing.TimeoutError`` written for joblib still catches it.
    """


class TaskExitError(RuntimeError):
    """A task raised ``SystemExit``, ``KeyboardInterrupt`` or ``GeneratorExit``.

    The message names the task (its index and function); ``original`` is the
    exception the task raised, and the worker's traceback is the ``__cause__``.
    What the parent raises is also of the task's own kind, as joblib re-raises it
    (issue 13): :class:`TaskInterruptError` (a ``KeyboardInterrupt``) and
    :class:`TaskSystemExitError` (a ``SystemExit`` with the task's ``code``), so
    ``except KeyboardInterrupt`` / ``except SystemExit`` written for joblib catch them,
    and so does ``except TaskExitError``. Left uncaught, a task's ``sys.exit(n)``
    therefore ends the script with status *n*, as with joblib or a plain loop. A
    ``GeneratorExit`` raised by a task gives a plain ``TaskExitError``. Raised for
    every backend and by ``Executor`` futures.

    Being a ``RuntimeError`` as well, it is also caught by ``except Exception``,
    unlike the bare ``KeyboardInterrupt``/``SystemExit`` joblib raises.
    """

    original: BaseException | None = None


class TaskInterruptError(TaskExitError, KeyboardInterrupt):
    """A task raised ``KeyboardInterrupt``: both a :class:`TaskExitError` and a ``KeyboardInterrupt``.

    A real Ctrl-C in the caller still interrupts the call with a plain
    ``KeyboardInterrupt``, unless it lands inside a task running in the calling
    thread (``n_jobs=1``), where it is this, naming that task.
    """


class TaskSystemExitError(TaskExitError, SystemExit):
    """A task raised ``SystemExit``: both a :class:`TaskExitError` and a ``SystemExit``.

    ``code`` is the task's exit code (``sys.exit(3)`` -> 3, ``sys.exit()`` -> None),
    so an uncaught one ends the script with that status, as in joblib.
    """


class RemoteTraceback(Exception):
    """Carries a worker's formatted traceback; attached as ``__cause__``."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class StateFileError(ValueError):
    """A ``SharedState`` checkpoint file cannot be read back.

    Raised by ``SharedState.load`` before anything in the file is unpickled: the
    file is not a picklepool checkpoint, was written by a newer format, is
    truncated, or its checksum does not match (the file was changed or damaged).
    The message names the file and what to do.
    """


class StateSignatureError(StateFileError):
    """A checkpoint's HMAC-SHA256 signature could not be verified.

    The key is wrong, the file was changed after it was signed, the file is not
    signed although a key was given (``key=`` or ``PICKLEPOOL_STATE_KEY``), or it
    is signed and no key was given. Nothing in the file was unpickled.
    """
