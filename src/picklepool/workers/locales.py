"""The parent's locale (``locale.setlocale``), set in a worker too.

A script that calls ``locale.setlocale(locale.LC_ALL, "")`` (the user's locale) or sets one
category (``LC_NUMERIC``, ``LC_TIME``) formats in the loop the call replaces as that locale
says: a task's ``locale.format_string("%.2f", x, grouping=True)``, ``time.strftime("%A")``,
``locale.strxfrm`` sort keys, ``locale.getpreferredencoding()`` (``open()``'s default
encoding). A warm worker never ran the script's ``setlocale``: it had the locale an
interpreter starts with (under joblib too).

:func:`read` gives, in the parent, the locale of every category (one C call, ~0.8 us a
call; sent with every batch: the locale a worker starts with is a new interpreter's, which
the parent cannot know once its program changed its own). :func:`apply` sets it in the
worker before each batch where it differs (again if a task changed it). A locale the
worker's machine does not have is left as it is there. Process-wide: not on dask (a
cluster's workers are shared).
"""

from __future__ import annotations

import _locale
import logging

log = logging.getLogger(__name__)

_CATEGORIES = {
    name: getattr(_locale, name)
    for name in ("LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE", "LC_MONETARY", "LC_MESSAGES")
    if hasattr(_locale, name)
}
# worker: a locale of the parent this machine could not take whole (not tried again)
_failed: str | None = None


def read() -> str | None:
    """``setlocale(LC_ALL)`` of this process: a name, or ``"LC_CTYPE=...;LC_NUMERIC=..."``
    when categories differ (None: a platform that cannot say)."""
    try:
        return _locale.setlocale(_locale.LC_ALL)  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - not mirrored there
        return None


def _set(name: str) -> None:
    """``setlocale(LC_ALL, name)``, as :func:`read` gave it (the C library takes its
    composite answer back); else category by category, those this machine has."""
    global _failed
    try:
        _locale.setlocale(_locale.LC_ALL, name)
        return
    except Exception:  # noqa: BLE001 - one category's locale is missing here: the others
        _failed = name
    for part in name.split(";"):
        category, _, value = part.rpartition("=")
        for key in (category,) if category else _CATEGORIES:
            if key in _CATEGORIES:
                try:
                    _locale.setlocale(_CATEGORIES[key], value)
                except Exception as exc:  # noqa: BLE001 - a locale this machine lacks
                    log.debug("picklepool: the parent's locale %s=%r cannot be set here: %r", key, value, exc)


def apply(name: str | None) -> None:
    """Make this worker's locale *name* (the parent's :func:`read`; None: left as it is)."""
    if name is not None and name != _failed and read() != name:
        _set(name)
