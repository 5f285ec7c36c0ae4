"""Has a range of this process's memory been written since it was armed? The kernel tells.

``workers.changes`` compares the item pointers of every list of a worker's
``SharedState`` copy with a saved copy before each task that reaches it: for a
list of 500,000 items that is 8 MB of memory read per task. For large lists it
asks the kernel instead, which tracks writes to their pointer arrays for free:

    arm(start, n)      userfaultfd, asynchronous write-protect mode (Linux 6.7+):
                       the pages are write-protected, and the kernel lifts that on
                       the first write to each page by itself — the writer never
                       waits and no fault is delivered to anyone
    written(start, n)  ``PAGEMAP_SCAN`` on ``/proc/self/pagemap``: is any page of the
                       range no longer write-protected? ~10 µs for 4 MB
    rearm / disarm     protect again (after a write that changed nothing), or stop

Where any of it is missing (another OS, an older kernel, a seccomp filter that
refuses ``userfaultfd``) :func:`arm` returns False and the caller compares the
pointers itself. Only whole pages are armed; the caller compares the partial
pages at both ends. One userfaultfd per process (a forked child makes its own:
registrations are not inherited).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import threading
from typing import Any

from ..forklocks import renew_in_child

PAGE = mmap.PAGESIZE
MAX_RANGES = 512  # each armed range splits a memory map of the process in up to three

_SYSCALL = {"x86_64": 323, "amd64": 323, "aarch64": 282, "arm64": 282}.get(platform.machine().lower())
_USER_MODE_ONLY = 1
_FEATURES = (1 << 15) | (1 << 13)  # UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED
_UFFDIO_API = 0xC018AA3F
_UFFDIO_REGISTER = 0xC020AA00
_UFFDIO_UNREGISTER = 0x8010AA01
_UFFDIO_WRITEPROTECT = 0xC018AA06
_MODE_WP = 1 << 1  # UFFDIO_REGISTER_MODE_WP
_PROTECT = 1  # UFFDIO_WRITEPROTECT_MODE_WP
_PAGEMAP_SCAN = 0xC0606610
_CHECK_WPASYNC = 1 << 1  # PM_SCAN_CHECK_WPASYNC: fail unless the range is armed
_IS_WRITTEN, _IS_FILE, _IS_PRESENT, _IS_SWAPPED = 1 << 1, 1 << 2, 1 << 3, 1 << 4  # PAGE_IS_*

_lock = threading.Lock()
renew_in_child(globals(), "_lock", threading.Lock)  # (held at a fork: held for ever in the child)
_state: dict[str, Any] = {"pid": None, "uffd": -1, "pagemap": -1, "libc": None}
_armed: set[tuple[int, int]] = set()


def _kernel() -> tuple[Any, int, int] | None:
    """``(libc, userfaultfd, pagemap fd)`` of this process, opened once; None if unavailable."""
    if _state["pid"] == os.getpid():
        return (_state["libc"], _state["uffd"], _state["pagemap"]) if _state["uffd"] >= 0 else None
    _state.update(pid=os.getpid(), uffd=-1, pagemap=-1)
    _armed.clear()
    if _SYSCALL is None or not hasattr(os, "O_CLOEXEC"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
        libc.ioctl.restype = ctypes.c_int
    except (OSError, AttributeError):  # pragma: no cover - no C library to call
        return None
    uffd = int(libc.syscall(_SYSCALL, os.O_CLOEXEC | os.O_NONBLOCK | _USER_MODE_ONLY))
    if uffd < 0:
        return None
    api = (ctypes.c_uint64 * 3)(0xAA, _FEATURES, 0)
    if libc.ioctl(uffd, _UFFDIO_API, ctypes.addressof(api)) != 0 or api[1] & _FEATURES != _FEATURES:
        os.close(uffd)
        return None
    try:
        pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(uffd)
        return None
    _state.update(uffd=uffd, pagemap=pagemap, libc=libc)
    return libc, uffd, pagemap


def available() -> bool:
    """Can this process have the kernel track writes (and scan page tables)?"""
    with _lock:
        return _kernel() is not None


def pages_within(address: int, nbytes: int) -> tuple[int, int]:
    """The whole pages inside ``[address, address + nbytes)``: ``(start, length)``, length 0 if none."""
    start = -(-address // PAGE) * PAGE
    end = (address + nbytes) // PAGE * PAGE
    return start, max(0, end - start)


def arm(start: int, length: int) -> bool:
    """Write-protect ``[start, start + length)`` (whole pages) and track writes to it."""
    with _lock:
        kernel = _kernel()
        if kernel is None or length <= 0 or len(_armed) >= MAX_RANGES or (start, length) in _armed:
            return False
        libc, uffd, _ = kernel
        register = (ctypes.c_uint64 * 4)(start, length, _MODE_WP, 0)
        if libc.ioctl(uffd, _UFFDIO_REGISTER, ctypes.addressof(register)) != 0:
            return False
        _armed.add((start, length))
        if not _protect(libc, uffd, start, length):
            _unregister(libc, uffd, start, length)
            return False
        return True


def rearm(start: int, length: int) -> bool:
    """Protect an armed range again, e.g. after a write that left its content as it was."""
    with _lock:
        kernel = _kernel()
        if kernel is None or (start, length) not in _armed:
            return False
        return _protect(kernel[0], kernel[1], start, length)


def disarm(start: int, length: int) -> None:
    """Stop tracking a range (before its memory is freed, or when it no longer matters)."""
    with _lock:
        if _state["pid"] != os.getpid() or (start, length) not in _armed:
            return
        _unregister(_state["libc"], _state["uffd"], start, length)


def written(start: int, length: int) -> bool | None:
    """Was any page of an armed range written since it was (re)armed? None: cannot tell."""
    if (start, length) not in _armed:
        return None
    return _scan(start, length, _CHECK_WPASYNC, 0, _IS_WRITTEN, 0)


def copied(start: int, length: int) -> bool | None:
    """Does ``[start, start + length)`` of a private file map hold a page the kernel copied?

    A written page of a private map of a file is anonymous memory, present or
    swapped out; a page only read is the file's own page, or not present at all.
    None where ``PAGEMAP_SCAN`` is missing (``workers.changes`` reads the page map then).
    """
    # not a file page, and present or swapped
    return _scan(start, length, 0, _IS_FILE, _IS_FILE, _IS_PRESENT | _IS_SWAPPED)


def _scan(start: int, length: int, flags: int, inverted: int, mask: int, anyof: int) -> bool | None:
    """Does a page of the range match (``PAGEMAP_SCAN``)? None when the kernel cannot tell."""
    with _lock:
        kernel = _kernel()
    if kernel is None:
        return None
    libc, _, pagemap = kernel
    found = (ctypes.c_uint64 * 3)()
    # struct pm_scan_arg: size, flags, start, end, walk_end, vec, vec_len, max_pages,
    # category_inverted, category_mask, category_anyof_mask, return_mask
    end, vec, returned = start + length, ctypes.addressof(found), mask | anyof
    scan = (ctypes.c_uint64 * 12)(96, flags, start, end, 0, vec, 1, 0, inverted, mask, anyof, returned)
    got = libc.ioctl(pagemap, _PAGEMAP_SCAN, ctypes.addressof(scan))
    if got < 0:
        return None
    return got > 0


def _protect(libc: Any, uffd: int, start: int, length: int) -> bool:
    protect = (ctypes.c_uint64 * 3)(start, length, _PROTECT)
    while libc.ioctl(uffd, _UFFDIO_WRITEPROTECT, ctypes.addressof(protect)) != 0:
        if ctypes.get_errno() != errno.EAGAIN:
            return False
    return True


def _unregister(libc: Any, uffd: int, start: int, length: int) -> None:
    _armed.discard((start, length))
    span = (ctypes.c_uint64 * 2)(start, length)
    libc.ioctl(uffd, _UFFDIO_UNREGISTER, ctypes.addressof(span))  # gone already: nothing to do
