"""``shmkit.ProcessPool``: a ``concurrent.futures.Executor`` whose helpers
are started, never forked, and whose faults stay with their task.

A helper killed mid-task fails only that future (``WorkerDied``); a task
past its deadline has its helper killed and replaced (``TaskTimeout``);
``future.cancel()`` stops a running task too. The pool never breaks: if
its helpers cannot start, that submit's future says why and the next
submit tries again.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Executor, Future
from typing import Any, TypeVar

from . import _errors, _shmkit, _worker

T = TypeVar("T")

# How often the collector looks at the pool's state while idle (seconds).
_TICK = 0.05


def default_workers() -> int:
    """The CPUs this process may use, a cgroup's CPU quota included."""
    n = len(os.sched_getaffinity(0))
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _preparation(errfile: str) -> dict[str, object]:
    """What a helper needs to find this process's functions (as spawn)."""
    main = sys.modules.get("__main__")
    prep: dict[str, object] = {"sys_path": sys.path, "cwd": os.getcwd(), "errfile": errfile}
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        prep["main_name"] = spec.name
    elif isinstance(path := getattr(main, "__file__", None), str):
        prep["main_path"] = os.path.abspath(path)
    return prep


class _TaskFuture(Future[Any]):
    """A ``Future`` whose ``cancel()`` also stops a running task."""

    def __init__(self, pool: ProcessPool) -> None:
        super().__init__()
        self._pool = pool
        self._key: int | None = None

    def cancel(self) -> bool:
        """Cancels the task: one not yet started never runs, and, unlike
        ``concurrent.futures``, a running one is stopped (its helper is
        killed and replaced). False once it has finished."""
        if not super().cancel():
            return False
        if self._key is not None:
            self._pool._cancel(self._key)
        return True


class ProcessPool(Executor):
    """A ``concurrent.futures.Executor`` over shmkit's pool.

    ``max_workers``: helpers (default: the CPUs this process may use).
    ``timeout``: seconds a task may run before its helper is killed
    (``TaskTimeout``, a ``TimeoutError``); ``result(timeout=)`` keeps its
    own meaning, how long the caller waits. ``retries``: reruns of a task
    whose helper died. ``max_tasks_per_child``: helpers are replaced after
    that many tasks. ``initializer(*initargs)`` runs in each helper as it
    starts.

    Functions are sent by reference and arguments and results pickled
    (see ``shmkit._worker``); shmkit arrays travel as their names.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        timeout: float | None = None,
        retries: int = 0,
        max_tasks_per_child: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds, or None")
        if max_tasks_per_child is not None and max_tasks_per_child <= 0:
            raise ValueError("max_tasks_per_child must be >= 1")
        # What a helper pickles from the main script names the module
        # `__mp_main__` (the script runs there under that name): here it is
        # the main module, as importing multiprocessing also arranges.
        if "__main__" in sys.modules:
            sys.modules.setdefault("__mp_main__", sys.modules["__main__"])
        self._workers = max_workers or default_workers()
        self._timeout, self._retries, self._max_tasks = timeout, retries, max_tasks_per_child
        self._init = None if initializer is None else _worker.dumps_call(initializer, tuple(initargs), {})
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._native: _shmkit._Pool | None = None
        self._futures: dict[int, _TaskFuture] = {}
        self._shutdown = False
        self._collector: threading.Thread | None = None
        # Where a helper that cannot start writes why (see shmkit._helper).
        self._errfile = os.path.join(tempfile.gettempdir(), f"shmkit-pool-{self._pid}-{id(self):x}.err")

    # -- submitting ---------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queues ``fn(*args, **kwargs)``; its ``Future``. An argument that
        does not pickle fails this future alone."""
        if os.getpid() != self._pid:
            raise _errors.Inherited("this pool belongs to the process that made it (this is a forked child): make a new pool here")
        future = _TaskFuture(self)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            try:
                payload = _worker.dumps_call(fn, args, kwargs)
                native = self._started()
                key = native.submit(payload)
            except Exception as e:  # noqa: BLE001 (the future carries it)
                future.set_exception(e)
                return future
            future._key = key
            self._futures[key] = future
        return future

    def _started(self) -> _shmkit._Pool:
        """The native pool, started now if it is not running (the lock held)."""
        if self._native is None:
            errfile = self._errfile
            env = [("SHMKIT_PY_PREP", json.dumps(_preparation(errfile)))]
            try:
                self._native = _shmkit._Pool(
                    self._workers, sys.executable, ["-m", "shmkit._helper"], env,
                    self._timeout, self._retries, self._max_tasks, self._init,
                )  # fmt: skip
            except _errors.WorkerStartFailed as e:
                raise _errors.WorkerStartFailed(f"{e}{_read_and_remove(errfile)}") from None
            self._collector = threading.Thread(target=self._collect, name="shmkit-pool-collector", daemon=True)
            self._collector.start()
        return self._native

    def _cancel(self, key: int) -> bool:
        native = self._native
        return native is not None and native.cancel(key)

    # -- results ------------------------------------------------------------

    def _collect(self) -> None:
        """Completes futures as their tasks finish (one thread per pool)."""
        native = self._native
        assert native is not None
        while True:
            done = native.next_done(_TICK)
            if not done:
                with self._lock:
                    finished = self._shutdown and not self._futures
                if finished:
                    self.terminate()  # after shutdown(wait=False), the helpers stop here
                    return
                continue
            with self._lock:
                futures = [(self._futures.pop(key, None), outcome) for key, outcome in done]
            for future, outcome in futures:
                if future is not None and future.set_running_or_notify_cancel():
                    _complete(future, outcome)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """As ``Executor.map``; ``chunksize`` arguments go to a helper per task."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        chunks = _chunks(zip(*iterables), chunksize)
        results = super().map(_worker.run_chunk, itertools.repeat(fn), chunks, timeout=timeout)
        return itertools.chain.from_iterable(results)

    # -- ending -------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new tasks; ``cancel_futures`` cancels the tasks not finished
        (running ones too: their helpers are killed); ``wait`` waits for
        the rest, then stops the helpers (without ``wait`` they stop once
        the last task is done)."""
        with self._lock:
            self._shutdown = True
            futures = list(self._futures.values())
        if cancel_futures:
            for f in futures:
                f.cancel()
        if wait:
            collector = self._collector
            if collector is not None and collector is not threading.current_thread():
                collector.join()
            self.terminate()

    def terminate(self) -> None:
        """Stops the helpers now; unfinished futures are cancelled."""
        with self._lock:
            self._shutdown = True
            native, self._native = self._native, None
            futures, self._futures = list(self._futures.values()), {}
        if native is not None:
            native.terminate()
        _read_and_remove(self._errfile)
        for f in futures:
            super(_TaskFuture, f).cancel()
            f.set_running_or_notify_cancel()

    def helper_pids(self) -> list[int]:
        """The helpers' process ids (none before the first submit)."""
        native = self._native
        return native.helper_pids() if native is not None else []

    def __del__(self) -> None:
        native = getattr(self, "_native", None)
        if native is not None and os.getpid() == self._pid:
            native.terminate()


def _complete(future: Future[Any], outcome: tuple[Any, ...]) -> None:
    kind = outcome[0]
    if kind == "ok":
        ok, value = _worker.loads_outcome(outcome[1])
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    elif kind == "text":
        future.set_exception(_errors.Error(outcome[1]))
    else:
        _, cls, message, signal = outcome
        if cls == "Cancelled":
            future.set_exception(CancelledError(message))
            return
        exc = getattr(_errors, cls, _errors.Error)(message)
        if isinstance(exc, _errors.WorkerDied):
            exc.signal = signal
        future.set_exception(exc)


def _chunks(args: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    while chunk := list(itertools.islice(args, size)):
        yield chunk


def _read_and_remove(path: str) -> str:
    try:
        with open(path) as f:
            text = f.read()
        os.remove(path)
    except OSError:
        return ""
    return f"\nA helper's traceback:\n{text}" if text else ""
