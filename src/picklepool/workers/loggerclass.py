"""The logger class and level names the parent's program set in ``logging``, set in a worker too.

The usual recipe for a TRACE level: ``logging.addLevelName(5, "TRACE")`` and a ``Logger``
subclass with a ``trace()`` method, made the class of every logger with
``logging.setLoggerClass(TraceLogger)``, at the script's top. In the loop the call
replaces, a task's ``logging.getLogger("app").trace(...)`` worked; in a warm worker the
logger was a plain ``Logger`` (a script's logger travels by name, and the worker makes it of
its own class), so the task raised ``AttributeError: 'Logger' object has no attribute
'trace'``, and ``logging.getLevelName(5)`` answered "Level 5" (under joblib too).

:func:`pickled` reads, in the parent, the logger class when it is not ``logging.Logger``
and the level names that are not ``logging``'s own: again only when the class or the number
of names changed (one look-up and one ``len`` a call). Each is pickled apart (with hybrid: a
class of the script by value). :func:`apply` sets them in the worker before each batch's
functions are loaded (a script's logger is made again there, by name, of that class), again
if a task changed one, and takes back those the parent no longer has. A logger the worker
made before the parent set its class keeps its own (as one the parent made before does).
Process-wide: not sent to a dask cluster's shared workers.
"""

from __future__ import annotations

import logging
from typing import Any

from .overlay import Overlay, dumps_each

WHAT = "a logger class or level name of logging"

_OWN_NAMES = {
    logging.CRITICAL: "CRITICAL",
    logging.ERROR: "ERROR",
    logging.WARNING: "WARNING",
    logging.INFO: "INFO",
    logging.DEBUG: "DEBUG",
    logging.NOTSET: "NOTSET",
}

# parent: (the logger class and the number of level names as read last, their pickle)
_read: tuple[Any, bytes | None] = (None, None)


def pickled() -> bytes | None:
    """The program's logger class and level names, pickled each apart (None: ``logging``'s own)."""
    global _read
    names = logging._levelToName
    now = (logging.getLoggerClass(), len(names))
    seen, data = _read
    if now == seen:
        return data
    entries: list[tuple[Any, Any]] = [
        (("level", level), name) for level, name in list(names.items()) if _OWN_NAMES.get(level) != name
    ]
    if now[0] is not logging.Logger:
        entries.append((("class",), now[0]))
    data = dumps_each(entries, WHAT) if entries else None
    _read = (now, data)
    return data


class _Logging:
    """``logging``'s logger class and level names, as the one table an
    :class:`~.overlay.Overlay` lays the parent's over."""

    def get(self, key: tuple[Any, ...], default: Any = None) -> Any:
        if key[0] == "class":
            return logging.getLoggerClass()
        return logging._levelToName.get(key[1], default)

    def __setitem__(self, key: tuple[Any, ...], value: Any) -> None:
        if key[0] == "class":
            if isinstance(value, type) and issubclass(value, logging.Logger):
                logging.setLoggerClass(value)
        elif isinstance(value, str):
            logging.addLevelName(key[1], value)

    def pop(self, key: tuple[Any, ...], default: Any = None) -> Any:
        if key[0] == "level":
            name = logging._levelToName.pop(key[1], None)
            if name is not None and logging._nameToLevel.get(name) == key[1]:
                del logging._nameToLevel[name]
        return default


# worker: the parent's class and names set here
_overlay = Overlay(WHAT)


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    if _overlay.added:
        _overlay.rebase(_Logging())  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Set in this worker the logger class and level names pickled in *data* (None:
    ``logging``'s own), and take back those set for an earlier batch that the parent no
    longer has."""
    if data is None and not _overlay.added:  # (the usual case)
        return
    _overlay.apply(_Logging(), data)  # type: ignore[arg-type]
