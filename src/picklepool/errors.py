"""Every exception picklepool raises on its own account, in one module.

Each extends the stdlib exception a user would already catch: ``PicklingError`` is a
``pickle.PicklingError``, ``WorkerCrashedError`` a ``BrokenProcessPool`` (and loky's and
joblib's ``TerminatedWorkerError`` when they are imported), ``UnpicklingError`` a
``pickle.UnpicklingError`` and a ``BrokenProcessPool`` (what joblib, loky and the standard
library raise when arguments or results do not unpickle),
``TaskTimeoutError`` a ``TimeoutError``, ``TaskExitError`` a ``RuntimeError``
(``TaskInterruptError`` also a ``KeyboardInterrupt``), ``StateFileError`` a ``ValueError``.
Messages say what went wrong, where, and what to do.
"""

from __future__ import annotations

import builtins
import multiprocessing
import pickle
import sys
from concurrent.futures.process import BrokenProcessPool
from typing import Any


class PicklingError(pickle.PicklingError):
    """A task, its arguments or its result could not be serialised or rebuilt.

    Raised in the parent. The message names the object's path inside the call
    (``args[1]['model']._lock``), its type, the pickler in use and the fix. Made by
    :func:`pickling_error` when the pickler failed with a built-in exception
    (``TypeError: cannot pickle 'generator' object``), it is also one of that type, as
    joblib and ``concurrent.futures`` raise it: their users' ``except TypeError`` works.
    """

    def __reduce__(self) -> Any:
        kind = _made_from(type(self))
        origin = kind.__dict__.get("_origin")
        if origin is None:
            return (kind, self.args, self.__dict__ or None)
        return (_rebuild, (kind.__bases__[0], origin.__name__, self.args), self.__dict__ or None)


# loky's module of pool errors: the one loky ships, and the copy vendored in joblib
_LOKY_ERRORS = ("loky.process_executor", "joblib.externals.loky.process_executor")
_PEERS: dict[tuple[type, tuple[type, ...]], type] = {}


def _with_peers(kind: type, name: str) -> type:
    """*kind*, or a subclass of it that is also the class *name* of loky's and joblib's loky's
    ``process_executor`` modules, for those already imported (picklepool imports neither for
    this): ``except TerminatedWorkerError`` written for joblib or loky then catches
    picklepool's error for the same event, as ``except BrokenProcessPool`` does."""
    peers = []
    for module_name in _LOKY_ERRORS:
        module = sys.modules.get(module_name)
        peer = getattr(module, name, None) if module is not None else None
        if isinstance(peer, type) and not issubclass(kind, peer):
            peers.append(peer)
    if not peers:
        return kind
    key = (kind, tuple(peers))
    made = _PEERS.get(key)
    if made is None:
        names = {"__module__": kind.__module__, "__qualname__": kind.__qualname__, "_made_from": kind}
        try:
            made = type(kind.__name__, (kind, *peers), names)
        except TypeError:  # (a layout that cannot be combined: the class itself)
            made = kind
        _PEERS[key] = made
    return made


def _made_from(kind: type) -> type:
    """The class *kind* was made from by :func:`_with_peers` (to pickle by), else *kind*."""
    return kind.__dict__.get("_made_from", kind)  # type: ignore[no-any-return]


class UnpicklingError(PicklingError, pickle.UnpicklingError, BrokenProcessPool):
    """Bytes made by the pickler could not be turned back into objects.

    A task's arguments that a worker cannot rebuild, or a result that the parent cannot:
    joblib, loky and ``ProcessPoolExecutor`` raise ``BrokenProcessPool`` there, so this is
    one too (and loky's and joblib's ``BrokenProcessPool`` when loky or joblib is imported):
    their users' ``except BrokenProcessPool`` catches it. The pool is not broken, though:
    the next call (or ``submit``) works.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return super().__new__(_with_peers(cls, "BrokenProcessPool"), *args, **kwargs)


_COMBINED: dict[tuple[type, type], type] = {}


def pickling_type(kind: type[PicklingError], origin: Any) -> type[PicklingError]:
    """*kind*, or a subclass of it that is also the built-in exception class *origin* (a
    class, an exception, or a ``"builtins:TypeError"`` name): what a pickler's failure
    was, so that ``except TypeError`` written for joblib or the standard library still
    catches picklepool's error for it. Classes not built-in are left out (their
    ``__init__`` may want other arguments)."""
    if isinstance(origin, str):
        module, _, name = origin.partition(":")
        origin = getattr(builtins, name, None) if module == "builtins" else None
    elif isinstance(origin, BaseException):
        origin = type(origin)
    if (
        not isinstance(origin, type)
        or origin.__module__ != "builtins"
        or not issubclass(origin, Exception)
        or issubclass(kind, origin)
    ):
        return kind
    combined = _COMBINED.get((kind, origin))
    if combined is None:
        names = {"__module__": kind.__module__, "__qualname__": kind.__qualname__, "_origin": origin}
        try:
            combined = type(kind.__name__, (kind, origin), names)
        except TypeError:  # a base whose layout cannot be combined (OSError): the plain kind
            combined = kind
        _COMBINED[(kind, origin)] = combined
    return combined


def pickling_error(message: str, origin: Any, kind: type[PicklingError] = PicklingError) -> PicklingError:
    """A *kind* error saying *message*, also of *origin*'s built-in type (:func:`pickling_type`)."""
    return pickling_type(kind, origin)(message)


def _rebuild(kind: type[PicklingError], origin: str, args: tuple[Any, ...]) -> PicklingError:
    return pickling_type(kind, f"builtins:{origin}")(*args)


class WorkerCrashedError(BrokenProcessPool):
    """A worker process died while running a task (segfault, ``os._exit``, kill).

    The message names the task and the exit code or signal. The pool is rebuilt
    on the next call, which works as usual. When loky or joblib is imported, it is also
    their ``TerminatedWorkerError`` (joblib's is ``joblib.externals.loky``'s), which they
    raise for a worker that died, so ``except TerminatedWorkerError`` written for them
    catches it.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return super().__new__(_with_peers(cls, "TerminatedWorkerError"), *args, **kwargs)

    def __reduce__(self) -> Any:
        return (_made_from(type(self)), self.args, self.__dict__ or None)


class TaskTimeoutError(TimeoutError, multiprocessing.TimeoutError):
    """A task ran longer than ``Parallel(timeout=...)`` allows.

    Also a ``multiprocessing.TimeoutError``, which joblib raises for the same case,
    so ``except multiprocessing.TimeoutError`` written for joblib still catches it.
    """


class TaskExitError(RuntimeError):
    """A task raised ``SystemExit``, ``KeyboardInterrupt`` or ``GeneratorExit``.

    The message names the task (its index and function); ``original`` is the
    exception the task raised, and the worker's traceback is the ``__cause__``.
    A task's ``KeyboardInterrupt`` comes back as :class:`TaskInterruptError`, also a
    ``KeyboardInterrupt`` as joblib re-raises it (issue 13), so ``except
    KeyboardInterrupt`` written for joblib catches it. A task's ``sys.exit(n)`` comes
    back as :class:`TaskSystemExitError` with ``code`` *n*; it is not a ``SystemExit``
    (issue 14: a task must not end the caller's script quietly, as joblib's re-raised
    ``SystemExit(0)`` would). A ``GeneratorExit`` raised by a task gives a plain
    ``TaskExitError``, and so does a ``StopIteration`` in a ``Parallel`` call (Python
    made it a bare ``RuntimeError("generator raised StopIteration")`` naming no task;
    an ``Executor`` future raises it as it is). Raised for every backend and by
    ``Executor`` futures.

    Being a ``RuntimeError``, it is also caught by ``except Exception``, unlike the
    bare ``KeyboardInterrupt`` joblib raises.
    """

    original: BaseException | None = None


class TaskInterruptError(TaskExitError, KeyboardInterrupt):
    """A task raised ``KeyboardInterrupt``: both a :class:`TaskExitError` and a ``KeyboardInterrupt``.

    A real Ctrl-C in the caller still interrupts the call with a plain
    ``KeyboardInterrupt``, also when it lands inside a task running in the calling
    thread (``n_jobs=1``): see :class:`CallerInterrupt`.
    """


class CallerInterrupt(KeyboardInterrupt):
    """A real Ctrl-C that landed inside a task running in the calling (main) thread.

    Raised by the SIGINT handler the sequential backend puts in place of Python's
    default one while it runs a batch, so that the call tells it from a task's own
    ``KeyboardInterrupt``: the caller gets a plain ``KeyboardInterrupt``, as from
    joblib, never a :class:`TaskInterruptError` that ``except Exception`` would catch.
    """


class TaskSystemExitError(TaskExitError):
    """A task raised ``SystemExit`` (``sys.exit``): a :class:`TaskExitError` naming it.

    ``code`` is the task's exit code (``sys.exit(3)`` -> 3, ``sys.exit()`` -> None).
    Unlike joblib, which re-raises the task's own ``SystemExit``, this is not a
    ``SystemExit``: uncaught, it fails the script with a traceback naming the task
    instead of ending it quietly with the task's status (``sys.exit(0)`` in a task
    would otherwise make a failed run look successful). Catch it with
    ``except TaskSystemExitError`` and call ``sys.exit(err.code)`` to end the script.
    """


class SettingTypeError(TypeError, ValueError):
    """A setting of a type that cannot be read (``n_jobs=[2]``).

    A ``TypeError``, as joblib raises for it (its ``int(n_jobs)``), and a
    ``ValueError``, as picklepool raises for every other bad setting: code that
    catches either goes on working.
    """


class SettingValueError(ValueError):
    """A setting's value that is not valid (a size that is not one: ``"1Q"``).

    A plain ``ValueError`` to catch; its own class so that one raised while a call
    pickles its tasks (``PICKLEPOOL_WORKER_CACHE_BYTES``, read as a ``SharedState``
    is sent) reaches the caller as it is, not as a ``PicklingError`` of that task.
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


def error_text(exc: BaseException) -> str:
    """*exc* as a clause of a longer message: ``ValueError: bad row``.

    The type alone when its text is empty (``KeyboardInterrupt``, not
    ``KeyboardInterrupt: ``), and without the text's own closing period, which the
    message's next sentence would double (``...recursion required.. Fix:``).
    """
    try:
        text = str(exc).rstrip()
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - the exception's own __str__ raised (SystemExit too)
        text = "<str() failed>"
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
