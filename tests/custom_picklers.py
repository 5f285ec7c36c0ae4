"""A registered pickler with a format of its own, for the tests (importable by workers)."""

from __future__ import annotations

import pickle
import zlib

from picklepool.pickler import BasePickler


class Zlibbed(BasePickler):
    """``loads`` refuses anything its ``dumps`` did not make: no reply may bypass it."""

    name = "zlibbed"

    def dumps(self, obj, buffer_callback=None):
        return b"ZZ" + zlib.compress(pickle.dumps(obj, protocol=5))

    def loads(self, data, buffers=None):
        data = bytes(data)
        if data[:2] != b"ZZ":
            raise pickle.UnpicklingError("not zlibbed data")
        return pickle.loads(zlib.decompress(data[2:]))


class ByName(pickle.Pickler):
    """A plain ``pickle.Pickler`` subclass: it sends functions and classes by name, as
    pickler 'pickle' does (for the tests of advice given to such picklers)."""
