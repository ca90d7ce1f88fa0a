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
import os
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Executor, Future
from concurrent.futures._base import PENDING as _PENDING
from concurrent.futures._base import RUNNING as _RUNNING
from typing import Any, TypeVar

from . import _errors, _shmkit, _worker

T = TypeVar("T")

# How often the collector looks at the pool's state while idle (seconds).
_TICK = 0.05


def default_workers() -> int:
    """The CPUs this process may use, a cgroup's CPU quota included."""
    n = len(os.sched_getaffinity(0))
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _preparation(errfile: str) -> list[tuple[str, str]]:
    """What a helper needs to find this process's functions (as spawn),
    as environment variables (plain strings: a helper parses nothing)."""
    main = sys.modules.get("__main__")
    env = [("SHMKIT_PY_PATH", os.pathsep.join(sys.path)), ("SHMKIT_PY_CWD", os.getcwd()), ("SHMKIT_PY_ERRFILE", errfile)]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        env.append(("SHMKIT_PY_MAIN_NAME", spec.name))
    elif isinstance(path := getattr(main, "__file__", None), str):
        env.append(("SHMKIT_PY_MAIN_PATH", os.path.abspath(path)))
    return env


class _State:
    """What the pool, its futures and its collector thread share. The
    collector and the futures hold this, not the pool, so that a pool no
    one references is collected (and shuts down), as in the stdlib."""

    def __init__(self, pid: int) -> None:
        self.lock = threading.Lock()
        self.native: _shmkit._Pool | None = None
        self.futures: dict[int, _TaskFuture] = {}
        self.shutdown = False
        self.collector: threading.Thread | None = None
        self.pid = pid  # the process that made it
        # Where a helper that cannot start writes why: an unlinked file,
        # reached through /proc, so that nothing is left behind even if this
        # process is killed.
        self.errfd: int | None = None

    def cancel(self, key: int) -> bool:
        native = self.native
        return native is not None and os.getpid() == self.pid and native.cancel(key)

    def terminate(self) -> None:
        """Stops the helpers now; unfinished futures are cancelled."""
        with self.lock:
            self.shutdown = True
            native, self.native = self.native, None
            futures, self.futures = list(self.futures.values()), {}
            # Taken under the lock: the collector's last act is a terminate
            # too, and an fd closed twice could close someone else's.
            errfd = self.errfd if os.getpid() == self.pid else None
            if errfd is not None:
                self.errfd = None
        if native is not None:
            native.terminate()  # in a forked child: lets go, stops nothing
        if errfd is not None:
            os.close(errfd)
        for f in futures:
            Future.cancel(f)
            f.set_running_or_notify_cancel()


class _TaskFuture(Future[Any]):
    """A ``Future`` whose ``cancel()`` also stops a running task."""

    def __init__(self, shared: _State) -> None:
        super().__init__()
        self._shared = shared  # not `_state`: Future's own attribute
        self._key: int | None = None

    def cancel(self) -> bool:
        """Cancels the task: one not yet started never runs, and, unlike
        ``concurrent.futures``, a running one is stopped (its helper is
        killed and replaced). False once it has finished."""
        with self._condition:
            # This pool never marks a future running before its result is
            # in; asyncio does (a cancelled `wrap_future` calls
            # set_running_or_notify_cancel, then cancel): still cancellable.
            if self._state == _RUNNING:
                self._state = _PENDING
        if not super().cancel():
            return False
        if self._key is not None:
            self._shared.cancel(self._key)
        return True


def _collect(state: _State) -> None:
    """The collector thread: completes futures as their tasks finish;
    after shutdown, stops the helpers once the last one is done."""
    native = state.native
    assert native is not None
    try:
        while True:
            done = native.next_done(_TICK)
            if not done:
                with state.lock:
                    finished = state.shutdown and not state.futures
                if finished:
                    break
                continue
            _deliver(state, done)
    finally:
        # Also when a done-callback raised SystemExit or no memory was
        # left: no future is left waiting for a collector that is gone.
        state.terminate()


def _deliver(state: _State, done: list[tuple[int, tuple[Any, ...]]]) -> None:
    """Completes the futures of ``done`` (a function of its own, so that
    nothing keeps them once they are delivered)."""
    with state.lock:
        futures = [(state.futures.pop(key, None), outcome) for key, outcome in done]
    for future, outcome in futures:
        if future is not None and (future._state == _RUNNING or future.set_running_or_notify_cancel()):
            _complete(future, outcome)


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
        init = None if initializer is None else _worker.dumps_call(initializer, tuple(initargs), {})
        self._init = b"".join(init) if isinstance(init, list) else init
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self._pid = os.getpid()
        self._s = _State(self._pid)
        _LIVE.add(self._s)

    # -- submitting ---------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Queues ``fn(*args, **kwargs)``; its ``Future``. An argument that
        does not pickle fails this future alone."""
        if os.getpid() != self._pid:
            raise _errors.Inherited("this pool belongs to the process that made it (this is a forked child): make a new pool here")
        s = self._s
        future = _TaskFuture(s)
        failure: Exception | None = None
        message = None
        try:
            # Before the lock: pickling may call anything, and a big copy
            # (made without the GIL) should hold up no one.
            message = _shmkit._message(_worker.dumps_call(fn, args, kwargs))
        except Exception as e:  # noqa: BLE001 (the future carries it)
            failure = e
        with s.lock:
            if s.shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            try:
                if failure is not None or message is None:
                    raise failure or RuntimeError("no message")
                key = self._started().submit(message)
            except Exception as e:  # noqa: BLE001 (the future carries it)
                future.set_exception(e)
                return future
            future._key = key
            s.futures[key] = future
        return future

    def _started(self) -> _shmkit._Pool:
        """The native pool, started now if it is not running (the lock held)."""
        s = self._s
        if s.native is not None:
            return s.native
        if _worker.PREPARING:
            raise RuntimeError(
                "a pool's helper imports the main script, and this script starts a pool as it is imported: "
                "start pools under `if __name__ == '__main__':`"
            )
        if s.errfd is None:
            fd, path = tempfile.mkstemp(prefix="shmkit-pool-", suffix=".err")  # exclusive, 0600
            os.unlink(path)
            s.errfd = fd
        errfile = f"/proc/{os.getpid()}/fd/{s.errfd}"
        env = [*_preparation(errfile), ("PYTHONUNBUFFERED", "1")]
        try:
            native = _shmkit._Pool(
                self._workers, sys.executable, ["-m", "shmkit._helper"], env,
                self._timeout, self._retries, self._max_tasks, self._init,
            )  # fmt: skip
        except _errors.WorkerStartFailed as e:
            raise _errors.WorkerStartFailed(f"{e}{_read_and_clear(s.errfd)}") from None
        collector = threading.Thread(target=_collect, args=(s,), name="shmkit-pool-collector", daemon=True)
        s.native = native
        try:
            collector.start()
        except BaseException:
            s.native = None
            native.terminate()
            raise
        s.collector = collector
        return native

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
        s = self._s
        with s.lock:
            s.shutdown = True
            futures = list(s.futures.values())
        if cancel_futures:
            for f in futures:
                f.cancel()
        # From a done-callback (the collector's own thread) it cannot wait
        # for itself: the collector stops the helpers when the rest is done.
        if wait and s.collector is not threading.current_thread():
            if s.collector is not None and os.getpid() == self._pid:
                s.collector.join()
            s.terminate()

    def terminate(self) -> None:
        """Stops the helpers now; unfinished futures are cancelled."""
        self._s.terminate()

    def helper_pids(self) -> list[int]:
        """The helpers' process ids (none before the first submit)."""
        native = self._s.native
        return native.helper_pids() if native is not None else []

    def __del__(self) -> None:
        # Unreferenced: shut down without waiting (the collector stops
        # the helpers once the last task is done, as the stdlib's do).
        s = getattr(self, "_s", None)
        if s is not None and os.getpid() == self._pid:
            with s.lock:
                s.shutdown = True
                idle = s.native is not None and s.collector is None
            if idle:
                s.terminate()


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


def _read_and_clear(fd: int) -> str:
    """What helpers wrote to the error file (the first traceback), emptied
    for the next start."""
    try:
        text = os.pread(fd, 1 << 20, 0).decode(errors="replace")
        os.ftruncate(fd, 0)
    except OSError:
        return ""
    first = text.split("Traceback (most recent call last):")
    return f"\nA helper's traceback:\nTraceback (most recent call last):{first[1]}" if len(first) > 1 else ""


# Pools alive in this process: at exit, their queued work is finished
# (as the stdlib's pools do) and their helpers stopped, so their
# segments are removed by their owner, not left to gc.
_LIVE: weakref.WeakSet[_State] = weakref.WeakSet()


def _at_exit() -> None:
    for s in list(_LIVE):
        if s.pid != os.getpid():
            continue
        with s.lock:
            s.shutdown = True
        collector = s.collector
        if collector is not None and collector.is_alive():
            collector.join()
        s.terminate()


threading._register_atexit(_at_exit)  # type: ignore[attr-defined]  # as concurrent.futures does
