"""Checkpoint files for ``SharedState``: atomic writes, a header, an optional signature.

File layout (little-endian)::

    header   64 bytes: magic b"\\x93PPSTATE", format (u16), flags (u16),
             state version (u64), frame length (u64), zero padding
    frame    frames.pack(value): pickle stream and out-of-band buffers
    trailer  32 bytes: HMAC-SHA256(key, header + frame) when signed (flag 1),
             else SHA-256(header + frame), which catches damage but not tampering

Writing goes to a temporary file in the target's folder, which is flushed,
fsynced and moved over the target with ``os.replace`` (then the folder is
fsynced): a crash leaves the old file or the new one, and a failed write removes
its temporary file. A writer killed mid-save cannot remove its own, so the
temporary file's name says who wrote it — ``.<name>.<machine>-<pid>-<start>.<random>.tmp``,
machine being a hash of the host name and boot id, start the process's creation
time — and the next save to the same path removes those of writers on this
machine that are gone (no such pid, or the pid now names a process started at
another time). Files of live writers and of other machines are left alone.

Reading checks the magic, the format, the length and then the checksum or
signature — all before a single byte is unpickled.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import hmac
import os
import socket
import struct
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

import psutil

from .. import settings
from ..errors import StateFileError, StateSignatureError
from . import frames

MAGIC = b"\x93PPSTATE"
FORMAT = 1
SIGNED = 1
_HEADER = struct.Struct("<8sHHQQ")
HEADER_SIZE = 64
TRAILER_SIZE = 32
_KEY_HINT = "pass key= to SharedState.load (or set PICKLEPOOL_STATE_KEY)"


# the shortest key that signs a checkpoint (HMAC-SHA256): a shorter one is a password to guess
MIN_KEY_BYTES = 16


def resolve_key(key: Any, signing: bool = False) -> bytes | None:
    """The signing key in force: *key* if given, else ``PICKLEPOOL_STATE_KEY``, else None.

    *signing* (``save``): a key shorter than ``MIN_KEY_BYTES`` is refused (``ValueError``);
    ``load`` takes it, to read a file signed with it before."""
    settings.warn_unknown_variables()  # (a misspelt PICKLEPOOL_STATE_KEY: an unsigned file)
    key, source = settings.resolve("state_key", key, None)
    if key is None:
        return None
    source = "key=" if source == "argument" else source
    if isinstance(key, str):
        key = key.encode("utf-8")
    elif isinstance(key, (bytes, bytearray, memoryview)):
        key = bytes(key)
    else:
        raise TypeError(f"{source} must be bytes or str, got {type(key).__name__}")
    if not key:
        raise ValueError(f"{source} is empty; use a secret of at least {MIN_KEY_BYTES} bytes, or no key")
    if signing and len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"{source} is {len(key)} bytes long, too short to sign a checkpoint; use a secret "
            f"of at least {MIN_KEY_BYTES} bytes, such as secrets.token_hex(16), or no key"
        )
    return key  # type: ignore[no-any-return]


def _hasher(key: bytes | None) -> Any:
    return hmac.new(key, digestmod=hashlib.sha256) if key is not None else hashlib.sha256()


def write_frame(f: BinaryIO, pieces: list[Any], version: int, key: bytes | None) -> None:
    """Write header, frame pieces and trailer to *f*."""
    flags = SIGNED if key is not None else 0
    header = _HEADER.pack(MAGIC, FORMAT, flags, version, frames.size(pieces)).ljust(HEADER_SIZE, b"\0")
    digest = _hasher(key)
    for piece in (header, *pieces):
        f.write(piece)
        digest.update(piece)
    f.write(digest.digest())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a temporary file that replaces *path* when the block ends without error.

    New files are readable by their owner only (mode 0600); an existing file's
    permissions are kept.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(os.path.basename(path))
    remove_stale_temporaries(folder, prefix)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{_writer()}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _unwritable(exc, path, folder) from exc
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(OSError):
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            os.replace(tmp, path)
        except OSError as exc:  # the file's own (the value's pickling raised PicklingError)
            raise _unwritable(exc, path, folder) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _unwritable(exc: OSError, path: str, folder: str) -> OSError:
    """The error for a checkpoint that could not be written: of *exc*'s type and errno,
    naming *path* (not the temporary file, whose name the program never wrote) and the fix."""
    if exc.errno is None:
        return exc
    if exc.errno == errno.ENOENT and not os.path.isdir(folder):
        why = (
            f"its folder {folder!r} does not exist: create it first "
            "(os.makedirs(folder, exist_ok=True)), or save elsewhere"
        )
    elif exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST) or os.path.isdir(path):
        why = "it is a folder: name a file in it, os.path.join(folder, 'state.pp')"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"this process may not write in its folder {folder!r}: save to a folder it can write to"
    elif exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        why = (
            f"no space is left where {folder!r} is: free some, or save elsewhere (the old checkpoint is kept)"
        )
    else:
        why = "save elsewhere, or fix what the error says (the old checkpoint, if any, is kept)"
    try:
        return type(exc)(
            exc.errno, f"SharedState.save cannot write the checkpoint ({exc.strerror}): {why}", path
        )
    except TypeError:  # pragma: no cover - an OSError subclass of other arguments
        return exc


def _temp_prefix(name: str) -> str:
    return f".{name[:150]}."  # leaves room for the writer's tag within a 255-byte name


@functools.cache
def _machine() -> str:
    """8 hex digits naming this host and boot: pids are only meaningful here."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{boot}".encode()).hexdigest()[:8]


def _started(pid: int) -> int | None:
    """Creation time of process *pid* in centiseconds; None if there is none (or a zombie)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return round(proc.create_time() * 100)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def _writer() -> str:
    """This process's tag in its temporary files' names: machine, pid, creation time."""
    pid = os.getpid()
    return f"{_machine()}-{pid}-{_started(pid) or 0}"


def _writer_gone(tag: str) -> bool:
    """Is the writer named by *tag* a dead process of this machine? False when unsure."""
    machine, _, rest = tag.partition("-")
    pid_text, _, start_text = rest.partition("-")
    if machine != _machine() or not pid_text.isdigit() or not start_text.isdigit():
        return False
    try:
        started = _started(int(pid_text))
    except psutil.Error:  # e.g. AccessDenied: it exists; leave its file alone
        return False
    # Gone, or the pid was reused by a process started at another time (1 cs of rounding).
    return started is None or abs(started - int(start_text)) > 1


def remove_stale_temporaries(folder: str, prefix: str) -> list[str]:
    """Remove the temporary files that dead writers left for one target; return their names."""
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        tag, dot, _random = name[len(prefix) : -len(".tmp")].rpartition(".")
        if dot and _writer_gone(tag):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
                removed.append(name)
    return removed


def _fsync_folder(folder: str) -> None:
    """Make the rename durable. Not every platform can open a folder; those skip it."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # e.g. some network filesystems
        pass
    finally:
        os.close(fd)


def read_frame(path: str | os.PathLike[str], key: bytes | None) -> tuple[memoryview, int]:
    """Read and verify a checkpoint; return ``(frame, state version)``.

    Raises ``StateFileError`` (foreign, newer, truncated, damaged) or
    ``StateSignatureError`` (signature missing, unexpected or wrong), having
    unpickled nothing.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        data = bytearray(os.fstat(f.fileno()).st_size)
        got = f.readinto(data)
    view = memoryview(data)[:got]
    if not got:
        raise StateFileError(f"{name!r} is empty: it is not a finished checkpoint; restore a good copy")
    head = bytes(view[: len(MAGIC)])
    if head != MAGIC[: len(head)]:
        raise StateFileError(
            f"{name!r} is not a picklepool SharedState checkpoint (it starts with {head!r}, "
            f"expected {MAGIC!r}); check the path, and write checkpoints with SharedState.save"
        )
    if got < HEADER_SIZE + TRAILER_SIZE:
        raise StateFileError(f"{name!r} is truncated ({got} bytes); restore it from a good copy")
    _, fmt, flags, version, length = _HEADER.unpack_from(view)
    if fmt != FORMAT:
        newer = fmt > FORMAT
        raise StateFileError(
            f"{name!r} has checkpoint format {fmt}; this picklepool reads format {FORMAT}"
            + ("; upgrade picklepool to load it" if newer else "; the file is damaged")
        )
    if flags & ~SIGNED:
        raise StateFileError(f"{name!r} has unknown flags {flags:#x}; the file is damaged or newer")
    expected = HEADER_SIZE + length + TRAILER_SIZE
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise StateFileError(
            f"{name!r} is {what} ({got} bytes, expected {expected}): it was cut short or "
            "changed; restore it from a good copy"
        )
    signed = bool(flags & SIGNED)
    if signed and key is None:
        raise StateSignatureError(f"{name!r} is signed; {_KEY_HINT} so it can be verified")
    if key is not None and not signed:
        raise StateSignatureError(
            f"{name!r} is not signed, and a key was given (key= or PICKLEPOOL_STATE_KEY), so "
            "it is refused: anyone could have written it. Load it without a key only if you "
            "trust where it came from, then save it again with the key"
        )
    digest = _hasher(key)
    digest.update(view[: HEADER_SIZE + length])
    if not hmac.compare_digest(digest.digest(), bytes(view[HEADER_SIZE + length :])):
        if signed:
            raise StateSignatureError(
                f"{name!r}: the signature does not match: the key is wrong, or the file was "
                "changed after it was signed. Nothing was unpickled"
            )
        raise StateFileError(
            f"{name!r}: the checksum does not match: the file is damaged; restore it from a good copy"
        )
    return view[HEADER_SIZE : HEADER_SIZE + length], version
