"""Python process pools side by side: shmkit's ``ProcessPool`` and
``Pool`` against ``concurrent.futures.ProcessPoolExecutor`` (fork and
spawn), ``multiprocessing.Pool``, loky and pebble, on tiny tasks
(``x*x``) from N workers:

- ``ready_s``: construction to the first result back;
- ``submit_tps``: tasks a second, submitted one by one (chunksize 1);
- ``map_auto_tps``: tasks a second through ``map`` with each pool's
  automatic chunk size (multiprocessing-style pools);
- ``latency_s``: submit → result round trip, median;
- ``after_kill``: what a SIGKILLed worker does to the pool ("serves",
  "broken: <exception>", or "hangs").

Prints one JSON object: {pool: {metric: [values per repetition]}}.
Run by ``cargo bench --bench compare``; by hand:
python compare_pool.py --helpers 2 --tasks 20000 --reps 3
"""

from __future__ import annotations

# Only what the tasks need is imported at the top: every pool's workers
# import this script (spawn's and shmkit's re-run it as __mp_main__), and
# "ready" should measure the pool, not this script's imports.
import os
import sys
import time

import shmkit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


def square(x: int) -> int:
    return x * x


def pid(_: Any = None) -> int:
    return os.getpid()


def sleep(s: float) -> float:
    time.sleep(s)
    return s


# Each pool as a few calls: make(n), submit(pool, f, x) -> future-like,
# result(future), pids(pool), close(pool); map(pool, f, xs) if it has one.


def futures_kind(make: Callable[[int], Any]) -> dict[str, Any]:
    return {
        "make": make,
        "submit": lambda p, f, x: p.submit(f, x),
        "result": lambda fut, t=None: fut.result(timeout=t),
        "close": shutdown,
    }


def shutdown(p: Any) -> None:
    try:
        p.shutdown(wait=True, cancel_futures=True)
    except TypeError:  # loky's takes no cancel_futures
        p.shutdown(wait=True)


def pebble_pool(n: int) -> Any:
    import pebble

    return pebble.ProcessPool(max_workers=n)


def pebble_kind() -> dict[str, Any]:
    return {
        "make": pebble_pool,
        "submit": lambda p, f, x: p.schedule(f, args=(x,)),
        "result": lambda fut, t=None: fut.result(timeout=t),
        "close": lambda p: (p.stop(), p.join()),
    }


def mp_kind(make: Callable[[int], Any]) -> dict[str, Any]:
    return {
        "make": make,
        "submit": lambda p, f, x: p.apply_async(f, (x,)),
        "result": lambda fut, t=None: fut.get(timeout=t),
        "close": lambda p: p.terminate(),
        "map": lambda p, f, xs: p.map(f, xs),
    }


def kinds() -> dict[str, dict[str, Any]]:
    import concurrent.futures as cf
    import multiprocessing as mp

    from loky import get_reusable_executor  # noqa: F401 (installed: fail early otherwise)

    def loky_pool(n: int) -> Any:
        from loky import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=n)

    return {
        "shmkit.ProcessPool": futures_kind(lambda n: shmkit.ProcessPool(n)),
        "shmkit.Pool": mp_kind(lambda n: shmkit.Pool(n)),
        "ProcessPoolExecutor (fork)": futures_kind(lambda n: cf.ProcessPoolExecutor(n, mp_context=mp.get_context("fork"))),
        "ProcessPoolExecutor (spawn)": futures_kind(
            lambda n: cf.ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"))
        ),
        "multiprocessing.Pool (fork)": mp_kind(lambda n: mp.get_context("fork").Pool(n)),
        "loky": futures_kind(loky_pool),
        "pebble": pebble_kind(),
        # mpire 2.10.2 is left out: its map and apply_async of x*x raised
        # "square() takes 1 positional argument but 2 were given" here
        # (reproduced outside this script); see benches/README.md.
    }


def ready(k: dict[str, Any], n: int) -> tuple[float, Any]:
    t = time.perf_counter()
    p = k["make"](n)
    k["result"](k["submit"](p, square, 3), 60)
    return time.perf_counter() - t, p


def submit_tps(k: dict[str, Any], p: Any, tasks: int) -> float:
    t = time.perf_counter()
    futures = [k["submit"](p, square, i) for i in range(tasks)]
    for f in futures:
        k["result"](f, 120)
    return tasks / (time.perf_counter() - t)


def latency(k: dict[str, Any], p: Any, calls: int) -> float:
    import statistics

    times = []
    for i in range(calls):
        t = time.perf_counter()
        k["result"](k["submit"](p, square, i), 60)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def map_tps(k: dict[str, Any], p: Any, tasks: int) -> float:
    t = time.perf_counter()
    k["map"](p, square, range(tasks))
    return tasks / (time.perf_counter() - t)


def worker_pids(k: dict[str, Any], p: Any, n: int) -> list[int]:
    """The workers' pids, found by asking them (every pool answers tasks)."""
    futures = [k["submit"](p, sleep, 0.05) for _ in range(4 * n)]
    pids = {k["result"](k["submit"](p, pid, None), 60) for _ in range(4 * n)}
    for f in futures:
        k["result"](f, 60)
    return sorted(pids)


def after_kill(k: dict[str, Any], p: Any, n: int) -> str:
    """SIGKILL one worker while it runs a task; then: does the pool serve?"""
    import concurrent.futures as cf
    import multiprocessing as mp
    import signal

    victim = k["submit"](p, pid, None)
    target = k["result"](victim, 60)
    running = [k["submit"](p, sleep, 0.5) for _ in range(n)]
    time.sleep(0.1)
    os.kill(target, signal.SIGKILL)
    for f in running:
        try:
            k["result"](f, 10)
        except Exception:  # noqa: BLE001 (what happens is the measurement)
            pass
    try:
        return "serves" if k["result"](k["submit"](p, square, 4), 10) == 16 else "wrong"
    except (cf.TimeoutError, mp.TimeoutError, TimeoutError):
        return "hangs"
    except Exception as e:  # noqa: BLE001
        return f"broken: {type(e).__name__}"


def main() -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("--helpers", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--latency", type=int, default=500)
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    out: dict[str, dict[str, Any]] = {}
    for name, k in kinds().items():
        res: dict[str, Any] = {"ready_s": [], "submit_tps": [], "latency_s": [], "map_auto_tps": []}
        for _ in range(a.reps):
            t, p = ready(k, a.helpers)
            res["ready_s"].append(t)
            res["submit_tps"].append(submit_tps(k, p, a.tasks))
            res["latency_s"].append(latency(k, p, a.latency))
            if "map" in k:
                res["map_auto_tps"].append(map_tps(k, p, 10 * a.tasks))
            k["close"](p)
        p = k["make"](a.helpers)
        res["after_kill"] = after_kill(k, p, a.helpers)
        try:
            k["close"](p)
        except Exception:  # noqa: BLE001 (a broken pool may refuse to close cleanly)
            pass
        if not res["map_auto_tps"]:
            del res["map_auto_tps"]
        out[name] = res
        print(f"compare_pool: {name} done", file=sys.stderr, flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
