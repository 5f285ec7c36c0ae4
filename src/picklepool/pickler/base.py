"""The pickler strategy objects: how objects become bytes and back.

A pickler is an object with ``.name``, ``.dumps(obj, buffer_callback=None)`` and
``.loads(data, buffers=None)``; those whose format is pickle's also write and read a
file as they go (``.dump(obj, file, buffer_callback=None)``, ``.load(file,
buffers=None)``; ``.streams`` is True), which lets a large batch be unpickled in a
worker while the parent still pickles it (``pickler.stream``). Everything that
serialises in picklepool, in the parent and in workers, goes through one. Instances
are small and picklable (they hold a class, pickled by reference), so a call carries
its pickler to the workers and switching picklers never touches the workers
themselves.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterable
from typing import Any

from . import arrays
from .plain import PROTOCOL, SAME_AS_STDLIB

BufferCallback = Callable[[pickle.PickleBuffer], Any] | None


class BasePickler:
    """Serialise with a ``pickle.Pickler`` subclass, deserialise with ``pickle``.

    Subclasses set ``name`` and ``pickler_class`` or override ``dumps``/``loads``.
    """

    name = "base"
    pickler_class: type[pickle.Pickler] = pickle.Pickler
    # dump/load write and read what dumps/loads do, as they go. False for a subclass
    # that overrides dumps or loads (a format of its own) without dump and load.
    streams = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if ("dumps" in own and "dump" not in own) or ("loads" in own and "load" not in own):
            cls.streams = False

    def dumps(self, obj: Any, buffer_callback: BufferCallback = None) -> bytes:
        f = io.BytesIO()
        # During a call, numpy arrays travel as pickler.arrays says (memmaps by reference).
        cls = arrays.pickler_class(self.pickler_class)
        cls(f, protocol=PROTOCOL, buffer_callback=buffer_callback).dump(obj)
        return f.getvalue()

    def loads(self, data: bytes | memoryview, buffers: Iterable[Any] | None = None) -> Any:
        return pickle.loads(data, buffers=buffers)

    def dump(self, obj: Any, file: Any, buffer_callback: BufferCallback = None) -> None:
        """Pickle *obj* into *file* (anything with ``write(bytes)``), as :meth:`dumps` would.

        The pickler writes each 64 KB frame as soon as it is complete. Only meaningful
        when :attr:`streams` is True; otherwise it writes ``dumps(obj)`` in one piece.
        """
        if not self.streams:
            file.write(self.dumps(obj, buffer_callback))
            return
        cls = arrays.pickler_class(self.pickler_class)
        cls(file, protocol=PROTOCOL, buffer_callback=buffer_callback).dump(obj)

    def load(self, file: Any, buffers: Iterable[Any] | None = None) -> Any:
        """Unpickle one object from *file* (``read``, ``readinto``, ``readline``), as it arrives."""
        if not self.streams:
            return self.loads(file.read(), buffers)
        return pickle.load(file, buffers=buffers)

    def __repr__(self) -> str:
        return f"<pickler {self.name!r}>"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), self.name))


class StdlibPickler(BasePickler):
    """The stdlib C pickler, protocol 5. Fastest; functions and classes by reference."""

    name = "pickle"

    def dumps(self, obj: Any, buffer_callback: BufferCallback = None) -> bytes:
        table = arrays.dispatch_table()
        if table is None:
            return pickle.dumps(obj, PROTOCOL, buffer_callback=buffer_callback)
        f = io.BytesIO()
        self.dump(obj, f, buffer_callback)
        return f.getvalue()

    def dump(self, obj: Any, file: Any, buffer_callback: BufferCallback = None) -> None:
        p = pickle.Pickler(file, PROTOCOL, buffer_callback=buffer_callback)
        table = arrays.dispatch_table()
        if table is not None:
            p.dispatch_table = table
        p.dump(obj)


class _CloudpicklePickler:
    """``cloudpickle.Pickler``, read from the class or an instance; cloudpickle imported then.

    A class attribute as any other (``CloudPickler.pickler_class`` is the class; a
    subclass or an instance sets its own), not imported with this module: a first call
    starts its forkserver before cloudpickle's import (``executor.backends.prepare``).
    """

    def __get__(self, obj: object, owner: type | None = None) -> type[pickle.Pickler]:
        import cloudpickle

        return cloudpickle.Pickler


class CloudPickler(BasePickler):
    """cloudpickle: functions and classes that cannot be imported go by value."""

    name = "cloudpickle"
    pickler_class = _CloudpicklePickler()

    def dumps(self, obj: Any, buffer_callback: BufferCallback = None) -> bytes:
        import cloudpickle

        # cloudpickle's own class (not one a subclass or an instance set: dump uses that too)
        if not arrays.active() and self.pickler_class is cloudpickle.Pickler:
            return cloudpickle.dumps(obj, protocol=PROTOCOL, buffer_callback=buffer_callback)
        return super().dumps(obj, buffer_callback)

    def dump(self, obj: Any, file: Any, buffer_callback: BufferCallback = None) -> None:
        super().dump(obj, file, buffer_callback)


SAME_AS_STDLIB.update((StdlibPickler, CloudPickler))


class ClassPickler(BasePickler):
    """A pickler made from a user's ``pickle.Pickler`` subclass."""

    def __init__(self, name: str, pickler_class: type[pickle.Pickler]) -> None:
        self.name = name
        self.pickler_class = pickler_class
