"""``shmkit.Pool``: ``multiprocessing.Pool``'s interface on shmkit's pool,
so a ``multiprocessing`` program changes only its import.

What differs, on purpose: a helper killed mid-task fails that task alone
(``WorkerDied``) instead of hanging the pool; ``timeout=`` kills a task
that runs too long (``TaskTimeout``); helpers are started, never forked
(functions are found as with ``spawn``).
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as _FutureTimeout
from concurrent.futures import wait as _wait
from typing import Any, Generic, TypeVar

from ._pool import ProcessPool
from ._worker import run_chunk, run_chunk1

T = TypeVar("T")

Progress = Callable[[int], object] | Any
"""Told how many items finished: a callable taking that count, or an
object with ``update(n)`` (a ``tqdm`` bar)."""


class AsyncResult(Generic[T]):
    """The result of ``apply_async`` (and of ``map_async``, a list), as
    ``multiprocessing.pool.AsyncResult``."""

    def __init__(self, future: Future[T]) -> None:
        self._future = future

    def get(self, timeout: float | None = None) -> T:
        """The result, or the task's exception; ``multiprocessing.TimeoutError``
        if not ready within ``timeout`` seconds."""
        try:
            return self._future.result(timeout)
        except _FutureTimeout as e:
            if self._future.done() and self._future.exception() is e:
                raise  # the task's own TimeoutError (shmkit.TaskTimeout)
            if self._future.done():
                return self._future.result()  # finished just after the wait gave up
            raise multiprocessing.TimeoutError from None

    def wait(self, timeout: float | None = None) -> None:
        """Waits until ready, at most ``timeout`` seconds."""
        _wait([self._future], timeout)

    def ready(self) -> bool:
        """True once the task finished."""
        return self._future.done()

    def successful(self) -> bool:
        """True if it finished without raising (``ValueError`` if not ready)."""
        if not self._future.done():
            raise ValueError(f"{self!r} not ready")
        return not self._future.cancelled() and self._future.exception() is None


class Pool:
    """``multiprocessing.Pool`` on shmkit's pool: ``map`` (a list),
    ``imap``, ``imap_unordered``, ``starmap``, ``apply``, ``apply_async``,
    their ``_async`` forms, ``close``/``join``/``terminate``, and ``with``
    (which terminates, as ``multiprocessing.Pool``'s does).

    ``processes``, ``initializer``, ``initargs`` and ``maxtasksperchild``
    mean what they mean there; ``timeout`` (seconds) kills a task that
    runs longer, and ``retries`` reruns a task whose helper died.
    ``chunksize=None`` sizes chunks as ``multiprocessing`` does (four per
    helper); ``progress`` is told as items finish.
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        maxtasksperchild: int | None = None,
        *,
        timeout: float | None = None,
        retries: int = 0,
    ) -> None:
        self._pool = ProcessPool(
            processes, timeout=timeout, retries=retries, max_tasks_per_child=maxtasksperchild,
            initializer=initializer, initargs=initargs,
        )  # fmt: skip
        self._processes = self._pool._workers
        self._closed = False
        self._pending: set[Future[Any]] = set()
        self._lock = threading.Lock()

    # -- one call -----------------------------------------------------------

    def apply(self, func: Callable[..., T], args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None) -> T:
        """``func(*args, **kwds)`` in a helper; its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., T],
        args: tuple[Any, ...] = (),
        kwds: dict[str, Any] | None = None,
        callback: Callable[[T], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> AsyncResult[T]:
        """Queues ``func(*args, **kwds)``; its ``AsyncResult``. The callbacks
        run in the pool's result thread, as in ``multiprocessing``."""
        future = self._submit(func, *args, **(kwds or {}))
        _callbacks(future, callback, error_callback)
        return AsyncResult(future)

    # -- many ---------------------------------------------------------------

    def map(
        self, func: Callable[..., T], iterable: Iterable[Any], chunksize: int | None = None, *, progress: Progress = None
    ) -> list[T]:
        """``[func(x) for x in iterable]``, in helpers; the first exception
        raised, if any."""
        return self.map_async(func, iterable, chunksize, progress=progress).get()

    def starmap(
        self, func: Callable[..., T], iterable: Iterable[Iterable[Any]], chunksize: int | None = None, *, progress: Progress = None
    ) -> list[T]:
        """``[func(*args) for args in iterable]``, in helpers."""
        return self.starmap_async(func, iterable, chunksize, progress=progress).get()

    def map_async(
        self,
        func: Callable[..., T],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[list[T]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        progress: Progress = None,
    ) -> AsyncResult[list[T]]:
        """``map``, returning an ``AsyncResult`` of the list."""
        return self._gathered(func, list(iterable), False, chunksize, callback, error_callback, progress)

    def starmap_async(
        self,
        func: Callable[..., T],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[list[T]], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        progress: Progress = None,
    ) -> AsyncResult[list[T]]:
        """``starmap``, returning an ``AsyncResult`` of the list."""
        return self._gathered(func, list(iterable), True, chunksize, callback, error_callback, progress)

    def _gathered(
        self,
        func: Callable[..., T],
        items: list[Any],
        star: bool,
        chunksize: int | None,
        callback: Callable[[list[T]], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        progress: Progress,
    ) -> AsyncResult[list[T]]:
        chunks = self._chunked(func, items, star, self._chunksize(len(items), chunksize), progress)
        result: Future[list[T]] = Future()
        result.set_running_or_notify_cancel()
        _gather(chunks, result)
        _callbacks(result, callback, error_callback)
        return AsyncResult(result)

    def imap(self, func: Callable[..., T], iterable: Iterable[Any], chunksize: int = 1, *, progress: Progress = None) -> Iterator[T]:
        """``func(x)`` for each item, in order, as results arrive. The tasks
        are queued now, so the pool may be closed before iterating."""
        chunks = self._chunked(func, list(iterable), False, chunksize, progress)
        return (x for chunk in chunks for x in chunk.result())

    def imap_unordered(
        self, func: Callable[..., T], iterable: Iterable[Any], chunksize: int = 1, *, progress: Progress = None
    ) -> Iterator[T]:
        """``func(x)`` for each item, in the order they finish."""
        from concurrent.futures import as_completed

        chunks = self._chunked(func, list(iterable), False, chunksize, progress)  # queued now, as imap
        return (x for chunk in as_completed(chunks) for x in chunk.result())

    # -- ending -------------------------------------------------------------

    def close(self) -> None:
        """No new tasks; ``join`` then waits for the queued ones."""
        self._closed = True

    def join(self) -> None:
        """Waits for every task, after ``close`` (or ``terminate``)."""
        if not self._closed:
            raise ValueError("Pool is still running: close() or terminate() it first")
        with self._lock:
            pending = list(self._pending)
        _wait(pending)
        self._pool.shutdown(wait=True)

    def terminate(self) -> None:
        """Stops the helpers now; unfinished tasks are cancelled."""
        self._closed = True
        self._pool.terminate()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    # -- inside -------------------------------------------------------------

    def _submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        if self._closed:
            raise ValueError("Pool not running")
        future = self._pool.submit(fn, *args, **kwargs)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _chunksize(self, n: int, chunksize: int | None) -> int:
        if chunksize is not None:
            if chunksize < 1:
                raise ValueError(f"chunksize must be >= 1, not {chunksize}")
            return chunksize
        size, extra = divmod(n, self._processes * 4)  # as multiprocessing.Pool
        return max(1, size + (1 if extra else 0))

    def _chunked(
        self, func: Callable[..., T], items: list[Any], star: bool, size: int, progress: Progress
    ) -> list[Future[list[T]]]:
        """Tasks of ``size`` items each: ``func(*item)`` if ``star``, else ``func(item)``."""
        if size < 1:
            raise ValueError(f"chunksize must be >= 1, not {size}")
        run = run_chunk if star else run_chunk1
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        futures = [self._submit(run, func, chunk) for chunk in chunks]
        if progress is not None:
            tell: Callable[[int], object] = progress.update if hasattr(progress, "update") else progress
            for f, chunk in zip(futures, chunks):
                f.add_done_callback(_teller(tell, len(chunk)))
        return futures


def _teller(tell: Callable[[int], object], n: int) -> Callable[[Future[Any]], None]:
    """A done-callback telling ``tell`` that ``n`` more items finished."""
    return lambda _: None if tell(n) is None else None


def _gather(chunks: list[Future[list[T]]], result: Future[list[T]]) -> None:
    """Completes ``result`` with the chunks' items in order, or the first
    exception (in order), once every chunk is done."""
    left = itertools.count(len(chunks), -1)
    lock = threading.Lock()
    if not chunks:
        result.set_result([])
        return

    def one_done(_: Future[list[T]]) -> None:
        with lock:
            if next(left) != 1:
                return
        for c in chunks:
            if c.cancelled() or c.exception() is not None:
                result.set_exception(c.exception() if not c.cancelled() else _cancelled())
                return
        items: list[T] = []
        for c in chunks:
            items.extend(c.result())  # not a comprehension: a copy in C, not a Python loop per item
        result.set_result(items)

    for c in chunks:
        c.add_done_callback(one_done)


def _cancelled() -> BaseException:
    from concurrent.futures import CancelledError

    return CancelledError("the pool was terminated")


def _callbacks(
    future: Future[T], callback: Callable[[T], object] | None, error_callback: Callable[[BaseException], object] | None
) -> None:
    def call(f: Future[T]) -> None:
        if f.cancelled():
            return
        e = f.exception()
        if e is None and callback is not None:
            callback(f.result())
        elif e is not None and error_callback is not None:
            error_callback(e)

    if callback is not None or error_callback is not None:
        future.add_done_callback(call)
