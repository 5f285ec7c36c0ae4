"""numpy's print options (``np.set_printoptions``, ``np.printoptions``), read and applied.

A task that formats arrays (``str(a)``, ``repr(x)``, a report's or a log line's
numbers) gave numpy's default formatting in a worker, whatever the parent had set
(``precision=3``, ``suppress=True``, ``legacy="1.25"``, a ``formatter``): a warm
worker never ran the parent's ``set_printoptions``, so the same task printed
differently in the loop and in the pool (under joblib too). They are part of the
calling thread's numeric settings (``workers.mirror``), as ``np.errstate`` is: numpy
>= 2.1 keeps them per thread, in a context variable (older numpy: not mirrored).

Read through that variable: every change puts a new dict in it, so while it holds the
dict seen last, the options are those read then (one lookup per call).

A ``formatter`` that cannot be pickled (a callable object holding a file, a generator, a
connection) is not sent (:func:`sendable`): the others are, with a ``RuntimeWarning``
saying so; it made every call fail, whatever its tasks printed.
"""

from __future__ import annotations

import contextvars
import sys
import warnings
from typing import Any

# (the object numpy's variable held, what read() answered for it)
_seen: tuple[Any, tuple[tuple[str, Any], ...] | None] | None = None
_defaults: dict[str, Any] | None = None  # np.get_printoptions() of a fresh context
# parent: (the options read() answered, what of them is sent) as :func:`sendable` saw last
_sent: tuple[Any, Any] = (None, None)


def _variable() -> contextvars.ContextVar[Any] | None:
    module = sys.modules.get("numpy._core.printoptions")
    var = getattr(module, "format_options", None)
    return var if isinstance(var, contextvars.ContextVar) else None


def read(numpy: Any) -> tuple[tuple[str, Any], ...] | None:
    """This thread's print options as ``sorted(np.get_printoptions().items())``; None when
    they are numpy's defaults, or on a numpy that does not keep them in a variable."""
    global _seen, _defaults
    var = _variable()
    if var is None:
        return None
    held = var.get()
    seen = _seen
    if seen is not None and seen[0] is held:
        return seen[1]
    if _defaults is None:
        _defaults = contextvars.Context().run(numpy.get_printoptions)
    now = numpy.get_printoptions()
    out = None if now == _defaults else tuple(sorted(now.items()))
    _seen = (held, out)
    return out


def apply(numpy: Any, options: tuple[tuple[str, Any], ...] | None) -> None:
    """Make this thread's print options *options* (None: numpy's defaults), where they differ."""
    if _variable() is None or read(numpy) == options:
        return
    numpy.set_printoptions(**dict(options if options is not None else sorted((_defaults or {}).items())))


def sendable(options: tuple[tuple[str, Any], ...] | None) -> tuple[tuple[str, Any], ...] | None:
    """*options* (:func:`read`'s answer, in the parent), but a ``formatter`` that cannot be
    pickled, left out with a ``RuntimeWarning`` (once per change: one comparison per call)."""
    global _sent
    seen = _sent
    if options is None or seen[0] is options:
        return seen[1] if options is not None else None
    out = options
    formatter = dict(options).get("formatter")
    if formatter is not None:
        import cloudpickle  # (what the workers' batches are sent with)

        try:
            cloudpickle.dumps(formatter)
        except Exception as exc:  # noqa: BLE001 - any pickling failure: the others are sent
            from ..pickler.locks import callers_level

            out = tuple((k, None if k == "formatter" else v) for k, v in options)
            warnings.warn(
                f"picklepool: numpy's print option formatter={formatter!r} is not sent to the "
                f"workers: it cannot be pickled ({type(exc).__name__}: {exc}), so a task there prints "
                "arrays without it (your other print options apply). Make it picklable (a function, "
                "or an object whose attributes pickle), or set it in the task (np.printoptions("
                "formatter=...)).",
                RuntimeWarning,
                stacklevel=callers_level(),  # (the call's line)
            )
    _sent = (options, out)
    return out
