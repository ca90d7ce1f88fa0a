"""Python's multiprocessing + shared_memory + numpy doing the same work as
`cargo bench --bench compare`, the way the seed articles do it.

Prints one JSON object: for each workload, a list of per-repetition values.
Run by the compare runner; by hand: python3 compare.py --helpers 2 --reps 5
"""
import argparse
import json
import os
import statistics
import threading
import time
from multiprocessing import Manager, Pool, shared_memory

import numpy as np

_arr = None
_shm = None


def attach(name, n):
    """Pool initializer: attach once per worker and keep it (the seed's pattern)."""
    global _arr, _shm
    _shm = shared_memory.SharedMemory(name=name)
    _arr = np.ndarray((n,), dtype=np.float64, buffer=_shm.buf)


def double(bounds):
    lo, hi = bounds
    _arr[lo:hi] *= 2.0


def partial_sum(bounds):
    lo, hi = bounds
    return float(_arr[lo:hi].sum())


def square(x):
    return x * x


def noop(_):
    return os.getpid()


def manager_worker(args):
    """The seed's Manager worker, over a range of keys."""
    d, l, lo, hi = args
    for k in range(lo, hi):
        d[k] = 2 * k
        l.append(f"processed_{k}")
    return hi - lo


def manager_ops(helpers, n):
    """Set + append per key through Manager proxies from `helpers` pool
    workers, one chunk of keys each: operations per second."""
    with Manager() as m:
        d, l = m.dict(), m.list()
        with Pool(helpers) as pool:
            pool.map(noop, range(helpers), chunksize=1)  # workers started, untimed
            parts = [(d, l, lo, hi) for lo, hi in chunks(n, helpers)]
            t = time.perf_counter()
            done = sum(pool.map(manager_worker, parts, chunksize=1))
            t = time.perf_counter() - t
        assert done == n and len(d) == n and len(l) == n and d[n - 1] == 2 * (n - 1)
    return 2 * n / t


def rss_anon(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class MemorySampler:
    """Peak memory beyond the shared array: the workers' whole RssAnon plus
    what this (parent) process gains over its level at start; the Rust
    runner applies the same rule."""

    def __init__(self, pool):
        self.workers = [p.pid for p in pool._pool]
        self.base = rss_anon(os.getpid())
        self.peak, self.stop = 0, False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop:
            grown = max(0, rss_anon(os.getpid()) - self.base)
            self.peak = max(self.peak, grown + sum(rss_anon(p) for p in self.workers))
            time.sleep(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()


def chunks(n, parts):
    step = -(-n // parts)
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def timed(f, reps):
    f()  # warm-up
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helpers", type=int, default=os.cpu_count())
    ap.add_argument("--elements", type=int, default=1 << 27)
    ap.add_argument("--tiny", type=int, default=200_000)
    ap.add_argument("--latency", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--manager", type=int, default=20_000)
    a = ap.parse_args()
    n, reps, res = a.elements, a.reps, {}

    shm = shared_memory.SharedMemory(create=True, size=n * 8)
    try:
        arr = np.ndarray((n,), dtype=np.float64, buffer=shm.buf)
        arr[:] = np.arange(n, dtype=np.float64)
        parts = chunks(n, 4 * a.helpers)
        with Pool(a.helpers, initializer=attach, initargs=(shm.name, n)) as pool:
            # Memory in an untimed pass of its own: the sampler's reads cost
            # CPU the timed passes must not pay (as on the Rust sides).
            with MemorySampler(pool) as mem:
                pool.map(double, parts, chunksize=1)
            res["double_extra_bytes"] = [mem.peak]
            res["double_s"] = timed(lambda: pool.map(double, parts, chunksize=1), reps)
            res["sum_s"] = timed(lambda: sum(pool.map(partial_sum, parts, chunksize=1)), reps)
            for cs in (1, 1000):
                res[f"tiny_{cs}_s"] = timed(lambda: pool.map(square, range(a.tiny), chunksize=cs), reps)
            lat = []
            for _ in range(reps):
                one = []
                for _ in range(a.latency):
                    t = time.perf_counter()
                    pool.apply_async(square, (3,)).get()
                    one.append(time.perf_counter() - t)
                one.sort()
                lat.append((one[len(one) // 2], one[int(len(one) * 0.99)]))
            res["latency_median_s"] = [m for m, _ in lat]
            res["latency_p99_s"] = [p for _, p in lat]
        del arr

        def start_pool():
            with Pool(a.helpers) as p:
                p.map(noop, range(a.helpers), chunksize=1)  # every worker answered once

        res["pool_ready_s"] = timed(start_pool, reps)

        def attach_here():
            s = shared_memory.SharedMemory(name=shm.name)
            np.ndarray((n,), dtype=np.float64, buffer=s.buf)
            s.close()

        res["attach_s"] = timed(attach_here, reps)
        res["manager_ops"] = [manager_ops(a.helpers, a.manager) for _ in range(reps)]
    finally:
        shm.close()
        shm.unlink()
    res["python"] = ".".join(map(str, os.sys.version_info[:3]))
    res["numpy"] = np.__version__
    print(json.dumps(res))


if __name__ == "__main__":
    main()
