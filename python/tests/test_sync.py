"""Locks, events, barriers, counters and queues across processes, shaped
as ``threading``'s and ``queue``'s: semantics, a dead holder reported and
repaired, the end of a stream, pickling through process pools."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle
import queue
import threading
import time

import pytest
import workers
from conftest import run_python, spawn_python

import shmkit

SPAWN = multiprocessing.get_context("spawn")


def test_a_lock_behaves_as_threading_lock(name: str) -> None:
    lock = shmkit.Lock.create(name)
    assert not lock.locked()
    assert lock.acquire() is True and lock.locked()
    with pytest.raises(shmkit.Deadlock):
        lock.acquire(timeout=0.01)  # threading.Lock would hang here forever
    other = shmkit.Lock.open(name)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(other.acquire(timeout=0.05)))
    t.start()
    t.join()
    assert got == [False], "another thread times out"
    with pytest.raises(ValueError):
        lock.acquire(False, 1.0)
    lock.release()
    with pytest.raises(shmkit.NotHeld):
        lock.release()
    with lock:
        taken = run_python(f"import shmkit; print(shmkit.Lock.open({name!r}).acquire(blocking=False))")
        assert lock.locked() and taken.stdout.strip() == "False"
    assert not lock.locked()
    lock.close()
    with pytest.raises(shmkit.Closed):
        lock.acquire()


def test_a_dead_holder_is_reported_until_acknowledged(name: str) -> None:
    lock = shmkit.Lock.create(name)
    p = SPAWN.Process(target=workers.lock_and_die, args=(lock,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    # `with`: the block does not run, nothing stays held, the death stays told.
    ran = False
    with pytest.raises(shmkit.OwnerDied) as e:
        with lock:
            ran = True
    assert not ran and not lock.locked() and e.value.lock is lock
    # acquire(): raised with the lock held; repair, acknowledge, release.
    with pytest.raises(shmkit.OwnerDied):
        lock.acquire()
    assert lock.locked()
    lock.acknowledge()
    lock.release()
    with lock:  # no longer told
        pass
    with pytest.raises(shmkit.NotHeld):
        lock.acknowledge()
    lock.close()


def test_rwlock_readers_share_and_a_writer_excludes(name: str) -> None:
    rw = shmkit.RWLock.create(name)
    with rw.read():
        shared: list[bool] = []

        def read_too() -> None:
            with rw.read(timeout=5):
                shared.append(True)

        t = threading.Thread(target=read_too)
        t.start()
        t.join()
        assert shared == [True], "another reader shares"
        with pytest.raises(shmkit.Deadlock):
            with rw.write(timeout=5):  # this thread reads: it would wait for itself
                pass
    with rw.write():
        out = run_python(
            f"""
            import shmkit
            try:
                with shmkit.RWLock.open({name!r}).read(timeout=0.05): print("read")
            except shmkit.Timeout: print("timeout")
            """
        )
        assert out.stdout.strip() == "timeout"
    access = rw.read()
    with access:
        with pytest.raises(ValueError):
            access.__enter__()
    rw.close()


def test_a_dead_writer_of_an_rwlock_is_repaired_through_a_write_access(name: str) -> None:
    rw = shmkit.RWLock.create(name)
    run_python(f"import os, shmkit; w = shmkit.RWLock.open({name!r}).write(); w.acquire(); os._exit(0)")
    for access in (rw.read(), rw.write()):  # `with`: the block does not run, nothing is held
        with pytest.raises(shmkit.OwnerDied):
            with access:
                raise AssertionError("the block ran")
        assert not access.held
    w = rw.write(timeout=5)
    with pytest.raises(shmkit.OwnerDied):
        w.acquire()  # held: repair, acknowledge, release
    assert w.held
    w.acknowledge()
    w.release()
    with pytest.raises(shmkit.NotHeld):
        w.release()
    with rw.read(timeout=5), rw.read(timeout=5):  # no longer told; reads nest on a thread
        pass
    with rw.write(timeout=5):
        pass
    rw.close()


def test_an_rwlock_writer_gets_in_under_overlapping_readers(name: str) -> None:
    rw = shmkit.RWLock.create(name)
    readers = [
        spawn_python(
            f"""
            import time, shmkit
            rw = shmkit.RWLock.open({name!r})
            print("reading", flush=True)
            while True:
                with rw.read():
                    time.sleep(0.01)
            """
        )
        for _ in range(2)
    ]
    try:
        for r in readers:
            assert r.stdout is not None and r.stdout.readline().strip() == "reading"
        for _ in range(5):
            with rw.write(timeout=20):  # the writer holds the gate while readers drain
                pass
    finally:
        for r in readers:
            r.kill()
            r.communicate()
    rw.close()


def test_an_rwlock_access_used_from_another_thread_is_refused_and_never_released_there(name: str) -> None:
    rw = shmkit.RWLock.create(name)
    access = rw.read()
    access.acquire()
    errors: list[BaseException] = []

    def elsewhere() -> None:
        for call in (access.release, access.acquire, access.__enter__, lambda: access.held):
            try:
                call()
            except shmkit.NotHeld as e:
                errors.append(e)

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join(10)
    assert len(errors) == 4 and all("belongs to the thread" in str(e) for e in errors)
    assert access.held, "still held by its own thread"
    with pytest.raises(ValueError):
        with access:  # entered twice: refused, and the first hold stays
            pass
    assert access.held
    access.release()
    with rw.write(timeout=5):
        pass
    rw.close()


def test_a_lock_closed_by_its_holder_is_released(name: str) -> None:
    lock = shmkit.Lock.create(name)
    other = shmkit.Lock.open(name)
    lock.acquire()
    shmkit.Lock.open(name).close()  # another handle, which took nothing: releases nothing
    with pytest.raises(shmkit.NotHeld):
        other.release()
    assert other.locked()
    lock.close()
    assert not other.locked()
    assert other.acquire(timeout=5)
    other.release()
    other.close()


def test_apply_on_one_thread_and_a_write_on_another_never_deadlock(name: str) -> None:
    d = shmkit.Dict.create(name, "i8", "i8", capacity=64)
    inside = threading.Event()

    def slow(v: int | None) -> int:
        inside.set()
        time.sleep(0.2)  # holds the stripe; needs the GIL to finish
        return (v or 0) + 1

    t = threading.Thread(target=lambda: d.apply(1, slow))
    t.start()
    assert inside.wait(10)
    d[1] = 5  # the same stripe: waits with the GIL released
    t.join(10)
    assert not t.is_alive() and d[1] == 5
    d.close()


def test_an_event_wakes_waiters_in_other_processes(name: str) -> None:
    ev = shmkit.Event.create(name)
    assert not ev.is_set() and ev.wait(0.01) is False and ev.wait(-1) is False  # negative: no wait, as threading
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=SPAWN) as pool:
        waits = [pool.submit(workers.wait_for, ev) for _ in range(2)]
        time.sleep(0.2)
        ev.set()
        assert [w.result(60) for w in waits] == [True, True]
    ev.clear()
    assert not ev.is_set()
    auto = shmkit.Event.create(name + "-a", auto_reset=True)
    auto.set()
    assert auto.wait(0) and not auto.wait(0.01), "one waiter per set"
    ev.close()
    auto.close()


def test_a_barrier_meets_and_times_out(name: str) -> None:
    b = shmkit.Barrier.create(name, 3)
    c = shmkit.Counter.create(name + "-c")
    assert b.parties == 3
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=SPAWN) as pool:
        others = [pool.submit(workers.barrier_then_count, b, c) for _ in range(2)]
        leaders = [b.wait(timeout=60)] + [o.result(60) for o in others]
    assert sorted(leaders) == [False, False, True] and c.value == 2
    with pytest.raises(shmkit.Timeout):
        b.wait(timeout=0.05)
    b.close()
    c.close()


def test_a_counter_is_atomic(name: str) -> None:
    c = shmkit.Counter.create(name, 10)
    assert c.add(5) == 10 and c.sub() == 15 and c.value == 14
    assert c.compare_exchange(14, 0) == 14 and c.compare_exchange(14, 1) == 0
    c.value = 2**64 - 1
    assert c.add() == 2**64 - 1 and c.value == 0, "wraps as u64"
    with pytest.raises(OverflowError):
        c.add(-1)
    c.close()


def test_a_queue_streams_records_between_processes(name: str) -> None:
    q = shmkit.Queue.create(name, "i8", capacity=8)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=SPAWN) as pool:
        taker = pool.submit(workers.take_all, q)
        pool.submit(workers.put_all, q, list(range(100))).result(60)
        time.sleep(0.1)
        q.shutdown()  # the end of the stream: no sentinel
        assert taker.result(60) == list(range(100))
    assert q.is_shutdown()
    with pytest.raises(shmkit.ShutDown) as e:
        q.put(1)
    with pytest.raises(shmkit.ShutDown):
        q.get()
    assert isinstance(e.value, shmkit.Error)
    q.close()


def test_a_queue_as_queue_queue(name: str) -> None:
    q = shmkit.Queue.create(name, [("id", "<u4"), ("x", "<f8")], capacity=2)
    assert q.empty() and not q.full() and q.capacity == 2
    q.put((1, 0.5))
    q.put_nowait((2, 1.5))
    assert q.full() and q.qsize() == 2 and len(q) == 2
    with pytest.raises(shmkit.Full) as full:
        q.put((3, 0.0), timeout=0.01)
    with pytest.raises(queue.Full):
        q.put_nowait((3, 0.0))
    assert isinstance(full.value, queue.Full)
    first = q.get()
    assert (int(first["id"]), float(first["x"])) == (1, 0.5)
    q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(shmkit.Empty):
        q.get_nowait()
    q.close()


def test_a_drained_queue_whose_senders_are_gone_is_disconnected(name: str) -> None:
    q = shmkit.Queue.create(name, "i4", capacity=4)
    run_python(f"import shmkit; q = shmkit.Queue.open({name!r}); q.put(7)")
    assert q.get(timeout=10) == 7
    with pytest.raises(shmkit.Disconnected) as e:
        q.get(timeout=10)
    assert isinstance(e.value, BrokenPipeError)
    q.close()


def test_every_primitive_pickles_to_its_name(name: str) -> None:
    made = [
        shmkit.Lock.create(name + "-l"),
        shmkit.RWLock.create(name + "-r"),
        shmkit.Event.create(name + "-e"),
        shmkit.Barrier.create(name + "-b", 2),
        shmkit.Counter.create(name + "-c"),
        shmkit.Queue.create(name + "-q", "u1", 4),
        shmkit.Dict.create(name + "-d", "u1", "u1", 4),
        shmkit.List.create(name + "-li", "u1", 4),
        shmkit.create(name + "-a", 4),
    ]
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=SPAWN) as pool:
        described = list(pool.map(workers.describe, made))
    assert described == [(type(h).__name__, h.name, False) for h in made]
    for h in made:
        blob = pickle.dumps(h)
        assert len(blob) < 200
        assert pickle.loads(blob).name == h.name and h.name in repr(h)
        h.close()
        assert h.closed
