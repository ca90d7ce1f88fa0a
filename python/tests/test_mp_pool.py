"""``shmkit.Pool``: ``multiprocessing.Pool``'s interface, and what it
does better: a killed helper fails its task instead of hanging the pool."""

from __future__ import annotations

import multiprocessing
import signal
import threading

import pool_tasks as t
import pytest

import shmkit


def test_the_multiprocessing_pool_interface() -> None:
    with shmkit.Pool(2) as pool:
        assert pool.map(t.square, range(50)) == [i * i for i in range(50)]
        assert pool.map(t.square, []) == []
        assert pool.starmap(t.add, [(1, 2), (3, 4)]) == [3, 7]
        assert list(pool.imap(t.square, range(10), chunksize=3)) == [i * i for i in range(10)]
        assert sorted(pool.imap_unordered(t.square, range(10))) == [i * i for i in range(10)]
        assert pool.apply(t.add, (1,), {"z": 5}) == 6
        r = pool.apply_async(t.sleep, (0.2,))
        with pytest.raises(multiprocessing.TimeoutError):
            r.get(timeout=0.01)
        with pytest.raises(ValueError):
            r.successful()
        r.wait(30)
        assert r.ready() and r.successful() and r.get() == 0.2
        assert pool.map_async(t.square, range(3)).get(timeout=30) == [0, 1, 4]


def test_callbacks_and_the_first_exception_of_a_map() -> None:
    got: list[object] = []
    done = threading.Event()
    with shmkit.Pool(2) as pool:
        pool.apply_async(t.square, (4,), callback=got.append)
        pool.apply_async(t.fail, ("bad",), error_callback=lambda e: (got.append(type(e)), done.set()))
        assert done.wait(30)
        with pytest.raises(ValueError, match="bad"):
            pool.map(t.fail, ["bad"] * 3)
        assert pool.map(t.square, [3]) == [9], "the pool goes on"
    assert 16 in got and ValueError in got


def test_a_killed_helper_fails_its_chunk_and_the_pool_goes_on() -> None:
    with shmkit.Pool(2) as pool:
        with pytest.raises(shmkit.WorkerDied) as e:
            pool.map(t.die, [signal.SIGKILL], chunksize=1)
        assert e.value.signal == signal.SIGKILL
        assert pool.map(t.square, range(8)) == [i * i for i in range(8)]


def test_progress_and_auto_chunksize() -> None:
    counted: list[int] = []

    class Bar:  # tqdm's shape
        def update(self, n: int) -> None:
            counted.append(n)

    with shmkit.Pool(2) as pool:
        assert pool.map(t.square, range(100), progress=Bar()) == [i * i for i in range(100)]
        assert sum(counted) == 100 and max(counted) == 13, "4 chunks per helper: 100 items in chunks of 13"
        calls: list[int] = []
        pool.map(t.square, range(10), chunksize=1, progress=calls.append)
        assert calls == [1] * 10


def test_close_join_and_terminate() -> None:
    pool = shmkit.Pool(2)
    r = pool.apply_async(t.sleep, (0.2,))
    with pytest.raises(ValueError):
        pool.join()  # still running
    pool.close()
    with pytest.raises(ValueError):
        pool.apply_async(t.square, (1,))
    pool.join()
    assert r.get(timeout=0) == 0.2
    pool = shmkit.Pool(1)
    slow = pool.apply_async(t.sleep, (30,))
    pool.terminate()
    pool.join()
    assert slow.ready() and not slow.successful()
