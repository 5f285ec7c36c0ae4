"""The parent's process state, mirrored in a worker before each batch.

A warm worker was started once; the parent goes on changing. What decides
whether a task runs the same in a worker as in the parent travels with every
batch in a ``wire.ParentState`` and is applied here, only when it changed (the
process settings: when the parent's changed since the worker's last batch, so that
what an initializer or a task's one-time setup set stays, as in a loop):

- ``sys.path``: the parent's entries, in the parent's order, come first (a module
  imported from a folder the parent added after the pool started is found);
  entries only the worker has stay after them.
- the recursion limit: deep results pickle (and deep recursion runs) as in the parent.
- the working directory: relative paths open the same files.
- the file mode creation mask (``os.umask``): files a task creates get the
  permissions they would get in the parent (a worker started before the parent's
  ``os.umask(0o077)`` would make them readable by all).
- the nesting depth and the cores an inner ``Parallel(n_jobs=-1)`` may use
  (the worker's share of the parent's), read by ``executor`` in the worker.
- the limit on digits in ``str(int)`` (``sys.set_int_max_str_digits``).
- ``multiprocessing``'s default start method (``set_start_method``; None, the
  platform's, unless the parent set one): a task's ``Pool``, ``Process`` or
  ``ProcessPoolExecutor`` starts its processes as it would in the parent. A loky
  worker starts with "loky" as its default, which the standard library's spawned
  children cannot find: every "spawn" or "forkserver" child a task started died in
  its start, and a ``multiprocessing.Pool`` started new ones for ever.
- the calling thread's numeric settings: the ``decimal`` context (precision,
  rounding, exponent range, traps) and numpy's floating-point error handling
  (``np.seterr``), so a task rounds, and raises ``FloatingPointError`` or
  ``decimal.InvalidOperation``, as it would in the parent. Read only when the
  parent has imported the module; a worker that has not imported it is left alone
  while the parent's setting is the default. numpy's ``"call"`` and ``"log"`` modes
  are not mirrored (they hand the error to the parent's ``np.seterrcall`` object,
  which the worker does not have): numpy's default applies for those kinds. With
  them, scikit-learn's settings (``sklearn.set_config``, ``config_context``:
  ``workers.sklearnconfig``).
- the ``warnings`` filters (``workers.warnfilters``): a warning the parent turns into
  an error raises in the task; one it ignores is not printed by the worker.
- the default timeout of new sockets (``socket.setdefaulttimeout``), the folder of
  temporary files (``tempfile.tempdir``) and the csv module's field size limit
  (``csv.field_size_limit``), where the parent set them: a task's connection to a server
  that does not answer times out as in the parent (it waited for ever, where the loop
  raised ``TimeoutError``), its temporary files go to the parent's folder (a scratch
  disk), not the worker's ``/tmp``, and a csv file with large fields parses (it raised
  "field larger than field limit (131072)"). Where the parent has none, the worker's own
  apply (an ``initializer``'s).

- ``sys.argv`` and the time zone (``TZ``, applied with ``time.tzset``): what a worker
  started now would get; a warm worker kept those it started with, so a task parsing the
  command line, or computing a local time, gave what depended on which worker ran it.
- ``copyreg`` reducers the parent's script registered (``workers.registrations``).
- Names the parent's program added to ``builtins`` (``gettext.install``'s ``_``):
  ``workers.builtinnames``.
- pandas' options (``pd.set_option``): ``workers.pandasoptions``.
- ``logging.disable()``'s level: a task's records at or below it are dropped as in the
  parent (a worker showed its warnings through ``logging.lastResort`` after the parent's
  ``logging.disable(logging.CRITICAL)``), and its ``isEnabledFor`` answers the same.

- environment variables the parent set or removed since its first call
  (``workers.envvars``), but the pool's thread limits: a task's ``os.environ.get`` and the
  programs it runs see the parent's values as they are at the call.

- the locale (``locale.setlocale``): ``workers.locales``.

- the ``ssl`` default context factory and the ``urllib`` opener the parent installed
  (``workers.webdefaults``): a task's ``urlopen`` connects as in the parent.
- the archive formats the parent registered in ``shutil`` (``workers.archiveformats``): a
  task's ``shutil.unpack_archive("data.7z")`` extracts as in the parent.
- the import finders the parent put in ``sys.meta_path`` (``pyximport.install()``:
  ``workers.finders``): a module only they find imports in a worker as in the parent.
- what the parent registered in libraries' registries (a pandas or xarray accessor, a
  matplotlib colormap, a sqlite3 adapter, a virtual subclass of a standard ABC:
  ``workers.registries``), applied by ``workers.runner`` once the batch's functions are
  loaded (their modules may register the same entries as they are imported).
- the logger class and level names the parent set in ``logging`` (``setLoggerClass``,
  ``addLevelName``: ``workers.loggerclass``); its loggers' levels and ``disabled`` flags,
  applied by ``workers.runner`` (``workers.logback.follow``): a task's ``isEnabledFor``
  answers as in the parent.
- libraries' settings that are module attributes (``PIL.Image.MAX_IMAGE_PIXELS = None``,
  ``mpmath.mp.dps``: ``workers.modulesettings``).
- the public globals the parent's program changed in its own modules (``config.DEBUG =
  True``: ``workers.moduleglobals``), applied by ``workers.runner`` with the registries.

Not mirrored, by choice: signal handlers,
and logging's handlers (but a task's records that the parent would show reach the parent's
handlers: ``workers.logback``) (set them in the task or with ``initializer``). numpy's print
options are mirrored with the numeric settings (``workers.printopts``).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import multiprocessing
import operator
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .. import forklocks, lokycompat
from ..wire import MIRRORED_SETTINGS, ParentState, import_path, thread_stack_size, time_zone
from . import (
    archiveformats,
    builtinnames,
    contextvalues,
    envvars,
    finders,
    following,
    locales,
    logback,
    loggerclass,
    mainnames,
    moduleglobals,
    modulesettings,
    pandasoptions,
    picklernames,
    printopts,
    rcparams,
    registrations,
    registries,
    reloads,
    sklearnconfig,
    warnfilters,
    webdefaults,
    xarrayoptions,
)

_applied: ParentState | None = None

# (depth, cores) of a task running on a thread of a threading-backend pool; set in
# the context the pool copies from its caller into each task (executor.backends).
_in_thread: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "picklepool_thread_nesting", default=None
)


def apply(state: ParentState) -> None:
    """Make this process follow *state*, the parent's as the call starts.

    The process settings (``wire.MIRRORED_SETTINGS``: ``sys.path``, the recursion limit,
    the working folder, the numeric settings, the warnings filters...) follow the parent's
    changes, not its values (``workers.following``): what the worker's own code set (an
    ``initializer``, a task's one-time setup, a library imported in a task) stays while
    the parent leaves that setting alone, and comes back when a change of the parent's
    ends (a ``with np.errstate(...)`` block around a call), as in a loop in the parent and
    in a loky worker. A few comparisons when nothing changed.
    """
    global _applied, _followed
    values = _FOLLOWED(state)
    last = _followed
    if (
        last is None
        or last[0] is not following._seen
        or last[1] != following.generation
        or _differ(last[2], values)
    ):
        # (else: the values of the last batch's complete loop, every one of them seen as it
        # left them, for which following.follow would return at once: ~5 us of a warm batch)
        _followed = None
        generation = following.generation
        follow = following.follow
        for key, field, part, read, write, restore, fields in _SETTINGS:
            value = getattr(state, field)
            follow(key, value if part < 0 else value[part], read, write, restore, fields)
        if following.generation == generation:
            _followed = (following._seen, generation, values)
    registrations.apply(state.reducers)
    if envvars.differs(state.environ):
        chosen = _tempdir_chosen() if state.io_defaults[1] is None else None
        envvars.apply(state.environ)
        if chosen is not None and chosen != _first_tempdir():
            # tempfile chose its folder from the worker's TMPDIR (TEMP, TMP) as it was: it
            # chooses again from the parent's, as the parent's tempfile, which had not chosen
            # yet, did (a task's temporary files went to /tmp after os.environ["TMPDIR"] = ...)
            temp: Any = sys.modules["tempfile"]
            temp.tempdir = None
    locales.apply(state.locale)
    argv = state.argv
    if tuple(sys.argv) != argv:
        sys.argv = list(argv)
    if time_zone() != state.tz:
        set_time_zone(state.tz)
    logback.disable(state.logging_disable)
    builtinnames.apply(state.builtins)
    pandasoptions.apply(state.pandas_options)
    webdefaults.apply(state.web_defaults)
    archiveformats.apply(state.archive_formats)
    finders.apply(state.finders)
    contextvalues.apply(state.context)
    picklernames.apply(state.picklers)
    mainnames.script = state.main
    rcparams.apply(state.rc_params)
    xarrayoptions.apply(state.xarray_options)
    modulesettings.apply(state.module_settings)
    loggerclass.apply(state.logger_class)
    if state.reloads:  # (none: nothing to reload, whatever was reloaded before)
        reloads.apply(state.reloads)
    _applied = state


def _set_cwd(cwd: str | None) -> None:
    if cwd is not None and _cwd() != cwd:
        try:
            os.chdir(cwd)
        except OSError:  # the parent's folder is not there for this worker (another machine)
            pass


def _set_digits(digits: int) -> None:
    """``sys.set_int_max_str_digits`` (0: no limit; -1: the parent's Python has none)."""
    if digits >= 0 and _int_max_str_digits is not None and _int_max_str_digits() != digits:
        sys.set_int_max_str_digits(digits)


def note_own() -> dict[str, Any]:
    """This process's values of ``MIRRORED_SETTINGS`` but the warnings filters (the calling
    thread's numeric settings), as a ``ParentState`` holds them: read in a worker before an
    initializer runs, and in the parent as it starts a pool with one (:func:`take_settings`)."""
    numeric, io = numeric_state(), io_defaults()
    return {
        "sys_path": import_path(),
        "recursion_limit": sys.getrecursionlimit(),
        "stack_size": thread_stack_size(),
        "cwd": _cwd(),
        "int_max_str_digits": _digits(),
        **{f"numeric.{i}": v for i, v in enumerate(numeric)},
        "umask": umask(),
        "start_method": multiprocessing.get_start_method(allow_none=True),
        **{f"io_defaults.{i}": v for i, v in enumerate(io)},
    }


def take_settings(created: dict[str, Any]) -> None:
    """Make this new worker's settings the parent's *created* (:func:`note_own` and the
    pickled warnings filters, in the parent as it made the pool), before the pool's
    initializer runs: it changes them as it would in a forked child
    (``np.seterr(divide="ignore")`` keeps the parent's ``over="raise"``), and what it sets
    stays while the parent's are those (``workers.following``)."""
    for key, _field, _part, read, write, _restore, fields in _SETTINGS:
        if key in created:
            value = created[key]
            write(value if fields is None else fields(read(), following.FIRST, value))
            following.seen_as(key, value)


def keep_own(before: dict[str, Any], created: dict[str, Any] | None) -> None:
    """The settings an initializer changed (from *before*, :func:`note_own`) are this
    worker's own: they stay while the parent's are those it had when it made the pool or
    executor (*created*; None: the parent's next), in every worker alike (one started
    after a crash included), and come back when a change of the parent's ends."""
    after = note_own()
    for key, value in before.items():
        if after[key] != value:
            if created is not None and key in created:
                following.own_from_now(key, created[key])
            else:
                following.own_from_now(key)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # this worker's folder was removed
        return None


def _digits() -> int:
    return _int_max_str_digits() if _int_max_str_digits is not None else -1


def _set_recursion_limit(limit: int) -> None:
    if sys.getrecursionlimit() != limit:
        sys.setrecursionlimit(limit)


def _set_stack_size(size: int) -> None:
    if thread_stack_size() != size:
        try:
            threading.stack_size(size)
        except (ValueError, RuntimeError):  # (a size this platform refuses: its own)
            pass


def _set_umask(mask: int) -> None:
    if mask >= 0:  # (-1: the parent's is not known)
        os.umask(mask)


def _set_start_method(method: str | None) -> None:
    if multiprocessing.get_start_method(allow_none=True) != method:
        start_method(method)


def _restore_sys_path(own: list[Any], _parents: Any) -> None:
    sys.path[:] = own  # (entries added since, by a task in the parent's block, go as in a loop)


def _numeric_part(i: int) -> tuple[Any, Any]:
    """(read, write) of part *i* of the numeric settings (``numeric_state``)."""

    def read() -> Any:
        return numeric_state()[i]

    def write(value: Any) -> None:
        _apply_numeric(tuple(value if j == i else None for j in range(4)), (i,))  # type: ignore[arg-type]

    return read, write


def _sklearn_defaults() -> Any:
    config = sys.modules.get("sklearn._config")
    defaults = getattr(config, "_global_config", None)
    return tuple(sorted(defaults.items())) if type(defaults) is dict else None


def _printed_defaults() -> Any:
    defaults = printopts._defaults  # (read once numpy's options were read here)
    return tuple(sorted(defaults.items())) if defaults is not None else None


def _by_field(default: Any, positional: bool = False) -> Any:
    """``fields`` of ``following.follow`` for a setting whose value is a tuple of fields
    (*positional*: the decimal context's) or of ``(name, value)`` pairs, None meaning
    *default()*'s: the fields the parent changed, set over the worker's own."""

    def fields(own: Any, before: Any, value: Any) -> Any:
        if before is following.FIRST or before == value:
            return value
        base = default()
        if base is None and (own is None or before is None or value is None):
            return value  # (the defaults are not known here: the parent's whole value)

        def named(v: Any) -> dict[Any, Any]:
            v = base if v is None else v
            return dict(enumerate(v)) if positional else dict(v)

        mine, then, now = named(own), named(before), named(value)
        for key in then.keys() | now.keys():
            if then.get(key, _ABSENT) != now.get(key, _ABSENT):
                if key in now:
                    mine[key] = now[key]
                else:
                    mine.pop(key, None)
        out = tuple(mine[j] for j in range(len(mine))) if positional else tuple(sorted(mine.items()))
        return None if out == base else out

    return fields


_ABSENT = object()


def _sys_path_fields(own: list[Any], before: Any, value: tuple[str, ...]) -> list[Any]:
    """The parent's ``sys.path`` first, then the worker's own entries (not the parent's
    before: one the parent removed goes, as in a loop; it piled up in every worker)."""
    known = set(value) | (set() if before is following.FIRST else set(before))
    return list(value) + [p for p in own if p not in known]


def _set_whole_sys_path(path: list[Any]) -> None:
    if sys.path != path:
        sys.path[:] = path


def _io_part(i: int) -> tuple[Any, Any]:
    """(read, write) of part *i* of the socket timeout, temp folder and csv limit (``io_defaults``)."""

    def read() -> Any:
        return io_defaults()[i]

    def write(value: Any) -> None:
        _apply_io(tuple(value if j == i else None for j in range(3)), (i,))

    return read, write


# key -> (read: this worker's own value, write: set the parent's, restore(own, parent's) or
# None, fields(own, before, parent's) or None: following.follow's)
_HOW: dict[str, tuple[Any, Any, Any, Any]] = {
    "sys_path": (lambda: list(sys.path), _set_whole_sys_path, _restore_sys_path, _sys_path_fields),
    "recursion_limit": (sys.getrecursionlimit, _set_recursion_limit, None, None),
    "stack_size": (thread_stack_size, _set_stack_size, None, None),
    "cwd": (_cwd, lambda v: _set_cwd(v), None, None),
    "int_max_str_digits": (_digits, lambda v: _set_digits(v), None, None),
    "numeric.0": (*_numeric_part(0), None, _by_field(lambda: _DECIMAL_DEFAULT, positional=True)),
    "numeric.1": (*_numeric_part(1), None, _by_field(lambda: _NUMPY_DEFAULT)),
    "numeric.2": (*_numeric_part(2), None, _by_field(_printed_defaults)),
    "numeric.3": (*_numeric_part(3), None, _by_field(_sklearn_defaults)),
    "umask": (lambda: umask(), _set_umask, None, None),
    "start_method": (
        lambda: multiprocessing.get_start_method(allow_none=True),
        _set_start_method,
        None,
        None,
    ),
    "warning_filters": (warnfilters.own, warnfilters.apply, warnfilters.restore, None),
    **{f"io_defaults.{i}": (*_io_part(i), None, None) for i in range(3)},
}
# (key, ParentState field, part of it or -1, read, write, restore, fields), in MIRRORED_SETTINGS' order
_SETTINGS = tuple(
    (key, key.partition(".")[0], int(key.partition(".")[2] or -1), *_HOW[key]) for key in MIRRORED_SETTINGS
)
# the ParentState fields _SETTINGS reads, as one tuple; and (following's table of the values
# seen, its generation, those fields of the last batch) once apply() followed them all
_FOLLOWED = operator.attrgetter(*dict.fromkeys(field for _, field, *_ in _SETTINGS))
_followed: tuple[dict[str, Any], int, tuple[Any, ...]] | None = None


def _differ(last: tuple[Any, ...], values: tuple[Any, ...]) -> bool:
    """The settings' values differ from the last batch's, or cannot be compared (a print
    option's value whose ``==`` is an array or raises: followed again, as before)."""
    try:
        return bool(last != values)
    except Exception:  # noqa: BLE001 - an uncomparable value: follow them all
        return True


def rebase() -> None:
    """After an initializer ran in this worker (``workers.prologue``): what it set is the
    worker's own (a pandas option, an environment variable, a context variable... back
    when the parent no longer sets it), and the parent's state goes over it again, so the
    batch it ran in sees what every later batch sees (it saw the initializer's, the next
    ones the parent's). Its warnings filters stay ahead of the parent's
    (``warnfilters.keep_own``)."""
    builtinnames.rebase()
    registrations.rebase()
    pandasoptions.rebase()
    rcparams.rebase()
    xarrayoptions.rebase()
    webdefaults.rebase()
    archiveformats.rebase()
    registries.rebase()
    moduleglobals.rebase()
    modulesettings.rebase()
    loggerclass.rebase()
    envvars.rebase()
    contextvalues.rebase()
    _rebase_io()
    if _applied is not None:
        apply(_applied)


def _rebase_io() -> None:
    """What an initializer set of the socket timeout, temp folder and csv limit where the
    parent has none is this worker's own from now on (put back when the parent's goes)."""
    global _own_io
    last = _applied.io_defaults if _applied is not None else None
    if _own_io is None or last is None:
        return
    now = _read_io()
    _own_io = tuple(n if want is None else own for n, own, want in zip(now, _own_io, last, strict=True))  # type: ignore[assignment]


_NO_IO_DEFAULTS = (None, None, None)
_CSV_DEFAULT_LIMIT = 131072  # csv.field_size_limit() of a process that never set it
# (socket default timeout, tempfile.tempdir, csv field size limit) of this worker before a
# parent's was first applied (its own: loky's start, or an initializer's), put back where
# the parent has none
_own_io: tuple[float | None, Any, int] | None = None


def io_defaults() -> tuple[float | None, Any, int | None]:
    """``(socket.getdefaulttimeout(), tempfile.tempdir, csv.field_size_limit())`` of this
    process, each None where unset (the csv limit: where it is csv's default).

    Modules the process has not imported are not imported here (their defaults apply).
    """
    modules = sys.modules
    sock = modules.get("socket")
    temp = modules.get("tempfile")
    csv = modules.get("csv")
    timeout = sock.getdefaulttimeout() if sock is not None else None
    tempdir = _set_by_program(getattr(temp, "tempdir", None) if temp is not None else None)
    limit = csv.field_size_limit() if csv is not None and hasattr(csv, "field_size_limit") else None
    return (
        timeout,
        _folder(tempdir),
        None if limit == _CSV_DEFAULT_LIMIT else limit,
    )


# ((tempfile.tempdir, TMPDIR, TEMP, TMP), whether tempfile chose it)
_default_tempdir: tuple[Any, Any] = (None, None)


def _first_tempdir() -> str | None:
    """The folder ``tempfile`` would choose first now (its first candidate: ``TMPDIR``,
    ``TEMP``, ``TMP``, then the platform's), or None when it cannot say."""
    temp: Any = sys.modules.get("tempfile")
    try:
        return os.path.abspath(temp._candidate_tempdir_list()[0])
    except Exception:  # noqa: BLE001 - not imported, or a tempfile of another shape
        return None


def _tempdir_chosen() -> str | None:
    """This process's ``tempfile.tempdir`` when ``tempfile`` chose it itself (it is its first
    candidate), else None (unset, or set by the program: an initializer's scratch folder)."""
    temp: Any = sys.modules.get("tempfile")
    tempdir = getattr(temp, "tempdir", None)
    return tempdir if isinstance(tempdir, str) and tempdir == _first_tempdir() else None


def _set_by_program(tempdir: Any) -> Any:
    """*tempdir* (``tempfile.tempdir``), None where ``tempfile`` chose it itself: its
    ``gettempdir()`` keeps the folder it picks there (``TemporaryDirectory()`` does so),
    which is no setting of the program's (an initializer's scratch folder gave way to the
    parent's ``/tmp`` in every worker after the parent made a temporary file)."""
    global _default_tempdir
    if not isinstance(tempdir, str):
        return _folder(tempdir)
    seen, chosen = _default_tempdir
    environ = os.environ
    seen_now = (tempdir, environ.get("TMPDIR"), environ.get("TEMP"), environ.get("TMP"))
    if seen != seen_now:  # (tempfile's first candidate comes from those variables)
        temp: Any = sys.modules.get("tempfile")
        try:  # (the first candidate, as tempfile takes it when it can write there)
            first = os.path.abspath(temp._candidate_tempdir_list()[0])
        except Exception:  # noqa: BLE001 - a tempfile of another shape: the folder as it is
            first = None
        chosen = tempdir == first
        _default_tempdir = (seen_now, chosen)
    return None if chosen else tempdir


def _folder(tempdir: Any) -> Any:
    """*tempdir* (``tempfile.tempdir``) as a worker can be given it: a ``str``, ``bytes`` or a
    ``pathlib`` path as it is (``tempfile`` takes each: a ``Path`` set by the parent was not
    sent, and the tasks' files went to the worker's ``/tmp``), another path as its
    ``os.fspath``; None for anything else."""
    if tempdir is None or isinstance(tempdir, (str, bytes)):
        return tempdir
    pathlib = sys.modules.get("pathlib")
    if pathlib is not None and isinstance(tempdir, pathlib.PurePath):
        return tempdir
    try:
        return os.fspath(tempdir)
    except TypeError:
        return None


def _read_io() -> tuple[float | None, Any, int]:
    """This worker's (socket default timeout, ``tempfile.tempdir``, csv field size limit)."""
    modules = sys.modules
    socket: Any = modules.get("socket")
    tempfile: Any = modules.get("tempfile")
    csv: Any = modules.get("csv")
    return (
        socket.getdefaulttimeout() if socket is not None else None,
        _folder(getattr(tempfile, "tempdir", None)),
        csv.field_size_limit() if csv is not None else _CSV_DEFAULT_LIMIT,
    )


def _apply_io(io: tuple[Any, ...], parts: Any = (0, 1, 2)) -> None:
    """Make this worker's socket default timeout, ``tempfile.tempdir`` and csv field size
    limit the parent's *io*; where the parent has none, this worker's own (as before a
    parent's was first applied)."""
    global _own_io
    modules = sys.modules
    socket: Any = modules.get("socket")
    tempfile: Any = modules.get("tempfile")
    csv: Any = modules.get("csv")
    if _own_io is None:
        _own_io = _read_io()
    timeout, tempdir, limit = (own if want is None else want for want, own in zip(io, _own_io, strict=False))
    # a module not imported here has its default: imported only to set another value (csv
    # is not in a worker's imports: a parent whose tempfile.tempdir was merely read, as
    # tempfile.gettempdir() sets it, made each worker import it at its first batch)
    if 0 not in parts:  # (left as they are)
        socket, timeout = None, None
    if 1 not in parts:
        tempfile, tempdir = None, None
    if 2 not in parts:
        csv, limit = None, _CSV_DEFAULT_LIMIT
    if socket is None and timeout is not None:
        socket = importlib.import_module("socket")
    if socket is not None and socket.getdefaulttimeout() != timeout:
        socket.setdefaulttimeout(timeout)
    if tempfile is None and tempdir is not None:
        tempfile = importlib.import_module("tempfile")
    if tempfile is not None and tempfile.tempdir != tempdir:
        tempfile.tempdir = tempdir
    if csv is None and limit != _CSV_DEFAULT_LIMIT:
        csv = importlib.import_module("csv")
    if csv is not None and csv.field_size_limit() != limit:
        csv.field_size_limit(limit)


def set_time_zone(tz: str | None) -> None:
    """Make *tz* (None: unset) this process's ``TZ``, and the C library's time zone."""
    if tz is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = tz
    tzset = getattr(sys.modules.get("time"), "tzset", None)
    if tzset is not None:
        tzset()


def joblib_backends() -> tuple[str, ...]:
    """The names the parent registered picklepool's joblib backend under (``ParentState``)."""
    return _applied.joblib_backends if _applied is not None else ()


def start_method(method: str | None) -> None:
    """Make *method* (None: the platform's) ``multiprocessing``'s default start method here."""
    if multiprocessing.get_start_method(allow_none=True) != method:
        try:
            multiprocessing.set_start_method(method, force=True)
        except ValueError:  # a method this worker's Python does not have
            pass


_int_max_str_digits = getattr(sys, "get_int_max_str_digits", None)  # Python >= 3.11


def umask() -> int:
    """This process's file mode creation mask, or -1 where it cannot be read.

    Read from ``/proc/self/status`` (Linux 4.7+), never by setting it: ``os.umask``
    reads it only by setting it, to a guess (the value read last) then back. A file
    another thread created in between got the guess's mode (0o664 where the program had
    just set 0o077), a process forked meanwhile kept the guess, and a mask set in between
    (another thread's, a signal handler's) was undone by the setting back. The read costs
    10 µs of each call (the kernel formats the whole file), the price of none of that.
    The file stays open (``os.pread`` reads it anew from its start: every call asks,
    and opening it costs as much as reading it); a forked child opens its own, and so
    does a process whose descriptor was closed under it (``os.closerange``, as daemons
    do: the number may then be another file's, which is left alone).
    """
    global _status
    for _attempt in range(2):
        try:
            pid = forklocks.getpid()
            mine, fd = _status
            if mine != pid:
                with _status_lock:
                    mine, fd = _status
                    if mine != pid:
                        # raw: a file object costs twice as much
                        fd = os.open("/proc/self/status", os.O_RDONLY)
                        _status = (pid, fd)
            # (its second line, after the name: a 64 KB buffer cost 1.4 us more a read)
            data = os.pread(fd, 4096, 0)
            if b"\nUmask:" not in data and len(data) == 4096:
                data = os.pread(fd, 1 << 16, 0)
            at = data.index(b"\nUmask:") + 7
            return int(data[at : data.index(b"\n", at)].strip(), 8)
        except (OSError, ValueError):
            with _status_lock:
                if _status[1] == fd:
                    _status = (-1, -1)  # opened anew next time; the number is not closed here
    return -1


_status: tuple[int, int] = (-1, -1)  # (pid, descriptor of its /proc/self/status)
_status_lock = threading.Lock()


def _forget_status_in_child() -> None:
    """In a forked child: the descriptor reads the parent's status; close it, open anew."""
    global _status, _status_lock
    fd = _status[1]
    _status, _status_lock = (-1, -1), threading.Lock()
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_status_in_child)


# decimal's own defaults (decimal.DefaultContext may have been changed by the user)
_DECIMAL_DEFAULT: tuple[Any, ...] = (
    28,
    "ROUND_HALF_EVEN",
    -999999,
    999999,
    1,
    0,
    ("DivisionByZero", "InvalidOperation", "Overflow"),
)
_NUMPY_DEFAULT: tuple[tuple[str, str], ...] = (
    ("divide", "warn"),
    ("invalid", "warn"),
    ("over", "warn"),
    ("under", "ignore"),
)


def _decimal_now(decimal: Any) -> tuple[Any, ...]:
    c = decimal.getcontext()
    traps = tuple(sorted(t.__name__ for t, on in c.traps.items() if on))
    return (c.prec, c.rounding, c.Emin, c.Emax, c.capitals, c.clamp, traps)


# (numeric_state(), the warnings filters pickled, the context's variables pickled)
CallerState = tuple[tuple[Any, Any, Any, Any], bytes | None, bytes | None]


def caller_state() -> CallerState:
    """``(numeric_state(), the warnings filters pickled, the context variables pickled)``
    as they are now: what the calls made in this thread (or asyncio task) run with, also
    when their batches are sent later or from another thread (an ``Executor``'s, after
    the ``catch_warnings`` block around ``submit`` ended; ``workers.contextvalues``)."""
    return numeric_state(), warnfilters.pickled(), contextvalues.pickled()


NO_NUMERIC = (None, None, None, None)  # numeric_state() where every setting is the default


def numeric_state() -> tuple[Any, Any, Any, Any]:
    """``(decimal context, numpy error handling, numpy print options, scikit-learn's
    settings)`` of the calling thread, each None when default (``workers.printopts``,
    ``workers.sklearnconfig``).

    Modules the process has not imported are not imported here (their settings
    are the defaults).
    """
    decimal = sys.modules.get("decimal")
    dec = _decimal_read(decimal) if decimal is not None else None
    numpy = sys.modules.get("numpy")
    err = printed = None
    if numpy is not None and hasattr(numpy, "geterr"):
        err = _numpy_read(numpy)
        printed = printopts.sendable(printopts.read(numpy))
    if err is not None and any(mode in _CALLBACK_MODES for _kind, mode in err):
        err = tuple((k, _NUMPY_DEFAULT_OF[k] if mode in _CALLBACK_MODES else mode) for k, mode in err)
    return (
        None if dec == _DECIMAL_DEFAULT else dec,
        None if err == _NUMPY_DEFAULT else err,
        printed,
        sklearnconfig.read(),
    )


# np.seterr's modes that hand the error to the process's np.seterrcall object: the
# parent's callback is not in the worker (numpy then raised NameError "python callback
# specified ... but no function found" at every such error); numpy's default applies there.
_CALLBACK_MODES = frozenset({"call", "log"})
_NUMPY_DEFAULT_OF = dict(_NUMPY_DEFAULT)


# the context's __reduce__ arguments (traps as a tuple) -> _decimal_now's form of it
_decimal_seen: dict[Any, tuple[Any, ...]] = {}


def _decimal_read(decimal: Any) -> tuple[Any, ...]:
    """:func:`_decimal_now`, from the context's ``__reduce__`` (one C call) once a setting was seen.

    Every call of every ``Parallel`` reads it in the parent, and every batch in a
    worker: reading the traps item by item costs four times as much.
    """
    try:
        # (prec, rounding, Emin, Emax, capitals, clamp, flags, traps)
        args = decimal.getcontext().__reduce__()[1]
        key = (args[:6], tuple(args[7]))
        hit = _decimal_seen.get(key)
    except Exception:  # noqa: BLE001 - a decimal module of another shape: read it field by field
        return _decimal_now(decimal)
    if hit is None:
        if len(_decimal_seen) >= 32:
            _decimal_seen.clear()
        hit = _decimal_seen[key] = _decimal_now(decimal)
    return hit


# (the object numpy's error-handling variable held, numpy.geterr() then, sorted)
_numpy_seen: tuple[Any, tuple[Any, ...]] | None = None


def _numpy_read(numpy: Any) -> tuple[Any, ...]:
    """``sorted(numpy.geterr().items())``, kept while numpy's variable holds the same object
    (:func:`_numpy_errors_var`; every change puts a new one there)."""
    global _numpy_seen
    var = _numpy_errors_var(numpy)
    try:
        held = var.get() if var is not None else None  # its default too: numpy's own handling
    except LookupError:
        held = None
    seen = _numpy_seen
    if held is not None and seen is not None and seen[0] is held:
        return seen[1]
    err = tuple(sorted(numpy.geterr().items()))
    if held is not None:
        _numpy_seen = (held, err)
    return err


def _numpy_errors_var(numpy: Any) -> Any:
    """numpy's context variable of its error handling (numpy >= 2), or None.

    ``np.seterr`` and ``np.errstate`` set a new, immutable object in it: while the
    variable holds the object checked last, the handling is the one checked then.
    """
    config = sys.modules.get("numpy._core._ufunc_config")
    var = getattr(config, "_extobj_contextvar", None)
    return var if isinstance(var, contextvars.ContextVar) else None


def _apply_numeric(numeric: tuple[Any, Any, Any, Any], parts: Any = (0, 1, 2, 3)) -> None:
    """Make this thread's decimal context, numpy error handling and print options, and
    scikit-learn's settings, those of *numeric*.

    Compared with the thread itself (``apply`` calls it when the parent's changed). A
    module neither side uses is not imported.
    """
    dec, err, printed, learn = numeric
    modules = sys.modules
    if 3 in parts and (learn is not None or "sklearn._config" in modules):
        sklearnconfig.apply(learn)
    if 0 in parts and (dec is not None or "decimal" in modules):
        decimal = modules.get("decimal") or importlib.import_module("decimal")
        want = _DECIMAL_DEFAULT if dec is None else dec
        if _decimal_read(decimal) != want:
            prec, rounding, emin, emax, capitals, clamp, traps = want
            decimal.setcontext(
                decimal.Context(
                    prec,
                    rounding,
                    emin,
                    emax,
                    capitals,
                    clamp,
                    flags=[],
                    traps=[getattr(decimal, name) for name in traps],
                )
            )
    if (1 in parts or 2 in parts) and (err is not None or printed is not None or "numpy" in modules):
        try:
            numpy = modules.get("numpy") or importlib.import_module("numpy")
        except Exception:  # noqa: BLE001 - not importable here: nothing of it to set
            return
        if not hasattr(numpy, "geterr"):  # numpy half-imported by a failed import
            return
        want_err = _NUMPY_DEFAULT if err is None else err
        if 1 in parts and _numpy_read(numpy) != want_err:
            numpy.seterr(**dict(want_err))
        if 2 in parts:
            printopts.apply(numpy, printed)


@contextlib.contextmanager
def numeric_applied(numeric: tuple[Any, Any, Any, Any]) -> Iterator[None]:
    """This thread's numeric settings as *numeric* inside, as before after.

    For threads that run other calls' tasks too (a dask worker's).
    """
    decimal, numpy = sys.modules.get("decimal"), sys.modules.get("numpy")
    context = decimal.getcontext().copy() if decimal is not None else None
    errors = numpy.geterr() if numpy is not None and hasattr(numpy, "geterr") else None
    printed = printopts.read(numpy) if errors is not None else None
    learn = sklearnconfig.read()
    _apply_numeric(numeric)
    try:
        yield
    finally:
        if learn is not None or "sklearn._config" in sys.modules:
            sklearnconfig.apply(learn)
        if context is not None:
            decimal.setcontext(context)  # type: ignore[union-attr]
        if errors is not None:
            numpy.seterr(**errors)  # type: ignore[union-attr]
            printopts.apply(numpy, printed)


def nesting() -> tuple[int, int | None]:
    """``(depth, cores)`` this process runs calls with: ``(0, None)`` in a parent.

    *cores* is how many cores a ``Parallel(n_jobs=-1)`` call made here may use.
    On a thread of a threading-backend pool, they are that thread's (see
    :func:`enter_thread`). In a loky worker that is not picklepool's (a joblib
    worker running picklepool code), loky's own depth, with all cores.
    """
    threaded = _in_thread.get()
    if threaded is not None:
        return threaded
    if _applied is None:
        return lokycompat.any_depth(), None
    return _applied.depth, _applied.cores


def enter_thread(depth: int, cores: int) -> None:
    """In the context a threading pool runs its tasks in: calls made there are nested."""
    _in_thread.set((depth, cores))


def in_dask_task() -> bool:
    """True on a thread running a dask task (a call made there is made inside a task)."""
    worker = sys.modules.get("distributed.worker")  # (read at every call: no exception raised)
    return worker is not None and getattr(getattr(worker, "thread_state", None), "key", None) is not None


def below_threads() -> bool:
    """True on a thread of a threading-backend pool (a call made there is nested)."""
    return _in_thread.get() is not None
