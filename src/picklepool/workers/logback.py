"""Log records a batch's tasks made, sent back to a parent whose logging is configured.

In the loop a call replaces, a task's ``log.info(...)`` goes to the handlers the script
configured (``logging.basicConfig(filename="run.log", level=logging.INFO)``, pytest's
``caplog``): a worker has none of them, so its records were lost (an INFO one, under the
worker's default WARNING level) or printed to the terminal by ``logging.lastResort``,
without the script's format (joblib's workers do the same).

When a logger of the parent has handlers (its root logger's, ``basicConfig``; or a named
one's, ``getLogger("app").addHandler(...)``, where a worker lost every record), :func:`floor`
(read when the call is made, again when a logger or a handler is made, a level set or the
root's handlers change) gives the lowest level the parent's loggers are set to; the
worker's root logger takes that level for the batch (and keeps it until a batch wants
another), and a handler of :func:`collected` keeps the records that reach it (as a
``logging.handlers.QueueHandler`` prepares them: the message formatted, an exception's
traceback as text), sent with the batch's reply (``wire.Captured``). The
parent hands each to the logger of its name (:func:`show`), which decides as for its own
records: its level, filters, handlers, propagation. They come when the batch is done, not
as they are made. A worker whose logging an ``initializer`` configured (its root logger
has handlers) keeps it: its records are not sent. Not on dask (a cluster's workers are
shared).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

# parent: (the floor read last, and the number of loggers, the number of handlers made and
# whether the root logger had handlers then); valid while those are the same and _MARK is in
# the root logger's level cache, which every setLevel and logging.disable empty
_read: tuple[int | None, int, int, bool] = (None, -1, -1, False)
_MARK = object()


def floor() -> int | None:
    """The lowest level a logger of this process is set to, when a logger of it has handlers
    (its logging is configured: its root logger's, or a named one's, ``getLogger("app")
    .addHandler(...)``); None otherwise, or when logging is not loaded."""
    global _read
    module = sys.modules.get("logging")
    if module is None:
        return None
    root = module.root
    loggers = root.manager.loggerDict
    made = getattr(module, "_handlerList", None)  # (a weak reference to every handler made)
    key = (len(loggers), len(made) if type(made) is list else -1, bool(root.handlers))
    cache = getattr(root, "_cache", None)
    if _read[1:] == key and key[1] >= 0 and type(cache) is dict and _MARK in cache:
        return _read[0]
    level: int | None = root.level  # (NOTSET on the root: every record is handled)
    for logger in list(loggers.values()):
        own = getattr(logger, "level", 0)  # (a PlaceHolder has none)
        if own and level is not None and own < level:
            level = own
    if not (root.handlers or _configured(loggers)):
        level = None  # (nothing would show the records: they stay in the worker)
    if type(cache) is dict:
        cache[_MARK] = True  # (never looked up: isEnabledFor asks for levels)
    _read = (level, *key)
    return level


def disabled() -> int:
    """The level ``logging.disable()`` set in this process (0: none, or logging not loaded)."""
    module = sys.modules.get("logging")
    return 0 if module is None else module.root.manager.disable


def disable(level: int) -> None:
    """Make ``logging.disable()``'s level here *level* (the parent's :func:`disabled`), as it
    is in the parent: a task's records at or below it are dropped, not shown here by
    ``logging.lastResort`` nor sent back, and ``isEnabledFor`` answers as in the parent."""
    if logging.root.manager.disable != level:
        logging.disable(level)


def _configured(loggers: dict[str, Any]) -> bool:
    """Whether a logger of *loggers* (not the root) has handlers, other than a library's
    ``NullHandler`` (which shows nothing)."""
    null = logging.NullHandler
    for logger in list(loggers.values()):
        for handler in getattr(logger, "handlers", ()):
            if type(handler) is not null:
                return True
    return False


# attributes of a LogRecord that makeLogRecord sets back as they are
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _Collector(logging.Handler):
    """Keeps the records that reach the worker's root logger, prepared for the trip."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = _FORMATTER.formatException(record.exc_info)
        except Exception:  # noqa: BLE001 - as a handler's own emit: reported by handleError
            self.handleError(record)
            return
        attrs = dict(vars(record))
        attrs.update(msg=message, args=None, exc_info=None, message=message)
        shown = _shown_here(record.name)
        if shown:
            attrs[_SHOWN] = shown
        self.records.append(attrs)


# the key of a record's attributes naming the loggers whose handlers showed it in the worker
_SHOWN = "_picklepool_shown_by"


def _shown_here(name: str) -> tuple[str, ...]:
    """The loggers of this worker below the root, from *name* up, that have handlers of
    their own (a library's, set when the worker imported it): they showed the record here."""
    out: list[str] = []
    node = logging.root.manager.loggerDict.get(name)
    while isinstance(node, logging.Logger) and node is not logging.root:
        if node.handlers:
            out.append(node.name)
        node = node.parent
    return tuple(out)


_FORMATTER = logging.Formatter()


@contextlib.contextmanager
def collected(level: int | None) -> Iterator[list[dict[str, Any]]]:
    """Inside, with a *level* (the parent's :func:`floor`), the records that reach this
    worker's root logger at that level are kept in the list it yields, not handled here.
    Nothing is done when *level* is None or this worker's root logger has handlers.

    The root logger keeps that level after the batch, until a batch wants another or none
    (its own comes back then): ``setLevel`` empties every logger's cache, twice a batch was
    20 us with a hundred loggers. Outside a batch it changes nothing shown: a record with no
    handler goes to ``logging.lastResort``, which shows WARNING and above only. A level a
    task or an initializer set stays theirs, as in the loop."""
    global _kept
    root = logging.root
    kept = _kept
    if kept is not None and root.level != kept[0]:
        kept = _kept = None  # (set since by a task: theirs)
    if level is None or root.handlers:
        if kept is not None:
            root.setLevel(kept[1])
            _kept = None
        yield []
        return
    global _spare
    collector = _spare
    if collector is None or collector in root.handlers:  # (the first batch; a batch in a batch)
        collector = _Collector()
    else:
        collector.records = []
    _spare = collector
    if root.level != level:
        own = kept[1] if kept is not None else root.level
        root.setLevel(level)
        _kept = (level, own)
    root.addHandler(collector)
    try:
        yield collector.records
    finally:
        root.removeHandler(collector)
        collector.records = []  # (the batch's are the caller's: not kept here until the next one)


# worker: (the level collected() left the root logger at, the root logger's own level)
_kept: tuple[int, int] | None = None
# worker: the collector of the batches (a handler made per batch took a lock and a weak reference)
_spare: _Collector | None = None


def dumps(pickler: Any, records: list[dict[str, Any]]) -> bytes | None:
    """The records as bytes of the call's *pickler*; None when there are none. An attribute
    that cannot be pickled (an ``extra=`` object) goes as its ``repr``."""
    if not records:
        return None
    try:
        return bytes(pickler.dumps(records))
    except Exception:  # noqa: BLE001 - one of them cannot make the trip: made plain one by one
        pass
    kept = []
    for attrs in records:
        try:
            pickler.dumps(attrs)
        except Exception:  # noqa: BLE001
            attrs = {k: (v if k in _STANDARD and k != "msg" else repr(v)) for k, v in attrs.items()}
            attrs["msg"] = attrs["message"]
        kept.append(attrs)
    try:
        return bytes(pickler.dumps(kept))
    except Exception:  # noqa: BLE001 - whatever the pickler does
        return None


def show(pickler: Any, data: bytes | None) -> None:
    """Hand the records a batch sent back (:func:`dumps`) to this process's loggers of their
    names, which decide as for their own: level, filters, handlers, propagation."""
    if not data:
        return
    try:
        records = pickler.loads(data)
    except Exception:  # noqa: BLE001 - a class the parent cannot load (an odd pickler's)
        return
    name_of = logging.getLevelName
    for attrs in records:
        shown = attrs.pop(_SHOWN, None)
        record = logging.makeLogRecord(attrs)
        record.levelname = name_of(record.levelno)  # (this process's: addLevelName's NOTICE)
        logger = logging.getLogger(record.name) if record.name != "root" else logging.root
        if not logger.isEnabledFor(record.levelno):
            continue
        if not shown:
            logger.handle(record)
        elif not logger.disabled and logger.filter(record):
            _handle_past(logger, record, shown)


def _handle_past(logger: logging.Logger, record: logging.LogRecord, shown: Any) -> None:
    """``logger.callHandlers(record)``, but for the handlers of the loggers named in *shown*:
    the worker's copies of them (a library's own, set at its import) showed it already,
    where the loop shows it once."""
    node: Any = logger
    while node is not None:
        if node.name not in shown:
            for handler in node.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
        if not node.propagate:
            break
        node = node.parent
