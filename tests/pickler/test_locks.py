"""Locks, conditions, events, semaphores and queues under the hybrid pickler."""

from __future__ import annotations

import collections
import contextlib
import pickle
import queue
import threading

import pytest

from picklepool import Parallel, PicklingError, delayed
from picklepool.pickler import get_pickler, locks

hybrid = get_pickler("hybrid")


def roundtrip(obj):
    return pickle.loads(hybrid.dumps(obj))


def released(lock) -> bool:
    """True when *lock* can be taken at once by this thread (and gives it back)."""
    if lock.acquire(blocking=False):
        lock.release()
        return True
    return False


@pytest.mark.parametrize(
    "make", [threading.Lock, threading.RLock, locks.PyRLockType], ids=["Lock", "RLock", "PyRLock"]
)
def test_held_lock_is_rebuilt_fresh_and_released(make):
    lock = make()
    lock.acquire()
    try:
        copy = roundtrip(lock)
    finally:
        lock.release()
    assert type(copy) is type(lock) and copy is not lock
    assert released(copy)


def test_condition_stays_tied_to_its_rebuilt_lock():
    lock = threading.RLock()
    cond = threading.Condition(lock)
    box = roundtrip({"lock": lock, "cond": cond})
    assert isinstance(box["cond"], threading.Condition)
    assert box["cond"]._lock is box["lock"]
    with box["cond"]:
        box["cond"].notify_all()  # usable: owns the rebuilt lock, no stale waiters


def test_condition_with_a_waiting_thread_arrives_without_waiters():
    cond = threading.Condition()
    waiting = threading.Event()
    stop = threading.Event()

    def waiter():
        with cond:
            waiting.set()
            cond.wait_for(stop.is_set)

    t = threading.Thread(target=waiter)
    t.start()
    waiting.wait()
    with cond:  # the waiter is inside wait(): it released the lock and queued a waiter lock
        assert cond._waiters
        copy = roundtrip(cond)
        stop.set()
        cond.notify_all()
    t.join()
    assert not copy._waiters and released(copy._lock)


@pytest.mark.parametrize("is_set", [True, False])
def test_event_keeps_whether_it_is_set(is_set):
    event = threading.Event()
    if is_set:
        event.set()
    assert roundtrip(event).is_set() is is_set


def test_semaphores_keep_their_value_and_bound():
    sem = threading.Semaphore(3)
    sem.acquire()
    bounded = threading.BoundedSemaphore(4)
    bounded.acquire()
    bounded.acquire()
    s, b = roundtrip((sem, bounded))
    assert type(s) is threading.Semaphore and s._value == 2
    assert type(b) is threading.BoundedSemaphore and b._value == 2
    b.release()
    b.release()
    with pytest.raises(ValueError):  # still bounded at 4
        b.release()


@pytest.mark.parametrize("cls", [queue.Queue, queue.LifoQueue, queue.PriorityQueue])
def test_queue_keeps_items_order_maxsize_and_unfinished_count(cls):
    q = cls(maxsize=10)
    for item in [(3, "c"), (1, "a"), (2, "b")]:
        q.put(item)
    q.get()
    q.task_done()
    copy = roundtrip(q)
    assert type(copy) is cls and copy.maxsize == 10 and copy.unfinished_tasks == 2
    expected = [q.get_nowait() for _ in range(q.qsize())]
    assert [copy.get_nowait() for _ in range(copy.qsize())] == expected
    for cond in (copy.not_empty, copy.not_full, copy.all_tasks_done):
        assert cond._lock is copy.mutex
    assert released(copy.mutex)


def test_queue_subclass_is_snapshotted_too():
    class Tagged(queue.Queue):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

    q = Tagged("jobs")
    q.put(1)
    copy = roundtrip(q)
    assert type(copy).__name__ == "Tagged" and copy.tag == "jobs" and copy.get_nowait() == 1


def test_queue_is_snapshotted_under_its_mutex(monkeypatch):
    monkeypatch.setattr(locks, "SNAPSHOT_TIMEOUT", 0.05)
    q = queue.Queue()
    q.put(1)
    with q.mutex, pytest.raises(PicklingError, match="mutex stayed held"):
        hybrid.dumps(q)
    assert released(q.mutex)


class _NeverFree:
    """A queue mutex that is never free: records how long each snapshot waited for it."""

    def __init__(self):
        self.waits = []

    def acquire(self, blocking=True, timeout=-1):
        self.waits.append(timeout)
        return False

    def release(self):  # pragma: no cover - never acquired
        raise AssertionError("released a mutex never acquired")


def test_a_held_queue_is_waited_for_once_per_call_not_again_to_name_the_task():
    # Looking for the task that holds the queue pickled its arguments again, which
    # waited SNAPSHOT_TIMEOUT again: a 10 s failure took 20 s to report.
    q = queue.Queue()
    q.mutex = _NeverFree()
    with pytest.raises(PicklingError, match=r"task 0: .*mutex stayed held for 10s"):
        Parallel(n_jobs=2)(delayed(len)(q) for _ in range(3))
    assert q.mutex.waits == [locks.SNAPSHOT_TIMEOUT, 0.0]


def test_simple_queue_keeps_its_items_and_the_original_is_untouched():
    q = queue.SimpleQueue()
    for item in ["a", None, "c"]:
        q.put(item)
    q.get()
    copy = roundtrip(q)
    assert [copy.get_nowait() for _ in range(copy.qsize())] == [None, "c"]
    assert [q.get_nowait() for _ in range(q.qsize())] == [None, "c"]


def test_shared_references_stay_shared():
    lock = threading.Lock()
    q = queue.Queue()
    a = {"lock": lock, "queue": q}
    b = {"lock": lock, "queue": q}
    a2, b2 = roundtrip((a, b))
    assert a2["lock"] is b2["lock"] and a2["queue"] is b2["queue"]
    assert a2["lock"] is not lock


class Account:
    """A user class guarding its state with an RLock."""

    def __init__(self, balance=0):
        self._lock = threading.RLock()
        self.balance = balance
        self.history = []

    def deposit(self, amount):
        with self._lock:
            self.balance += amount
            self.history.append(amount)


class LockProbe:
    """Records, when pickled, whether the account's lock is held by the pickling thread."""

    def __init__(self, account):
        self.account = account
        self.seen = []

    def __reduce__(self):
        self.seen.append(self.account._lock._is_owned())
        return (int, ())


def test_rlock_owner_is_snapshotted_while_holding_its_lock():
    acct = Account(5)
    probe = LockProbe(acct)
    acct.history.append(probe)
    copy = roundtrip(acct)
    assert probe.seen == [True]  # the state was written under acct._lock
    assert released(acct._lock)  # and the lock was given back
    assert copy.balance == 5 and copy.history == [0] and released(copy._lock)


class SlotAccount:
    """Account with __slots__: its RLock sits in a slot, not in a __dict__."""

    __slots__ = ("__lock", "balance", "history")

    def __init__(self, balance=0):
        self.__lock = threading.RLock()
        self.balance = balance
        self.history = []

    @property
    def lock(self):
        return self.__lock


class SlotLockProbe:
    def __init__(self, account):
        self.account = account
        self.seen = []

    def __reduce__(self):
        self.seen.append(self.account.lock._is_owned())
        return (int, ())


def test_rlock_owner_with_slots_is_snapshotted_while_holding_its_lock():
    acct = SlotAccount(5)
    probe = SlotLockProbe(acct)
    acct.history.append(probe)
    copy = roundtrip(acct)
    assert probe.seen == [True]  # it was False: a slot's lock was never taken
    assert released_elsewhere(acct.lock)
    assert copy.balance == 5 and copy.history == [0] and released(copy.lock)
    assert copy.lock is not acct.lock and not hasattr(copy, "__dict__")


class Registry(collections.OrderedDict):
    """An OrderedDict subclass with a constructor of its own and an RLock (pickled by
    hybrid's ``constructors``: the base's constructor, then its __dict__)."""

    def __init__(self, name):
        super().__init__()
        self.name = name
        self._lock = threading.RLock()


class Tally(collections.Counter):
    def __init__(self, name):
        super().__init__()
        self.name = name
        self._lock = threading.RLock()


class Jobs(collections.deque):
    def __init__(self, name):
        super().__init__()
        self.name = name
        self._lock = threading.RLock()


@pytest.mark.parametrize("cls", [Registry, Tally, Jobs])
def test_a_stdlib_subclass_with_a_constructor_of_its_own_is_snapshotted_while_holding_its_lock(cls):
    # Such subclasses are made by their base's constructor (constructors.py), and that
    # reducer skipped the lock: a snapshot taken while another thread was inside
    # `with self._lock:` sent its change half done.
    owner = cls("jobs")
    probe = LockProbe(owner)
    if isinstance(owner, collections.deque):
        owner.append(probe)
    else:
        owner["probe"] = 1
        owner.name = probe
    copy = roundtrip(owner)
    assert probe.seen == [True]
    assert released(owner._lock) and released(copy._lock) and copy._lock is not owner._lock
    assert type(copy) is cls and (list(copy) == [0] if cls is Jobs else (copy.name, copy["probe"]) == (0, 1))


def test_rlock_owner_pickles_from_inside_its_own_lock():
    acct = Account(1)
    with acct._lock:  # reentrant: no deadlock
        copy = roundtrip(acct)
    assert copy.balance == 1 and released(acct._lock)


def test_lock_is_released_when_pickling_the_state_fails():
    acct = Account()
    acct.history.append(i for i in range(3))  # a generator: cannot be pickled
    with pytest.raises(TypeError, match="generator"):
        hybrid.dumps(acct)
    assert released_elsewhere(acct._lock)


def released_elsewhere(lock) -> bool:
    """True when another thread can take *lock* (an RLock held here would still look free here)."""
    out = []
    t = threading.Thread(target=lambda: out.append(released(lock)))
    t.start()
    t.join()
    return out[0]


def test_nested_lock_held_elsewhere_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(locks, "SNAPSHOT_TIMEOUT", 0.05)
    outer, inner = Account(), Account()
    outer.history.append(inner)
    holding, done = threading.Event(), threading.Event()

    def hold():
        with inner._lock:
            holding.set()
            done.wait()

    t = threading.Thread(target=hold)
    t.start()
    holding.wait()
    try:
        with pytest.raises(PicklingError, match="lock-order conflict"):
            hybrid.dumps(outer)
    finally:
        done.set()
        t.join()
    assert released_elsewhere(outer._lock)


@contextlib.contextmanager
def _held_until_said(monkeypatch, lock):
    """*lock* held by another thread until the snapshot waiting for it has warned
    (``HELD_WARNING`` made short): then the holder lets go and the call goes on."""
    monkeypatch.setattr(locks, "HELD_WARNING", 0.01)
    holding, warned = threading.Event(), threading.Event()
    real = locks._held_long

    def held_long(lock, what):
        try:
            real(lock, what)
        finally:
            warned.set()  # lets the holder go: the call goes on

    monkeypatch.setattr(locks, "_held_long", held_long)

    def hold():
        with lock:
            holding.set()
            assert warned.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    assert holding.wait(60)
    try:
        yield
    finally:
        warned.set()
        t.join()


@pytest.mark.parametrize("kind", ["object", "SharedState"])
def test_a_lock_held_long_by_another_thread_is_said_while_the_call_waits_for_it(monkeypatch, kind):
    # A call waits for a lock another thread holds, to snapshot under it: one held for
    # ever (or by a thread that ended holding it) made the call wait for ever, silently.
    # Now a RuntimeWarning names the object, at the call's line; the call still waits.
    from picklepool import SharedState

    obj = Account(5) if kind == "object" else SharedState(5)
    with _held_until_said(monkeypatch, obj._lock):
        with pytest.warns(RuntimeWarning, match="waited .* to snapshot a (Account|SharedState)") as rec:
            data = hybrid.dumps(obj)
    assert rec[0].filename == __file__  # the call's line, not picklepool's
    assert "another thread holds that lock" in str(rec[0].message)
    copy = pickle.loads(data)
    assert (copy.balance if kind == "object" else copy.value) == 5


def balance_of(account):
    return account.balance


@pytest.mark.parametrize("via", ["Parallel", "Executor"])
def test_the_warning_of_a_lock_held_long_names_the_task_being_sent(monkeypatch, via):
    # It named the object only: with many tasks in flight, which call waits was unsaid (and
    # an Executor's, made in its own thread, pointed at threading.py).
    from picklepool import Executor

    account = Account(5)
    with _held_until_said(monkeypatch, account._lock):
        with pytest.warns(RuntimeWarning, match="to snapshot a Account") as rec:
            if via == "Parallel":
                got = Parallel(n_jobs=2)(delayed(balance_of)(account) for _ in range(1))
            else:
                with Executor(max_workers=2) as ex:
                    got = [ex.submit(balance_of, account).result(timeout=60)]
    assert got == [5]
    message = str(rec[0].message)
    assert " for task 0" in message, message
    if via == "Parallel":
        assert "balance_of(" in message


def test_a_nested_lock_held_elsewhere_is_a_lock_order_error_under_the_callers_hold_too(monkeypatch):
    # An Executor's manager thread snapshots an object whose RLock the submitting thread
    # holds under that hold (locks.snapshots_for). An inner object's lock held by a third
    # thread, which waits for the outer lock (the other order), was waited for without
    # end: submitter, manager thread and that thread all waited for ever, where Parallel
    # (pickling in the submitting thread, which takes its own RLock again) gives the
    # lock-order error after SNAPSHOT_TIMEOUT.
    monkeypatch.setattr(locks, "SNAPSHOT_TIMEOUT", 0.05)
    outer, inner = Account(), Account()
    outer.history.append(inner)
    holding, done = threading.Event(), threading.Event()
    outcome = []

    def hold_inner():
        with inner._lock:
            holding.set()
            done.wait(30)

    def manager(caller):
        with locks.snapshots_for(frozenset({caller})):
            try:
                hybrid.dumps(outer)
                outcome.append("pickled")
            except PicklingError as exc:
                outcome.append(exc)

    other = threading.Thread(target=hold_inner)
    other.start()
    holding.wait()
    try:
        with outer._lock:  # this thread submitted the call, and waits for it
            pickling = threading.Thread(target=manager, args=(threading.get_ident(),))
            pickling.start()
            pickling.join(10)
            assert not pickling.is_alive(), "waited for the inner lock without end"
    finally:
        done.set()
        other.join()
        pickling.join()
    assert len(outcome) == 1 and "lock-order conflict" in str(outcome[0]), outcome
    assert released_elsewhere(outer._lock) and released_elsewhere(inner._lock)


class Custom:
    """Owns an RLock but pickles itself its own way (drops the lock)."""

    def __init__(self):
        self._lock = threading.RLock()
        self.value = 3

    def __getstate__(self):
        return {"value": self.value}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()


def test_rlock_owner_with_its_own_getstate_keeps_it():
    copy = roundtrip(Custom())
    assert copy.value == 3 and released(copy._lock)


@pytest.mark.parametrize("name", ["pickle", "cloudpickle"])
@pytest.mark.parametrize(
    "make",
    [
        threading.Lock,
        threading.RLock,
        threading.Condition,
        threading.Event,
        queue.Queue,
        queue.SimpleQueue,
        Account,
    ],
)
def test_other_picklers_still_refuse_locks(name, make):
    with pytest.raises(TypeError):
        get_pickler(name).dumps(make())


def _balance(acct, extra):
    with acct._lock:  # the rebuilt lock works in the worker
        acct.deposit(extra)
    return acct.balance, len(acct.history)


def _drain(q, ev, sem):
    items = []
    while not q.empty():
        items.append(q.get_nowait())
        q.task_done()
    return items, ev.is_set(), sem._value


def test_lock_holders_through_parallel():
    acct = Account(10)
    acct.deposit(5)
    out = Parallel(n_jobs=2)(delayed(_balance)(acct, i) for i in range(4))
    assert out == [(15 + i, 2) for i in range(4)]
    assert acct.balance == 15  # changes in workers stay in the workers


def test_queue_event_semaphore_through_parallel():
    q = queue.Queue()
    for i in range(5):
        q.put(i)
    ev = threading.Event()
    ev.set()
    sem = threading.Semaphore(2)
    out = Parallel(n_jobs=2)(delayed(_drain)(q, ev, sem) for _ in range(3))
    assert out == [([0, 1, 2, 3, 4], True, 2)] * 3
    assert q.qsize() == 5


def _make_account(balance):
    return Account(balance)


def test_lock_holders_come_back_from_workers():
    out = Parallel(n_jobs=2)(delayed(_make_account)(i) for i in range(3))
    assert [a.balance for a in out] == [0, 1, 2]
    assert all(released(a._lock) for a in out)


def test_lock_in_args_under_pickle_fails_with_the_path():
    acct = Account()
    with pytest.raises(PicklingError) as info:
        Parallel(n_jobs=2, pickler="pickle")(delayed(_balance)(acct, i) for i in range(2))
    msg = str(info.value)
    assert (
        "args[0]._lock" in msg and "_thread.RLock" in msg and "'pickle'" in msg and "pickler='hybrid'" in msg
    )


@pytest.mark.timeout(60)
def test_a_sharedstate_inside_a_guarded_object_is_a_lock_order_error_not_a_deadlock(monkeypatch):
    # The snapshot of an object holds its RLock while its SharedState is snapshotted; a
    # thread holding the state and waiting for the object's lock made both wait for ever
    # (the state's lock was waited for without end, where a guarded object's is waited
    # for SNAPSHOT_TIMEOUT then named as a lock-order conflict)
    from picklepool import SharedState

    monkeypatch.setattr(locks, "SNAPSHOT_TIMEOUT", 0.01)
    acc = Account(5)
    acc.state = SharedState(1)
    holding, snapshotting = threading.Event(), threading.Event()
    real = locks.acquire_unless_caller

    def acquire(lock, timeout=-1, what="an object"):
        if what == "a SharedState":
            snapshotting.set()  # the object's lock is held for its snapshot now
        return real(lock, timeout, what)

    monkeypatch.setattr(locks, "acquire_unless_caller", acquire)

    def hold():
        with acc.state:
            holding.set()
            assert snapshotting.wait(60)
            with acc._lock:  # waits for the snapshot to let the object's lock go
                pass

    t = threading.Thread(target=hold)
    t.start()
    assert holding.wait(60)
    try:
        with pytest.raises(locks.SnapshotTimeout, match="SharedState.*lock-order conflict"):
            hybrid.dumps(acc)
    finally:
        snapshotting.set()
        t.join()
    assert not acc._lock._is_owned()  # released: a later snapshot takes it
    assert pickle.loads(hybrid.dumps(acc)).state.value == 1


def _wait_for_the_parents_set(event):
    return event.wait()


def _take_from_the_parents_queue(q):
    return q.get()


def _acquire_the_parents_semaphore(sem):
    return sem.acquire()


def _wait_for_its_own_thread(event, q):
    threading.Thread(target=event.set, name="task-setter").start()
    threading.Thread(target=q.put, args=(5,), name="task-producer").start()
    return event.wait(), q.get()


@pytest.mark.parametrize(
    ("task", "make"),
    [
        (_wait_for_the_parents_set, threading.Event),
        (_take_from_the_parents_queue, queue.Queue),
        (_acquire_the_parents_semaphore, lambda: threading.Semaphore(0)),
        (_take_from_the_parents_queue, queue.SimpleQueue),
    ],
)
def test_a_tasks_wait_on_its_copy_that_nothing_can_end_raises_instead_of_hanging(task, make):
    # a stop flag or a consumer's queue sent to a task: the worker's copy never sees the
    # parent's set() or put(), and ev.wait() / q.get() waited for ever, without a word
    # (joblib refuses these objects when the call is sent: cannot pickle '_thread.lock')
    from picklepool.pickler.copiedwait import CopiedWaitError

    with pytest.raises(CopiedWaitError) as info:
        Parallel(n_jobs=2)([delayed(task)(make())])
    text = str(info.value)
    assert "a worker has a copy of it" in text and "multiprocessing.Manager()" in text, text
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert f"task 0: {task.__name__}(" in notes, notes


def test_a_tasks_wait_on_its_copy_that_its_own_thread_ends_waits_as_before():
    # the copy can be set by a thread of the task: no error, a plain wait
    event, q = threading.Event(), queue.Queue()
    assert Parallel(n_jobs=2)([delayed(_wait_for_its_own_thread)(event, q)]) == [(True, 5)]
    assert type(pickle.loads(get_pickler("hybrid").dumps(event))._cond) is threading.Condition  # (here)


def _simple_queue_round_trip(q):
    q.put(2)
    return q.get(), q.get(), type(q).__name__, q


def test_a_tasks_copy_of_a_simple_queue_keeps_its_items_and_comes_back_a_simple_queue():
    # the worker's copy, which refuses a get() nothing could end, is still a SimpleQueue
    # with the parent's items, and what the task returns is a plain one in the parent
    q = queue.SimpleQueue()
    q.put(1)
    [(first, second, name, back)] = Parallel(n_jobs=2)([delayed(_simple_queue_round_trip)(q)])
    assert (first, second, name) == (1, 2, "CopiedSimpleQueue")
    assert type(back) is queue.SimpleQueue and back.empty()
    assert q.qsize() == 1  # (the parent's own is untouched)
