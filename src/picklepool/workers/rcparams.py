"""matplotlib's settings the parent changed (``rcParams``), set in a worker too.

A script styles its figures once, at its top: ``plt.rcParams["figure.dpi"] = 200``,
``plt.style.use("ggplot")``, ``matplotlib.rc("font", size=8)``. In the loop the call
replaces, the tasks that draw and save its figures (a common use of a pool) draw them so;
a warm worker never ran those lines, so the same task saved a figure with matplotlib's
defaults: another size, resolution, font and colours (under joblib too).

:func:`pickled` reads, in the parent, the settings that differ from matplotlib's defaults
(``rcParamsDefault``): only when matplotlib is imported, and again only when ``rcParams``
changed (one comparison with a copy: about 6 us with its 340 entries). Not the backend
(``backend``, ``backend_fallback``, ``interactive``: the parent's may draw in windows,
which a worker must not open; a worker draws with its own, Agg without a display). Each
is pickled apart, so one that cannot be pickled is left out, not the others. :func:`apply`
sets them in the worker before each batch (matplotlib is imported there for them),
through ``rcParams``, which validates them, with warnings silenced (the parent showed
them where they were set), and puts back the worker's own value of those the parent no
longer sets. They are process-wide: not sent to a dask cluster's shared workers.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from typing import Any

from .overlay import Overlay, dumps_each

log = logging.getLogger(__name__)

WHAT = "a matplotlib setting"
# the settings that choose how figures are shown, not how they look: the worker's own
NOT_SENT = frozenset({"backend", "backend_fallback", "interactive", "toolbar", "webagg.open_in_browser"})
_NONE = object()

# parent: (a copy of rcParams as read last, the pickle of its changed settings)
_read: tuple[dict[str, Any] | None, bytes | None] = (None, None)

# worker: the parent's settings set here
_overlay = Overlay(WHAT)


def pickled() -> bytes | None:
    """The matplotlib settings the program changed, pickled (None: matplotlib is not
    imported, or they are its defaults). Kept while ``rcParams`` equals the copy read last."""
    global _read
    matplotlib = sys.modules.get("matplotlib")
    params = getattr(matplotlib, "rcParams", None)
    defaults = getattr(matplotlib, "rcParamsDefault", None)
    if not isinstance(params, dict) or not isinstance(defaults, dict):
        return None  # (not imported, or half imported)
    seen, data = _read
    if seen is not None:
        try:
            if dict.__eq__(params, seen) is True:  # (the raw entries: no validation, no warnings)
                return data
        except Exception:  # noqa: BLE001 - a value whose == raised: read them again
            pass
    entries = []
    for key, value in list(dict.items(params)):
        if key in NOT_SENT:
            continue
        try:
            changed = bool(value != dict.get(defaults, key, _NONE))
        except Exception:  # noqa: BLE001 - not comparable: sent
            changed = True
        if changed:
            entries.append((key, value))
    data = dumps_each(entries, WHAT) if entries else None
    _read = (dict(dict.items(params)), data)
    return data


class _Params:
    """``rcParams`` as the table an :class:`~.overlay.Overlay` lays the parent's over."""

    def __init__(self, matplotlib: Any) -> None:
        self.params = matplotlib.rcParams

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self.params, key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (a deprecated setting: the parent warned)
            try:
                self.params[key] = value
            except Exception as exc:  # noqa: BLE001 - one this matplotlib refuses: the others are set
                log.debug("picklepool: matplotlib setting %s=%r not set here: %r", key, value, exc)

    def pop(self, key: str, default: Any = None) -> Any:
        return default  # (every setting has a value: the worker's own is set back instead)


def _matplotlib(importing: bool) -> Any:
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is None and importing:
        try:
            matplotlib = importlib.import_module("matplotlib")
        except ImportError:  # (a worker without it: a task using it fails there anyway)
            return None
    return matplotlib if isinstance(getattr(matplotlib, "rcParams", None), dict) else None


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    matplotlib = _matplotlib(importing=False)
    if _overlay.added and matplotlib is not None:
        _overlay.rebase(_Params(matplotlib))  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Set the settings pickled in *data* in this worker's matplotlib (None: the parent
    changed none), and put back the worker's own value of those set for an earlier batch
    that the parent no longer changes. matplotlib is imported for them only."""
    if data is None and not _overlay.added:  # (the usual case)
        return
    matplotlib = _matplotlib(importing=True)
    if matplotlib is not None:
        _overlay.apply(_Params(matplotlib), data)  # type: ignore[arg-type]
