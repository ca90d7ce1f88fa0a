"""The shmkit Python package against what Python users have: the same
array work as `SharedMemory` + numpy, and the Manager seed's dict and list
work against `multiprocessing.Manager` and UltraDict (with its shared
lock: without it, two writers corrupt it).

Prints one JSON object: for each workload, a list of per-repetition values.
Run by `cargo bench --bench compare` in a venv it makes (numpy, UltraDict
0.0.6, atomics, and this repository's package); by hand:
python compare_python.py --helpers 2 --elements 134217728 --keys 40000 --reps 5
"""

import argparse
import json
import os
import sys
import time
from multiprocessing import Manager, get_context, shared_memory

import numpy as np
from UltraDict import UltraDict

import shmkit

_view = _handle = None  # the array, attached once per worker


def attach_shmkit(name):
    global _view, _handle
    _handle = shmkit.open(name)
    _view = np.asarray(_handle)


def attach_shm(name, n):
    global _view, _handle
    _handle = shared_memory.SharedMemory(name=name)
    _view = np.ndarray((n,), dtype=np.float64, buffer=_handle.buf)


def double(bounds):
    lo, hi = bounds
    _view[lo:hi] *= 2.0


def noop(_):
    return os.getpid()


def chunks(n, parts):
    step = -(-n // parts)
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def median_of(n, f):
    """The median time of `n` calls (attach and let go, as the Rust side
    measures it)."""
    return sorted(timed(f) for _ in range(n))[n // 2]


# The array: create + fill, attach by name, double in place from N processes.


def array_shmkit(n, helpers, reps):
    out = {"create_fill_s": [], "attach_s": [], "double_s": []}
    for _ in range(reps):
        made = []

        def create():
            made.append(shmkit.create_unique(n, "f8"))
            np.asarray(made[0]).fill(1.0)

        out["create_fill_s"].append(timed(create))
        a = made[0]
        out["attach_s"].append(median_of(21, lambda: np.asarray(shmkit.open(a.name))))
        with get_context("spawn").Pool(helpers, initializer=attach_shmkit, initargs=(a.name,)) as pool:
            parts = chunks(n, 4 * helpers)
            pool.map(double, parts, chunksize=1)  # warm-up: the workers' pages mapped in
            out["double_s"].append(timed(lambda: pool.map(double, parts, chunksize=1)))
        assert float(np.asarray(a)[-1]) == 4.0
        a.close()
    return out


def array_shm(n, helpers, reps):
    out = {"create_fill_s": [], "attach_s": [], "double_s": []}
    for _ in range(reps):
        made = []

        def create():
            shm = shared_memory.SharedMemory(create=True, size=n * 8)
            made.append(shm)
            np.ndarray((n,), dtype=np.float64, buffer=shm.buf).fill(1.0)

        out["create_fill_s"].append(timed(create))
        shm = made[0]

        def attach():
            s = shared_memory.SharedMemory(name=shm.name)
            np.ndarray((n,), dtype=np.float64, buffer=s.buf)
            s.close()

        out["attach_s"].append(median_of(21, attach))
        with get_context("spawn").Pool(helpers, initializer=attach_shm, initargs=(shm.name, n)) as pool:
            parts = chunks(n, 4 * helpers)
            pool.map(double, parts, chunksize=1)  # warm-up, as above
            out["double_s"].append(timed(lambda: pool.map(double, parts, chunksize=1)))
        shm.close()
        shm.unlink()
    return out


# The Manager seed's work: d[k] = 2k and l.append(f"processed_{k}").


def seed_worker(args):
    d, l, lo, hi = args
    for k in range(lo, hi):
        d[k] = 2 * k
        if l is not None:
            l.append(f"processed_{k}")
    return hi - lo


def ultradict_worker(args):
    name, lo, hi = args
    d = UltraDict(name=name, create=False, shared_lock=True)
    for k in range(lo, hi):
        d[k] = 2 * k
    return hi - lo


def over_workers(helpers, work, parts):
    """Operations a second from `helpers` started pool workers."""
    with get_context("spawn").Pool(helpers) as pool:
        pool.map(noop, range(helpers), chunksize=1)  # started, untimed
        t = time.perf_counter()
        done = sum(pool.map(work, parts, chunksize=1))
        return done, time.perf_counter() - t


def manager_shmkit(keys, helpers, append):
    with shmkit.Dict.create_unique("i8", "i8", capacity=keys) as d, \
            shmkit.List.create_unique("U16", capacity=keys) as l:
        parts = [(d, l if append else None, lo, hi) for lo, hi in chunks(keys, helpers)]
        done, t = over_workers(helpers, seed_worker, parts)
        assert done == keys and len(d) == keys and d[keys - 1] == 2 * (keys - 1)
        assert not append or len(l) == keys
    return (2 if append else 1) * keys / t


def manager_mp(keys, helpers):
    with Manager() as m:
        d, l = m.dict(), m.list()
        done, t = over_workers(helpers, seed_worker, [(d, l, lo, hi) for lo, hi in chunks(keys, helpers)])
        assert done == keys and len(d) == keys and len(l) == keys
    return 2 * keys / t


def sets_ultradict(keys, helpers):
    d = UltraDict(create=True, shared_lock=True, buffer_size=64 << 20)
    try:
        done, t = over_workers(helpers, ultradict_worker, [(d.name, lo, hi) for lo, hi in chunks(keys, helpers)])
        assert done == keys and len(d) == keys and d[keys - 1] == 2 * (keys - 1)
    finally:
        d.unlink()
    return keys / t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helpers", type=int, default=os.cpu_count())
    ap.add_argument("--elements", type=int, default=1 << 27)
    ap.add_argument("--keys", type=int, default=40_000)
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    res = {}
    for k, v in array_shmkit(a.elements, a.helpers, a.reps).items():
        res[f"pkg_{k}"] = v
    for k, v in array_shm(a.elements, a.helpers, a.reps).items():
        res[f"shm_{k}"] = v
    res["pkg_manager_ops"] = [manager_shmkit(a.keys, a.helpers, True) for _ in range(a.reps)]
    res["mp_manager_ops"] = [manager_mp(a.keys, a.helpers) for _ in range(a.reps)]
    res["pkg_sets"] = [manager_shmkit(a.keys, a.helpers, False) for _ in range(a.reps)]
    res["ultradict_sets"] = [sets_ultradict(a.keys, a.helpers) for _ in range(a.reps)]
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
