"""Every exception class is raised once, by the misuse or failure it
names, as a case of both ``shmkit.Error`` and its built-in kin."""

from __future__ import annotations

import contextlib
import os
import resource
import traceback
from collections.abc import Callable

import pool_tasks
import pytest
from conftest import Peer, rust, run_python, unique

import shmkit
import shmkit._errors


def not_found(name: str) -> None:
    shmkit.open(name)


def already_exists(name: str) -> None:
    with shmkit.create(name, 1):
        shmkit.create(name, 1)


def invalid_name(name: str) -> None:
    shmkit.create(name + "/x", 1)


def permission_denied(name: str) -> None:
    lock = shmkit.Lock.create(name)
    try:
        os.chmod(f"/dev/shm/{name}", 0o666)  # a lock others may write: refused
        shmkit.Lock.open(name)
    finally:
        lock.close()


def no_space(name: str) -> None:
    shmkit.create(name, 2**50, "u1")


def limit_reached(name: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))
    try:
        shmkit.create(name, 1)  # no file descriptor left for it
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def bad_segment(name: str) -> None:
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(b"not a segment")
    try:
        shmkit.open(name)
    finally:
        os.unlink(f"/dev/shm/{name}")


def wrong_type(name: str) -> None:
    with shmkit.Dict.create(name, "i4", "i4", 4):
        shmkit.open(name)


def invalid_argument(name: str) -> None:
    shmkit.create(name, (2**40, 2**40), "f8")


def unsupported_dtype(name: str) -> None:
    shmkit.create(name, 4, "U8")


def not_owner(name: str) -> None:
    with shmkit.create(name, 1):
        shmkit.open(name).persist()


def busy(name: str) -> None:
    with shmkit.create(name, (4, 4)) as a, a.rows_mut(0, 2):
        with a.rows(1, 3):
            pass


def io_error(name: str) -> None:
    shmkit.open_file("/")  # a directory


def full(name: str) -> None:
    with shmkit.Queue.create(name, "u1", 1) as q:
        q.put(1)
        q.put(2, timeout=0.01)


def empty(name: str) -> None:
    with shmkit.Queue.create(name, "u1", 1) as q:
        q.get(timeout=0.01)


def timeout(name: str) -> None:
    with shmkit.Barrier.create(name, 2) as b:
        b.wait(timeout=0.01)


def stalled(name: str) -> None:
    with shmkit.Queue.create(name, "u1", 64) as q:
        peer = Peer(f"queue-send {name} 10", fault="queue-send-locked")
        assert peer.line() == "sending"
        try:
            for _ in range(100_000):
                q.put_nowait(0)
                q.get_nowait()
        finally:
            peer.finish()


def shut_down(name: str) -> None:
    with shmkit.Queue.create(name, "u1", 1) as q:
        q.shutdown()
        q.put(1)


def disconnected(name: str) -> None:
    with shmkit.Queue.create(name, "u1", 1) as q:
        run_python(f"import shmkit; shmkit.Queue.open({name!r}).put(1)")
        q.get()
        q.get()


def broken(name: str) -> None:
    lock = shmkit.Lock.create(name)
    try:
        at = shmkit.inspect(name)["data_offset"]
        with open(f"/dev/shm/{name}", "r+b") as f:  # another program overwrote the lock
            f.seek(at)
            f.write(b"\xff" * 40)
        lock.acquire(timeout=1)
    finally:
        lock.close()


def hole(name: str) -> None:
    with shmkit.List.create(name, "u1", 4) as items:
        rust(f"list-append {name}", fault="vec-push-claimed")
        items[0]


def closed(name: str) -> None:
    d = shmkit.Dict.create(name, "u1", "u1", 4)
    d.close()
    d[1] = 1


def deadlock(name: str) -> None:
    lock = shmkit.Lock.create(name)
    try:
        with lock:
            lock.acquire()
    finally:
        lock.close()


def not_held(name: str) -> None:
    lock = shmkit.Lock.create(name)
    try:
        lock.release()
    finally:
        lock.close()


def owner_died(name: str) -> None:
    lock = shmkit.Lock.create(name)
    try:
        run_python(f"import shmkit, os; shmkit.Lock.open({name!r}).acquire(); os._exit(0)")
        with lock:
            pass
    finally:
        lock.close()


def worker_died(name: str) -> None:
    with shmkit.ProcessPool(1) as pool:
        pool.submit(pool_tasks.die).result(timeout=60)


def task_timeout(name: str) -> None:
    with shmkit.ProcessPool(1, timeout=0.2) as pool:
        pool.submit(pool_tasks.sleep, 30).result(timeout=60)


def worker_start_failed(name: str) -> None:
    with shmkit.ProcessPool(1, initializer=pool_tasks.refuse_to_start) as pool:
        pool.submit(pool_tasks.square, 1).result(timeout=60)


def publisher_died(name: str) -> None:
    # A publisher in a process that is killed: its subscriber hears so.
    peer = Peer(f"stream-publish {name} 0")
    assert peer.line() == "ready"
    sub = shmkit.Subscriber(name)
    peer.proc.kill()
    peer.proc.wait()
    try:
        sub.next(timeout=30)
    finally:
        shmkit.gc(prefix=name)


def dropped(name: str) -> None:
    import time

    pub = shmkit.Publisher(name, 4, "u1", slots=4, policy="block", lag=0.05, subscribers=2, holds=1)
    stalled = shmkit.Subscriber(name)  # in order, never reads: dropped after the lag
    for _ in range(8):
        pub.send(__import__("numpy").zeros(4, "u1"))
    time.sleep(0.01)
    try:
        stalled.next(block=False)
    finally:
        pub.close()


CASES: dict[type[shmkit.Error], tuple[Callable[[str], None], type[BaseException]]] = {
    shmkit.NotFound: (not_found, FileNotFoundError),
    shmkit.AlreadyExists: (already_exists, FileExistsError),
    shmkit.InvalidName: (invalid_name, ValueError),
    shmkit.PermissionDenied: (permission_denied, PermissionError),
    shmkit.NoSpace: (no_space, OSError),
    shmkit.LimitReached: (limit_reached, OSError),
    shmkit.BadSegment: (bad_segment, ValueError),
    shmkit.WrongType: (wrong_type, TypeError),
    shmkit.InvalidArgument: (invalid_argument, ValueError),
    shmkit.UnsupportedDtype: (unsupported_dtype, TypeError),
    shmkit.NotOwner: (not_owner, shmkit.Error),
    shmkit.Busy: (busy, shmkit.Error),
    shmkit.IoError: (io_error, OSError),
    shmkit.Full: (full, __import__("queue").Full),
    shmkit.Empty: (empty, __import__("queue").Empty),
    shmkit.Timeout: (timeout, TimeoutError),
    shmkit.Stalled: (stalled, shmkit.Error),
    shmkit.ShutDown: (shut_down, shmkit.Error),
    shmkit.Disconnected: (disconnected, BrokenPipeError),
    shmkit.Broken: (broken, shmkit.Error),
    shmkit.Hole: (hole, LookupError),
    shmkit.Closed: (closed, ValueError),
    shmkit.Deadlock: (deadlock, RuntimeError),
    shmkit.NotHeld: (not_held, RuntimeError),
    shmkit.OwnerDied: (owner_died, shmkit.Error),
    shmkit.WorkerDied: (worker_died, shmkit.Error),
    shmkit.TaskTimeout: (task_timeout, TimeoutError),
    shmkit.WorkerStartFailed: (worker_start_failed, shmkit.Error),
    shmkit.PublisherDied: (publisher_died, shmkit.Error),
    shmkit.Dropped: (dropped, shmkit.Error),
}


def test_every_class_has_a_case() -> None:
    public = {getattr(shmkit, n) for n in shmkit._errors.__all__} - {shmkit.Error}
    assert public == set(CASES) | {shmkit.Inherited}  # that one below


def test_inherited_is_raised_in_a_forked_child() -> None:
    # Only a forked child has an inherited handle: the checks run there.
    lock = shmkit.Lock.create(unique("Inherited"))
    with contextlib.closing(lock):
        pid = os.fork()
        if pid == 0:
            try:
                with pytest.raises(shmkit.Inherited, match="open .* again by name") as e:
                    lock.acquire()
                assert isinstance(e.value, shmkit.Error)
                os._exit(0)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the forked child's acquire() raised Inherited"
        assert lock.acquire(timeout=0), "the child took nothing"
        lock.release()


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_raised(cls: type[shmkit.Error]) -> None:
    trigger, kin = CASES[cls]
    with pytest.raises(cls) as e:
        trigger(unique(cls.__name__))
    assert isinstance(e.value, shmkit.Error) and isinstance(e.value, kin)
    assert str(e.value), "a message that says what to do"
    assert type(e.value) is cls
