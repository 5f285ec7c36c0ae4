"""Every setting, in one place: where its value comes from, and whether it is valid.

One precedence rule for every setting, decided here and nowhere else::

    the argument  >  the innermost parallel_config  >  PICKLEPOOL_* env var  >  default

``None`` (and the ``NOT_SET`` sentinel) mean "not given" at every level, as in
joblib, so a ``parallel_config`` applies to ``Parallel(n_jobs=None)``; only for
``max_nbytes`` is None a value (shared memory off), as in joblib.
:func:`resolve` answers for one setting; :func:`resolve_settings` builds the frozen
:class:`Settings` a call runs with, every value validated where it was given:
a bad value is a ``ValueError`` naming the setting, the value and its source.

This module is the bottom of the package: it imports nothing of picklepool, so the
parent side (``executor``), the pickler registry, ``SharedState`` checkpoints and
``picklepool info`` all read settings the same way.
"""

from __future__ import annotations

import ast
import contextvars
import inspect
import math
import numbers
import operator
import os
import sys
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import SettingTypeError, SettingValueError


class _Sentinel:
    """Marks "not passed" (joblib's ``_Sentinel``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> str:
        return self.name


NOT_SET: Any = _Sentinel("NOT_SET")

# Every environment variable picklepool reads, in order of precedence per setting.
ENV_VARS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "pickler": ("PICKLEPOOL_PICKLER", "LOKY_PICKLER"),
        "state_key": ("PICKLEPOOL_STATE_KEY",),
        "n_jobs": ("PICKLEPOOL_N_JOBS",),
        "backend": ("PICKLEPOOL_BACKEND",),
        "progress": ("PICKLEPOOL_PROGRESS",),
        "max_worker_memory": ("PICKLEPOOL_MAX_WORKER_MEMORY",),
        "idle_worker_timeout": ("PICKLEPOOL_IDLE_WORKER_TIMEOUT",),
        "worker_cache_bytes": ("PICKLEPOOL_WORKER_CACHE_BYTES",),
        "temp_folder": ("PICKLEPOOL_TEMP_FOLDER", "JOBLIB_TEMP_FOLDER"),  # joblib honours the latter
    }
)

# The built-in defaults, used when nothing at all is set.
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "n_jobs": 1,  # joblib's n_jobs=None: the calling process
        "backend": "loky",
        "pickler": "hybrid",
        "batch_size": "auto",
        "pre_dispatch": "2*n_jobs",
        "timeout": None,
        "progress": False,
        "verbose": 0,
        "max_nbytes": "1M",
        "inner_max_num_threads": None,
        "max_worker_memory": None,
        "idle_worker_timeout": None,
        "scheduler_address": None,
        "temp_folder": None,
        "mmap_mode": "c",
        "prefer": None,
        "require": None,
        "initializer": None,
        "initargs": (),
        "maxtasksperchild": None,  # backend="multiprocessing": multiprocessing.Pool's
    }
)

CONFIG_KEYS = tuple(DEFAULTS)

_config: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "picklepool_config", default=MappingProxyType({})
)


def env_setting(setting: str) -> tuple[str, str] | None:
    """Return ``(value, variable_name)`` for *setting* from the environment, or None.

    The only function in picklepool that reads ``PICKLEPOOL_*`` (and
    ``LOKY_PICKLER``) variables. Empty values count as unset.
    """
    for var in ENV_VARS.get(setting, ()):
        value = os.environ.get(var)
        if value:
            return value, var
    return None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """What to say of each ``PICKLEPOOL_*`` variable set in *environ* (``os.environ``) that
    picklepool does not read: a typo (``PICKLEPOOL_PICKLR``) would otherwise be ignored in
    silence, and the call run with the default the user meant to change."""
    found = []
    for var in os.environ if environ is None else environ:
        if var.startswith("PICKLEPOOL_") and var not in _KNOWN_VARS:
            import difflib  # (only for a variable to warn of)

            suffixes = {known[len("PICKLEPOOL_") :]: known for known in _KNOWN_VARS}
            close = difflib.get_close_matches(var[len("PICKLEPOOL_") :], suffixes, n=1, cutoff=0.6)
            hint = f"did you mean {suffixes[close[0]]}? " if close else ""
            found.append(
                f"the environment variable {var} is not one picklepool reads, so it changes "
                f"nothing; {hint}picklepool reads {', '.join(_KNOWN_VARS)}"
            )
    return sorted(found)


_KNOWN_VARS = tuple(
    sorted({var for names in ENV_VARS.values() for var in names if var.startswith("PICKLEPOOL_")})
)
_unknown_checked = False


def warn_unknown_variables(stacklevel: int = 3) -> None:
    """Warn (``RuntimeWarning``) of each :func:`unknown_variables` once per process, in a
    parent only: a worker's environment is its parent's, which has said so already."""
    global _unknown_checked
    if _unknown_checked:
        return
    _unknown_checked = True
    from . import lokycompat  # (loky's depth: 1 in a worker)

    if lokycompat.any_depth():
        return
    import warnings

    for message in unknown_variables():
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)


def config_value(setting: str) -> Any:
    """The value of *setting* in the innermost ``parallel_config``, or NOT_SET."""
    return _config.get().get(setting, NOT_SET)


def push_config(values: Mapping[str, Any]) -> contextvars.Token[Mapping[str, Any]]:
    """Enter a ``parallel_config`` block: *values* over the enclosing ones."""
    merged = dict(_config.get())
    merged.update(values)
    return _config.set(MappingProxyType(merged))


def pop_config(token: contextvars.Token[Mapping[str, Any]]) -> None:
    _config.reset(token)


# parallel_config objects made and not entered (yet): id -> (the making thread, file, line,
# module, what to say). joblib applies one as it is made, until its .unregister(): a call
# of that thread made meanwhile outside any block runs without it here, so it says so (once
# per object; a call inside a block is left alone: configs made ahead, entered in turn).
_unentered: dict[int, tuple[int, str, int, str, str]] = {}


def note_unentered(key: int, text: str, depth: int) -> None:
    """Remember a config object *key* made by the frame *depth* levels above the caller."""
    frame = sys._getframe(depth + 1)
    where = (frame.f_code.co_filename, frame.f_lineno, frame.f_globals.get("__name__", ""))
    _unentered[key] = (threading.get_ident(), *where, text)


def forget_unentered(key: int) -> None:
    """The object *key* was entered (or is gone): nothing to say about it."""
    _unentered.pop(key, None)


_MISSED = " (a call of the thread that made it runs without it)"


def warn_unentered(key: int | None = None, missed: str = "", dropped: bool = False) -> None:
    """Warn, at the line that made it, of object *key* (None: every one the calling thread
    made and has not entered) as changing nothing; *missed* says what went on without it.
    *dropped*: from the object's ``__del__``, where a warning cannot be raised (``-W error``),
    nor made at the interpreter's exit."""
    if key is None:
        me = threading.get_ident()
        keys = [k for k, entry in list(_unentered.items()) if entry[0] == me]
    else:
        keys = [key]
    for k in keys:
        entry = _unentered.pop(k, None)
        if entry is not None:
            _, filename, lineno, module, text = entry
            message = text.replace("{missed}", missed)
            if not dropped:  # (-W error: raised at the call, as any warning)
                warnings.warn_explicit(message, RuntimeWarning, filename, lineno, module=module)
                continue
            try:
                warnings.warn_explicit(message, RuntimeWarning, filename, lineno, module=module)
            except Exception:  # noqa: BLE001 - at interpreter exit: nothing to say it with
                pass


# the settings' variables, and LOKY_MAX_CPU_COUNT (cpu_count: what n_jobs=-1 means)
_ALL_VARS = (*(var for names in ENV_VARS.values() for var in names), "LOKY_MAX_CPU_COUNT")


# os.environ's own dict (bytes names on POSIX), read at C speed by sources_now: every
# call of every Parallel reads all these variables, twice
_ENV_DATA = getattr(os.environ, "_data", None) if os.name == "posix" else None
_ALL_VARS_RAW = tuple(map(os.fsencode, _ALL_VARS)) if os.name == "posix" else _ALL_VARS


def _environ_data() -> dict[Any, Any] | None:
    """``os.environ``'s own dict (bytes names), when it is still the one read at import."""
    data = getattr(os.environ, "_data", None)
    return data if data is not None and data is _ENV_DATA and type(data) is dict else None


def sources_now() -> tuple[Mapping[str, Any], tuple[Any, ...]]:
    """What settings are read from besides arguments: the config block and the env vars.

    Two calls return equal values (the block by identity) exactly when every
    :func:`resolve` would answer the same: a caller may keep its settings until then.
    The variables' values come with this process's CPU affinity (what ``n_jobs=-1``
    counts, as ``LOKY_MAX_CPU_COUNT`` limits it), as loky reads it at every call.
    """
    block = _config.get()
    if _unentered and not block:  # (one look-up a call while there is none)
        warn_unentered(None, _MISSED)
    affinity = len(os.sched_getaffinity(0)) if _AFFINITY else None
    data = _environ_data()
    if data is not None:
        return block, (*map(data.get, _ALL_VARS_RAW), affinity)
    environ = os.environ
    return block, (*map(environ.get, _ALL_VARS), affinity)


_AFFINITY = hasattr(os, "sched_getaffinity")


# Settings for which None is a value, as in joblib: ``max_nbytes=None`` turns shared
# memory off. For every other setting None means "not given".
NONE_IS_A_VALUE = frozenset({"max_nbytes"})


def _given(value: Any, setting: str) -> bool:
    if value is NOT_SET:
        return False
    return value is not None or setting in NONE_IS_A_VALUE


def resolve(setting: str, argument: Any = NOT_SET, default: Any = NOT_SET) -> tuple[Any, str]:
    """The value in force for *setting*, and where it came from.

    Returns ``(value, source)``; source is ``"argument"``, ``"parallel_config"``,
    ``"env var NAME"`` or ``"default"``. ``None`` means "not given" at every level,
    except for the settings in :data:`NONE_IS_A_VALUE` (``max_nbytes=None``: off).
    *default* defaults to :data:`DEFAULTS`'s entry (None for settings without one).
    """
    if _given(argument, setting):
        return argument, "argument"
    value = config_value(setting)
    if _given(value, setting):
        return value, "parallel_config"
    found = env_setting(setting)
    if found is not None:
        return found[0], f"env var {found[1]}"
    if default is NOT_SET:
        default = DEFAULTS.get(setting)
    return default, "default"


# -- parsers: one per kind of value ------------------------------------------------------

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MAX_BYTES = 1 << 62  # far above any machine's memory; past it a size is a mistake
MAX_SECONDS = 1e9  # ~31 years: timers and waits in the stdlib overflow not far above


def plain_number(value: Any) -> Any:
    """*value* as a Python ``int`` or ``float`` when it is a number of another type
    (numpy's ``np.int64``, ``np.float32``, an ``IntEnum``), else *value* unchanged.

    What joblib's ``int(n_jobs)`` and the standard library's executors take: a setting
    read from an array or a config library is often a numpy scalar. A bool, numpy's
    ``np.bool_`` and a string stay as they are (the parsers decide about those).
    """
    if value is None or type(value) in (int, float, str, bool):
        return value
    if isinstance(value, numbers.Integral):
        return operator.index(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _numpy_bool(value: Any) -> bool:
    """Whether *value* is numpy's bool (``np.True_``), which is no ``numbers.Integral``."""
    cls = type(value)
    return cls.__module__ == "numpy" and cls.__name__ in ("bool_", "bool")


def parse_bytes(value: Any, name: str, source: str = "argument", threshold: bool = False) -> int | None:
    """``"1M"`` -> 1048576; None stays None; ints pass through, and floats as the
    whole bytes they hold (``1e6``: joblib compares sizes with them as given).

    Raises ``ValueError`` naming *name* for anything else: negative, NaN, infinite,
    or past 2**62 bytes. A *threshold* (``max_nbytes``, which joblib compares every
    array's size with: ``nbytes > max_nbytes``) gives those numbers joblib's meanings
    instead: ``math.inf`` (or past 2**62) is None, no array shared; a negative number
    is 0, every array shared, and so is a negative size (``"-1M"``: joblib's
    ``memstr_to_bytes`` gives -1048576). NaN and a bool stay refused there, the error
    saying what joblib makes of them (NaN: no array shared, as no size compares greater;
    ``True``: 1 byte and ``False``: 0, every array shared): each is most likely a mistake.
    """
    if value is None:
        return None
    value = plain_number(value)
    if threshold and type(value) in (int, float) and not math.isnan(value):
        if value > MAX_BYTES:
            return None  # joblib: no array is larger
        if value < 0:
            return 0  # joblib: every array is larger
    number = -1.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().upper().removesuffix("B")
        unit = text[-1:] if text[-1:] in _UNITS else ""
        try:
            number = float(text[: len(text) - len(unit)]) * _UNITS[unit]
        except ValueError:
            number = math.nan
        if threshold and -math.inf < number < 0:
            return 0  # joblib: memstr_to_bytes("-1M") is -1048576, below every array's size
    if 0 <= number <= MAX_BYTES:
        return int(number)
    joblib = ""
    if threshold and (isinstance(value, bool) or _numpy_bool(value)):
        joblib = (
            f" (joblib compares sizes with it as {int(value)} byte{'s' if not value else ''}, "
            "sharing every array: for that, write 0)"
        )
    elif threshold and isinstance(value, float) and math.isnan(value):
        joblib = " (joblib shares no array with it, as no size compares greater: for that, write None)"
    raise SettingValueError(
        f"{name}={value!r} (from {source}) is not a size; "
        f"use a number of bytes, or '500K', '1M', '2G', or None{joblib}"
    )


def _refused(wrong_type: bool, message: str) -> ValueError:
    """The error for a bad setting: of a type the setting never takes (``timeout="abc"``,
    ``verbose=[1]``), a :class:`SettingTypeError` (a ``TypeError`` as joblib raises for
    it, and a ``ValueError``); else a ``ValueError``."""
    return SettingTypeError(message) if wrong_type else ValueError(message)


def parse_seconds(value: Any, name: str, source: str = "argument", unlimited: bool = False) -> float | None:
    """A positive, finite number of seconds (at most 1e9), or None.

    A string is read only from an environment variable (joblib's ``timeout="5"`` is a
    ``TypeError``). With *unlimited* (``timeout``), ``math.inf`` and any number past
    1e9 seconds mean no limit (None), as they do in joblib (and for
    ``concurrent.futures``' ``result(timeout=math.inf)``).

    Raises ``ValueError`` naming *name* and *source* for 0 or below, NaN or a bool
    (:class:`~picklepool.errors.SettingTypeError` for a string or another type). For
    ``timeout`` joblib takes these, by accident of its checks, and the error says what
    it makes of them: 0 or below times out every task not finished at its first check
    (its loky manager thread can then crash with a ``KeyError``), NaN never times out,
    ``True`` is 1 s.
    """
    if value is None:
        return None
    value = plain_number(value)
    if isinstance(value, str) and source.startswith("env var"):
        try:
            value = float(value)
        except ValueError:
            pass
    if unlimited and type(value) in (int, float) and value > MAX_SECONDS:  # (NaN is not)
        return None
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= MAX_SECONDS
    ):
        return float(value)
    unlimited_too = ", math.inf (no limit)" if unlimited else ""
    joblib = ""
    if unlimited and type(value) in (int, float, bool):  # timeout: what joblib makes of it
        if isinstance(value, bool):
            joblib = f" (joblib reads {value} as {int(value)} s)"
        elif math.isnan(value):
            joblib = (
                " (joblib never times out with it, as no wait compares greater: for no limit, write None)"
            )
        else:
            joblib = (
                " (joblib times out every task not finished at its first check, a few ms in, "
                "for 0 or below: for no limit, write None)"
            )
    raise _refused(
        not isinstance(value, (int, float)),
        f"{name}={value!r} (from {source}) is not valid; use a positive, finite number of "
        f"seconds (at most {MAX_SECONDS:g}){unlimited_too} or None{joblib}",
    )


MAX_WORKERS = 4096  # n_jobs and inner_max_num_threads beyond this are typos, not plans


def parse_n_jobs(value: Any, source: str = "argument") -> int:
    """``n_jobs`` as an int: strings of digits are read, floats truncated (as joblib's ``int(n_jobs)``).

    Raises ``ValueError`` (whose message holds joblib's own phrase, so code matching
    joblib's message still matches) for 0 or a float that truncates to 0 ("n_jobs == 0
    in Parallel has no meaning"), for what cannot be read as an int, such as ``"2.3"``,
    NaN or a non-number ("n_jobs could not be converted to int"), and for booleans and
    values past 4096 workers; ``errors.SettingTypeError`` (a ``TypeError``, as joblib's
    ``int(n_jobs)`` raises, and a ``ValueError``) for a value of another type (a list).
    A numpy integer or float counts as the number it is.
    """
    given = value
    value = plain_number(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    use = (
        f"use a positive number of workers (at most {MAX_WORKERS}), -1 for all usable cores, "
        "or -n for all cores but n-1"
    )
    if isinstance(value, int) and not isinstance(value, bool):
        if value == 0:
            meaning = "n_jobs == 0 in Parallel has no meaning"
            raise ValueError(f"n_jobs={given!r} (from {source}) is not valid: {meaning}; {use}")
        if abs(value) <= MAX_WORKERS:
            return value
        raise ValueError(f"n_jobs={given!r} (from {source}) is not valid: {use}")
    if isinstance(value, bool):  # (int(True) is 1: it is not that it cannot be converted)
        meant = "1: for that, write 1" if value else "0, which has no meaning"
        raise ValueError(
            f"n_jobs={given!r} (from {source}) is not valid: a bool is not a number of workers "
            f"(joblib reads {given!r} as {meant}); {use}"
        )
    if not isinstance(value, (str, bytes, float, int)):
        raise SettingTypeError(
            f"n_jobs={given!r:.100} (from {source}) is not valid: n_jobs must be a number, not a "
            f"{type(given).__name__}; {use}"
        )
    raise ValueError(
        f"n_jobs={given!r} (from {source}) is not valid: n_jobs could not be converted to int; {use}"
    )


_cores_cache: dict[Any, int] = {}


def cpu_count(only_physical_cores: bool = False) -> int:
    """Usable cores: CPU affinity, cgroup quotas and ``LOKY_MAX_CPU_COUNT`` respected.

    loky's count, remembered while the affinity and ``LOKY_MAX_CPU_COUNT`` stay the
    same (it reads cgroup files, ~0.1 ms a call, which would show in every call).
    """
    affinity = len(os.sched_getaffinity(0)) if _AFFINITY else None
    data = _environ_data()
    if data is not None:  # at C speed: every call asks
        limit = data.get(b"LOKY_MAX_CPU_COUNT")
    else:
        limit = os.environ.get("LOKY_MAX_CPU_COUNT")
    key = (affinity, limit, only_physical_cores)
    count = _cores_cache.get(key)
    if count is None:
        from .lokycompat import import_loky  # a bad LOKY_PICKLER: its error, not loky's

        loky = import_loky()
        try:
            count = int(loky.cpu_count(only_physical_cores=only_physical_cores))
        except ValueError as exc:
            if limit is None:
                raise
            text = limit.decode(errors="replace") if isinstance(limit, bytes) else limit
            raise SettingValueError(
                f"LOKY_MAX_CPU_COUNT={text!r} (from env var LOKY_MAX_CPU_COUNT, the most cores "
                "picklepool and loky count) is not valid: loky reads it with int(); use a whole "
                "number of cores, such as 4, or unset it"
            ) from exc
        _cores_cache[key] = count
    return count


def workers_for(n_jobs: int, cores: int | None = None) -> int:
    """Workers for an ``n_jobs`` already parsed: -1 all *cores*, -2 all but one, ..."""
    if n_jobs < 0:
        return max(1, (cpu_count() if cores is None else cores) + 1 + n_jobs)
    return n_jobs


MAX_BATCH = 1 << 40  # tasks in one batch


def parse_batch_size(value: Any, source: str = "argument") -> int | str:
    """ "auto" or a positive int: joblib's ``isinstance(batch_size, Integral)``, so
    ``True`` is 1 (numpy's ``np.bool_`` is no ``Integral``: refused, as in joblib)."""
    value = plain_number(value)
    if value is True:
        return 1
    if value == "auto" or (
        isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_BATCH
    ):
        return value  # type: ignore[no-any-return]
    raise ValueError(  # (with joblib's words: "batch_size must be 'auto' or a positive integer")
        f"batch_size={value!r} (from {source}) is not valid: batch_size must be 'auto' or a "
        f"positive integer (at most {MAX_BATCH})"
    )


def inflight(pre_dispatch: Any, n_workers: int, source: str = "argument") -> int:
    """Batches that may be in flight for *pre_dispatch* ("2*n_jobs", "all", an int); a value
    from 0 to 1 is 1. Raises ``ValueError`` (``TypeError`` for another type) for the rest."""
    if _numpy_bool(pre_dispatch):  # joblib's int() of it
        pre_dispatch = bool(pre_dispatch)
    if isinstance(pre_dispatch, bool):
        pre_dispatch = int(pre_dispatch)  # joblib's int(pre_dispatch): True is 1 (False, 0: one)
    pre_dispatch = plain_number(pre_dispatch)
    if isinstance(pre_dispatch, int) and not isinstance(pre_dispatch, bool) and 0 < pre_dispatch <= MAX_BATCH:
        return pre_dispatch
    if isinstance(pre_dispatch, float) and 1 <= pre_dispatch <= MAX_BATCH:  # NaN fails both
        return int(pre_dispatch)  # joblib's int(pre_dispatch): n_jobs * 1.5 is a float
    if isinstance(pre_dispatch, str):
        text = pre_dispatch.replace(" ", "")
        if text == "n_jobs":
            return n_workers
        factor, _, rest = text.partition("*")
        if rest == "n_jobs" and factor.isdigit() and int(factor) > 0:
            return int(factor) * n_workers
        if factor == "n_jobs" and rest.isdigit() and int(rest) > 0:
            return int(rest) * n_workers
        if text == "all":
            return 1 << 30
        if text.isdigit() and 0 < int(text) <= MAX_BATCH:
            return int(text)
        value = _arithmetic(text.replace("n_jobs", str(n_workers)))  # joblib's: '1.5*n_jobs', 'n_jobs+2'
        if value is not None and 1 <= value <= MAX_BATCH:
            return int(value)
    elif isinstance(pre_dispatch, (int, float)) and not isinstance(pre_dispatch, bool):
        value = pre_dispatch
    else:
        value = None
    if value is not None and -1 < value < 1:
        # (above -1: joblib's int() makes it 0 too)
        # worth less than one batch ("n_jobs/4" on 2 cores): one, where joblib's dispatched
        # none and returned [] without an error
        return 1
    if value is None:
        why = "it is not a valid or supported arithmetic expression"
    elif value != value:  # NaN
        why = "it is not a number"
    elif value < 0:
        worth = "" if value is pre_dispatch else f" with n_jobs={n_workers}"
        why = f"it is worth {value:g}{worth}, below 0"
    else:
        why = f"it is worth {value:g}, over the {MAX_BATCH} batches picklepool can keep in flight"
    raise _refused(
        not isinstance(pre_dispatch, (int, float, str)),
        f"pre_dispatch={pre_dispatch!r} (from {source}) is not valid; use e.g. '2*n_jobs', "
        f"'all', a positive int, or an arithmetic expression of n_jobs worth at least 1 ({why})",
    )


_OPERATORS: Mapping[type, Any] = MappingProxyType(
    {
        ast.Add: operator.add,
        ast.Sub: operator.sub,
        ast.Mult: operator.mul,
        ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv,
        ast.Pow: operator.pow,
        ast.USub: operator.neg,
        ast.UAdd: operator.pos,
    }
)


def _arithmetic(text: str) -> float | None:
    """The value of *text*, an arithmetic expression of numbers (as joblib's ``eval_expr``), or None."""
    if len(text) > 30:  # joblib's limit too
        return None

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)  # type: ignore[arg-type]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > MAX_BATCH):
                raise OverflowError
            return _OPERATORS[type(node.op)](left, right)  # type: ignore[no-any-return]
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))  # type: ignore[no-any-return]
        raise TypeError(node)

    try:
        result = value(ast.parse(text, mode="eval").body)
    except (SyntaxError, TypeError, ValueError, OverflowError, ZeroDivisionError):
        return None
    return result if isinstance(result, (int, float)) and math.isfinite(result) else None


def parse_threads(value: Any, source: str = "argument") -> int | None:
    """Validate ``inner_max_num_threads``: None (default) or a positive int."""
    if value is None:
        return None
    value = plain_number(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    raise ValueError(
        f"inner_max_num_threads={value!r} (from {source}) is not valid; use a positive "
        f"number of BLAS/OpenMP threads per worker (at most {MAX_WORKERS}), or None for cores // n_jobs"
    )


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", "none", ""}
_ALWAYS = {"always", "force"}


def parse_progress(value: Any, source: str = "argument") -> Any:
    """Validate a ``progress`` setting: False, True, "always" or a callable.

    Strings (from ``PICKLEPOOL_PROGRESS``) are read as booleans or "always".
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _ALWAYS:
            return "always"
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    elif callable(value):
        if _takes_two(value) is False:  # it failed at the first batch's end, with Python's words
            raise SettingTypeError(
                f"progress={value!r} (from {source}) is a callable that cannot be called as "
                "progress(done, total_or_None): it is called with those two arguments after "
                "each batch; give it two parameters (def report(done, total): ...), or use "
                "True, 'always' or False"
            )
        return value
    raise ValueError(
        f"progress={value!r} (from {source}) is not valid; use True (a bar when stderr is a "
        "terminal), 'always' (a bar even when it is not), False, or a callable taking "
        "(done, total_or_None)"
    )


def _takes_two(func: Any) -> bool | None:
    """Whether *func* can be called with two positional arguments; None when its signature
    cannot be read (a builtin, a C extension's callable): not refused."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(0, None)
    except TypeError:
        return False
    return True


def parse_verbose(value: Any, source: str = "argument") -> int:
    """Validate a ``verbose`` setting: a non-negative number, as joblib takes it.

    A bool (numpy's too) counts as 0/1; a float as joblib uses it: its lines come as for
    the int below it (``2.5`` as 2), and any value above 0 prints (``0.5`` as 1). A
    negative, infinite or NaN value is a ``ValueError`` (joblib prints its progress for a
    negative one, as for a positive one, which the error says: ``verbose=-1`` is most likely
    meant quiet), a string or another type a
    :class:`~picklepool.errors.SettingTypeError` (joblib: a ``TypeError``).
    """
    if value is None:
        return 0
    if _numpy_bool(value):  # joblib compares it as 0/1
        value = bool(value)
    value = plain_number(value)
    if isinstance(value, int) and value >= 0:
        return int(value)
    if isinstance(value, float) and 0 <= value < math.inf:
        return max(int(value), 1) if value else 0
    joblib = ""
    if isinstance(value, (int, float)) and -math.inf < value < 0:
        joblib = " (joblib prints its progress for a negative one, as for a positive one)"
    raise _refused(
        not isinstance(value, (int, float)),
        f"verbose={value!r} (from {source}) is not valid; use 0 (quiet) or a positive number{joblib}",
    )


MMAP_MODES = ("c", "r", "r+", "w+")


def parse_choice(name: str, valid: tuple[Any, ...], what: str = "valid") -> Any:
    """A parser accepting only the values in *valid* (None always means "not set"); its error
    says the value "is not *what*" (joblib's words: "a valid backend hint" for ``prefer``)."""

    def parse(value: Any, source: str = "argument") -> Any:
        if value is None or value in valid:
            return value
        raise ValueError(f"{name}={value!r} (from {source}) is not {what}; use one of {list(valid)} or None")

    return parse


def parse_folder(value: Any, source: str = "argument") -> str | None:
    """``temp_folder``: None (picklepool's choice: /dev/shm, else the temp folder) or a path."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)  # type: ignore[return-value]
    raise SettingTypeError(f"temp_folder={value!r} (from {source}) is not valid; use a folder's path or None")


def parse_scheduler_address(value: Any, source: str = "argument") -> str | None:
    """``scheduler_address``: None or a dask scheduler's address, whose scheme (``tcp://``,
    ``tls://``...) distributed knows: ``distributed.Client`` raised its ``ValueError`` for
    another from a half-made client, whose ``__del__`` then held the program's exit 60 s."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SettingTypeError(
            f"scheduler_address={value!r} (from {source}) is not valid; use the address of a dask "
            "scheduler as `dask scheduler` prints it, e.g. 'tcp://HOST:8786', or None"
        )
    try:
        from distributed.comm import parse_address
        from distributed.comm.registry import get_backend
    except ImportError:  # (a call on dask then says what to install)
        return value
    try:
        get_backend(parse_address(value)[0])
    except ValueError as exc:
        raise SettingValueError(
            f"scheduler_address={value!r} (from {source}) is not valid: {exc}. Use the address "
            "of a dask scheduler as `dask scheduler` prints it, e.g. 'tcp://HOST:8786'"
        ) from None
    return value


# -- the settings of one call --------------------------------------------------------------


def parse_initializer(value: Any, source: str = "argument") -> Any:
    """``initializer``: None or a callable run once in each new worker process."""
    if value is None or callable(value):
        return value
    raise SettingTypeError(
        f"initializer={value!r} (from {source}) is not valid; use a function run once in each "
        "new worker process, or None"
    )


def parse_initargs(value: Any, source: str = "argument") -> tuple[Any, ...]:
    """``initargs``: the arguments of ``initializer``, a tuple or list (default ``()``)."""
    if value is None:
        return ()
    if isinstance(value, (tuple, list)):
        return tuple(value)
    raise SettingTypeError(
        f"initargs={value!r} (from {source}) is not valid; use a tuple of the initializer's arguments"
    )


def parse_maxtasksperchild(value: Any, source: str = "argument") -> int | None:
    """``maxtasksperchild`` (``backend="multiprocessing"``): None, or the positive number of
    batches a worker process runs before ``multiprocessing.Pool`` replaces it."""
    if value is None:
        return None
    value = plain_number(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise _refused(
        not isinstance(value, int),
        f"maxtasksperchild={value!r} (from {source}) is not valid; use a positive int (the "
        "batches a worker runs before it is replaced; batch_size=1 makes them tasks), or None",
    )


@dataclass(frozen=True)
class Settings:
    """Every setting of one call, validated; ``sources`` says where each came from.

    ``pickler`` is the value as given (a name, a class, an instance): it is resolved
    by ``pickler.registry.resolve_pickler`` only for calls that pickle.
    """

    n_jobs: int
    n_workers: int
    backend: str
    pickler: Any
    batch_size: int | str
    pre_dispatch: Any
    max_inflight: int
    timeout: float | None
    progress: Any
    verbose: int
    max_nbytes: int | None
    inner_max_num_threads: int | None
    max_worker_memory: int | None
    idle_worker_timeout: float | None
    scheduler_address: str | None
    temp_folder: str | None
    mmap_mode: str
    prefer: str | None
    require: str | None
    initializer: Any
    initargs: tuple[Any, ...]
    maxtasksperchild: int | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    context: Any = None  # the multiprocessing context given as backend=, for "multiprocessing"


PARSERS: Mapping[str, Any] = MappingProxyType(
    {
        "batch_size": parse_batch_size,
        "timeout": lambda v, s: parse_seconds(v, "timeout", s, unlimited=True),
        "progress": parse_progress,
        "verbose": parse_verbose,
        "max_nbytes": lambda v, s: parse_bytes(v, "max_nbytes", s, threshold=True),
        "inner_max_num_threads": parse_threads,
        "max_worker_memory": lambda v, s: parse_bytes(v, "max_worker_memory", s),
        "idle_worker_timeout": lambda v, s: parse_seconds(v, "idle_worker_timeout", s),
        "temp_folder": parse_folder,
        "mmap_mode": parse_choice("mmap_mode", MMAP_MODES),
        "prefer": parse_choice("prefer", ("processes", "threads"), "a valid backend hint"),
        "require": parse_choice("require", ("sharedmem",), "a valid backend constraint"),
        "initializer": parse_initializer,
        "initargs": parse_initargs,
        "maxtasksperchild": parse_maxtasksperchild,
        "scheduler_address": parse_scheduler_address,
    }
)


def check_setting(key: str, value: Any, source: str) -> Any:
    """*value* of setting *key* parsed as a call would; ``ValueError`` naming it and *source*.

    For settings given elsewhere than picklepool's own arguments (the joblib backend's
    ``parallel_config``), so that a bad one names where it was given.
    """
    return PARSERS[key](value, source)


# The deepest nesting level whose calls run in parallel: 0 is the caller's, 1 the calls
# made inside its workers (or threads). Deeper calls run sequentially, as in joblib
# (level 1 on threads, sequential below), so unbounded recursion cannot start
# processes without limit.
MAX_DEPTH = 1


def nested_backend(depth: int) -> str | None:
    """The backend of a call made at nesting level *depth* that names none (joblib's).

    None in a parent (level 0: the configured default applies); "threading" inside a
    worker or a thread of a threading pool (level 1); "sequential" below (joblib's
    ``ParallelBackendBase.get_nested_backend``).
    """
    if depth <= 0:
        return None
    return "threading" if depth <= MAX_DEPTH else "sequential"


def _apply_nesting(values: dict[str, Any], sources: dict[str, str], depth: int) -> None:
    """Inside a worker, what was not given there takes joblib's nested default.

    A worker's calls see only what was given in that worker (an argument, a
    ``parallel_config`` the task entered, the environment): no backend means
    :func:`nested_backend`, no ``n_jobs`` means 1 (joblib's ``n_jobs=None``), as the
    ``parallel_config(backend=nested, n_jobs=None)`` joblib's ``BatchedCalls`` enters
    around every task.
    """
    nested = nested_backend(depth)
    if nested is None:
        return
    where = f"nesting level {depth} (joblib's nested default)"
    if sources["backend"] == "default":
        values["backend"], sources["backend"] = nested, where
    if sources["n_jobs"] == "default":
        values["n_jobs"], sources["n_jobs"] = 1, where


def _choose_backend(values: dict[str, Any], sources: dict[str, str], backends: Mapping[str, Any]) -> None:
    """Apply ``prefer`` (a soft hint) and ``require`` (a hard constraint) as joblib does.

    - ``prefer="threads"``/``"processes"`` only chooses when no backend was given
      (argument, ``parallel_config`` or environment): an explicit backend wins, and so
      does an ``initializer`` over "threads" (it runs in worker processes).
    - ``require="sharedmem"`` given as an argument with a backend given as an argument
      that does not share memory is a ``ValueError``; a backend from ``parallel_config``
      or the environment is switched to "threading", and a ``n_jobs`` that did not come
      from the argument becomes 1 (joblib's ``_get_active_backend``). A ``require``
      from ``parallel_config`` or the environment does not override a backend given as
      an argument: joblib checks its constraint against the block's backend only, so
      library code asking for ``backend="loky"`` inside such a block runs on loky.
    """
    prefer, require, backend = values["prefer"], values["require"], values["backend"]
    if prefer == "processes" and require == "sharedmem":
        raise ValueError(
            "prefer='processes' and require='sharedmem' are inconsistent settings (from "
            f"{sources['prefer']} and {sources['require']}): processes do not share memory; "
            "drop one of them"
        )
    cls = backends.get(backend) if isinstance(backend, str) else None
    shares = bool(getattr(cls, "in_caller", False))
    threads = bool(getattr(cls, "uses_threads", False))
    if require == "sharedmem" and not shares and sources["backend"] == "argument":
        if sources["require"] == "argument":
            raise ValueError(
                f"backend={backend!r} (from argument) does not support shared memory, which "
                f"require='sharedmem' (from {sources['require']}) asks for; use "
                "backend='threading', or drop require"
            )
    elif require == "sharedmem" and not shares:
        values["backend"], sources["backend"] = "threading", f"require='sharedmem' ({sources['require']})"
        if sources["n_jobs"] != "argument":
            values["n_jobs"], sources["n_jobs"] = 1, "require='sharedmem' (joblib's default)"
    elif (
        sources["backend"] == "default"
        and prefer == "threads"
        and not threads
        and values.get("initializer") is None
    ):
        # (a soft hint: an initializer, which runs in worker processes, keeps them)
        values["backend"], sources["backend"] = "threading", f"prefer='threads' ({sources['prefer']})"
    elif sources["backend"] == "default" and prefer == "processes" and threads:
        values["backend"], sources["backend"] = "loky", f"prefer='processes' ({sources['prefer']})"


def resolve_settings(
    arguments: Mapping[str, Any],
    backends: Mapping[str, Any],
    cores: int | None = None,
    depth: int = 0,
) -> Settings:
    """The :class:`Settings` in force for *arguments* (NOT_SET or None: not given).

    *backends* maps the valid backend names to their classes (their capabilities
    decide ``prefer``/``require``, see :func:`_choose_backend`); *cores* is what
    ``n_jobs=-1`` means (None: :func:`cpu_count`; inside a worker, its share of the
    parent's cores); *depth* how deeply nested the call is: inside a worker (depth
    >= 1) a backend or ``n_jobs`` not given there takes joblib's nested default
    (:func:`_apply_nesting`), and past :data:`MAX_DEPTH` a process or thread backend
    runs the call sequentially instead. Raises
    ``ValueError`` naming the first bad setting, its value and its source.
    """
    if _unentered and not _config.get():
        warn_unentered(None, _MISSED)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in DEFAULTS:
        values[key], sources[key] = resolve(key, arguments.get(key, NOT_SET))
    for key, parse in PARSERS.items():
        values[key] = parse(values[key], sources[key])
    context = None
    if not isinstance(values["backend"], str) and is_mp_context(values["backend"]):
        context, values["backend"] = values["backend"], "multiprocessing"
    _apply_nesting(values, sources, depth)
    _choose_backend(values, sources, backends)
    if values["backend"] not in backends:
        raise ValueError(
            f"Invalid backend: backend={values['backend']!r} (from {sources['backend']}) is not valid; "
            f"use one of {list(backends)} or a multiprocessing context"
        )
    if sources["n_jobs"] == "default":  # as joblib: the backend's own default (dask: -1)
        values["n_jobs"] = getattr(backends[values["backend"]], "default_n_jobs", values["n_jobs"])
    n_jobs = parse_n_jobs(values["n_jobs"], sources["n_jobs"])
    n_workers = workers_for(n_jobs, cores)
    if depth > MAX_DEPTH and values["backend"] != "dask":
        n_workers = 1  # too deep: sequential, as joblib below its first nesting level
    if getattr(backends[values["backend"]], "single_worker", False):
        n_workers = 1  # "sequential": one worker whatever n_jobs says, as joblib's effective_n_jobs
    values["n_jobs"] = n_jobs
    return Settings(
        n_workers=n_workers,
        max_inflight=inflight(values["pre_dispatch"], n_workers, sources["pre_dispatch"]),
        sources=MappingProxyType(sources),
        context=context,
        **values,
    )


def is_mp_context(value: Any) -> bool:
    """True for a ``multiprocessing`` context (``multiprocessing.get_context("spawn")``)."""
    return hasattr(value, "Pool") and hasattr(value, "get_start_method")
