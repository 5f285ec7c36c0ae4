"""Did a task change the worker's copy of a ``SharedState``? An exact check, without copies.

A worker keeps one rebuilt copy per state version and hands it to every task.
Tasks may read it under ``with state as v`` (the seed's pattern) or change it; a
change must not reach the next task, and a read must cost next to nothing. So
the copy is not rebuilt on every ``with``: instead, when the next task reaches
it (``workers.snapshots.WorkerCopy``), this check says whether anything in it
changed since it was built:

    lists, dicts, sets   the identities of their items (and keys) against a
                         shallow copy taken at build time: one ``memcmp`` of the
                         pointer arrays per list (CPython), a C-speed loop else
    large lists          (from ``LARGE_LIST`` items) their length and item array's
                         address; the whole pages of that array: has the kernel
                         seen a write to them (``workers.writewatch``: ~10 µs
                         instead of reading 8 MB for 500,000 items; a write that
                         left the items as they were is compared, then ignored);
                         the partial pages at both ends by ``memcmp``
    numpy arrays         shape, strides, dtype, data address, writeable flag; the
                         data itself: pages of the snapshot's copy-on-write map
                         that the kernel copied (``PAGEMAP_SCAN``, or reading
                         ``/proc/self/pagemap``: a written private page is no
                         longer the file's page), or for a small array outside
                         the map its bytes
    atoms                ``None``, bool, int, float, complex, str, bytes and numpy
                         scalars are immutable: nothing to watch; so are range,
                         ``Decimal`` and the ``datetime`` types, built-in classes
                         and classes the worker imports by name (as modules)
    tuples, frozensets   immutable themselves; their items are watched
    deques               the identities of their items, as lists
    bytearray, array     their bytes, against a copy taken at build time
    functions rebuilt    what they carry (globals, defaults, closure contents,
    by value             attributes, as values), and what a task may rebind on
                         them: the objects in their closure cells (``nonlocal n;
                         n += 1``), their ``__defaults__``, ``__kwdefaults__``,
                         ``__dict__`` and ``__code__`` (by identity)
    classes of Python    (namedtuples, ``Counter``, dict subclasses, user classes):
    code                 their class; their ``__dict__`` (watched as a dict); what
                         their built-in base holds — a tuple's or frozenset's items,
                         a dict's keys and values as the dict stores them (not
                         through an overridden ``__iter__``), an ``OrderedDict``'s
                         order, a ``defaultdict``'s ``default_factory``. Only when
                         every class of the chain is Python code (not C, not even
                         a C type made from a spec, told by its ``tp_dealloc``) and
                         declares no ``__slots__``: then an instance has no state
                         but these (``plain_base``)

Replacing an item always changes its identity (the copy holds the old items, so
their addresses cannot be reused), writing to a large list's item array always
lifts the kernel's write protection of its page, and writing to a mapped array
always makes the kernel copy a page, so the check misses no change to these
types. A value holding anything else (an instance with ``__slots__`` or of a C
type, a class sent by value, a torch tensor, a large array outside the map, or
mapped arrays when the platform has no pagemap) is *not watched*:
``Baseline.watch`` returns None and the caller never trusts it as unchanged
(``workers.snapshots.WorkerCopy`` rebuilds it for the next task that reaches it).
A class's own attributes are the class's, not the value's: not watched (a
rebuild would not reset them either).
"""

from __future__ import annotations

import array as pyarray
import builtins
import collections
import ctypes
import mmap
import operator
import os
import sys
import types
import weakref
from typing import Any

from . import warnfilters, writewatch

SMALL_ARRAY = 1 << 20  # arrays outside the map up to this size are compared by content
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})
# Immutable values of other types: nothing to watch (besides the atoms).
_IMMUTABLE: frozenset[type] = frozenset({range, type(Ellipsis), type(NotImplemented)})
# Immutable types of modules that may not be loaded: ``(module, name)``.
_IMMUTABLE_NAMED = (
    ("decimal", "Decimal"),
    ("datetime", "date"),
    ("datetime", "datetime"),
    ("datetime", "time"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
)
# The built-in types a class of Python code may derive from and still be watched:
# their own state is what ``_walk`` reads (items, keys and values), the rest is the
# instance's ``__dict__``.
_MAPPINGS = (collections.OrderedDict, collections.defaultdict, dict)
_LAYOUTS = frozenset(
    {object, types.SimpleNamespace, tuple, frozenset, str, bytes, int, float, complex, *_MAPPINGS}
)
_PAGEMAP = "/proc/self/pagemap"
# Top bytes of pagemap entries of pages not written: not present, or a present file page.
_CLEAN = bytes(b for b in range(256) if not b & 0x40 and (not b & 0x80 or b & 0x20))


# -- identity of the items of two lists ---------------------------------------------------


def _items_address_probe() -> Any:
    """``(address of a list's item array, memcmp)``, or None where that is unsafe."""
    try:
        libc = ctypes.CDLL(None)
        memcmp = libc.memcmp
    except (OSError, AttributeError, TypeError):  # pragma: no cover - Windows and the like
        return None
    memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    memcmp.restype = ctypes.c_int
    pointer = ctypes.sizeof(ctypes.c_void_p)
    offset = list.__basicsize__ - 2 * pointer  # PyListObject: ..., ob_item, allocated

    def address(items: list[Any]) -> int:
        return ctypes.c_void_p.from_address(id(items) + offset).value or 0

    probe = [object(), object(), "x"]
    try:
        got = ctypes.cast(address(probe), ctypes.POINTER(ctypes.c_void_p))
        if [got[i] for i in range(3)] != [id(x) for x in probe]:  # pragma: no cover - other layouts
            return None
    except (ValueError, OSError):  # pragma: no cover
        return None
    return address, memcmp


_probe = _items_address_probe()
_POINTER = ctypes.sizeof(ctypes.c_void_p)
_same_pointers = (
    None if _probe is None else lambda a, b: _probe[1](_probe[0](a), _probe[0](b), len(a) * _POINTER) == 0
)
LARGE_LIST = 8192  # items: from this size on the kernel watches a list's pointers (workers.writewatch)


# -- classes of Python code ---------------------------------------------------------------


def _dealloc_probe() -> Any:
    """A type's ``tp_dealloc`` reader and the one all classes of Python code share, or None."""
    offset = 6 * _POINTER  # PyTypeObject: refcount, type, size, name, basicsize, itemsize, dealloc

    def dealloc(kind: type) -> int:
        return ctypes.c_void_p.from_address(id(kind) + offset).value or 0

    class _A:
        pass

    class _B(dict):  # type: ignore[type-arg]
        pass

    try:
        python = dealloc(_A)
        if not python or dealloc(_B) != python or python in (dealloc(object), dealloc(dict)):
            return None  # pragma: no cover - another layout
    except (ValueError, OSError):  # pragma: no cover
        return None
    return dealloc, python


_dealloc = _dealloc_probe()
_plain_kinds: weakref.WeakKeyDictionary[type, type | None] = weakref.WeakKeyDictionary()


def plain_base(kind: type) -> type | None:
    """The built-in type under a class of Python code whose instances can be watched, or None.

    Such a class (a ``namedtuple``, ``Counter``, a user class) derives, through
    classes of Python code only, from ``object``, ``tuple``, ``frozenset``, ``str``,
    ``bytes``, a number type or a dict type (``dict``, ``OrderedDict``,
    ``defaultdict``), and declares no ``__slots__`` (but ``__dict__`` and
    ``__weakref__``): all of an instance's state is then that base's (items,
    keys, values) and its ``__dict__``. A class of C code (an extension type, even
    one made from a spec) has state ``_walk`` cannot see: None.
    """
    try:
        return _plain_kinds[kind]
    except KeyError:
        pass
    base = _plain_base(kind)
    _plain_kinds[kind] = base
    return base


def _plain_base(kind: type) -> type | None:
    if _dealloc is None:
        return None  # pragma: no cover - cannot tell classes of Python code
    dealloc, python = _dealloc
    base: type | None = None
    for cls in kind.__mro__:
        if cls in _LAYOUTS:
            if base is None:
                base = cls
            continue
        if dealloc(cls) != python:
            return None  # a class of C code (or one deriving from one) in the chain
        slots = cls.__dict__.get("__slots__", ())
        if set([slots] if isinstance(slots, str) else slots) - {"__dict__", "__weakref__"}:
            return None
        if type(cls.__dict__.get("__dict__")) not in (type(None), _GETSET):
            return None  # a ``__dict__`` of its own making
    return base


class _Probe:
    pass


_GETSET = type(_Probe.__dict__["__dict__"])


def _by_name(kind: type) -> bool:
    """Is *kind* the class its module names (a class of the worker, sent by reference)?"""
    found: Any = sys.modules.get(kind.__module__)
    for part in kind.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is kind


def _immutable_kinds() -> frozenset[type]:
    found: set[type] = set(_IMMUTABLE)
    for module, name in _IMMUTABLE_NAMED:
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type):
            found.add(kind)
    return frozenset(found)


def same_items(a: list[Any], b: list[Any]) -> bool:
    """Do two lists hold the very same objects, in the same order?"""
    if len(a) != len(b):
        return False
    if not a:
        return True
    if _same_pointers is not None and type(a) is list and type(b) is list:
        return bool(_same_pointers(a, b))
    return all(map(operator.is_, a, b))  # pragma: no cover - without the CPython layout


# -- pages of a copy-on-write map that the kernel copied --------------------------------


def written(start: int, length: int) -> bool | None:
    """Was any page of ``[start, start + length)`` written? None where that cannot be told.

    Reads ``/proc/self/pagemap`` (Linux; 8 bytes a page, ~0.05 ms for 48 MB). A
    written page of a private file map is anonymous (present, not a file page)
    or swapped; a page only read is the file's page, or not present at all.
    """
    seen = writewatch.copied(start, length)  # the kernel scans its page tables (Linux 6.7+)
    if seen is not None:
        return seen
    page = mmap.PAGESIZE
    first, last = start // page, (start + length + page - 1) // page
    try:
        fd = os.open(_PAGEMAP, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.pread(fd, 8 * (last - first), 8 * first)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) != 8 * (last - first):
        return None
    # The top byte of each 8-byte entry (little-endian): bit 7 present, 6 swapped, 5 file page.
    return bool(data[7::8].translate(None, _CLEAN))


def map_range(mapped: mmap.mmap) -> tuple[int, int]:
    """``(address, length)`` of a writable (e.g. copy-on-write) map."""
    return ctypes.addressof(ctypes.c_char.from_buffer(mapped)), len(mapped)


# -- the baseline ---------------------------------------------------------------------------


class _Unwatched(Exception):
    """The value holds something the check cannot watch."""


class Baseline:
    """What a rebuilt value held right after it was built; :meth:`changed` compares.

    Build it with :meth:`watch`. It keeps the value's containers and a shallow copy
    of each (the items themselves are shared, not copied).
    """

    def __init__(self, region: tuple[int, int] | None) -> None:
        self.region = region
        self.lists: list[tuple[list[Any], list[Any]]] = []
        # Large lists whose item arrays the kernel watches: (list, saved, address, pages).
        self.tracked: list[tuple[list[Any], list[Any], int, tuple[int, int]]] = []
        self._armed: list[tuple[int, int]] = []
        self._disarm = weakref.finalize(self, _disarm_all, self._armed)
        self.dicts: list[tuple[dict[Any, Any], list[Any], list[Any]]] = []
        self.sets: list[tuple[set[Any], list[Any]]] = []
        # Instances of classes of Python code: their class, their ``__dict__`` (or None).
        self.instances: list[tuple[Any, type, dict[str, Any] | None]] = []
        # Dict subclasses and their kin: keys and values as the dict stores them,
        # an ``OrderedDict``'s order, a ``defaultdict``'s factory.
        self.mappings: list[tuple[dict[Any, Any], list[Any], list[Any], list[Any] | None, Any]] = []
        self.deques: list[tuple[collections.deque[Any], list[Any]]] = []
        self.buffers: list[tuple[Any, bytes]] = []  # bytearray, array.array: their bytes
        self.arrays: list[tuple[Any, tuple[Any, ...], bytes | None]] = []
        # Functions rebuilt by value: what a task may rebind on them (``_bindings``).
        self.functions: list[tuple[types.FunctionType, tuple[Any, ...]]] = []
        self.mapped_arrays = False

    @classmethod
    def watch(cls, value: Any, region: tuple[int, int] | None) -> Baseline | None:
        """A baseline of *value*, or None if it holds something that cannot be watched.

        *region* is the copy-on-write map the value's large arrays are views of.
        """
        baseline = cls(region)
        try:
            baseline._walk(value)
        except _Unwatched:
            baseline._disarm()
            return None
        if baseline.mapped_arrays:
            assert region is not None
            if written(*region) is not False:  # no pagemap, or written already
                baseline._disarm()
                return None
        return baseline

    def _walk(self, root: Any) -> None:
        numpy = sys.modules.get("numpy")
        immutable = _immutable_kinds()
        seen: set[int] = set(warnfilters.registry_ids)  # (warnings' bookkeeping, not state)
        stack = [root]
        while stack:
            obj = stack.pop()
            kind = type(obj)
            if kind in _ATOMS:
                continue
            if id(obj) in seen or obj is _BUILTINS:
                continue
            seen.add(id(obj))
            if kind is list:
                if not (len(obj) >= LARGE_LIST and self._track(obj)):
                    self.lists.append((obj, obj.copy()))
                if not set(map(type, obj)) <= _ATOMS:  # one pass in C for lists of atoms
                    stack.extend(obj)
            elif kind is dict:
                keys, values = list(obj), list(obj.values())
                self.dicts.append((obj, keys, values))
                stack.extend(keys)
                if not set(map(type, values)) <= _ATOMS:
                    stack.extend(values)
            elif kind is tuple or kind is frozenset:
                if not set(map(type, obj)) <= _ATOMS:
                    stack.extend(obj)
            elif kind is set:
                items = list(obj)
                self.sets.append((obj, items))
                stack.extend(items)
            elif kind in immutable:
                continue
            elif kind is collections.deque:
                items = list(obj)
                self.deques.append((obj, items))
                if not set(map(type, items)) <= _ATOMS:
                    stack.extend(items)
            elif kind is bytearray:
                self.buffers.append((obj, bytes(obj)))
            elif kind is pyarray.array:
                self.buffers.append((obj, obj.tobytes()))
            elif isinstance(obj, type):
                if obj.__flags__ & _HEAPTYPE and not _by_name(obj):
                    raise _Unwatched(kind)  # a class sent by value: its attributes are state
                continue  # a built-in class, or the worker's own (as for modules)
            elif numpy is not None and isinstance(obj, numpy.generic) and not isinstance(obj, numpy.void):
                continue  # numpy scalars are immutable (structured "void" ones are not)
            elif numpy is not None and kind is numpy.ndarray and not obj.dtype.hasobject:
                self._array(obj, numpy)
            elif kind is types.ModuleType or kind is types.BuiltinFunctionType:
                continue  # the worker's own: their identity is watched by their container
            elif kind is types.FunctionType:
                if _by_reference(obj):
                    continue  # the worker's own module function, as for modules
                self.functions.append((obj, _bindings(obj)))
                stack.extend(_carried(obj))
            else:
                base = plain_base(kind)
                if base is None:
                    raise _Unwatched(kind)
                self._instance(obj, kind, base, stack)

    def _instance(self, obj: Any, kind: type, base: type, stack: list[Any]) -> None:
        """An instance of a class of Python code: its class, ``__dict__`` and base's items."""
        attrs = object.__getattribute__(obj, "__dict__") if kind.__dictoffset__ else None
        if attrs is not None and type(attrs) is not dict:
            raise _Unwatched(kind)
        self.instances.append((obj, kind, attrs))
        if attrs is not None:
            stack.append(attrs)  # watched as a dict, even empty: an attribute set later shows
        if base is tuple or base is frozenset:
            items = list(base.__iter__(obj))
            if not set(map(type, items)) <= _ATOMS:
                stack.extend(items)
        elif base in _MAPPINGS:
            keys, values = list(dict.keys(obj)), list(dict.values(obj))
            order = list(collections.OrderedDict.__iter__(obj)) if base is collections.OrderedDict else None
            factory = obj.default_factory if base is collections.defaultdict else _NO_FACTORY
            self.mappings.append((obj, keys, values, order, factory))
            stack.extend(keys)
            stack.extend(values)
            if factory is not _NO_FACTORY:
                stack.append(factory)

    def _track(self, items: list[Any]) -> bool:
        """Have the kernel watch the pages of a large list's item array; False if it cannot."""
        if _probe is None:
            return False
        address = _probe[0](items)
        pages = writewatch.pages_within(address, len(items) * _POINTER)
        if not pages[1] or not writewatch.arm(*pages):
            return False
        self._armed.append(pages)
        self.tracked.append((items, items.copy(), address, pages))
        return True

    def _tracked_changed(self) -> bool:
        assert _probe is not None
        address_of, memcmp = _probe
        for items, saved, address, (start, length) in self.tracked:
            if len(items) != len(saved) or address_of(items) != address:
                return True  # resized, or its item array moved
            other = address_of(saved)
            head, tail = start - address, start + length - address  # the partial pages at the ends
            rest = len(items) * _POINTER - tail
            if memcmp(address, other, head) or memcmp(address + tail, other + tail, rest):
                return True
            seen = writewatch.written(start, length)
            if seen is False:
                continue
            if not same_items(items, saved):
                return True
            if seen:  # written, yet the same items: watch it from here again
                writewatch.rearm(start, length)
        return False

    def _array(self, array: Any, numpy: Any) -> None:
        low, high = _byte_bounds(array, numpy)
        region = self.region
        if region is not None and region[0] <= low and high <= region[0] + region[1]:
            self.mapped_arrays = True
            content = None
        elif array.nbytes <= SMALL_ARRAY:
            content = array.tobytes()
        else:
            raise _Unwatched(type(array))
        self.arrays.append((array, _array_meta(array), content))

    def empty(self) -> bool:
        """Whether this baseline watches nothing (:meth:`changed` is then always False)."""
        return not (
            self.tracked
            or self.lists
            or self.dicts
            or self.sets
            or self.instances
            or self.mappings
            or self.functions
            or self.deques
            or self.buffers
            or self.arrays
            or self.mapped_arrays
        )

    def changed(self) -> bool:
        """Has anything in the value changed since the baseline was taken?"""
        if self.tracked and self._tracked_changed():
            return True
        for items, saved in self.lists:
            if not same_items(items, saved):
                return True
        for mapping, keys, values in self.dicts:
            if len(mapping) != len(keys):
                return True
            if not (same_items(list(mapping), keys) and same_items(list(mapping.values()), values)):
                return True
        for members, saved in self.sets:
            if len(members) != len(saved) or not same_items(list(members), saved):
                return True
        for obj, kind, attrs in self.instances:
            if type(obj) is not kind or (attrs is not None and obj.__dict__ is not attrs):
                return True
        for mapping, keys, values, order, factory in self.mappings:
            if len(mapping) != len(keys):
                return True
            if not same_items(list(dict.keys(mapping)), keys):
                return True
            if not same_items(list(dict.values(mapping)), values):
                return True
            if order is not None and not same_items(list(collections.OrderedDict.__iter__(mapping)), order):
                return True
            if factory is not _NO_FACTORY and mapping.default_factory is not factory:  # type: ignore[attr-defined]
                return True
        for func, bound in self.functions:
            if not all(map(operator.is_, _bindings(func), bound)):
                return True
        for queue, items in self.deques:
            if len(queue) != len(items) or not same_items(list(queue), items):
                return True
        for buffer, data in self.buffers:
            if len(buffer) * getattr(buffer, "itemsize", 1) != len(data):
                return True
            if (buffer if type(buffer) is bytearray else buffer.tobytes()) != data:
                return True
        for array, meta, content in self.arrays:
            if _array_meta(array) != meta:
                return True
            if content is not None and array.tobytes() != content:
                return True
        if self.mapped_arrays:
            assert self.region is not None
            return written(*self.region) is not False
        return False


_BUILTINS = builtins.__dict__
_NO_FACTORY = object()  # in ``Baseline.mappings``: not a ``defaultdict``
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made at run time (Python code, or a spec)


def _disarm_all(ranges: list[tuple[int, int]]) -> None:
    for pages in ranges:
        writewatch.disarm(*pages)
    ranges.clear()


def _by_reference(func: types.FunctionType) -> bool:
    """Is *func* a function of an imported module (not one rebuilt by value)?"""
    module = sys.modules.get(func.__module__)
    return module is not None and func.__globals__ is getattr(module, "__dict__", None)


def _carried(func: types.FunctionType) -> list[Any]:
    """What a function rebuilt by value carries: globals, defaults, closure, attributes."""
    out: list[Any] = [func.__globals__]
    if func.__defaults__:
        out.append(func.__defaults__)
    if func.__kwdefaults__:
        out.append(func.__kwdefaults__)
    out.append(func.__dict__)  # even empty: a task may add an attribute (f.count = ...)
    out += [value for value in _cells(func) if value is not _EMPTY_CELL]
    return out


_EMPTY_CELL = object()  # a closure cell with no value (``_cells``)


def _cells(func: types.FunctionType) -> list[Any]:
    """The object in each of *func*'s closure cells (``_EMPTY_CELL`` for an empty one)."""
    cells = []
    for cell in func.__closure__ or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:  # an empty cell
            cells.append(_EMPTY_CELL)
    return cells


def _bindings(func: types.FunctionType) -> tuple[Any, ...]:
    """What a task may rebind on a function, compared by identity: its code, defaults,
    keyword defaults, ``__dict__`` and the object in each closure cell (the values
    themselves are watched as values, by :func:`_carried`)."""
    return (func.__code__, func.__defaults__, func.__kwdefaults__, func.__dict__, *_cells(func))


def watch_function(obj: Any) -> Baseline | None:
    """A baseline of the state a rebuilt function carries; None when it cannot be watched.

    A function of an importable module carries nothing (its state is the worker's
    module); a function rebuilt by value carries its globals, defaults, closure and
    attributes. Classes and other callables are not watched (None).
    """
    if type(obj) is types.BuiltinFunctionType:
        return Baseline(None)
    if type(obj) is not types.FunctionType:
        return None
    if _by_reference(obj):
        return Baseline(None)
    return Baseline.watch(obj, None)  # its bindings and what it carries (``_walk``)


def _array_meta(array: Any) -> tuple[Any, ...]:
    face = array.__array_interface__
    return (array.shape, array.strides, array.dtype, face["data"], array.flags.writeable)


def _byte_bounds(array: Any, numpy: Any) -> tuple[int, int]:
    """The lowest and one-past-highest addresses an array's data spans."""
    low = high = array.__array_interface__["data"][0]
    if array.size:
        for extent, stride in zip(array.shape, array.strides, strict=True):
            if stride < 0:
                low += stride * (extent - 1)
            else:
                high += stride * (extent - 1)
        high += array.itemsize
    return low, high
