"""Module locks a forked child gets anew.

A process forked while another thread holds a lock (``os.fork()``, a fork-started
``multiprocessing.Process``) gets a copy of the lock that stays held for ever: the
child's first use of it waits for ever. :func:`renew_in_child` replaces a module's lock
with a new one in every forked child (``os.register_at_fork``), for modules whose fork
hook has nothing else to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def renew_in_child(namespace: dict[str, Any], name: str, make: Callable[[], Any]) -> None:
    """In every child forked from now on, set ``namespace[name]`` (a module's ``globals()``)
    to ``make()``, a new lock."""
    if not hasattr(os, "register_at_fork"):
        return

    def renew() -> None:
        namespace[name] = make()

    os.register_at_fork(after_in_child=renew)
