"""Content keys: the name a pickled function goes by in the workers' caches.

A function sent by value (a ``__main__`` function, a closure) is pickled at every call
unless ``executor.unchanged`` proves its bytes the same; the workers keep what they
rebuilt under its content key, and the parent hashes those bytes at every call. For a
function naming a large global (a list of a million ints: 8 MB of pickle), the hash was a
third of the call: BLAKE2b in software runs at about 0.6 GB/s here, SHA-256 at about
1.5 GB/s on a CPU with SHA instructions (x86 ``sha_ni``: every AMD Zen, Intel since Ice
Lake and Goldmont; ARMv8's ``sha2``; every Apple M chip), where it is the faster one.

:func:`content_key` takes BLAKE2b below ``LARGE`` bytes (its keys as they always were;
``_blake2`` is imported without hashlib, whose import loads OpenSSL: ~3 ms of a cold
start) and SHA-256 from there on where the CPU has such instructions (hashlib then
imported once, as the first large function is met). Either is a 128-bit key of the
bytes: the same bytes give the same key in one process, which is all the caches need.
"""

from __future__ import annotations

import sys
from typing import Any

try:  # hashlib's own blake2b, without hashlib (see above)
    from _blake2 import blake2b
except ImportError:  # an interpreter without CPython's module
    from hashlib import blake2b

LARGE = 1 << 20  # bytes from which SHA-256 is used, where the CPU speeds it up

_sha256: Any = None  # hashlib.sha256 once looked for: False where it is not the faster one


def content_key(data: bytes, suffix: bytes = b"") -> str:
    """A 32-character hex key of ``data + suffix`` (*suffix*: what else the bytes depend on,
    such as the buffers they refer to), without joining the two."""
    if len(data) >= LARGE:
        sha = _fast_sha256()
        if sha:
            h = sha(data)
            h.update(suffix)
            return h.hexdigest()[:32]  # type: ignore[no-any-return]
    h = blake2b(data, digest_size=16)
    h.update(suffix)
    return h.hexdigest()  # type: ignore[no-any-return]


def _fast_sha256() -> Any:
    global _sha256
    if _sha256 is None:
        _sha256 = False
        if has_sha_instructions():
            import hashlib

            _sha256 = hashlib.sha256
    return _sha256


def has_sha_instructions() -> bool:
    """True when this CPU computes SHA-256 in hardware (read from ``/proc/cpuinfo`` on Linux)."""
    if sys.platform == "darwin":
        import platform

        return platform.machine() == "arm64"  # Apple's M chips
    try:
        with open("/proc/cpuinfo", "rb") as f:
            for line in f:
                if line.startswith((b"flags", b"Features")):  # x86; ARM
                    words = line.split()
                    return b"sha_ni" in words or b"sha2" in words
    except OSError:
        pass
    return False
