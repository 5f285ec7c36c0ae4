"""What a task's ``urlopen`` connects with: the parent's ``ssl`` default context and opener.

Two lines a script runs once, at its top, decide how every later download is made:
``ssl._create_default_https_context = ssl._create_unverified_context`` (the common answer
to ``CERTIFICATE_VERIFY_FAILED`` behind a proxy that re-signs certificates: ``http.client``
calls it for each HTTPS connection without a context of its own), and
``urllib.request.install_opener(opener)`` (an opener whose ``addheaders`` carry a
``User-agent`` a server requires, a proxy, a cookie jar, credentials: ``urlopen`` and
``urlretrieve`` use it). In the loop the call replaces, a task's ``urlopen`` ran with them;
a warm worker never ran those lines, so the same task failed with a certificate error, or a
403 for the missing header (under joblib too).

:func:`pickled` reads, in the parent, whether ``ssl._create_default_https_context`` is
not ``ssl.create_default_context`` and whether ``urllib.request``'s installed opener is
not one ``urlopen`` would build itself: only when the modules are imported, and again only
when one of the two is bound anew (two identity checks while nothing changes). Each is
pickled apart (with hybrid: a function of the script by value), so one that cannot be
pickled is left out, not the other. An opener's ``ssl.SSLContext`` (every opener holds one
from Python 3.12 on: ``HTTPSHandler`` makes it; and ``HTTPSHandler(context=
ssl._create_unverified_context())``) does not pickle: one with a new default context's
certificates, or none, is sent as how it checks (:func:`_context_reduce`) and made anew in the
worker; one given certificates of its own (``cafile=``, ``load_cert_chain``) leaves its
opener out. :func:`apply` sets them in the worker before each batch, again if a task changed
one, and puts back the worker's own where the parent no longer has one. Process-wide: not
sent to a dask cluster's shared workers. An opener changed in place after it was installed
(``opener.addheaders = ...``) is not seen.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .overlay import Overlay, dumps_each

WHAT = "a default of ssl or urllib"
_SSL = "ssl"
_OPENER = "opener"

# parent: (ssl's default context factory, urllib's opener, as read last; their pickle)
_read: tuple[Any, Any, bytes | None] = (None, None, None)


def _same_handler(a: Any, b: Any) -> bool:
    """True when handler *a* is as *b*, a fresh default one (its SSL context compared by what
    it checks: each default handler holds a new one on Python >= 3.13)."""
    if type(a) is not type(b):
        return False
    mine, fresh = dict(vars(a)), dict(vars(b))
    for both in (mine, fresh):
        both.pop("parent", None)
    one, two = mine.pop("_context", None), fresh.pop("_context", None)
    if one is not two:
        context = getattr(sys.modules.get("ssl"), "SSLContext", None)
        if context is None or not (isinstance(one, context) and isinstance(two, context)):
            return False
        if (one.verify_mode, one.check_hostname) != (two.verify_mode, two.check_hostname):
            return False
    try:
        return bool(mine == fresh)
    except Exception:  # noqa: BLE001 - not comparable: not the default
        return False


def _is_default(request: Any, opener: Any) -> bool:
    """True for an opener ``urlopen`` builds itself (it installs the first one it builds)."""
    try:
        fresh = request.build_opener()
        if type(opener) is not type(fresh) or opener.addheaders != fresh.addheaders:
            return False
        mine = sorted(opener.handlers, key=lambda h: type(h).__name__)
        theirs = sorted(fresh.handlers, key=lambda h: type(h).__name__)
        same = zip(mine, theirs, strict=True)
        return len(mine) == len(theirs) and all(_same_handler(a, b) for a, b in same)
    except Exception:  # noqa: BLE001 - an opener of another shape: the program's own
        return False


def _context_reduce(context: Any) -> Any:
    """An ``ssl.SSLContext`` of an opener as the recipe of :func:`_context`: its protocol, how
    it checks, and whether it has the default certificates, when it has those or none (else
    it is refused: its opener is not sent)."""
    stats = context.cert_store_stats()
    loaded = any(stats.values())
    if loaded and stats != sys.modules["ssl"].create_default_context().cert_store_stats():
        raise TypeError("an ssl.SSLContext with certificates of its own cannot be sent")
    return _context, (context.protocol, context.verify_mode, context.check_hostname, loaded)


def _context(protocol: Any, verify_mode: Any, check_hostname: bool, loaded: bool) -> Any:
    """A new ``ssl.SSLContext`` made as ``ssl.create_default_context`` (or
    ``_create_unverified_context``) makes one, checking as the parent's did
    (:func:`_context_reduce`)."""
    import ssl

    context = ssl.SSLContext(protocol)
    if loaded:
        context.load_default_certs()
    context.check_hostname = False  # (before verify_mode: CERT_NONE refuses a hostname check)
    context.verify_mode = verify_mode
    context.check_hostname = check_hostname
    return context


def _pickler() -> Any:
    """hybrid, with :func:`_context_reduce` for ``ssl.SSLContext``."""
    from collections import ChainMap

    from ..pickler.hybrid import HybridPickler, Pickler

    ours = {sys.modules["ssl"].SSLContext: _context_reduce}

    class _ContextPickler(Pickler):
        dispatch_table = ChainMap(ours, *Pickler.dispatch_table.maps)

    class _WebPickler(HybridPickler):
        pickler_class = _ContextPickler

    return _WebPickler()


def pickled() -> bytes | None:
    """The ssl default context factory and urllib opener the program installed, pickled
    (None: the modules are not imported, or they have their own)."""
    global _read
    modules = sys.modules
    ssl, request = modules.get("ssl"), modules.get("urllib.request")
    factory = getattr(ssl, "_create_default_https_context", None) if ssl is not None else None
    opener = getattr(request, "_opener", None) if request is not None else None
    seen_factory, seen_opener, data = _read
    if factory is seen_factory and opener is seen_opener:
        return data
    entries = []
    if factory is not None and factory is not getattr(ssl, "create_default_context", None):
        entries.append((_SSL, factory))
    if opener is not None and not _is_default(request, opener):
        entries.append((_OPENER, opener))
    data = dumps_each(entries, WHAT, pickler=_pickler()) if entries else None
    _read = (factory, opener, data)
    return data


class _Defaults:
    """``ssl._create_default_https_context`` and ``urllib.request._opener`` as the table an
    :class:`~.overlay.Overlay` lays the parent's over."""

    def __init__(self) -> None:
        self.ssl = importlib.import_module("ssl")
        self.request = importlib.import_module("urllib.request")

    def get(self, key: str, default: Any = None) -> Any:
        if key == _SSL:
            return getattr(self.ssl, "_create_default_https_context", default)
        if key == _OPENER:
            return getattr(self.request, "_opener", default)
        return default

    def __setitem__(self, key: str, value: Any) -> None:
        if key == _SSL:
            self.ssl._create_default_https_context = value  # type: ignore[attr-defined]
        elif key == _OPENER:
            self.request.install_opener(value)

    def pop(self, key: str, default: Any = None) -> Any:
        return default  # (the worker always has its own: set back by __setitem__)


# worker: the parent's defaults set here
_overlay = Overlay(WHAT)
_table: _Defaults | None = None


def rebase() -> None:
    """After an initializer ran: see ``Overlay.rebase``."""
    if _overlay.added and _table is not None:
        _overlay.rebase(_table)  # type: ignore[arg-type]


def apply(data: bytes | None) -> None:
    """Make this worker's ssl default context factory and urllib opener those pickled in
    *data* (None: the parent has its own), and put back the worker's own where the parent no
    longer sends one."""
    global _table
    if data is None and not _overlay.added:  # (the usual case)
        return
    if _table is None:
        _table = _Defaults()
    _overlay.apply(_table, data)  # type: ignore[arg-type]
