"""Functions child processes run (importable by name, as ``spawn`` needs)."""

from __future__ import annotations

from typing import Any

import numpy as np

import shmkit


def double(a: shmkit.SharedArray) -> float:
    """Doubles a shared array in place (it arrives as its name); its sum."""
    v = np.asarray(a)
    v *= 2
    return float(v.sum())


def double_rows(a: shmkit.SharedArray, start: int, stop: int) -> int:
    """Doubles rows ``start:stop`` under a claim; how many it did."""
    with a.rows_mut(start, stop) as v:
        v *= 2
    return stop - start


def describe(handle: Any) -> tuple[str, str, bool]:
    """What a handle unpickled in a child is: its class, name and ownership."""
    return type(handle).__name__, handle.name, bool(handle.is_owner)


def record(d: shmkit.Dict, items: shmkit.List, key: int, value: float) -> int:
    """The Manager seed's worker: a dict entry and a list element."""
    d[key] = value
    items.append(f"processed_{key}")
    return key


def add_many(counter: shmkit.Dict, n: int) -> None:
    """``n`` atomic increments of key 0."""
    for _ in range(n):
        counter.apply(0, lambda v: (v or 0) + 1)


def lock_and_die(lock: shmkit.Lock) -> None:
    """Takes the lock and exits holding it."""
    import os

    lock.acquire()
    os._exit(0)


def put_all(q: shmkit.Queue, values: list[int]) -> None:
    for v in values:
        q.put(v, timeout=30)
    q.close()


def take_all(q: shmkit.Queue) -> list[int]:
    got = []
    while True:
        try:
            got.append(int(q.get(timeout=30)))
        except (shmkit.ShutDown, shmkit.Disconnected):
            return got


def barrier_then_count(b: shmkit.Barrier, c: shmkit.Counter) -> bool:
    c.add(1)
    return b.wait(timeout=30)


def wait_for(ev: shmkit.Event) -> bool:
    return ev.wait(timeout=30)
