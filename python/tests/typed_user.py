"""User code that ``mypy --strict`` must accept (``test_types.py`` runs it):
every public name, as a user writes it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

import shmkit


def arrays() -> float:
    a: shmkit.SharedArray = shmkit.create_unique((4, 4), "f8")
    v: npt.NDArray[np.float64] = np.asarray(a, dtype=np.float64)
    with a.rows_mut(0, 2) as top:
        top[:] = 1.0
    b = shmkit.open(a.name)
    c = shmkit.create_from(None, np.arange(3))
    total = float(v.sum()) + b.size + c.nbytes
    a.close()
    return total


def collections() -> list[tuple[int, float]]:
    d = shmkit.Dict.create_unique("i8", "f8", capacity=10)
    d[1] = 2.0
    d.apply(1, lambda x: x * 2)
    names = shmkit.List.create_unique("U8", 4)
    names.append("x")
    return [(int(k), float(v)) for k, v in d.items()]


def sync() -> bool:
    lock = shmkit.Lock.create_unique()
    try:
        with lock:
            pass
    except shmkit.OwnerDied as e:
        print(e.lock)
    q = shmkit.Queue.create_unique("i4", 2)
    q.put(1, timeout=1.0)
    q.shutdown()
    ev = shmkit.Event.create_unique()
    rw = shmkit.RWLock.create_unique()
    with rw.read():
        pass
    c = shmkit.Counter.create_unique()
    c.add(2)
    b = shmkit.Barrier.create_unique(1)
    return ev.wait(0.0) or b.wait() or lock.acquire(timeout=0.5)


def admin() -> int:
    try:
        shmkit.inspect("nothing-here")
    except shmkit.NotFound:
        pass
    except shmkit.Error:
        raise
    return len(shmkit.ls()) + len(shmkit.gc(dry_run=True))
