"""What crosses the process boundary, written down once.

Parent to worker, one :class:`Batch` per submission: the call's pickler (itself
pickled, a small header), the call's functions (each pickled once per call, see
``executor.functions``), the tasks pickled by that pickler, and what the worker
must mirror or enforce (:class:`ParentState`, :class:`WorkerLimits`, the timeout).
The backend moves the ``Batch`` as it is; only ``pickler/`` turns objects into
the bytes inside it.

Worker to parent, one reply per batch, made by the call's pickler:

    Results(values, seconds)           every task ran (pickled as a plain
                                       (values, seconds) tuple: see pack_results)
    TaskFailed(task, error, tb)        task number *task* raised; the rest were skipped
                                       (an isolated batch runs them all: a Raised(error, tb)
                                       stands in Results.values for each task that raised)
    Cancelled(call_id)                 the call was cancelled meanwhile

and, when the reply must describe a failure *of the pickler itself* (the batch
could not be unpickled, a result could not be pickled, an exception could not
make the trip), a :class:`Failure` in a fixed framing that does not depend on
any pickler: :data:`FAILURE_MAGIC` followed by JSON. The parent checks for the
magic before it hands a reply to the call's pickler, so a registered pickler
whose ``loads`` is not ``pickle.loads`` still gets every failure reported.

This module imports nothing of picklepool: both sides import it.
"""

from __future__ import annotations

import builtins
import copyreg
import os
import sys
import threading
from typing import Any, NamedTuple


class WorkerLimits(NamedTuple):
    """What a worker enforces around each batch."""

    threads: int | None  # threadpoolctl limit; None: leave thread pools alone
    max_memory: int | None  # RSS in bytes past which the worker is recycled; None: off


# the variables a worker's environment sets its libraries' thread pools with, set for each
# worker by its pool (executor.limits): the worker's own, not the parent's (workers.envvars)
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


class ParentState(NamedTuple):
    """The parent's process state a task's outcome depends on, mirrored by workers.

    Applied by ``workers.mirror`` before each batch runs: each part is compared with
    the worker process as it is then (a task may have changed it), and set where it
    differs.
    """

    sys_path: tuple[str, ...]  # where imports are found (entries the parent added later)
    recursion_limit: int  # deep results must pickle in the worker as in the parent
    cwd: str  # relative paths open the same files
    depth: int  # nesting depth of the call: 0 in the parent, 1 in its workers' calls
    cores: int  # cores an inner call may use for n_jobs=-1 (the worker's share)
    int_max_str_digits: int  # str(int) of big numbers converts as in the parent (0: no limit, -1: unknown)
    # the calling thread's decimal context, numpy floating-point error handling, numpy
    # print options and scikit-learn's settings, each None when it is the default:
    # computations round and raise, arrays print, and estimators fit and transform, as in
    # the parent
    numeric: tuple[Any, Any, Any, Any] = (None, None, None, None)
    # the file mode creation mask: files a task creates get the parent's permissions
    # (-1: unknown, not mirrored)
    umask: int = -1
    # multiprocessing's default start method (None: the platform's): a pool or process a
    # task starts works as in the parent (loky's workers start with "loky", which a
    # spawned child of the standard library cannot find: it failed, and a Pool respawned it for ever)
    start_method: str | None = None
    # the warnings filters, pickled (workers.warnfilters; None: the worker keeps its own):
    # a filter turning a warning into an error decides whether a task raises
    warning_filters: bytes | None = None
    # (stdout, stderr): the parent's sys.stdout / sys.stderr is not the process's own (a
    # notebook's, contextlib.redirect_stdout): what tasks print there comes back with the
    # reply (workers.output) and is written to it, not to the worker's file descriptor
    capture: tuple[bool, bool] = (False, False)
    # (module name, reloads seen) of the parent's own modules it reloaded (executor.reloaded):
    # a worker reloads those it imported before, so that code reaching them runs the new code
    reloads: tuple[tuple[str, int], ...] = ()
    # the parent's warnings are recorded or redirected (a catch_warnings(record=True) block,
    # logging.captureWarnings): the tasks' warnings come back with the reply (workers.warnback)
    warnings_back: bool = False
    # (socket.getdefaulttimeout(), tempfile.tempdir, csv.field_size_limit()), each None when
    # the parent has none: a task's connections time out, its temporary files go, and its
    # csv files parse as in the parent
    io_defaults: tuple[float | None, str | None, int | None] = (None, None, None)
    # the names under which the parent registered picklepool's joblib backend (joblib's
    # register_parallel_backend, picklepool.register_joblib_backend): a task's own
    # joblib.Parallel(backend="picklepool") works in a worker as in the parent (workers.joblibnest)
    joblib_backends: tuple[str, ...] = ()
    # the copyreg reducers the parent's script registered for types of other modules, pickled
    # (workers.registrations; None: none): a task's results, and its own pickle.dumps or
    # copy.deepcopy, use them as the loop does
    reducers: bytes | None = None
    # sys.argv (its str entries): a task that reads the command line (argparse's parse_args(),
    # sys.argv[1]) sees the parent's as it is now, as a worker that starts now does, not the
    # one a warm worker started with
    argv: tuple[str, ...] = ()
    # the TZ variable (None: unset): time.localtime(), datetime.fromtimestamp() and
    # time.tzname give the parent's local time, as in a worker that starts now
    tz: str | None = None
    # the parent's loggers' levels, flags and handlers' levels, pickled (workers.logback;
    # None: logging not loaded): a task's log.isEnabledFor() answers as in the parent, and
    # the records the parent's handlers would show come back with the reply and go to them
    logging_levels: bytes | None = None
    # the level logging.disable() set in the parent (0: none): a task's records at or below
    # it are dropped, and its log.isEnabledFor() answers, as in the parent (workers.logback)
    logging_disable: int = 0
    # the names the parent's program added to builtins (gettext.install's _), pickled
    # (workers.builtinnames; None: none): a task's _("Hello") works in a worker as in the parent
    builtins: bytes | None = None
    # the pandas options the parent set (pd.set_option), pickled (workers.pandasoptions;
    # None: none, or pandas not imported): a task's frames print, and its assignments copy,
    # as in the parent
    pandas_options: bytes | None = None
    # the environment variables set or removed since the parent's first call, pickled
    # (workers.envvars; None: none): a task's os.environ.get(), and the programs it runs, see
    # the parent's values as they are now
    environ: bytes | None = None
    # the parent's locale (setlocale(LC_ALL)'s answer) once it differs, or differed, from the
    # one of its first call (workers.locales; None: never): tasks format numbers and dates,
    # and sort strings, as in the parent
    locale: str | None = None
    # the calling context's variables and values (contextvars), pickled (workers.contextvalues;
    # None: none set): a task's request_id.get() reads the caller's value, as in the parent
    context: bytes | None = None
    # the picklers the parent registered (register_pickler), pickled (workers.picklernames;
    # None: none): a task's own Parallel(pickler="mine") finds it, as in the parent
    picklers: bytes | None = None
    # (__main__.__file__, __main__.__spec__.name) of the parent's script, each None where it
    # has none (workers.mainnames): a process a task spawns runs the script as the parent's do
    main: tuple[str | None, str | None] = (None, None)
    # the matplotlib settings the parent changed (rcParams), pickled (workers.rcparams; None:
    # none, or matplotlib not imported): a task's figures are drawn as in the parent
    rc_params: bytes | None = None
    # the ssl default context factory and urllib opener the parent's program installed
    # (ssl._create_default_https_context = ..., urllib.request.install_opener), pickled
    # (workers.webdefaults; None: none): a task's urlopen connects as in the parent
    web_defaults: bytes | None = None
    # the archive formats the parent's program registered in shutil (register_unpack_format,
    # register_archive_format), pickled (workers.archiveformats; None: none): a task's
    # shutil.unpack_archive("data.7z") extracts as in the parent
    archive_formats: bytes | None = None
    # the import finders the parent's program put in sys.meta_path (pyximport.install()),
    # with their places, pickled (workers.finders; None: the interpreter's only): a task's
    # module that only they find imports in a worker as in the parent
    finders: bytes | None = None
    # the xarray options the parent set (xr.set_options), pickled (workers.xarrayoptions;
    # None: none, or xarray not imported): a task's results keep attributes, and align, as
    # in the parent
    xarray_options: bytes | None = None
    # what the parent's program registered in libraries' registries (a pandas or xarray
    # accessor, a pandas dtype, a matplotlib colormap, a sqlite3 adapter, a class of its own
    # as a virtual subclass of a standard ABC), pickled (workers.registries; None: nothing):
    # a task's df.geo, cmap="mine" or isinstance(x, Mapping) works as in the parent
    registries: bytes | None = None
    # libraries' settings that are module attributes, where the parent changed them
    # (PIL.Image.MAX_IMAGE_PIXELS = None, mpmath.mp.dps = 50), pickled
    # (workers.modulesettings; None: the defaults): a task opens, parses, computes as in the parent
    module_settings: bytes | None = None
    # the logger class and level names the parent's program set (logging.setLoggerClass,
    # addLevelName), pickled (workers.loggerclass; None: logging's own): a task's
    # logging.getLogger("app").trace(...) works as in the parent
    logger_class: bytes | None = None
    # the globals the parent's program changed in its own modules (config.DEBUG = True,
    # settings.SCALE = 3), pickled (workers.moduleglobals; None: none): a task reading them
    # computes as in the parent
    module_globals: bytes | None = None
    # the stack size of the threads started from now on (threading.stack_size(): 0, the
    # platform's): a task's thread recursing deeply, with sys.setrecursionlimit raised,
    # overflowed its stack and killed the worker where the loop's thread had the room
    stack_size: int = 0


# ParentState's process settings whose changes a worker follows (workers.following): what the
# worker's own code set stays while the parent leaves them be, and comes back when a change of
# the parent's ends. "field.i": part i of a tuple field, each followed on its own (a numpy
# change leaves a decimal precision a task set alone)
MIRRORED_SETTINGS = (
    "sys_path",
    "recursion_limit",
    "stack_size",
    "cwd",
    "int_max_str_digits",
    "numeric.0",  # decimal context
    "numeric.1",  # numpy error handling
    "numeric.2",  # numpy print options
    "numeric.3",  # scikit-learn's config
    "umask",
    "start_method",
    "warning_filters",
    "io_defaults.0",  # socket timeout
    "io_defaults.1",  # tempfile.tempdir
    "io_defaults.2",  # csv field size limit
)


def import_path() -> tuple[str, ...]:
    """``sys.path`` as imports read it, for a worker (``ParentState.sys_path``, loky's and the
    forkserver's start): its ``str`` entries as plain strings. ``importlib``'s path finder
    skips the others (a ``pathlib.Path``, bytes, any object); sent as they were, one that
    does not pickle (a lock) failed every call, one of a ``__main__`` class every worker's
    start, and a ``Path`` the forkserver's."""
    path = tuple(sys.path)
    if _STR.issuperset(map(type, path)):
        return path
    return tuple(str(p) for p in path if isinstance(p, str))


_STR = frozenset({str})


def thread_stack_size() -> int:
    """The stack size of the threads this process starts from now on (0: the platform's),
    as ``threading.stack_size()`` answers, without its side effect: called without a size, it
    sets the platform's (0) as it answers, so it is set back at once to what it answered."""
    size = threading.stack_size()
    if size:
        threading.stack_size(size)
    return size


def time_zone() -> str | None:
    """The ``TZ`` variable of this process (``ParentState.tz``), None when unset: read from
    ``os.environ``'s own dictionary where it has one (a few look-ups: ``os.environ.get``
    encodes the name and decodes the value at each call)."""
    data = getattr(os.environ, "_data", None)
    if type(data) is not dict or os.name != "posix":
        return os.environ.get("TZ")
    raw = data.get(b"TZ")
    return None if raw is None else os.fsdecode(raw)


def command_line() -> tuple[str, ...]:
    """``sys.argv`` for a worker (``ParentState.argv``): its ``str`` entries (what the C
    pickler of a batch's frame can always carry); () where it is not a sequence (an
    embedding program's ``sys.argv = None``, or none at all: every call failed)."""
    try:
        argv = tuple(sys.argv)
    except (AttributeError, TypeError):
        return ()
    if _STR.issuperset(map(type, argv)):
        return argv
    return tuple(a for a in argv if isinstance(a, str))


class NumericState(NamedTuple):
    """A cluster's batches: the calling thread's numeric settings only.

    ``(decimal context, numpy error handling, numpy print options, scikit-learn's
    settings)`` as in
    ``ParentState.numeric``. A dask
    worker's threads run other calls' tasks too: the settings are applied around the
    batch, in its thread, and put back after it (``workers.mirror.numeric_applied``);
    the process-wide state (``sys.path``, working folder, ...) is the cluster's own.
    *context*: the calling context's variables, pickled (``workers.contextvalues``;
    None: none), set in a copy of the worker thread's context the batch runs in.
    """

    numeric: tuple[Any, Any, Any, Any]
    context: bytes | None = None


# content key (None: rebuild for every batch), bytes (inline) or a blob reference, label,
# and the call it is sent for (a worker keeps a function across calls only while the
# state it carries is unchanged: see workers.runner)
FuncSpec = tuple["str | None", Any, str, str]


class Batch(NamedTuple):
    """One submission: some consecutive tasks of one call."""

    call_id: int
    session: str | None  # the parent's session folder (cancel flags, status), or None
    pickler: bytes  # the call's pickler, pickled with cloudpickle (cached by the worker)
    functions: tuple[FuncSpec, ...]
    tasks: Any  # (fidx, args, kwargs) made by the pickler: bytes, or pickler.buffers.Frames
    first: int  # index of the batch's first task in the call
    timeout: float | None
    limits: WorkerLimits | None
    parent: ParentState | NumericState | None
    attachment: Any = None  # data the batch's blob references name (dask), else None
    # Every task runs and its exception becomes a Raised value (picklepool.Executor); the
    # batch ignores the cancel flag. False (Parallel): stop at the first exception.
    isolate: bool = False
    # Each entry of the tasks' args column is the task's one positional argument itself,
    # not a tuple of them (Executor.map over one iterable, delayed(f)(x) calls: functions.one_argument).
    single_arg: bool = False
    # Independent calls (isolate only): the tasks a long one keeps waiting may be given
    # back to the parent, which sends them again (workers.handback).
    splittable: bool = False
    # (sender, count, uids): the parent, how many SharedStates it sent to workers it has
    # garbage-collected since it started, and the uids of the last few (state.gone); the
    # worker drops its copies of them (workers.snapshots.forget). None: none yet.
    states_gone: tuple[str, int, tuple[str, ...]] | None = None


def pack_batch(batch: Batch) -> tuple[Any, ...]:
    """*batch* as the plain tuples that travel through loky and the lanes
    (``executor.backends``): the C pickler writes and reads them without looking up and
    calling the namedtuple classes (``Batch``, ``WorkerLimits``, ``ParentState``), which
    took two thirds of the envelope's pickling and a third of its unpickling."""
    limits, parent = batch.limits, batch.parent
    return (
        *batch[:7],
        None if limits is None else tuple(limits),
        tuple(parent) if type(parent) is ParentState else parent,
        *batch[9:],
    )


def unpack_batch(packed: tuple[Any, ...]) -> Batch:
    """The ``Batch`` :func:`pack_batch` made *packed* of."""
    limits, parent = packed[7], packed[8]
    return Batch._make(
        (
            *packed[:7],
            None if limits is None else WorkerLimits._make(limits),
            ParentState._make(parent) if type(parent) is tuple else parent,
            *packed[9:],
        )
    )


class Results(NamedTuple):
    values: list[Any]
    seconds: float


def pack_results(results: Results) -> tuple[list[Any], float]:
    """*results* as the plain tuple that travels: the C pickler writes it (and a list of
    plain values) without calling back into Python, about half the cost of a small reply."""
    return (results.values, results.seconds)


def unpack_reply(reply: Any) -> Any:
    """A reply as the pickler rebuilt it, with :func:`pack_results`'s tuple made ``Results``."""
    return Results(*reply) if type(reply) is tuple else reply


class FreedAfterSending:
    """A reply that keeps the batch's arguments and outcome alive until it has been sent.

    Freeing a task's arguments can take as long as building them (a 1M-item list:
    ~10 ms), and the parent waits for the reply meanwhile. ``workers.runner`` returns
    this instead of the bare reply; loky (like ``multiprocessing.Pool``) drops the
    result it sent only after sending it, and with it *keep*; ``then(keep)``, if given,
    runs just before (``workers.warmheap``). It pickles as the reply itself
    (:func:`as_sent`): the parent never sees this class.
    """

    __slots__ = ("reply", "keep", "then")

    def __init__(self, reply: Any, keep: Any, then: Any = None) -> None:
        self.reply, self.keep, self.then = reply, keep, then

    def __reduce__(self) -> tuple[Any, ...]:
        return as_sent, (self.reply,)

    def __del__(self) -> None:
        then = self.then
        if then is not None:
            try:
                then(self.keep)
            except Exception:  # noqa: BLE001, S110 - freeing must go on (and a __del__ cannot raise)
                pass


def as_sent(reply: Any) -> Any:
    """What :class:`FreedAfterSending` becomes on the other side: the reply, unchanged."""
    return reply


class Captured(NamedTuple):
    """A reply, and what the batch's tasks printed (``ParentState.capture``)."""

    reply: Any
    stdout: str
    stderr: str
    warned: bytes | None = None  # the warnings the tasks gave, for the parent to show (workers.warnback)
    logged: bytes | None = None  # the tasks' log records, for the parent's loggers (workers.logback)
    # the order the tasks gave those in: [kind, count] runs (workers.journal.ordered), or None
    order: list[list[int]] | None = None


class TaskFailed(NamedTuple):
    task: int  # the index of the task that raised
    error: BaseException
    traceback: str


class Raised(NamedTuple):
    """In ``Results.values`` of an isolated batch: the task raised *error* instead."""

    error: BaseException
    traceback: str


class NotSent(Exception):
    """In a ``Raised``: the task's exception, whose class cannot make the trip, as the parts
    a ``Failure`` of kind "error" holds (*what*, *message*, *mro*), for the parent to make
    the same stand-in of it as for a call's (``executor.replies.stand_in``)."""

    def __init__(self, what: str, message: str, mro: tuple[str, ...]) -> None:
        super().__init__(what, message, mro)


class Cancelled(NamedTuple):
    call_id: int


FAILURE_MAGIC = b"\x00\x00picklepool-failure\x00"


class Failure(NamedTuple):
    """A failure reported without the call's pickler.

    kind: "load" (the worker could not rebuild *what*: "pickler", "function",
    "arguments"), "dump" (result *task* could not be pickled), "bad-item" (task
    *task* is not a delayed call), "error" (task *task* raised an exception that
    could not be sent: *what* is its class, *mro* the importable bases).
    """

    kind: str
    task: int  # the task it is about (the batch's first, for a whole batch)
    what: str
    message: str
    traceback: str = ""
    mro: tuple[str, ...] = ()
    label: str = ""  # for "load" of functions: their names

    def encode(self) -> bytes:
        import json  # only for failures: a worker's start does not pay for it

        return FAILURE_MAGIC + json.dumps(self._asdict()).encode("utf-8")


def decode_failure(data: Any) -> Failure | None:
    """The :class:`Failure` framed in *data*, or None when *data* is a pickler's reply."""
    if type(data) is bytes and data[: len(FAILURE_MAGIC)] == FAILURE_MAGIC:
        import json

        fields = json.loads(data[len(FAILURE_MAGIC) :].decode("utf-8"))
        fields["mro"] = tuple(fields.get("mro", ()))
        return Failure(**fields)
    return None


def native_parts(exc: BaseException) -> tuple[Any, Any] | None:
    """What the built-in exception class under *exc*'s class holds outside ``args`` and
    ``__dict__``, for :func:`rebuild_exception`: ``(arguments of its __init__, or None for
    args; {attribute: value} it pickles besides __dict__, or None)``, or None for neither.

    An ``OSError``'s filename (its ``errno``, ``strerror`` come from ``args``), an
    ``ImportError``'s ``name`` and ``path``: that class's own ``__reduce__`` says; an
    ``AttributeError``'s or ``NameError``'s ``name``, which it does not.
    """
    native = _native(type(exc))
    try:
        reduced = native.__reduce__(exc)  # type: ignore[call-arg]
    except Exception:  # noqa: BLE001 - what it cannot say is left out
        return None
    init_args = reduced[1] if len(reduced) > 1 and type(reduced[1]) is tuple else exc.args
    own = vars(exc)
    extra = None
    if len(reduced) > 2 and type(reduced[2]) is dict:
        extra = {k: v for k, v in reduced[2].items() if k not in own} or None
    slots = _slot_values(exc)
    if slots:
        extra = {**(extra or {}), **slots}
    if isinstance(exc, OSError):
        fields = _os_fields(exc, init_args)
        if fields:
            extra = {**(extra or {}), **fields}
    name = getattr(exc, "name", None) if isinstance(exc, (AttributeError, NameError)) else None
    if type(name) is str:  # (the interpreter sets it, pickling drops it; not its obj, which may not pickle)
        extra = {**(extra or {}), "name": name}
    if init_args is exc.args and extra is None:
        return None
    return (None if init_args is exc.args else init_args), extra


_OS_FIELDS = ("errno", "strerror", "filename", "filename2")


def _os_fields(exc: OSError, init_args: Any) -> dict[str, Any]:
    """An ``OSError``'s fields that its ``__init__`` arguments do not give back: set apart
    from ``args`` (``urllib.error.HTTPError`` sets ``filename`` to its URL, with ``args``
    empty), which ``OSError``'s own pickling drops."""
    try:
        made = OSError(*init_args)
    except Exception:  # noqa: BLE001 - arguments OSError does not take: every field set
        made = None
    found = {}
    for field in _OS_FIELDS:
        value = getattr(exc, field, None)
        if value is not None and (made is None or getattr(made, field, None) != value):
            found[field] = value
    return found


def os_fields_lost(exc: OSError) -> bool:
    """Whether pickling *exc* as ``OSError`` does (its ``args``) loses a field set apart."""
    try:
        reduced = OSError.__reduce__(exc)
    except Exception:  # noqa: BLE001
        return False
    return bool(_os_fields(exc, reduced[1] if len(reduced) > 1 and type(reduced[1]) is tuple else exc.args))


def _slot_values(exc: BaseException) -> dict[str, Any]:
    """The values in the ``__slots__`` *exc*'s classes declare (set ones only): no pickling of
    an exception's own carries them (``BaseException.__reduce__`` sends its ``__dict__``)."""
    found: dict[str, Any] = {}
    if type(exc).__dictoffset__ and not any(
        set(vars(k).get("__slots__", ())) - {"__dict__", "__weakref__"} for k in type(exc).__mro__
    ):
        return found  # (the usual case: no slots, one look per class)
    for name in copyreg._slotnames(type(exc)):  # type: ignore[attr-defined]
        try:
            found[name] = object.__getattribute__(exc, name)
        except AttributeError:  # not set
            pass
    return found


def _native(cls: type) -> type:
    """The first built-in exception class of *cls*'s MRO (``OSError``, ``BaseException``...)."""
    return next((k for k in cls.__mro__ if k.__module__ == "builtins"), BaseException)


def rebuild_exception(
    cls: type[BaseException],
    args: tuple[Any, ...],
    state: dict[str, Any],
    notes: list[str] | None,
    cause: BaseException | None = None,
    native: tuple[Any, Any] | None = None,
    context: BaseException | None = None,
) -> BaseException:
    """An exception of *cls* made without calling its ``__init__``.

    The worker sends this when the exception's own pickling cannot make the trip
    (an ``__init__`` that takes other arguments than ``args``): the class, its
    ``args``, ``__dict__`` and notes are enough for ``except cls`` and ``str()``.
    The built-in class under it is initialised as the exception's own ``__init__``
    did, through ``super()`` (:func:`native_parts`): an ``OSError``'s ``errno``,
    ``strerror``, ``filename`` and message, a ``UnicodeDecodeError``'s fields, a
    ``StopIteration``'s ``value``, an ``ImportError``'s ``name`` and ``path``.
    """
    try:
        exc = cls.__new__(cls, *args)
    except Exception:  # noqa: BLE001 - a __new__ of its own, with other arguments
        # the built-in __new__ below it (an exception group's needs its sub-exceptions)
        group = getattr(builtins, "BaseExceptionGroup", None)
        base = group if group is not None and issubclass(cls, group) else BaseException
        exc = base.__new__(cls, *args)
    init_args, extra = native if native is not None else (None, None)
    try:
        _native(cls).__init__(exc, *(args if init_args is None else init_args))  # type: ignore[misc]
    except Exception:  # noqa: BLE001 - then its args and __dict__ only
        pass
    # object.__setattr__: a frozen dataclass's refuses every attribute (FrozenInstanceError)
    put = object.__setattr__
    put(exc, "args", args)
    if isinstance(exc, SystemExit):  # its code is set by __init__, from args
        put(exc, "code", None if not args else args[0] if len(args) == 1 else args)
    for name, value in (extra or {}).items():
        try:
            put(exc, name, value)
        except (AttributeError, TypeError):
            pass
    if state:
        exc.__dict__.update(state)
    if notes:
        put(exc, "__notes__", note_list(notes))
    if cause is not None:  # (setting None would set __suppress_context__: not as it was)
        put(exc, "__cause__", cause)
    if context is not None:  # raised while handling *context*, with no ``from``
        put(exc, "__context__", context)
    return exc


def note_list(notes: Any) -> list[Any]:
    """*notes* (an exception's ``__notes__``, set by hand to anything) as the list Python expects.

    A string is one note, not its characters; a tuple or other iterable its items;
    anything else a note of its own.
    """
    if notes is None:
        return []
    if isinstance(notes, list):
        return notes
    if isinstance(notes, (str, bytes)):
        return [notes]
    try:
        return list(notes)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - not iterable (or its iteration raises, SystemExit too)
        return [notes]


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also when the task left ``__notes__`` a tuple or a string.

    ``BaseException.add_note`` refuses those (``TypeError: Cannot add note: __notes__
    is not a list``), which replaced the task's own exception with that one (and
    stopped an ``Executor``'s manager thread); so does a frozen dataclass's
    ``__setattr__`` (``FrozenInstanceError``), bypassed here. An exception whose
    attributes cannot be read or set at all is left as it is; one whose class has a
    ``__getattr__`` of its own gets the note without it being asked (a ``SystemExit`` it
    raised for ``__notes__`` replaced the task's exception). A note *exc* already has is
    not added again: an object raised anew (a module's exception, ``Future.result()``'s)
    by tasks run in the caller would gather one copy per call.
    """
    try:
        if note in note_list(exc.__dict__.get("__notes__")):
            return
    except Exception:  # noqa: BLE001 - no __dict__, or one that raises: add it below
        pass
    if getattr(type(exc), "__getattr__", None) is None:  # (add_note reads __notes__ through it)
        try:
            exc.add_note(note)  # type: ignore[attr-defined]  # (Python >= 3.11; else below)
            return
        except Exception:  # noqa: BLE001 - handled below
            pass
    try:
        notes = note_list(exc.__dict__.get("__notes__"))
        object.__setattr__(exc, "__notes__", [*notes, note])
    except Exception:  # noqa: BLE001 - an exception that takes no notes: leave it
        pass


def format_error(exc: BaseException) -> str:
    """The traceback of *exc* as Python prints it, for the parent to show.

    ``traceback.format_exception`` reads the exception's attributes (``__notes__``,
    ``__cause__``), and calls its ``__str__``: a class whose ``__getattr__`` or
    ``__str__`` raises made that raise in the worker's error path, which killed the
    worker. Then only the frames are shown, with what went wrong in formatting; so too
    when those methods raise ``SystemExit``, ``KeyboardInterrupt`` or ``GeneratorExit``
    (they ended the worker: "exit code EXIT(1)", blaming ``os._exit``).
    """
    import traceback

    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except BaseException as failed:  # noqa: BLE001 - the exception's own methods raised
        frames = "".join(traceback.format_tb(exc.__traceback__))
        kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
        return (
            f"Traceback (most recent call last):\n{frames}{kind}: <the exception could not be "
            f"formatted: {type(failed).__name__} from its own methods>\n"
        )
