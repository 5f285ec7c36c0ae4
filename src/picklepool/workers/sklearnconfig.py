"""scikit-learn's settings (``sklearn.set_config``, ``sklearn.config_context``), read and applied.

A task that fits or transforms with scikit-learn runs under its global settings:
``transform_output="pandas"`` (a transformer returns a DataFrame), ``assume_finite``
(input checks skipped), ``working_memory`` (the chunk size of pairwise distances),
``enable_metadata_routing`` (what ``fit(..., sample_weight=...)`` accepts),
``skip_parameter_validation``. A warm worker never ran the parent's ``set_config``, so the
same task gave a DataFrame in the loop and an array in the pool, or raised in one and not
the other (under joblib too: scikit-learn's own ``Parallel`` sends them with each task for
that reason, ``sklearn.utils.parallel``; a script's ``Parallel`` and ``delayed`` do not).

They are part of the calling thread's settings (``workers.mirror``), as ``decimal``'s
context is: scikit-learn keeps them per thread, a ``config_context`` block around the call
holds for its tasks. Read only when the parent has imported scikit-learn, and sent only
when they differ from its defaults; a worker imports scikit-learn to apply them (the
tasks will use it), and puts its defaults back for a batch whose parent has none.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)

_MODULE = "sklearn._config"

# parent: (a copy of the settings read last, what read() answered for them)
_seen: tuple[dict[str, Any], tuple[tuple[str, Any], ...] | None] | None = None


def _settings(module: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(this thread's settings, the defaults)`` of scikit-learn's ``_config`` *module*:
    the live dicts, not copies. None for a scikit-learn that does not keep them so."""
    try:
        now, defaults = module._get_threadlocal_config(), module._global_config
    except AttributeError:
        return None
    return (now, defaults) if type(now) is dict and type(defaults) is dict else None


def read() -> tuple[tuple[str, Any], ...] | None:
    """This thread's scikit-learn settings as ``sorted(sklearn.get_config().items())``;
    None when scikit-learn is not imported, or they are its defaults."""
    global _seen
    module = sys.modules.get(_MODULE)
    if module is None:
        return None
    both = _settings(module)
    if both is None:
        return None
    now, defaults = both
    seen = _seen
    if seen is not None and seen[0] == now:
        return seen[1]
    out = None if now == defaults else tuple(sorted(now.items()))
    _seen = (dict(now), out)
    return out


def apply(settings: tuple[tuple[str, Any], ...] | None) -> None:
    """Make this thread's scikit-learn settings *settings* (None: its defaults), where they
    differ. scikit-learn is imported for settings that are not the defaults only."""
    module = sys.modules.get(_MODULE)
    if module is None:
        if settings is None:
            return
        try:
            module = importlib.import_module(_MODULE)
        except ImportError:  # (a cluster's worker without it: a task using it fails there anyway)
            return
    both = _settings(module)
    if both is None:
        return
    now, defaults = both
    want = defaults if settings is None else dict(settings)
    if now != want:
        try:
            module.set_config(**{k: v for k, v in want.items() if k in now})
        except Exception as exc:  # noqa: BLE001 - one this worker refuses: the task runs with its own
            log.debug("picklepool: scikit-learn's settings of the parent not set here: %r", exc)
