"""Warnings a batch's tasks gave, sent back to a parent that records or redirects them.

A task's ``warnings.warn`` in a worker is shown by the worker: printed to its stderr
(or to what ``workers.output`` collects for the parent's redirected stream). A parent
that handles warnings itself did not get them, as it does when it runs the tasks in
its own loop: a ``warnings.catch_warnings(record=True)`` block around the call (pytest's
``pytest.warns``, ``recwarn`` and its per-test warnings summary) recorded none, and
``logging.captureWarnings(True)`` logged none (the worker printed them to the terminal).

When the parent's warnings are shown by something else than the ``warnings`` module's
own printing (:func:`redirected`, read when the call is made), the worker records what
the tasks warn while they run (:func:`recorded`: after the parent's filters, mirrored by
``workers.warnfilters``, decided which are shown) and sends them with the batch's reply,
pickled by the call's pickler (a warning class of ``__main__`` travels by value); the
parent shows each through its own machinery (:func:`show`), as ``warnings.warn`` would
have: its filters and the registry of the module that warned decide again (a warning
shown once per location, the ``"default"`` action, is shown once, as in a loop, not once
per worker), and it goes into the recording block's list, to the logging handler. Not on
dask (a cluster's workers are shared).
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from .journal import WARNING, journal, mark
from .reloads import file_of


def redirected() -> bool:
    """Whether this process's warnings are shown by something else than the ``warnings``
    module's own printing (a ``catch_warnings(record=True)`` block, ``logging.captureWarnings``,
    a ``warnings.showwarning`` of the program's own)."""
    if warnings.showwarning is not getattr(warnings, "_showwarning_orig", warnings.showwarning):
        return True
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    if impl is None:
        return False
    name = (getattr(impl, "__module__", None), getattr(impl, "__name__", None))
    return name != ("warnings", "_showwarnmsg_impl")


@contextlib.contextmanager
def recorded(record: bool, folder: str | None = None) -> Iterator[list[Any]]:
    """Inside, with *record*, the warnings shown are kept in the list it yields (as
    ``warnings.WarningMessage`` objects), not printed. *folder*: the session folder, where
    each is also written as it is kept (its texts, :func:`_plain`: ``workers.journal``), for
    the parent to show should this worker die before its reply.

    Not ``catch_warnings(record=True)``, whose filters would be the block's own. The
    registries of warnings shown are emptied as it starts and ends (the filters marked
    changed), so that a warning shown once per location (``"default"``, ``"once"``,
    ``"module"``) is shown once per batch here and the parent's registry decides
    (:func:`show`): this worker's, kept from an earlier call, held it back from every later
    recording block (a second test's ``pytest.warns``: "DID NOT WARN"), where in a loop each
    ``catch_warnings`` block starts afresh.
    Each is marked in the batch's order (``journal.mark``), so that the parent shows it
    between what the tasks printed and logged where they gave it.
    """
    if not record:
        yield []
        return
    log: list[Any] = []
    saved = warnings.showwarning, getattr(warnings, "_showwarnmsg_impl", None)
    warnings.showwarning = getattr(warnings, "_showwarning_orig", warnings.showwarning)
    journal.use(folder)

    def keep(w: Any) -> None:
        log.append(w)
        mark(WARNING, len(log))
        if journal.path is not None:
            with contextlib.suppress(Exception):  # (it still goes with the reply)
                journal.write(WARNING, pickle.dumps(_plain(w), 5))

    warnings._showwarnmsg_impl = keep  # type: ignore[attr-defined]
    _registries_out_of_date()
    try:
        yield log
    finally:
        journal.clear()
        _registries_out_of_date()  # (ones shown to the parent only: printed here if warned again)
        warnings.showwarning = saved[0]
        if saved[1] is not None:
            warnings._showwarnmsg_impl = saved[1]  # type: ignore[attr-defined]


def _registries_out_of_date() -> None:
    """Empty every module's registry of warnings shown (at its next warning), as entering or
    leaving ``catch_warnings`` does."""
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is not None:
        mutated()


def dumps(pickler: Any, log: list[Any]) -> bytes | None:
    """The warnings of *log* as bytes of the call's *pickler*; None when there are none.

    Each is ``(message, category, filename, lineno, line)``; a message or category that
    cannot be pickled goes as its text, as a ``UserWarning`` (the parent still sees it).
    They travel as ``(rich, plain)``: *rich* the messages and categories pickled, *plain*
    each one's category's module and name, text, file, line number and line (strings and
    numbers), which :func:`loads` falls back on when the parent cannot rebuild *rich* (a
    warning class of a module only the worker imports): they were all lost, without a word.
    """
    if not log:
        return None
    items = [(w.message, w.category) for w in log]
    plain = [_plain(w) for w in log]
    try:  # all at once: a round trip per warning took 28 µs (100,000 warnings: 2.8 s)
        rich = bytes(pickler.dumps(items))
        pickler.loads(rich)
        return bytes(pickler.dumps((rich, plain)))
    except Exception:  # noqa: BLE001 - one of them cannot make the trip: found one by one
        pass
    kept = []
    for item, w in zip(items, log, strict=True):
        try:
            pickler.loads(pickler.dumps(item))
        except Exception:  # noqa: BLE001 - the task's own warning class: its text goes instead
            item = (f"{w.category.__name__}: {w.message}", UserWarning)
        kept.append(item)
    try:
        return bytes(pickler.dumps((bytes(pickler.dumps(kept)), plain)))
    except Exception:  # noqa: BLE001 - as above, whatever the pickler does
        return None


def _plain(w: Any) -> tuple[Any, ...]:
    """What :func:`loads` needs of warning *w* when its message or category cannot be
    rebuilt: its category's module and qualified name, its text, file, line number, line."""
    category = w.category
    line = w.line if type(w.line) is str else None
    lineno = w.lineno if type(w.lineno) is int else 0
    names = str(getattr(category, "__module__", "")), str(getattr(category, "__qualname__", category))
    try:
        text = str(w.message)
    except Exception:  # noqa: BLE001 - a message whose __str__ raises: its type's name
        text = type(w.message).__qualname__
    return (*names, text, str(w.filename), lineno, line)


def loads(pickler: Any, data: bytes) -> list[tuple[Any, ...]]:
    """The warnings *data* holds (:func:`dumps`), as ``(message, category, filename, lineno,
    line)``; when the messages or categories cannot be rebuilt here, each one's text, of its
    category when this process has it loaded (a built-in one, a module's it imported),
    else as a ``UserWarning`` whose text names it."""
    rich, plain = pickler.loads(data)
    try:
        items = pickler.loads(rich)
    except Exception:  # noqa: BLE001 - a class this process cannot load: their texts instead
        return [_from_text(*row) for row in plain]
    return [(m, c, f, n, line) for (m, c), (*_, f, n, line) in zip(items, plain, strict=True)]


def _from_text(
    module: str, qualname: str, text: str, filename: str, lineno: int, line: Any
) -> tuple[Any, ...]:
    """A warning of :func:`loads` made of its texts (see there)."""
    category: Any = sys.modules.get(module)
    for part in qualname.split("."):
        category = getattr(category, part, None)
    if isinstance(category, type) and issubclass(category, Warning):
        try:
            return category(text), category, filename, lineno, line
        except Exception:  # noqa: BLE001 - one whose __init__ takes other arguments: as below
            pass
    return f"{qualname}: {text}", UserWarning, filename, lineno, line


# parent: the registry of warnings shown for a file whose module this process has not loaded
_registries: dict[str, dict[Any, Any]] = {}
# parent: the module loaded from a file (its name, None: none), as found last
_modules: dict[str, str | None] = {}


def _origin(filename: str) -> tuple[str, dict[Any, Any]]:
    """The module name and registry of warnings shown that ``warnings.warn`` uses for a
    warning of *filename* in this process: those of the module loaded from it (a script's
    ``__main__``), else the name ``warn_explicit`` makes of the file's and a registry of
    its own."""
    name = _modules.get(filename, "")
    if name == "" or (name is not None and file_of(sys.modules.get(name)) != filename):
        name = next((k for k, m in list(sys.modules.items()) if file_of(m) == filename), None)
        if len(_modules) >= 1024:
            _modules.clear()
        _modules[filename] = name
    module = sys.modules.get(name) if name is not None else None
    if module is not None:
        try:
            registry = vars(module).setdefault("__warningregistry__", {})
        except TypeError:  # (an object with a __file__ but no __dict__)
            registry = None
        if type(registry) is dict:
            return name, registry  # type: ignore[return-value]
    if len(_registries) >= 1024:
        _registries.clear()
    fallback = filename[:-3] if filename[-3:].lower() == ".py" else filename
    return fallback, _registries.setdefault(filename, {})


def show(pickler: Any, data: bytes | None) -> None:
    """Warn the warnings a batch sent back (:func:`dumps`) as ``warnings.warn`` does in
    this process: its filters and the registry of the module that warned decide whether
    each is shown (a ``"default"`` warning once, as in a loop, not once per worker), and it
    goes where this process's warnings go (a recording block's list, a logging handler)."""
    if not data:
        return
    try:
        items = loads(pickler, data)
    except Exception:  # noqa: BLE001 - an odd pickler's bytes that it cannot load: not shown
        return
    _warn(items)


def each(pickler: Any, data: bytes | None) -> list[Any]:
    """The warnings a batch sent back (:func:`dumps`), each as a callable that shows it as
    :func:`show` does (``executor.printed.show`` calls them in the order the tasks gave
    them, between their printed text and log records)."""
    if not data:
        return []
    try:
        items = loads(pickler, data)
    except Exception:  # noqa: BLE001 - an odd pickler's bytes that it cannot load: not shown
        return []
    return [functools.partial(_warn, [item]) for item in items]


def show_journaled(data: bytes) -> None:
    """Warn a warning of a dead worker's journal (``workers.journal``; its texts, as
    :func:`_plain` made them) as :func:`show` does a reply's."""
    try:
        row = pickle.loads(data)
    except Exception:  # noqa: BLE001 - a torn entry
        return
    _warn([_from_text(*row)])


def _warn(items: list[tuple[Any, ...]]) -> None:
    for message, category, filename, lineno, line in items:
        module, registry = _origin(filename)
        try:
            warnings.warn_explicit(message, category, filename, lineno, module, registry)
        except Warning:
            # an "error" filter here that the worker's mirror did not have (a category it
            # could not load): shown, not raised in the middle of the call's replies
            show_message = getattr(warnings, "_showwarnmsg", None)
            if show_message is not None:
                show_message(warnings.WarningMessage(message, category, filename, lineno, None, line))
