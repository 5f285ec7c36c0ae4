"""A class's own pickling (``__reduce__``, ``__getstate__``, copyreg) wins over hybrid's snapshots."""

from __future__ import annotations

import copyreg
import pickle
import queue
import threading

import pytest

from picklepool.pickler import get_pickler

hybrid = get_pickler("hybrid")


def roundtrip(obj):
    return pickle.loads(hybrid.dumps(obj))


def _rebuild_tagged(items, tag):
    q = TaggedQueue()
    q.tag = tag
    for item in items:
        q.put(item)
    return q


class TaggedQueue(queue.Queue):
    tag = "untouched"

    def __reduce__(self):
        return (_rebuild_tagged, (list(self.queue), "by its own __reduce__"))


class ConnectedQueue(queue.Queue):
    """Holds something unpicklable, which its own __getstate__ leaves out."""

    def __init__(self):
        super().__init__()
        self.connection = (i for i in range(3))  # a generator: cannot be pickled

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["connection"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.connection = "reconnected"


class CountingCondition(threading.Condition):
    def __reduce_ex__(self, protocol):
        return (CountingCondition, ())


class SetstateOnlyQueue(queue.Queue):
    def __setstate__(self, state):
        self.__dict__.update(state)
        self.restored = True


def test_queue_subclass_own_reduce_wins():
    q = TaggedQueue()
    q.put("job")
    copy = roundtrip(q)
    assert copy.tag == "by its own __reduce__" and copy.get_nowait() == "job"


def test_queue_subclass_own_getstate_drops_what_cannot_travel():
    q = ConnectedQueue()
    q.put("job")
    copy = roundtrip(q)
    assert copy.connection == "reconnected" and copy.get_nowait() == "job"
    assert copy.mutex.acquire(blocking=False)  # its mutex, left in its state, is still rebuilt fresh
    copy.mutex.release()
    with copy.not_empty:  # and its conditions are still tied to it
        pass


def test_queue_subclass_with_only_setstate_gets_the_snapshot_through_it():
    q = SetstateOnlyQueue()
    q.put(1)
    copy = roundtrip(q)
    assert copy.restored and copy.get_nowait() == 1


def test_condition_subclass_own_reduce_ex_wins():
    copy = roundtrip(CountingCondition(threading.RLock()))
    assert type(copy) is CountingCondition and type(copy._lock) is type(threading.RLock())


def test_copyreg_reducer_registered_by_the_user_wins():
    class Registered(queue.Queue):
        pass

    copyreg.pickle(Registered, lambda q: (list, (["from copyreg", *q.queue],)))
    try:
        q = Registered()
        q.put("job")
        assert roundtrip(q) == ["from copyreg", "job"]
    finally:
        del copyreg.dispatch_table[Registered]


class Holder(threading.local):
    def __init__(self, value=0):
        self.value = value

    def __reduce__(self):
        return (Holder, (self.value,))


def test_thread_local_subclass_own_reduce_wins():
    assert roundtrip(Holder(5)).value == 5


class Account:
    """Owns an RLock and leaves it out of its own state."""

    def __init__(self):
        self._lock = threading.RLock()
        self.balance = 10

    def __getstate__(self):
        return {"balance": self.balance}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()


class AccountKeepingItsLock(Account):
    def __getstate__(self):
        return self.__dict__.copy()


@pytest.mark.parametrize("cls", [Account, AccountKeepingItsLock])
def test_own_getstate_is_pickled_without_taking_the_lock(cls):
    account = cls()
    held, done = threading.Event(), threading.Event()

    def hold():
        with account._lock:
            held.set()
            done.wait()

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    try:
        copy = roundtrip(account)  # another thread holds the lock: must not wait for it
    finally:
        done.set()
        t.join()
    assert copy.balance == 10 and copy._lock.acquire(blocking=False)
    copy._lock.release()
