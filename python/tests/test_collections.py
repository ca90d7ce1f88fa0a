"""``Dict`` and ``List``: the mapping and sequence protocols, dtypes of
every kind, atomic ``apply`` across processes, repair after a writer is
killed, and the Manager seed's pattern through a process pool."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import MutableMapping, Sequence

import numpy as np
import pytest
import workers
from conftest import dev_shm, seeded, spawn_python, tier

import shmkit


def test_a_dict_is_a_mutable_mapping(name: str) -> None:
    d = shmkit.Dict.create(name, "i8", "f8", capacity=100)
    assert isinstance(d, MutableMapping)
    d[1] = 1.5
    d[2] = 2
    assert d[1] == 1.5 and d[2] == 2.0 and len(d) == 2 and 1 in d and 3 not in d and "x" not in d
    with pytest.raises(KeyError):
        d[3]
    with pytest.raises(KeyError):
        del d[3]
    assert d.get(3) is None and d.get(3, -1) == -1
    assert sorted(d.items()) == [(1, 1.5), (2, 2.0)] and sorted(d) == [1, 2] and sorted(d.values()) == [1.5, 2.0]
    d.update({3: 3.0, 4: 4.0})  # MutableMapping's update: merge
    d.setdefault(5, 5.0)
    assert d.pop(5) == 5.0 and d.pop(5, "gone") == "gone"
    assert dict(d) == {1: 1.5, 2: 2.0, 3: 3.0, 4: 4.0}
    del d[1]
    assert d == {2: 2.0, 3: 3.0, 4: 4.0}
    d.clear()
    assert len(d) == 0
    assert (d.key_dtype, d.value_dtype, d.capacity, d.recoveries) == ("<i8", "<f8", 100, 0)
    d.close()


def test_keys_and_values_of_every_kind(name: str) -> None:
    point = np.dtype([("x", "<f4"), ("y", "<f4"), ("tag", "S4")])
    cases = [
        ("S8", "U12", b"key", "välue ✓"),
        ("u2", "b1", 65535, True),
        ("i1", "c16", -128, 1 + 2j),
        ("f4", "(3,)<i4", 0.5, [1, 2, 3]),
        ("u8", point, 2**64 - 1, (1.0, 2.0, b"ab")),
        ("i4", "f2", 7, 0.5),
    ]
    for i, (k, v, key, value) in enumerate(cases):
        d = shmkit.Dict.create(f"{name}-{i}", k, v, capacity=8)
        d[key] = value
        got = d[key]
        assert np.array(got, dtype=np.dtype(v)).tobytes() == np.array(value, dtype=np.dtype(v)).tobytes(), (k, v, got)
        assert list(d) == [key] or np.dtype(k).kind == "f"
        d.close()
    d = shmkit.Dict.create(name, "u1", "S2", capacity=4)
    with pytest.raises(OverflowError):
        d[256] = b"x"
    with pytest.raises(ValueError):
        d[1] = b"too long"
    with pytest.raises(TypeError):
        d[1] = 5
    d.close()


def test_a_full_dict_says_so(name: str) -> None:
    d = shmkit.Dict.create(name, "i4", "i4", capacity=16)
    with pytest.raises(shmkit.Full, match="stripe") as e:
        for i in range(10_000):
            d[i] = i
    assert len(d) >= 16 and isinstance(e.value, shmkit.Error)
    d.close()


def test_apply_is_atomic_across_processes(name: str) -> None:
    d = shmkit.Dict.create(name, "i8", "i8", capacity=16)
    n = 2000
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=workers.add_many, args=(d, n)) for _ in range(3)]
    for p in procs:
        p.start()
    workers.add_many(d, n)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert d[0] == 4 * n, "no increment lost"
    assert d.apply(0, lambda v: None) is None and 0 not in d, "None removes the entry"

    def boom(v: object) -> object:
        raise RuntimeError("no")

    d[1] = 1
    with pytest.raises(RuntimeError):
        d.apply(1, boom)
    assert d[1] == 1, "a raising function changes nothing"
    d.close()


def test_the_manager_seed_through_a_spawn_pool(name: str) -> None:
    d = shmkit.Dict.create(name, "i8", "i8", capacity=64)
    items = shmkit.List.create(name + "-l", "U16", capacity=64)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = [pool.apply_async(workers.record, (d, items, i, i * 2)) for i in range(10)]
        assert sorted(r.get(60) for r in results) == list(range(10))
    assert dict(d) == {i: i * 2 for i in range(10)}
    assert sorted(items) == sorted(f"processed_{i}" for i in range(10))
    d.close()
    items.close()


def test_a_writer_killed_mid_operation_is_repaired(name: str) -> None:
    rng = seeded("dict kill loop")
    d = shmkit.Dict.create(name, "i8", "i8", capacity=4096)
    code = f"""
        import shmkit, random
        d = shmkit.Dict.open({name!r})
        print("go", flush=True)
        r = random.Random()
        while True:
            k = r.randrange(2000)
            d[k] = k
            if r.random() < 0.3:
                d.pop(k, None)
    """
    kills = tier(10, 60)
    for _ in range(kills):
        p = spawn_python(code)
        assert p.stdout is not None and p.stdout.readline().strip() == "go"
        time.sleep(rng.uniform(0, 0.05))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        p.stdout.close()
        p.stderr.close() if p.stderr else None
        p.stdin.close() if p.stdin else None
        for k, v in d.items():
            assert k == v and 0 <= k < 2000, "every entry whole"
    assert len(d) == len(d.items())
    print(f"{kills} writers killed; {d.recoveries} stripe repairs")
    d.close()


def test_a_list_is_an_append_only_sequence(name: str) -> None:
    items = shmkit.List.create(name, "f8", capacity=5)
    assert isinstance(items, Sequence)
    items.append(1)
    items.extend([2.5, 3])
    assert len(items) == 3 and items[0] == 1.0 and items[-1] == 3.0 and items[0:2] == [1.0, 2.5]
    assert list(items) == [1.0, 2.5, 3.0] and 2.5 in items and items.index(3.0) == 2
    assert items.item(1) == ("ready", 2.5) and items.item(4) == ("vacant", None)
    with pytest.raises(IndexError):
        items[3]
    with pytest.raises(TypeError):
        items[0] = 5  # type: ignore[index]
    items.extend([4, 5])
    with pytest.raises(shmkit.Full):
        items.append(6)
    assert (items.dtype, items.capacity) == ("<f8", 5)
    other = shmkit.List.open(name)
    assert other.to_list() == [1.0, 2.5, 3.0, 4.0, 5.0]
    items.close()
    assert name not in dev_shm()
    assert len(other) == 5, "an opener keeps its mapping"
    with pytest.raises(shmkit.Closed):
        len(items)


def test_snapshots_get_through_busy_writers(name: str) -> None:
    d = shmkit.Dict.create(name, "i8", "i8", capacity=4096)
    writers = [
        spawn_python(
            f"""
            import shmkit
            d = shmkit.Dict.open({name!r})
            print("writing", flush=True)
            k = 0
            while True:
                d[k % 4096] = k
                k += 1
            """
        )
        for _ in range(2)
    ]
    try:
        for w in writers:
            assert w.stdout is not None and w.stdout.readline().strip() == "writing"
        d2 = shmkit.Dict.open(name, lock_timeout=30)  # a starved snapshot would raise Timeout
        for _ in range(20):
            items = d2.items()
            assert len(items) == len(set(k for k, _ in items)) <= 4096
        d2.close()
    finally:
        for w in writers:
            w.kill()
            w.communicate()
    d.close()
