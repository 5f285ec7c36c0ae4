"""A batch's outcome as reply bytes, made by the call's pickler (``wire`` lists the replies).

Results go through the pickler, their large buffers through shared memory
(``workers.buffers``). A task's exception goes through the pickler too, and is
checked to make the trip back; when it cannot (an ``__init__`` that takes other
arguments than ``args``, an attribute that cannot be pickled), it is sent as its
parts (class, ``args``, ``__dict__``, notes, cause) to be rebuilt without
``__init__`` (``wire.rebuild_exception``; attributes that cannot be pickled are
left out), and only when even that fails (the class itself cannot travel), as text
in a ``wire.Failure`` naming its class and its importable bases, for the parent
to raise a stand-in that ``except`` clauses on those bases still catch.
Failures of the pickler itself are framed without it (``wire.Failure.encode``).
"""

from __future__ import annotations

import builtins
from typing import Any

from ..errors import error_text, pickling_error
from ..pickler.diagnose import explain, probe
from ..pickler.plain import dumps as dumps_plain
from ..wire import (
    Failure,
    NotSent,
    Raised,
    Results,
    TaskFailed,
    add_note,
    native_parts,
    os_fields_lost,
    pack_results,
    rebuild_exception,
)
from . import buffers


def _round_trip(pickler: Any, obj: Any) -> bytes | None:
    try:
        data = pickler.dumps(obj)
        pickler.loads(data)
    except BaseException:  # noqa: BLE001 - any failure means "cannot make the trip"
        return None
    return data  # type: ignore[no-any-return]


_GROUP: Any = getattr(builtins, "BaseExceptionGroup", None)  # (Python >= 3.11)
# the interpreter's own (not a class of yours, whose pickling wins): their name, set by
# the interpreter (Python >= 3.10), is not pickled
_NAMED = (AttributeError, NameError, UnboundLocalError)


class _ExceptionParts:
    """Pickles an exception as its parts, rebuilt without calling ``__init__``."""

    def __init__(
        self,
        exc: BaseException,
        cause: Any,
        keep: Any = None,
        args: Any = None,
        context: Any = None,
        stood_in: tuple[int, ...] = (),
    ) -> None:
        self.exc, self.cause, self.keep = exc, cause, keep  # keep: which attributes travel
        self.args = exc.args if args is None else args
        self.context = context  # the __context__: an implicit one, or the cause when it is that too
        self.stood_in = stood_in  # the positions in args whose repr went in their place

    def __reduce__(self) -> Any:
        exc = self.exc
        state = {k: v for k, v in vars(exc).items() if k != "__notes__"}
        notes = vars(exc).get("__notes__")  # (not getattr: a __getattr__ of its own may raise)
        native = native_parts(exc)  # an OSError's filename, the values of its __slots__...
        if native is not None and self.args is not exc.args:
            # args given in place of its own (reprs, a group's members): the built-in class is
            # initialised from them, its other parts (slots, fields set apart) still travel
            native = (None, native[1]) if native[1] else None
        left: list[tuple[str, Any]] = []
        if self.keep is not None:
            kept = {k: v for k, v in state.items() if self.keep(k, v)}
            left = [(k, v) for k, v in state.items() if k not in kept]
            state = kept
            if native is not None and native[1]:
                # a value in __slots__ (which vars() does not show) is left out the same way,
                # and said: the whole exception fell back to a bare stand-in of its message
                extra = {k: v for k, v in native[1].items() if self.keep(k, v)}
                left += [(k, v) for k, v in native[1].items() if k not in extra]
                native = (native[0], extra or None) if native[0] is not None or extra else None
        if (left or self.stood_in) and (notes is None or type(notes) is list):
            # said in the parent: `e.conn` there was an AttributeError out of nowhere, and
            # `e.args[1]` a string where the task gave a generator
            notes = list(notes or [])
            if left:
                notes.append(_left_out_note(exc, left))
            if self.stood_in:
                notes.append(_stood_in_note(exc, [(i, exc.args[i]) for i in self.stood_in]))
        if self.context is not None:
            return rebuild_exception, (type(exc), self.args, state, notes, self.cause, native, self.context)
        return rebuild_exception, (type(exc), self.args, state, notes, self.cause, native)


# what both notes below advise, after "keep in the exception" / "raise the exception with"
_PICKLES = (
    "what pickles (an address rather than a connection, a path rather than a file), or catch "
    "it in the task and return what you need)"
)


def _left_out_note(exc: BaseException, left: list[tuple[str, Any]]) -> str:
    """The note of *exc* whose attributes *left* (name, value) could not make the trip."""
    names = ", ".join(f"{k} ({type(v).__module__}.{type(v).__qualname__})" for k, v in left)
    plural, were = ("s", "they were") if len(left) > 1 else ("", "it was")
    return (
        f"(picklepool: the attribute{plural} {names} of this {type(exc).__qualname__} could not "
        f"be pickled in the worker, so {were} left out; keep in the exception {_PICKLES}"
    )


def _stood_in_note(exc: BaseException, replaced: list[tuple[int, Any]]) -> str:
    """The note of *exc* whose ``args`` at *replaced* (position, value) went as their repr."""
    names = ", ".join(f"args[{i}] ({type(v).__module__}.{type(v).__qualname__})" for i, v in replaced)
    plural, instead = (
        ("s", "their reprs (strings) stand in their place")
        if len(replaced) > 1
        else ("", "its repr (a string) stands in its place")
    )
    return (
        f"(picklepool: the argument{plural} {names} of this {type(exc).__qualname__} could not "
        f"be pickled in the worker, so {instead}; raise the exception with {_PICKLES}"
    )


def _group_args(pickler: Any, exc: BaseException, depth: int) -> Any:
    """An exception group's ``args`` with each sub-exception able to make the trip, or None.

    A group's ``args`` hold its sub-exceptions: one that cannot make the trip (an
    ``__init__`` that takes other arguments) made the whole group fail, and then its
    parts too, so the parent got a bare ``TypeError`` from rebuilding a group without
    them. Each goes as itself or its parts, as a task's own exception does; one whose
    class cannot travel at all as a ``RuntimeError`` (an ``Exception``, which every
    group takes) saying what it was.
    """
    if _GROUP is None or not isinstance(exc, _GROUP):
        return None
    args = exc.args
    if len(args) != 2 or args[0] != exc.message or list(args[1]) != list(exc.exceptions):
        return None  # a subclass with arguments of its own: left as it is
    subs = []
    for sub in exc.exceptions:
        sendable = _sendable(pickler, sub, depth + 1)
        if sendable is None:
            text = f"{type(sub).__module__}.{type(sub).__qualname__}: {_str(sub)}"
            sendable = RuntimeError(f"the task raised {text}, which could not be pickled back")
        subs.append(sendable)
    return (args[0], subs)


def _caused(exc: BaseException, depth: int = 0) -> bool:
    """Whether *exc*, or a sub-exception of it (an exception group's, at any level), has a
    ``__cause__``, or an ``AttributeError``'s or ``NameError``'s ``name``: pickling an
    exception drops those, so such an exception goes as its parts (``wire.native_parts``).
    (A group pickled whole left its members' causes behind, which README promises.) So
    does an implicit ``__context__`` (raised while handling another, with no ``from``),
    which the loop's traceback shows as "During handling of the above exception"."""
    if exc.__cause__ is not None or (type(exc) in _NAMED and exc.name is not None):  # type: ignore[attr-defined]
        return True
    if exc.__context__ is not None and not exc.__suppress_context__:
        return True
    if isinstance(exc, OSError) and os_fields_lost(exc):  # errno or filename set apart from args
        return True
    if _GROUP is None or not isinstance(exc, _GROUP) or depth > 8:
        return False
    return any(_caused(sub, depth + 1) for sub in exc.exceptions)


# the links of a cause chain that go back (a longer one is cut there; a cycle at its loop)
_MAX_CAUSES = 64


def _sendable(pickler: Any, exc: BaseException | None, depth: int = 0, chain: tuple[int, ...] = ()) -> Any:
    """*exc*, or its parts (:class:`_ExceptionParts`), able to make the trip; None if neither.

    The cause goes along the same way, link by link (up to ``_MAX_CAUSES``: the chain was
    cut after 9 links, losing the root cause of a deeper one with no word; past them, the
    root cause, with a note of the links left out); an exception
    group's members each the same way (*depth*: groups within groups, up to 9).
    """
    if exc is None:
        return None
    if not _caused(exc) and _round_trip(pickler, exc) is not None:
        return exc  # (pickling an exception drops its __cause__: those go as parts)
    if depth > 8:
        return None
    if len(chain) >= _MAX_CAUSES:
        return _root_of(pickler, exc, chain, depth)
    chain = (*chain, id(exc))
    cause = exc.__cause__
    cause = None if cause is None or id(cause) in chain else _sendable(pickler, cause, depth, chain)
    context = exc.__context__ if exc.__cause__ is None and not exc.__suppress_context__ else None
    context = None if context is None or id(context) in chain else _sendable(pickler, context, depth, chain)
    if exc.__cause__ is not None and exc.__context__ is exc.__cause__:
        context = cause  # raise X from e in e's handler: e is both, one object in the parent too
    args = _group_args(pickler, exc, depth)
    parts = _ExceptionParts(exc, cause, args=args, context=context)
    if _round_trip(pickler, parts) is not None:
        return parts
    # An attribute cannot make the trip (an open file, a generator): the rest does.
    keep = lambda k, v: _round_trip(pickler, v) is not None  # noqa: E731
    parts = _ExceptionParts(exc, cause, keep, args, context)
    if _round_trip(pickler, parts) is not None:
        return parts
    if args is None:
        # An argument cannot (``ValueError("bad row", row_generator)``): its repr goes in its
        # place, so the type still travels (a stand-in of the nearest base that could be
        # imported, or an Executor's RuntimeError, was not caught by ``except ValueError``)
        stood_in = tuple(i for i, a in enumerate(exc.args) if _round_trip(pickler, a) is None)
        args = tuple(_repr(a) if i in stood_in else a for i, a in enumerate(exc.args))
        parts = _ExceptionParts(exc, cause, keep, args, context, stood_in)
        if _round_trip(pickler, parts) is not None:
            return parts
    return None


def _root_of(pickler: Any, exc: BaseException, chain: tuple[int, ...], depth: int) -> Any:
    """In place of *exc*, a link past ``_MAX_CAUSES``: the chain's root cause, sendable, with a
    note of the links left out before it (they were all dropped, the root with them: the one
    a reader of the traceback looks for first); None for a chain that loops back."""
    seen, link, skipped = set(chain), exc, 0
    while True:
        seen.add(id(link))
        below = link.__cause__
        if below is None and not link.__suppress_context__:
            below = link.__context__
        if below is None:
            break
        if id(below) in seen:
            return None  # a cycle: cut where it closes, as before
        link, skipped = below, skipped + 1
    if skipped:
        add_note(
            link,
            f"({skipped} links of the chain of causes between this exception and the one above "
            f"were left out: picklepool sends the first {_MAX_CAUSES} and the root cause)",
        )
    return _sendable(pickler, link, depth, ())


def _repr(value: Any) -> str:
    """``repr(value)``, or its type's name when its ``__repr__`` raises."""
    try:
        return repr(value)
    except BaseException:  # noqa: BLE001 - the task's own class (a SystemExit of its own too)
        return f"<{type(value).__module__}.{type(value).__qualname__} object>"


def _mro(exc: BaseException) -> tuple[str, ...]:
    return tuple(f"{c.__module__}:{c.__qualname__}" for c in type(exc).__mro__)


def dump_error(pickler: Any, failed: TaskFailed) -> bytes:
    """A task's exception as reply bytes: itself, its parts, or text (see the module docstring)."""
    exc = failed.error
    data = _round_trip(pickler, failed) if not _caused(exc) else None
    if data is not None:
        return data
    sendable = _sendable(pickler, exc)
    if sendable is not None:
        data = _round_trip(pickler, TaskFailed(failed.task, sendable, failed.traceback))
        if data is not None:
            return data
    message = _str(exc)
    text = f"{type(exc).__module__}.{type(exc).__qualname__}: {message}"
    return Failure("error", failed.task, text, message, failed.traceback, _mro(exc)).encode()


def _str(exc: BaseException) -> str:
    """``str(exc)``, or what went wrong when its ``__str__`` raises (the worker must still reply)."""
    try:
        return str(exc)
    except BaseException as failed:  # noqa: BLE001 - the task's own class (a SystemExit of its own too)
        return f"<str() of the exception raised {type(failed).__name__}>"


def dump_results(pickler: Any, outcome: Any, first: int, tasks: Any) -> Any:
    """Results as reply bytes (or ``Frames``), or a "dump" ``Failure`` naming the result."""
    try:
        packed = pack_results(outcome)
        # a few plain values (a one-task batch's): buffers.dump_reply's first step, without its call
        return dumps_plain(pickler, packed) or buffers.dump_reply(pickler, packed, tasks, plain=False)
    except BaseException as exc:  # noqa: BLE001
        whole = exc
    for i, value in enumerate(outcome.values):
        err = probe(pickler, value)  # large arrays left out: not copied again per result
        if err is not None:
            message = explain(pickler, value, err, root="result")
            return Failure("dump", first + i, "result", message, _traceback(err), _mro(err)).encode()
    return Failure("dump", first, "results", error_text(whole), _traceback(whole), _mro(whole)).encode()


def _traceback(exc: BaseException) -> str:
    """The worker's traceback of *exc*, for the parent's ``__cause__``."""
    import traceback  # only for failures

    return "".join(traceback.format_exception(exc))


def _isolated_value(pickler: Any, value: Any) -> Any:
    """*value* able to make the trip, or a ``Raised`` saying why it cannot."""
    if type(value) is Raised:
        sendable = _sendable(pickler, value.error)
        if sendable is not None:
            return Raised(sendable, value.traceback)
        exc = value.error
        message = _str(exc)
        text = f"{type(exc).__module__}.{type(exc).__qualname__}: {message}"
        # no index here: the parent names the task (by its user call index, executor.futures),
        # and makes the stand-in a call's gets (it was a RuntimeError, which `except KeyError`
        # for a KeyError subclass did not catch)
        return Raised(NotSent(text, message, _mro(exc)), value.traceback)
    if _round_trip(pickler, value) is not None:
        return value
    origin = None
    try:
        pickler.dumps(value)
        msg = "it pickles, but cannot be unpickled (is its class importable?)"
    except BaseException as exc:  # noqa: BLE001
        msg, origin = explain(pickler, value, exc, root="result"), exc
    return Raised(pickling_error(f"the result could not be sent back: {msg}", origin), "")


def unsent(outcome: Any, first: int, exc: BaseException) -> bytes:
    """The reply of a batch whose reply itself could not be made: *exc* escaped it.

    Making a reply runs the tasks' code again (an exception's ``__repr__`` or ``__str__``, a
    result's reducer, an attribute's ``__getattr__``): what that raised beyond ``Exception``
    (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``, a class of its own) left the
    worker's reply code, and the caller got it bare from loky, naming no task (a bare
    ``SystemExit`` ends a script quietly). Told in the fixed framing instead: the task's
    exception as a stand-in of its name, or the results as not sent back.
    """
    escaped = f"{type(exc).__module__}.{type(exc).__qualname__}"
    text = f"making the reply raised {escaped}, which is not an Exception"
    tb = _traceback_or_nothing(exc)
    if type(outcome) is TaskFailed:
        error = outcome.error
        name = f"{type(error).__module__}.{type(error).__qualname__}"
        message = f"<{text}>"
        return Failure(
            "error", outcome.task, f"{name}: {message}", message, outcome.traceback or tb, _mro(error)
        ).encode()
    return Failure("dump", first, "results", text, tb, _mro(exc)).encode()


def _traceback_or_nothing(exc: BaseException) -> str:
    try:
        return _traceback(exc)
    except BaseException:  # noqa: BLE001 - (its own __str__ raises again)
        return ""


def dump_isolated(pickler: Any, outcome: Any, first: int, tasks: Any) -> Any:
    """An isolated batch's ``Results``: a value or exception that cannot make the trip
    fails its own task only (a ``Raised`` in its place), not the whole batch."""
    if Raised in set(map(type, outcome.values)):
        for value in outcome.values:  # (each its mmap_mode note, as a call's TaskFailed)
            if type(value) is Raised:
                buffers.explain_error(value.error, tasks)
        # An exception may pickle and yet not unpickle (its __setstate__ raises): checked
        # here, as dump_error does for a call's, so that it comes back with its own type.
        values = [_isolated_value(pickler, v) if type(v) is Raised else v for v in outcome.values]
        outcome = Results(values, outcome.seconds)
    try:
        return buffers.dump_reply(pickler, pack_results(outcome), tasks)
    except BaseException:  # noqa: BLE001 - find the culprits below
        pass
    values = [_isolated_value(pickler, v) for v in outcome.values]
    return dump_results(pickler, Results(values, outcome.seconds), first, tasks)


def dump(pickler: Any, outcome: Any, first: int, tasks: Any, isolate: bool = False) -> Any:
    """Any outcome of ``workers.tasks`` as reply bytes."""
    kind = type(outcome)
    if isolate and kind is Results:
        return dump_isolated(pickler, outcome, first, tasks)
    if kind is TaskFailed:
        buffers.explain_error(outcome.error, tasks)
        return dump_error(pickler, outcome)
    if kind is Failure:
        return outcome.encode()
    if kind is Results:
        return dump_results(pickler, outcome, first, tasks)
    try:
        return pickler.dumps(outcome)
    except BaseException as exc:  # noqa: BLE001
        return Failure("dump", first, "reply", error_text(exc), _traceback(exc), _mro(exc)).encode()
