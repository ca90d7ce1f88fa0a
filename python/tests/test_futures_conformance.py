"""A port of the cases of CPython's ``test_concurrent_futures`` (3.11)
that apply to a process executor and do not depend on ``fork``, run
against ``shmkit.ProcessPool``:

- ``executor``: test_submit, test_submit_keyword, test_map,
  test_map_exception, test_map_timeout, test_max_workers_negative,
  test_free_reference (no stale reference to results);
- ``wait``: test_first_completed, test_first_exception,
  test_all_completed, test_timeout;
- ``as_completed``: test_no_timeout, test_zero_timeout,
  test_duplicate_futures;
- ``shutdown``: test_run_after_shutdown, test_context_manager_shutdown,
  test_del_shutdown, test_shutdown_no_wait, test_cancel_futures (here it
  cancels running tasks too, a documented difference).

Left out: the fork-only and forkserver cases, the broken-pool cases
(this pool never breaks), and ``cancel()`` of a running future, which
``concurrent.futures`` refuses and this pool does (see test_pool.py).
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import time
import weakref

import pool_tasks as t
import pytest

import shmkit


@pytest.fixture(scope="module")
def executor() -> cf.Executor:
    with shmkit.ProcessPool(2) as e:
        yield e


def test_submit(executor: cf.Executor) -> None:
    assert executor.submit(pow, 2, 8).result() == 256


def test_submit_keyword(executor: cf.Executor) -> None:
    assert executor.submit(t.add, 1, y=2).result() == 3
    with pytest.raises(TypeError):
        executor.submit(fn=t.add, x=1)  # type: ignore[call-arg]


def test_map(executor: cf.Executor) -> None:
    assert list(executor.map(pow, range(10), range(10))) == list(map(pow, range(10), range(10)))
    assert list(executor.map(pow, range(10), range(10), chunksize=3)) == list(map(pow, range(10), range(10)))


def test_map_exception(executor: cf.Executor) -> None:
    i = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(i) == (0, 1)
    assert next(i) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(i)


def test_map_timeout(executor: cf.Executor) -> None:
    results = []
    with pytest.raises(cf.TimeoutError):
        for r in executor.map(t.sleep, [0, 0, 6], timeout=2):
            results.append(r)
    assert results == [0, 0]


def test_max_workers_negative() -> None:
    for n in (0, -1):
        with pytest.raises(ValueError, match="max_workers must be greater than 0"):
            shmkit.ProcessPool(max_workers=n)


def test_free_reference(executor: cf.Executor) -> None:
    # Issue #14406: the result iterator keeps no reference to results.
    for obj in executor.map(t.make_dummy_object, range(10)):
        wr = weakref.ref(obj)
        del obj
        gc.collect()
        assert wr() is None


def test_first_completed(executor: cf.Executor) -> None:
    future1 = executor.submit(t.square, 21)
    future2 = executor.submit(t.sleep, 1.5)
    done, not_done = cf.wait([future1, future2], return_when=cf.FIRST_COMPLETED)
    assert done == {future1} and not_done == {future2}


def test_first_exception(executor: cf.Executor) -> None:
    future1 = executor.submit(t.fail, "first")
    future2 = executor.submit(t.sleep, 1.5)
    done, not_done = cf.wait([future1, future2], return_when=cf.FIRST_EXCEPTION)
    assert done == {future1} and not_done == {future2}


def test_all_completed(executor: cf.Executor) -> None:
    future1 = executor.submit(divmod, 2, 0)
    future2 = executor.submit(t.square, 2)
    done, not_done = cf.wait([future1, future2], return_when=cf.ALL_COMPLETED)
    assert done == {future1, future2} and not_done == set()


def test_timeout(executor: cf.Executor) -> None:
    future1 = executor.submit(t.square, 2)
    future2 = executor.submit(t.sleep, 6)
    done, not_done = cf.wait([future1, future2], timeout=3, return_when=cf.ALL_COMPLETED)
    assert done == {future1} and not_done == {future2}


def test_no_timeout(executor: cf.Executor) -> None:
    future1 = executor.submit(t.square, 2)
    future2 = executor.submit(t.square, 3)
    assert set(cf.as_completed([future1, future2])) == {future1, future2}


def test_zero_timeout(executor: cf.Executor) -> None:
    future = executor.submit(t.sleep, 2)
    completed = set()
    with pytest.raises(cf.TimeoutError):
        for f in cf.as_completed([future], timeout=0):
            completed.add(f)
    assert completed == set()


def test_duplicate_futures(executor: cf.Executor) -> None:
    future1 = executor.submit(t.sleep, 0.2)
    completed = list(cf.as_completed([future1, future1]))
    assert len(completed) == 1


def test_run_after_shutdown() -> None:
    e = shmkit.ProcessPool(1)
    e.shutdown()
    with pytest.raises(RuntimeError):
        e.submit(pow, 2, 5)


def test_context_manager_shutdown() -> None:
    with shmkit.ProcessPool(2) as e:
        assert list(e.map(abs, range(-5, 5))) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4]
        pids = e.helper_pids()
    for pid in pids:
        assert not _alive(pid)


def test_del_shutdown() -> None:
    e = shmkit.ProcessPool(2)
    list(e.map(abs, range(-5, 5)))
    pids = e.helper_pids()
    del e
    gc.collect()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(p) for p in pids)


def test_shutdown_no_wait() -> None:
    e = shmkit.ProcessPool(2)
    res = e.map(abs, range(-5, 5))
    pids = e.helper_pids()
    e.shutdown(wait=False)
    assert list(res) == [5, 4, 3, 2, 1, 0, 1, 2, 3, 4], "queued work still completes"
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(p) for p in pids), "the helpers stop once the last task is done"


def test_cancel_futures() -> None:
    e = shmkit.ProcessPool(1)
    fs = [e.submit(t.sleep, 0.1) for _ in range(50)]
    e.shutdown(cancel_futures=True)
    cancelled = [f for f in fs if f.cancelled()]
    assert len(cancelled) >= 35, "most were still queued"
    others = [f for f in fs if not f.cancelled()]
    assert all(f.done() for f in others)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):  # reaped between open and read
        return False
