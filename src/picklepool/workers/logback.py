"""Log records a batch's tasks made, sent back to a parent whose logging is configured.

In the loop a call replaces, a task's ``log.info(...)`` goes to the handlers the script
configured (``logging.basicConfig(filename="run.log", level=logging.INFO)``, pytest's
``caplog``): a worker has none of them, so its records were lost (an INFO one, under the
worker's default WARNING level) or printed to the terminal by ``logging.lastResort``,
without the script's format (joblib's workers do the same).

The parent's logging configuration travels with every batch (:func:`levels`, read when
the call is made, again only when a level, a logger, a handler or ``logging.lastResort``
changed): the level, ``disabled`` flag, ``propagate`` flag and handlers' levels of each of
its loggers that has any of them set. A worker sets its loggers' levels and ``disabled``
flags to the parent's (:func:`follow`, where the parent's changed since its last batch:
one a task set stays while the parent leaves it be), so a task's ``log.isEnabledFor()``
and ``getEffectiveLevel()`` answer as in the parent, for any logger name, and a record the
parent's level would drop is not made (a library guarding its costly debug formatting with
``isEnabledFor`` skips it, as in the parent).

When a logger of the parent has a handler that shows records (its root logger's,
``basicConfig``; or a named one's, ``getLogger("app").addHandler(...)``; a library's
``NullHandler`` shows nothing), a handler of :func:`collected` on the worker's root logger
keeps the records that reach it and that the parent would show (:meth:`Parent.threshold`:
its logger's effective level there, its ``disabled`` flag, ``logging.disable``'s level,
and a handler on its propagation chain, or ``logging.lastResort`` when it has none, that
takes that level), prepared as a ``logging.handlers.QueueHandler`` prepares them (the
message formatted, an exception's traceback as text), one tuple each, sent with the batch's
reply (``wire.Captured``). The parent hands each to the logger of its name (:func:`show`),
which decides as for its own records: its filters, its handlers' filters. They come when
the batch is done, not as they are made. A worker whose logging an ``initializer``
configured (its root logger has handlers) keeps it: its levels are its own and its records
are not sent. Not on dask (a cluster's workers are shared).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
import pickle
import sys
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from . import following
from .journal import LOG, journal, mark

# a level no record reaches: a logger whose records the parent never shows
NEVER = sys.maxsize

# a parent's logger as sent (Parent.loggers): (name, level, disabled, propagate, whether it
# has handlers, the lowest level of those that show records, None when none does); the root
# logger's name is "" (getLogger("") is the root: no other logger has that name)
NAME, LEVEL, DISABLED, PROPAGATE, HANDLED, SHOWS = range(6)


# -- the parent's side: its configuration, read when it changed -------------------------


class _Read:
    """The configuration :func:`levels` read last, and what tells that it still holds."""

    __slots__ = ("data", "key", "loggers", "handlers", "watched")

    def __init__(
        self,
        data: bytes,
        key: tuple[Any, ...],
        loggers: list[Any],
        handlers: list[weakref.ref[Any]],
        watched: tuple[Any, ...],
    ) -> None:
        self.data = data
        self.key = key
        self.loggers = loggers  # the loggers it has, the root first: their handlers and flags are watched
        # weak references to their handlers and the loose ones, whose levels are watched (not
        # kept alive here: a loose one gone, the records its level took are no longer kept)
        self.handlers = handlers
        self.watched = watched  # (_watched of those, as they were read)


# parent: what levels() read last (None: nothing yet)
_read: _Read | None = None
_MARK = object()  # put in the root logger's level cache, which every setLevel and logging.disable empty


def levels() -> bytes | None:
    """This process's logging configuration for its workers (``ParentState.logging_levels``),
    pickled: see :class:`Parent`. None when ``logging`` is not loaded.

    Read again only when it may have changed: a level set (``setLevel`` and
    ``logging.disable`` empty the root logger's level cache, where a mark is left), a logger
    or a handler made, ``logging.lastResort`` changed, or a handler, ``propagate`` or
    ``disabled`` flag of a logger it has, or a level of a handler it has, changed. A few
    microseconds a call when nothing did (every call reads it)."""
    global _read
    module = sys.modules.get("logging")
    if module is None:
        return None
    key = _key(module)
    read = _read
    if (
        read is not None
        and key is not None
        and read.key == key
        and _MARK in module.root._cache
        and _watched(read.loggers, read.handlers) == read.watched
    ):
        return read.data
    # the mark, then what is watched, then the configuration: a change made meanwhile (another
    # thread's) is read at the next call, not lost behind a mark or a fingerprint of after it
    module.root._cache[_MARK] = True  # (never looked up: isEnabledFor asks for levels)
    named, loose = _configured(module)
    loggers = [logger for _, logger in named]
    handlers = [weakref.ref(h) for logger in loggers for h in list(logger.handlers)]
    handlers += map(weakref.ref, loose)
    watched = _watched(loggers, handlers)
    data = pickle.dumps(_configuration(module, named, loose), protocol=4)
    _read = _Read(data, key or (), loggers, handlers, watched)
    return data


def _key(module: Any) -> tuple[Any, ...] | None:
    """What changes when a logger or a handler is made or ``logging.lastResort`` is replaced
    or set another level (None where this ``logging`` keeps no list of its handlers: read
    at every call then). The newest handler's weak reference, not their number: one made as
    another went left the number as it was."""
    made = getattr(module, "_handlerList", None)  # (a weak reference to every handler made)
    if type(made) is not list:
        return None
    last = module.lastResort
    return (
        len(module.root.manager.loggerDict),
        made[-1] if made else None,
        last,
        getattr(last, "level", None),
    )


def _watched(loggers: list[Any], handlers: list[weakref.ref[Any]]) -> tuple[Any, ...]:
    """The parts of *loggers* and *handlers* (weak references) no cache mark or count
    follows: a logger's handlers (``addHandler`` of a handler made before, ``removeHandler``),
    its ``propagate`` and ``disabled`` flags, a handler's level (None: gone)."""
    return (
        [(tuple(lg.handlers), lg.propagate, lg.disabled) for lg in loggers],
        [getattr(h(), "level", None) for h in handlers],
    )


def _configured(module: Any) -> tuple[list[tuple[str, Any]], list[Any]]:
    """([(name, logger)] of the root logger ("") and of the loggers that have a level, a
    flag or handlers; the loose handlers, :func:`_loose`) of the ``logging`` *module*."""
    root = module.root
    logger_class = module.Logger
    named = [("", root)]
    for name, logger in list(root.manager.loggerDict.items()):
        if not isinstance(logger, logger_class):  # (a PlaceHolder: no logger of that name yet)
            continue
        if logger.level or logger.disabled or not logger.propagate or logger.handlers:
            named.append((name, logger))
    attached = {id(h) for _, logger in named for h in list(logger.handlers)}
    return named, _loose(module, attached)


def _configuration(module: Any, named: list[tuple[str, Any]], loose: list[Any]) -> tuple[Any, ...]:
    """The configuration :class:`Parent` takes, of the loggers *named* (the root's first) and
    the *loose* handlers."""
    null = module.NullHandler
    top, *entries = [_entry(name, logger, null) for name, logger in named]
    shown = [h.level for h in loose if type(h) is not null]
    last = module.lastResort
    return (
        any(entry[SHOWS] is not None for entry in (top, *entries)) or bool(shown),
        module.root.manager.disable,
        None if last is None else last.level,
        min(shown) if shown else None,
        top,
        tuple(entries),
    )


def _entry(name: str, logger: Any, null: type) -> tuple[Any, ...]:
    """*logger* as :class:`Parent` takes it (``NAME``, ``LEVEL``... ``SHOWS``)."""
    handlers = list(logger.handlers)
    shows = [h.level for h in handlers if type(h) is not null]
    return (
        name,
        logger.level,
        bool(logger.disabled),
        bool(logger.propagate),
        bool(handlers),
        min(shows) if shows else None,
    )


def _loose(module: Any, attached: set[int]) -> list[Any]:
    """The handlers made and alive that no logger has (but ``logging.lastResort``): one may
    be added to any logger before a call without a new handler or logger being made, which
    :func:`levels` would not see; a worker keeps the records of every logger that such a
    handler's level would take (a free ``FileHandler`` at INFO: every INFO record the parent's
    loggers let through)."""
    own = {id(module.lastResort), id(getattr(module, "_defaultLastResort", None))}
    loose = []
    for ref in list(getattr(module, "_handlerList", ())):
        handler = ref()
        if handler is not None and id(handler) not in attached and id(handler) not in own:
            loose.append(handler)
    return loose


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


# -- the worker's side: the parent's configuration, followed --------------------------


class Parent:
    """The parent's logging configuration, as :func:`levels` sent it: whether it shows
    records (a logger has a handler that is not a ``NullHandler``), ``logging.disable``'s
    level, ``logging.lastResort``'s level (None: there is none), the lowest level of its
    loose handlers (:func:`_loose`; None: none), its root logger and its other loggers that
    have a level, a flag or handlers (``NAME``, ``LEVEL``... ``SHOWS``)."""

    def __init__(self, config: Sequence[Any]) -> None:
        self.shows, self.disable, self.last_resort, self.loose, self.root, entries = config
        self.loggers: dict[str, tuple[Any, ...]] = {entry[NAME]: entry for entry in entries}
        self._thresholds: dict[Any, int] = {}

    def levels(self) -> dict[str, tuple[int, bool]]:
        """{logger name: (level, disabled)} of the parent's loggers that have either set
        ("": the root logger)."""
        out = {"": (self.root[LEVEL], self.root[DISABLED])}
        for name, entry in self.loggers.items():
            if entry[LEVEL] or entry[DISABLED]:
                out[name] = (entry[LEVEL], entry[DISABLED])
        return out

    def threshold(self, name: str, shown: tuple[str, ...] = ()) -> int:
        """The lowest level of a record of the logger *name* that the parent's :func:`show`
        shows (``NEVER``: none), *shown* naming the loggers whose handlers in this worker
        showed it already (:func:`_shown_here`, skipped there). Its filters may drop one."""
        key = (name, shown) if shown else name
        level = self._thresholds.get(key)
        if level is None:
            level = self._thresholds[key] = self._threshold(name, shown)
        return level

    def _threshold(self, name: str, shown: tuple[str, ...]) -> int:
        own = self.root if name == "root" else self.loggers.get(name)
        if own is not None and own[DISABLED]:  # (Logger.handle drops them all)
            return NEVER
        chain = self._chain(name)
        # isEnabledFor: the logger's effective level, and logging.disable's level
        level = next((entry[LEVEL] for entry in chain if entry[LEVEL]), logging.NOTSET)
        level = max(level, self.disable + 1)
        # callHandlers: a handler on the way up that takes the record, else lastResort
        reach, handled = NEVER, False
        for entry in chain:
            handled = handled or entry[HANDLED]
            if entry[SHOWS] is not None and entry[NAME] not in shown:
                reach = min(reach, entry[SHOWS])
            if not entry[PROPAGATE]:
                break
        if not handled and not shown and self.last_resort is not None:
            reach = min(reach, self.last_resort)  # (_handle_past has no lastResort)
        if self.loose is not None:
            reach = min(reach, self.loose)
        return max(level, reach)

    def _chain(self, name: str) -> list[tuple[Any, ...]]:
        """The parent's loggers a record of the logger *name* goes through, from its own (if
        it has one) up to its root logger, as ``logging.getLogger(name)`` there links them."""
        if name == "root":
            return [self.root]
        loggers = self.loggers
        chain = [loggers[name]] if name in loggers else []
        chain += [loggers[above] for above in _ancestors(name) if above in loggers]
        chain.append(self.root)
        return chain


def _ancestors(name: str) -> Iterator[str]:
    """The names above *name* that ``logging.Manager._fixupParents`` looks for its parent
    in, nearest first ("a.b.c": "a.b", "a")."""
    i = name.rfind(".")
    while i > 0:
        yield name[:i]
        i = name.rfind(".", 0, i - 1)


# worker: (the configuration followed last, as sent, and as read), None before the first
_followed: tuple[bytes, Parent] | None = None
# the level and disabled flag of a logger at logging's start ("": the root logger's)
_START = {"": (logging.WARNING, False)}
_UNSET = (logging.NOTSET, False)


def follow(data: bytes | None) -> Parent | None:
    """Follow the parent's changes of its loggers' levels and ``disabled`` flags (*data*,
    :func:`levels`) in this worker's loggers; the parent's configuration when it shows
    records (the tasks' records go to it, :func:`collected`), else None.

    Each logger's (level, disabled) is a setting of ``workers.following``: set when the
    parent's changed since this worker's last batch, the worker's own back when a change
    ends (``caplog.at_level``'s block); a level a task or an ``initializer`` set stays while
    the parent leaves that logger's be, as in the loop. Nothing is done where the parent has
    no ``logging`` or this worker's root logger has handlers (an ``initializer`` configured
    its logging: the levels are its own too). Read only when *data* changed."""
    global _followed
    if data is None or logging.root.handlers:
        return None
    followed = _followed
    if followed is None or followed[0] != data:
        parent = Parent(pickle.loads(data))
        _follow_levels(parent.levels(), _START if followed is None else followed[1].levels())
        followed = _followed = (data, parent)
    parent = followed[1]
    return parent if parent.shows else None


def _follow_levels(now: dict[str, tuple[int, bool]], before: dict[str, tuple[int, bool]]) -> None:
    """Follow *now* ({logger name: (level, disabled)}: the parent's loggers that have either
    set) for those loggers, and for those of *before* (the parent's at the last change) that
    it no longer sets (NOTSET and enabled; the root: WARNING). Until the parent changes a
    logger's, it counts as logging's start (the first batch leaves an initializer's level)."""
    for name in now.keys() | before.keys():
        key = f"logging level {name}"
        start = _START.get(name, _UNSET)
        if following.seen(key) is None:
            following.seen_as(key, start)
        logger = logging.root if name == "" else logging.getLogger(name)
        following.follow(
            key,
            now.get(name, start),
            functools.partial(_level, logger),
            functools.partial(_set_level, logger),
        )


def _level(logger: logging.Logger) -> tuple[int, bool]:
    """*logger*'s (level, disabled) here."""
    return logger.level, bool(logger.disabled)


def _set_level(logger: logging.Logger, value: tuple[int, bool]) -> None:
    """Give *logger* the (level, disabled) *value*."""
    level, logger.disabled = value
    if logger.level != level:
        logger.setLevel(level)  # (empties every logger's cache: only when it differs)


# a record's attributes as a row keeps them: "msg" (its formatted message), then those of a
# LogRecord made here but the ones the trip drops ("args", "exc_info": prepared as a
# QueueHandler does; "levelname": the parent names a level), then two: its other attributes
# ({name: value}, None: none) and the loggers that showed it here (_shown_here, None: none).
# With _REPEATED shared, ~350 bytes a record, here and in the parent, where a dict was ~800.
_RECORD = tuple(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
_KEYS = ("msg", *(k for k in _RECORD if k not in {"msg", "args", "exc_info", "levelname"}))
_VALUES = operator.itemgetter(*_KEYS[1:])
_STANDARD = frozenset(_RECORD) | {"message"}  # (message: what a Formatter here set, the msg)
# the values of _VALUES a record makes anew that are most often those of the record before
# (its call site's file and line, its thread, its process): a row takes those of the row
# before, one object for them all (~170 bytes less a record, here and in the parent)
_REPEATED = tuple(
    i for i, k in enumerate(_KEYS[1:]) if k in {"filename", "module", "lineno", "thread", "process"}
)


class _Collector(logging.Handler):
    """Keeps the records that reach the worker's root logger and that the parent would show
    (:meth:`Parent.threshold`), prepared for the trip."""

    def __init__(self, parent: Parent) -> None:
        super().__init__(logging.NOTSET)
        self.rows: list[tuple[Any, ...]] = []
        self.parent = parent
        self.last: tuple[Any, ...] | None = None  # the values of the last row (_shared)

    def handle(self, record: logging.LogRecord) -> bool:
        # no lock, as emit keeps nothing but a row appended (atomic): Handler.handle's took
        # one per record, for the records the parent drops too
        name = record.name
        shown = _shown_here(name)
        if record.levelno < self.parent.threshold(name, shown):
            return False  # the parent would not show it: kept, it was shipped and dropped
        if self.filters and not self.filter(record):
            return False
        self._keep(record, shown)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self._keep(record, _shown_here(record.name))

    def _keep(self, record: logging.LogRecord, shown: tuple[str, ...]) -> None:
        """Append *record*'s row: its message formatted, its exception's traceback as text."""
        try:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = _FORMATTER.formatException(record.exc_info)
        except Exception:  # noqa: BLE001 - as a handler's own emit: reported by handleError
            self.handleError(record)
            return
        attrs = vars(record)
        try:
            values = _VALUES(attrs)
        except KeyError:  # (a record a factory made without one of them)
            values = tuple(attrs.get(k) for k in _KEYS[1:])
        if self.last is not None:
            values = _shared(values, self.last)
        self.last = values  # (the shared ones: a record's own would live on in the next row)
        extra = None
        if len(attrs) != len(_RECORD):  # (an extra= value, an attribute a filter set)
            extra = {k: v for k, v in attrs.items() if k not in _STANDARD} or None
        self.rows.append((message, *values, extra, shown or None))
        mark(LOG, len(self.rows))  # (its place among what the batch prints and warns)
        if journal.path is not None:
            _journaled((message, *values, extra, shown or None))


def _shared(values: tuple[Any, ...], last: tuple[Any, ...]) -> tuple[Any, ...]:
    """*values* (a record's :data:`_VALUES`), with the objects of *last* (the record's before)
    for those of :data:`_REPEATED` that are equal (and of the same type: 1 and True are equal)."""
    out = list(values)
    for i in _REPEATED:
        mine, theirs = out[i], last[i]
        if mine is not theirs and mine == theirs and type(mine) is type(theirs):
            out[i] = theirs
    return tuple(out)


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
def collected(parent: Parent | None, folder: str | None = None) -> Iterator[list[tuple[Any, ...]]]:
    """Inside, with the *parent*'s configuration (:func:`follow`), the records that reach
    this worker's root logger and that the parent would show are kept in the list it yields
    (a row each, :data:`_KEYS`), not handled here. Nothing is done when *parent* is None or
    this worker's root logger has handlers. *folder*: the session folder, where the rows are
    also written as they are kept (``workers.journal``), for the parent to show should this
    worker die before its reply."""
    global _spare
    root = logging.root
    if parent is None or root.handlers:
        yield []
        return
    journal.use(folder)
    collector = _spare
    if collector is None or collector in root.handlers:  # (the first batch; a batch in a batch)
        collector = _Collector(parent)
    else:
        collector.rows, collector.parent, collector.last = [], parent, None
    _spare = collector
    root.addHandler(collector)
    try:
        yield collector.rows
    finally:
        root.removeHandler(collector)
        # (the batch's are the caller's: not kept here until the next one)
        collector.rows, collector.last = [], None
        journal.clear()


# worker: the collector of the batches (a handler made per batch took a lock and a weak reference)
_spare: _Collector | None = None


def _journaled(row: tuple[Any, ...]) -> None:
    """*row* appended to the worker's journal (``workers.journal``), of plain values: an
    ``extra=`` object as its text (:func:`_text`)."""
    try:
        extra = len(_KEYS)
        if row[extra]:
            row = (*row[:extra], {k: _text(v) for k, v in row[extra].items()}, row[extra + 1])
        journal.write(LOG, pickle.dumps(row, 5))
    except Exception:  # noqa: BLE001 - (the row still goes with the reply)
        pass


def show_journaled(data: bytes) -> None:
    """Parent side: hand a row of a dead worker's journal (``workers.journal``) to this
    process's loggers, as :func:`show` does a reply's."""
    try:
        row = pickle.loads(data)
    except Exception:  # noqa: BLE001 - a torn row
        return
    extra = len(_KEYS)
    _show_rows(_KEYS, [row], {0: row[extra]} if row[extra] else {})


def dumps(pickler: Any, rows: list[tuple[Any, ...]]) -> bytes | None:
    """The rows as bytes of the call's *pickler*, with their keys; None when there are none.
    An attribute that cannot be pickled (an ``extra=`` object) goes as its ``repr``.

    The rows' other attributes (``extra=``) travel apart, pickled, with their texts (plain
    values as they are, others as their ``repr``), which :func:`show` falls back on when the
    parent cannot rebuild them (an object of a module only the worker imports): every record
    of the batch was lost, without a word."""
    if not rows:
        return None
    extra = len(_KEYS)
    others = {i: row[extra] for i, row in enumerate(rows) if row[extra]}
    if others:
        rows = [(*row[:extra], None, row[extra + 1]) if i in others else row for i, row in enumerate(rows)]
        texts = {i: {k: _text(v) for k, v in attrs.items()} for i, attrs in others.items()}
        try:
            apart = bytes(pickler.dumps(others))
            pickler.loads(apart)
        except Exception:  # noqa: BLE001 - one of them cannot make the trip: their texts go
            apart = None
    try:
        return bytes(pickler.dumps((_KEYS, rows, (apart, texts) if others else None)))
    except Exception:  # noqa: BLE001 - whatever the pickler does
        return None


_PLAIN = (str, int, float, bool, type(None))


def _text(value: Any) -> Any:
    """*value* (a record's ``extra=`` value) as it goes when the parent cannot rebuild it:
    itself when a plain value, else its ``repr`` (that of its type, when repr fails)."""
    if type(value) in _PLAIN:
        return value
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a repr that raises
        return f"<{type(value).__qualname__}>"


def show(pickler: Any, data: bytes | None) -> None:
    """Hand the records a batch sent back (:func:`dumps`) to this process's loggers of their
    names, which decide as for their own: level, filters, handlers, propagation."""
    loaded = _loaded(pickler, data)
    if loaded is not None:
        _show_rows(*loaded)


def each(pickler: Any, data: bytes | None) -> list[Any]:
    """The records a batch sent back (:func:`dumps`), each as a callable that hands it on as
    :func:`show` does (``executor.printed.show`` calls them in the order the tasks gave them,
    between their printed text and warnings)."""
    loaded = _loaded(pickler, data)
    if loaded is None:
        return []
    keys, rows, others = loaded
    return [
        functools.partial(_show_rows, keys, [row], {0: others[i]} if i in others else {})
        for i, row in enumerate(rows)
    ]


def _loaded(pickler: Any, data: bytes | None) -> tuple[Any, Any, dict[int, Any]] | None:
    """``(keys, rows, others)`` of what :func:`dumps` made, or None (nothing, or bytes an odd
    pickler cannot load)."""
    if not data:
        return None
    try:
        keys, rows, apart = pickler.loads(data)
    except Exception:  # noqa: BLE001 - an odd pickler's bytes that it cannot load
        return None
    others: dict[int, Any] = {}
    if apart is not None:
        try:
            others = pickler.loads(apart[0]) if apart[0] is not None else apart[1]
        except Exception:  # noqa: BLE001 - a class this process cannot load: their texts
            others = apart[1]
    return keys, rows, others


def _show_rows(keys: Sequence[str], rows: list[Any], others: dict[int, Any]) -> None:
    name_of = logging.getLevelName
    extra = len(keys)
    for i, row in enumerate(rows):
        attrs = dict(zip(keys, row, strict=False))  # (the row's last two: its extra, its shown)
        if others and i in others:
            attrs.update(others[i])
        shown = row[extra + 1]
        attrs.update(args=None, exc_info=None, message=attrs["msg"])
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
