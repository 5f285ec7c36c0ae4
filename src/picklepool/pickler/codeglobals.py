"""The globals a function sent by value carries: the names cloudpickle (so hybrid) picks.

``co_names`` lists the attribute names a function's code reads too (``np.ma``'s ``ma``,
``os.path``'s ``path``): a global of ``__main__`` named so is not sent with the function.
What takes the function's globals to mean what the worker's copy holds
(``executor.functions.reached``, an argument sent as "the function's global") or what
may fail to pickle (``pickler.diagnose``, the path named in an error) must use these.
"""

from __future__ import annotations

import dis
import types
from collections.abc import Iterator

_GLOBAL_OPS = frozenset(("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL"))


def sent_globals(code: types.CodeType) -> Iterator[str]:
    """The names of the globals a function of *code* sent by value carries (nested code's too)."""
    try:  # (imported here: cloudpickle is imported by the first call, not by picklepool's import)
        from cloudpickle.cloudpickle import _extract_code_globals
    except ImportError:
        return global_ops(code)
    return iter(_extract_code_globals(code))


def global_ops(code: types.CodeType) -> Iterator[str]:
    """cloudpickle's rule, for a version without ``_extract_code_globals``: the names the
    code loads, stores or deletes as globals."""
    for ins in dis.get_instructions(code):
        if ins.opname in _GLOBAL_OPS:
            yield ins.argval
    for const in code.co_consts:
        if type(const) is types.CodeType:
            yield from global_ops(const)
