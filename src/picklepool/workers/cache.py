"""A worker's cache of rebuilt objects, keyed by content and bounded in bytes.

Functions serialised by value and shared values arrive once per call (or per
version) and are rebuilt once per worker; later batches find them here. The
least recently used entries go first when the byte bound is passed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MAX_ENTRIES = 4096
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB of serialised size per worker


class ByteLRU:
    """Least-recently-used mapping whose entries are weighed by their byte size."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = MAX_ENTRIES) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries  # many small entries (per-call functions) weigh too
        self._data: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self.builds = 0  # how many entries were rebuilt (for tests and info)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def get(self, key: Any) -> Any:
        """The entry for *key* (now the most recently used), or None if it is missing."""
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            self._data.move_to_end(key)
            return hit[0]

    def get_or_build(self, key: Any, nbytes: int, build: Callable[[], Any]) -> Any:
        """Return the entry for *key*, calling *build* once if it is missing."""
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
                return hit[0]
        value = build()
        with self._lock:
            self.builds += 1
            self._data[key] = (value, nbytes)
            self._data.move_to_end(key)
            self._nbytes += nbytes
            self._evict()
        return value

    def resize(self, max_bytes: int) -> None:
        """Change the byte bound, evicting least recently used entries to fit."""
        with self._lock:
            self.max_bytes = max_bytes
            self._evict()

    def _evict(self) -> None:
        # Called with the lock held. The newest entry always stays, even alone past
        # the bound: evicting it would rebuild it for every batch.
        while (self._nbytes > self.max_bytes or len(self._data) > self.max_entries) and len(self._data) > 1:
            _, (_, size) = self._data.popitem(last=False)
            self._nbytes -= size

    def keys(self) -> list[Any]:
        """The keys, least recently used first."""
        with self._lock:
            return list(self._data)

    def discard(self, key: Any) -> None:
        with self._lock:
            hit = self._data.pop(key, None)
            if hit is not None:
                self._nbytes -= hit[1]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._nbytes = 0


# One cache per worker process.
objects = ByteLRU()
